"""Detecting a broken model: NaN/inf weights, exploding weight norms, collapsed outputs.

Every editor and unlearning loop calls `check_health` after each edit / step; on failure
it raises `ModelCollapsed`, which the notebooks record as `collapsed` in the run's result
(never a result file full of NaN). The paper saw exactly this with ROME on long targets.
"""
from __future__ import annotations

import math

import torch


class ModelCollapsed(RuntimeError):
    """The model broke down at `step` (edit index or training step) for `reason`."""

    def __init__(self, step: int, reason: str):
        super().__init__(f"model collapsed at step {step}: {reason}")
        self.step = step
        self.reason = reason

    def as_record(self) -> dict:
        return {"step": self.step, "reason": self.reason}


def weight_norms(params) -> dict[str, float]:
    return {name: float(p.detach().float().norm()) for name, p in params}


def check_health(step: int, params, reference_norms: dict[str, float] | None = None,
                 max_norm_ratio: float = 10.0, loss: float | None = None) -> None:
    """Raise ModelCollapsed if any watched parameter is non-finite or its norm grew
    more than `max_norm_ratio` times its reference norm, or the loss is non-finite.

    `params` is an iterable of (name, tensor), e.g. the edited layers only (cheap).
    """
    if loss is not None and not math.isfinite(loss):
        raise ModelCollapsed(step, f"loss is {loss}")
    for name, p in params:
        t = p.detach()
        if not torch.isfinite(t).all():
            raise ModelCollapsed(step, f"non-finite values in {name}")
        if reference_norms and name in reference_norms and reference_norms[name] > 0:
            ratio = float(t.float().norm()) / reference_norms[name]
            if ratio > max_norm_ratio:
                raise ModelCollapsed(step, f"norm of {name} grew {ratio:.1f}x (limit {max_norm_ratio}x)")
