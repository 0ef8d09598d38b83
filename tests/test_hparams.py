"""One hyperparameter base for every method (hparams.HParams, issue 39): frozen, validated with errors
naming the field and its valid values, `replace` naming the valid names, `record` (JSON-able, with its
deviations from the paper's values), `paper()` and named ablations."""
import dataclasses
import json

import pytest

from unedit_lib.core.hparams import HParams
from unedit_lib.methods.baselines import training as baselines
from unedit_lib.methods.ike import editor as ike
from unedit_lib.methods.rome import editor as rome
from unedit_lib.methods.wise import hparams as wise_hparams, side_memory

CLASSES = [rome.RomeHParams, wise_hparams.WiseHParams, ike.IKEHParams, baselines.BaselineHParams]
# one bad value per class: (field, value, words the error must hold)
BAD = {rome.RomeHParams: ("fact_token", "middle", "subject_last"),
       wise_hparams.WiseHParams: ("routing", "per_token", "per_row"),
       ike.IKEHParams: ("order", "random", "most_similar_last"),
       baselines.BaselineHParams: ("batch_size", 0, "> 0")}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_method_uses_the_base(cls):
    hp = cls()
    assert isinstance(hp, HParams) and hp == cls.paper() and hp.deviations() == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        hp.seed = 1
    field, value, words = BAD[cls]
    with pytest.raises(ValueError, match=field) as e:
        cls(**{field: value})
    assert words in str(e.value)
    with pytest.raises(ValueError, match=field):
        hp.replace(**{field: value})
    with pytest.raises(ValueError, match="seed"):     # the type, from the annotation
        cls(seed="0")
    with pytest.raises(TypeError, match="valid") as e:
        hp.replace(not_a_setting=1)
    assert "not_a_setting" in str(e.value) and "seed" in str(e.value)
    changed = hp.replace(seed=3)
    assert changed.seed == 3 and hp.seed == 0 and changed.deviations() == {}    # the seed is no paper setting
    rec = changed.record()
    assert json.loads(json.dumps(rec)) == rec and rec["seed"] == 3 and rec["deviations_from_paper"] == {}
    assert "deviations_from_paper" not in changed.record(deviations=False)


def test_deviations_and_ablations():
    hp = rome.PAPER_HPARAMS.with_ablations("v_lr-0.5", "templates-6")
    assert hp.ablation == "v_lr-0.5+templates-6" and hp.with_ablations("r-rome").ablation == "v_lr-0.5+templates-6+r-rome"
    assert hp.deviations() == {"v_lr": {"value": 0.5, "paper": 0.1},
                               "context_template_length_params": {"value": [[5, 5]], "paper": [[5, 10], [10, 10]]}}
    w = wise_hparams.WiseHParams().with_ablations("per-row-routing")
    assert (w.routing, w.ablation) == ("per_row", "per-row-routing")
    assert w.record()["deviations_from_paper"] == {"routing": {"value": "per_row", "paper": "per_call"}}
    with pytest.raises(KeyError, match="margins-scaled"):
        wise_hparams.WiseHParams().with_ablations("no-such")
    with pytest.raises(KeyError, match="known"):
        ike.IKEHParams().with_ablations("no-such")
    b = baselines.BaselineHParams(lr=1e-3)
    assert b.deviations() == {"lr": {"value": 1e-3, "paper": 1e-5}}
    assert list(b.record(deviations=False)) == [f for f in baselines.DEFAULTS if f != "progress"]


def test_lists_become_tuples_and_wise_is_copied_not_changed():
    hp = wise_hparams.WiseHParams(act_margin=[5, 20, 10], template_seeds=["I"], n_templates=3)
    assert hp.act_margin == (5, 20, 10) and hp.template_seeds == ("I",)
    assert ike.IKEHParams(k=3).replace(k=4).k == 4
    with pytest.raises(ValueError, match="merge_freq"):
        wise_hparams.WiseHParams(save_freq=3, merge_freq=4)
    with pytest.raises(ValueError, match="pool_fraction"):
        ike.IKEHParams(pool_fraction=1.5)


def test_wise_install_resolves_the_layer_on_a_copy():
    from unedit_lib.core.architecture import tiny_model
    hp = wise_hparams.WiseHParams()
    model = tiny_model("llama", vocab_size=64)
    adapter = side_memory.install(model, hp)
    assert hp.layer is None and adapter.hparams.layer is not None
    assert adapter.hparams == hp.replace(layer=adapter.hparams.layer)
