"""One unlearning run, the same way for every editor and baseline.

`run_unlearning` loads a fresh copy of the preset's full model, applies an unlearning
function (an editor's `edit` or a baseline's `unlearn`), evaluates the result on the four
TOFU sets against the retain model, writes results/<preset>/<run>.json, and keeps the
unlearned model under artifacts/<preset>/unlearned/<full model>/<run>/ for later analyses
(notebook 08 attacks it). A run that is already there (its record, per-item logs and saved
model, made from the same full model) is reused unless `force`. A collapse
(guards.ModelCollapsed during the edit, or non-finite metrics after it) is recorded as
`collapsed` with where and why, never as numbers.

What is saved per kind of unlearned model (`save_unlearned` / `load_unlearned`):
* a plain Hugging Face model (ROME, the baselines): `save_pretrained` (safetensors);
* a WISE side memory: `wise.save_side_memory` (the main memory is the full model);
* an IKE wrapper: `ike.save_wrapper` (demonstrations and settings; no weights change).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from . import evaluate, models
from .guards import ModelCollapsed


def run_name(base: str, seed: int = 0) -> str:
    """`rome-dummy` for seed 0, `rome-dummy-s1` for seed 1, ..."""
    return base if seed == 0 else f"{base}-s{seed}"


def load_result(preset: str, run: str) -> dict | None:
    path = evaluate.results_dir(preset) / f"{run}.json"
    return json.loads(path.read_text()) if path.exists() else None


def subject_model_id(preset) -> str:
    """The full model a run starts from: its artifact folder name (`full-<config hash>`)."""
    return models.subject_model_path(preset, "full").name


def unlearned_path(preset, run: str) -> Path:
    """artifacts/<preset>/unlearned/<full model>/<run>/"""
    p = models.get_preset(preset)
    return models.ARTIFACTS / p.name / "unlearned" / subject_model_id(p) / run


def save_unlearned(preset, run: str, model, tokenizer) -> Path:
    """Keep an unlearned model (atomically: a temporary folder renamed into place)."""
    from . import ike, wise

    out = unlearned_path(preset, run)

    def write(folder):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(model, ike.IKEModel):
            ike.save_wrapper(model, folder)
            kind = "ike"
        elif wise.get_side_memory(model) is not None:
            wise.save_side_memory(model, folder)
            kind = "wise"
        else:
            model.save_pretrained(folder, safe_serialization=True)
            tokenizer.save_pretrained(folder)
            kind = "model"
        (folder / "unlearned.json").write_text(json.dumps({"run": run, "kind": kind,
                                                           "full_model": subject_model_id(preset)}))

    models._atomic_save(write, out)
    return out


def load_unlearned(preset, run: str, data_dir=None):
    """(model, tokenizer) of a finished run's unlearned model, as it was evaluated."""
    from . import ike, wise

    folder = unlearned_path(preset, run)
    info = folder / "unlearned.json"
    if not info.is_file():
        raise FileNotFoundError(
            f"no saved unlearned model for run {run!r} of preset {models.get_preset(preset).name!r} ({folder}); "
            "run its notebook (03-06) first, with force=True if its result predates saved models")
    kind = json.loads(info.read_text())["kind"]
    if kind == "model":
        return models.load_model(folder)
    model, tok = models.load_subject_model(preset, "full", data_dir)
    if kind == "wise":
        return wise.load_side_memory(model, folder), tok
    if kind == "ike":
        return ike.load_wrapper(model, tok, folder), tok
    raise ValueError(f"{info}: unknown kind {kind!r}")


def _cached(p, run: str) -> dict | None:
    """A finished result of this run that can be reused as it is, else None."""
    rec = load_result(p.name, run)
    if rec is None:
        return None
    if rec.get("subject_model") not in (None, subject_model_id(p)):
        return None        # made from another full model (another recipe): stale
    if rec.get("collapsed"):
        return rec
    if evaluate.cached_logs(p.name, run) is None or not (unlearned_path(p, run) / "unlearned.json").is_file():
        return None
    return rec


def run_unlearning(preset, run: str, method: str, target: str | None, apply, *, data_dir=None,
                   force: bool = False, seed: int = 0, extra: dict | None = None, progress: bool = True):
    """apply(model, tokenizer, stats) -> unlearned model (may be a wrapper, e.g. IKE's).

    Returns (record, model-or-None); `model` is None when the cached result was reused or
    the run collapsed. `stats` (filled by `apply`, and by a wrapper during evaluation) is
    stored in the record as `stats` when the record is written, after evaluation; with
    `timings.unlearn_s` the wall time of `apply`. The record names the full model it started
    from (`subject_model`); the unlearned model is kept (`save_unlearned`): a cached result needs it.
    """
    p = models.get_preset(preset)
    cached = None if force else _cached(p, run)
    if cached is not None:
        return cached, None
    sd = models.study_data(p, data_dir)
    model, tok = models.load_subject_model(p, "full", data_dir)
    stats: dict = {}
    t0 = time.perf_counter()
    info = {"stats": stats, "subject_model": subject_model_id(p), **(extra or {})}
    try:
        model = apply(model, tok, stats)
    except ModelCollapsed as e:
        shutil.rmtree(unlearned_path(p, run), ignore_errors=True)
        evaluate.save_result(p.name, run, summary=None, method=method, target=target, collapsed=e.as_record(),
                             timings={"unlearn_s": time.perf_counter() - t0}, seed=seed, extra=info)
        return load_result(p.name, run), None
    timings = {"unlearn_s": time.perf_counter() - t0}
    try:
        evaluate.evaluate_and_save(p.name, run, model, tok, sd.eval_sets, template=p.template, method=method,
                                   target=target, force=True, timings=timings, seed=seed,
                                   extra=info, max_new_tokens=p.max_new_tokens, progress=progress)
    except evaluate.NonFiniteMetric as e:
        shutil.rmtree(unlearned_path(p, run), ignore_errors=True)
        evaluate.save_result(p.name, run, summary=None, method=method, target=target,
                             collapsed={"step": "evaluation", "reason": str(e)}, timings=timings, seed=seed,
                             extra=info)
        return load_result(p.name, run), None
    save_unlearned(p, run, model, tok)
    return load_result(p.name, run), model
