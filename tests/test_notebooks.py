"""Every numbered notebook runs top to bottom under papermill on the smoke preset."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import run_notebooks  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_notebooks_are_committed_without_outputs():
    for nb in NOTEBOOKS:
        cells = json.loads(nb.read_text())["cells"]
        assert not any(c.get("outputs") or c.get("execution_count") for c in cells), f"{nb.name}: run `make strip`"
        assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells), f"{nb.name}: no parameters cell"


@pytest.mark.slow
def test_all_notebooks_run_on_smoke(tmp_path):
    times = run_notebooks.run(NOTEBOOKS, preset="smoke", out_dir=tmp_path)
    assert set(times) == {nb.name for nb in NOTEBOOKS}
    for nb in NOTEBOOKS:
        executed = json.loads((tmp_path / nb.name).read_text())
        errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{nb.name}: {errors[:1]}"


def test_unknown_preset_fails_before_any_notebook(tmp_path, capsys):
    with pytest.raises(SystemExit, match="unknown preset 'smok'"):
        run_notebooks.run(NOTEBOOKS, preset="smok", out_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_device_not_here_fails_before_any_notebook(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("UNEDIT_DEVICE", "cuda")
    with pytest.raises(SystemExit, match="FAILED before any notebook: UNEDIT_DEVICE='cuda'.*no CUDA GPU"):
        run_notebooks.run(NOTEBOOKS, preset="smoke", out_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_notebooks_by_short_name_and_a_clear_error_for_an_unknown_one(tmp_path):
    assert run_notebooks.resolve_notebooks(["01", "03_rome"]) == [run_notebooks.NOTEBOOK_DIR / "01_subject_models.ipynb",
                                                                  run_notebooks.NOTEBOOK_DIR / "03_rome.ipynb"]
    with pytest.raises(SystemExit, match="'42' names 0 notebooks.*one of: 00 01"):
        run_notebooks.run(["01", "42"], preset="smoke", out_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_crashed_kernel_is_named_with_its_cell(tmp_path, capsys):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("preset = 'smoke'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)   # the kernel dies"),
                nbformat.v4.new_code_cell("x = 1")]
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    path = tmp_path / "crash.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(SystemExit):
        run_notebooks.run([path], preset="smoke", out_dir=tmp_path / "out")
    err = capsys.readouterr().err
    # cell 2 of the executed copy: papermill put its injected-parameters cell at 1
    assert "FAILED: crash.ipynb, cell 2 ('import os, signal') was running: DeadKernelError" in err


def test_a_cached_rerun_keeps_the_from_scratch_runs_times(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("preset = 'smoke'\nforce = False", metadata={"tags": ["parameters"]})]
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    path = tmp_path / "quick.ipynb"
    nbformat.write(nb, path)
    out = tmp_path / "out"
    run_notebooks.run([path], preset="smoke", force=True, out_dir=out)
    first = json.loads((out / "stage_times.json").read_text())
    for _ in range(2):     # a cached rerun, then another: the FORCE run's times stay
        run_notebooks.run([path], preset="smoke", out_dir=out)
        rec = json.loads((out / "stage_times.json").read_text())
        assert rec["force"] is False and rec["from_scratch"] == first
    run_notebooks.run([path], preset="smoke", force=True, out_dir=out)
    assert "from_scratch" not in json.loads((out / "stage_times.json").read_text())


def test_notebooks_run_in_pieces_keep_each_others_times_and_their_parameters(tmp_path):
    import nbformat

    paths = []
    for name in ("a", "b"):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("preset = 'smoke'\nforce = False\nk = 1", metadata={"tags": ["parameters"]}),
                    nbformat.v4.new_code_cell("assert k in (1, 3)")]
        nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
        paths.append(tmp_path / f"{name}.ipynb")
        nbformat.write(nb, paths[-1])
    out = tmp_path / "out"
    run_notebooks.run([paths[0]], preset="smoke", out_dir=out)
    run_notebooks.run([paths[1]], preset="smoke", out_dir=out, extra=run_notebooks.parse_params(["k=3"]))
    rec = json.loads((out / "stage_times.json").read_text())
    assert set(rec["stages_s"]) == {"a.ipynb", "b.ipynb"} and rec["total_s"] == pytest.approx(sum(rec["stages_s"].values()))
    assert rec["parameters"] == {"b.ipynb": {"k": 3}}
    assert run_notebooks.parse_params(['runs=["full"]', "name=x"]) == {"runs": ["full"], "name": "x"}
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        run_notebooks.parse_params(["oops"])
