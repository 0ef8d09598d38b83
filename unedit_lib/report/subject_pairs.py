"""How much the study moves when its subject models are fine-tuned again.

The joint bootstrap behind every verdict resamples the evaluated rows and a run's seeds; it does not
cover the subject models themselves. Re-fine-tuning them (same recipe, another seed) has moved forget
quality across 0.05 for single baselines on forget01. A preset names the presets that fine-tune its
recipe with another seed in its file (`[study] subject_pairs`); this module sets their numbers and
verdicts side by side: the same run on each pair, and each finding decided on each pair's runs.
"""
from __future__ import annotations

import pandas as pd

from ..core import presets, store
from .tables import NOT_COMPARABLE, NOT_TESTABLE, SUBJECT_MODEL_RUNS, base_records

METRICS = {"forget_quality": lambda r: r.get("forget_quality"), "model_utility": lambda r: r.get("model_utility"),
           "forget_rouge": lambda r: (((r.get("metrics") or {}).get("forget") or {}).get("rouge"))}


def pairs(preset) -> list[presets.Preset]:
    """The preset and its `subject_pairs`, each checked to be the same recipe but for the seed."""
    p = presets.get_preset(preset)
    out = [p] + [presets.get_preset(q) for q in p.subject_pairs if q != p.name]

    def recipe(q):
        return {k: v for k, v in q.recipe().items() if k not in ("name", "seed")}
    for q in out[1:]:
        differ = sorted(k for k in recipe(p) if recipe(p)[k] != recipe(q)[k])
        if differ:
            raise ValueError(f"preset {q.name} is named a subject pair of {p.name} but its recipe differs in more than "
                             f"the seed: {differ}; a subject pair fine-tunes the same recipe with another seed")
    seeds = [q.seed for q in out]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"subject pairs {[q.name for q in out]} share a fine-tuning seed ({seeds}): they are one pair")
    return out


def metric_table(preset, records_of: dict | None = None) -> pd.DataFrame:
    """One row per run made on at least two pairs (the subject models first): each metric on each pair
    (columns (metric, preset)) and its spread over the pairs (max - min). `records_of` ({preset name:
    records}) stands in for store.load_results."""
    ps = pairs(preset)
    recs = {}
    for q in ps:        # each run's lowest seed; a collapsed run has no numbers
        records = (records_of or {}).get(q.name) or store.load_results(q.name)
        recs[q.name] = base_records({r: rec for r, rec in records.items() if not rec.get("collapsed")})
    runs = [r for r in dict.fromkeys(r for q in ps for r in recs[q.name])
            if sum(r in recs[q.name] for q in ps) >= 2]
    order = {r: i for i, r in enumerate(SUBJECT_MODEL_RUNS)}      # full, retain, base (evaluated against retain)
    runs.sort(key=lambda r: (order.get(r, len(order)), r))
    rows = []
    for run in runs:
        row: dict = {}
        for metric, get in METRICS.items():
            vals = [get(recs[q.name][run]) if run in recs[q.name] else None for q in ps]
            for q, v in zip(ps, vals):
                row[(metric, label(q))] = v
            have = [v for v in vals if v is not None]
            row[(metric, "spread")] = max(have) - min(have) if len(have) >= 2 else None
        rows.append(row)
    table = pd.DataFrame(rows, index=pd.Index(runs, name="run"))
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["metric", "subject models"])
    return table


def label(q: presets.Preset) -> str:
    """A pair's column name: its preset and fine-tuning seed."""
    return f"{q.name} (seed {q.seed})"


def _decisions(decided: dict, i: int) -> list[str]:
    """The verdicts of finding `i` on the pairs that could decide it: "not comparable", "not testable
    here" and an "inconclusive" for want of runs of a target or editor the paper tested (a pair that
    makes one run of each editor, `editor_targets`) decide nothing."""
    return [rows[i]["verdict"] for rows in decided.values() if rows[i]["verdict"] not in (NOT_COMPARABLE, NOT_TESTABLE)
            and not rows[i].get("uncovered") and not rows[i].get("unmade")]


def agreement(decided: dict) -> tuple[int, int]:
    """(how many findings at least two pairs decide, on how many of those every pair's verdict is the
    same): `decided` as in verdict_table."""
    both = [set(v) for i in range(len(next(iter(decided.values()), []))) if len(v := _decisions(decided, i)) >= 2]
    return len(both), sum(len(v) == 1 for v in both)


def verdict_table(decided: dict) -> pd.DataFrame:
    """Each finding decided on each pair's runs side by side: `decided` is {label(pair): that pair's
    findings.study_findings rows}; per pair the verdict and P(rule holds), and whether the pairs that
    could decide it agree."""
    names = list(decided)
    rows = []
    for i, first in enumerate(decided[names[0]]):
        row = {"finding": first["finding"]}
        for name in names:
            item = decided[name][i]
            row[name] = item["verdict"] + (f" (P {item['probability']:.2f})" if item["probability"] is not None else "")
        verdicts = _decisions(decided, i)
        row["pairs agree"] = ("n/a: fewer than two pairs decide it" if len(verdicts) < 2 else
                              "yes" if len(set(verdicts)) == 1 else "no")
        rows.append(row)
    return pd.DataFrame(rows)
