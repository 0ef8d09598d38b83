"""The attacks of unedit_lib/study/robustness.py on small models trained on TOFU's smoke authors."""
import copy
import math

import numpy as np
import pytest
import torch

from unedit_lib.core import data, presets
from unedit_lib.core.prompts import TEMPLATES
from unedit_lib.eval import evaluate
from unedit_lib.methods.baselines import training as baselines
from unedit_lib.report import robustness_verdicts
from unedit_lib.study import recipes, robustness
from unedit_lib.subject import models


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
    assert len(full["linear_probe"]) == len(full["logit_lens"]) == presets.get_preset("smoke").n_layers + 1
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
    from unedit_lib.methods.ike import editor as ike, context as ike_context

    seen = []

    def fake_losses(model, tok, template, pairs, *a, prompter=None, **k):
        seen.append((template.name, prompter.template.name if prompter else None))
        return [1.0] * len(pairs)

    monkeypatch.setattr(evaluate, "answer_losses", fake_losses)
    monkeypatch.setattr(evaluate, "generate_answers", lambda m, t, tpl, qs, *a, **k: ["x"] * len(qs))
    pool = ike.DemoPool(["New Fact: a b\nPrompt: a b\n\n"], [], lambda xs: torch.ones(len(xs), 2).numpy())
    prompts = ike_context.IKEPrompts(None, pool, [], "qa", k=1)
    rows = study.eval_sets["forget"][:3]
    robustness.prompt_attacks(None, None, rows, robustness.attack_templates(study.retain_rows, "qa"),
                              prompter=prompts)
    assert seen == [("raw", "raw"), ("insist", "insist"), ("few_shot", "few_shot")]
    assert "skipped" in robustness.probe_layers(None, None, rows, rows, prompter=prompts)


def test_an_ike_context_that_overflows_an_attack_is_recorded_as_skipped(study, monkeypatch):
    """A long attack template plus IKE's context can exceed a small model's window: that attack
    is recorded as skipped (NaN numbers, the reason), the others still run."""
    from unedit_lib.core.prompts import ContextTooLong

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
    """No per-row scores here: the unpaired bound. Probe accuracies near the references' midpoint
    stay undecided; far from it they decide with enough tokens."""
    res = {"full": _attacked(0.98, relearn=(0.98, 0.85), probe=0.262), "retain": _attacked(0.07, relearn=(0.066, 0.08), probe=0.140),
           "removed": _attacked(0.0, relearn=(0.0, 0.0), probe=0.10),
           "kl-like": _attacked(0.0, relearn=(0.0, 0.0), probe=0.1997),                # 0.0013 from the midpoint 0.201
           "relearns": _attacked(0.0, relearn=(0.0, 0.6), probe=0.10),
           "kept": _attacked(0.95), "halfway": _attacked(0.53)}                         # 0.005 above the midpoint 0.525
    v = {x["run"]: x for x in robustness_verdicts.verdicts(res)}
    assert v["removed"]["verdict"] == "removed" and v["removed"]["still decodable (probe)"] is False
    assert v["removed"]["unpaired"] and v["removed"]["knowledge inside (MIA)"] == "uninformative"   # MIA 0.5 everywhere
    assert v["kl-like"]["still decodable (probe)"] == "inconclusive" and v["kl-like"]["verdict"] == "inconclusive"
    assert v["kl-like"]["undecided"] == "still decodable (probe)"
    assert v["relearns"]["verdict"] == "hidden" and v["relearns"]["resurfaces: relearn after"] is True
    assert v["kept"]["verdict"] == "not forgotten"
    assert v["halfway"]["verdict"] == "inconclusive" and v["halfway"]["undecided"] == "forgotten (question)"
    res["kl-like"] = _attacked(0.0, relearn=(0.0, 0.0), probe=0.23, n_tokens=4000)
    assert {x["run"]: x for x in robustness_verdicts.verdicts(res)}["kl-like"]["verdict"] == "hidden"
    res["kl-like"] = _attacked(0.0, relearn=(0.0, 0.0), probe=0.23, n_tokens=100)
    assert {x["run"]: x for x in robustness_verdicts.verdicts(res)}["kl-like"]["verdict"] == "inconclusive"
    assert "**inconclusive** (undecided: probe)" in robustness_verdicts.markdown_summary(res)


# ---- synthetic per-row results like results/smollm2-forget01/robustness.json: 40 forget questions, relearning
# on every 10th and scored on the other 36; U = each question's difficulty, shared by every model
N_ROWS = 40
U = np.random.default_rng(0).uniform(0.0, 0.5, N_ROWS)
HELD = [i for i in range(N_ROWS) if i % 10]


def _rows(values):
    return {"rouge": float(np.mean(values)), "prob": 0.5, "n": len(values), "rouge_rows": [float(x) for x in values]}


def _model(q, attacks=None, relearn_after=None, auc=0.5, probe=0.2, skip_probe=False):
    """A robustness.json entry from per-row forget ROUGE arrays (`attacks`: {attack: rows}, the
    others as `q`; relearning scored on the held-out rows HELD)."""
    attacks = attacks or {}
    a = lambda k: attacks.get(k, q)  # noqa: E731
    after = q if relearn_after is None else relearn_after
    return {"question": _rows(q), "paraphrase": _rows(a("paraphrase")),
            "prompts": {k: _rows(a(k)) for k in ("raw_template", "insist", "few_shot")},
            "relearn": {"before": _rows(np.asarray(q)[HELD]), "after": _rows(np.asarray(after)[HELD]),
                        "n_train": 4, "n_held": len(HELD)},
            "persistence": {"after": _rows(a("persistence"))},
            "probe": {"skipped": "IKE"} if skip_probe else
            {"linear_probe": [0.05, probe], "logit_lens": [0.0, 0.0], "chance": 0.03, "n_tokens": 1600},
            "mia": {"loss_auc": auc, "min_k_auc": auc, "k": 0.4, "n_forget": 40, "n_holdout": 40},
            "hparams": {"relearn_every": 10}}


def _references():
    """The full model knows the forget rows (question U + 0.45) and every attack but the bare
    template cuts its recall to U + 0.2; the retain model is at U under every attack; the bare
    template (`raw_template`) blinds both (full and retain about U / 10, row by row unrelated)."""
    full_attacked = {k: U + 0.2 for k in ("paraphrase", "insist", "few_shot", "persistence")}
    return {"full": _model(U + 0.45, {**full_attacked, "raw_template": np.random.default_rng(2).permutation(U) / 10}, relearn_after=U + 0.2,
                           auc=1.0, probe=0.34),
            "retain": _model(U, {"raw_template": U / 10}, auc=0.5, probe=0.29)}


def _verdict(res, run, records=None):
    return {x["run"]: x for x in robustness_verdicts.verdicts(res, records=records)}[run]


def test_a_wiped_run_is_not_hidden_for_relearning_to_the_retain_models_level():
    """GA's pattern: forget ROUGE 0 and after relearning at the retain model's level (a gain of
    0.25 that the retain model does not make, from 0): the same as a model that never knew the
    rows, so not hidden (the old rule, gain over the retain model's gain, said "hidden"); a run
    that relearns to the full model's level is."""
    res = _references()
    zero = np.zeros(N_ROWS)
    res["ga"] = _model(zero, {"persistence": np.clip(U - 0.02, 0, 1), "raw_template": zero}, relearn_after=U,
                       auc=0.46, probe=0.20)
    res["relearns"] = _model(zero, {"raw_template": zero}, relearn_after=U + 0.22, auc=0.46, probe=0.20)
    ga, rel = _verdict(res, "ga"), _verdict(res, "relearns")
    assert ga["resurfaces: relearn after"] is False and ga["verdict"] == "removed", ga
    assert ga["resurfaces: raw_template"] == "uninformative"       # the bare template cannot tell the references apart
    assert rel["resurfaces: relearn after"] is True and rel["verdict"] == "hidden"
    assert rel["decided by"] == "resurfaces under relearn after"
    assert "| ga |" in robustness_verdicts.markdown_summary(res) and "**removed** (R under every informative criterion)" \
        in robustness_verdicts.markdown_summary(res)


def test_ike_and_wise_are_hidden_by_construction():
    """IKE leaves the weights unchanged and WISE the main memory: "hidden by construction", with
    the evidence beside (here the MIA AUC at the full model's level), even when every attack keeps
    the retain model's level (the old rules said "removed"); the method from the run name's prefix
    or from the study record. A run that did not forget is "not forgotten" whatever its method."""
    res = _references()
    res["ike-dummy"] = _model(U, {"raw_template": U / 10}, auc=0.99, skip_probe=True)
    res["wise-avoidant"] = _model(U, {"raw_template": U / 10}, auc=0.5, probe=0.29)
    res["side-memory"] = _model(U, {"raw_template": U / 10}, auc=0.5, probe=0.29)
    res["wise-kept"] = _model(U + 0.45, {"raw_template": U / 10})
    res["ike-dummy"]["prompts"]["few_shot"] = {"rouge": None, "prob": None, "n": N_ROWS, "rouge_rows": [],
                                               "skipped": "IKE context too long"}   # NaN stored as null
    records = {"side-memory": {"method": "WISE"}}
    ike = _verdict(res, "ike-dummy", records)
    assert ike["method"] == "IKE" and ike["verdict"] == "hidden by construction"
    assert ike["knowledge inside (MIA)"] is True and "knowledge inside (MIA)" in ike["decided by"]
    assert ike["probe acc. (best layer)"] is None and ike["still decodable (probe)"] is None
    assert ike["resurfaces: few_shot"] is None                            # a skipped attack decides nothing
    assert _verdict(res, "wise-avoidant", records)["verdict"] == "hidden by construction"
    assert _verdict(res, "side-memory", records)["verdict"] == "hidden by construction"
    assert _verdict(res, "side-memory")["verdict"] != "hidden by construction"       # no record, no prefix
    assert _verdict(res, "wise-kept", records)["verdict"] == "not forgotten"
    assert "**hidden by construction** (IKE: weights unchanged; F: MIA)" in robustness_verdicts.markdown_summary(res, records)


def test_the_attacks_calibration_is_reported():
    """Each attack's effect on the references: the full model's forget ROUGE under it against
    the plain question (relearning: against before, on the same rows), the retain model's, their
    separation; an attack that cuts the full model's recall is flagged, one under which the
    references are not apart is uninformative."""
    res = _references()
    cal = {c["attack"]: c for c in robustness_verdicts.calibration(res)}
    assert list(cal) == ["question", "paraphrase", "raw_template", "insist", "few_shot", "persistence", "relearn after"]
    p = cal["persistence"]
    assert p["full"] == pytest.approx(U.mean() + 0.2) and p["full: plain"] == pytest.approx(U.mean() + 0.45)
    assert p["full: change"] == pytest.approx(-0.25) and p["full: change se"] == pytest.approx(0, abs=1e-12)  # paired
    assert p["retain: change"] == pytest.approx(0) and p["informative"] and p["weakens the full model"]
    assert p["full keeps"] == pytest.approx((U.mean() + 0.2) / (U.mean() + 0.45))
    assert cal["relearn after"]["full: plain"] == pytest.approx(U[HELD].mean() + 0.45)
    assert not cal["raw_template"]["informative"] and cal["question"]["separation"] == pytest.approx(0.45)
    md = robustness_verdicts.markdown_summary(res | {"run": _model(U, {"raw_template": U / 10})})
    assert "**Calibration of the attacks**" in md and "| persistence | " in md
    assert f"| persistence | {U.mean() + 0.2:.2f} (-0.25 ± 0.00) |" in md and "uninformative: cannot tell" in md


def test_levels_are_judged_with_the_paired_noise_of_the_same_rows():
    """Every model answers the same questions: a run whose persistence rows are the retain model's
    shifted by a constant (0.05 beyond the references' midpoint on every row) decides, while the
    same means with the rows shuffled (the same per-row spread, no pairing) do not; without
    per-row scores the unpaired bound is used and named."""
    res = _references()
    shifted = U + 0.15                                        # the midpoint under persistence is U + 0.1
    shuffled = np.random.default_rng(1).permutation(U) + 0.15
    res["shifted"] = _model(U, {"persistence": shifted, "raw_template": U / 10})
    res["shuffled"] = _model(U, {"persistence": shuffled, "raw_template": U / 10})
    sh, sf = _verdict(res, "shifted"), _verdict(res, "shuffled")
    assert sh["resurfaces: persistence"] is True and sh["verdict"] == "hidden" and sh["unpaired"] == ""
    assert sf["resurfaces: persistence"] == "inconclusive" and sf["verdict"] == "inconclusive"
    lv = robustness_verdicts.level(res["shifted"], res["full"], res["retain"], "persistence")
    assert lv["paired"] and lv["stat"] == pytest.approx(0.05) and lv["se"] == pytest.approx(0, abs=1e-12)
    assert lv["position"] == pytest.approx(0.75)
    del res["shifted"]["persistence"]["after"]["rouge_rows"]             # a run stored without per-row scores
    lv = robustness_verdicts.level(res["shifted"], res["full"], res["retain"], "persistence")
    assert not lv["paired"] and lv["se"] > 0.02
    assert "persistence" in _verdict(res, "shifted")["unpaired"]
    res["shifted"]["relearn"]["n_held"] = 30                             # relearned on another split: rows differ
    assert not robustness_verdicts.level(res["shifted"], res["full"], res["retain"], "relearn after")["paired"]


def test_membership_inference_decides_with_the_hanley_mcneil_noise():
    """The MIA criterion: the run's Min-K AUC against the references' with each AUC's standard error
    from Hanley & McNeil (1982) for 40 x 40 pairs."""
    se = robustness_verdicts.hanley_mcneil_se
    q1, q2 = 0.8 / (2 - 0.8), 2 * 0.8**2 / (1 + 0.8)            # Hanley-McNeil's Q1, Q2 at A = 0.8
    assert se(0.8, 40, 40) == pytest.approx(math.sqrt((0.8 * 0.2 + 39 * (q1 - 0.64) + 39 * (q2 - 0.64)) / 1600))
    assert se(0.2, 40, 40) == se(0.8, 40, 40) and se(1.0, 40, 40) == 0 and 0.06 < se(0.5, 40, 40) < 0.07
    res = _references()
    for run, auc in (("inside", 0.97), ("near-mid", 0.8), ("outside", 0.5), ("below", 0.15)):
        res[run] = _model(U, {"raw_template": U / 10}, auc=auc, probe=0.29)
    v = {x["run"]: x for x in robustness_verdicts.verdicts(res)}
    assert v["inside"]["knowledge inside (MIA)"] is True and v["inside"]["verdict"] == "hidden"
    assert v["near-mid"]["knowledge inside (MIA)"] == "inconclusive"      # 0.05 above the midpoint 0.75, SE ~0.06
    assert v["outside"]["knowledge inside (MIA)"] is False and v["below"]["knowledge inside (MIA)"] is False


def test_the_attacker_fine_tunes_at_the_presets_unlearning_rate():
    for preset in ("tiny", "smollm2-forget01"):
        hp = recipes.attack_settings(preset)
        lr = presets.get_preset(preset).method_settings("baselines")["lr"]
        assert hp["relearn_lr"] == hp["persistence_lr"] == lr
    assert recipes.attack_settings("smollm2-forget01")["relearn_lr"] == 1e-4
    assert recipes.attack_settings("smollm2-forget01", {"relearn_lr": 5e-4})["relearn_lr"] == 5e-4


def test_forget05_attacks_a_fixed_spread_subset_and_forget01_keeps_its_settings():
    """Notebook 08 on forget05 reads every 5th forget row (40 rows, 4 per author) and as many holdout
    rows; the forget01 presets' settings carry no such key, so their cached attacks still match."""
    hp = recipes.attack_settings("smollm2-forget05")
    sd = models.study_data("smollm2-forget05")
    rows = robustness.attacked_forget_rows(sd, hp)
    assert hp["forget_every"] == 5 and len(sd.eval_sets["forget"]) == 200 and len(rows) == 40
    assert rows == sd.eval_sets["forget"][::5]
    per_author = [sum(r["question"] == q["question"] for r in rows for q in sd.eval_sets["forget"][20 * a:20 * a + 20])
                  for a in range(10)]
    assert per_author == [4] * 10
    assert len(robustness.holdout_for(sd, None, hp)) == 40
    for preset in ("tiny", "smollm2-forget01"):
        assert "forget_every" not in recipes.attack_settings(preset)
    with pytest.raises(TypeError, match="unknown robustness hyperparameters"):
        robustness.attack_all(None, None, sd, forget_each=5)
