"""A notebook's parameters are the names its `parameters` cell declares; any other is an error.

Papermill injects the parameters it is given in a cell right after the `parameters` cell, and
only warns ("Passed unknown parameter") about a name that cell does not declare: a misspelt
`-p v_lrr 0.5` would run the study's settings and look like an ablation. So the parameters cell
ends with `notebook_parameters.declare(namespace=globals())`, which notes the names defined so
far, and the cell after it starts with `notebook_parameters.reject_unknown(namespace=globals())`,
which raises on any name that appeared in between, i.e. one papermill injected undeclared.

(The call is written with a keyword so that its line holds an `=` that is no assignment:
papermill's reading of the parameters cell then skips it instead of gluing it to the last
parameter's default.)
"""
from __future__ import annotations

import types

# names IPython and ipykernel define in every kernel's namespace (besides those with a leading underscore)
IPYTHON_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "open"})

_declared: tuple[str, ...] | None = None   # the names at the end of the parameters cell, in their order


def _user_names(namespace: dict) -> list[str]:
    """The names a notebook defined, in order: not IPython's own, not imported modules."""
    return [name for name, value in namespace.items()
            if not name.startswith("_") and name not in IPYTHON_NAMES and not isinstance(value, types.ModuleType)]


def declare(namespace: dict) -> None:
    """Called at the end of the parameters cell: the names defined now are the parameters."""
    global _declared
    _declared = tuple(_user_names(namespace))


def reject_unknown(namespace: dict) -> None:
    """Called by the cell after the parameters cell: a name defined since `declare` was injected
    by papermill but is no parameter of this notebook (a typo, or another notebook's): TypeError
    naming it and the valid ones. Checks once per `declare` (rerunning this cell alone in
    JupyterLab, after later cells defined more names, checks nothing)."""
    global _declared
    declared, _declared = _declared, None
    if declared is None:
        return
    unknown = [name for name in _user_names(namespace) if name not in declared]
    if unknown:
        raise TypeError(f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: this notebook's "
                        f"parameters are {', '.join(declared)}. Check the spelling of the -p names, or "
                        "declare the parameter in the notebook's parameters cell.")
