"""A run's name: the one grammar every module writes and reads.

    <method>[-<target>][+<setting>=<value>...][-s<seed>]

`rome-dummy` (an editor with its target, the study's settings, seed 0), `ga` (a baseline),
`rome-dummy-s1` (seed 1), `rome-dummy+v_lr=0.1` (an ablation: each changed setting named),
`rome-dummy+v_lr=0.1-s1`. The subject models' records are `full`, `retain` and `base`.
The part before any `+` and seed is the run's *base* (`rome-dummy`, `ga`).
"""
from __future__ import annotations

import hashlib
import re

_SEED = re.compile(r"^(?P<base>.+?)-s(?P<seed>\d+)$")


def _value_name(v) -> str:
    """A setting's value as a run name writes it, exactly: `0.5`, `1` (for 1.0), `0.10000001`
    (never rounded into another value's name); text outside [A-Za-z0-9._-] is replaced and a
    short hash of the original added, so two values never share a name."""
    if isinstance(v, float):
        short = f"{v:g}"
        return short if float(short) == v else repr(v)
    if isinstance(v, (list, tuple)):
        return "-".join(_value_name(x) for x in v)
    text = str(v)
    clean = "".join(c if c.isalnum() or c in "._-" else "_" for c in text)
    return clean if clean == text else f"{clean}_{hashlib.sha256(text.encode()).hexdigest()[:6]}"


def base_name(method: str, target: str | None = None) -> str:
    """`rome-dummy` of ("rome", "dummy"); `ga` of ("ga", None)."""
    return method if target is None else f"{method}-{target}"


def run_name(base: str, seed: int = 0, changed: dict | None = None) -> str:
    """`base` with the settings that differ from the study's (`changed`) and a seed other than 0."""
    suffix = "".join(f"+{k}={_value_name(v)}" for k, v in (changed or {}).items())
    return f"{base}{suffix}" + ("" if seed == 0 else f"-s{seed}")


def split_seed(run: str) -> tuple[str, int]:
    """`rome-dummy-s2` -> ("rome-dummy", 2); `rome-dummy` -> ("rome-dummy", 0) (run_name's inverse)."""
    m = _SEED.match(str(run))
    return (m["base"], int(m["seed"])) if m else (str(run), 0)


def seed_of(run: str) -> int:
    """The seed a run name carries (0 when it names none)."""
    return split_seed(run)[1]


def is_variant(run: str) -> bool:
    """True for a run with changed settings (`rome-dummy+v_lr=0.1`), not the study's own."""
    return "+" in str(run)


def base_parts(run: str) -> list[str]:
    """["rome", "dummy"] of `rome-dummy+v_lr=0.1-s1`; ["ga"] of `ga-s2`; ["wise", "dummy", "rawprompt"]
    of an ablation named before settings were written after a `+`."""
    return split_seed(str(run).partition("+")[0])[0].split("-")


def prefix(run: str) -> str:
    """A run name's method prefix: `rome` of `rome-dummy+v_lr=0.5-s1`, `npo` of `npo+lr=1e-05`."""
    return base_parts(run)[0]


def target(run: str) -> str | None:
    """A run name's target: `dummy` of `rome-dummy+v_lr=0.5-s1`; None for a baseline (`ga-s1`)."""
    parts = base_parts(run)
    return parts[1] if len(parts) > 1 else None


def parts(run: str) -> tuple[str, str | None, int]:
    """(method prefix, target or None, seed) of a run name."""
    return prefix(run), target(run), seed_of(run)
