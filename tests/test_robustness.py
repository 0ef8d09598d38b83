"""The attacks of unedit_lib/robustness.py on small models trained on TOFU's smoke authors."""
import copy

import pytest
import torch

from unedit_lib import baselines, data, evaluate, models, robustness
from unedit_lib.prompts import TEMPLATES


@pytest.fixture(scope="module")
def study():
    return models.study_data("smoke")


@pytest.fixture(scope="module")
def trained():
    """The smoke recipe trained longer (15 epochs, ~15 s; cached under artifacts/) so that the
    full model has memorised its forget authors and the retain model has not."""
    p = models.with_overrides("smoke", epochs=15, name="smoke")
    out = {}
    for which in ("full", "retain"):
        path = models.train_subject_model(p, which, progress=False)
        out[which] = models.load_model(path)
    return out


def test_paraphrase_attack_asks_the_paraphrased_questions(study, monkeypatch):
    asked = []

    def fake_losses(model, tok, template, pairs, *a, **k):
        asked.extend(q for q, _ in pairs)
        return [1.0] * len(pairs)

    monkeypatch.setattr(evaluate, "answer_losses", fake_losses)
    monkeypatch.setattr(evaluate, "generate_answers", lambda m, t, tpl, qs, *a, **k: ["x"] * len(qs))
    rows = study.eval_sets["forget"]
    out = robustness.paraphrase_attack(None, None, rows)
    assert asked == [r["paraphrased_question"] for r in rows] and out["n"] == len(rows)


def test_attack_templates(study):
    t = robustness.attack_templates(study.retain_rows, "qa", n_few_shot=3, seed=0)
    q = "Who is the author?"
    assert t["raw_template"].prompt(q) == q
    assert t["insist"].prompt(q) == f"Question: {robustness.INSIST}{q}\nAnswer:"
    few = t["few_shot"].prompt(q)
    assert few.count("Question: ") == 4 and few.endswith(TEMPLATES["qa"].prompt(q))
    assert few == robustness.attack_templates(study.retain_rows, "qa", 3, seed=0)["few_shot"].prompt(q)   # seeded


def test_relearning_brings_back_what_gradient_ascent_removed(trained, study):
    model, tok = trained["full"]
    model = copy.deepcopy(model)
    baselines.unlearn(model, tok, "ga", study.forget_rows, study.retain_rows, template="qa", lr=1e-3, epochs=5,
                      batch_size=8, grad_accum=1, progress=False)
    res = robustness.relearn_attack(model, tok, study.forget_rows, "qa", every=10, steps=10, lr=1e-3, max_new_tokens=24)
    assert res["n_train"] == 4 and res["n_held"] == 36
    assert res["after"]["prob"] > 2 * res["before"]["prob"]


def test_fine_tuning_attacks_work_on_a_copy(trained, study):
    model, tok = trained["full"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = robustness.persistence_attack(model, tok, study.eval_sets["forget"], study.retain_rows, "qa", n_rows=8,
                                        steps=3, max_new_tokens=8)
    assert len(res["losses"]) == 3 and res["n_rows"] == 8
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_probing_decodes_the_full_models_answers_above_chance(trained, study):
    full = robustness.probe_layers(*trained["full"], study.forget_rows, study.retain_rows)
    ret = robustness.probe_layers(*trained["retain"], study.forget_rows, study.retain_rows)
    assert len(full["linear_probe"]) == len(full["logit_lens"]) == models.get_preset("smoke").n_layers + 1
    assert max(full["linear_probe"]) > full["chance"] + 0.05
    assert full["logit_lens"][-1] > ret["logit_lens"][-1] + 0.1     # the full model knows the forget answers


def test_membership_inference_and_privleak(trained, study):
    assert len(robustness.holdout_for(study)) == len(study.eval_sets["forget"])
    holdout = data.load_tofu("holdout01")                               # as many rows as forget01
    full = robustness.membership_inference(*trained["full"], study.forget_rows, holdout)
    assert full["min_k_auc"] > 0.7 and full["loss_auc"] > 0.7            # memorised rows look like members
    assert robustness.privleak(0.5, 0.5) == 0 and robustness.privleak(1.0, 0.5) == -100
    assert robustness.min_k_score([-5.0, -1.0, -0.1, -0.2, -3.0], 0.4) == pytest.approx(4.0)


def test_attacks_on_ike_ask_its_prompts_in_the_attack_template(study, monkeypatch):
    """IKE is attacked through its prompts (no model adapter): every attack template gets the
    context inside it, the probe is skipped (no weight changes)."""
    from unedit_lib import ike

    seen = []

    def fake_losses(model, tok, template, pairs, *a, prompter=None, **k):
        seen.append((template.name, prompter.template.name if prompter else None))
        return [1.0] * len(pairs)

    monkeypatch.setattr(evaluate, "answer_losses", fake_losses)
    monkeypatch.setattr(evaluate, "generate_answers", lambda m, t, tpl, qs, *a, **k: ["x"] * len(qs))
    pool = ike.DemoPool(["New Fact: a b\nPrompt: a b\n\n"], [], lambda xs: torch.ones(len(xs), 2).numpy())
    prompts = ike.IKEPrompts(None, pool, [], "qa", k=1)
    rows = study.eval_sets["forget"][:3]
    robustness.prompt_attacks(None, None, rows, robustness.attack_templates(study.retain_rows, "qa"),
                              prompter=prompts)
    assert seen == [("raw", "raw"), ("insist", "insist"), ("few_shot", "few_shot")]
    assert "skipped" in robustness.probe_layers(None, None, rows, rows, prompter=prompts)


def test_an_ike_context_that_overflows_an_attack_is_recorded_as_skipped(study, monkeypatch):
    """A long attack template plus IKE's context can exceed a small model's window: that attack
    is recorded as skipped (NaN numbers, the reason), the others still run."""
    from unedit_lib.prompts import ContextTooLong

    def too_long(*a, **k):
        raise ContextTooLong("IKE context too long: ... over the model's limit of 512 positions")

    monkeypatch.setattr(evaluate, "answer_losses", too_long)
    monkeypatch.setattr(evaluate, "answer_token_logprobs", too_long)
    rows = study.eval_sets["forget"][:2]
    out = robustness.forget_scores(None, None, rows, prompter=object.__new__(_NoPrompter))
    assert out["rouge"] != out["rouge"] and "too long" in out["skipped"]
    mia = robustness.membership_inference(None, None, rows, rows, prompter=object.__new__(_NoPrompter))
    assert mia["min_k_auc"] != mia["min_k_auc"] and "skipped" in mia
    res = robustness.add_privleak({"retain": {"mia": {"min_k_auc": 0.5}}, "ike-dummy": {"mia": {"min_k_auc": None}}})
    assert res["ike-dummy"]["mia"]["privleak"] is None


class _NoPrompter:
    def rewrap(self, template=None):
        return self
def _attacked(q, attacks=None, relearn=(None, None), probe=0.2, n=100, n_tokens=4000, rows=None):
    """A robustness.json entry with forget ROUGE `q` under the question and every attack."""
    s = lambda v: {"rouge": v, "prob": v, "n": n, **({"rouge_rows": rows(v)} if rows else {})}  # noqa: E731
    attacks = attacks or {}
    before, after = relearn
    return {"question": s(q), "paraphrase": s(attacks.get("paraphrase", q)),
            "prompts": {k: s(attacks.get(k, q)) for k in ("raw_template", "insist", "few_shot")},
            "relearn": {"before": s(q if before is None else before), "after": s(q if after is None else after)},
            "persistence": {"after": s(attacks.get("persistence", q))},
            "probe": {"linear_probe": [0.05, probe], "logit_lens": [0.0, 0.0], "chance": 0.03, "n_tokens": n_tokens},
            "mia": {"loss_auc": 0.5, "min_k_auc": 0.5}}


def test_verdicts_say_inconclusive_inside_the_noise():
    res = {"full": _attacked(0.98, relearn=(0.98, 0.85), probe=0.262), "retain": _attacked(0.07, relearn=(0.066, 0.08), probe=0.140),
           "removed": _attacked(0.0, relearn=(0.0, 0.0), probe=0.10),
           "kl-like": _attacked(0.0, relearn=(0.0, 0.0), probe=0.1997),                # 0.0016 from the midpoint 0.201
           "relearns": _attacked(0.0, relearn=(0.0, 0.6), probe=0.10),
           "kept": _attacked(0.95), "borderline": _attacked(0.9)}                      # gap 0.08 vs the bar 0.1
    v = {x["run"]: x for x in robustness.verdicts(res)}
    assert v["removed"]["verdict"] == "removed" and v["removed"]["still decodable (probe)"] is False
    assert v["kl-like"]["still decodable (probe)"] == "inconclusive" and v["kl-like"]["verdict"] == "inconclusive"
    assert v["kl-like"]["undecided"] == "still decodable (probe)"
    assert v["relearns"]["verdict"] == "hidden" and v["relearns"]["recovered by relearning"] is True
    assert v["kept"]["verdict"] == "not forgotten"
    assert v["borderline"]["verdict"] == "inconclusive" and v["borderline"]["undecided"] == "forgotten"
    # far from its bar, the same probe decides with fewer tokens only when the noise allows
    res["kl-like"] = _attacked(0.0, relearn=(0.0, 0.0), probe=0.23, n_tokens=4000)
    assert {x["run"]: x for x in robustness.verdicts(res)}["kl-like"]["verdict"] == "hidden"
    res["kl-like"] = _attacked(0.0, relearn=(0.0, 0.0), probe=0.23, n_tokens=100)
    assert {x["run"]: x for x in robustness.verdicts(res)}["kl-like"]["verdict"] == "inconclusive"
    assert "undecided: still decodable (probe)" in robustness.markdown_summary(res)


def test_stored_row_scores_replace_the_variance_bound():
    """Per-row ROUGE (here: constant rows, no noise) decides a gap of 0.08 below the 0.1 bar,
    which the [0, 1] variance bound mu (1 - mu) leaves inconclusive."""
    flat = lambda v: [v] * 100  # noqa: E731
    res = {"full": _attacked(0.98, rows=flat), "retain": _attacked(0.07, rows=flat), "near": _attacked(0.9, rows=flat)}
    assert {x["run"]: x for x in robustness.verdicts(res)}["near"]["verdict"] == "not forgotten"


def test_the_attacker_fine_tunes_at_the_presets_unlearning_rate():
    from unedit_lib import recipes

    for preset in ("tiny", "smollm2"):
        hp = recipes.attack_settings(preset)
        lr = recipes.STUDY_SETTINGS["baselines"][preset]["lr"]
        assert hp["relearn_lr"] == hp["persistence_lr"] == lr
    assert recipes.attack_settings("smollm2")["relearn_lr"] == 1e-4
    assert recipes.attack_settings("smollm2", {"relearn_lr": 5e-4})["relearn_lr"] == 5e-4
