"""One base for every method's hyperparameters (issue 39): `HParams`.

A method declares its settings as a frozen dataclass subclassing `HParams`, its defaults the paper's
(or, for the baselines, TOFU's), and states in plain class attributes (no annotation: not fields)
what the base checks and records:

    METHOD        the name errors use ("ROME", "WISE", ...)
    CHOICES       {field: its valid values}
    POSITIVE      fields that must be > 0;  NON_NEGATIVE: >= 0;  FRACTIONS: in [0, 1]
    PAPER_FIELDS  the algorithm settings compared with the paper's (`deviations`); None: every field
                  but the seed, `ablation` and NOT_RECORDED
    ABLATIONS     {name: overrides}: our named deviations from the paper's settings
    NOT_RECORDED  fields `record` leaves out (a progress bar, ...)

and gets:
  * validation in __post_init__: each field's type from its annotation (int, float, bool, str,
    tuple, None and their unions; other annotations are not checked; lists given for a tuple field,
    e.g. from JSON, become tuples), then CHOICES and the ranges, then the class's own `_check`
    (cross-field rules). Errors name the field and the valid values.
  * `replace(**changes)`: a validated copy; unknown names raise TypeError naming the valid ones.
  * `paper()`: the paper's settings (the defaults unless a class says otherwise), `deviations()`:
    {field: {"value", "paper"}} for each PAPER_FIELDS setting that differs from it.
  * `record()`: every field as JSON-able values (tuples -> lists; `_record_field` / `_record_extra`
    let a method record a field its own way) plus "deviations_from_paper".
  * `ablation_overrides(*names)` / `with_ablations(*names)`: the named ABLATIONS (a class with an
    `ablation` field records the names applied, joined by "+").

This module imports nothing of the package (base layer).
"""
from __future__ import annotations

import dataclasses
import numbers

_SIMPLE_TYPES = {"int", "float", "bool", "str", "tuple", "None", "dict", "list"}


def jsonable(v):
    """Tuples (and lists) as lists, recursively; other values as they are."""
    return [jsonable(x) for x in v] if isinstance(v, (tuple, list)) else v


def _tuplify(v):
    return tuple(_tuplify(x) for x in v) if isinstance(v, (tuple, list)) else v


def _types(annotation) -> tuple[str, ...] | None:
    """The simple type names of a field's annotation ("int | None" -> ("int", "None")); None when
    any part is not a simple type (then the field's type is not checked)."""
    parts = tuple(p.strip() for p in str(annotation).split("|"))
    return parts if all(p in _SIMPLE_TYPES for p in parts) else None


def _is(value, name: str) -> bool:
    if name == "None":
        return value is None
    if name == "bool":
        return isinstance(value, bool)
    if name == "int":
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if name == "float":
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    return isinstance(value, {"str": str, "tuple": tuple, "dict": dict, "list": list}[name])


class HParams:
    """Base of the methods' hyperparameter dataclasses (see the module docstring)."""

    METHOD = "method"
    CHOICES: dict = {}
    POSITIVE: tuple = ()
    NON_NEGATIVE: tuple = ()
    FRACTIONS: tuple = ()
    PAPER_FIELDS: tuple | None = None
    ABLATIONS: dict = {}
    NOT_RECORDED: tuple = ()

    # ------------------------------------------------------------------ validation
    def __post_init__(self):
        self._normalise()
        self.validate()

    def _normalise(self):
        """Lists given for tuple fields (JSON, notebook parameters) become tuples: hashable, equal to the defaults."""
        for f in dataclasses.fields(self):
            types = _types(f.type)
            v = getattr(self, f.name)
            if types and "tuple" in types and isinstance(v, list):
                object.__setattr__(self, f.name, _tuplify(v))

    def _fail(self, name: str, what: str):
        raise ValueError(f"{self.METHOD} hyperparameter {name} must be {what}, got {getattr(self, name)!r}")

    def validate(self):
        """Check every field's type, CHOICES and range, then the class's own rules (`_check`); raises
        ValueError naming the field and its valid values."""
        for f in dataclasses.fields(self):
            types, v = _types(f.type), getattr(self, f.name)
            if types and not any(_is(v, t) for t in types):
                self._fail(f.name, f"of type {' | '.join(types)}")
        for name, values in self.CHOICES.items():
            if getattr(self, name) not in values:
                self._fail(name, f"one of {tuple(values)}")
        for names, ok, what in ((self.POSITIVE, lambda v: v > 0, "> 0"), (self.NON_NEGATIVE, lambda v: v >= 0, ">= 0"),
                                (self.FRACTIONS, lambda v: 0 <= v <= 1, "in [0, 1]")):
            for name in names:
                v = getattr(self, name)
                if v is not None and not ok(v):
                    self._fail(name, what)
        self._check()

    def _check(self):
        """A method's cross-field rules (raise ValueError naming the fields)."""

    # ------------------------------------------------------------------ copies
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes):
        """A validated copy with `changes`; unknown names raise TypeError listing the valid ones."""
        unknown = set(changes) - set(self.field_names())
        if unknown:
            raise TypeError(f"unknown {self.METHOD} hyperparameters {sorted(unknown)}; valid: {sorted(self.field_names())}")
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ the paper's values
    @classmethod
    def paper(cls):
        """The paper's settings (the class's defaults), made once."""
        if "_PAPER" not in cls.__dict__:
            cls._PAPER = cls()
        return cls._PAPER

    @classmethod
    def paper_fields(cls) -> tuple[str, ...]:
        if cls.PAPER_FIELDS is not None:
            return tuple(cls.PAPER_FIELDS)
        return tuple(n for n in cls.field_names() if n not in ("seed", "ablation", *cls.NOT_RECORDED))

    def deviations(self) -> dict:
        """{name: {"value", "paper"}} for each PAPER_FIELDS setting that differs from the paper's,
        named by an ablation or not: a record states what it changed either way."""
        paper = self.paper()
        out = {}
        for name in self.paper_fields():
            value, ref = jsonable(getattr(self, name)), jsonable(getattr(paper, name))
            if value != ref:
                out[name] = {"value": value, "paper": ref}
        return out

    def deviations_from_paper(self) -> dict:        # the name records use
        return self.deviations()

    # ------------------------------------------------------------------ records
    def record(self, *, deviations: bool = True) -> dict:
        """Every hyperparameter as JSON-able values (for a run's stats / record), then its
        "deviations_from_paper" (unless `deviations=False`)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name not in self.NOT_RECORDED:
                out.update(self._record_field(f.name, getattr(self, f.name)))
        out.update(self._record_extra())
        if deviations:
            out["deviations_from_paper"] = self.deviations()
        return out

    def _record_field(self, name: str, value) -> dict:
        """{recorded name: JSON-able value} for one field (a method may rename or summarise it)."""
        return {name: jsonable(value)}

    def _record_extra(self) -> dict:
        """Derived values recorded after the fields."""
        return {}

    # ------------------------------------------------------------------ named ablations
    @classmethod
    def ablation_names(cls) -> list[str]:
        return sorted(cls.ABLATIONS)

    @classmethod
    def _ablation(cls, name: str, **context) -> dict:
        """The overrides of one named ablation (a method whose ablation needs inputs takes them in `context`)."""
        if name not in cls.ABLATIONS:
            raise KeyError(f"unknown {cls.METHOD} ablation {name!r}; known: {cls.ablation_names()}")
        return dict(cls.ABLATIONS[name])

    @classmethod
    def ablation_overrides(cls, *names: str, **context) -> dict:
        """The overrides of the named ablations applied in order, with `ablation` naming them ("a+b")
        when the class records it."""
        out = {}
        for name in names:
            out.update(cls._ablation(name, **context))
        if "ablation" in cls.field_names():
            out["ablation"] = "+".join(dict.fromkeys(names)) or None
        return out

    def with_ablations(self, *names: str, **context):
        """A copy with the named ablations applied in order, `ablation` naming those already applied
        and these (`with_ablations("c-from-text", "v_lr-0.5")` -> ablation "c-from-text+v_lr-0.5")."""
        overrides = self.ablation_overrides(*names, **context)
        if "ablation" in overrides:
            applied = (self.ablation.split("+") if self.ablation else []) + list(names)
            overrides["ablation"] = "+".join(dict.fromkeys(applied)) or None
        return self.replace(**overrides)
