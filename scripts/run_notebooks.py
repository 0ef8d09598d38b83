"""Run the study's notebooks in order with papermill (used by `make reproduce` and the tests).

Each notebook gets the preset (and seeds, force) as parameters and is executed into
runs/<preset>/<name>.ipynb, outputs and figures included. For the headline preset
(`paths.HEADLINE_PRESET`) these executed copies are committed, so that a reader sees the study
without running it (their papermill paths are made repository-relative); for every other
preset they are git-ignored. The source notebooks in notebooks/ stay stripped. Prints each stage and its time, and writes them to
runs/<preset>/stage_times.json (what `make bench STAGES=recorded` prints); on failure, names
the notebook and the cell that failed and exits non-zero. Finished work is cached by the
library (models under artifacts/, results under results/), so a second run is quick;
`--force` redoes it. The estimate printed before the first notebook is the last recorded run of
these notebooks plus, at measured costs, what this machine does not have yet (the subject models
to fine-tune, IKE's sentence embeddings), else the preset file's time of a whole study, else the
preset's cost plan (`planned`). While a cell runs, a progress bar of it that runs longer
than PROGRESS_EVERY_S seconds (fine-tuning steps, sequential edits) shows as a line that often,
and its last frame; the rest of a cell's output stays in the executed notebook. Each `-p NAME=VALUE` goes to the notebooks whose parameters cell declares
NAME; a NAME that no notebook of the run declares is an error before any notebook runs. The
notebooks import the library of this checkout (it is first on the kernels' PYTHONPATH), which
writes every output under this checkout, whichever checkout the venv has installed.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import papermill as pm
from papermill.translators import PythonTranslator
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
sys.path.insert(0, str(ROOT))
from unedit_lib.core import paths, presets  # noqa: E402
from unedit_lib.core.paths import HEADLINE_PRESET, committed_presets, output_dir, runs_dir  # noqa: E402
from unedit_lib.core.precision import run_device  # noqa: E402
from unedit_lib.core.presets import get_preset, is_path  # noqa: E402
from unedit_lib.core.store import CorruptFile, clean_temporaries, results_digest, stage_times, write_json  # noqa: E402
from unedit_lib.subject.models import subject_model_path  # noqa: E402


# What a whole study from scratch takes (printed before a run when no earlier run of the preset recorded
# its own times, runs/<preset>/stage_times.json) and what fine-tuning each subject model takes (added
# when this machine does not have it yet; a recorded run of the notebooks is usually a cached one that
# had it all, and one that made it names it under "made", its time already in that run's): the preset
# file's [runner] first_run_s and subject_model_s, measured on 2 CPU cores.
# Embedding one IKE demonstration pool with all-MiniLM-L6-v2, one pool per target (notebook 04's three): the
# largest `stats.time_pool_embed_s` of the committed IKE records (results/tiny/ike-avoidant.json, 8.4 s;
# smollm2-forget01's 5.8-7.2 s).
IKE_POOL_EMBED_S = 8.4
IKE_POOLS = 3
# what a notebook's source calls when it makes them: a missing subject model is trained by
# models.train_subject_model / load_subject_model, IKE's pools are embedded when its prompts are built
MAKERS = {"subject model": ("train_subject_model(", "load_subject_model("), "ike": ("ike.apply(", "ike_first_tokens(")}
IKE_EMBEDDINGS = "IKE sentence embeddings"


def not_here(preset: str) -> dict[str, float | None]:
    """{what: its measured cost in seconds, None when not measured} of what a study on `preset`
    makes that this machine does not have: its subject models (artifacts/<preset>/full-*/ and
    retain-*/, models.subject_model_path; none for a hub preset) and IKE's sentence embeddings
    (artifacts/ike_embeddings/, which holds none)."""
    p = get_preset(preset)
    out = {}
    if not p.hub_full:
        for which in ("full", "retain"):
            if not (subject_model_path(p, which, artifacts=output_dir("artifacts")) / "model.safetensors").exists():
                out[f"subject model {which}"] = p.subject_model_s.get(which)
    if not any(paths.ike_embedding_cache_dir().glob("ike-emb-*.npy")):
        out[IKE_EMBEDDINGS] = IKE_POOL_EMBED_S * IKE_POOLS
    return out


def missing_work(notebooks, preset: str) -> dict[str, float | None]:
    """`not_here`, kept to what these notebooks make (by what their sources call, MAKERS)."""
    source = "".join(Path(nb).read_text() for nb in notebooks)
    makes = {kind for kind, calls in MAKERS.items() if any(c in source for c in calls)}
    return {what: s for what, s in not_here(preset).items()
            if ("ike" if what == IKE_EMBEDDINGS else "subject model") in makes}


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.1f} h"


def estimate(notebooks, preset: str, out_dir: Path, missing: dict | None = None) -> str:
    """What the run will take: the last recorded times of these notebooks for this preset (a rerun
    reuses cached work, so it is usually faster) plus what this machine does not have yet and they
    make (`missing_work`, at measured costs), else a first-run estimate."""
    missing = missing_work(notebooks, preset) if missing is None else missing
    rec, _ = _stage_times(out_dir)
    st = rec.get("stages_s") if isinstance(rec, dict) else None
    if isinstance(st, dict):
        known = [st[Path(nb).name] for nb in notebooks if Path(nb).name in st]
        if len(known) == len(notebooks):
            made = {w for nb in notebooks for w in ((rec.get("made") or {}).get(Path(nb).name) or [])}
            add = {} if rec.get("force") else {w: s for w, s in missing.items() if w not in made}
            last = (f"the last recorded run of these notebooks on {preset}"
                    f"{'' if rec.get('force') else ', itself partly cached'}")
            if not add:
                return f"estimate: {_duration(sum(known))} ({last})"
            total = sum(known) + sum(s for s in add.values() if s)
            return (f"estimate: {'at least ' if None in add.values() else ''}{_duration(total)}: "
                    f"{_duration(sum(known))} ({last}) + what this machine does not have yet: " + ", ".join(
                        f"{w} {_duration(s)}" if s else f"{w} (time not measured)" for w, s in add.items()))
    first = get_preset(preset).first_run_s
    if first:
        return f"estimate: about {first / 60:.0f} min from scratch on 2 CPU cores (less with cached work)"
    return planned(preset)


def planned(preset: str, probe_s: float = 1.0) -> str:
    """The estimate of a preset that neither a recorded run nor its file times: its cost plan
    (`make bench STAGES=plan`; benchmarks/bench.py's `study_plan`), the runs of the whole preset still
    to make at this machine's sgemm probe and at the share of it that the runs made so far achieved."""
    from benchmarks.bench import study_plan
    from unedit_lib.study import cost_plan

    try:
        size, runs, _ = study_plan(get_preset(preset))
    except (OSError, KeyError, ValueError) as e:        # no data set here: nothing to count tokens of
        return f"estimate: unknown for this preset (no cost plan: {e})"
    gflops = cost_plan.sgemm_gflops(size, seconds=probe_s)
    to_run, left, made, measured = cost_plan.still_to_run(runs, gflops)
    if not to_run:
        return f"estimate: the cost plan of {preset} has every run made (the notebooks reuse them)"
    at_share = (f", {_duration(left * measured / made)} at the {100 * made / measured:.0f}% of it that the runs "
                f"made so far achieved" if measured else "")
    return (f"estimate: no recorded run of these notebooks on {preset}; its cost plan prices the {to_run} "
            f"of the whole preset still to make at {_duration(left)} at this machine's sgemm probe "
            f"({gflops:.0f} GFLOP/s){at_share} (per run: make bench PRESET={preset} STAGES=plan)")


# --------------------------------------------------------------------------- a cell's progress
PROGRESS_EVERY_S = 30     # a running cell's progress bar: one line per bar this often, and its last frame
# a tqdm frame: "<desc>: 45%|####      | 45/100 [00:10<00:12, 4.5it/s, loss=0.9]" or, without a total,
# "<desc>: 12it [00:03, 3.9it/s]"
_FRAME = re.compile(r"^(?P<head>.*?)\s*\[(?P<info>\d+:\d\d(?::\d\d)?(?:<[^,\]]*)?(?:,[^\]]*)?)\]$")
_BAR = re.compile(r"^(?:(?P<desc>.*?):\s*)?(?P<pct>\d+)%\|[^|]*\|\s*(?P<n>\S+)/(?P<total>\S+)$")
_COUNT = re.compile(r"^(?:(?P<desc>.*?):\s*)?(?P<n>[\d.]+\w*)$")


class ProgressLines:
    """Where papermill writes a running cell's stdout and stderr (`execute_notebook(stdout_file=...,
    stderr_file=...)`): of it, only progress bars (tqdm's frames: models.train_subject_model's steps,
    ROME's and WISE's sequential edits, an evaluation's batches) reach the runner's output: a bar
    shows a line once it has run `every_s` seconds, then at most one every `every_s` seconds, and
    the frame where it completes; a shorter bar shows nothing. The rest, every frame included,
    stays in the executed notebook."""

    def __init__(self, every_s: float = PROGRESS_EVERY_S, clock=time.monotonic, out=None):
        self.every_s, self.clock, self.out = every_s, clock, out
        self._pending = ""
        self._bars: dict[str, dict] = {}   # desc -> {"since": its last line (or start), "n", "shown", "done"}

    def write(self, text: str) -> None:
        pieces = re.split(r"[\r\n]", self._pending + text)
        self._pending = pieces.pop()       # tqdm starts each frame with \r: the last one may go on
        for piece in pieces:
            self._frame(piece)
        if _FRAME.match(self._pending.strip()):     # a whole frame: shown now, not at the next write
            self._frame(self._pending)
            self._pending = ""

    def flush(self) -> None:
        pass

    def _frame(self, frame: str) -> None:
        m = _FRAME.match(frame.strip())
        if not m:
            return
        head = m["head"].strip()
        bar = _BAR.match(head) or _COUNT.match(head)
        if not bar:
            return
        desc, n = bar["desc"] or "", bar["n"]
        done = "pct" in bar.groupdict() and bar["n"] == bar["total"]
        now = self.clock()
        state = self._bars.get(desc)
        if state is None or _number(n) < _number(state["n"]) or (state["done"] and not done):   # a new bar
            state = self._bars[desc] = {"since": now, "n": n, "shown": False, "done": False}
        if state["done"]:           # tqdm draws the last frame again when the bar closes
            return
        state["n"], state["done"] = n, done
        if (done and state["shown"]) or now - state["since"] >= self.every_s:
            state["since"], state["shown"] = now, True
            shown = (f"{desc}: " if desc else "") + (f"{bar['pct']}% {n}/{bar['total']}" if "pct" in bar.groupdict() else n)
            tqdm.write(f"    | {shown} [{m['info']}]", file=self.out or sys.stdout)


def _number(n: str) -> float:
    """A tqdm count ("12", "1.5k", "12it") as a number, for telling a restarted bar from a running one."""
    m = re.match(r"(\d+(?:\.\d+)?)([kMG]?)", n)
    return float(m[1]) * {"k": 1e3, "M": 1e6, "G": 1e9}.get(m[2], 1) if m else 0.0


def _relative_paths(executed: Path) -> None:
    """Papermill records the absolute input/output paths of a run in the notebook's metadata:
    make them repository-relative (the committed copies name no machine's folders)."""
    nb = json.loads(executed.read_text())
    meta = nb.get("metadata", {}).get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key):
            p = Path(meta[key]).resolve()
            meta[key] = str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else p.name
    write_json(nb, executed, indent=1, ensure_ascii=False, allow_nan=True)


def _stamp_results(executed: Path, preset: str, digest: str) -> None:
    """Record in an executed notebook's metadata the digest of the results it was run against
    (store.results_digest): `make readme` and the tests refuse a committed notebook whose results
    have changed since (store.stale_notebooks)."""
    nb = json.loads(executed.read_text())
    nb.setdefault("metadata", {})["unedit"] = {"preset": preset, "results_digest": digest}
    write_json(nb, executed, indent=1, ensure_ascii=False, allow_nan=True)


def resolve_notebooks(names) -> list[Path]:
    """Notebook paths from paths or short names ("01", "01_subject_models"): each must name
    exactly one notebook in notebooks/, or nothing runs."""
    found = []
    for name in names:
        path = Path(name)
        if path.suffix == ".ipynb" and path.exists():
            found.append(path)
            continue
        matches = sorted(NOTEBOOK_DIR.glob(f"{path.stem}*.ipynb"))
        if len(matches) != 1:
            valid = " ".join(p.stem[:2] for p in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb")))
            raise SystemExit(f"FAILED before any notebook: {name!r} names {len(matches)} notebooks in "
                             f"{NOTEBOOK_DIR}; give a path or one of: {valid}")
        found.append(matches[0])
    return found


COMMON = ("preset", "seeds", "force")   # what every notebook of the study declares and the runner always passes


def declared_parameters(notebook) -> list[str]:
    """The names a notebook's `parameters` cell declares, as papermill reads that cell
    (`papermill --help-notebook`; read as Python, the kernel the runner starts, so a notebook
    without kernelspec metadata is read too)."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    cell = next((c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        return []
    cell = {**cell, "source": "".join(cell["source"])}
    return [p.name for p in PythonTranslator.inspect(cell) if not p.name.startswith("_")]


def notebook_extras(notebooks, extra) -> dict[str, dict]:
    """Each notebook's share of the extra (-p) parameters: those its parameters cell declares.
    A name no notebook of the run declares (a typo, or a notebook not in the run) would only get
    papermill's warning and run the study's settings: an error here, before any notebook runs."""
    extra = extra or {}
    common = sorted(set(extra) & set(COMMON))
    if common:
        raise SystemExit(f"FAILED before any notebook: -p {', '.join(common)}: give "
                         + ", ".join(f"--{name}" for name in common)
                         + " instead (the runner passes preset, seeds and force to every notebook)")
    declared = {Path(nb).name: declared_parameters(nb) for nb in notebooks}
    unknown = [name for name in extra if not any(name in names for names in declared.values())]
    if unknown:
        valid = "; ".join(f"{nb}: {', '.join(n for n in names if n not in COMMON) or '(none)'}"
                          for nb, names in declared.items())
        raise SystemExit(f"FAILED before any notebook: unknown parameter {', '.join(unknown)} (-p): no notebook "
                         f"of this run declares it. Check the spelling, or run the notebook that has it. The "
                         f"parameters besides {', '.join(COMMON)}: {valid}")
    return {nb: {k: v for k, v in extra.items() if k in names} for nb, names in declared.items()}


# what a kernel the runner starts imports: jupyter_client starts the python3 kernel with this
# interpreter (its kernelspec names "python"), in the notebook's folder, with the runner's environment
# (Python puts that folder first on sys.path, then PYTHONPATH, then site-packages)
_KERNEL_PROBE = "import unedit_lib.core.paths as p; print(p.REPO_ROOT)"


def kernel_pythonpath() -> str:
    """PYTHONPATH for the kernels: this checkout first, ahead of site-packages (and of an
    editable install of another checkout), then what was set."""
    return os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


@contextlib.contextmanager
def kernel_environment(preset_file: Path | None = None):
    """Papermill's kernels inherit this process's environment: set their PYTHONPATH for the run, and
    with `preset_file` (a preset given by its file's path) add it to UNEDIT_PRESETS, so that the
    notebooks find that preset by its name."""
    old = {k: os.environ.get(k) for k in ("PYTHONPATH", presets.ENV)}
    os.environ["PYTHONPATH"] = kernel_pythonpath()
    if preset_file is not None:
        os.environ[presets.ENV] = os.pathsep.join(filter(None, [str(preset_file), old[presets.ENV]]))
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def library_roots(notebook_dir) -> dict[str, Path]:
    """The checkout whose library does the work (its paths.REPO_ROOT, under which it writes
    every output), as this process imported it and as a kernel started in notebook_dir will."""
    probe = subprocess.run([sys.executable, "-c", _KERNEL_PROBE], cwd=notebook_dir, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": kernel_pythonpath()})
    if probe.returncode:
        raise SystemExit(f"FAILED before any notebook: the notebooks' kernel ({sys.executable}) cannot import "
                         f"unedit_lib: {probe.stderr.strip().splitlines()[-1:]}")
    return {"the runner": Path(paths.REPO_ROOT), "the notebooks' kernel": Path(probe.stdout.strip())}


def check_library(roots: dict[str, Path]) -> None:
    """Every output goes under the checkout of the imported library: it must be the runner's."""
    other = {who: root for who, root in roots.items() if root.resolve() != ROOT}
    if other:
        raise SystemExit("FAILED before any notebook: "
                         + "; ".join(f"{who} imports the library of {root}" for who, root in other.items())
                         + f", not that of the runner's checkout {ROOT}, so this run's results would go there. "
                           "Run the runner of the checkout whose results you want, and let nothing put another "
                           "checkout's unedit_lib ahead of it (an import before the runner's, a .pth file, the "
                           "notebooks' folder).")


def run(notebooks, preset: str, seeds: str = "0", force: bool = False, out_dir=None, extra=None,
        progress: bool = False, progress_every_s: float = PROGRESS_EVERY_S) -> dict:
    """Run `notebooks` on `preset`: a preset's name, or the path of a preset file (the notebooks then
    get its name, and find its file through UNEDIT_PRESETS)."""
    try:
        p = get_preset(preset)             # an unknown preset or a malformed preset file fails here, before any notebook
        run_device()                       # so does an UNEDIT_DEVICE this machine cannot use
    except (KeyError, ValueError, RuntimeError) as e:
        raise SystemExit(f"FAILED before any notebook: {e}")
    preset_file = Path(preset).resolve() if is_path(preset) else None
    preset = p.name
    notebooks = resolve_notebooks(notebooks)
    extras = notebook_extras(notebooks, extra)   # an unknown -p name fails here
    check_library(library_roots(notebooks[0].parent))   # so do results that would go to another checkout
    out_dir = Path(out_dir or runs_dir(preset))
    out_dir.mkdir(parents=True, exist_ok=True)
    for kind in ("results", "artifacts", "runs"):     # what writers killed in an earlier run left behind
        for gone in clean_temporaries(output_dir(kind) / preset):
            print(f"removed the leftover of an interrupted write: {gone}")
    times, made = {}, {}
    seed_list = [int(s) for s in str(seeds).split()]
    print(f"{len(notebooks)} notebooks on preset {preset}; " + estimate(notebooks, preset, out_dir), flush=True)
    absent = not_here(preset)
    t_all = time.time()
    for nb in notebooks:
        nb = Path(nb)
        got = extras[nb.name]
        print(f"==> {nb.name} (preset={preset}, seeds={seed_list}{', force' if force else ''}"
              + "".join(f", {k}={v!r}" for k, v in got.items()) + ")", flush=True)
        t0 = time.time()
        _execute(nb, out_dir, {"preset": preset, "seeds": seed_list, "force": bool(force), **got}, progress,
                 progress_every_s, preset_file)
        times[nb.name] = time.time() - t0
        now_absent = not_here(preset)
        made[nb.name] = sorted(set(absent) - set(now_absent))    # what it made: its time includes it
        absent = now_absent
        _relative_paths(out_dir / nb.name)
        print(f"    done in {times[nb.name]:.1f} s", flush=True)
    digest = results_digest(preset)        # what the results are now that these notebooks ran
    for name in times:
        _stamp_results(out_dir / name, preset, digest)
    total = time.time() - t_all
    print("stage times: " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()) + f"; total {total:.0f}s")
    last, kept = _stage_times(out_dir)
    # notebooks run one at a time (a study in pieces): the others keep their last recorded times
    earlier = (last or {}).get("stages_s") if isinstance(last, dict) and last.get("seeds") == seed_list else None
    stages = {**(earlier if isinstance(earlier, dict) and not force else {}), **times}
    rec = {"preset": preset, "seeds": seed_list, "force": bool(force), "stages_s": dict(sorted(stages.items())),
           "total_s": sum(stages.values()), "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"}
    # the parameters beyond preset/seeds/force each notebook last ran with (-p), kept as its time is
    params = {k: v for k, v in (((last or {}).get("parameters") or {}) if earlier is not None and not force else {}).items()
              if k not in times}
    params.update({name: extras[name] for name in times if extras[name]})
    if params:
        rec["parameters"] = dict(sorted(params.items()))
    # what each notebook made that the machine lacked (its time includes it: `estimate` adds it no more)
    made_by = {k: v for k, v in (((last or {}).get("made") or {}) if earlier is not None and not force else {}).items()
               if k not in times}
    made_by.update({name: made[name] for name in times if made[name]})
    if made_by:
        rec["made"] = dict(sorted(made_by.items()))
    if not force and kept:   # a run that reused cached work keeps the times of the last from-scratch (FORCE) run
        rec["from_scratch"] = {k: v for k, v in kept.items() if k != "from_scratch"}
    write_json(rec, out_dir / "stage_times.json")
    return times


def _execute(nb: Path, out_dir: Path, params: dict, progress: bool, progress_every_s: float = PROGRESS_EVERY_S,
             preset_file: Path | None = None) -> None:
    """One notebook into out_dir/<name> with papermill, its kernel importing this checkout's
    library; its cells' progress bars shown as they run (ProgressLines); a failure names the
    notebook and the cell, and exits non-zero."""
    lines = ProgressLines(progress_every_s)
    try:
        with kernel_environment(preset_file):
            pm.execute_notebook(str(nb), str(out_dir / nb.name), parameters=params, cwd=str(nb.parent),
                                kernel_name="python3", language="python", progress_bar=progress, log_output=False,
                                stdout_file=lines, stderr_file=lines)
    except pm.PapermillExecutionError as e:
        print(f"FAILED: {nb.name}, cell {e.cell_index} (execution count {e.exec_count}): "
              f"{e.ename}: {e.evalue}\n  executed copy with the traceback: {out_dir / nb.name}",
              file=sys.stderr)
        raise SystemExit(1)
    except Exception as e:             # the kernel died (memory, a crash) or could not start
        print(f"FAILED: {nb.name}, {_running_cell(out_dir / nb.name)}: {type(e).__name__}: {e}\n"
              f"  executed copy so far: {out_dir / nb.name}", file=sys.stderr)
        raise SystemExit(1)


def parse_params(items) -> dict:
    """`NAME=VALUE` strings into papermill parameters: VALUE read as JSON, else kept as a string."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise SystemExit(f"FAILED before any notebook: -p {item!r} is not NAME=VALUE with NAME a parameter name")
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value
    return out


def _stage_times(out_dir: Path) -> tuple[dict | None, dict | None]:
    """store.stage_times, where an unreadable file counts as none (it is rewritten at the end)."""
    try:
        return stage_times(out_dir)
    except (OSError, CorruptFile):
        return None, None


def _running_cell(executed) -> str:
    """Which cell was running when the kernel died, from the executed copy papermill saved: the
    last cell with a start time. (Papermill stamps a cell's start time when it starts it; when
    the kernel dies it still gives the running cell an end time and status "completed", and
    marks the cells it never started "completed" without a start time.) Named by its index in
    the executed copy and its first line."""
    try:
        cells = json.loads(Path(executed).read_text())["cells"]
    except (OSError, ValueError, KeyError) as e:
        return f"cell unknown (no executed copy to read: {e})"
    started = [i for i, c in enumerate(cells)
               if (c.get("metadata", {}).get("papermill") or {}).get("start_time")]
    if not started:
        return "before any cell ran (the kernel did not start or died at once)"
    source = cells[started[-1]].get("source", "")
    first = next((line.strip() for line in "".join(source).splitlines() if line.strip()), "")
    return f"cell {started[-1]} ({first!r}) was running"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("notebooks", nargs="+")
    ap.add_argument("--preset", default=HEADLINE_PRESET, help="a preset's name (presets/<name>.toml) or a preset file's path")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--no-progress", action="store_true", help="no per-notebook progress bar (cells done, ETA)")
    ap.add_argument("--progress-every", type=float, default=PROGRESS_EVERY_S, metavar="SECONDS",
                    help="a running cell's progress bars: one line per bar this often (default %(default)s)")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                    help="another parameter, VALUE as JSON (e.g. -p 'runs_to_attack=[\"full\"]'), else a string; "
                         "passed to the notebooks that declare NAME (one that none of the run declares is an "
                         "error) and recorded for them in stage_times.json")
    a = ap.parse_args()
    run(a.notebooks, a.preset, a.seeds, a.force, a.out_dir, extra=parse_params(a.param), progress=not a.no_progress,
        progress_every_s=a.progress_every)
    if a.preset in committed_presets() and a.out_dir is None:
        print(f"executed notebooks in runs/{a.preset}/ (committed for this preset: `git add runs/{a.preset}`)")
