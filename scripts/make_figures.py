"""Redraw the figures that need only the committed records (results/<preset>/*.json and
robustness.json), without re-running any notebook: after a change to unedit_lib/report/plots.py.

Figures drawn from models, causal-trace caches or per-item logs (subject_model_training,
subject_last_token_trace, trace_*) are left alone: the notebooks redraw them.
Usage: python scripts/make_figures.py [--preset tiny]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unedit_lib.core import paths, reference, store  # noqa: E402
from unedit_lib.core.paths import HEADLINE_PRESET  # noqa: E402
from unedit_lib.report import figure_io, plots, tables  # noqa: E402
from unedit_lib.study import robustness  # noqa: E402


def redraw(preset: str, act_ratio: float = 0.88, ike_k: int = 16, curve_edits=(0, 1, 2, 3)) -> list[str]:
    """Every record-only figure of `preset`; returns the figure names drawn. act_ratio, ike_k
    and curve_edits are the notebooks' defaults (WISE's threshold ratio, IKE's k, the WISE
    edits whose training curves are drawn)."""
    import matplotlib.pyplot as plt

    records = store.load_results(preset)
    if not records:
        raise SystemExit(f"no results in {paths.results_dir(preset)}: run `make reproduce` first")
    table = tables.main_table(records)
    drawn = []

    def done(fig, name):
        plt.close(fig)
        drawn.append(name)

    done(plots.fq_vs_mu(table, preset), "fq_vs_mu.png")
    done(plots.per_set_bars(table, preset), "per_set_bars.png")
    by = {m: {r: rec for r, rec in records.items() if rec.get("method") == m} for m in ("ROME", "IKE", "WISE")}
    rome_runs = {r: rec for r, rec in store.load_results(preset, include_ablations=True).items()
                 if rec.get("method") == "ROME"}                  # notebook 03 draws its ablations too
    if rome_runs:
        done(plots.rome_edit_curves(rome_runs, preset), "rome_sequential_edits.png")
    base = {r: rec for r, rec in records.items() if (rec.get("stats") or {}).get("loss_curve") is not None}
    if base:
        done(plots.baseline_loss_curves(base, preset), "baselines_loss_curves.png")
    wise = {r: rec for r, rec in by["WISE"].items() if (rec.get("stats") or {}).get("routing")}
    if wise:
        extra = {r: {"prompt-only threshold": act_ratio * min(rec["stats"]["in_scores_prompt"])} for r, rec in wise.items()}
        done(plots.wise_routing_histograms({r: rec["stats"]["routing"] for r, rec in wise.items()}, preset, extra),
             "wise_routing_scores.png")
        order = ["wise-dummy", "wise-incorrect", "wise-avoidant"]          # notebook 05: its first target
        first = sorted(wise, key=lambda r: (order.index(r) if r in order else len(order), r))[0]
        done(plots.wise_training_curves(wise[first]["stats"], preset, edits=curve_edits,
                                        title=f"{first}: side-memory training ({preset})"), "wise_training_curve.png")
    if by["IKE"]:
        hists = {r: ((rec.get("stats") or {}).get("eval") or {}).get("demos_used") or {} for r, rec in by["IKE"].items()}
        if any(hists.values()):
            done(plots.ike_demos_kept(hists, ike_k, preset), "ike_demos_kept.png")
        cols = ["forget/rouge", "forget/prob", "retain/rouge", "model_utility", "forget_quality"]
        runs_ = [r for r in ("full", "retain", *sorted(by["IKE"])) if r in table.index]
        paper = reference.paper_table()
        paper = paper.loc[[r for r in runs_ if r in paper.index], [c for c in cols if c in paper.columns]]
        done(plots.ike_vs_paper(table.loc[runs_, cols].astype(float), paper.astype(float), preset), "ike_vs_paper.png")
    rob = robustness.load_summary(preset)
    if rob:
        rob = {r: v for r, v in rob.items() if not r.startswith("_")}
        done(plots.robustness_recovery(rob, preset), "robustness_recovery.png")
        done(plots.probe_by_layer(rob, preset), "robustness_probe_layers.png")
    return drawn


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default=HEADLINE_PRESET)
    a = ap.parse_args()
    names = redraw(a.preset)
    print(f"redrew {len(names)} figures of preset {a.preset} into {figure_io.figure_path(a.preset, names[0]).parent}: "
          + ", ".join(names))
