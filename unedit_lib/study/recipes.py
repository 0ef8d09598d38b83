"""The study's runs of each method: their settings per preset, and one call that runs them.

`run(preset, method, target, seed=0, **overrides)` is what the notebooks call, once per run:
it resolves the run's settings (`settings`: the method's defaults, the study's choices for the
preset, then `overrides`), names the run (`rome-dummy`, or `rome-dummy+v_lr=0.1` when a setting
differs from the study's: an ablation), builds the method's inputs from the study data and
hands them to the runner (runner.run_unlearning), which caches by every setting.

Methods: registry.py's (rome, rrome (R-ROME), ike, wise, the baselines ga gd kl idk npo), each built by the
builder attached here, with how its model is kept; the study's choices per preset: study/settings.py.
"""
from __future__ import annotations

import dataclasses
import functools
import time

from ..core import data, embeddings, paths, presets, prompts, registry, run_names, store
from ..core.guards import ModelCollapsed
from ..eval import edit_metrics as em
from ..methods.baselines import training as baselines
from ..methods.ike import editor as ike
from ..methods.rome import editor as rome
from ..methods.wise import editor as wise, hparams as wise_hparams, side_memory
from ..report import gates, tables
from ..subject import models
from ..tracing import records as trace_records
from . import runner
from .rome_grid import V_LR_GRID, smallest_v_lr_passing_gate
from .settings import STUDY_ABLATIONS, STUDY_SETTINGS, WISE_ABLATIONS, preset_attack, preset_settings, runs_ablations

_ROME_NOT_SETTINGS = ("cov", "mom2_texts", "mom2_cache_dir", "context_templates", "layer", "answer_start")
_WISE_NOT_SETTINGS = ("template", "verbose")


# --------------------------------------------------------------------------- settings
def _rome_defaults(consistent_keys: bool) -> dict:
    names = {f.name for f in dataclasses.fields(rome.RomeHParams)} - set(_ROME_NOT_SETTINGS)
    d = rome.PAPER_HPARAMS.record()            # every setting, JSON-able (the paper's defaults)
    return {k: consistent_keys if k == "consistent_keys" else v for k, v in d.items() if k in names}


def _fields(hparams, leave_out=()) -> dict:    # a method's settings: its hparams but those that are no setting
    return {k: v for k, v in dataclasses.asdict(hparams).items() if k not in leave_out}


def _defaults(method: str) -> dict:
    """The method's own settings (its registered `defaults`); unknown methods raise, naming the valid ones."""
    return registry.code(method, "defaults")()


def settings(preset, method: str, seed: int = 0, **overrides) -> dict:
    """Every setting of one run: the method's defaults < the study's choices for the preset <
    `overrides` (None values are ignored, so notebook parameters can default to None).
    Unknown names raise, naming the valid ones."""
    p = presets.get_preset(preset)
    hp = _defaults(method)
    table = registry.code(method, "study_settings", {})
    hp.update(table.get("all", {}))
    hp.update(table.get(p.name, {}))                     # a registered method's own per-preset choices
    hp.update(preset_settings(p, method, hp))           # the preset file's [settings.<table>]
    hp["seed"] = seed
    unknown = sorted(k for k, v in overrides.items() if v is not None and k not in hp)
    if unknown:
        raise TypeError(f"unknown settings {unknown} for {method}; valid: {sorted(hp)}")
    hp.update({k: v for k, v in overrides.items() if v is not None})
    return hp


def plan(preset, method: str, target: str | None = None, seed: int = 0, **overrides) -> tuple[str, dict, dict]:
    """(run name, all settings, the settings that differ from the study's) of one run."""
    editor = registry.get(method).kind == registry.EDITOR
    if editor and target not in data.TARGETS:
        raise ValueError(f"{method} needs a target in {data.TARGETS}, got {target!r}")
    hp = settings(preset, method, seed, **overrides)
    changed = runner.ablation(hp, settings(preset, method, seed))
    return run_names.run_name(run_names.base_name(method, target if editor else None), seed, changed), hp, changed


def run(preset, method: str, target: str | None = None, *, seed: int = 0, force: bool = False, data_dir=None,
        progress: bool = False, **overrides) -> dict:
    """One run of the study (cached by all its settings); returns its record."""
    p = presets.get_preset(preset)
    name, hp, changed = plan(p, method, target, seed, **overrides)
    sd = runner.check_inputs(p, name, data_dir)      # the device, data, retain logs, full model: before _build's work
    apply, extra, hp = _build(p, sd, method, target, hp, data_dir)
    rec, _ = runner.run_unlearning(p, name, registry.get(method).label, target, apply, hp=hp, changed=changed,
                                   data_dir=data_dir, force=force, seed=seed, extra=extra, progress=progress,
                                   write_model=registry.code(method, "save", runner.write_plain_model),
                                   watch_eval=registry.code(method, "watch_eval", None),
                                   resumable=registry.code(method, "resumable", False), study_data=sd)
    return rec


def _build(p, sd, method, target, hp, data_dir):
    """(apply, the record's extra fields, hp with what the inputs resolved) of one run (its method's `build`)."""
    return registry.code(method, "build")(p, sd, method, target, hp, data_dir)


class CannotRebuild(ValueError):
    """A run's unlearned model cannot be re-made from its record (rebuild_unlearned says why)."""


def rebuild_unlearned(preset, run: str, data_dir=None):
    """Re-make a finished run's unlearned model where its record is but its model is not (a fresh
    clone, a lost `artifacts/`: only notebook 08's attacks need the model), and keep it as the run
    would have (runner.save_unlearned). Costs the run's unlearning time again, not its evaluation.
    Returns the saved folder."""
    model, tok, prompter, _ = remake_unlearned(preset, run, data_dir)
    p = presets.get_preset(preset)
    method = registry.from_label(store.load_record(p.name, run)["method"]).name
    return runner.save_unlearned(p, run, model, tok, prompter, registry.code(method, "save", runner.write_plain_model))


def remake_unlearned(preset, run: str, data_dir=None):
    """(model, tokenizer, prompter, stats) of a finished run made again: its method applied to the
    full model with the settings its record names, `stats` what the method records. Refused unless the
    model gives the record's answer losses on the first forget questions (runner.forget_losses_match:
    float noise, not another model), so what is read from it is of the model the record evaluated."""
    p = presets.get_preset(preset)
    rec = store.load_record(p.name, run)
    redo = f"rerun its notebook with force=True to recompute {run!r} and its model together"
    if rec is None:
        raise FileNotFoundError(f"no record results/{p.name}/{run}.json: run its notebook (03-06) first")
    if rec.get("collapsed"):
        raise CannotRebuild(f"{run} collapsed ({rec['collapsed'].get('reason')}): there is no unlearned model to re-make")
    method = registry.from_label(rec["method"]).name
    name, hp, _ = plan(p, method, rec["target"], rec["seed"], **(rec.get("ablation") or {}))
    sd = models.study_data(p, data_dir)
    apply, _, hp = _build(p, sd, method, rec["target"], hp, data_dir)
    # the runner's own rules: this data, this full model, these settings, logs
    reusable, why = runner.cached(p, run, hp, rec.get("ablation"), runner.data_record(p, data_dir))
    if name != run or reusable is None:
        raise CannotRebuild(f"{run}: its record is not this code's run {name!r} (hp_key {runner.hp_key(hp)}, recorded "
                            f"{rec.get('hp_key')}): {why or 'another name'}: {redo}")
    logs = store.cached_logs(p.name, run)
    model, tok = models.load_subject_model(p, "full", data_dir)
    print(f"{run}: re-making its unlearned model ({(rec.get('timings') or {}).get('unlearn_s', 0):.0f} s when it ran)")
    stats: dict = {}
    try:
        result = apply(model, tok, stats)
    except ModelCollapsed as e:
        raise CannotRebuild(f"{run}: re-making it collapsed ({e}), though the recorded run did not: {redo}") from e
    model, prompter = result if isinstance(result, tuple) else (result, None)
    model.eval()
    ours, theirs, same = runner.forget_losses_match(p, model, tok, sd.eval_sets["forget"], logs["forget"],
                                                    prompter=prompter)
    if not same:
        raise runner.NotTheEvaluatedModel(
            f"{run}: the re-made model gives answer losses {runner.rounded_losses(ours)} on the first forget "
            f"questions, its record {runner.rounded_losses(theirs)}: not the model "
            f"the record evaluated (another CPU's float rounding over its edits?); {redo}")
    return model, tok, prompter, stats


def write_model(folder, model, tokenizer, prompter=None) -> str:
    """Save any method's unlearned model into `folder`; returns its kind (runner.save_unlearned)."""
    if prompter is not None:
        ike.save_prompts(prompter, folder)       # IKE: the prompts (no weight changes)
        return "ike"
    if side_memory.get_side_memory(model) is not None:
        side_memory.save_side_memory(model, folder)     # the main memory is the full model
        return "wise"
    return runner.write_plain_model(folder, model, tokenizer)


def load_unlearned(preset, run: str, data_dir=None):
    """(model, tokenizer, prompter) of a finished run's unlearned model, as it was evaluated:
    `prompter` is IKE's prompts (its model is the full model), else None; a kind other than "model" is
    a method's own, loaded by its registered `load` onto the full model."""
    kind = runner.unlearned_kind(preset, run)
    folder = runner.unlearned_path(preset, run)
    if kind == "model":
        return (*models.load_model(folder), None)
    load = registry.code(kind, "load", None) if kind in registry.names() else None
    if load is None:
        raise store.CorruptFile(folder / "unlearned.json", f"unknown kind {kind!r}")
    model, tok = models.load_subject_model(preset, "full", data_dir)
    return load(model, tok, folder)


# --------------------------------------------------------------------------- ROME
def rome_layer(p, data_dir=None) -> tuple[int, dict]:
    """The edit layer: notebook 02's causal-trace choice, else a quarter of the depth."""
    n_layers = models.load_subject_model(p, "full", data_dir)[0].config.num_hidden_layers
    return trace_records.load_edit_layer(p.name, n_layers // 4, subject_model=runner.subject_model_id(p))


def _rome_ablation_names(hp: dict) -> str | None:
    """The names of rome.ABLATIONS whose settings `hp` holds (what RomeHParams records)."""
    norm = lambda v: [list(x) for x in v] if isinstance(v, (list, tuple)) else v   # noqa: E731
    names = [n for n, ov in rome.ABLATIONS.items() if all(norm(hp.get(k)) == norm(v) for k, v in ov.items())]
    return "+".join(names) or None


def _rome_inputs(p, sd, target, hp, data_dir):
    """(hp with its resolved layer, edit requests, rome.apply's hparams, layer record) of a ROME run.
    The requests are written in `edit_template` (None: the preset's own, the one the evaluator uses)."""
    template = prompts.get_template(hp["edit_template"] or p.template)
    layer, layer_info = rome_layer(p, data_dir)
    if hp["fallback_layer"] is not None and layer_info["source"] == "fallback parameter":
        layer = hp["fallback_layer"]
    hp = {**hp, "layer": layer}          # the resolved layer is part of the cache key
    rows = sd.forget_rows if hp["n_edits"] is None else sd.forget_rows[:hp["n_edits"]]
    requests = data.edit_requests(rows, target, template, data_dir)
    rome_hp = {k: v for k, v in hp.items() if k not in ("n_edits", "n_locality", "fallback_layer", "edit_template")}
    rome_hp["answer_start"] = template.answer_start
    rome_hp["ablation"] = _rome_ablation_names(rome_hp)
    if hp["mom2_adjustment"]:     # C from the texts the model is evaluated on (the preset's template)
        rome_hp.update(mom2_texts=prompts.qa_texts(sd.retain_rows + sd.forget_rows + sd.general_rows,
                                                   prompts.get_template(p.template)),
                       mom2_cache_dir=str(paths.mom2_cache_dir(p.name)))
    return hp, requests, rome_hp, layer_info


def edit_prompt_groups(rows, target, edit_reqs, edit_tmpl, eval_tmpl, data_dir=None) -> dict | None:
    """The prompt groups the edit metrics measure for `edit_reqs` (the requests of `rows` in `edit_tmpl`):
    None when the edit is written as the evaluator asks, else {"edit prompt", "evaluator prompt"}, each
    with the answer start of its own template (chatml: none, raw: a space)."""
    if edit_tmpl.name == eval_tmpl.name:
        return None
    return {"edit prompt": (edit_reqs, edit_tmpl.answer_start),
            "evaluator prompt": (data.edit_requests(rows, target, eval_tmpl, data_dir), eval_tmpl.answer_start)}


def _rome(p, sd, method, target, hp, data_dir):
    eval_tmpl = prompts.get_template(p.template)
    edit_tmpl = prompts.get_template(hp["edit_template"] or p.template)
    hp, requests, rome_hp, layer_info = _rome_inputs(p, sd, target, hp, data_dir)
    rows = sd.forget_rows if hp["n_edits"] is None else sd.forget_rows[:hp["n_edits"]]
    groups = edit_prompt_groups(rows, target, requests, edit_tmpl, eval_tmpl, data_dir)
    loc_items = [(eval_tmpl.prompt(r["question"]), r["answer"]) for r in sd.eval_sets["retain"][:hp["n_locality"]]]
    edit_metrics: dict = {}

    def run_method(model, tok, stats, checkpoint=None):
        return rome.apply(model, tok, requests, rome_hp, stats, checkpoint=checkpoint)[0]

    apply = em.with_edit_metrics(run_method, requests, loc_items, edit_tmpl.answer_start, edit_metrics, groups,
                                 loc_answer_start=eval_tmpl.answer_start)
    extra = {"layer_source": layer_info["source"], "n_edits": len(requests), "edit_metrics": edit_metrics}
    if groups is not None:
        extra.update(edit_template=edit_tmpl.name, eval_template=eval_tmpl.name)
    return apply, extra, hp


# --------------------------------------------------------------------------- IKE
def ike_retain_demo_rows(sd, data_dir=None) -> tuple[list[dict], str]:
    """(rows, where they come from): retain QA pairs for IKE's retain demonstrations, in no evaluation
    set and no forget question: the study's retain rows outside the evaluation sets, else (smollm2-forget01: all
    its retain rows are evaluated) the paper's choice, TOFU's retain split minus retain_perturbed (paper.md 2.2)."""
    held = {r["question"] for rows in sd.eval_sets.values() for r in rows}
    held |= {r["question"] for r in sd.forget_rows}
    rows = [r for r in sd.retain_rows if r["question"] not in held]
    if rows:
        return rows, "study retain rows outside the evaluation sets"
    rows = [r for r in ike.retain_demo_rows(sd.preset.forget_split, data_dir) if r["question"] not in held]
    return rows, ("TOFU retain rows outside retain_perturbed (the paper's tofu_retain_train.json): every study "
                  "retain row is in the retain evaluation set")


_EMBEDDERS: dict = {}


def shared_embedder(name: str):
    """One sentence embedder per model name for the whole session (MiniLM is loaded once)."""
    if name not in _EMBEDDERS:
        _EMBEDDERS[name] = embeddings.sentence_embedder(name, cache_dir=paths.ike_embedding_cache_dir())
    return _EMBEDDERS[name]


def ike_setup(p, sd, target, hp, data_dir=None, embedder=None) -> dict:
    """IKE's inputs for one study run: the first `pool_fraction` of the forget rows form the
    demonstration pool (with retain demonstrations, `ike_retain_demo_rows`), the rest are the
    edit requests; `answers` {question: answer} of every evaluation row feed the paper's prompt
    format (icl_data.py puts each row's answer after its question)."""
    template = prompts.get_template(p.template)
    pool_rows, req_rows = ike.split_pool_requests(sd.forget_rows, hp["pool_fraction"])
    retain_rows, source = ike_retain_demo_rows(sd, data_dir)
    if embedder is None:
        embedder = shared_embedder(hp["sentence_model"])
    answers = {r["question"]: r["answer"] for rows in sd.eval_sets.values() for r in rows}
    return {"template": template, "pool_rows": pool_rows, "request_rows": req_rows, "retain_rows": retain_rows,
            "retain_source": source, "embedder": embedder, "answers": answers,
            "requests": data.edit_requests(req_rows, target, template, data_dir),
            # every row the evaluator asks in the forget set, with the run's target for it
            "forget_requests": data.edit_requests(sd.eval_sets.get("forget", sd.forget_rows), target, template, data_dir),
            "pool": lambda: ike.build_pool(pool_rows, retain_rows, target, embedder=embedder, seed=hp["seed"],
                                           data_dir=data_dir)}


def _ike(p, sd, method, target, hp, data_dir):
    s = ike_setup(p, sd, target, hp, data_dir)
    template, requests = s["template"], s["requests"]
    loc_items = [(template.prompt(r["question"]), r["answer"]) for r in sd.eval_sets["retain"][:hp["n_locality"]]]
    start = {"answer_start": template.answer_start}     # the answer as the evaluator scores it (chatml: no space)

    def apply(model, tok, stats, checkpoint=None):
        saved = checkpoint and checkpoint.load()        # a killed process's edit metrics and scored forget rows
        prompts, _ = ike.apply(model, tok, requests, hp, stats, pool=s["pool"](), answers=s["answers"], template=template)
        stats.update({"target": target, "pool_fraction": hp["pool_fraction"], "n_pool_rows": len(s["pool_rows"]),
                      "n_request_rows": len(s["request_rows"]), "retain_demo_source": s["retain_source"],
                      "n_retain_demo_rows": len(s["retain_rows"]),
                      "embedding_cache_dir": paths.display_path(paths.ike_embedding_cache_dir())})
        probe = ike.edit_metric_prompts(prompts)
        if saved:
            stats["edit_metrics"] = saved["stats"]["edit_metrics"]
        else:
            pre_loc, pre = em.locality_predictions(model, tok, loc_items, **start), em.edit_metrics(model, tok, requests, **start)
            t1 = time.perf_counter()
            post = em.edit_metrics(model, tok, requests, loc_items, pre_loc, prompter=probe, **start)
            stats["edit_metrics"] = {
                "answer_start": template.answer_start,
                "pre": {m: pre.get(f"{m}_mean") for m in ("rewrite_acc", "rephrase_acc")},
                "post": {m: post.get(f"{m}_mean") for m in ("rewrite_acc", "rephrase_acc", "locality")},
                "per_request": {m: post.get(m) for m in ("rewrite_acc", "rephrase_acc", "locality")},
                "context_truncations": probe.stats["eval"]["truncated_rows"], "n_locality": len(loc_items),
                "time_s": time.perf_counter() - t1}
        save = lambda rows: checkpoint and checkpoint.save(len(rows["rewrite_acc"]), {}, {   # noqa: E731
            "edit_metrics": stats["edit_metrics"]}, rows)
        # Every forget row the evaluator asks, not only the requests: its target with the context the evaluator retrieves
        # (the probe shares the run's pool, facts, k, order, template; retrieval ignores the prompt format) and without
        # any; question last, as EasyEdit scores edits (the evaluator's "paper" format puts " {target}" after it too).
        fr = em.context_lift(model, tok, s["forget_requests"], probe, progress=True, desc="IKE forget rows",
                             done=saved and saved["state"], on_chunk=save, **start)
        asked = {r["question"] for r in requests}
        fr["request_row"] = [r["question"] in asked for r in s["forget_requests"]]
        fr["counts"]["request_rows"] = sum(fr["request_row"])
        fr["prompts"] = "ike.edit_metric_prompts: each row's retrieved context, question last (EasyEdit's)"
        stats["edit_metrics"]["forget_rows"] = fr
        return model, prompts                    # IKE changes no weight: its edit is the prompts (seconds)

    return apply, {}, hp


def ike_first_tokens(p, sd, target, hp, model, tok, data_dir=None, k: int = 5, setup=None) -> list[dict]:
    """For each IKE edit request: what the unchanged model puts first where the target should
    start, with the request's retrieved context on the logits exactly as the edit-level metrics
    score it (`_ike`'s probe) and without it (edit_metrics.first_token_candidates). When
    rewrite accuracy is low, this says what the model answers instead of the target."""
    s = setup or ike_setup(p, sd, target, hp, data_dir)
    prompts, _ = ike.apply(model, tok, s["requests"], hp, {}, pool=s["pool"](), answers=s["answers"],
                           template=s["template"])
    probe = ike.edit_metric_prompts(prompts)
    rows = []
    start = s["template"].answer_start
    for r in s["requests"]:
        with_ctx = em.first_token_candidates(model, tok, r["prompt"], r["target"], k, prompter=probe, answer_start=start)
        without = em.first_token_candidates(model, tok, r["prompt"], r["target"], k, answer_start=start)
        rows.append({"question": r["question"], "target": r["target"], "target first token": with_ctx["target_token"],
                     "p(target) with context": with_ctx["target_prob"], "rank with context": with_ctx["target_rank"],
                     "p(target) without": without["target_prob"],
                     "most likely first tokens with context": ", ".join(f"{t!r} {v:.2f}" for t, v in with_ctx["top"])})
    return rows


# --------------------------------------------------------------------------- WISE
def _wise(p, sd, method, target, hp, data_dir):
    eval_tmpl = prompts.get_template(p.template)
    edit_tmpl = prompts.get_template(hp["edit_template"] or p.template)
    rows = sd.forget_rows[:hp["max_edits"]] if hp["max_edits"] else sd.forget_rows
    if hp["scale_freqs"]:
        hp = {**hp, **wise.scaled_freqs(len(rows), hp["reference_edits"], hp["save_freq"], hp["merge_freq"])}
    edit_reqs = data.edit_requests(rows, target, edit_tmpl, data_dir)
    groups = (edit_prompt_groups(rows, target, edit_reqs, edit_tmpl, eval_tmpl, data_dir)
              or {"edit prompt": (edit_reqs, edit_tmpl.answer_start)})
    loc_texts, loc_source = wise.wise_locality_texts(sd, edit_tmpl, hp["n_locality"], data_dir)
    probe_prompts = {s: [eval_tmpl.prompt(r["question"]) for r in sd.eval_sets[s]]
                     for s in ("forget", "retain", "real_authors", "world_facts")}   # every set a gate reads
    loc_items = [(eval_tmpl.prompt(r["question"]), r["answer"]) for r in sd.eval_sets["retain"]]
    wise_hp = {k: v for k, v in hp.items() if k in _defaults("wise")}
    wise_hp["template"] = edit_tmpl
    edit_metrics: dict = {}

    def run_method(model, tok, stats, checkpoint=None):
        model, _ = wise.apply(model, tok, edit_reqs, wise_hp, stats, locality_prompts=loc_texts, checkpoint=checkpoint)
        stats["routing"] = side_memory.routing_report(model, tok, probe_prompts)
        stats["edit_metrics"] = edit_metrics       # filled by with_edit_metrics once run_method returns
        return model

    def apply(model, tok, stats, checkpoint=None):
        model = em.with_edit_metrics(run_method, edit_reqs, loc_items, edit_tmpl.answer_start, edit_metrics,
                                     groups, loc_answer_start=eval_tmpl.answer_start)(model, tok, stats,
                                                                                      checkpoint=checkpoint)
        adapter = side_memory.get_side_memory(model)
        if adapter is not None:
            adapter.reset_route()
        return model

    extra = {"edit_template": edit_tmpl.name, "eval_template": eval_tmpl.name, "n_edits": len(rows),
             "locality_source": f"{len(loc_texts)} texts: {loc_source}"}
    return apply, extra, hp


def wise_eval_routes(model, stats):
    """The routes WISE's evaluation takes, per set and pass: stats["eval_routing"][set][kind] (wise.route_watch)."""
    return wise.route_watch(model, stats.setdefault("eval_routing", {}))


# --------------------------------------------------------------------------- baselines
def _baseline(p, sd, method, target, hp, data_dir):
    idk = data.load_tofu("idontknow", data_dir) if method == "idk" else None

    def apply(model, tok, stats, checkpoint=None):
        return baselines.apply(model, tok, sd.forget_rows, {**hp, "progress": False}, stats, checkpoint=checkpoint,
                               method=method, retain_rows=sd.retain_rows, template=p.template, idk_answers=idk)[0]

    extra = {"baseline": baselines.METHOD_NAMES[method], "n_forget_rows": len(sd.forget_rows),
             "n_retain_rows": len(sd.retain_rows),
             "lr_note": "TOFU defaults except lr (and smoke's epochs): see the preset file's [settings.baselines]"}
    return apply, extra, hp


# each method's defaults, builder and how its unlearned model is kept (its study settings: study/settings.py)
for _name in ("rome", "rrome"):              # R-ROME: ROME with consistent keys
    registry.attach(_name, defaults=functools.partial(_rome_defaults, _name == "rrome"), build=_rome, resumable="edit")
registry.attach("ike", defaults=lambda: _fields(ike.IKEHParams(), ("sentence_model_name",)), build=_ike,
                save=write_model, load=lambda model, tok, folder: (model, tok, ike.load_prompts(tok, folder)),
                resumable="forget row scored with its context")
registry.attach("wise", defaults=lambda: _fields(wise_hparams.WiseHParams(), _WISE_NOT_SETTINGS), build=_wise,
                save=write_model, load=lambda model, tok, folder: (side_memory.load_side_memory(model, folder), tok, None),
                watch_eval=wise_eval_routes, resumable="edit")
for _name in baselines.METHODS:
    registry.attach(_name, build=_baseline, resumable="epoch",
                    defaults=lambda: _fields(baselines.BaselineHParams(), ("progress",)))


def run_grid(preset, methods, targets=(None,), seeds=(0,), *, force: bool = False, data_dir=None,
             **overrides) -> dict:
    """`run` for every seed x method x target (the notebooks' one call per method or group of methods),
    then a study run the preset names in `extra_seed_runs` with its `extra_seeds`; prints a line per run."""
    p, methods = presets.get_preset(preset), [methods] if isinstance(methods, str) else list(methods)
    todo = [(seed, m, t) for seed in seeds for m in methods for t in targets]
    todo += [(seed, m, t) for seed in sorted(set(p.extra_seeds) - set(seeds)) for m in methods for t in targets
             if not given_overrides(overrides) and seed in p.seeds_of(run_names.base_name(m, t), seeds)]
    out = {}
    for seed, method, target in todo:
        rec = run(p, method, target, seed=seed, force=force, data_dir=data_dir, **overrides)
        print(tables.describe_run(rec))
        out[rec["run"]] = rec
    return out


def given_overrides(overrides: dict) -> dict:
    """The settings a call changes (notebook parameters left at None change nothing)."""
    return {k: v for k, v in overrides.items() if v is not None}


PROBE_EDITS = 3     # grid values whose first 3 edits do not take are not run as whole runs (rome_reproduction)


def rome_grid_probe(preset, target: str, seed: int, grid, probe_edits: int = PROBE_EDITS, *, force: bool = False,
                    data_dir=None, **overrides) -> dict:
    """`smallest_v_lr_passing_gate` on the first `probe_edits` edit requests of `target`, with the
    run's own settings (layer, templates, target wording; `overrides` as the runs', their n_edits
    aside) on a copy of the full model; cached in results/<preset>/rome_probe/ by every setting
    (`force` recomputes)."""
    overrides.pop("n_edits", None)
    p = presets.get_preset(preset)
    sd = models.study_data(p, data_dir)
    hp = {**settings(p, "rome", seed, **overrides), "n_edits": int(probe_edits)}
    hp, requests, rome_hp, layer_info = _rome_inputs(p, sd, target, hp, data_dir)
    key = runner.hp_key({"target": target, "grid": sorted(grid), "hp": hp, "subject_model": runner.subject_model_id(p)})
    path = paths.results_dir(p.name) / "rome_probe" / f"{target}-seed{seed}-{key}.json"
    data = runner.data_record(p, data_dir)
    if path.is_file() and not force:
        res = store.read_json(path, "ROME v_lr probe")
        if (res.get("data") or {}).get("fingerprint") == data["fingerprint"]:   # probed on these rows
            return res
    model, tok = models.load_subject_model(p, "full", data_dir)
    res = smallest_v_lr_passing_gate(model, tok, requests, grid=grid, hp=rome.RomeHParams(**rome_hp))
    res.update(target=target, seed=seed, layer_source=layer_info["source"], data=data)
    store.write_json(res, path)
    return res


def rome_reproduction(preset, targets, seeds=(0,), *, grid=None, ablations: bool = True, force: bool = False,
                      data_dir=None, probe_edits: int | None = PROBE_EDITS, **overrides) -> dict:
    """ROME as the paper ran it, and what it takes for its premise to hold here.

    For each target and seed: the run with the paper's settings (`rome-<target>`); when its edits
    do not take (gates.rome_gates: mean rewrite accuracy after all edits < gates.EDITS_TAKE_MIN),
    the runs with the next values of the stated grid V_LR_GRID, in ascending order, until one
    whose edits take (`rome-<target>+v_lr=<value>`, the gate-selected reproduction: chosen by the
    premise gate on the edit prompts, never by a finding); then our own settings as the named
    ablations of STUDY_ABLATIONS["rome"] (on the preset's rome_ablation_targets), each run cached by
    all its settings. Returns {run name: record with `role`: "paper settings", "v_lr grid" (with
    `gate_selected` True on the chosen one) or "ablation"}. `probe_edits` (k): before climbing, the
    grid values above the paper's are tried on the first k edits only (`rome_grid_probe`, cached);
    values below the first one whose k edits take get no whole run (25-75 min each on SmolLM2, 2 CPU
    cores; the probe is printed and returned in the gate-selected entry as `v_lr_probe`). None: whole runs.
    A call with `overrides` (a user's ablation) runs that variant only: the study's own ablations, whose
    settings the overrides may not change, are neither rerun nor forced by it."""
    grid = tuple(grid or V_LR_GRID)
    if not runs_ablations(preset):
        print(f"{presets.get_preset(preset).name} runs the paper's settings only: no v_lr grid, no ablation")
        grid, ablations = (), False
    if ablations and given_overrides(overrides):
        print(f"the study's ROME ablations are not run with other settings ({given_overrides(overrides)})")
        ablations = False
    ablation_targets = (presets.get_preset(preset).rome_ablation_targets or targets) if ablations else ()
    out = {}

    def one(target, seed, role, **kw):
        rec = run(preset, "rome", target, seed=seed, force=force, data_dir=data_dir, **{**overrides, **kw})
        print(tables.describe_run(rec) + f"  [{role}]")
        out[rec["run"]] = {**rec, "role": role}
        return rec

    for seed in seeds:
        for target in targets:
            rec = one(target, seed, "paper settings")
            base_lr = settings(preset, "rome", seed, **overrides)["v_lr"]
            takes = lambda r: not r.get("collapsed") and gates.rome_edits_take(r["run"], r)  # noqa: E731
            if not takes(rec):
                candidates, probe = [v for v in grid if v > base_lr], None
                if probe_edits and candidates:
                    probe = rome_grid_probe(preset, target, seed, candidates, probe_edits, force=force,
                                            data_dir=data_dir, **overrides)
                    tried = ", ".join(f"v_lr {r['v_lr']}: rewrite {r['rewrite_acc_mean']:.3f}" for r in probe["per_value"])
                    print(f"rome-{target}: v_lr probe on the first {probe_edits} edits: {tried}")
                    candidates = [v for v in candidates if probe["chosen"] is not None and v >= probe["chosen"]]
                    if not candidates:
                        print(f"rome-{target}: no grid value lets {probe_edits} edits take; no grid run")
                for v_lr in candidates:
                    r = one(target, seed, "v_lr grid", v_lr=v_lr)
                    if takes(r):
                        out[r["run"]]["gate_selected"] = True
                        if probe is not None:
                            out[r["run"]]["v_lr_probe"] = {k: probe[k] for k in ("n_requests", "chosen", "per_value")}
                        break
            if target in ablation_targets:
                for name, kw in STUDY_ABLATIONS["rome"].items():
                    one(target, seed, f"ablation {name}", **kw)
    return out


def wise_ablation_runs(preset, target, seeds=(0,), names=WISE_ABLATIONS, *, force: bool = False, data_dir=None,
                       **overrides) -> dict:
    """Our own WISE settings as named ablations of the study's `wise-<target>` run, each a run of its
    own beside the reproduction: "per-row-routing" (routing="per_row": the route is
    decided once per row on the prompt and kept for the generated tokens) and "margins-scaled"
    (act_margin_scale from the study run's x_i scores, wise_hparams.scaled_margin_overrides, rounded
    to 2 decimals so the run name stays readable). Returns {run name: record}. A call with `overrides`
    runs none: the ablations are of the study's settings, and a forced call for a user's variant must not
    recompute them."""
    out = {}
    if given_overrides(overrides):
        print(f"the study's WISE ablations are not run with other settings ({given_overrides(overrides)})")
        seeds = ()
    elif not runs_ablations(preset):
        print(f"{presets.get_preset(preset).name} runs the paper's settings only: no WISE ablation")
        seeds = ()
    for seed in seeds:
        for name in names:
            if name == "margins-scaled":     # its pilot is the study's run (cached when notebook 05 made it)
                pilot = run(preset, "wise", target, seed=seed, data_dir=data_dir, **overrides)
                if pilot.get("collapsed"):
                    print(f"wise-{target}: collapsed, so no pilot scores for 'margins-scaled'; skipped")
                    continue
                kw = {"act_margin_scale": round(wise_hparams.scaled_margin_overrides(pilot["stats"])["act_margin_scale"], 2)}
            else:
                kw = {k: v for k, v in wise_hparams.ablation_overrides(name).items() if k != "ablation"}
            rec = run(preset, "wise", target, seed=seed, force=force, data_dir=data_dir, **{**overrides, **kw})
            print(tables.describe_run(rec) + f"  [ablation {name}]")
            out[rec["run"]] = rec
    return out


# --------------------------------------------------------------------------- robustness (notebook 08)
def attack_settings(preset, hparams: dict | None = None) -> dict:
    """Notebook 08's attack settings: robustness.DEFAULTS with the attacker's fine-tunes at the rate the
    preset's baselines unlearn with (its file's [settings.baselines]: 1e-3 tiny, 1e-4 smollm2-forget01), the
    preset's [attack], then `hparams`."""
    from . import robustness
    p = presets.get_preset(preset)
    lr = {**STUDY_SETTINGS["baselines"].get("all", {}), **p.method_settings("baselines")}.get(
        "lr", robustness.DEFAULTS["relearn_lr"])
    return {**robustness.DEFAULTS, "max_new_tokens": p.max_new_tokens, "relearn_lr": lr, "persistence_lr": lr,
            **preset_attack(p, {**robustness.DEFAULTS, **robustness.OPTIONAL}), **(hparams or {})}


def attack_runs(preset, runs, *, force: bool = False, data_dir=None, hparams: dict | None = None,
                rebuild: bool = False) -> dict:
    """robustness.attack_all on each run's model (full and retain: the subject models), cached per run in
    results/<preset>/robustness.json: attacked again only when its record (a hash of its file) or the attack
    settings changed, or with `force` (the runs asked for only). The file is updated run by run under a lock
    (update_summary): attacks of runs not asked for stay while they match their records, whatever another
    process writes meanwhile. A run whose model is missing (a clone, a lost `artifacts/`) is re-made with
    `rebuild` (rebuild_unlearned), else noted under "_skipped" with why (attacks of its very record stay).
    Returns {run: attacks} of `runs` (and "_skipped" of those), PrivLeak added (against the retain model's)."""
    from . import robustness

    p = presets.get_preset(preset)
    sd = models.study_data(p, data_dir)
    hp = attack_settings(p, hparams)
    holdout = robustness.holdout_for(sd, data_dir, hp)

    def current(run, res):      # attacks of this very record (a deleted record keeps none) and settings
        source = store.record_hash(p.name, run)
        return source is not None and res.get("source") == source and res.get("hparams") == store.to_jsonable(hp)

    def merge(saved, attacked=None, skipped=None):
        """The file's contents with `attacked` {run: attacks} and `skipped` {run: why} merged in."""
        keep = {r: v for r, v in saved.items() if not r.startswith("_") and isinstance(v, dict) and current(r, v)}
        keep.update(attacked or {})
        notes = {**(saved.get("_skipped") or {}), **(skipped or {})}
        notes = {r: why for r, why in notes.items() if r not in keep and store.record_hash(p.name, r) is not None}
        out = robustness.add_privleak({r: keep[r] for r in tables.sort_runs(keep)})   # the study's order
        return {**out, "_skipped": notes} if notes else out

    saved = robustness.load_summary(p.name) or {}
    done = {r: v for r, v in saved.items() if r in runs and not force and isinstance(v, dict) and current(r, v)}
    fresh = {}                  # this call's attacks
    for run in runs:
        if run in done:
            continue
        if run in ("full", "retain"):
            (model, tok), prompter = models.load_subject_model(p, run, data_dir), None
        else:
            try:
                if rebuild and not runner.has_unlearned(p, run):
                    rebuild_unlearned(p, run, data_dir)
                model, tok, prompter = load_unlearned(p, run, data_dir)
            except (FileNotFoundError, runner.NotTheEvaluatedModel, CannotRebuild) as e:
                why = str(e)                    # a record left from an older run, or one not re-made
                print(f"NOT attacked: {run}: {why}")
                robustness.update_summary(p.name, lambda saved, run=run, why=why: merge(saved, skipped={run: why}))
                continue
        res = robustness.attack_all(model, tok, sd, template=p.template, holdout_rows=holdout, data_dir=data_dir,
                                    prompter=prompter, **hp)
        res["source"] = store.record_hash(p.name, run)
        fresh[run] = res
        robustness.update_summary(p.name, lambda saved: merge(saved, attacked=fresh))
        print(f"{run}: {res['timings']['total_s']:.0f} s")
    final = robustness.update_summary(p.name, lambda saved: merge(saved, attacked=fresh))
    out = {r: v for r, v in final.items() if r in runs}
    skipped = {r: why for r, why in (final.get("_skipped") or {}).items() if r in runs}
    if skipped:
        out["_skipped"] = skipped
    return out
