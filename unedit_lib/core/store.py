"""The results store: one atomic writer, reads that are validated and name the file.

Guarantees (each has a test in tests/test_store.py):
* every file and folder is written atomically: a temporary sibling, fsynced, renamed into place;
  a crash never leaves half a file, and leftover temporaries of a crashed writer are removed
  by the next write of the same path (`write_dir`);
* every read of a record, a log or a cache is validated: a truncated or malformed file raises
  `CorruptFile`, which names the path and what to do (delete it, or rerun with force);
* `load_results` skips a corrupt record with a warning naming it, so one bad file does not
  break every notebook;
* a run is committed as one unit (`commit_run`): its new logs and model are first written
  complete into temporary siblings; only then is the old record removed, the folders swapped in
  and the new record written last. A run that fails (or a forced run that fails) before that
  leaves the previous result byte-identical; an interrupt inside the swap leaves no record, so the
  run is recomputed, never a new record beside an old model;
* a file that holds several runs (notebook 08's robustness.json) is changed with `update_json`:
  read, changed and written under an exclusive lock, so two processes lose nothing;
* temporaries of a writer that died (its process is gone) are removed at the next start of a run
  (`clean_temporaries`).

Record format: results/<preset>/<run>.json (see runner.record_for) and the per-item logs in
TOFU's legacy file names under results/<preset>/<run>/.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import platform
import re
import shutil
import warnings
from pathlib import Path

from . import paths
from .paths import LOG_FILES


class CorruptFile(ValueError):
    """A stored file that cannot be read back (truncated, malformed, wrong content)."""

    def __init__(self, path, why: str, fix: str = "delete it, or rerun with force=True to rebuild it"):
        self.path = Path(path)
        super().__init__(f"{self.path}: {why}; {fix}")


# --------------------------------------------------------------------------- writing
def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old|staged)(?P<pid>\d+)$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_temporaries(folder) -> list[Path]:
    """Remove what interrupted writes left under `folder` (any depth): the temporary, staged and
    set-aside siblings (`.<name>.tmp<pid>`, `.staged<pid>`, `.old<pid>`) of writers whose process
    is gone. A live writer's temporaries (another notebook running now) are left alone."""
    folder = Path(folder)
    gone = []
    if not folder.is_dir():
        return gone
    for tmp in sorted(folder.rglob(".*"), key=lambda q: len(q.parts), reverse=True):
        m = _TEMPORARY.match(tmp.name)
        if m is None or not (tmp.exists() or tmp.is_symlink()) or _alive(int(m["pid"])):
            continue
        shutil.rmtree(tmp) if tmp.is_dir() and not tmp.is_symlink() else tmp.unlink(missing_ok=True)
        gone.append(tmp)
    return gone


def remove_temporaries(path) -> list[Path]:
    """Remove temporaries left beside `path` by a crashed writer (any process id)."""
    path = Path(path)
    gone = []
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{path.name}.tmp*"):
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink(missing_ok=True)
            gone.append(tmp)
        for tmp in path.parent.glob(f"{path.name}.tmp*"):      # folders named so (pretrained.py's conversion)
            if tmp.is_dir():
                shutil.rmtree(tmp)
                gone.append(tmp)
    return gone


def write_json(obj, path, **dump_kw) -> Path:
    """Write JSON atomically. `dump_kw` overrides json.dump's indent=1, allow_nan=False."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    with open(tmp, "w") as f:
        json.dump(obj, f, **{"indent": 1, "allow_nan": False, **dump_kw})
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def write_file(path, write) -> Path:
    """Atomic write of one file by `write(tmp_path)` (e.g. np.save, torch/safetensors save)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    write(tmp)
    os.replace(tmp, path)
    return path


def _filled(folder: Path, write) -> Path:
    """`folder` created and filled by `write(folder)`; removed again if `write` fails."""
    folder.mkdir()
    try:
        write(folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def write_dir(path, write) -> Path:
    """Atomic write of a folder: `write(tmp_folder)` fills a temporary sibling, which then
    replaces `path` (the old folder is removed only once the new one is complete)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_temporaries(path)
    _swap_in(_filled(_tmp_sibling(path), write), path)
    return path


def stage_dir(path, write) -> Path:
    """Fill a staging sibling of folder `path` (`.<name>.staged<pid>`) with `write(folder)` and
    return it; `path` itself is not touched (`commit_run` swaps the staged folder in)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.staged{os.getpid()}")
    shutil.rmtree(staged, ignore_errors=True)
    return _filled(staged, write)


def _swap_in(staged: Path | None, path: Path) -> None:
    """Replace folder `path` by `staged` (None: remove `path`)."""
    old = path.with_name(f".{path.name}.old{os.getpid()}")
    if path.exists():
        os.replace(path, old)
    if staged is not None:
        os.replace(staged, path)
    shutil.rmtree(old, ignore_errors=True)


def commit_run(record_path, record: dict, folders: dict) -> Path:
    """Commit one run: `folders` maps each of its folders (per-item logs, unlearned model) to the
    staged folder that replaces it (`stage_dir`), or to None to remove it. Everything is already
    computed and written; the old record goes first, the record comes last."""
    record_path = Path(record_path)
    record_path.unlink(missing_ok=True)                 # from here, an interrupt leaves no record
    for path, staged in folders.items():
        _swap_in(None if staged is None else Path(staged), Path(path))
    return write_json(record, record_path)


def discard_staged(folders: dict) -> None:
    """Remove staged folders that will not be committed (the run failed after staging them)."""
    for staged in folders.values():
        if staged is not None:
            shutil.rmtree(staged, ignore_errors=True)


@contextlib.contextmanager
def locked(path, waiting: str | None = None):
    """An exclusive lock on `path` (through `.<name>.lock` beside it) for read-change-write, or for
    a whole run. `waiting`: printed when another process holds it, before this one waits."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if waiting is None else fcntl.LOCK_NB))
        except BlockingIOError:
            print(waiting, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def update_json(path, change, what: str = "JSON file"):
    """Read `path` (an empty dict when absent), apply `change(obj) -> new obj` and write the result,
    all under `locked(path)`: concurrent updaters each see the other's changes. Returns the new obj."""
    path = Path(path)
    with locked(path):
        obj = read_json(path, what) if path.exists() else {}
        new = change(obj)
        write_json(new, path)
    return new


# --------------------------------------------------------------------------- reading
def read_json(path, what: str = "JSON file"):
    """Parsed JSON of `path`; a malformed file raises CorruptFile naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CorruptFile(path, f"malformed {what} (line {e.lineno}: {e.msg})") from None
    except UnicodeDecodeError as e:
        raise CorruptFile(path, f"unreadable {what} ({e.reason})") from None


def stage_times(runs_dir) -> tuple[dict | None, dict | None]:
    """What runs/<preset>/stage_times.json (scripts/run_notebooks.py) recorded: (the last run,
    the last from-scratch `FORCE=1` run). The second is the first when that run was forced, the
    times it kept (`from_scratch`) when it reused cached work, None when no forced run is known.
    No file: (None, None)."""
    path = Path(runs_dir) / "stage_times.json"
    if not path.exists():
        return None, None
    last = read_json(path, "stage-times file")
    if not isinstance(last, dict):
        raise CorruptFile(path, "not a stage-times record (a JSON object)")
    forced = last if last.get("force") else last.get("from_scratch")
    return last, forced


def results_digest(preset: str) -> str:
    """A hash of what results/<preset>/*.json hold (every run record and robustness.json, parsed, so
    formatting does not count): an executed notebook records the digest of the results it showed."""
    digest = hashlib.sha256()
    for f in sorted(paths.results_dir(preset).glob("*.json")):
        digest.update(f.name.encode() + json.dumps(read_json(f, "result file"), sort_keys=True).encode())
    return digest.hexdigest()[:16]


def stale_notebooks(preset: str) -> list[str]:
    """The executed notebooks in runs/<preset>/ that show other results than results/<preset>/ holds
    now (their metadata's `unedit.results_digest`, written by scripts/run_notebooks.py, differs or is
    missing): re-execute them before the README quotes those results."""
    now = results_digest(preset)
    stale = []
    for nb in sorted(paths.runs_dir(preset).glob("[0-9][0-9]_*.ipynb")):
        meta = read_json(nb, "executed notebook").get("metadata", {}).get("unedit") or {}
        if meta.get("results_digest") != now:
            stale.append(nb.name)
    return stale


def is_study_notebook(name: str) -> bool:
    """Notebooks 00-07 are the study; 08, the robustness check, has its own budget."""
    return name[:2] in {f"0{i}" for i in range(8)}


def study_seconds(times: dict) -> float:
    """Seconds of notebooks 00-07 in a stage_times record."""
    return sum(v for k, v in times["stages_s"].items() if is_study_notebook(k))


def to_jsonable(obj):
    """Keep what JSON can hold (floats, ints, strings, lists, dicts); non-finite floats become
    None; tensors and other objects are dropped."""
    if isinstance(obj, dict):
        pairs = ((str(k), to_jsonable(v)) for k, v in obj.items())
        return {k: v for k, v in pairs if v is not _DROP}
    if isinstance(obj, (list, tuple)):
        return [x for x in (to_jsonable(v) for v in obj) if x is not _DROP]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    item = getattr(obj, "item", None)      # numpy scalars
    if callable(item) and type(obj).__module__ == "numpy":
        return to_jsonable(item())
    return _DROP


_DROP = object()


def library_versions() -> dict:
    import numpy as np
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__, "unedit": "0.1.0"}


# --------------------------------------------------------------------------- per-item logs
def save_eval_logs(logs: dict, folder) -> None:
    folder = Path(folder)
    for s, fname in LOG_FILES.items():
        if s in logs:
            write_json(logs[s], folder / fname)


def load_eval_logs(folder) -> dict:
    """Read a folder of TOFU legacy logs (ours or TOFU's published ones) into {set: log}."""
    folder = Path(folder)
    logs = {}
    for s, fname in LOG_FILES.items():
        f = folder / fname
        if f.exists():
            logs[s] = read_json(f, "TOFU eval log")
            if not isinstance(logs[s], dict) or "avg_gt_loss" not in logs[s]:
                raise CorruptFile(f, "not a TOFU eval log (no avg_gt_loss)")
    if not logs:
        raise FileNotFoundError(f"no TOFU eval logs ({', '.join(LOG_FILES.values())}) in {folder}")
    return logs


def cached_logs(preset: str, run: str) -> dict | None:
    """The per-item logs of a finished run (record and forget log present), else None."""
    folder = paths.logs_dir(preset, run)
    if paths.record_path(preset, run).exists() and (folder / LOG_FILES["forget"]).exists():
        return load_eval_logs(folder)
    return None


# --------------------------------------------------------------------------- run records
def record_hash(preset: str, run: str) -> str | None:
    """A hash of a run record's file (notebook 08 keys a run's attacks by it), None without a record."""
    path = paths.record_path(preset, run)
    return hashlib.sha1(path.read_bytes()).hexdigest()[:12] if path.exists() else None


def save_record(preset: str, run: str, rec: dict) -> Path:
    return write_json(rec, paths.record_path(preset, run))


def load_record(preset: str, run: str) -> dict | None:
    """The record of one run, None if there is none; CorruptFile if it cannot be read."""
    path = paths.record_path(preset, run)
    if not path.exists():
        return None
    rec = read_json(path, "run record")
    if not isinstance(rec, dict) or rec.get("run") != run:
        raise CorruptFile(path, f"not the record of run {run!r}")
    return rec


def is_ablation(run: str, rec: dict | None = None) -> bool:
    """A run made with settings other than the study's (its name carries `+setting=value`)."""
    return "+" in run or bool((rec or {}).get("ablation"))


_GRID_RUN = re.compile(r"^rome-[a-z]+\+v_lr=[0-9.]+(-s[0-9]+)?$")


def is_grid_run(run: str) -> bool:
    """A ROME run on the stated v_lr grid, chosen by the premise gate where the paper's v_lr fails
    (`recipes.rome_reproduction`): part of the reproduction, not an ablation, though its name
    carries `+v_lr=` (so `is_ablation` is true of it)."""
    return bool(_GRID_RUN.match(run))


def load_results(preset: str, include_ablations: bool = False) -> dict:
    """{run: record} of every run record in results/<preset>/*.json, in name order.

    Files that are not run records (robustness.json) are left out; a corrupt record is
    skipped with a warning naming it. Ablations (runs with non-study settings) are left out
    unless `include_ablations`: the study's tables and findings read only the study's runs.
    """
    out = {}
    for f in sorted(paths.results_dir(preset).glob("*.json"), key=lambda f: f.stem):
        try:
            rec = read_json(f, "run record")
        except CorruptFile as e:
            warnings.warn(f"skipping a corrupt result: {e}", stacklevel=2)
            continue
        if not (isinstance(rec, dict) and rec.get("run") == f.stem and "metrics" in rec):
            continue
        if include_ablations or not is_ablation(f.stem, rec):
            out[f.stem] = rec
    stale = runs_from_another_full_model(out)
    if stale:
        warnings.warn(f"results/{preset}: left out {len(stale)} run(s) made from another full model than "
                      f"results/{preset}/full.json evaluates ({', '.join(stale)}); rerun them (their notebook "
                      "recomputes them)", stacklevel=2)
    return {r: rec for r, rec in out.items() if r not in stale}


def runs_from_another_full_model(records: dict) -> list[str]:
    """The runs of `records` that start from another full model than the `full` record evaluates
    (a study is one full model's: a machine that fine-tunes another one recomputes the runs one by
    one, and until it is done the folder holds both). The full model is the record's
    `subject_model`, or the folder in `model_path` for records written before they named it."""
    full = records.get("full") or {}
    full_id = Path(full.get("subject_model") or full.get("model_path") or "").name
    if not full_id:
        return []
    return [r for r, rec in records.items()
            if rec.get("method") != "subject model" and rec.get("subject_model") not in (None, full_id)]


def remove_run(preset: str, run: str) -> None:
    """Forget a run's record and logs (the record first: no record means no result)."""
    paths.record_path(preset, run).unlink(missing_ok=True)
    shutil.rmtree(paths.logs_dir(preset, run), ignore_errors=True)
