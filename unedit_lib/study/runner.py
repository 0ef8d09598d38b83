"""The study runner: one unlearning run, the same way for every editor and baseline.

`run_unlearning` loads a fresh copy of the preset's full model, applies a method, evaluates
the result on the four TOFU sets against the retain model, and commits the run as one unit:
per-item logs, the unlearned model (artifacts/<preset>/unlearned/<full model>/<run>/) and
last the record results/<preset>/<run>.json (store.py). Which method, with which settings:
recipes.py; the notebooks call `recipes.run(...)` once per run.

Run names and cache keys (an ablation never replaces a study run)
-----------------------------------------------------------------
A run's settings are one flat dict `hp` (every hyperparameter of the method and of the study's
use of it, e.g. the number of edits). Its *cache key* is a hash of all of them (`hp_key`);
a cached record is reused only when its key, its data (a content hash of the TOFU rows the study
reads: models.data_fingerprint), its full model and its files (record and per-item logs,
committed for the studied presets) match, otherwise the run is recomputed (and says why).
Its *name* is the method and target (`rome-dummy`), plus a suffix naming every setting that
differs from the study's at full precision (`rome-dummy+v_lr=0.1`), plus `-s<seed>` for seeds
other than 0: an ablation never overwrites the study's run, and the study's tables
(store.load_results) leave ablations out. A record under the run's name that was made with other
named settings or from other data is a clash (`RunClash`): refused with a message, never replaced
without `force`.

Nothing is deleted before a run has succeeded: its inputs (the device, the full model, the retain
logs every forget quality reads) are checked before the first minute of work, its logs and model
are staged beside the old ones, and `store.commit_run` swaps them in with the record last.

A collapse (guards.ModelCollapsed during the edit, or non-finite metrics after it) is recorded
as `collapsed` with where and why, never as numbers.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from ..core import paths, presets, store
from ..core.checkpoints import EditCheckpoint, EvalCheckpoint, model_digest
from ..core.guards import ModelCollapsed
from ..eval import evaluate, uncertainty
from ..subject import models

RECORD_VERSION = 2   # 2: hp_key, hparams (all settings) and ablation in every record


# --------------------------------------------------------------------------- names and keys
def hp_key(hp: dict) -> str:
    """A short hash of every setting of a run (canonical JSON: sorted keys, tuples as lists)."""
    blob = json.dumps(store.to_jsonable(hp), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def ablation(hp: dict, study_hp: dict) -> dict:
    """The settings of `hp` that differ from the study's (`study_hp`), in name order."""
    a, b = store.to_jsonable(hp), store.to_jsonable(study_hp)
    unknown = sorted(set(a) - set(b))
    if unknown:
        raise KeyError(f"settings {unknown} are not hyperparameters of this run; valid: {sorted(b)}")
    return {k: hp[k] for k in sorted(a) if a[k] != b.get(k)}


# --------------------------------------------------------------------------- unlearned models
def subject_model_id(preset) -> str:
    """The full model a run starts from: its artifact folder name (`full-<config hash>`)."""
    return models.subject_model_path(preset, "full").name


def evaluated_model_id(preset, which: str) -> str:
    """The model a subject-model record ("full", "retain", "base") evaluates: its artifact folder
    name (`<which>-<config hash>`, the hash naming the precision it was trained in), the hub id of
    a hub preset, or the pretrained base model's name."""
    p = presets.get_preset(preset)
    if which == "base":
        return p.base_model
    if p.hub_full:
        return p.hub_full if which == "full" else p.hub_retain
    return models.subject_model_path(p, which).name


def _record_evaluates(rec: dict, p, which: str) -> bool:
    """Whether a subject-model record was made from this machine's `which` model (records written
    before they named it keep the folder in `model_path`)."""
    made_from = rec.get("subject_model") or rec.get("model_path")
    return made_from is not None and Path(made_from).name == Path(evaluated_model_id(p, which)).name


def unlearned_path(preset, run: str):
    p = presets.get_preset(preset)
    return paths.unlearned_dir(p.name, subject_model_id(p), run)


def write_plain_model(folder, model, tokenizer, prompter=None) -> str:
    """A plain Hugging Face model as safetensors (with its tokenizer); returns its kind."""
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return "model"


def _unlearned_writer(preset, run: str, model, tokenizer, prompter, write_model):
    def write(folder):
        kind = write_model(folder, model, tokenizer, prompter)
        store.write_json({"run": run, "kind": kind, "full_model": subject_model_id(preset)},
                         folder / "unlearned.json")
    return write


def save_unlearned(preset, run: str, model, tokenizer, prompter=None, write_model=write_plain_model):
    """Keep an unlearned model (atomically: a temporary folder renamed into place), written by
    `write_model(folder, model, tokenizer, prompter) -> kind` (each method's registered `save`:
    safetensors, a WISE side memory, IKE's prompts), with `unlearned.json`."""
    return store.write_dir(unlearned_path(preset, run),
                           _unlearned_writer(preset, run, model, tokenizer, prompter, write_model))


def has_unlearned(preset, run: str) -> bool:
    """Whether a finished run's model was saved completely (its `unlearned.json` is written last)."""
    return (unlearned_path(preset, run) / "unlearned.json").is_file()


def unlearned_kind(preset, run: str) -> str:
    """The kind of a finished run's saved model ("model", "wise", "ike"); FileNotFoundError
    naming the folder when there is none."""
    folder = unlearned_path(preset, run)
    info = folder / "unlearned.json"
    if not has_unlearned(preset, run):
        raise FileNotFoundError(
            f"no saved unlearned model for run {run!r} of preset {presets.get_preset(preset).name!r} "
            f"({paths.display_path(folder)}); "
            "run its notebook (03-06) first, with force=True if its result was made on another machine "
            "(a committed record) or predates saved models")
    return store.read_json(info, "unlearned-model description").get("kind")


# --------------------------------------------------------------------------- records
def record_for(p, run: str, *, method: str, target, seed: int, summary=None, collapsed=False,
               timings=None, hp=None, changed=None, extra=None, logs=None, data=None) -> dict:
    """One run's record (results/<preset>/<run>.json). Fields: run, method, target, preset, seed,
    metrics, model_utility, forget_quality, ks_statistic, n_items, collapsed, timings, versions,
    then the run's own (stats, subject_model, ...), data (data_record), and hparams / hp_key / ablation."""
    rec = {"run": run, "method": method, "target": target, "preset": p.name, "seed": seed,
           "metrics": summary["metrics"] if summary else None,
           "model_utility": summary["model_utility"] if summary else None,
           "forget_quality": summary["forget_quality"] if summary else None,
           "ks_statistic": summary.get("ks_statistic") if summary else None,
           "n_items": summary.get("n_items") if summary else None,
           "collapsed": collapsed, "timings": timings or {}, "versions": store.library_versions(),
           "precision": precision_record(p), **store.to_jsonable(extra or {})}
    if data is not None:
        rec["data"] = data
    if hp is not None:
        rec.update(hparams=store.to_jsonable(hp), hp_key=hp_key(hp), ablation=store.to_jsonable(changed or {}),
                   record_version=RECORD_VERSION)
    if logs and "generated_text" in logs.get("forget", {}):   # the first forget answers (logs are not committed)
        rec["forget_answers"] = evaluate.forget_answers(logs)
    if logs and summary:       # row-bootstrap intervals of FQ, MU, forget ROUGE (uncertainty.py), kept in the record
        retain_logs = logs if run == "retain" else store.cached_logs(p.name, "retain")
        if retain_logs is not None:
            rec = uncertainty.add_intervals(rec, logs, retain_logs)
    return rec


def data_record(p, data_dir=None) -> dict:
    """What a record says of its data: the fingerprint of the rows it read and where they came from."""
    from ..core import data as tofu

    source = tofu.source_of("full", data_dir)
    return {"fingerprint": models.data_fingerprint(p, data_dir),
            "source": source if source.startswith("hub:") else paths.display_path(Path(source).parent)}


class RunClash(RuntimeError):
    """A record under this run's name was made with other named settings or from other data."""


def clash(rec: dict | None, changed: dict | None, data: dict | None) -> str | None:
    """Why record `rec` cannot be the result of a run with the named settings `changed` on `data`
    (None: no clash). A record without a data fingerprint (made before records named their data)
    is not a clash: it is recomputed as a stale result."""
    if rec is None:
        return None
    if changed is not None and "ablation" in rec and store.to_jsonable(rec["ablation"]) != store.to_jsonable(changed):
        return (f"it was made with the named settings {rec['ablation']}, this run's are {store.to_jsonable(changed)} "
                "(two settings that print the same name)")
    made_from = (rec.get("data") or {}).get("fingerprint")
    if data is not None and made_from is not None and made_from != data["fingerprint"]:
        return (f"it was made from other TOFU rows (data fingerprint {made_from}, {(rec.get('data') or {}).get('source')}) "
                f"than this run reads ({data['fingerprint']}, {data['source']})")
    return None


def refuse_clash(p, run: str, why: str):
    raise RunClash(f"results/{p.name}/{run}.json: {why}. Its name does not tell the two apart, so it is not "
                   "replaced: pass force=True to replace it, or set UNEDIT_RESULTS_DIR and UNEDIT_ARTIFACTS_DIR to "
                   "other folders to keep both")


def check_inputs(p, run: str, data_dir=None) -> models.StudyData:
    """What every run needs, checked before its first minute of work (each raises a clear error):
    the device, the data, the retain run's logs (every forget quality reads them) and this
    machine's full model, trained on this data. Returns the study data (models.study_data) it read."""
    from ..core.precision import run_device

    run_device()
    sd = models.study_data(p, data_dir)
    if run != "retain":
        cached_retain_logs(p)
    if not p.hub_full:
        path = models.subject_model_path(p, "full")
        if path.is_dir():
            models.check_trained_on(path, p, data_dir)
    return sd


def precision_record(p) -> dict:
    """The arithmetic behind a record (precision.py): the methods and the evaluator compute in the
    model's float32; the subject models were trained with the precision their training log names
    (bf16 autocast only on hardware with native bf16); and what "auto" resolves to here."""
    from ..core.precision import describe, run_device

    out = {"methods_and_evaluation": "float32", "machine": describe(run_device())}
    log = models.subject_model_path(p, "full") / "training_log.json" if not p.hub_full else None
    if log is not None and log.is_file():
        out["subject_model_training"] = json.loads(log.read_text()).get("precision", "bfloat16 autocast (before precision.py)")
    return out


def cached_retain_logs(p, retain_run: str = "retain") -> dict:
    """The retain run's cached logs (every forget quality reads them); a clear error when missing."""
    retain_logs = store.cached_logs(p.name, retain_run)
    if retain_logs is None:
        raise FileNotFoundError(f"{paths.logs_dir(p.name, retain_run)} has no logs: evaluate the retain model "
                                "first (notebooks/01_subject_models.ipynb)")
    rec = store.load_record(p.name, retain_run) or {}
    if retain_run == "retain" and not _record_evaluates(rec, p, "retain"):
        raise FileNotFoundError(
            f"results/{p.name}/retain.json evaluates another retain model ({rec.get('subject_model') or rec.get('model_path')}) "
            f"than this machine's {evaluated_model_id(p, 'retain')} (trained in {presets.training_precision(p)}): "
            "evaluate it first (notebooks/01_subject_models.ipynb)")
    return retain_logs


def summarize_against_retain(p, run: str, logs: dict, retain_run: str = "retain") -> dict:
    """evaluate.summarize of `logs` with the retain run's forget logs (forget quality)."""
    return evaluate.summarize(logs, logs if run == retain_run else cached_retain_logs(p, retain_run))


class NotTheEvaluatedModel(RuntimeError):
    """This machine's subject model has the committed record's name but not its numbers."""


def forget_losses_match(p, model, tokenizer, forget_rows, forget_log: dict, n_rows: int = 5, rtol: float = 1e-3,
                        prompter=None) -> tuple[list[float], list, bool]:
    """(this model's answer losses on the first `n_rows` forget questions, the logged ones, whether
    they agree to `rtol`: float noise, not another model). `prompter`: IKE's prompts."""
    rows = list(forget_rows)[:n_rows]
    ours = evaluate.answer_losses(model, tokenizer, p.template, [(r["question"], r["answer"]) for r in rows],
                                  prompter=prompter)
    theirs = [forget_log["avg_gt_loss"].get(str(i)) for i in range(len(rows))]
    same = not any(t is None or abs(o - t) > rtol * abs(t) + 1e-6 for o, t in zip(ours, theirs))
    return ours, theirs, same


def rounded_losses(xs) -> list:
    """Answer losses to 5 decimals for an error message (None kept)."""
    return [None if x is None else round(x, 5) for x in xs]


def check_same_model(p, which: str, model, tokenizer, forget_rows, forget_log: dict, n_rows: int = 5,
                     rtol: float = 1e-3) -> None:
    """Raise NotTheEvaluatedModel unless `model` gives the committed evaluation's answer losses on
    the first `n_rows` forget questions (forget_losses_match).

    A subject model's name is its settings' hash, so a machine that re-makes it (a fresh clone,
    a lost `artifacts/`) finds the committed records under the same name; but a fine-tune is
    float arithmetic, and another CPU may round it into another model. Every committed run of the
    preset started from the committed model, so none can be reused with a different one."""
    ours, theirs, same = forget_losses_match(p, model, tokenizer, forget_rows, forget_log, n_rows, rtol)
    if not same:
        raise NotTheEvaluatedModel(
            f"{which}: this machine's {evaluated_model_id(p, which)} is not the model results/{p.name}/{which}.json "
            f"evaluated: answer losses of the first forget questions {rounded_losses(ours)}, committed "
            f"{rounded_losses(theirs)}. Its fine-tune came out differently here "
            f"(another CPU's float rounding?), so no committed run of preset {p.name} can be reused with it: "
            "rerun the study with force (`make reproduce FORCE=1`, or force=True in each notebook) to recompute "
            "them from this machine's models.")


# what makes two records of a subject model the same evaluation (other fields: when and where it ran)
SAME_EVALUATION = ("metrics", "model_utility", "forget_quality", "ks_statistic", "n_items", "subject_model", "data",
                   "intervals", "forget_answers")


def evaluate_subject_model(preset, which: str, model, tokenizer, *, force: bool = False, extra=None,
                           data_dir=None, progress: bool = True) -> dict:
    """Evaluate (or reuse the logs of) the full or retain model ("subject model" records; the
    retain model first: the others' forget quality needs its logs). Returns its record."""
    p = presets.get_preset(preset)
    sd = models.study_data(p, data_dir)
    data = data_record(p, data_dir)
    retain_logs = None if which == "retain" else cached_retain_logs(p)    # before minutes of evaluation
    old = store.load_record(p.name, which)
    why = None if force else clash(old, None, data)
    if why:
        refuse_clash(p, which, why)
    logs = None if force else store.cached_logs(p.name, which)
    if logs is not None and not (old or {}).get("data"):
        print(f"{which}: re-evaluating, the cached evaluation does not name its data (made before records did)")
        logs = None
    if logs is not None and not _record_evaluates(old or {}, p, which):
        print(f"{which}: re-evaluating, the cached evaluation is of another model "
              f"({(old or {}).get('subject_model') or (old or {}).get('model_path')}, not {evaluated_model_id(p, which)})")
        logs = None
    timings, reused = {}, logs is not None
    if logs is None:
        logs = evaluate.evaluate_model(model, tokenizer, sd.eval_sets, p.template, progress=progress,
                                       max_new_tokens=p.max_new_tokens)
        timings["eval_s"] = logs["_seconds"]
    else:     # cached logs: of this very model? then keep the evaluation time the record holds
        if model is not None and logs.get("forget"):
            check_same_model(p, which, model, tokenizer, sd.eval_sets["forget"], logs["forget"])
        timings = (old or {}).get("timings", {})
    summary = evaluate.summarize(logs, logs if retain_logs is None else retain_logs)
    rec = record_for(p, which, method="subject model", target=None, seed=p.seed, summary=summary, timings=timings,
                     extra={**(extra or {}), "subject_model": evaluated_model_id(p, which)}, logs=logs, data=data)
    for key in ("versions", "precision") if reused else ():
        if (old or {}).get(key):
            rec[key] = old[key]     # the versions and machine that computed the reused logs, not today's
    if reused and old and all(rec.get(k) == old.get(k) for k in SAME_EVALUATION):
        return old          # the same evaluation: its record kept as it is (notebook 08's attacks are keyed by it)
    staged = {paths.logs_dir(p.name, which): store.stage_dir(paths.logs_dir(p.name, which),
                                                             lambda d: store.save_eval_logs(logs, d))}
    store.commit_run(paths.record_path(p.name, which), rec, staged)
    return rec


# --------------------------------------------------------------------------- the runner
def cached(p, run: str, hp: dict | None, changed: dict | None = None, data: dict | None = None) -> tuple[dict | None, str]:
    """(record, "") when a finished result of this run can be reused as it is, else (None, why).
    `changed` (the run's named settings) and `data` (data_record) are checked when given."""
    try:
        rec = store.load_record(p.name, run)
    except store.CorruptFile as e:
        return None, str(e)
    if rec is None:
        return None, "no result yet"
    why = clash(rec, changed, data)
    if why:
        return None, why
    if data is not None and not (rec.get("data") or {}).get("fingerprint"):
        return None, "it does not name the data it was made from (made before records did)"
    if rec.get("subject_model") != subject_model_id(p):
        return None, (f"made from another full model ({rec.get('subject_model')}, not this machine's "
                      f"{subject_model_id(p)}, trained in {presets.training_precision(p)})")
    if hp is not None and rec.get("hp_key") != hp_key(hp):
        old = rec.get("hparams") or {}
        diff = sorted(k for k in set(old) | set(store.to_jsonable(hp))
                      if old.get(k) != store.to_jsonable(hp).get(k)) if old else ["(record has no hp_key)"]
        return None, f"made with other settings ({', '.join(diff)})"
    if rec.get("collapsed"):
        return rec, ""
    try:
        logs = store.cached_logs(p.name, run)
    except store.CorruptFile as e:
        return None, str(e)
    if logs is None:
        return None, "its per-item logs are missing"
    # The unlearned model is not part of the result: a clone has the committed record and logs but
    # none of the models (artifacts/ is not committed), and only notebook 08's attacks need one
    # (recipes.attack_runs names the run it cannot attack). A model left from other settings
    # cannot pair with this record: run_unlearning deletes both before it recomputes.
    return rec, ""


def run_unlearning(preset, run: str, method: str, target: str | None, apply, *, hp: dict | None = None,
                   changed: dict | None = None, data_dir=None, force: bool = False, seed: int = 0,
                   extra: dict | None = None, progress: bool = True, write_model=write_plain_model, watch_eval=None,
                   resumable: bool | str = False, study_data: models.StudyData | None = None):
    """apply(model, tokenizer, stats) -> the unlearned model, or (model, prompter) for a method
    whose edit is the prompts (IKE: `prompter` gives each question's prompt to the evaluator).

    Returns (record, model-or-None); `model` is None when the cached result was reused or the
    run collapsed. `hp` (all settings; `changed`: those that differ from the study's) gives the
    cache key. `stats` (filled by `apply`, and by a prompter during evaluation) is stored in the
    record after evaluation; `timings.unlearn_s` is the wall time of `apply`. `write_model`
    saves the unlearned model (see save_unlearned). `watch_eval(model, stats)` (optional), called
    once `apply` has returned, gives the evaluation's `watch(set_name, kind)` (a context manager
    around each pass: evaluate.evaluate_set) or None; it may write into `stats` (WISE: the routes
    the evaluation took: recipes.wise_eval_routes). A cached record under this name made with
    other named settings or from other data raises RunClash unless `force`; with `force` (or a
    stale record) the old result stays as it is until the new one is computed and committed.
    `resumable` (the word its saves count in, True: "edit"; registry.CODE_PARTS): `apply` also takes
    checkpoint= (checkpoints.EditCheckpoint, keyed by the run's
    settings, data and subject model): a rerun after a killed one continues after its last saved
    edit, `timings.unlearn_s` counts the earlier processes' seconds too and `stats["segments"]`
    lists them (each with the CPU and the subject model's digest it ran on); a copy parked in
    results/<preset>/in_progress/ (checkpoints.park: a run longer than a session, continued on a fresh
    clone) is resumed from too; both are deleted once the run is committed. Every run's evaluation keeps each
    finished set (checkpoints.EvalCheckpoint, keyed by the run and the evaluated model's weights): a
    rerun after a kill evaluates only the sets left, and `timings.eval_s` counts the earlier ones. `preset` is a resolved Preset
    (or a name); `study_data` the study data a caller has checked already (check_inputs), else the
    inputs are checked here.
    """
    p = presets.get_preset(preset)
    for kind in ("results", "artifacts"):      # what writers that died left behind
        store.clean_temporaries(paths.output_dir(kind) / p.name)
    data = data_record(p, data_dir)
    if not force:
        rec, why = cached(p, run, hp, changed, data)
        if rec is not None:
            return rec, None
        try:
            why_clash = clash(store.load_record(p.name, run), changed, data)
        except store.CorruptFile:
            why_clash = None
        if why_clash:
            refuse_clash(p, run, why_clash)
        if why != "no result yet":
            print(f"{run}: recomputing, the cached result cannot be reused: {why}")
    # one process computes a run at a time: a second one (another notebook, a second `make reproduce`)
    # waits, then reuses what the first committed
    with store.locked(paths.checkpoint_path(p.name, run),
                      waiting=f"{run}: another process is computing this run; waiting for it to finish"):
        if not force and (rec := cached(p, run, hp, changed, data)[0]) is not None:
            return rec, None
        return _compute_run(p, run, method, target, apply, hp=hp, changed=changed, data=data, data_dir=data_dir,
                            seed=seed, extra=extra, progress=progress, write_model=write_model,
                            watch_eval=watch_eval, resumable=resumable, study_data=study_data)


def _compute_run(p, run: str, method: str, target: str | None, apply, *, hp, changed, data, data_dir, seed, extra,
                 progress, write_model, watch_eval, resumable, study_data):
    """run_unlearning's work once no cached result serves: unlearn, evaluate, commit."""
    sd = study_data if study_data is not None else check_inputs(p, run, data_dir)   # before any work
    model, tok = models.load_subject_model(p, "full", data_dir)
    stats: dict = {}
    info = {"stats": stats, "subject_model": subject_model_id(p), **(extra or {})}
    common = dict(method=method, target=target, seed=seed, hp=hp, changed=changed, data=data)
    drop = {paths.logs_dir(p.name, run): None, unlearned_path(p, run): None}    # a collapse keeps neither
    ckpt, key = None, {"run": run, "hp_key": hp_key(hp), "data": data, "subject_model": info["subject_model"]}
    if resumable:
        unit = resumable if isinstance(resumable, str) else "edit"      # the word a save counts in
        ckpt = EditCheckpoint(paths.checkpoint_path(p.name, run), key, unit=unit,
                              parked=paths.parked_checkpoint_path(p.name, run), subject=model_digest(model))
    t0 = time.perf_counter()
    try:
        result = apply(model, tok, stats) if ckpt is None else apply(model, tok, stats, checkpoint=ckpt)
    except ModelCollapsed as e:
        rec = record_for(p, run, collapsed=e.as_record(), timings={"unlearn_s": _unlearn_s(t0, ckpt, stats)},
                         extra=info, **common)
        store.commit_run(paths.record_path(p.name, run), rec, drop)
        if ckpt is not None:
            ckpt.clear()
        return rec, None
    timings = {"unlearn_s": _unlearn_s(t0, ckpt, stats)}
    model, prompter = result if isinstance(result, tuple) else (result, None)
    # the sets a killed process evaluated on this very model are reused (and what they wrote into stats)
    eval_ckpt = EvalCheckpoint(paths.eval_checkpoint_dir(p.name, run), {**key, "model": model_digest(model)})
    finished = eval_ckpt.start(stats)
    watch = None if watch_eval is None else watch_eval(model, stats)
    logs = evaluate.evaluate_model(model, tok, sd.eval_sets, p.template, progress=progress,
                                   max_new_tokens=p.max_new_tokens, prompter=prompter, finished=finished,
                                   on_set=lambda name, log: eval_ckpt.save_set(name, log, stats),
                                   **({} if watch is None else {"watch": watch}))
    logs["_seconds"] = round(logs["_seconds"] + eval_ckpt.seconds_before, 2)
    timings["eval_s"] = logs["_seconds"]
    try:
        summary = summarize_against_retain(p, run, logs)
    except evaluate.NonFiniteMetric as e:
        rec = record_for(p, run, collapsed={"step": "evaluation", "reason": str(e)}, timings=timings,
                         extra=info, **common)
        store.commit_run(paths.record_path(p.name, run), rec, drop)
        for done in (ckpt, eval_ckpt):
            if done is not None:
                done.clear()
        return rec, None
    staged = {}
    try:
        staged[paths.logs_dir(p.name, run)] = store.stage_dir(paths.logs_dir(p.name, run),
                                                              lambda d: store.save_eval_logs(logs, d))
        staged[unlearned_path(p, run)] = store.stage_dir(
            unlearned_path(p, run), _unlearned_writer(p, run, model, tok, prompter, write_model))
        rec = record_for(p, run, summary=summary, timings=timings, extra=info, logs=logs, **common)
    except BaseException:
        store.discard_staged(staged)
        raise
    store.commit_run(paths.record_path(p.name, run), rec, staged)    # the record last: it commits the run
    for done in (ckpt, eval_ckpt):
        if done is not None:
            done.clear()
    return rec, model


def _unlearn_s(t0: float, ckpt, stats: dict) -> float:
    """Seconds of `apply` in this process, plus those of the earlier processes a resumed run continues
    (their segments then go into stats["segments"])."""
    seconds = time.perf_counter() - t0
    if ckpt is not None and ckpt.record() is not None:
        stats["segments"] = ckpt.record()
        seconds += ckpt.seconds_before
    return seconds
