"""The notebook runner and the notebooks' parameters: an unknown parameter is an error (in the
runner before any notebook runs, and in a notebook run with papermill directly), each notebook
gets only the parameters it declares, and the notebooks import the runner's checkout's library."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from unedit_lib import notebook_parameters

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import run_notebooks  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
KERNEL = {"name": "python3", "language": "python", "display_name": "Python 3"}


def tiny_notebook(path: Path, parameters: str, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}),
                *(nbformat.v4.new_code_cell(c) for c in cells)]
    nb.metadata["kernelspec"] = KERNEL
    nbformat.write(nb, path)
    return path


def test_declared_names_and_unknown_ones():
    import os

    ns = {"In": [], "Out": {}, "get_ipython": print, "exit": None, "quit": None, "open": open, "_i1": "",
          "os": os, "preset": "smoke", "v_lr": None}
    notebook_parameters.declare(namespace=ns)
    notebook_parameters.reject_unknown(namespace={**ns, "v_lr": 0.5, "_": 1})   # declared, or IPython's: fine
    notebook_parameters.declare(namespace=ns)
    with pytest.raises(TypeError, match="unknown parameter v_lrr: this notebook's parameters are preset, v_lr"):
        notebook_parameters.reject_unknown(namespace={**ns, "v_lrr": 0.5})
    # a second check without a new declare (a cell rerun in JupyterLab, later names defined) checks nothing
    notebook_parameters.reject_unknown(namespace={**ns, "later": 1})


def test_every_notebook_checks_its_parameters_and_papermill_reads_them_as_before():
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        i = next(i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
        assert "".join(cells[i]["source"]).splitlines()[-1].startswith(
            "notebook_parameters.declare(namespace=globals())"), f"{path.name}: the parameters cell ends otherwise"
        assert "".join(cells[i + 1]["source"]).startswith(
            "notebook_parameters.reject_unknown(namespace=globals())"), f"{path.name}: the next cell does not check"
        params = pm.inspect_notebook(str(path))
        assert {"preset", "seeds", "force"} <= set(params), path.name
        assert not any("notebook_parameters" in f"{p['name']} {p['default']}" for p in params.values()), path.name


def test_a_notebook_run_with_papermill_rejects_an_unknown_parameter(tmp_path, monkeypatch):
    for kind in ("artifacts", "results", "figures", "runs"):   # whatever it ran would write here only
        monkeypatch.setenv(f"UNEDIT_{kind.upper()}_DIR", str(tmp_path / kind))
    nb = ROOT / "notebooks" / "03_rome.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(nb), str(tmp_path / nb.name), parameters={"preset": "smoke", "v_lrr": 0.5},
                            cwd=str(nb.parent), kernel_name="python3", progress_bar=False)
    assert err.value.ename == "TypeError"
    assert "unknown parameter v_lrr: this notebook's parameters are preset, seeds, force" in err.value.evalue
    assert ", v_lr, " in err.value.evalue


def test_an_unknown_parameter_fails_the_runner_before_any_notebook(tmp_path):
    a = tiny_notebook(tmp_path / "a.ipynb", "preset = 'smoke'\nv_lr = None")
    b = tiny_notebook(tmp_path / "b.ipynb", "preset = 'smoke'\nlr = None")
    with pytest.raises(SystemExit, match="FAILED before any notebook: unknown parameter v_lrr .*"
                                         "a.ipynb: v_lr; b.ipynb: lr"):
        run_notebooks.run([a, b], preset="smoke", out_dir=tmp_path / "out", extra={"v_lrr": 0.5})
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit, match="-p preset: give --preset instead"):
        run_notebooks.run([a], preset="smoke", out_dir=tmp_path / "out", extra={"preset": "tiny"})


def test_each_notebook_gets_only_the_parameters_it_declares(tmp_path):
    a = tiny_notebook(tmp_path / "a.ipynb", "preset = 'smoke'\nv_lr = None", "assert v_lr == 0.5")
    b = tiny_notebook(tmp_path / "b.ipynb", "preset = 'smoke'\nlr = None", "assert 'v_lr' not in globals()")
    out = tmp_path / "out"
    run_notebooks.run([a, b], preset="smoke", out_dir=out, extra={"v_lr": 0.5})
    assert json.loads((out / "stage_times.json").read_text())["parameters"] == {"a.ipynb": {"v_lr": 0.5}}


def test_the_notebooks_import_the_library_of_the_runners_checkout(tmp_path):
    """A checkout whose venv is another checkout's (an editable install elsewhere): the runner's
    kernel still imports its own library, which writes under its own folder."""
    clone = tmp_path / "clone"
    shutil.copytree(ROOT / "unedit_lib", clone / "unedit_lib", ignore=shutil.ignore_patterns("__pycache__"))
    (clone / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "run_notebooks.py", clone / "scripts")
    nb = tiny_notebook(tmp_path / "where.ipynb", "preset = 'smoke'",
                       "import unedit_lib.paths\nprint(unedit_lib.paths.REPO_ROOT)")
    proc = subprocess.run([sys.executable, str(clone / "scripts" / "run_notebooks.py"), "--preset", "smoke",
                           "--out-dir", str(tmp_path / "out"), "--no-progress", str(nb)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads((tmp_path / "out" / "where.ipynb").read_text())["cells"][-1]["outputs"][0]["text"]
    assert "".join(printed).strip() == str(clone)


def test_a_library_of_another_checkout_fails_before_any_notebook(tmp_path, monkeypatch):
    import unedit_lib.paths

    monkeypatch.setattr(unedit_lib.paths, "REPO_ROOT", tmp_path / "other")   # as if imported from there
    nb = tiny_notebook(tmp_path / "a.ipynb", "preset = 'smoke'")
    with pytest.raises(SystemExit, match=re.escape(f"FAILED before any notebook: the runner imports the library of "
                                                   f"{tmp_path / 'other'}, not that of the runner's checkout {ROOT}")):
        run_notebooks.run([nb], preset="smoke", out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit, match=re.escape(f"the notebooks' kernel imports the library of {tmp_path},")):
        run_notebooks.check_library({"the runner": ROOT, "the notebooks' kernel": tmp_path})
