"""The study's runs of each method: their settings per preset, and one call that runs them.

`run(preset, method, target, seed=0, **overrides)` is what the notebooks call, once per run:
it resolves the run's settings (`settings`: the method's defaults, the study's choices for the
preset, then `overrides`), names the run (`rome-dummy`, or `rome-dummy+v_lr=0.1` when a setting
differs from the study's: an ablation), builds the method's inputs from the study data and
hands them to the runner (study.run_unlearning), which caches by every setting.

Methods: "rome", "rrome" (R-ROME, consistent keys), "ike", "wise", and the baselines "ga",
"gd", "kl", "idk", "npo". Study choices that differ from the method's published defaults are
named where they are set (STUDY_SETTINGS), with why.
"""
from __future__ import annotations

import dataclasses

from . import baselines, data, ike, models, paths, prompts, rome, study, trace, wise

EDITORS = ("rome", "rrome", "ike", "wise")
METHODS = EDITORS + baselines.METHODS
METHOD_NAMES = {"rome": "ROME", "rrome": "R-ROME", "ike": "IKE", "wise": "WISE"}

# The study's own choices, per method and preset, on top of each method's defaults. Everything
# not listed is the method's default (the paper's, via EasyEdit / TOFU).
STUDY_SETTINGS = {
    "rome": {
        # v_lr 0.5: EasyEdit's value (the paper's repo lowered it to 0.1 against NaNs on
        # Llama-2-7b); C from the study's QA texts (EasyEdit and the paper: C = I).
        "all": dict(v_lr=0.5, mom2_adjustment=True, n_edits=None, n_locality=40, fallback_layer=None),
        # "{}" + 5 prefixes instead of rome's 21 templates: the 30-minute budget of `make reproduce`
        "default": dict(context_template_length_params=((5, 5),)),
        "smoke": dict(context_template_length_params=((5, 5),), n_edits=3, v_num_grad_steps=8, n_locality=6),
    },
    "ike": {
        "all": dict(truncate=True, n_locality=20, sentence_model=ike.DEFAULT_SENTENCE_MODEL),
    },
    "wise": {
        # save_freq / merge_freq scaled to the forget-set size (wise.scaled_freqs): the paper's 400
        # edits < 500 never sharded; n_locality: the paper's 400 margin-loss prompts
        "all": dict(scale_freqs=True, reference_edits=400, n_locality=400, max_edits=None, edit_template=None),
        "smoke": dict(n_iter=8, n_templates=3, max_edits=8),
    },
}
_ROME_NOT_SETTINGS = ("cov", "mom2_texts", "mom2_cache_dir", "context_templates", "layer", "answer_start")
_WISE_NOT_SETTINGS = ("template", "verbose")


# --------------------------------------------------------------------------- settings
def _defaults(method: str) -> dict:
    if method in ("rome", "rrome"):
        d = rome.DEFAULT_HPARAMS
        d = dataclasses.asdict(d) if dataclasses.is_dataclass(d) else dict(d)
        return {k: v for k, v in d.items() if k not in _ROME_NOT_SETTINGS}
    if method == "ike":
        return {k: v for k, v in ike.DEFAULT_HPARAMS.items() if k != "sentence_model_name"}
    if method == "wise":
        return {k: v for k, v in dataclasses.asdict(wise.WiseHParams()).items() if k not in _WISE_NOT_SETTINGS}
    if method in baselines.METHODS:
        return {k: v for k, v in baselines.DEFAULTS.items() if k != "progress"}
    raise ValueError(f"unknown method {method!r}; valid: {METHODS}")


def settings(preset, method: str, seed: int = 0, **overrides) -> dict:
    """Every setting of one run: the method's defaults < the study's choices for the preset <
    `overrides` (None values are ignored, so notebook parameters can default to None).
    Unknown names raise, naming the valid ones."""
    p = models.get_preset(preset)
    hp = _defaults(method)
    if method in baselines.METHODS:
        hp.update({k: v for k, v in baselines.PRESET_HPARAMS.get(p.name, {}).items()})
    else:
        table = STUDY_SETTINGS.get("rome" if method == "rrome" else method, {})
        hp.update(table.get("all", {}))
        hp.update(table.get(p.name, {}))
    if method in ("rome", "rrome"):
        hp["consistent_keys"] = method == "rrome"
    hp["seed"] = seed
    unknown = sorted(k for k, v in overrides.items() if v is not None and k not in hp)
    if unknown:
        raise TypeError(f"unknown settings {unknown} for {method}; valid: {sorted(hp)}")
    hp.update({k: v for k, v in overrides.items() if v is not None})
    return hp


def plan(preset, method: str, target: str | None = None, seed: int = 0, **overrides) -> tuple[str, dict, dict]:
    """(run name, all settings, the settings that differ from the study's) of one run."""
    if method in EDITORS and target not in data.TARGETS:
        raise ValueError(f"{method} needs a target in {data.TARGETS}, got {target!r}")
    hp = settings(preset, method, seed, **overrides)
    changed = study.ablation(hp, settings(preset, method, seed))
    base = method if method in baselines.METHODS else f"{method}-{target}"
    return study.run_name(base, seed, changed), hp, changed


def run(preset, method: str, target: str | None = None, *, seed: int = 0, force: bool = False, data_dir=None,
        progress: bool = False, **overrides) -> dict:
    """One run of the study (cached by all its settings); returns its record."""
    p = models.get_preset(preset)
    name, hp, changed = plan(p, method, target, seed, **overrides)
    sd = models.study_data(p, data_dir)
    build = {"rome": _rome, "rrome": _rome, "ike": _ike, "wise": _wise}.get(method, _baseline)
    apply, extra, hp = build(p, sd, method, target, hp, data_dir)
    rec, _ = study.run_unlearning(p, name, METHOD_NAMES.get(method, method), target, apply, hp=hp, changed=changed,
                                  data_dir=data_dir, force=force, seed=seed, extra=extra, progress=progress)
    return rec


def describe(rec: dict) -> str:
    """One line per run for the notebooks' logs."""
    if rec.get("collapsed"):
        c = rec["collapsed"]
        return f"{rec['run']}: COLLAPSED at {c.get('step')}: {c.get('reason')}"
    return (f"{rec['run']}: MU {rec['model_utility']:.4f}  FQ {rec['forget_quality']:.3g}  "
            f"forget ROUGE {rec['metrics']['forget']['rouge']:.3f}"
            + (f"  (ablation: {rec['ablation']})" if rec.get("ablation") else ""))


# --------------------------------------------------------------------------- per method
def rome_layer(p, data_dir=None) -> tuple[int, dict]:
    """The edit layer: notebook 02's causal-trace choice, else a quarter of the depth."""
    n_layers = models.load_subject_model(p, "full", data_dir)[0].config.num_hidden_layers
    return trace.load_edit_layer(p.name, n_layers // 4)


def _rome(p, sd, method, target, hp, data_dir):
    template = prompts.get_template(p.template)
    layer, layer_info = rome_layer(p, data_dir)
    if hp["fallback_layer"] is not None and layer_info["source"] == "fallback parameter":
        layer = hp["fallback_layer"]
    hp = {**hp, "layer": layer}          # the resolved layer is part of the cache key
    rows = sd.forget_rows if hp["n_edits"] is None else sd.forget_rows[:hp["n_edits"]]
    requests = data.edit_requests(rows, target, template, data_dir)
    loc_items = [(template.prompt(r["question"]), r["answer"]) for r in sd.eval_sets["retain"][:hp["n_locality"]]]
    edit_kw = {k: v for k, v in hp.items() if k not in ("n_edits", "n_locality", "fallback_layer", "layer")}
    if hp["mom2_adjustment"]:
        edit_kw.update(mom2_texts=rome.qa_texts(sd.retain_rows + sd.forget_rows + sd.general_rows, template),
                       mom2_cache_dir=str(paths.mom2_cache_dir(p.name)))
    edit_metrics: dict = {}
    apply = rome.unlearning_apply(requests, layer=layer, locality_items=loc_items, metrics_out=edit_metrics,
                                  answer_start=template.answer_start, **edit_kw)
    extra = {"layer_source": layer_info["source"], "n_edits": len(requests), "edit_metrics": edit_metrics}
    return apply, extra, hp


def _ike(p, sd, method, target, hp, data_dir):
    kw = {k: hp[k] for k in ("k", "pool_fraction", "mode", "truncate", "n_locality", "order", "new_fact_scope",
                             "context_position", "seed")}
    embedder = ike.sentence_embedder(hp["sentence_model"], cache_dir=paths.ike_embedding_cache_dir())
    apply = ike.study_apply(sd, target, embedder=embedder, data_dir=data_dir, **kw)
    return apply, {}, hp


def _wise(p, sd, method, target, hp, data_dir):
    eval_tmpl = prompts.get_template(p.template)
    edit_tmpl = prompts.get_template(hp["edit_template"] or p.template)
    rows = sd.forget_rows[:hp["max_edits"]] if hp["max_edits"] else sd.forget_rows
    if hp["scale_freqs"]:
        hp = {**hp, **wise.scaled_freqs(len(rows), hp["reference_edits"], hp["save_freq"], hp["merge_freq"])}
    edit_reqs = data.edit_requests(rows, target, edit_tmpl, data_dir)
    metric_requests = {"edit prompt": edit_reqs}
    if edit_tmpl.name != eval_tmpl.name:
        metric_requests["evaluator prompt"] = data.edit_requests(rows, target, eval_tmpl, data_dir)
    loc_texts, loc_source = wise.locality_texts(sd, edit_tmpl, hp["n_locality"], data_dir)
    probe_prompts = {s: [eval_tmpl.prompt(r["question"]) for r in sd.eval_sets[s]]
                     for s in ("forget", "retain", "real_authors")}
    loc_items = [(eval_tmpl.prompt(r["question"]), r["answer"]) for r in sd.eval_sets["retain"]]
    wise_kw = {k: v for k, v in hp.items() if k in _defaults("wise")}

    def apply(model, tok, stats):
        return wise.unlearn(model, tok, stats, edit_reqs, locality_prompts=loc_texts, probe_prompts=probe_prompts,
                            metric_requests=metric_requests, locality_items=loc_items,
                            answer_start=edit_tmpl.answer_start, template=edit_tmpl, **wise_kw)

    extra = {"edit_template": edit_tmpl.name, "eval_template": eval_tmpl.name, "n_edits": len(rows),
             "locality_source": f"{len(loc_texts)} texts: {loc_source}"}
    return apply, extra, hp


def _baseline(p, sd, method, target, hp, data_dir):
    idk = data.load_tofu("idontknow", data_dir) if method == "idk" else None

    def apply(model, tok, stats):
        return baselines.unlearn(model, tok, method, sd.forget_rows, sd.retain_rows, template=p.template,
                                 idk_answers=idk, stats=stats, progress=False, **hp)

    extra = {"baseline": baselines.METHOD_NAMES[method], "n_forget_rows": len(sd.forget_rows),
             "n_retain_rows": len(sd.retain_rows),
             "lr_note": "TOFU defaults except lr (and smoke's epochs): see baselines.PRESET_HPARAMS"}
    return apply, extra, hp


def run_grid(preset, methods, targets=(None,), seeds=(0,), *, force: bool = False, data_dir=None,
             **overrides) -> dict:
    """`run` for every seed x method x target (the notebooks' one call per method or group of
    methods); prints one line per run and returns {run name: record}."""
    methods = [methods] if isinstance(methods, str) else list(methods)
    out = {}
    for seed in seeds:
        for method in methods:
            for target in targets:
                rec = run(preset, method, target, seed=seed, force=force, data_dir=data_dir, **overrides)
                print(describe(rec))
                out[rec["run"]] = rec
    return out
