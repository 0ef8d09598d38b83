"""Runs that survive a killed process. On forget05 a ROME or WISE run's sequential edits cost 1-10
hours on 2 CPU cores, a baseline's training 1-2 hours and IKE's evaluation, with its long contexts,
as much: longer than a working session. So the edit loop saves its state after every edit, the
baselines' training after every epoch, IKE its forget rows scored with their contexts as it goes
(EditCheckpoint), and the evaluation its logs after every set (EvalCheckpoint), and a rerun of the
same run continues after the last save.

EditCheckpoint, one file per run, artifacts/<preset>/checkpoints/<run>.safetensors: the method's
tensors (ROME: the edited weight; WISE: its side memory; a baseline: its weights, AdamW's moments and
torch's generator; IKE: none) and, in the metadata, the number of units done (edits; a baseline's
epochs or IKE's scored rows, which the segments' from_edit/to_edit then count), the statistics so
far, the method's state (IKE: its scored rows), the seconds they took and the
CPUs they ran on, and the run's cache key. EvalCheckpoint, one folder per run, artifacts/<preset>/checkpoints/<run>.eval/: each
finished set's log, keyed by the run's cache key and a digest of the evaluated model's weights (a
model re-made on another CPU differs by rounding and is evaluated afresh). A checkpoint of another
key is ignored and overwritten; the runner deletes both once the run's record is committed. A
resumed run computes what the uninterrupted one computes (tests/test_checkpoints.py, test_ike_forget_rows.py), but its
segments may have run on other CPUs: the record lists them (stats["segments"]).

A run longer than a working session outlives its artifacts/ when the next session starts from a fresh
clone: park() copies its EditCheckpoint (ROME's, WISE's: a few MB) to results/<preset>/in_progress/,
which is committed, and load() resumes from that copy too. The fresh clone re-makes the subject model
(runner.check_same_model holds it to the committed evaluation within float rounding), so each segment
names the digest of the subject model it ran on.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import torch

from . import paths, precision, store

_META = "unedit_checkpoint"


def _as_read_back(key: dict) -> dict:
    """A checkpoint's key as it reads back from its JSON (tuples as lists, other objects as strings)."""
    return json.loads(json.dumps(key, sort_keys=True, default=str))


class EditCheckpoint:
    """save(done, tensors, stats, state) after each edit (or epoch: `unit`, the word its messages
    count in); load() -> the last save of this key, or None."""

    def __init__(self, path, key: dict, unit: str = "edit", parked=None, subject: str | None = None):
        self.path = Path(path)
        self.parked = None if parked is None else Path(parked)    # a committed copy (park): read too
        self.unit = unit
        self.key = _as_read_back(key)
        self.seconds_before = 0.0        # unlearning time of earlier segments (load)
        self.segments: list[dict] = []   # the segments up to the last save (load: those of earlier processes)
        self._earlier: list[dict] = []
        self._resumed = False
        self._t0 = time.perf_counter()
        info = precision.describe()
        self._machine = {k: info.get(k) for k in ("cpu_model", "cpu_flags", "threads")}
        if subject is not None:          # the subject model's weights (model_digest): a fresh clone re-makes it
            self._machine["subject_digest"] = subject

    def _read(self, path: Path) -> tuple[dict, dict] | None:
        """(metadata, tensors) of the save at `path` when it is this key's, else None (said why)."""
        try:
            from safetensors import safe_open
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads(f.metadata()[_META])
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # noqa: BLE001 - truncated, garbled or foreign file: start afresh
            print(f"{path.name}: unreadable checkpoint ({type(e).__name__}: {e}); not resumed from")
            return None
        if meta.get("key") != self.key:
            print(f"{paths.display_path(path)}: checkpoint of other settings, data or model; not resumed from")
            return None
        return meta, tensors

    def load(self) -> dict | None:
        """{"done": edits done, "tensors", "stats", "state"} of the last save, or None when there is
        none or it belongs to another key (then it is left to be overwritten). Of this file and the
        parked copy, the one further on is resumed."""
        there = [where for where in (self.path, self.parked) if where is not None and where.is_file()]
        found = [(r, where) for where in there if (r := self._read(where))]
        if not found:
            if there:
                print(f"{self.path.name}: starting from the first {self.unit}")
            return None
        (meta, tensors), where = max(found, key=lambda f: int(f[0][0]["done"]))
        self.seconds_before = float(meta["seconds"])
        self.segments = self._earlier = list(meta["segments"])
        self._resumed = True
        self._t0 = time.perf_counter()
        parked = "" if where == self.path else f" (parked in {paths.display_path(where)})"
        print(f"{self.path.name}: resuming after {self.unit} {meta['done']}{parked} ({self.seconds_before:.0f} s done before)")
        return {"done": int(meta["done"]), "tensors": tensors, "stats": meta["stats"], "state": meta["state"]}

    def save(self, done: int, tensors: dict[str, torch.Tensor], stats: dict, state: dict | None = None) -> None:
        """Atomically replace the file with the method's `tensors` and `state` (JSON) and the run's
        `stats` after `done` edits."""
        earlier = self._earlier
        segments = earlier + [{"from_edit": earlier[-1]["to_edit"] if earlier else 0, "to_edit": done,
                               "seconds": time.perf_counter() - self._t0, **self._machine}]
        meta = {"key": self.key, "done": done, "unit": self.unit, "seconds": self.seconds_before + segments[-1]["seconds"],
                "segments": segments, "stats": stats, "state": state}
        from safetensors.torch import save_file
        body = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        text = json.dumps(meta, default=float)       # allow_nan: WISE's min_act is inf before a shard's first edit
        store.write_file(self.path, lambda tmp: save_file(body, str(tmp), metadata={_META: text}))
        self.segments = segments

    def record(self) -> list[dict] | None:
        """The segments a resumed run was made in (None for a run made in one go)."""
        return self.segments if self._resumed else None

    def clear(self) -> None:
        for where in (self.path, self.parked):
            if where is not None:
                where.unlink(missing_ok=True)


def model_digest(model) -> str:
    """sha256 of every parameter and buffer of `model` (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


class EvalCheckpoint:
    """start(stats) -> the logs of the sets a killed process finished; save_set(name, log, stats) after
    each set. `stats` is the run's record stats: what the evaluation writes there (WISE's routes, IKE's
    prompt counters) for the finished sets is restored, so the record holds every set's."""

    def __init__(self, folder, key: dict):
        self.folder = Path(folder)
        self.key = _as_read_back(key)
        self.seconds_before = 0.0       # evaluation time of the finished sets (start)
        self._meta: dict = {}
        self._t0 = time.perf_counter()

    def start(self, stats: dict) -> dict:
        meta_path = self.folder / "checkpoint.json"
        try:
            meta = store.read_json(meta_path, "evaluation checkpoint") if meta_path.is_file() else None
            logs = {n: store.read_json(self.folder / f"{n}.json", "set log") for n in (meta or {}).get("sets", [])}
        except store.CorruptFile as e:
            print(f"{self.folder.name}: unreadable evaluation checkpoint ({e}); evaluating every set")
            meta = None
        if meta is not None and meta.get("key") == self.key:
            for k, v in meta["stats_after"].items():       # what the evaluation wrote into stats
                if meta["stats_before"].get(k) != v:
                    stats[k] = v
            self._meta, self.seconds_before = meta, float(meta["seconds"])
            if logs:
                print(f"{self.folder.name}: evaluated sets reused: {', '.join(logs)} ({self.seconds_before:.0f} s)")
            self._t0 = time.perf_counter()
            return logs
        if meta is not None:
            print(f"{self.folder.name}: evaluation checkpoint of another run or model; evaluating every set")
        self.clear()
        before = store.to_jsonable(stats)
        self._meta = {"key": self.key, "sets": [], "seconds": 0.0, "stats_before": before, "stats_after": before}
        store.write_json(self._meta, meta_path, allow_nan=True)
        self._t0 = time.perf_counter()
        return {}

    def save_set(self, name: str, log: dict, stats: dict) -> None:
        """The set's log first, then the checkpoint that names it: a kill between the two loses the set."""
        store.write_json(log, self.folder / f"{name}.json", allow_nan=True)
        self._meta.update(sets=self._meta["sets"] + [name], stats_after=store.to_jsonable(stats),
                          seconds=self.seconds_before + time.perf_counter() - self._t0)
        store.write_json(self._meta, self.folder / "checkpoint.json", allow_nan=True)

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


# ROME's edited weight or WISE's side memory (forget05: 3.5 MB each), not a baseline's weights and AdamW
# moments (SmolLM2: ~1.6 GB), which a session finishes anyway (forget05: 1-2 hours)
PARK_MAX_MB = 64


def _saved_meta(path: Path) -> dict:
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()[_META])


def park(preset: str, max_mb: float = PARK_MAX_MB) -> list[Path]:
    """Copy each EditCheckpoint of `preset` (artifacts/<preset>/checkpoints/) of at most `max_mb` to
    results/<preset>/in_progress/ (paths.parked_checkpoint_path), to be committed: a run longer than
    a working session then continues on the next session's fresh clone, whose runner resumes from the
    copy (EditCheckpoint.load) and deletes it with the run's commit. Returns the copies made."""
    folder = paths.artifacts_dir(preset) / "checkpoints"
    made = []
    for src in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        run, mb = src.stem, src.stat().st_size / 2**20
        if mb > max_mb:
            print(f"{run}: {mb:.0f} MB, more than the {max_mb:g} MB a parked checkpoint may take: not parked "
                  "(a run of this size finishes within a session, or starts again on the next)")
            continue
        meta, dest = _saved_meta(src), paths.parked_checkpoint_path(preset, run)
        if dest.is_file() and (old := _saved_meta(dest))["key"] == meta["key"] and old["done"] >= meta["done"]:
            print(f"{run}: the parked checkpoint is as far on ({old['done']} done); left as it is")
            continue
        store.write_file(dest, lambda tmp, src=src: shutil.copyfile(src, tmp))
        print(f"{run}: parked after {meta['done']} done ({meta['seconds']:.0f} s) in {paths.display_path(dest)}")
        made.append(dest)
    return made


def progress(path) -> dict | None:
    """How far the run saved at `path` got: {"run", "done" (units), "unit" ("edit", ...), "seconds"}, from
    the checkpoint's metadata; None when there is no readable checkpoint there."""
    path = Path(path)
    try:
        meta = _saved_meta(path)
    except Exception:  # noqa: BLE001 - missing, truncated or foreign: nothing under way there
        return None
    return {"run": path.stem, "done": int(meta["done"]), "unit": meta.get("unit", "unit"), "seconds": float(meta["seconds"])}


def parked_runs(preset: str) -> list[dict]:
    """progress() of each run of `preset` parked in results/<preset>/in_progress/ (park)."""
    folder = paths.parked_checkpoint_path(preset, "x").parent
    return [r for f in (sorted(folder.glob("*.safetensors")) if folder.is_dir() else []) if (r := progress(f))]
