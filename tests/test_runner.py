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

from unedit_lib.core import notebook_parameters

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
    monkeypatch.setenv("PYTHONPATH", run_notebooks.kernel_pythonpath())   # the kernel imports this checkout's library
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
    shutil.copytree(ROOT / "presets", clone / "presets")
    (clone / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "run_notebooks.py", clone / "scripts")
    nb = tiny_notebook(tmp_path / "where.ipynb", "preset = 'smoke'",
                       "import unedit_lib.core.paths\nprint(unedit_lib.core.paths.REPO_ROOT)")
    proc = subprocess.run([sys.executable, str(clone / "scripts" / "run_notebooks.py"), "--preset", "smoke",
                           "--out-dir", str(tmp_path / "out"), "--no-progress", str(nb)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads((tmp_path / "out" / "where.ipynb").read_text())["cells"][-1]["outputs"][0]["text"]
    assert "".join(printed).strip() == str(clone)


def test_a_library_of_another_checkout_fails_before_any_notebook(tmp_path, monkeypatch):
    import unedit_lib.core.paths

    monkeypatch.setattr(unedit_lib.core.paths, "REPO_ROOT", tmp_path / "other")   # as if imported from there
    nb = tiny_notebook(tmp_path / "a.ipynb", "preset = 'smoke'")
    with pytest.raises(SystemExit, match=re.escape(f"FAILED before any notebook: the runner imports the library of "
                                                   f"{tmp_path / 'other'}, not that of the runner's checkout {ROOT}")):
        run_notebooks.run([nb], preset="smoke", out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit, match=re.escape(f"the notebooks' kernel imports the library of {tmp_path},")):
        run_notebooks.check_library({"the runner": ROOT, "the notebooks' kernel": tmp_path})


# --------------------------------------------------------------------------- what the runner prints


def _stage_times(out: Path, stages: dict, **more) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "stage_times.json").write_text(json.dumps({"preset": "smollm2-forget01", "seeds": [0], "force": False,
                                                      "stages_s": stages, "total_s": sum(stages.values()),
                                                      "finished": "-", "machine": "-", **more}))


def test_the_estimate_counts_what_this_machine_does_not_have_yet(tmp_path, monkeypatch):
    """A fresh clone has the recorded times of a cached run but neither the subject models nor IKE's
    embeddings: the estimate adds them at their measured costs; once they are here it does not, nor
    when the recorded run made them itself (its time includes them)."""
    from unedit_lib.core import presets
    from unedit_lib.subject import models

    art = tmp_path / "artifacts"
    for kind in ("artifacts", "results", "figures", "runs"):
        monkeypatch.setenv(f"UNEDIT_{kind.upper()}_DIR", str(tmp_path / kind))
    nb01 = tiny_notebook(tmp_path / "01.ipynb", "preset = 'smollm2-forget01'", "m = models.load_subject_model(p, 'full')")
    nb04 = tiny_notebook(tmp_path / "04.ipynb", "preset = 'smollm2-forget01'", "w = ike.apply(model, tok, requests, hp)")
    nb07 = tiny_notebook(tmp_path / "07.ipynb", "preset = 'smollm2-forget01'", "table = tables.main_table(records)")
    out = tmp_path / "runs"
    _stage_times(out, {"01.ipynb": 125.0, "04.ipynb": 94.0, "07.ipynb": 4.0})
    text = run_notebooks.estimate([nb01, nb04, nb07], "smollm2-forget01", out)
    assert "subject model full" in text and "subject model retain" in text and "IKE sentence embeddings" in text
    full_s, retain_s = (presets.get_preset("smollm2-forget01").subject_model_s[w] for w in ("full", "retain"))   # guide.md's "Time"
    ike_s = run_notebooks.IKE_POOL_EMBED_S * run_notebooks.IKE_POOLS
    assert f"estimate: {(223 + full_s + retain_s + ike_s) / 60:.0f} min: 4 min (the last recorded run" in text
    assert (f"what this machine does not have yet: subject model full {full_s / 60:.0f} min, subject model retain "
            f"{retain_s / 60:.0f} min, IKE sentence embeddings {ike_s:.0f} s") in text
    assert run_notebooks.estimate([nb07], "smollm2-forget01", out).startswith("estimate: 4 s (the last recorded")  # makes none

    for which in ("full", "retain"):       # the subject models are here now
        folder = models.subject_model_path("smollm2-forget01", which, artifacts=art)
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"")
    (art / "ike_embeddings").mkdir()
    (art / "ike_embeddings" / "ike-emb-0.npy").write_bytes(b"")
    text = run_notebooks.estimate([nb01, nb04, nb07], "smollm2-forget01", out)
    assert text == "estimate: 4 min (the last recorded run of these notebooks on smollm2-forget01, itself partly cached)"

    (art / "ike_embeddings" / "ike-emb-0.npy").unlink()     # missing again, but the recorded run made them
    _stage_times(out, {"01.ipynb": 125.0, "04.ipynb": 94.0, "07.ipynb": 4.0}, made={"04.ipynb": ["IKE sentence embeddings"]})
    assert "not have yet" not in run_notebooks.estimate([nb01, nb04, nb07], "smollm2-forget01", out)


def test_an_untimed_preset_is_estimated_by_its_cost_plan(tmp_path, monkeypatch):
    """A preset that neither a recorded run nor its file times (forget05) gets its cost plan's price of
    the runs still to make: at the probe, and at the share the runs made achieved; no plan, no number."""
    from benchmarks import bench
    from unedit_lib.study import cost_plan as c

    runs = [c.RunCost("ga", "ga", 100e9, 50e9, measured={"unlearn_s": 200.0, "eval_s": 100.0}),   # half the rate
            c.RunCost("gd", "gd", 3000e9, 600e9), c.RunCost("kl", "kl", 3000e9, 600e9),
            c.RunCost("full: attacks", "attack", 0.0, 1800e9)]
    monkeypatch.setattr(bench, "study_plan", lambda p: (None, runs, None))
    monkeypatch.setattr(c, "sgemm_gflops", lambda size, seconds: 1.0)
    assert run_notebooks.get_preset("smollm2-forget05").first_run_s is None
    text = run_notebooks.estimate([NOTEBOOKS[3]], "smollm2-forget05", tmp_path)
    assert text == ("estimate: no recorded run of these notebooks on smollm2-forget05; its cost plan prices the 2 "
                    "runs + 1 attacked model of the whole preset still to make at 2.5 h at this machine's sgemm probe "
                    "(1 GFLOP/s), 5.0 h at the 50% of it that the runs made so far achieved "
                    "(per run: make bench PRESET=smollm2-forget05 STAGES=plan)")
    monkeypatch.setattr(bench, "study_plan", lambda p: (None, runs[:1], None))
    assert "has every run made" in run_notebooks.estimate([NOTEBOOKS[3]], "smollm2-forget05", tmp_path)

    def no_data(p):
        raise FileNotFoundError("TOFU not found under /nowhere")
    monkeypatch.setattr(bench, "study_plan", no_data)
    assert run_notebooks.estimate([NOTEBOOKS[3]], "smollm2-forget05", tmp_path) == \
        "estimate: unknown for this preset (no cost plan: TOFU not found under /nowhere)"


def test_the_runner_records_what_a_notebook_made(tmp_path, monkeypatch):
    from unedit_lib.subject import models

    for kind in ("artifacts", "results", "figures", "runs"):
        monkeypatch.setenv(f"UNEDIT_{kind.upper()}_DIR", str(tmp_path / kind))
    folder = models.subject_model_path("smollm2-forget01", "full", artifacts=tmp_path / "artifacts")
    nb = tiny_notebook(tmp_path / "make.ipynb", "preset = 'smollm2-forget01'",
                       "# stands for models.load_subject_model(p, 'full'), which trains a missing model\n"
                       f"from pathlib import Path\nPath({str(folder)!r}).mkdir(parents=True)\n"
                       f"(Path({str(folder)!r}) / 'model.safetensors').write_bytes(b'')")
    run_notebooks.run([nb], preset="smollm2-forget01", out_dir=tmp_path / "out")
    rec = json.loads((tmp_path / "out" / "stage_times.json").read_text())
    assert rec.get("made") == {"make.ipynb": ["subject model full"]}
    shutil.rmtree(folder)      # gone again: the recorded time already includes making it
    assert "subject model full" not in run_notebooks.estimate([nb], "smollm2-forget01", tmp_path / "out")


def test_a_cells_progress_bar_shows_in_the_runners_output(tmp_path, capsys):
    """What a running cell's tqdm bar draws reaches the runner's output (papermill keeps a cell's
    output in the notebook), as a few lines, not one per frame."""
    nb = tiny_notebook(tmp_path / "bar.ipynb", "preset = 'smoke'",
                       "import time\nfrom tqdm.auto import tqdm\n"
                       "for _ in tqdm(range(60), desc='fine-tuning steps', mininterval=0):\n    time.sleep(0.02)")
    run_notebooks.run([nb], preset="smoke", out_dir=tmp_path / "out", progress_every_s=0.5)
    lines = [line for line in capsys.readouterr().out.splitlines() if "fine-tuning steps" in line]
    assert lines and lines[-1].startswith("    | fine-tuning steps: 100% 60/60 [00:01"), lines
    assert len(lines) <= 5, lines       # 60 frames drawn in about 1.2 s: a line per 0.5 s at most, and the last
    frames = "".join(t for o in json.loads((tmp_path / "out" / "bar.ipynb").read_text())["cells"][-1]["outputs"]
                     for t in o.get("text", []))
    assert frames.count("fine-tuning steps") > 20     # every frame stays in the executed notebook


def test_progress_lines_are_one_per_bar_every_few_seconds():
    t = [0.0]
    shown = []
    lines = run_notebooks.ProgressLines(every_s=30, clock=lambda: t[0])
    lines.out = type("Out", (), {"write": lambda self, s: shown.append(s), "flush": lambda self: None})()
    for i in range(301):       # a 300-step fine-tune at 2 s a step: a frame per step
        t[0] = 2.0 * i
        lines.write(f"\rtrain smollm2-forget01/full: {i // 3:3d}%|##        | {i}/300 [00:{i % 60:02d}<09:00,  2.00s/it, loss=0.5]")
    lines.write("\n")
    lines.write("\rloading:   0%|          | 0/5 [00:00<?, ?it/s]\rloading: 100%|##########| 5/5 [00:00<00:00]\n")
    lines.write("a warning on stderr\n")
    shown = [s for s in shown if s.strip()]
    assert len(shown) == 600 // 30, shown          # one per 30 s of the 600 s bar, the last at its last frame
    assert shown[0].startswith("    | train smollm2-forget01/full: 5% 15/300 [00:15<09:00,  2.00s/it, loss=0.5]")
    assert shown[-1].startswith("    | train smollm2-forget01/full: 100% 300/300")
    assert not any("loading" in s or "warning" in s for s in shown)    # a short bar and other text: not shown
