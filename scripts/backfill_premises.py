"""Add to finished IKE and WISE records the numbers their premises are read from (gates.py), where
the record was made before runs recorded them. No metric of the record changes.

* IKE: `stats.edit_metrics.forget_rows`, the target's rewrite accuracy and whether it beats the
  truth on every forget row, with the context the evaluator retrieves for it and without. The run's
  method is applied again (its prompts: IKE changes no weight), which computes them.
* WISE: `stats.eval_routing`, the routes the evaluation took per set and pass. The run's edits are
  made again and the evaluation rerun with the route watch (recipes.wise_eval_routes); the re-made
  evaluation must give the record's metrics (`--tol`, absolute, on MU, FQ and every set's ROUGE
  and probability), else nothing is written: rerun the run with force=True instead.

Either way the re-made model must give the record's answer losses on the first forget questions
(recipes.remake_unlearned). The record gains `backfilled`: what was added, when, and the arithmetic
it was computed with (runner.precision_record: the CPU, its flags, the threads).
Notebook 08's attack cache follows the record's new hash. Usage:

    python scripts/backfill_premises.py --preset smollm2-forget01 [--runs ike-dummy wise-dummy ...] [--dry-run]

Default runs: every IKE and WISE record of the preset that lacks its premise numbers (ablations too).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from unedit_lib.core import paths, presets, store  # noqa: E402
from unedit_lib.eval import evaluate  # noqa: E402
from unedit_lib.study import recipes, robustness, runner  # noqa: E402
from unedit_lib.subject import models  # noqa: E402

NEEDS = {"IKE": ("edit_metrics", "forget_rows"), "WISE": ("eval_routing",)}


def lacking(rec: dict) -> bool:
    """Whether an IKE / WISE record lacks the numbers its premises are read from."""
    path = NEEDS.get(rec.get("method"))
    if path is None or rec.get("collapsed"):
        return False
    node = rec.get("stats") or {}
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return True
        node = node[key]
    return False


def _same_metrics(rec: dict, summary: dict, tol: float) -> list[str]:
    """The record's numbers that the re-made evaluation does not give to `tol` (empty: the same)."""
    pairs = [("model_utility", rec.get("model_utility"), summary.get("model_utility")),
             ("forget_quality", rec.get("forget_quality"), summary.get("forget_quality"))]
    for s, m in (rec.get("metrics") or {}).items():
        for k in ("rouge", "prob"):
            pairs.append((f"{s}/{k}", m.get(k), ((summary.get("metrics") or {}).get(s) or {}).get(k)))
    return [f"{n} {a:.4f} vs {b:.4f}" for n, a, b in pairs
            if a is not None and (b is None or abs(a - b) > tol)]


def backfill(preset: str, run: str, data_dir=None, tol: float = 1e-3) -> str:
    """Add the premise numbers to one record; returns what was done (raises on a refusal)."""
    p = presets.get_preset(preset)
    rec = store.load_record(p.name, run)
    t0 = time.perf_counter()
    model, tok, prompter, stats = recipes.remake_unlearned(p, run, data_dir)
    added = {}
    if rec["method"] == "IKE":
        added["edit_metrics.forget_rows"] = stats["edit_metrics"]["forget_rows"]
    else:
        routes: dict = {}
        sd = models.study_data(p, data_dir)
        logs = evaluate.evaluate_model(model, tok, sd.eval_sets, p.template, max_new_tokens=p.max_new_tokens,
                                       watch=recipes.wise_eval_routes(model, routes))
        off = _same_metrics(rec, runner.summarize_against_retain(p, run, logs), tol)
        if off:
            raise RuntimeError(f"{run}: the re-made evaluation does not give the record's numbers ({'; '.join(off)}): "
                               "nothing written; rerun the run with force=True to record its routes")
        added["eval_routing"] = routes["eval_routing"]
    new = dict(rec, stats=dict(rec.get("stats") or {}))
    for where, value in added.items():
        if where == "edit_metrics.forget_rows":
            new["stats"]["edit_metrics"] = {**new["stats"]["edit_metrics"], "forget_rows": value}
        else:
            new["stats"][where] = value
    new["backfilled"] = {"fields": [f"stats.{w}" for w in added], "by": "scripts/backfill_premises.py",
                         "date": time.strftime("%Y-%m-%d"), "precision": runner.precision_record(p),
                         "seconds": round(time.perf_counter() - t0, 1)}
    before = store.record_hash(p.name, run)
    store.write_json(new, paths.record_path(p.name, run))
    robustness.follow_record_hashes(p.name, {before: store.record_hash(p.name, run)})
    return f"{run}: added {', '.join(added)} ({new['backfilled']['seconds']:.0f} s)"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", required=True)
    ap.add_argument("--runs", nargs="*", default=None)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args()
    records = store.load_results(a.preset, include_ablations=True)
    runs = a.runs if a.runs is not None else [r for r, rec in records.items() if lacking(rec)]
    bad = [r for r in runs if r not in records or not lacking(records[r])]
    if bad:
        sys.exit(f"not IKE / WISE records lacking their premise numbers in results/{a.preset}/: {bad}")
    print(f"{len(runs)} record(s) of {a.preset} to backfill: {', '.join(runs) or '-'}")
    if a.dry_run:
        sys.exit(0)
    failed = []
    for run in runs:
        try:
            print(backfill(a.preset, run, a.data_dir, a.tol), flush=True)
        except (RuntimeError, recipes.CannotRebuild, runner.NotTheEvaluatedModel) as e:
            print(f"REFUSED {e}", flush=True)
            failed.append(run)
    sys.exit(1 if failed else 0)
