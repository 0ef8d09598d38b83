"""Stage timings of the study on one preset (a benchmark that prints, not a test).

    python benchmarks/bench.py --preset default [--stages tokenizer,train,eval]

Stages (comma-separated, --stages): tokenizer, train, recorded, eval, rome, wise.
train: trains the full and the retain model from scratch into a temporary folder (the
cached artifacts are not touched) and prints each one's wall time. recorded: the wall
times that the cached models' own training logs recorded (no retraining). rome / wise: sequential
edits of --n-edits forget questions (dummy target) on the cached full model with the
editor's reference hyperparameters; prints the median ms per edit. eval: one evaluation of
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
    ap.add_argument("--stages", default="tokenizer,train,eval,rome,wise")
    ap.add_argument("--n-edits", type=int, default=10)
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
        model, tok = models.load_model(paths["full"]) if "full" in paths else models.load_subject_model(p, "full")
        sd = models.study_data(p)
        _stage("evaluate full model (4 TOFU sets)", lambda: evaluate.evaluate_model(
            model, tok, sd.eval_sets, p.template, progress=False, max_new_tokens=p.max_new_tokens), budget=60)


    for editor in ("rome", "wise"):
        if editor in stages:
            _bench_editor(editor, p, a.n_edits)


def _bench_editor(editor: str, p, n_edits: int):
    import statistics

    from unedit_lib import data, prompts, rome, trace, wise

    sd = models.study_data(p)
    model, tok = models.load_subject_model(p, "full")
    reqs = data.edit_requests(sd.forget_rows[:n_edits], "dummy", prompts.get_template(p.template))
    stats: dict = {}
    t0 = time.perf_counter()
    if editor == "rome":
        layer, _ = trace.load_edit_layer(p.name, default=max(0, p.n_layers // 4))   # notebook 02's choice
        rome.edit(model, tok, reqs, layer=layer, stats=stats)
    else:
        loc, _ = wise.locality_texts(sd, prompts.get_template(p.template), 50)
        wise.edit(model, tok, reqs, locality_prompts=loc, stats=stats)
    total = time.perf_counter() - t0
    ms = 1000 * statistics.median(stats["edit_times_s"])
    print(f"{editor + f' ({n_edits} sequential edits)':<40s} {total:8.1f} s   median {ms:.0f} ms per edit")


if __name__ == "__main__":
    main()
