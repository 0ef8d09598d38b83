"""The paper's findings as data (unedit_lib/report/findings.py) and the joint paired bootstrap behind their
verdicts (unedit_lib/eval/joint_bootstrap.py): every rule and premise gives the paper's verdict on the
paper's own numbers, the verdicts follow our numbers, and the statistics fit the data."""
import numpy as np
import pytest
from scipy import stats

from unedit_lib.core import reference, store
from unedit_lib.eval import joint_bootstrap
from unedit_lib.eval.evaluate import EVAL_SETS, METRICS
from unedit_lib.report import findings, gates, tables

BY_CLAIM = {f.claim: f for f in findings.FINDINGS}
ROME_FQ = "ROME-dummy raises forget quality above 0.05 (the full model's is below)"
ROME_MU = "ROME-dummy pays with utility (MU well below the full model's)"
EXCEED = "Editing can exceed the unlearning baselines in forget quality"
WISE_MU = "WISE keeps model utility"


# --------------------------------------------------------------------------- the paper's own numbers
def test_every_rule_and_premise_gives_the_papers_verdict_on_the_papers_numbers():
    got = {f["finding"]: f for f in findings.on_paper()}
    assert set(got) == set(BY_CLAIM)
    wrong = {claim: (f["verdict"], f["premises"]) for claim, f in got.items() if f["verdict"] != tables.REPRODUCED}
    assert not wrong, f"rules or premises that do not give the paper's verdict on its own numbers: {wrong}"


def test_the_paper_runs_a_finding_rests_on_meet_its_premises():
    paper = findings.PaperView()
    for f in findings.FINDINGS:
        runs = f.runs(paper.runs)
        valid = [r for r in runs if all(g["status"] == "holds" for g in findings.paper_premise_gates(f, r))]
        assert valid, f"{f.claim}: no paper run meets its premise {f.premise}"
        assert findings._holds_all(f, paper, valid), f"{f.claim}: its rule fails on the paper runs it rests on"


def test_rules_can_tell_the_papers_counterexamples():
    """'Breaks down' must not hold for the paper's ROME-dummy (world-fact ROUGE 0.63), which did not."""
    paper = findings.PaperView()
    controls = [(f, r) for f in findings.FINDINGS for r in f.controls]
    assert controls
    for f, run in controls:
        assert f.rule(paper, run) is False, f"{f.claim}: its rule also holds on the paper's {run}"


def test_a_rule_fails_when_the_papers_numbers_are_changed():
    """The paper check can fail: WISE at half the full model's utility no longer keeps it."""
    class Halved(findings.PaperView):
        def __call__(self, run, key):
            v = super().__call__(run, key)
            return v / 2 if run.startswith("wise") and key == "model_utility" and v is not None else v

    got = findings.decide(BY_CLAIM[WISE_MU], Halved(), None, findings.paper_premise_gates)
    assert got["verdict"] == tables.NOT_REPRODUCED


# --------------------------------------------------------------------------- verdicts on records
def _rec(run, method, target, mu, fq, rouge=0.5, collapsed=False):
    metrics = {s: {m: rouge for m in METRICS} for s in EVAL_SETS}
    return {"run": run, "method": method, "target": target, "metrics": None if collapsed else metrics,
            "model_utility": None if collapsed else mu, "forget_quality": None if collapsed else fq,
            "collapsed": {"step": 3, "reason": "loss is nan"} if collapsed else False}


def _rome(run, rewrite, mu=0.4, fq=0.2):
    rec = _rec(run, "ROME", run.split("-")[1], mu, fq)
    rec["edit_metrics"] = {"pre_rewrite_acc_mean": 0.0, "rewrite_acc_mean": rewrite, "n_edits": 10}
    return rec


def _routes(share, rows=100):
    """One evaluation set's routes as wise.route_watch records them: both passes at `share`."""
    routed = round(share * rows)
    return {"loss": {"prompt_rows": rows, "prompt_rows_routed": routed, "token_rows": 0, "token_rows_routed": 0},
            "generate": {"prompt_rows": rows, "prompt_rows_routed": routed, "token_rows": 10 * rows,
                         "token_rows_routed": 10 * routed}}


def _wise(run, forget, others, mu=0.9, rouge=0.98):
    rec = _rec(run, "WISE", run.split("-")[1], mu, 1e-5, rouge=rouge)
    rec["stats"] = {"eval_routing": {"forget": _routes(forget),
                                     **{s: _routes(others) for s in ("retain", "real_authors", "world_facts")}}}
    return rec


def _study(**runs):
    recs = {"full": _rec("full", "subject model", None, 0.9, 1e-6, rouge=0.99),
            "retain": _rec("retain", "subject model", None, 0.9, 1.0, rouge=0.5),
            "ga": _rec("ga", "ga", None, 0.0, 1e-3), "gd": _rec("gd", "gd", None, 0.8, 1e-4),
            "kl": _rec("kl", "kl", None, 0.0, 1e-4), "idk": _rec("idk", "idk", None, 0.8, 1e-5)}
    recs.update(runs)
    return recs


def _verdicts(recs, boot=None):
    return {f["finding"]: f for f in findings.evaluate(recs, boot)}


def test_a_failed_premise_is_named_and_never_counted():
    v = _verdicts(_study(**{"rome-dummy": _rome("rome-dummy", 0.95, mu=0.85, fq=0.2)}))
    assert v[ROME_FQ]["verdict"] == tables.REPRODUCED and v[ROME_MU]["verdict"] == tables.NOT_REPRODUCED
    assert "no per-item logs" in v[ROME_FQ]["why"] and v[ROME_FQ]["probability"] is None
    v = _verdicts(_study(**{"rome-dummy": _rome("rome-dummy", 0.04, mu=0.85, fq=0.2)}))
    assert v[ROME_MU]["verdict"] == tables.NOT_TESTABLE
    assert "premise failed: rome-dummy: edits take" in v[ROME_MU]["premises"] and "0.040" in v[ROME_MU]["premises"]
    assert v["GA destroys utility (MU -> 0)"]["verdict"] == tables.REPRODUCED       # baselines have no premises
    assert v["IKE costs utility"]["verdict"] == tables.NOT_COMPARABLE                 # no IKE run


def test_the_fq_rule_applies_only_where_the_full_model_is_told_apart():
    recs = _study(**{"rome-dummy": _rome("rome-dummy", 0.95, fq=0.405)})
    recs["full"] = _rec("full", "subject model", None, 0.9, 0.0143, rouge=0.99)
    assert _verdicts(recs)[ROME_FQ]["verdict"] == tables.REPRODUCED
    recs["rome-dummy"] = _rome("rome-dummy", 0.95, fq=0.03)
    assert _verdicts(recs)[ROME_FQ]["verdict"] == tables.NOT_REPRODUCED
    recs["full"] = _rec("full", "subject model", None, 0.9, 0.2, rouge=0.99)
    assert _verdicts(recs)[ROME_FQ]["verdict"] == tables.NOT_COMPARABLE


def test_one_valid_counterexample_refutes_a_claim_over_every_run_and_coverage_is_needed():
    wise = {f"wise-{t}": _wise(f"wise-{t}", 0.9, 0.05, mu=0.88) for t in ("dummy", "incorrect", "avoidant")}
    assert _verdicts(_study(**wise))[WISE_MU]["verdict"] == tables.REPRODUCED          # 0.88 / 0.9 >= 0.9
    wise["wise-dummy"] = _wise("wise-dummy", 0.9, 0.05, mu=0.5)
    assert _verdicts(_study(**wise))[WISE_MU]["verdict"] == tables.NOT_REPRODUCED      # one valid counterexample
    wise["wise-dummy"] = _wise("wise-dummy", 0.9, 0.9, mu=0.5)                         # ... routes everything: invalid
    f = _verdicts(_study(**wise))[WISE_MU]
    assert f["verdict"] == tables.INCONCLUSIVE and "do not cover dummy" in f["premises"]
    assert "retain set's evaluation sent to the side memory (higher of its passes) 0.900" in f["premises"]


def test_an_exists_claim_is_refuted_only_when_no_run_of_any_status_meets_it():
    good, bad = _rome("rome-dummy", 0.95, fq=0.3), _rome("rome-incorrect", 0.1, fq=0.5)
    assert _verdicts(_study(**{"rome-dummy": good, "rome-incorrect": bad}))[EXCEED]["verdict"] == tables.REPRODUCED
    weak = _rome("rome-dummy", 0.95, fq=1e-9)                       # the valid editor loses to the baselines ...
    v = _verdicts(_study(**{"rome-dummy": weak, "rome-incorrect": bad}))[EXCEED]
    assert v["verdict"] == tables.INCONCLUSIVE                       # ... an invalid one might not have
    weak_bad = _rome("rome-incorrect", 0.1, fq=1e-9)
    partial = _verdicts(_study(**{"rome-dummy": weak, "rome-incorrect": weak_bad}))[EXCEED]
    assert partial["verdict"] == tables.INCONCLUSIVE                  # editors and a target not made: one might
    assert "no run of ike, wise, avoidant, which the paper tested, is made" in partial["premises"]
    rest = {"rome-avoidant": _rome("rome-avoidant", 0.1, fq=1e-9), "ike-dummy": _rec("ike-dummy", "IKE", "dummy", 0.4, 1e-9),
            "wise-dummy": _rec("wise-dummy", "WISE", "dummy", 0.4, 1e-9)}
    every = _verdicts(_study(**{"rome-dummy": weak, "rome-incorrect": weak_bad, **rest}))[EXCEED]
    assert every["verdict"] == tables.NOT_REPRODUCED                 # every editor and target made, none exceeds
    only_bad = _verdicts(_study(**{"rome-incorrect": bad}))[EXCEED]
    assert only_bad["verdict"] == tables.NOT_TESTABLE and "edits take" in only_bad["premises"]


def test_breaks_down_is_tested_on_damage_not_on_the_edits_taking():
    broken = {**_rome("rome-incorrect", 0.05), "metrics": {s: {m: 0.05 for m in METRICS} for s in EVAL_SETS}}
    assert _verdicts(_study(**{"rome-incorrect": broken}))["ROME-incorrect (a whole-sentence target) breaks down"][
        "verdict"] == tables.REPRODUCED
    fine = _rome("rome-incorrect", 0.05)                              # ROUGE 0.5: edits did not take, nothing broke
    assert _verdicts(_study(**{"rome-incorrect": fine}))["ROME-incorrect (a whole-sentence target) breaks down"][
        "verdict"] == tables.NOT_REPRODUCED
    collapsed = {**_rome("rome-incorrect", 0.05), **_rec("rome-incorrect", "ROME", "incorrect", 0, 0, collapsed=True)}
    assert _verdicts(_study(**{"rome-incorrect": collapsed}))["ROME-incorrect (a whole-sentence target) breaks down"][
        "verdict"] == tables.REPRODUCED


def test_a_notebook_shows_its_methods_share_of_the_findings():
    items = findings.evaluate(_study(**{"rome-dummy": _rome("rome-dummy", 0.95, mu=0.85, fq=0.2)}), None)
    rome = [f["finding"] for f in findings.about(items, "ROME")]
    assert ROME_FQ in rome and ROME_MU in rome and EXCEED in rome
    assert not any(f.startswith(("WISE", "GA ", "IKE")) for f in rome)
    assert [f["finding"] for f in findings.about(items, "GA", "IdK", general=False)] == [
        "GA destroys utility (MU -> 0)", "IdK keeps most utility and stops reciting the forget answers"]
    assert not findings.about(items, "R-ROME", general=False)
    assert "| source |" in findings.markdown(items) and all(f["verdict"] in tables.VERDICTS for f in items)


# --------------------------------------------------------------------------- the joint paired bootstrap
def _log(n, rng, shift=0.0):
    """A TOFU legacy log of n rows (the fields row_scores and truth_ratios read)."""
    k = [str(i) for i in range(n)]
    gt = rng.random(n) + 0.5 + shift
    return {"avg_gt_loss": dict(zip(k, gt)), "avg_paraphrased_loss": dict(zip(k, gt + 0.1)),
            "average_perturb_loss": dict(zip(k, [[x + 0.5 + shift + e, x + 0.6 + e] for x, e in zip(gt, rng.normal(0, 0.5, n))])),
            "rougeL_recall": dict(zip(k, rng.random(n))), "rouge1_recall": dict(zip(k, rng.random(n)))}


def _logs(rng, n=40, shift=0.0):
    return {s: _log(n, rng, shift) for s in EVAL_SETS}


def test_the_fq_lattice_is_the_ks_tests_own():
    rng = np.random.default_rng(0)
    for n in (40, 200):
        a, b = rng.random(n), rng.random(n)
        res = stats.ks_2samp(a, b)
        assert joint_bootstrap.ks_d(a, b) == pytest.approx(res.statistic, abs=1e-12)
        assert joint_bootstrap.fq_of_d(res.statistic, n) == pytest.approx(res.pvalue, rel=1e-9)


def test_the_point_is_the_evaluators_number_and_pairs_share_their_rows():
    from unedit_lib.eval import evaluate

    rng = np.random.default_rng(1)
    retain, full, run = _logs(rng), _logs(rng), _logs(rng, shift=0.3)
    boot = joint_bootstrap.JointBootstrap({"full": [full], "run": [run], "same": [full]}, retain, n_resamples=200)
    want = evaluate.summarize(run, retain)
    assert boot.value("run", "model_utility") == pytest.approx(want["model_utility"])
    assert boot.value("run", "forget_quality") == pytest.approx(want["forget_quality"])
    assert boot.value("run", "ks_statistic") == pytest.approx(want["ks_statistic"])
    assert boot.ratio_interval("same", "full") == (1.0, 1.0)               # paired: the same rows for both
    lo, hi = boot.interval("run", "ks_statistic")
    assert 0 <= lo <= boot.value("run", "ks_statistic") <= hi <= 1
    with pytest.raises(ValueError, match="same rows"):
        joint_bootstrap.JointBootstrap({"short": [_logs(rng, n=30)]}, retain, n_resamples=200)


def test_the_reflected_d_removes_the_resampling_bias():
    """Resampled rows repeat, which pushes a supremum up; the reflected resamples are not above the point."""
    rng = np.random.default_rng(2)
    retain, run = _logs(rng, n=40), _logs(rng, n=40, shift=0.3)
    boot = joint_bootstrap.JointBootstrap({"run": [run]}, retain, n_resamples=400)
    d = boot.value("run", "ks_statistic")
    raw = 2 * d - boot.samples["run"]["ks_statistic"]                      # undo the reflection
    assert raw.mean() > d                                                  # the bias the reflection corrects
    assert boot.samples["run"]["ks_statistic"].mean() <= d                # reflected: no longer above the point


def test_seeds_are_resampled_and_the_probability_decides():
    rng = np.random.default_rng(3)
    retain, full = _logs(rng), _logs(rng)
    boot = joint_bootstrap.JointBootstrap({"full": [full], "run": [_logs(rng), _logs(rng)]}, retain, n_resamples=200)
    assert boot.seed_draws["run"].shape == (200, 2) and len(set(boot.seed_draws["run"].ravel())) == 2
    recs = {"full": _rec("full", "subject model", None, 0.9, 1e-6), "run": _rec("run", "gd", None, 0.9, 0.2)}
    gd = findings.Finding("toy", findings.AUTHORS, lambda runs: ["run"], findings._at_least("mu/full", 0.0),
                          "MU / MU(full) >= 0", lambda g: "", needs=("full",))
    f = findings.decide(gd, findings.View(recs, boot), boot, lambda f, r: [])
    assert f["probability"] == 1.0 and f["verdict"] == tables.REPRODUCED
    half = findings.Finding("toy", findings.AUTHORS, lambda runs: ["run"], findings._at_least("mu/full", 1.0),
                            "MU / MU(full) >= 1", lambda g: "", needs=("full",))
    f = findings.decide(half, findings.View(recs, boot), boot, lambda f, r: [])
    assert 0.05 < f["probability"] < 0.95 and f["verdict"] == tables.INCONCLUSIVE


def test_the_committed_study_is_decided_from_its_per_item_logs():
    records = store.load_results("smollm2-forget01")
    boot = findings.study_bootstrap("smollm2-forget01", records)
    for run in ("full", "rome-dummy", "ike-incorrect", "gd"):
        assert boot.value(run, "forget_quality") == pytest.approx(records[run]["forget_quality"], rel=1e-9)
        assert boot.value(run, "model_utility") == pytest.approx(records[run]["model_utility"], rel=1e-9)
    items = findings.study_findings(records, preset="smollm2-forget01")
    assert len(items) == len(findings.FINDINGS) and all(f["verdict"] in tables.VERDICTS for f in items)
    assert any(f["probability"] is not None for f in items)
    assert reference.PAPER_SOURCE


def test_ike_rests_on_its_own_contexts_lifting_the_target_on_every_forget_row():
    def ike(pre, post, requests_only=False):
        rec = _rec("ike-incorrect", "IKE", "incorrect", 0.5, 0.9)
        em = {"pre": {"rewrite_acc": pre}, "post": {"rewrite_acc": post}, "per_request": {"rewrite_acc": [post] * 4}}
        if not requests_only:      # edit_metrics.context_lift's shape
            em["forget_rows"] = {"n": 40, "means": {"rewrite_acc_with_context": post, "rewrite_acc_without_context": pre,
                                                    "rewrite_acc_lift": post - pre},
                                 "counts": {"target_beats_truth_with_context": 38, "target_beats_truth_without_context": 0}}
        rec["stats"] = {"edit_metrics": em}
        return rec

    claim = "IKE-incorrect gives the best forget quality of all methods"
    assert _verdicts(_study(**{"ike-incorrect": ike(0.4, 0.92)}))[claim]["verdict"] == tables.REPRODUCED
    f = _verdicts(_study(**{"ike-incorrect": ike(0.95, 0.92)}))[claim]      # it knew the target without its context
    assert f["verdict"] == tables.NOT_TESTABLE and "the context lifts it" in f["premises"]
    rows = gates.ike_gates("ike-incorrect", ike(0.4, 0.92, requests_only=True), {})   # 4 requests only: unknown
    assert {g["status"] for g in rows} == {gates.UNKNOWN} and "its 4 requests: 0.920" in rows[0]["context"]
    assert "the target beats the truth on 38" in gates.ike_gates("ike-incorrect", ike(0.4, 0.92), {})[0]["context"]


def test_wise_premises_read_the_routes_the_evaluation_took_not_prompts_scored_alone():
    """A WISE record with only the per-prompt read-out (prompts scored alone) leaves its premises
    unknown, the per-prompt share shown as context; the evaluation's own routes decide, the lower
    pass for the forget set, the higher for the others."""
    old = _rec("wise-dummy", "WISE", "dummy", 0.9, 1e-5)
    old["stats"] = {"routing": {"sets": {s: {"side_rate": 0.9} for s in ("forget", "retain", "real_authors", "world_facts")}}}
    rows = gates.wise_gates("wise-dummy", old)
    assert {g["status"] for g in rows} == {gates.UNKNOWN} and "prompts scored alone: 0.900" in rows[0]["context"]
    rec = _wise("wise-dummy", 0.9, 0.05)
    rec["stats"]["eval_routing"]["forget"]["generate"]["token_rows_routed"] = 0      # generation not routed
    rec["stats"]["eval_routing"]["retain"]["loss"]["prompt_rows_routed"] = 100     # loss pass all routed
    rows = {g["short"]: g for g in gates.wise_gates("wise-dummy", rec)}
    assert rows["forget prompts routed"]["status"] == gates.FAILS and rows["forget prompts routed"]["value"] < 0.1
    assert rows["retain prompts routed"]["status"] == gates.FAILS
    assert rows["world-fact prompts routed"]["status"] == gates.HOLDS


def test_each_verdict_says_how_many_seeds_its_runs_rest_on(monkeypatch):
    rng = np.random.default_rng(4)
    retain, full = _logs(rng), _logs(rng)
    recs = {"full": _rec("full", "subject model", None, 0.9, 1e-6), "run": _rec("run", "gd", None, 0.9, 0.2),
            "other": _rec("other", "gd", None, 0.9, 0.2)}
    boot = joint_bootstrap.JointBootstrap({"full": [full], "run": [_logs(rng), _logs(rng), _logs(rng)],
                                           "other": [_logs(rng)]}, retain, n_resamples=100)
    both = findings.Finding("toy", findings.AUTHORS, lambda runs: ["run", "other"], findings._at_least("mu/full", 0.0),
                            "MU / MU(full) >= 0", lambda g: "", needs=("full",))
    one = findings.Finding("toy", findings.AUTHORS, lambda runs: ["run"], findings._at_least("mu/full", 0.0),
                           "MU / MU(full) >= 0", lambda g: "", needs=("full",))
    monkeypatch.setattr(findings, "FINDINGS", [both, one])
    assert [f["seeds"] for f in findings.evaluate(recs, boot)] == ["1-3", "3"]
    assert [f["seeds"] for f in findings.evaluate(recs, None)] == ["1", "1"]   # the records' own numbers
    assert "| seeds |" in findings.markdown(findings.evaluate(recs, boot)[:0])
