"""The study's tables (unedit_lib/report.py) and the paper's numbers (unedit_lib/reference.py)."""
import math

import pytest
from scipy.stats import hmean

from unedit_lib import reference, report
from unedit_lib.evaluate import EVAL_SETS, METRICS


def _rec(run, method, target, mu, fq, rouge=0.5, collapsed=False, times=None):
    metrics = {s: {m: rouge for m in METRICS} for s in EVAL_SETS}
    rec = {"run": run, "method": method, "target": target, "metrics": None if collapsed else metrics,
           "model_utility": None if collapsed else mu, "forget_quality": None if collapsed else fq,
           "collapsed": {"step": 3, "reason": "loss is nan"} if collapsed else False, "timings": {"unlearn_s": 10.0}}
    if times:
        rec["stats"] = {"edit_times_s": times}
    return rec


def test_paper_rows_are_consistent_with_their_model_utility():
    """Each typed paper row's MU is the harmonic mean of its 9 non-forget numbers (catches typos)."""
    for run in reference.paper_runs():
        row = reference.paper_row(run)
        vals = [row[c] for c in reference.PAPER_COLUMNS[:9]]
        if any(math.isnan(v) for v in vals) or math.isnan(row["model_utility"]):
            continue
        mu = 0.0 if min(vals) == 0 else hmean(vals)
        assert mu == pytest.approx(row["model_utility"], abs=2e-4), run
    assert reference.paper_row("npo") is None and reference.paper_edit_metrics("rome-dummy")["rewrite_acc"] == 0.985


def test_split_seed_inverts_run_name():
    from unedit_lib.runs import run_name

    for base in ("rome-dummy", "wise-dummy-rawprompt", "ga"):
        for seed in (0, 1, 12):
            assert report.split_seed(run_name(base, seed)) == (base, seed)


def test_main_table_aggregates_seeds_and_keeps_collapsed_runs():
    recs = {"full": _rec("full", "subject model", None, 0.9, 1e-6),
            "retain": _rec("retain", "subject model", None, 0.9, 1.0),
            "rome-dummy": _rec("rome-dummy", "ROME", "dummy", 0.6, 0.1, times=[1.0, 3.0]),
            "rome-dummy-s1": _rec("rome-dummy-s1", "ROME", "dummy", 0.8, 0.3, times=[2.0]),
            "rome-avoidant": _rec("rome-avoidant", "ROME", "avoidant", 0, 0, collapsed=True),
            "ga": _rec("ga", "ga", None, 0.0, 1e-3)}
    t = report.main_table(recs)
    assert list(t.index) == ["full", "retain", "rome-avoidant", "rome-dummy", "ga"]
    assert t.loc["rome-dummy", "model_utility"] == pytest.approx(0.7)
    assert t.loc["rome-dummy", "model_utility sd"] == pytest.approx(math.sqrt(0.02))   # sample sd of 0.6, 0.8
    assert t.loc["rome-dummy", "n_seeds"] == 2 and t.loc["rome-dummy", "ms_per_edit"] == pytest.approx(2000.0)
    assert math.isnan(t.loc["rome-avoidant", "model_utility"]) and "1 of 1 seeds" in t.loc["rome-avoidant", "collapsed"]
    only0 = report.main_table(recs, seeds=[0])
    assert only0.loc["rome-dummy", "model_utility"] == pytest.approx(0.6) and only0.loc["rome-dummy", "n_seeds"] == 1
    md = report.markdown_table(t)
    assert "| rome-dummy |" in md and "0.700 ± 0.141" in md and "collapsed" in md


def test_findings_follow_the_numbers():
    base = {"full": _rec("full", "subject model", None, 0.9, 1e-6, rouge=0.99),
            "retain": _rec("retain", "subject model", None, 0.9, 1.0, rouge=0.5),
            "ike-incorrect": _rec("ike-incorrect", "IKE", "incorrect", 0.5, 0.3),
            "idk": _rec("idk", "idk", None, 0.8, 1e-5)}
    items = {f["finding"]: f for f in report.findings(report.main_table(base))}
    assert items["Editing can exceed the unlearning baselines in forget quality (abstract)"]["verdict"] == "reproduced"
    assert items["IKE-incorrect gives the best forget quality of all methods"]["verdict"] == "reproduced"
    assert items["GA destroys utility (MU -> 0)"]["verdict"] == "not comparable"          # not run
    base["idk"] = _rec("idk", "idk", None, 0.8, 0.9)                                       # a baseline forgets better
    items = {f["finding"]: f for f in report.findings(report.main_table(base))}
    assert items["Editing can exceed the unlearning baselines in forget quality (abstract)"]["verdict"] == "not reproduced"
    assert items["IKE-incorrect gives the best forget quality of all methods"]["verdict"] == "not reproduced"
    base["full"] = _rec("full", "subject model", None, 0.0, 1e-6)                          # no utility to compare to
    items = {f["finding"]: f for f in report.findings(report.main_table(base))}
    assert items["IKE costs utility"]["verdict"] == "not comparable"


def test_forget_examples_come_from_the_record_without_per_item_logs(tmp_path, monkeypatch):
    """Per-item logs are not committed: the record keeps the first forget answers, and
    notebook 07's examples read them on a clone (logs deleted here)."""
    import shutil

    from unedit_lib import evaluate

    monkeypatch.setenv("UNEDIT_RESULTS_DIR", str(tmp_path))
    gen = {str(i): [f"Question: q{i}?\nAnswer:", f"answer {i}", f"truth {i}"] for i in range(60)}
    summary = {"metrics": {}, "model_utility": 0.5, "forget_quality": 0.1}
    evaluate.save_result("smoke", "rome-dummy", summary=summary, logs={"forget": {"generated_text": gen}})
    rec = evaluate.load_results("smoke")["rome-dummy"]
    assert len(rec["forget_answers"]) == evaluate.FORGET_ANSWERS_KEPT
    shutil.rmtree(tmp_path / "smoke" / "rome-dummy")
    ex = report.forget_examples("smoke", ["rome-dummy"], n=3, every=7)
    assert [e["question"] for e in ex] == ["q0?", "q7?", "q14?"]
    assert ex[1] == {"question": "q7?", "truth": "truth 7", "answers": {"rome-dummy": "answer 7"}}
