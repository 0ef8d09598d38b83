"""One unlearning run, the same way for every editor and baseline.

`run_unlearning` loads a fresh copy of the preset's full model, applies an unlearning
function (an editor's `edit` or a baseline's `unlearn`), evaluates the result on the four
TOFU sets against the retain model, and writes results/<preset>/<run>.json. A run that is
already there is reused unless `force`. A collapse (guards.ModelCollapsed during the edit,
or non-finite metrics after it) is recorded as `collapsed` with where and why, never as
numbers.
"""
from __future__ import annotations

import json
import time

from . import evaluate, models
from .guards import ModelCollapsed


def run_name(base: str, seed: int = 0) -> str:
    """`rome-dummy` for seed 0, `rome-dummy-s1` for seed 1, ..."""
    return base if seed == 0 else f"{base}-s{seed}"


def load_result(preset: str, run: str) -> dict | None:
    path = evaluate.results_dir(preset) / f"{run}.json"
    return json.loads(path.read_text()) if path.exists() else None


def run_unlearning(preset, run: str, method: str, target: str | None, apply, *, data_dir=None,
                   force: bool = False, seed: int = 0, extra: dict | None = None, progress: bool = True):
    """apply(model, tokenizer, stats) -> unlearned model (may be a wrapper, e.g. IKE's).

    Returns (record, model-or-None); `model` is None when the cached result was reused or
    the run collapsed. `stats` (filled by `apply`, and by a wrapper during evaluation) is
    stored in the record as `stats` when the record is written, after evaluation; with
    `timings.unlearn_s` the wall time of `apply`.
    """
    p = models.get_preset(preset)
    cached = None if force else load_result(p.name, run)
    if cached is not None and (cached.get("collapsed") or evaluate.cached_logs(p.name, run) is not None):
        return cached, None
    sd = models.study_data(p, data_dir)
    model, tok = models.load_subject_model(p, "full", data_dir)
    stats: dict = {}
    t0 = time.perf_counter()
    info = {"stats": stats, **(extra or {})}
    try:
        model = apply(model, tok, stats)
    except ModelCollapsed as e:
        evaluate.save_result(p.name, run, summary=None, method=method, target=target, collapsed=e.as_record(),
                             timings={"unlearn_s": time.perf_counter() - t0}, seed=seed, extra=info)
        return load_result(p.name, run), None
    timings = {"unlearn_s": time.perf_counter() - t0}
    try:
        evaluate.evaluate_and_save(p.name, run, model, tok, sd.eval_sets, template=p.template, method=method,
                                   target=target, force=True, timings=timings, seed=seed,
                                   extra=info, max_new_tokens=p.max_new_tokens, progress=progress)
    except evaluate.NonFiniteMetric as e:
        evaluate.save_result(p.name, run, summary=None, method=method, target=target,
                             collapsed={"step": "evaluation", "reason": str(e)}, timings=timings, seed=seed,
                             extra=info)
        return load_result(p.name, run), None
    return load_result(p.name, run), model
