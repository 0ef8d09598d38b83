"""Stage timings of the study on one preset (a benchmark that prints, not a test).

    python benchmarks/bench.py --preset tiny [--stages tokenizer,train,eval,...]

Stages (comma-separated, --stages; default: tokenizer,train,eval,rome,wise,recorded):
* plan: a cost plan before the compute, nothing run but a few seconds of float32 matmuls: each
  run of the study's FLOPs (unedit_lib/study/cost_plan.py: 2 x params x tokens a forward pass, 3x
  that forward+backward, attention's quadratic term included; from the model's config and the
  run's settings and token counts), this machine's measured sgemm throughput (GFLOP/s, CPU
  model and threads), each run's projected time and the study's total, and for runs already
  made (results/<preset>/<run>.json) the measured time and the achieved share of the probe's
  throughput (projected / measured);
* tokenizer: trains the BPE tokenizer on the TOFU text (not cached);
* train: trains the full and the retain model from scratch into a temporary folder (the
  cached artifacts are not touched) and prints each one's wall time (budget: 600 s for both);
* eval: one evaluation of the full model on all four TOFU sets (budget: 60 s);
* rome / wise: --n-edits sequential edits (dummy and avoidant targets) on the cached full model
  with the notebooks' settings for the preset; prints the median ms per edit;
* trace: causal tracing of one forget fact (MLP kind, window 10, 10 noise draws) at two token
  positions (the subject's last token and the last token) x every layer, with whole forward passes
  (rome's way) and with tail passes (`trace_important_states(tail_passes=...)`); prints both times and their largest
  score difference (notebook 02 traces every position of 4 facts x 3 kinds);
* ike_eval: the IKE (dummy) evaluation of --n-rows forget and --n-rows retain questions with the
  study's prompts, each context run twice (scores, then generation) and once (its KV cache kept
  from the scores, `evaluate_set(reuse_prompts=...)`); prints both times and whether the logs agree;
* precision: one training step in float32 and in bf16 autocast, what precision="auto" picks
  here, and the implied time to train both models (the budget must hold in float32);
* recorded: what earlier runs recorded, nothing re-run: the cached models' training times,
  each notebook's time in the last `make reproduce` (runs/<preset>/stage_times.json, budget
  1800 s for notebooks 00-07, the whole study on tiny), the per-run unlearning times and ms
  per edit in results/<preset>/, and notebook 08's attack time per model;
* reproduce: the whole study (every notebook, training included) afresh in a scratch folder
  (artifacts, results, figures and executed notebooks redirected with UNEDIT_*_DIR, so the
  committed results stay as they are), then the same report as `recorded` for that run.
  About half an hour on the tiny preset.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from unedit_lib.core import presets, store  # noqa: E402
from unedit_lib.eval import evaluate  # noqa: E402
from unedit_lib.subject import models  # noqa: E402

# A preset's budgets are its file's [budgets]: study_s (notebooks 00-07 end to end), train_s (both subject
# models), eval_s (one evaluation); a budget the file does not state is not checked.
# The settings of a preset file's [settings.rome] / [settings.wise] that the editors' edit functions take
# (the study's cheap smoke editors: ROME's 6 templates and 8 steps, WISE's 8 iterations and 3 templates)
EDIT_SETTINGS = {"rome": ("context_template_length_params", "v_num_grad_steps"), "wise": ("n_iter", "n_templates")}


def _edit_settings(p, editor: str) -> dict:
    return {k: v for k, v in p.method_settings(editor).items() if k in EDIT_SETTINGS[editor]}


def _stage(name, fn, budget=None):
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    note = f"  (budget {budget:.0f} s: {'ok' if dt <= budget else 'OVER'})" if budget else ""
    print(f"{name:<44s} {dt:8.1f} s{note}", flush=True)
    return out, dt


def _line(name, secs, note=""):
    print(f"{name:<44s} {secs:8.1f} s{note}", flush=True)


def recorded(p, runs_dir: Path | None = None):
    """Print what the last runs recorded (no computation)."""
    from unedit_lib.core.paths import output_dir
    from unedit_lib.report import tables
    from unedit_lib.study import robustness

    for which in ("full", "retain"):
        log = models.subject_model_path(p, which) / "training_log.json"
        if log.exists():
            _line(f"recorded: train {which} model", json.loads(log.read_text())["train_seconds"])
        else:
            print(f"recorded: no cached {which} model for {p.name}")
    times_dir = runs_dir or output_dir("runs") / p.name
    rec, forced = store.stage_times(times_dir)
    if rec is not None:
        if not rec.get("force") and forced:
            print(f"recorded: the last run ({rec['finished']}) reused cached work, {rec['total_s']:.0f} s; "
                  "below, the last from-scratch (FORCE=1) run")
            rec = forced
        for nb, secs in rec["stages_s"].items():
            _line(f"recorded: notebook {nb}", secs)
        study = store.study_seconds(rec)
        n_study = sum(1 for nb in rec["stages_s"] if store.is_study_notebook(nb))
        if n_study < 8:     # run piecewise (scripts/run_notebooks.py <notebook>): not the study's time
            print(f"recorded: only {n_study} of the 8 study notebooks (00-07) in this run: no study total")
        else:
            b = p.budgets.get("study_s")
            budget = f"  (budget {b:.0f} s: {'ok' if study <= b else 'OVER'})" if b else ""
            _line("recorded: notebooks 00-07 (the study)", study, budget)
        _line("recorded: all notebooks run", rec["total_s"],
              f"  ({rec['finished']}, seeds {rec['seeds']}{', force' if rec['force'] else ''})")
        if not rec.get("force"):
            print("  note: a run without FORCE reuses cached models and results; "
                  "`make bench STAGES=reproduce` times everything afresh")
    else:
        print(f"recorded: no {times_dir / 'stage_times.json'} (run `make reproduce`)")
    records = store.load_results(p.name)
    if records:
        t = tables.main_table(records)
        for run, row in t.iterrows():
            if run in ("full", "retain", "base") or row["unlearn_s"] != row["unlearn_s"]:
                continue    # the subject models and the pretrained reference: nothing was unlearned
            ms = f", median {row['ms_per_edit']:.0f} ms per edit" if row["ms_per_edit"] == row["ms_per_edit"] else ""
            _line(f"recorded: unlearn {run}", row["unlearn_s"], ms)
    rob = robustness.load_summary(p.name)
    if rob:
        total = sum(r["timings"]["total_s"] for r in rob.values() if isinstance(r, dict) and "timings" in r)
        _line(f"recorded: robustness attacks ({sum(1 for r in rob.values() if isinstance(r, dict) and 'timings' in r)} models)", total)


def precision_stage(p, n_steps: int = 3):
    """One training step of the preset's model in float32 and with bf16 autocast (median of
    n_steps after a warm-up), what precision="auto" picks on this machine, and the implied time
    to train both subject models. The budget must hold in float32: an AVX2-only CPU (most
    laptops) runs bf16 matmuls 10-20x slower, and "auto" picks float32 there."""
    import random

    from unedit_lib.core import precision, prompts
    from unedit_lib.subject import pretrained

    sd = models.study_data(p)
    tmpl = prompts.get_template(p.template)
    if p.base_model:
        model, tok = models.load_model(pretrained.base_model_folder(p.base_model))
    else:
        tok = models.build_tokenizer(p.vocab_size)
        model = models.new_llama(p, tok)
    model.train()
    units = models._Units(tok, tmpl, sd.retain_rows + sd.forget_rows, [], [])
    rng = random.Random(0)
    batch = models._row_batches(units.all(), rng, p.batch_size)[0] if not p.pack else \
        models.build_epoch(units, rng, tok, tmpl, [], p)[:p.batch_size]
    ids, att, lab = models._collate(batch, prompts.pad_id(tok))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-9)
    steps = {}
    for which in ("full", "retain"):
        rows = len(sd.retain_rows) + (len(sd.forget_rows) if which == "full" else 0)
        steps[which] = p.epochs * -(-rows // p.batch_size) if not p.pack else None
    for prec in ("float32", "bfloat16"):
        times = []
        for _ in range(n_steps + 1):
            t0 = time.perf_counter()
            with precision.autocast(prec):
                loss = models._labelled_loss(model, ids, att, lab) if p.base_model else \
                    model(input_ids=ids, attention_mask=att, labels=lab).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        step_s = statistics.median(times[1:])
        note = ""
        if steps["full"]:
            both = step_s * (steps["full"] + steps["retain"])
            note = f"   x {steps['full']} + {steps['retain']} steps = {both:.0f} s for both models"
            if prec == "float32" and (b := p.budgets.get("train_s")):
                note += f" (budget {b:.0f} s: {'ok' if both <= b else 'OVER'})"
        _line(f"train step, {prec} ({tuple(ids.shape)} tokens)", step_s, note)
    print(f"precision='auto' here: {precision.describe()}")


def trace_stage(p):
    """Whole-pass vs tail-pass causal tracing of one forget fact on the cached full model."""
    import numpy as np

    from unedit_lib.core import prompts
    from unedit_lib.tracing import causal_trace

    sd = models.study_data(p)
    model, tok = models.load_subject_model(p, "full")
    tmpl = prompts.get_template(p.template)
    row = next(r for r in sd.forget_rows if r["subject"] and r["subject"] in r["question"])
    prompt = tmpl.prompt(row["question"])
    ids, (b, e) = prompts.subject_token_range(tok, prompt, row["subject"])
    noise = causal_trace.noise_level(model, tok, [r["subject"] for r in sd.forget_rows if r["subject"]])
    res = {}
    for tail in (False, True):
        res[tail], _ = _stage(f"trace 1 fact, mlp, 2 tokens x {p.n_layers} layers, {'tail' if tail else 'whole'} passes",
                              lambda t=tail: causal_trace.trace_important_states(model, tok, prompt, row["subject"], kind="mlp",
                                                                                 noise=noise, tokens=[e - 1, len(ids) - 1],
                                                                                 tail_passes=t))
    print(f"  largest score difference: {float(np.abs(res[True]['scores'] - res[False]['scores']).max()):.2e}")


def ike_eval_stage(p, n_rows: int):
    """An IKE evaluation with and without reusing each context's KV cache (prompt_cache)."""
    import numpy as np

    from unedit_lib.eval import evaluate
    from unedit_lib.methods.ike import editor as ike
    from unedit_lib.study import recipes

    sd = models.study_data(p)
    model, tok = models.load_subject_model(p, "full")
    hp = recipes.settings(p.name, "ike")
    s = recipes.ike_setup(p, sd, "dummy", hp)
    prompter, _ = ike.apply(model, tok, s["requests"], hp, {}, pool=s["pool"](), answers=s["answers"],
                            template=s["template"])
    logs = {}
    for reuse in (False, True):
        for set_name in ("forget", "retain"):
            logs[reuse, set_name], _ = _stage(
                f"IKE eval, {n_rows} {set_name} rows, context run {'once' if reuse else 'twice'}",
                lambda n=set_name, r=reuse: evaluate.evaluate_set(
                    model, tok, sd.eval_sets[n][:n_rows], n, p.template, max_new_tokens=p.max_new_tokens,
                    progress=False, prompter=prompter, reuse_prompts=r))
    for set_name in ("forget", "retain"):
        a, b = logs[False, set_name], logs[True, set_name]
        same = sum(a["generated_text"][k][1] == b["generated_text"][k][1] for k in a["generated_text"])
        diff = max(abs(a["avg_gt_loss"][k] - b["avg_gt_loss"][k]) for k in a["avg_gt_loss"])
        print(f"  {set_name}: {same} of {len(a['generated_text'])} answers identical; largest answer-loss difference "
              f"{diff:.2e}; mean prompt {np.mean([len(prompter.prompt_ids(r['question'])) for r in sd.eval_sets[set_name][:n_rows]]):.0f} tokens")


def study_plan(p):
    """(model sizes, one cost_plan.RunCost per run of the study on preset `p`, the Tokens counted with):
    cost_plan.plan wired to the study's settings and run names (recipes, settings)."""
    from unedit_lib.study import cost_plan, recipes, settings as study_settings

    tokens = cost_plan.Tokens(cost_plan.cached_tokenizer(p))
    size, runs = cost_plan.plan(p.name, recipes.settings, lambda m, t, **ov: recipes.plan(p.name, m, t, **ov)[0],
                                study_settings.STUDY_ABLATIONS if study_settings.runs_ablations(p) else {}, tokens,
                                attack_settings=recipes.attack_settings)
    return size, runs, tokens


def plan_stage(p, probe_s: float = 3.0):
    """The cost plan (cost_plan.py): FLOPs per run, the sgemm probe, projected vs measured time."""
    from unedit_lib.study import cost_plan

    size, runs, tokens = study_plan(p)
    print(f"plan: model {size.layers} layers, hidden {size.hidden}, intermediate {size.intermediate}, vocab "
          f"{size.vocab}, kv {size.kv}: {size.layers * size.block_params / 1e6:.1f} M block + "
          f"{size.head_params / 1e6:.1f} M head parameters ({cost_plan.display_source(size)})")
    print(f"plan: tokens counted with {tokens.how}; generation at its max_new_tokens "
          f"{p.max_new_tokens} per question (an upper bound)")
    gflops = cost_plan.sgemm_gflops(size, seconds=probe_s)
    print(f"plan: sgemm probe {gflops:.1f} GFLOP/s float32 on {cost_plan.machine()}")
    for line in cost_plan.table(runs, gflops):
        print(line)


def reproduce_afresh(p):
    """The whole study from scratch in a scratch folder; then `recorded` for it."""
    scratch = Path(tempfile.mkdtemp(prefix="unedit-bench-study-"))
    env = dict(os.environ)
    for kind in ("artifacts", "results", "figures", "runs"):
        env[f"UNEDIT_{kind.upper()}_DIR"] = str(scratch / kind)
    notebooks = sorted(str(n) for n in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    print(f"reproduce: the whole study afresh in {scratch} (committed results untouched)", flush=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "scripts" / "run_notebooks.py"), "--preset", p.name, *notebooks],
                   env=env, check=True)
    _line("reproduce: every notebook, from scratch", time.perf_counter() - t0)
    code = ("import sys; sys.path.insert(0, %r); from benchmarks.bench import recorded; "
            "from unedit_lib.core import presets; recorded(presets.get_preset(%r))" % (str(ROOT), p.name))
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--stages", default="tokenizer,train,eval,rome,wise,recorded")
    ap.add_argument("--n-edits", type=int, default=10)
    ap.add_argument("--n-rows", type=int, default=8, help="questions per set of the ike_eval stage")
    a = ap.parse_args()
    stages = set(a.stages.split(","))
    p = presets.get_preset(a.preset)
    print(f"preset {p.name}: torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    tmp = Path(tempfile.mkdtemp(prefix="unedit-bench-"))
    if "plan" in stages:
        plan_stage(p)
    if "tokenizer" in stages:
        _stage("tokenizer (BPE on TOFU text)", lambda: models.build_tokenizer(p.vocab_size, cache=False))
    paths = {}
    if "train" in stages:
        total = 0.0
        for which in ("full", "retain"):
            paths[which], dt = _stage(f"train {which} model", lambda w=which: models.train_subject_model(
                p, w, progress=False, artifacts=tmp, force=True))
            total += dt
        b = p.budgets.get("train_s")
        _line("train both models", total, f"  (budget {b:.0f} s: {'ok' if total <= b else 'OVER'})" if b else "")
    if "eval" in stages:
        model, tok = models.load_model(paths["full"]) if "full" in paths else models.load_subject_model(p, "full")
        sd = models.study_data(p)
        _stage("evaluate full model (4 TOFU sets)", lambda: evaluate.evaluate_model(
            model, tok, sd.eval_sets, p.template, progress=False, max_new_tokens=p.max_new_tokens),
            budget=p.budgets.get("eval_s"))
    for editor in ("rome", "wise"):
        if editor in stages:
            for target in ("dummy", "avoidant"):
                _bench_editor(editor, p, a.n_edits, target)
    if "trace" in stages:
        trace_stage(p)
    if "ike_eval" in stages:
        ike_eval_stage(p, a.n_rows)
    if "precision" in stages:
        precision_stage(p)
    if "recorded" in stages:
        recorded(p)
    if "reproduce" in stages:
        reproduce_afresh(p)


def _bench_editor(editor: str, p, n_edits: int, target: str):
    from unedit_lib.core import data, prompts
    from unedit_lib.methods.rome import editor as rome
    from unedit_lib.methods.wise import editor as wise
    from unedit_lib.tracing import records as trace_records

    sd = models.study_data(p)
    model, tok = models.load_subject_model(p, "full")
    tmpl = prompts.get_template(p.template)
    reqs = data.edit_requests(sd.forget_rows[:n_edits], target, tmpl)
    stats: dict = {}
    t0 = time.perf_counter()
    if editor == "rome":
        layer, _ = trace_records.load_edit_layer(p.name, default=max(0, p.n_layers // 4))   # notebook 02's choice
        rome.edit(model, tok, reqs, layer=layer, stats=stats, **_edit_settings(p, "rome"))
    else:
        loc, _ = wise.wise_locality_texts(sd, tmpl, 400)
        wise.edit(model, tok, reqs, locality_prompts=loc, stats=stats, template=tmpl, **_edit_settings(p, "wise"))
    total = time.perf_counter() - t0
    ms = 1000 * statistics.median(stats["edit_times_s"])
    _line(f"{editor} {target} ({n_edits} sequential edits)", total, f"   median {ms:.0f} ms per edit")


if __name__ == "__main__":
    main()
