"""The package's layers are its folders, and each imports only the layers below it:

    core/              the base: imports nothing of the package outside core
    subject/           the subject models: core
    eval/              what is measured on a model (the evaluator, edit metrics, bootstrap intervals): core
    methods/<method>/  one package per registered method: core and its own package, never another method
    tracing/           causal tracing and its files: core, subject
    report/            tables, gates, findings, summary, figures: core, subject, eval, tracing
    study/             the runner, the recipes, the attacks: any layer (the top)

Besides: no import cycle, at most 5 levels of modules, no module over LIMIT lines, no module outside a
layer folder, the registered methods' packages are exactly methods/'s, and a name is imported from the
module that defines it (no module passes on another's names)."""
import ast
from pathlib import Path

import pytest

from unedit_lib.core import registry

PKG = Path(__file__).resolve().parents[1] / "unedit_lib"
# each layer, and the layers its modules may import besides their own folder's
BELOW = {
    "core": set(),
    "subject": {"core"},
    "eval": {"core"},
    "methods": {"core"},
    "tracing": {"core", "subject"},
    "report": {"core", "subject", "eval", "tracing"},
    "study": {"core", "subject", "eval", "methods", "tracing", "report"},
}
LIMIT = 640   # "~600 lines" a module
MAX_LEVELS = 5


def module_files() -> dict[str, Path]:
    """{dotted name under unedit_lib ("methods.wise.editor"; a package by its folder): file}."""
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _imports(name: str, path: Path, mods) -> set[str]:
    """The package modules `name` imports anywhere in its file (lazy imports included)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    deps = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ImportFrom):
            if n.level:
                base = package[:len(package) - (n.level - 1)] + (n.module.split(".") if n.module else [])
            elif (n.module or "").split(".")[0] == "unedit_lib":
                base = n.module.split(".")[1:]
            else:
                continue
            src = ".".join(base)
            for a in n.names:                   # a submodule, else a name of the module `src`
                deps.add(f"{src}.{a.name}" if f"{src}.{a.name}".lstrip(".") in mods else src)
        elif isinstance(n, ast.Import):
            deps |= {a.name.split(".", 1)[1] for a in n.names if a.name.startswith("unedit_lib.")}
    return {d.lstrip(".") for d in deps if d} - {name}


def import_graph() -> dict[str, set[str]]:
    """{module: package modules it imports}."""
    mods = module_files()
    return {m: _imports(m, p, mods) & set(mods) for m, p in mods.items() if m}


def unit(module: str) -> str:
    """The folder a module belongs to: its layer, or for a method, its method's package."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "methods" and len(parts) > 1 else parts[0]


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import that goes to a layer not below the importer's (or from one method to another)."""
    out = []
    for m, deps in sorted(graph.items()):
        layer = m.split(".")[0]
        if layer not in BELOW:
            out.append(f"{m} is in no layer folder ({', '.join(BELOW)})")
            continue
        for d in sorted(deps):
            if unit(d) != unit(m) and d.split(".")[0] not in BELOW[layer]:
                out.append(f"{m} imports {d} ({layer}/ imports only {sorted(BELOW[layer]) or 'itself'})")
    return out


def levels(graph) -> dict[str, int]:
    """1 for a module importing nothing of the package, else 1 + its deepest import; a cycle raises."""
    out: dict[str, int] = {}

    def level(m, path=()):
        assert m not in path, f"import cycle: {' -> '.join(path + (m,))}"
        if m not in out:
            out[m] = 1 + max((level(d, path + (m,)) for d in graph.get(m, ())), default=0)
        return out[m]

    for m in graph:
        level(m)
    return out


def passed_on(files: dict[str, Path]) -> list[str]:
    """`from X import name` where X only imports `name` itself: the name is to be imported from where it lives."""
    own, imported = {}, {}
    for m, p in files.items():
        tree = ast.parse(p.read_text())
        imported[m] = {a.asname or a.name for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
                       for a in n.names}
        own[m] = {t.id for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                  for t in ast.walk(n) if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)}
        own[m] |= {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    out = []
    for m, p in files.items():
        package = m.split(".") if p.name == "__init__.py" else m.split(".")[:-1]
        for n in ast.walk(ast.parse(p.read_text())):
            if not isinstance(n, ast.ImportFrom) or not n.level:
                continue
            src = ".".join(package[:len(package) - (n.level - 1)] + (n.module.split(".") if n.module else []))
            for a in n.names:
                if src in files and f"{src}.{a.name}".lstrip(".") not in files \
                        and a.name in imported[src] and a.name not in own[src]:
                    out.append(f"{m} imports {a.name} from {src}, which imports it itself")
    return out


def test_every_module_is_in_a_layer_folder():
    loose = sorted(p.name for p in PKG.glob("*.py") if p.name != "__init__.py")
    assert not loose, f"modules outside the layer folders: {loose}"
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(BELOW), f"package folders {sorted(folders)}, layers {sorted(BELOW)}"


def test_each_layer_imports_only_the_layers_below_it():
    bad = violations(import_graph())
    assert not bad, "\n".join(bad)


def test_the_method_packages_are_the_registered_methods():
    # a method without a package of its own (tests/test_registry.py's toy editor) is placed by no rule here
    registered = {m.module for m in registry.all_methods() if m.module}
    on_disk = {f"methods.{p.name}" for p in (PKG / "methods").iterdir() if (p / "__init__.py").exists()}
    assert registered == on_disk, f"registered {sorted(registered)}, packages under methods/ {sorted(on_disk)}"


def test_at_most_five_levels():
    lv = levels(import_graph())
    deep = {m: n for m, n in lv.items() if n > MAX_LEVELS}
    assert not deep, f"modules deeper than {MAX_LEVELS} levels: {deep}; levels: {sorted(lv.items(), key=lambda x: x[1])}"


def test_no_module_over_the_line_limit():
    sizes = {m: len(p.read_text().splitlines()) for m, p in module_files().items()}
    long = {m: n for m, n in sizes.items() if n > LIMIT}
    assert not long, f"modules over ~600 lines (limit {LIMIT}): {long}"


def test_names_are_imported_from_the_module_that_defines_them():
    bad = passed_on(module_files())
    assert not bad, "\n".join(bad)


def test_the_rules_catch_what_they_forbid(tmp_path):
    """Each rule on a made-up graph that breaks it: the test above would fail on such a package."""
    assert violations({"core.paths": {"study.runner"}})                      # the base reaching up
    assert violations({"eval.evaluate": {"subject.models"}})                 # the evaluator needs no subject model
    assert violations({"report.gates": {"methods.rome.editor"}})             # a report importing a method
    assert violations({"methods.ike.editor": {"methods.wise.hparams"}})      # one method importing another
    assert violations({"tracing.records": {"study.runner"}})
    assert violations({"loose": {"core.paths"}})                             # a module outside the folders
    assert not violations({"methods.wise.editor": {"methods.wise.hparams", "core.paths"},
                           "study.recipes": {"methods.rome.editor", "report.tables", "study.runner"}})
    with pytest.raises(AssertionError, match="import cycle"):
        levels({"core.a": {"core.b"}, "core.b": {"core.a"}})
    chain = {f"core.m{i}": {f"core.m{i + 1}"} for i in range(MAX_LEVELS)}
    assert max(levels(chain).values()) == MAX_LEVELS + 1
    # a module that passes on a name it imports
    (tmp_path / "a.py").write_text("X = 1\n")
    (tmp_path / "b.py").write_text("from .a import X\n")
    (tmp_path / "c.py").write_text("from .b import X\nfrom .a import X as Y\n")
    found = passed_on({m: tmp_path / f"{m}.py" for m in "abc"})
    assert found == ["c imports X from b, which imports it itself"]
