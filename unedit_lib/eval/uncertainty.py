"""Row-bootstrap intervals for a run's headline numbers: forget quality, model utility, forget ROUGE.

Each number is a statistic of the evaluated rows (tofu.md 2): forget ROUGE is a mean over the
forget rows; model utility the harmonic mean of 9 means over the retain, real-author and
world-fact rows; forget quality the KS p-value between this model's and the retain model's
per-row forget truth ratios. With 100-300 rows per set these numbers carry sampling noise, so
a verdict that hinges on them needs an interval.

`bootstrap_intervals(logs, retain_logs)`: a percentile bootstrap over rows (Efron & Tibshirani
1993, ch. 13), `N_RESAMPLES` = 1000 resamples, a fixed seed, 95%:
* every resample draws each set's rows with replacement (independently per set);
* forget ROUGE and the 9 utility components are the evaluator's per-row quantities
  (`row_scores`, whose means are exactly `evaluate.set_metrics`) averaged over the drawn rows,
  MU = `evaluate.model_utility` of those 9;
* forget quality: the same drawn forget rows for both models (the rows are the same questions,
  so they are resampled as pairs), then `scipy.stats.ks_2samp` as `evaluate.forget_quality`.
  Drawn rows repeat, so the KS test sees ties; its p-value is used as it comes. The KS
  statistic of a resample is a supremum, biased upwards, so for a model close to the retain
  model (p near 1) most resampled p-values fall below the point and the percentile interval
  can end just below it (seen at p = 0.996: [0.72, 0.9993]). These per-record intervals stay in
  the records; the tables and verdicts use one joint paired bootstrap of every run instead
  (joint_bootstrap.py: an interval on FQ's statistic D, not on its p-value, and paired ratios).
What the interval does not cover: the noise of the retain model's run beyond its rows, of
training (seeds), and of the full model's numbers that findings divide by.

`add_intervals(record, logs, retain_logs)` puts them into a run record (`record["intervals"]`;
runner.record_for does so for every evaluated run); `record_intervals(preset, run)` does so for a
finished run from its per-item logs and rewrites the record (`record_all_intervals`: every record
of a preset). `intervals_of(record)`
reads them back and drops intervals whose point estimates no longer match the record's numbers.
"""
from __future__ import annotations

import json
import math

import numpy as np
from scipy import stats

from ..core import paths, store
from . import evaluate

N_RESAMPLES = 1000
LEVEL = 0.95
SEED = 0
KEYS = ("forget_quality", "model_utility", "forget/rouge")
METHOD = "percentile bootstrap over rows (forget rows paired with the retain model's for FQ)"


def row_scores(log: dict, set_name: str) -> dict[str, np.ndarray]:
    """Per-row quantities whose means are `evaluate.set_metrics(log, set_name)`:
    rouge (ROUGE-L recall), prob (P̄(a|q), normalised against the wrong options on real authors /
    world facts) and truth_ratio (min(R, 1/R) on forget, max(0, 1 - R) elsewhere; tofu.md 2.2-2.4)."""
    v = evaluate._values
    p_true = np.exp(-np.array(v(log["avg_gt_loss"]), dtype=np.float64))
    if set_name in ("real_authors", "world_facts"):
        p_wrong = np.exp(-np.array([np.asarray(x, dtype=np.float64) for x in v(log["average_perturb_loss"])]))
        prob = p_true / (p_true + p_wrong.sum(axis=1))
    else:
        prob = p_true
    r = evaluate.truth_ratios(log)
    tr = np.minimum(r, 1 / r) if set_name == "forget" else np.maximum(0.0, 1 - r)
    return {"rouge": np.array(v(log["rougeL_recall"]), dtype=np.float64), "prob": prob, "truth_ratio": tr}


def _percentiles(samples, level: float) -> list[float]:
    a = 100 * (1 - level) / 2
    lo, hi = np.percentile(np.asarray(samples, dtype=np.float64), [a, 100 - a])
    return [float(lo), float(hi)]


def bootstrap_intervals(logs: dict, retain_logs: dict | None, n_resamples: int = N_RESAMPLES,
                        level: float = LEVEL, seed: int = SEED) -> dict:
    """Percentile-bootstrap intervals over rows for forget quality, model utility and forget ROUGE.

    logs / retain_logs: {set: TOFU legacy log} of the run and of the retain model (as the
    evaluator writes them; store.load_eval_logs). Without retain_logs (or a forget log)
    there is no FQ interval; without the three utility sets, no MU interval.
    Returns {"method", "n_resamples", "level", "seed", "n_rows", "point": {key: the evaluator's
    number}, "forget_quality" / "model_utility" / "forget/rouge": [lo, hi]}.
    """
    if n_resamples < 100:
        raise ValueError(f"n_resamples={n_resamples}: a percentile interval needs at least 100 resamples (use 1000)")
    if not 0 < level < 1:
        raise ValueError(f"level={level}: give the interval's coverage as a fraction, e.g. 0.95")
    rng = np.random.default_rng(seed)
    rows = {s: row_scores(logs[s], s) for s in evaluate.EVAL_SETS if s in logs}
    n = {s: len(r["rouge"]) for s, r in rows.items()}
    draws = {s: rng.integers(0, n[s], size=(n_resamples, n[s])) for s in rows}   # fixed order of sets: EVAL_SETS
    summary = evaluate.summarize(logs, retain_logs)
    out = {"method": METHOD, "n_resamples": n_resamples, "level": level, "seed": seed, "n_rows": n, "point": {}}
    if "forget" in rows:
        out["point"]["forget/rouge"] = summary["metrics"]["forget"]["rouge"]
        out["forget/rouge"] = _percentiles(rows["forget"]["rouge"][draws["forget"]].mean(1), level)
    if summary["model_utility"] is not None:
        means = {(s, m): rows[s][m][draws[s]].mean(1) for s in evaluate.UTILITY_SETS for m in evaluate.METRICS}
        mu = [evaluate.model_utility({s: {m: float(means[s, m][b]) for m in evaluate.METRICS}
                                      for s in evaluate.UTILITY_SETS}) for b in range(n_resamples)]
        out["point"]["model_utility"] = summary["model_utility"]
        out["model_utility"] = _percentiles(mu, level)
    if summary["forget_quality"] is not None:
        a = evaluate.truth_ratios(logs["forget"])
        b = evaluate.truth_ratios(retain_logs["forget"])
        fq = [stats.ks_2samp(a[i], b[i]).pvalue for i in draws["forget"]]
        out["point"]["forget_quality"] = summary["forget_quality"]
        out["forget_quality"] = _percentiles(fq, level)
    return out


def add_intervals(record: dict, logs: dict, retain_logs: dict | None, **kw) -> dict:
    """The record with `intervals` = bootstrap_intervals(logs, retain_logs, **kw) (a collapsed run
    has no numbers and gets none)."""
    if record.get("collapsed") or not logs:
        return record
    return {**record, "intervals": bootstrap_intervals(logs, retain_logs, **kw)}


def record_intervals(preset: str, run: str, retain_run: str = "retain", **kw) -> dict | None:
    """Compute the intervals of a finished run from its per-item logs (results/<preset>/<run>/)
    and the retain run's, and rewrite results/<preset>/<run>.json with them (atomically).
    Returns the intervals, or None for a collapsed run."""
    path = paths.record_path(preset, run)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no record of run {run!r}; evaluate it first")
    rec = json.loads(path.read_text())
    if rec.get("collapsed"):
        return None
    logs = store.cached_logs(preset, run)
    if logs is None:
        raise FileNotFoundError(f"results/{preset}/{run}/ has no per-item logs; re-evaluate the run "
                                "(force=True) to compute its intervals")
    retain_logs = logs if run == retain_run else store.cached_logs(preset, retain_run)
    if retain_logs is None:
        raise FileNotFoundError(f"results/{preset}/{retain_run}/ has no per-item logs: evaluate the retain model first")
    rec = add_intervals(rec, logs, retain_logs, **kw)
    store.write_json(rec, path)
    return rec["intervals"]


def record_all_intervals(preset: str, **kw) -> dict[str, str]:
    """`record_intervals` for every run record of a preset whose per-item logs are here (a record
    without intervals gets them). Returns {run: "stored" | "collapsed" |
    "no per-item logs"}; the retain run goes first (every FQ interval reads its logs)."""
    runs = sorted(store.load_results(preset), key=lambda r: r != "retain")
    out = {}
    for run in runs:
        try:
            out[run] = "stored" if record_intervals(preset, run, **kw) is not None else "collapsed"
        except FileNotFoundError:
            out[run] = "no per-item logs"
    return out


def intervals_of(record: dict, rel_tol: float = 1e-9) -> dict:
    """{key: (lo, hi)} of a record's stored intervals, for the keys whose stored point estimate
    still equals the record's number (an interval left from other numbers is dropped, not shown)."""
    iv = record.get("intervals") or {}
    flat = {"forget_quality": record.get("forget_quality"), "model_utility": record.get("model_utility"),
            "forget/rouge": ((record.get("metrics") or {}).get("forget") or {}).get("rouge")}
    out = {}
    for k in KEYS:
        point, ours = (iv.get("point") or {}).get(k), flat.get(k)
        if k in iv and point is not None and ours is not None and math.isclose(point, ours, rel_tol=rel_tol, abs_tol=0):
            out[k] = (float(iv[k][0]), float(iv[k][1]))
    return out
