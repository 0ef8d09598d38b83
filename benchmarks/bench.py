"""Stage timings of the study on one preset (a benchmark that prints, not a test).

    python benchmarks/bench.py --preset default [--stages tokenizer,train,eval]

train: trains the full and the retain model from scratch into a temporary folder (the
cached artifacts are not touched) and prints each one's wall time. recorded: the wall
times that the cached models' own training logs recorded (no retraining). eval: one evaluation of
the full model on all four TOFU sets. Budgets from the issues are printed beside each time.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from unedit_lib import evaluate, models


def _stage(name, fn, budget=None):
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    note = f"  (budget {budget:.0f} s: {'ok' if dt <= budget else 'OVER'})" if budget else ""
    print(f"{name:<40s} {dt:8.1f} s{note}", flush=True)
    return out, dt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--stages", default="tokenizer,train,eval")
    a = ap.parse_args()
    stages = set(a.stages.split(","))
    p = models.get_preset(a.preset)
    print(f"preset {p.name}: torch {torch.__version__}, {torch.get_num_threads()} threads")
    tmp = Path(tempfile.mkdtemp(prefix="unedit-bench-"))
    if "tokenizer" in stages:
        _stage("tokenizer (BPE on TOFU text)", lambda: models.build_tokenizer(p.vocab_size, cache=False))
    paths = {}
    if "recorded" in stages:
        import json

        for which in ("full", "retain"):
            log = models.subject_model_path(p, which) / "training_log.json"
            if log.exists():
                secs = json.loads(log.read_text())["train_seconds"]
                print(f"{'recorded: train ' + which + ' model':<40s} {secs:8.1f} s")
            else:
                print(f"recorded: no cached {which} model for {p.name}")
    if "train" in stages:
        total = 0.0
        for which in ("full", "retain"):
            paths[which], dt = _stage(f"train {which} model", lambda w=which: models.train_subject_model(
                p, w, progress=False, artifacts=tmp, force=True))
            total += dt
        print(f"{'train both models':<40s} {total:8.1f} s  (budget 600 s: {'ok' if total <= 600 else 'OVER'})")
    if "eval" in stages:
        path = paths.get("full") or models.subject_model_path(p, "full")
        model, tok = models.load_model(path)
        sd = models.study_data(p)
        _stage("evaluate full model (4 TOFU sets)", lambda: evaluate.evaluate_model(
            model, tok, sd.eval_sets, p.template, progress=False, max_new_tokens=p.max_new_tokens), budget=60)


if __name__ == "__main__":
    main()
