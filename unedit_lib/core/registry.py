"""The methods the study knows, one entry each, named by their run-name prefix ("rome", "ga", ...):
what every table, gate, figure and run reads to tell an editor from a baseline.

Its identity lives here, and this module imports nothing of the package (so the base, the evaluator
and the study's readers may all read it): the label its records carry in their `method` field, its
kind (an "editor" or an unlearning "baseline"), its family (ROME and R-ROME answer together), whether
a whole study runs it, its colour and marker in figures, and its place in tables. Its code is attached
under the same name where that code lives (`attach`; CODE_PARTS says what each part is):
study/settings.py its settings, recipes.py the builder of a run's inputs and how its unlearned model
is saved and loaded, gates.py its premise gates. A new method is `register`ed with its identity and
code in one call.
"""
from __future__ import annotations

from dataclasses import dataclass

EDITOR, BASELINE = "editor", "baseline"
KINDS = (EDITOR, BASELINE)
SUBJECT_MODEL_RUNS = ("full", "retain", "base")   # run names no method may take (the subject models)
BASELINE_COLOR = "C3"                             # every unlearning baseline's colour in figures
_FREE_COLORS = ("C4", "C5", "C6", "C8", "C7")     # a new method's colour: the first one no method has

CODE_PARTS = {
    "defaults": "() -> dict: the method's own settings (its published defaults), JSON-able",
    "study_settings": "{'all': {...}, <preset>: {...}}: the study's choices on top of the defaults",
    "build": "(preset, study data, method, target, hp, data_dir) -> (apply, record extras, hp): one run's inputs",
    "gates": "(run, record, records) -> list of premise gate rows (gates.py's shape)",
    "save": "(folder, model, tokenizer, prompter) -> the kind saved: 'model' (plain), or the method's name",
    "load": "(full model, tokenizer, folder) -> (model, tokenizer, prompter): the method's own saved kind",
    "watch_eval": "(model, stats) -> the evaluation's watch(set, kind) context manager or None, which may "
                  "write into stats (runner.run_unlearning's watch_eval: WISE's routes)",
    "resumable": "the word its saves count in (True: 'edit') when the build's apply takes checkpoint= (a "
                 "checkpoints.EditCheckpoint): sequential edits (ROME, WISE: 'edit'), epochs (the baselines: "
                 "'epoch') or IKE's scored forget rows saved as they go, a rerun continuing after the last one",
}


@dataclass(frozen=True)
class Method:
    name: str              # the run-name prefix: `rome-dummy`, `ga`
    label: str             # the records' `method` field ("ROME", "R-ROME", ...; baselines: their name)
    kind: str              # EDITOR or BASELINE
    family: str            # methods of one family answer together (summary.answer_lines)
    in_study: bool         # a whole study runs it (summary.study_runs; the findings' editor runs)
    color: str             # matplotlib colour of its runs (plots.run_style)
    marker: str | None     # its marker in figures; None: one per unlearning target (data.TARGET_SPECS)
    order: int             # its place among the methods of its kind in tables
    module: str | None     # the package under unedit_lib that implements it, "methods.<name>" (tests/test_layers.py
                           # checks each such package imports only core and itself)


_METHODS: dict[str, Method] = {}
_CODE: dict[str, dict[str, object]] = {}


def _check_code(name: str, code: dict) -> None:
    unknown = sorted(set(code) - set(CODE_PARTS))
    if unknown:
        raise TypeError(f"unknown code parts {unknown} for method {name!r}; valid: {sorted(CODE_PARTS)}")


def register(name: str, label: str, kind: str, *, family: str | None = None, in_study: bool = True,
             color: str | None = None, marker: str | None = None, order: int | None = None,
             module: str | None = None, **code) -> Method:
    """Add method `name` (its identity, and any CODE_PARTS given as keywords); returns its entry.
    `family` defaults to the label (baselines: "baseline"), `color` to a colour no method has,
    `order` to after every method registered so far."""
    if not name.isalnum() or not name.islower() or name in SUBJECT_MODEL_RUNS:
        raise ValueError(f"method name {name!r}: lower-case letters and digits only (it starts run names "
                         f"such as {name}-dummy), not one of {SUBJECT_MODEL_RUNS}")
    if kind not in KINDS:
        raise ValueError(f"method {name!r}: kind {kind!r}; valid: {KINDS}")
    taken = {m.label: m.name for m in _METHODS.values()}
    if name in _METHODS or label in taken:
        raise ValueError(f"method {name!r} (label {label!r}) is registered already "
                         f"as {name if name in _METHODS else taken[label]!r}")
    _check_code(name, code)
    used = {m.color for m in _METHODS.values()}
    spec = Method(name=name, label=label, kind=kind, family=family or (label if kind == EDITOR else BASELINE),
                  in_study=in_study, color=color or next((c for c in _FREE_COLORS if c not in used), "C7"),
                  marker=marker, order=len(_METHODS) if order is None else order, module=module)
    _METHODS[name] = spec
    _CODE[name] = dict(code)
    return spec


def attach(name: str, **code) -> None:
    """Attach code parts (CODE_PARTS) to a registered method, where that code lives."""
    get(name)
    _check_code(name, code)
    _CODE[name].update(code)


def unregister(name: str) -> None:
    """Remove a method (a test's or a notebook's try-out method)."""
    get(name)
    del _METHODS[name], _CODE[name]


def all_methods(kind: str | None = None, in_study: bool | None = None) -> tuple[Method, ...]:
    """The registered methods in the tables' order (editors, then baselines; each by `order`)."""
    out = sorted(_METHODS.values(), key=lambda m: (KINDS.index(m.kind), m.order))
    return tuple(m for m in out if (kind is None or m.kind == kind) and (in_study is None or m.in_study == in_study))


def names(kind: str | None = None, in_study: bool | None = None) -> tuple[str, ...]:
    """The registered method names in the tables' order (`all_methods`)."""
    return tuple(m.name for m in all_methods(kind, in_study))


def get(name: str) -> Method:
    """The method named `name`; a ValueError naming the valid ones otherwise."""
    if name not in _METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(names())}")
    return _METHODS[name]


def of_label(label) -> Method | None:
    """The method whose records carry `label` in their `method` field, else None (subject models)."""
    return next((m for m in _METHODS.values() if m.label == label), None)


def from_label(label) -> Method:
    """`of_label`, with a ValueError naming the valid labels where no method has it."""
    spec = of_label(label)
    if spec is None:
        raise ValueError(f"no method records the label {label!r}; valid: {', '.join(m.label for m in all_methods())}")
    return spec


def of_prefix(prefix: str) -> Method | None:
    """The method of a run name's prefix (run_names.prefix), else None (subject models, unknown prefixes)."""
    return _METHODS.get(prefix)


def families() -> list[tuple[str, tuple[str, ...]]]:
    """[(family, labels of its editors)] of the editors, in the tables' order."""
    out: dict[str, list[str]] = {}
    for m in all_methods(EDITOR):
        out.setdefault(m.family, []).append(m.label)
    return [(f, tuple(labels)) for f, labels in out.items()]


_MISSING = object()


def code(name: str, part: str, default=_MISSING):
    """Method `name`'s code part `part` (CODE_PARTS); `default` where none is attached, else a LookupError."""
    get(name)
    if part not in CODE_PARTS:
        raise ValueError(f"unknown code part {part!r}; valid: {sorted(CODE_PARTS)}")
    found = _CODE[name].get(part, default)
    if found is _MISSING:
        raise LookupError(f"method {name!r} has no {part!r} attached ({CODE_PARTS[part]}); the study's methods "
                          "get theirs when unedit_lib.study.recipes (with study_settings) and unedit_lib.report.gates "
                          "are imported")
    return found


# The study's methods: the four editors (R-ROME is ROME with consistent keys, off by default) and the
# five unlearning baselines (their label is their name: what their records have always carried).
register("rome", "ROME", EDITOR, color="C0", module="methods.rome")
register("rrome", "R-ROME", EDITOR, family="ROME", in_study=False, color="C9", module="methods.rome")
register("ike", "IKE", EDITOR, color="C1", module="methods.ike")
register("wise", "WISE", EDITOR, color="C2", module="methods.wise")
for _name, _marker in (("ga", "v"), ("gd", "D"), ("kl", "X"), ("idk", "P"), ("npo", "h")):
    register(_name, _name, BASELINE, color=BASELINE_COLOR, marker=_marker, module="methods.baselines")
