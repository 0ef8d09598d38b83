"""Sequential edits that survive a killed process: a ROME or WISE run over forget05's 200 requests
costs 1-5 hours on 2 CPU cores, longer than a working session, so the edit loop saves its state
after every edit and a rerun of the same run continues from the last one saved.

One file per run, artifacts/<preset>/checkpoints/<run>.safetensors: the method's tensors (ROME: the
edited weight; WISE: its side memory) and, in the metadata, the number of edits done, the per-edit
statistics so far, the seconds they took and the CPUs they ran on, and the run's cache key. A file
whose key is not the run's (other settings, data or subject model) is ignored and overwritten. The
runner deletes the file once the run's record is committed. A resumed run computes what the
uninterrupted one computes (tests/test_edit_checkpoint.py), but its segments may have run on other
CPUs: the record lists them (stats["segments"]), as float rounding differs between CPUs.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from . import precision, store

_META = "unedit_checkpoint"


class EditCheckpoint:
    """save(done, tensors, stats, state) after each edit; load() -> the last save of this key, or None."""

    def __init__(self, path, key: dict):
        self.path = Path(path)
        self.key = json.loads(json.dumps(key, sort_keys=True, default=str))   # as it reads back from JSON
        self.seconds_before = 0.0        # unlearning time of earlier segments (load)
        self.segments: list[dict] = []   # the segments up to the last save (load: those of earlier processes)
        self._earlier: list[dict] = []
        self._resumed = False
        self._t0 = time.perf_counter()
        info = precision.describe()
        self._machine = {k: info.get(k) for k in ("cpu_model", "cpu_flags", "threads")}

    def load(self) -> dict | None:
        """{"done": edits done, "tensors", "stats", "state"} of the last save, or None when there is
        none or it belongs to another key (then it is left to be overwritten)."""
        if not self.path.is_file():
            return None
        try:
            from safetensors import safe_open
            with safe_open(str(self.path), framework="pt") as f:
                meta = json.loads(f.metadata()[_META])
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # noqa: BLE001 - truncated, garbled or foreign file: start afresh
            print(f"{self.path.name}: unreadable checkpoint ({type(e).__name__}: {e}); starting from the first edit")
            return None
        if meta.get("key") != self.key:
            print(f"{self.path.name}: checkpoint of other settings, data or model; starting from the first edit")
            return None
        self.seconds_before = float(meta["seconds"])
        self.segments = self._earlier = list(meta["segments"])
        self._resumed = True
        self._t0 = time.perf_counter()
        print(f"{self.path.name}: resuming after edit {meta['done']} ({self.seconds_before:.0f} s done before)")
        return {"done": int(meta["done"]), "tensors": tensors, "stats": meta["stats"], "state": meta["state"]}

    def save(self, done: int, tensors: dict[str, torch.Tensor], stats: dict, state: dict | None = None) -> None:
        """Atomically replace the file with the method's `tensors` and `state` (JSON) and the run's
        `stats` after `done` edits."""
        earlier = self._earlier
        segments = earlier + [{"from_edit": earlier[-1]["to_edit"] if earlier else 0, "to_edit": done,
                               "seconds": time.perf_counter() - self._t0, **self._machine}]
        meta = {"key": self.key, "done": done, "seconds": self.seconds_before + segments[-1]["seconds"],
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
        self.path.unlink(missing_ok=True)
