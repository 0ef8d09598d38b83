"""ROME's premise gate over a stated v_lr grid: the smallest v_lr with which
edits take on a model, as a quick probe on copies of it. `recipes.rome_reproduction` runs the
study's whole runs; `recipes.rome_grid_probe` runs this probe with a run's own settings first.
"""
from __future__ import annotations

import copy

from ..core.architecture import architecture
from ..core.guards import ModelCollapsed
from ..eval import edit_metrics as em
from ..methods.rome import editor as rome
from ..report import gates

V_LR_GRID = (0.1, 0.2, 0.5, 1.0)   # the paper's 0.1, EasyEdit's 0.5, and the values between / above
REWRITE_GATE = gates.EDITS_TAKE_MIN   # "edits take": mean rewrite accuracy on the edit prompts (one threshold)


def smallest_v_lr_passing_gate(model, tok, requests, *, grid=V_LR_GRID, gate: float = REWRITE_GATE,
                               hp=None, stop_at_first: bool = True) -> dict:
    """The smallest v_lr of a stated `grid` with which ROME's edits take on this model.

    The premise gate: after editing all `requests` sequentially into a fresh copy
    of `model` (the argument is never modified) with `hp` (default the paper's) and v_lr = one grid
    value, the mean rewrite accuracy (`edit_metrics`, teacher-forced target tokens on the edit
    prompts) is >= `gate`. A quick probe on copies, without evaluation: the study itself climbs the
    grid with whole, recorded runs (`rome_reproduction`). Grid values are tried in ascending order; the chosen value is the first
    that passes, never one picked by a downstream finding. A collapsed run fails the gate (its
    reason is kept). With `stop_at_first`, larger values are not run once one passes.

    The context templates are generated once on the unedited model (as each run would: same
    model, same seed) and shared by every value. Returns a JSON-able dict: grid, gate, metric,
    paper_v_lr (the paper's 0.1) and paper_v_lr_holds (None if it is not in the grid), chosen
    (None if no value passes), and per_value: [{v_lr, rewrite_acc_mean, pre_rewrite_acc_mean,
    target_prob_mean, holds, collapsed}] for the values run.
    """
    grid = sorted(float(v) for v in grid)
    if not grid or grid[0] <= 0 or len(set(grid)) != len(grid):
        raise ValueError(f"v_lr grid must be distinct positive values, got {grid}")
    if not 0 < gate <= 1:
        raise ValueError(f"gate is a rewrite accuracy in (0, 1], got {gate}")
    if isinstance(requests, dict):
        requests = [requests]
    hp = hp or rome.PAPER_HPARAMS
    model.eval()
    arch = architecture(model)
    hp = hp.replace(layer=max(0, min(int(hp.layer), arch.n_layers - 1)))
    if hp.context_templates is None:
        hp = hp.replace(context_templates=rome.context_templates(model, tok, hp.context_template_length_params,
                                                            seed=hp.seed))
    def mean_rewrite(m):
        accs = [em.rewrite_accuracy(m, tok, r["prompt"], r["target"], answer_start=hp.answer_start, add_eos=hp.add_eos)
                for r in requests]
        return sum(accs) / len(accs)

    pre = mean_rewrite(model)
    per_value, chosen = [], None
    for v_lr in grid:
        row = {"v_lr": v_lr, "pre_rewrite_acc_mean": pre, "rewrite_acc_mean": None, "target_prob_mean": None,
               "collapsed": None}
        edited, stats = copy.deepcopy(model), {}
        try:
            rome.edit(edited, tok, requests, hp=hp.replace(v_lr=v_lr), stats=stats)
            row["rewrite_acc_mean"] = mean_rewrite(edited)
            row["target_prob_mean"] = sum(stats["target_prob"]) / len(stats["target_prob"])
        except ModelCollapsed as e:
            row["collapsed"] = f"edit {e.step}: {e.reason}"
        del edited
        row["holds"] = row["rewrite_acc_mean"] is not None and row["rewrite_acc_mean"] >= gate
        per_value.append(row)
        if row["holds"] and chosen is None:
            chosen = v_lr
            if stop_at_first:
                break
    paper = rome.PAPER_HPARAMS.v_lr
    paper_row = next((r for r in per_value if r["v_lr"] == paper), None)
    return {"grid": grid, "gate": gate, "metric": "mean rewrite accuracy on the edit prompts after all edits",
            "n_requests": len(requests), "chosen": chosen, "paper_v_lr": paper,
            "paper_v_lr_holds": paper_row["holds"] if paper_row else None, "per_value": per_value,
            "hparams": hp.replace(context_templates=None).record()}
