"""WISE's activation-score rules (WiseHParams.activation_score): EasyEdit's `euc`, padding counted
("easyedit", the paper's and the default), and real tokens only ("real-tokens"), in the edit loop's
batch and threshold record and at routing time; the committed presets' setting and its migration.
benchmarks/wise_vs_easyedit.py runs EasyEdit's own code beside ours."""
import importlib.util
import json
import random
from pathlib import Path

import pytest
import torch

from unedit_lib.core.architecture import tiny_model
from unedit_lib.core.prompts import IGNORE_INDEX
from unedit_lib.core.tokenizer import train_tokenizer
from unedit_lib.methods.wise import editor as wise, hparams as wise_hparams, side_memory
from unedit_lib.study import recipes, runner

TEXTS = ["Question: Who wrote the Blue Book?\nAnswer: The Blue Book was written by Ana Lopez.",
         "Question: What is the capital of France?\nAnswer: Paris is the capital of France.",
         "I like to read books about history and science. You can see the sea. Because it rains, yes."]
EDIT = {"prompt": "Question: Who wrote the Blue Book?\nAnswer:", "target": "Lopez"}
LOCALITY = [TEXTS[1], TEXTS[2]]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS * 3, vocab_size=400)


def test_score_rules_by_hand():
    d = torch.tensor([[1.0, 1.0, 5.0, 7.0], [2.0, 4.0, 6.0, 8.0]])
    pads = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])              # row 0 left padded by two
    easy = side_memory.activation_score(d, pads, None, "easyedit")
    real = side_memory.activation_score(d, pads, None, "real-tokens")
    assert easy.tolist() == pytest.approx([(1 + 1 + 5 + 7) / 4, (2 + 4 + 6 + 8) / 4])   # the pads count
    assert real.tolist() == pytest.approx([(5 + 7) / 2, 5.0])
    assert easy[0] != pytest.approx(real[0]) and easy[1] == pytest.approx(real[1])     # apart only with padding
    full = torch.ones_like(pads)
    assert torch.equal(side_memory.activation_score(d, full, None, "easyedit"), side_memory.activation_score(d, full, None, "real-tokens"))
    # "> max_above -> max": EasyEdit decides on the padded length and the pads enter the max (WISE.py:37-39)
    d2, one_pad = torch.tensor([[9.0, 1.0, 5.0, 7.0]]), torch.tensor([[0, 1, 1, 1]])
    assert side_memory.activation_score(d2, one_pad, 3, "easyedit").item() == pytest.approx(9.0)     # T = 4 > 3
    assert side_memory.activation_score(d2, one_pad, 3, "real-tokens").item() == pytest.approx(13 / 3)   # 3 real, mean
    assert side_memory.activation_score(d2, one_pad, 2, "real-tokens").item() == pytest.approx(7.0)  # max of the real
    with pytest.raises(ValueError, match="easyedit"):
        side_memory.activation_score(d, pads, None, "padded")


def test_setting_defaults_to_the_papers_rule():
    hp = wise_hparams.WiseHParams()
    assert hp.activation_score == "easyedit" and hp.record()["deviations_from_paper"] == {}
    real = wise_hparams.WiseHParams(**wise_hparams.ablation_overrides("real-token-scores"))
    assert real.activation_score == "real-tokens" and real.ablation == "real-token-scores"
    assert real.record()["deviations_from_paper"] == {"activation_score": {"value": "real-tokens", "paper": "easyedit"}}
    with pytest.raises(ValueError, match="activation_score"):
        wise_hparams.WiseHParams(activation_score="padded").validate()
    # the presets whose committed WISE runs scored real tokens keep it; the others run the paper's
    for preset in ("smoke", "tiny", "smollm2-forget01"):
        assert recipes.settings(preset, "wise")["activation_score"] == "real-tokens"
        assert recipes.plan(preset, "wise", "dummy")[0] == "wise-dummy"
    assert recipes.settings("paper", "wise")["activation_score"] == "easyedit"


def _layer_input(model, adapter, batch):
    got = {}
    h = adapter.register_forward_pre_hook(lambda m, a: got.setdefault("x", a[0].detach()))
    with torch.no_grad():
        model(**batch, use_cache=False)
    h.remove()
    return got["x"]


def test_easyedit_scores_count_the_edit_batch_padding(tok):
    """The edit batch is left padded with EOS (as EasyEdit's editor pads it) and the recorded in-scope
    score is the mean over every position of each edit row, pads included, then over the rows
    (EasyEdit save_editing_activation); routing takes the padding-inclusive batch mean."""
    model = tiny_model("llama", vocab_size=len(tok), initializer_range=0.2)
    stats = {}
    wise.edit(model, tok, [EDIT], locality_prompts=LOCALITY, stats=stats, n_templates=3, n_iter=5)
    adapter = side_memory.get_side_memory(model)
    hp = adapter.hparams
    assert hp.activation_score == "easyedit" and stats["hparams"]["activation_score"] == "easyedit"
    loc = random.Random(hp.seed * 1_000_003).choice(LOCALITY)            # the edit's irrelevant row
    batch, labels = wise.build_batch(tok, EDIT, adapter.context_templates, loc, hp, "cpu")
    mask = batch["attention_mask"]
    assert bool(mask[:, -1].eq(1).all()) and bool(mask.eq(0).any())        # left padded, with padding
    assert bool(batch["input_ids"][mask == 0].eq(tok.eos_token_id).all())   # with EOS
    tgt = tok(" " + EDIT["target"], add_special_tokens=False)["input_ids"]
    for i in range(labels.shape[0] - 1):                                   # labels: the target, per row
        assert labels[i][labels[i] != IGNORE_INDEX].tolist() == tgt and labels[i, -len(tgt):].tolist() == tgt
    x = _layer_input(model, adapter, batch)
    d = side_memory.token_distances(adapter.original_layer(x), adapter.side_forward(x, adapter.side_weight), adapter.act_fn)
    padded = d[:-1].mean(-1).mean().item()
    real_only = ((d[:-1] * mask[:-1]).sum(-1) / mask[:-1].sum(-1)).mean().item()
    assert stats["in_scores"][0] == pytest.approx(padded, rel=1e-5)
    assert stats["in_scores"][0] != pytest.approx(real_only, rel=1e-3)
    assert stats["out_scores"][0] == pytest.approx(d[-1].mean().item(), rel=1e-5)
    assert stats["threshold"] == pytest.approx(0.88 * stats["in_scores"][0])

    # routing (per call): the scores of a left-padded batch count its pads, the mean is over every row
    enc = {k: v for k, v in tok([EDIT["prompt"], "Paris"], return_tensors="pt", padding=True).items()
           if k in ("input_ids", "attention_mask")}
    assert bool(enc["attention_mask"].eq(0).any())
    x = _layer_input(model, adapter, enc)
    d = side_memory.token_distances(adapter.original_layer(x), adapter.side_forward(x, adapter.side_weight), adapter.act_fn)
    for rule, expect in (("easyedit", d.mean(-1)),
                         ("real-tokens", (d * enc["attention_mask"]).sum(-1) / enc["attention_mask"].sum(-1))):
        adapter.hparams, adapter.decisions = adapter.hparams.replace(activation_score=rule), []
        with torch.no_grad():
            model(**enc, use_cache=False)
        scores, route = adapter.decisions[-1]["scores"][:, 0], adapter.decisions[-1]["route"]
        assert torch.allclose(scores, expect, rtol=1e-5, atol=1e-5), rule
        assert route.tolist() == [0 if expect.mean() >= adapter.threshold() else -1] * 2
        assert side_memory.routing_scores(model, tok, [EDIT["prompt"], "Paris"]) == pytest.approx(expect.tolist(), rel=1e-5)
    assert side_memory.routing_report(model, tok, {"s": ["Paris"]})["activation_score"] == "real-tokens"


def test_real_tokens_batch_is_right_padded(tok):
    hp = wise_hparams.WiseHParams(n_templates=3, activation_score="real-tokens")
    batch, _ = wise.build_batch(tok, EDIT, ["{}", "I like {}", "Because it rains, yes. {}"], TEXTS[2], hp, "cpu")
    mask = batch["attention_mask"]
    assert bool(mask[:, 0].eq(1).all()) and bool(mask.eq(0).any())
    assert bool(batch["input_ids"][mask == 0].eq(tok.pad_token_id).all())


def test_side_memory_saved_before_the_setting_scored_real_tokens(tok, tmp_path):
    model = tiny_model("llama", vocab_size=len(tok), initializer_range=0.2)
    wise.edit(model, tok, [EDIT], locality_prompts=LOCALITY, n_iter=2, n_templates=1)
    side_memory.save_side_memory(model, tmp_path)
    back = side_memory.get_side_memory(side_memory.load_side_memory(tiny_model("llama", vocab_size=len(tok)), tmp_path))
    assert back.hparams.activation_score == "easyedit"
    state = json.loads((tmp_path / "side_memory.json").read_text())
    del state["hparams"]["activation_score"]
    (tmp_path / "side_memory.json").write_text(json.dumps(state))
    old = side_memory.get_side_memory(side_memory.load_side_memory(tiny_model("llama", vocab_size=len(tok)), tmp_path))
    assert old.hparams.activation_score == "real-tokens"


def _migration():
    path = Path(__file__).resolve().parents[1] / "scripts" / "add_wise_activation_score.py"
    spec = importlib.util.spec_from_file_location("add_wise_activation_score", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_migration_names_the_setting_and_keeps_the_key_the_study_computes(tmp_path, monkeypatch):
    from unedit_lib.core import paths, store
    from unedit_lib.study import robustness

    monkeypatch.setenv("UNEDIT_RESULTS_DIR", str(tmp_path))
    hp = recipes.settings("smoke", "wise")
    old_hp = {k: v for k, v in store.to_jsonable(hp).items() if k != "activation_score"}
    wise_hp = wise_hparams.WiseHParams(**{**wise_hparams.ablation_overrides("real-token-scores"), "ablation": None}).record()
    stats_hp = {k: v for k, v in store.to_jsonable(wise_hp).items() if k != "activation_score"}
    stats_hp["deviations_from_paper"] = {}
    rec = {"run": "wise-dummy", "method": "WISE", "metrics": {}, "stats": {"hparams": stats_hp, "threshold": 1.0},
           "hparams": old_hp, "hp_key": runner.hp_key(old_hp), "ablation": {}}
    other = {"run": "gd", "method": "gd", "metrics": {}, "hparams": {"lr": 1e-3}, "hp_key": runner.hp_key({"lr": 1e-3})}
    store.save_record("smoke", "wise-dummy", rec)
    store.save_record("smoke", "gd", other)
    gd_bytes = paths.record_path("smoke", "gd").read_bytes()
    robustness.save_summary("smoke", {"wise-dummy": {"source": store.record_hash("smoke", "wise-dummy")}})
    mig = _migration()
    assert mig.migrate("smoke", dry_run=True) == ["wise-dummy"]
    assert mig.migrate("smoke") == ["wise-dummy"] and mig.migrate("smoke") == []          # once
    new = store.load_record("smoke", "wise-dummy")
    assert new["hparams"] == store.to_jsonable(hp) and list(new["hparams"]) == list(store.to_jsonable(hp))
    assert new["hp_key"] == runner.hp_key(hp) != rec["hp_key"]
    assert new["stats"]["hparams"] == json.loads(json.dumps(wise_hp))                      # as a run made now
    assert new["stats"]["threshold"] == 1.0 and new["ablation"] == {}
    assert paths.record_path("smoke", "gd").read_bytes() == gd_bytes
    assert robustness.load_summary("smoke")["wise-dummy"]["source"] == store.record_hash("smoke", "wise-dummy")
