"""Row-bootstrap intervals (unedit_lib/eval/uncertainty.py) on TOFU's own Llama-2 logs and synthetic ones."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest

from unedit_lib.core import paths, presets, store
from unedit_lib.eval import evaluate as ev, uncertainty
from unedit_lib.report import tables
from unedit_lib.study import runner

FX = Path(__file__).parent / "fixtures" / "tofu_legacy"


@pytest.fixture(scope="module")
def tofu_logs():
    return store.load_eval_logs(FX / "llama2-7b_full"), store.load_eval_logs(FX / "llama2-7b_retain90")


def test_row_scores_average_to_the_evaluators_metrics(tofu_logs):
    full, _ = tofu_logs
    for s in ev.EVAL_SETS:
        rows, agg = uncertainty.row_scores(full[s], s), ev.set_metrics(full[s], s)
        for m in ev.METRICS:
            assert float(np.mean(rows[m])) == agg[m], (s, m)     # exactly the evaluator's numbers


def test_intervals_bracket_the_point_and_are_deterministic(tofu_logs):
    full, retain = tofu_logs
    iv = uncertainty.bootstrap_intervals(full, retain)
    s = ev.summarize(full, retain)
    assert iv["point"] == {"forget/rouge": s["metrics"]["forget"]["rouge"], "model_utility": s["model_utility"],
                           "forget_quality": s["forget_quality"]}
    for k in uncertainty.KEYS:
        lo, hi = iv[k]
        assert lo < iv["point"][k] < hi, k
    assert iv["n_resamples"] == 1000 and iv["n_rows"] == {"forget": 300, "retain": 300, "real_authors": 100, "world_facts": 117}
    assert uncertainty.bootstrap_intervals(full, retain) == iv                      # fixed seed
    other = uncertainty.bootstrap_intervals(full, retain, seed=1)
    assert other["model_utility"] != iv["model_utility"]
    # TOFU's full Llama-2: MU 0.623 from 517 rows is known to about +-0.03, FQ to many orders of magnitude
    assert 0.01 < iv["model_utility"][1] - iv["model_utility"][0] < 0.1
    assert iv["forget_quality"][1] / iv["forget_quality"][0] > 1e6


def test_forget_quality_interval_of_a_model_near_the_retain_model(tofu_logs):
    """A model whose forget truth ratios are the retain model's plus noise: FQ mid-range, bracketed;
    the retain model against itself: exactly 1 in every resample (the rows are paired)."""
    _, retain = tofu_logs
    rng = np.random.default_rng(1)
    near = copy.deepcopy(retain)
    for k in near["forget"]["avg_paraphrased_loss"]:
        near["forget"]["avg_paraphrased_loss"][k] += 0.2 * rng.normal()
    iv = uncertainty.bootstrap_intervals(near, retain, n_resamples=300)
    assert 0.05 < iv["point"]["forget_quality"] < 0.95
    assert iv["forget_quality"][0] < iv["point"]["forget_quality"] < iv["forget_quality"][1]
    assert "model_utility" not in iv                                    # no utility sets in these logs
    assert uncertainty.bootstrap_intervals(retain, retain, n_resamples=100)["forget_quality"] == [1.0, 1.0]
    with pytest.raises(ValueError, match="at least 100 resamples"):
        uncertainty.bootstrap_intervals(retain, retain, n_resamples=10)


def test_record_intervals_stores_them_in_the_record(tofu_logs, tmp_path, monkeypatch):
    full, retain = tofu_logs
    monkeypatch.setenv("UNEDIT_RESULTS_DIR", str(tmp_path / "results"))
    p = presets.get_preset("smoke")
    for run, logs in (("retain", retain), ("full", full)):
        store.save_eval_logs(logs, paths.logs_dir("smoke", run))
        store.save_record("smoke", run, runner.record_for(p, run, method="subject model", target=None, seed=0,
                                                          summary=ev.summarize(logs, retain)))
    iv = uncertainty.record_intervals("smoke", "full", n_resamples=200)
    rec = json.loads((tmp_path / "results" / "smoke" / "full.json").read_text())
    assert rec["intervals"] == iv and uncertainty.intervals_of(rec)["model_utility"] == tuple(iv["model_utility"])
    t = tables.main_table({"full": store.load_results("smoke")["full"]})
    assert t.loc["full", "forget_quality lo"] == iv["forget_quality"][0]
    with pytest.raises(FileNotFoundError, match="no record of run 'gd'"):
        uncertainty.record_intervals("smoke", "gd")
    store.save_record("smoke", "ga", runner.record_for(p, "ga", method="ga", target=None, seed=0,
                                                       collapsed={"step": 3, "reason": "loss is nan"}))
    assert uncertainty.record_all_intervals("smoke", n_resamples=100) == {"retain": "stored", "full": "stored",
                                                                          "ga": "collapsed"}
