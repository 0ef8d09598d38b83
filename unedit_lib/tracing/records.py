"""Causal tracing's files (notebook 02), study-level: the cache of `causal_trace.trace_facts` results
and the chosen ROME layer, results/<preset>/trace/rome_layer.json (`paths.edit_layer_path`),
which recipes.rome_layer reads. The algorithm (tracing/causal_trace.py) reads and writes no file."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..core import paths
from ..core.store import CorruptFile, read_json, write_json
from ..subject import models
from . import causal_trace


def trace_facts_cached(model, tok, rows, template="qa", *, cache_dir=None, force: bool = False, **kw) -> dict:
    """`causal_trace.trace_facts`, cached as JSON under `cache_dir` (keyed by the model's name or folder name,
    the rows' questions and subjects, the template and every setting), so that a second run of the
    tracing notebook reuses its traces; `force` recomputes them."""
    if cache_dir is None:
        return causal_trace.trace_facts(model, tok, rows, template, **kw)
    # the model's folder name, not its path: a clone elsewhere (or another machine) finds the cache
    name = str(getattr(model.config, "_name_or_path", "") or "")
    key = json.dumps({"model": Path(name).name if Path(name).is_absolute() else name,
                      "rows": [(r["question"], r["subject"], r["answer"]) for r in rows],
                      "template": str(template), **{k: str(v) for k, v in sorted(kw.items())}}, sort_keys=True)
    path = Path(cache_dir) / f"traces-{hashlib.sha1(key.encode()).hexdigest()[:12]}.json"
    if path.is_file() and not force:
        res = read_json(path, "causal-trace cache")
        if not isinstance(res, dict) or "traces" not in res:
            raise CorruptFile(path, "not a causal-trace cache (no 'traces')")
        for rec in res["traces"]:
            for v in rec.values():
                if isinstance(v, dict) and "scores" in v:
                    v["scores"] = np.asarray(v["scores"])
                    v["subject_range"] = tuple(v["subject_range"])
        return res
    res = causal_trace.trace_facts(model, tok, rows, template, **kw)
    write_json(res, path, indent=None, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    return res


def save_edit_layer(preset: str, layer: int, info: dict | None = None):
    """Write results/<preset>/trace/rome_layer.json atomically (a sub-folder, so it is never read
    as a run record): {"layer": ..., "subject_model": the traced full model's folder, **info}.
    Returns the path."""
    full = models.subject_model_path(preset, "full")
    rec = {"layer": int(layer), "subject_model": full.name, "trained_on": models.trained_on(full), **(info or {})}
    return write_json(rec, paths.edit_layer_path(preset), default=float)


def load_edit_layer(preset: str, default: int | None = None, subject_model: str | None = None) -> tuple[int | None, dict]:
    """(layer, record) from notebook 02's rome_layer.json, or (default, {"source": "fallback"}).
    With `subject_model` (the full model a ROME run edits), a layer chosen on another full model
    is an error (records written before they named it keep the folder in `model_config`)."""
    path = paths.edit_layer_path(preset)
    if path.is_file():
        rec = read_json(path, "ROME layer record")
        if not isinstance(rec, dict) or not isinstance(rec.get("layer"), int):
            raise CorruptFile(path, "no integer 'layer'", "rerun notebooks/02_causal_tracing.ipynb (force=True)")
        traced = rec.get("subject_model") or Path(rec.get("model_config") or "").name
        if subject_model is not None and traced and traced != subject_model:
            raise ValueError(f"{paths.display_path(path)} chose layer {rec['layer']} on the full model {traced}, not on "
                             f"{subject_model} (this machine's): rerun notebooks/02_causal_tracing.ipynb first")
        here = models.trained_on(models.subject_model_path(preset, "full")) if subject_model is not None else None
        if rec.get("trained_on") and here and rec["trained_on"] != here:
            raise ValueError(f"{paths.display_path(path)} chose layer {rec['layer']} on a full model trained on other "
                             f"TOFU rows ({rec['trained_on']}, this machine's {here}): rerun "
                             "notebooks/02_causal_tracing.ipynb with force=True first")
        return rec["layer"], {**rec, "source": paths.display_path(path)}
    return default, {"source": "fallback parameter"}


def answer_token_in_subject(fact: dict) -> bool:
    """Whether a traced fact's answer token `o` (the clean argmax) is a piece of the subject's own
    name: the model can copy it from the question, so its trace locates the copying, not the fact."""
    return causal_trace.token_in_subject(fact["hidden"]["answer_token"], fact["subject"])
