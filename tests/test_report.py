"""The study's tables (unedit_lib/report/tables.py) and the paper's numbers (unedit_lib/core/reference.py)."""
import math

import pytest
from scipy.stats import hmean

from unedit_lib.core import reference, store
from unedit_lib.eval.evaluate import EVAL_SETS, METRICS
from unedit_lib.report import tables


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
    rows = [reference.paper_row(run) for run in reference.paper_runs()]
    rows += [reference.paper_ike_generation_row(f"ike-{t}") for t in ("dummy", "incorrect", "avoidant")]
    for row in rows:
        run = row["paper_run"]
        vals = [row[c] for c in reference.PAPER_COLUMNS[:9]]
        if any(math.isnan(v) for v in vals) or math.isnan(row["model_utility"]):
            continue
        mu = 0.0 if min(vals) == 0 else hmean(vals)
        assert mu == pytest.approx(row["model_utility"], abs=2e-4), run
    assert reference.paper_row("npo") is None and reference.paper_edit_metrics("rome-dummy")["rewrite_acc"] == 0.985


def test_a_run_name_reads_back_as_it_was_written():
    """run_names is the one grammar: every reader gets back the method, target, settings and seed."""
    from unedit_lib.core import run_names

    for base in ("rome-dummy", "wise-dummy-rawprompt", "rome-dummy+v_lr=0.1", "ga+lr=0.0001", "ga"):
        for seed in (0, 1, 12):
            assert run_names.split_seed(run_names.run_name(base, seed)) == (base, seed)
    for method, target in (("rome", "dummy"), ("ike", "avoidant"), ("ga", None), ("npo", None)):
        for seed in (0, 2):
            for changed in ({}, {"v_lr": 0.1, "layers": [5, 6]}):
                run = run_names.run_name(run_names.base_name(method, target), seed, changed)
                assert run_names.parts(run) == (method, target, seed), run
                assert run_names.is_variant(run) == bool(changed), run
    assert run_names.parts("wise-dummy-rawprompt-s1") == ("wise", "dummy", 1)
    assert run_names.parts("full") == ("full", None, 0)


def test_main_table_aggregates_seeds_and_keeps_collapsed_runs():
    recs = {"full": _rec("full", "subject model", None, 0.9, 1e-6),
            "retain": _rec("retain", "subject model", None, 0.9, 1.0),
            "rome-dummy": _rec("rome-dummy", "ROME", "dummy", 0.6, 0.1, times=[1.0, 3.0]),
            "rome-dummy-s1": _rec("rome-dummy-s1", "ROME", "dummy", 0.8, 0.3, times=[2.0]),
            "rome-avoidant": _rec("rome-avoidant", "ROME", "avoidant", 0, 0, collapsed=True),
            "ga": _rec("ga", "ga", None, 0.0, 1e-3)}
    t = tables.main_table(recs)
    assert list(t.index) == ["full", "retain", "rome-avoidant", "rome-dummy", "ga"]
    assert t.loc["rome-dummy", "model_utility"] == pytest.approx(0.7)
    assert t.loc["rome-dummy", "model_utility sd"] == pytest.approx(math.sqrt(0.02))   # sample sd of 0.6, 0.8
    assert t.loc["rome-dummy", "n_seeds"] == 2 and t.loc["rome-dummy", "ms_per_edit"] == pytest.approx(2000.0)
    assert math.isnan(t.loc["rome-avoidant", "model_utility"]) and "1 of 1 seeds" in t.loc["rome-avoidant", "collapsed"]
    only0 = tables.main_table(recs, seeds=[0])
    assert only0.loc["rome-dummy", "model_utility"] == pytest.approx(0.6) and only0.loc["rome-dummy", "n_seeds"] == 1
    md = tables.markdown_table(t)
    assert "| rome-dummy |" in md and "0.700 ± 0.141" in md and "collapsed" in md


# --------------------------------------------------------------------------- premise gates and verdicts
def _rome(run, rewrite, mu=0.4, fq=0.2):
    rec = _rec(run, "ROME", run.split("-")[1], mu, fq)
    rec["edit_metrics"] = {"pre_rewrite_acc_mean": 0.0, "rewrite_acc_mean": rewrite, "n_edits": 10}
    return rec


def _wise(run, forget, retain, ra, wf=None, mu=0.9, rouge=0.98):
    rec = _rec(run, "WISE", run.split("-")[1], mu, 1e-5, rouge=rouge)
    sets = {"forget": forget, "retain": retain, "real_authors": ra, "world_facts": wf}
    rec["stats"] = {"eval_routing": {s: {kind: {"prompt_rows": 10, "prompt_rows_routed": round(10 * v)}
                                         for kind in ("loss", "generate")} for s, v in sets.items() if v is not None}}
    return rec


def test_gates_read_the_records_and_report_unknown():
    from unedit_lib.report import gates

    recs = {"rome-dummy": _rome("rome-dummy", 0.9), "rome-incorrect": _rome("rome-incorrect", 0.1),
            "wise-dummy": _wise("wise-dummy", 0.9, 0.1, 0.05),                       # no world-fact routing
            "ike-dummy": _rec("ike-dummy", "IKE", "dummy", 0.5, 0.1), "ga": _rec("ga", "ga", None, 0.0, 1e-3)}
    recs["ike-dummy"]["stats"] = {"edit_metrics": {"forget_rows": {"n": 40, "means": {
        "rewrite_acc_with_context": 1.0, "rewrite_acc_without_context": 0.0, "rewrite_acc_lift": 1.0}}}}
    t = gates.gate_table(recs).set_index(["run", "gate"])["status"]
    assert t["rome-dummy"].tolist() == ["holds"] and t["rome-incorrect"].tolist() == ["fails"]
    assert t["wise-dummy"].tolist() == ["holds", "holds", "holds", "unknown"]   # forget, retain, RA, WF
    assert t["ike-dummy"].tolist() == ["holds", "holds"]                       # its contexts give the target
    assert "ga" not in t.index.get_level_values(0)                             # baselines have no premises
    assert set(gates.gate_table(recs, methods="ROME")["run"]) == {"rome-dummy", "rome-incorrect"}
    recs["full"] = _rec("full", "subject model", None, 0.9, 1e-6)
    recs["full"]["in_context_probe"] = gates.probe_summary({"follow_rate_with_context": 0.1, "n": 40, "items": None})
    t = gates.gate_table(recs).set_index(["run", "gate"])
    assert t.loc["ike-dummy", "status"].tolist() == ["holds", "holds"]        # the probe describes, gates nothing
    # the threshold is a stated constant: exactly at it, a ">=" gate holds
    assert gates.rome_gates("r", _rome("rome-dummy", gates.EDITS_TAKE_MIN))[0]["status"] == "holds"
    assert "0.100 (needs >= 0.8" in gates.describe(gates.rome_gates("rome-incorrect", recs["rome-incorrect"])[0])


def test_main_table_keeps_a_records_intervals_while_they_match_its_numbers():
    rec = _rome("rome-dummy", 0.95, mu=0.85, fq=0.2)
    rec["intervals"] = {"point": {"forget_quality": 0.2, "model_utility": 0.85, "forget/rouge": 0.5},
                        "forget_quality": [0.01, 0.6], "model_utility": [0.8, 0.9], "forget/rouge": [0.4, 0.6]}
    t = tables.main_table({"rome-dummy": rec})
    assert (t.loc["rome-dummy", "forget_quality lo"], t.loc["rome-dummy", "forget_quality hi"]) == (0.01, 0.6)
    assert "0.850 [0.800, 0.900]" in tables.markdown_table(t)
    rec["intervals"]["point"]["forget_quality"] = 0.3                  # stale: made from other numbers
    t = tables.main_table({"rome-dummy": rec})
    assert math.isnan(t.loc["rome-dummy", "forget_quality lo"]) and t.loc["rome-dummy", "model_utility lo"] == 0.8


def test_in_context_probe_is_stored_in_the_full_models_record(tmp_path, monkeypatch):
    from unedit_lib.report import gates

    monkeypatch.setenv("UNEDIT_RESULTS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no record of run 'full'"):
        gates.record_in_context_probe("smoke", {"follow_rate_with_context": 0.7})
    store.write_json(_rec("full", "subject model", None, 0.9, 1e-6), tmp_path / "smoke" / "full.json")
    gates.record_in_context_probe("smoke", {"follow_rate_with_context": 0.7, "follow_rate_without_context": 0.0,
                                            "n": 20, "items": object()})
    probe = store.load_results("smoke")["full"]["in_context_probe"]
    assert probe == {"follow_rate_with_context": 0.7, "follow_rate_without_context": 0.0, "n": 20}


def test_forget_examples_come_from_the_record_without_per_item_logs(tmp_path, monkeypatch):
    """Per-item logs are not committed: the record keeps the first forget answers, and
    notebook 07's examples read them on a clone (logs deleted here)."""
    import shutil

    from unedit_lib.eval import evaluate

    monkeypatch.setenv("UNEDIT_RESULTS_DIR", str(tmp_path))
    gen = {str(i): [f"Question: q{i}?\nAnswer:", f"answer {i}", f"truth {i}"] for i in range(60)}
    summary = {"metrics": {}, "model_utility": 0.5, "forget_quality": 0.1}
    from unedit_lib.core import paths, presets
    from unedit_lib.study import runner

    logs = {"forget": {"generated_text": gen}}
    store.save_eval_logs(logs, paths.logs_dir("smoke", "rome-dummy"))
    store.save_record("smoke", "rome-dummy", runner.record_for(presets.get_preset("smoke"), "rome-dummy", method="ROME",
                                                               target="dummy", seed=0, summary=summary, logs=logs))
    rec = store.load_results("smoke")["rome-dummy"]
    assert len(rec["forget_answers"]) == evaluate.FORGET_ANSWERS_KEPT
    shutil.rmtree(tmp_path / "smoke" / "rome-dummy")
    ex = tables.forget_examples("smoke", ["rome-dummy"], n=3, every=7)
    assert [e["question"] for e in ex] == ["q0?", "q7?", "q14?"]
    assert ex[1] == {"question": "q7?", "truth": "truth 7", "answers": {"rome-dummy": "answer 7"}}


def test_rome_edit_table_reads_the_records():
    recs = {"rome-dummy": _rome("rome-dummy", 0.9), "rome-incorrect": _rec("rome-incorrect", "ROME", "incorrect", 0, 0,
                                                                          collapsed=True, times=[0.1, 0.3, 0.2])}
    t = tables.rome_edit_table(recs)
    assert t.loc["rome-dummy", "rewrite acc"] == 0.9 and t.loc["rome-dummy", "edits done"] == 0
    assert t.loc["rome-incorrect", "collapsed at edit"] == 3 and t.loc["rome-incorrect", "median ms / edit"] == 200
    assert tables.rome_edit_table({}).empty


def test_question_of_inverts_every_template():
    from unedit_lib.core.prompts import TEMPLATES, question_of

    q = "What gender is author Basil Mahfouz Al-Kuwaiti?"
    for t in TEMPLATES.values():
        assert question_of(t.prompt(q)) == q, t.name
    assert question_of("no template here") == "no template here"


def test_wise_eval_routing_table_shows_each_set_and_pass():
    rec = _wise("wise-dummy", 0.9, 0.1, 0.05)
    for passes in rec["stats"]["eval_routing"].values():
        for c in passes.values():
            c.update(calls=3, prompt_share=c["prompt_rows_routed"] / c["prompt_rows"])
    t = tables.wise_eval_routing_table({"wise-dummy": rec, "ga": _rec("ga", "ga", None, 0.0, 1e-3)})
    assert len(t) == 6 and t.loc[("wise-dummy", "forget", "generate"), "share of prompt rows"] == 0.9
    assert tables.wise_eval_routing_table({"ga": _rec("ga", "ga", None, 0.0, 1e-3)}).empty
