"""One joint paired bootstrap over the evaluated rows of every run of a study: the statistics
behind the verdicts (findings.py) and the intervals beside the headline numbers.

Every run is evaluated on the same questions (TOFU's forget, retain, real-author and world-fact
rows), so the rows are the unit that is resampled, and they are resampled *jointly*: one draw of
row indices per set and resample, applied to every run, every seed of a run and the retain model
whose forget rows forget quality compares with. Differences and ratios between runs (MU / MU(full),
"run A's FQ above run B's") are then paired, as the data are. With several seeds a resample also
draws the seeds of each run with replacement and averages them (Efron & Tibshirani 1993, ch. 13:
resample the independent units, here rows and seeds).

Forget quality is a KS test (tofu.md 2.5) on a lattice: with n forget rows its statistic is
D = k/n and its p-value takes one value per k, so it is reported with D and n. A resample that
repeats rows biases the supremum D upwards (rome-dummy on smollm2-forget01: resampled D averages 0.248
against the point 0.200), so the resampled D is reflected about the point, D* = 2 D - D_b
clipped to [0, 1] (the basic bootstrap, Davison & Hinkley 1997, section 5.2), and FQ* is the KS
p-value of D* for the same n (`fq_of_d`). Model utility and ROUGE means are smooth in the rows and
enter as they are resampled (percentile). A rule's probability is the share of resamples in which
it holds (findings.py decides "reproduced" / "not reproduced" only beyond LEVEL either way).

What it does not cover: a rerun's float noise across CPUs and the variance of fine-tuning, except
through seeds where a run has several.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import stats

from . import evaluate
from .uncertainty import row_scores

N_RESAMPLES = 1000
SEED = 0
LEVEL = 0.95        # a rule "holds" / "fails" when its probability is beyond this either way


def ks_d(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample KS statistic sup |F_a - F_b| (as scipy.stats.ks_2samp computes it)."""
    pooled = np.concatenate([a, b])
    fa = np.searchsorted(np.sort(a), pooled, side="right") / len(a)
    fb = np.searchsorted(np.sort(b), pooled, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


@lru_cache(maxsize=64)
def _fq_table(n: int) -> np.ndarray:
    """KS p-value of D = k/n for k = 0..n (two samples of n rows), as scipy.stats.ks_2samp gives it:
    samples with no ties whose statistic is exactly k/n (0..n-1 against the same shifted by k)."""
    a = np.arange(n, dtype=np.float64)
    return np.array([1.0] + [stats.ks_2samp(a, a + k).pvalue for k in range(1, n + 1)])


def fq_of_d(d, n: int):
    """Forget quality (KS p-value) of statistic(s) `d` for two samples of n rows (d on the k/n lattice)."""
    k = np.clip(np.rint(np.asarray(d, dtype=np.float64) * n).astype(int), 0, n)
    return _fq_table(n)[k]


def _set_means(rows: dict, draws: np.ndarray | None) -> dict:
    """{metric: mean per resample} (draws: (B, n) indices) or the point means (draws None)."""
    return {m: (v[draws].mean(1) if draws is not None else np.asarray([v.mean()])) for m, v in rows.items()}


def _utility(means: dict) -> np.ndarray:
    """evaluate.model_utility (harmonic mean of the 9 utility numbers), vectorised over resamples."""
    vals = np.stack([means[s][m] for s in evaluate.UTILITY_SETS for m in evaluate.METRICS])
    out = np.zeros(vals.shape[1])
    ok = (vals > 0).all(axis=0)
    out[ok] = stats.hmean(vals[:, ok], axis=0)
    return out


class JointBootstrap:
    """Per run, the headline numbers at the point and in each of `n_resamples` joint resamples.

    runs: {run: [logs of each seed]} (store.load_eval_logs folders: {set: TOFU legacy log}); the
    retain model's logs (`retain`) give forget quality. `point[run]` and `samples[run]` ({key:
    value} / {key: array of n_resamples}) hold: "<set>/<metric>" for the 4 sets x rouge, prob,
    truth_ratio; "model_utility"; "ks_statistic" and "forget_quality" (reflected, see the module
    docstring); "n_forget". Runs whose logs cover other rows than the retain model's are refused."""

    def __init__(self, runs: dict, retain: dict, n_resamples: int = N_RESAMPLES, seed: int = SEED):
        if n_resamples < 100:
            raise ValueError(f"n_resamples={n_resamples}: a probability of a rule needs at least 100 resamples (use 1000)")
        self.n_resamples, self.seed = n_resamples, seed
        rng = np.random.default_rng(seed)
        n = {s: len(retain[s]["rougeL_recall"]) for s in evaluate.EVAL_SETS if s in retain}
        for run, seeds in runs.items():
            for logs in seeds:
                for s in n:
                    if s in logs and len(logs[s]["rougeL_recall"]) != n[s]:
                        raise ValueError(f"run {run!r}: its {s} log has {len(logs[s]['rougeL_recall'])} rows, the "
                                         f"retain model's {n[s]}: a joint bootstrap pairs runs on the same rows")
        self.n = n
        self.draws = {s: rng.integers(0, n[s], size=(n_resamples, n[s])) for s in evaluate.EVAL_SETS if s in n}
        self.seed_draws = {run: rng.integers(0, len(seeds), size=(n_resamples, len(seeds)))
                           for run, seeds in sorted(runs.items())}
        self._retain_tr = evaluate.truth_ratios(retain["forget"])
        self.point, self.samples = {}, {}
        for run, seeds in runs.items():
            per_seed = [self._numbers(logs, None) for logs in seeds]
            self.point[run] = {k: float(np.mean([p[k][0] for p in per_seed])) for k in per_seed[0]}
            # the point FQ of several seeds: of their mean D (each seed's D is on the lattice of n)
            if "ks_statistic" in self.point[run]:
                d = np.mean([p["ks_statistic"][0] for p in per_seed])
                self.point[run]["forget_quality"] = float(fq_of_d(d, self.n["forget"]))
            sampled = [self._numbers(logs, self.draws) for logs in seeds]
            cols = np.arange(n_resamples)[:, None]
            self.samples[run] = {k: np.stack([x[k] for x in sampled])[self.seed_draws[run], cols].mean(1)
                                 for k in sampled[0]}
            if "ks_statistic" in self.samples[run]:     # the basic bootstrap of D, then its p-value
                d_star = np.clip(2 * self.point[run]["ks_statistic"] - self.samples[run]["ks_statistic"], 0, 1)
                self.samples[run]["ks_statistic"] = d_star
                self.samples[run]["forget_quality"] = fq_of_d(d_star, self.n["forget"])

    def _numbers(self, logs: dict, draws) -> dict:
        """{key: array} of one seed's logs: point (length 1) or per resample."""
        out = {}
        means = {}
        for s in evaluate.EVAL_SETS:
            if s not in logs:
                continue
            means[s] = _set_means(row_scores(logs[s], s), None if draws is None else draws[s])
            for m, v in means[s].items():
                out[f"{s}/{m}"] = v
        if all(s in means for s in evaluate.UTILITY_SETS):
            out["model_utility"] = _utility(means)
        if "forget" in logs:
            a = evaluate.truth_ratios(logs["forget"])
            idx = [np.arange(len(a))] if draws is None else draws["forget"]
            out["ks_statistic"] = np.array([ks_d(a[i], self._retain_tr[i]) for i in idx])
        return out

    # ------------------------------------------------------------------ reading it
    def value(self, run: str, key: str, b: int | None = None):
        """A number of a run at the point (b None) or in resample b; None when absent."""
        src = self.point.get(run) if b is None else self.samples.get(run)
        if src is None or key not in src:
            return None
        return float(src[key]) if b is None else float(src[key][b])

    def interval(self, run: str, key: str, level: float = LEVEL) -> tuple[float, float] | None:
        """Percentile interval of a number over the resamples (D and FQ: of the reflected values)."""
        if run not in self.samples or key not in self.samples[run]:
            return None
        a = 100 * (1 - level) / 2
        lo, hi = np.percentile(self.samples[run][key], [a, 100 - a])
        return float(lo), float(hi)

    def ratio_interval(self, run: str, base: str, key: str = "model_utility", level: float = LEVEL):
        """Paired percentile interval of key(run) / key(base) (the same resampled rows for both)."""
        if run not in self.samples or base not in self.samples:
            return None
        num, den = self.samples[run][key], self.samples[base][key]
        ratio = np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)
        a = 100 * (1 - level) / 2
        lo, hi = np.nanpercentile(ratio, [a, 100 - a])
        return float(lo), float(hi)


def annotate(table, boot: JointBootstrap | None, level: float = LEVEL):
    """tables.main_table with the joint bootstrap's intervals in place of the per-record ones: forget
    ROUGE and MU percentile intervals, the KS statistic D with its (reflected) interval instead of an
    interval of FQ's p-value, and MU / MU(full) with its paired interval. Runs without logs keep no
    interval (NaN)."""
    import pandas as pd

    t = table.copy()
    for col in ("ks_statistic", "ks_statistic lo", "ks_statistic hi", "mu/full", "mu/full lo", "mu/full hi"):
        t[col] = math.nan
    t["forget_quality lo"] = t["forget_quality hi"] = math.nan
    mu_full = t.loc["full", "model_utility"] if "full" in t.index else math.nan
    for run in t.index:
        t.loc[run, "mu/full"] = t.loc[run, "model_utility"] / mu_full if mu_full else math.nan
        if boot is None or run not in boot.point:
            t.loc[run, ["model_utility lo", "model_utility hi", "forget/rouge lo", "forget/rouge hi"]] = math.nan
            continue
        t.loc[run, "ks_statistic"] = boot.value(run, "ks_statistic")
        for key in ("ks_statistic", "model_utility", "forget/rouge"):
            iv = boot.interval(run, key, level)
            t.loc[run, [f"{key} lo", f"{key} hi"]] = iv if iv else (math.nan, math.nan)
        iv = boot.ratio_interval(run, "full", level=level) if "full" in boot.point else None
        t.loc[run, ["mu/full lo", "mu/full hi"]] = iv if iv else (math.nan, math.nan)
    return pd.DataFrame(t)


def describe_fq(fq, d, n) -> str:
    """'0.405 (D = 0.200, n = 40)'."""
    if fq is None or d is None or not math.isfinite(fq):
        return "n/a"
    return f"{fq:.3g} (D = {d:.3f}, n = {n})"
