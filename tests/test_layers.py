"""The package's import graph is flat (issue 12): at most 5 levels, no cycle, methods import
only the base, the evaluator imports no method and nothing of the study."""
import ast
from pathlib import Path

import pytest

from unedit_lib import registry

PKG = Path(__file__).resolve().parents[1] / "unedit_lib"
BASE = {"hparams", "paths", "prompts", "edit_records", "architecture", "guards", "tokenizer", "reference", "data", "store", "embeddings",
        "precision", "notebook_parameters", "registry", "presets", "edit_checkpoint"}
METHODS = {m.module for m in registry.all_methods() if m.module}     # the modules implementing the registered methods
# a method split into files along its seams (issue 12: ~600 lines a module): its parts are
# method-level too, import only the base, and only their own method imports them
METHOD_PARTS = {"ike_prompts": "ike", "wise_hparams": "wise", "wise_memory": "wise"}
EVALUATOR = {"evaluate", "edit_metrics", "prompt_cache"}
STUDY = {"study", "recipes", "report", "plots", "robustness", "gates", "uncertainty", "summary", "trace_plots",
         "findings", "joint_bootstrap",
         "figure_io", "trace_records", "rome_grid", "robustness_verdicts", "cost_plan", "study_settings"}


def import_graph() -> dict[str, set[str]]:
    """{module: package modules it imports anywhere in its file (lazy imports included)}."""
    mods = {p.stem for p in PKG.glob("*.py") if p.stem != "__init__"}
    graph = {}
    for m in mods:
        deps = set()
        for n in ast.walk(ast.parse((PKG / f"{m}.py").read_text())):
            if isinstance(n, ast.ImportFrom) and n.level == 1:
                deps |= {n.module.split(".")[0]} if n.module else {a.name for a in n.names}
            elif isinstance(n, ast.ImportFrom) and (n.module or "").startswith("unedit_lib."):
                deps.add(n.module.split(".")[1])
            elif isinstance(n, ast.Import):
                deps |= {a.name.split(".")[1] for a in n.names if a.name.startswith("unedit_lib.")}
        graph[m] = (deps & mods) - {m}
    return graph


def levels(graph) -> dict[str, int]:
    """1 for a module importing nothing of the package, else 1 + its deepest import; a cycle raises."""
    out: dict[str, int] = {}

    def level(m, path=()):
        assert m not in path, f"import cycle: {' -> '.join(path + (m,))}"
        if m not in out:
            out[m] = 1 + max((level(d, path + (m,)) for d in graph[m]), default=0)
        return out[m]

    for m in graph:
        level(m)
    return out


def test_at_most_five_levels():
    lv = levels(import_graph())
    deep = {m: n for m, n in lv.items() if n > 5}
    assert not deep, f"modules deeper than 5 levels: {deep}; levels: {sorted(lv.items(), key=lambda x: x[1])}"


def test_methods_import_only_the_base():
    graph = import_graph()
    for m in METHODS:
        own = {part for part, method in METHOD_PARTS.items() if method == m}
        assert graph[m] <= BASE | own, f"{m} imports {sorted(graph[m] - BASE - own)} (a method imports only the base)"
    for part, method in METHOD_PARTS.items():
        own = {p for p, mm in METHOD_PARTS.items() if mm == method and p != part}
        assert graph[part] <= BASE | own, f"{part} ({method}) imports {sorted(graph[part] - BASE - own)}"
        users = {m for m, deps in graph.items() if part in deps} - {method} - own
        assert not users, f"{sorted(users)} import {part}: use {method} (it re-exports {part}'s names)"


def test_evaluator_and_base_import_no_method_or_study():
    graph = import_graph()
    for m in EVALUATOR | BASE:
        above = METHODS | set(METHOD_PARTS) | STUDY | {"models", "trace"} - ({"models"} if m in EVALUATOR else set())
        bad = graph[m] & above
        assert not bad, f"{m} imports {sorted(bad)}"
    assert not (graph["evaluate"] & {"models"}), "the evaluator needs no subject model code"


LIMIT = 640   # "~600 lines": recipes.py (the study runner's centre) is 629 until the layers become folders


def test_every_module_is_placed():
    graph = import_graph()
    placed = BASE | METHODS | set(METHOD_PARTS) | EVALUATOR | STUDY | {"models", "pretrained", "trace"}
    assert set(graph) <= placed, f"modules in no layer: {sorted(set(graph) - placed)}"


def test_no_module_over_600_lines():
    sizes = {p.stem: len(p.read_text().splitlines()) for p in PKG.glob("*.py")}
    long = {m: n for m, n in sizes.items() if n > LIMIT}
    assert not long, f"modules over ~600 lines (limit {LIMIT}): {long}"
