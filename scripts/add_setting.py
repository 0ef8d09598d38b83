"""Name a new setting in the records made before it existed (a shape migration: no number changes).

A run is reused only when its record's `hp_key` (runner.hp_key: a hash of every setting) is the key
the code computes for it. When a method gains a setting, every earlier record of that method lacks
it, so its key no longer matches and the run would be recomputed although it was made with the
value the setting has for it. This script adds `--name` with `--value` (the value those runs were
made with: check it) to the records of `--methods` of a preset, and recomputes `hp_key`. It first
checks that each record's key is the hash of its stored settings, and refuses a record that already
names the setting. ROME's v_lr probes (results/<preset>/rome_probe/, named by a hash of the settings
they probed) are renamed to the key the code now computes, after checking their old name is the key
without the setting. Notebook 08's attack cache (robustness.json `source`: record hashes) follows.
Usage:

    python scripts/add_setting.py --preset smollm2-forget01 --methods ROME R-ROME --name edit_template --value null [--dry-run]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from unedit_lib.core import paths, presets, store  # noqa: E402
from unedit_lib.study import recipes, robustness, runner  # noqa: E402


class MigrationRefused(ValueError):
    """A record is not what the migration expects: nothing of the preset was changed."""


def _records(p, methods) -> list[tuple[Path, dict]]:
    out = []
    for path in sorted(paths.results_dir(p.name).glob("*.json")):
        rec = store.read_json(path, "run record")
        if isinstance(rec, dict) and rec.get("run") == path.stem and rec.get("method") in methods:
            out.append((path, rec))
    return out


def _probe_key(p, target, grid, hp) -> str:
    """recipes.rome_grid_probe's cache key for these settings and v_lr values."""
    return runner.hp_key({"target": target, "grid": sorted(grid), "hp": hp,
                          "subject_model": runner.subject_model_id(p)})


def _probe_renames(p, name, value, data_dir) -> list[tuple[Path, Path]]:
    """(old, new) paths of the ROME v_lr probes: the settings rome_grid_probe computes now, with and
    without the new setting; a probe whose name is neither is refused."""
    folder = paths.results_dir(p.name) / "rome_probe"
    out = []
    for path in sorted(folder.glob("*.json")):
        probe = store.read_json(path, "ROME v_lr probe")
        target, seed, grid = probe["target"], probe["seed"], probe["grid"]
        hp = {**recipes.settings(p, "rome", seed), "n_edits": int(probe["n_requests"])}
        hp["layer"] = recipes.rome_layer(p, data_dir)[0]
        if hp.get(name) != value:
            raise MigrationRefused(f"{path}: the study's {name} for ROME on {p.name} is {hp.get(name)!r}, not {value!r}")
        old = {k: v for k, v in hp.items() if k != name}
        new_path = folder / f"{target}-seed{seed}-{_probe_key(p, target, grid, hp)}.json"
        if path == new_path:
            continue
        if path.name != f"{target}-seed{seed}-{_probe_key(p, target, grid, old)}.json":
            raise MigrationRefused(f"{path}: its name is not the key of the study's settings without {name}: "
                                   "it probed other settings; leave it or delete it")
        out.append((path, new_path))
    return out


def migrate(preset: str, methods, name: str, value, data_dir=None, dry_run: bool = False) -> list[str]:
    """Add setting `name` = `value` to the records of `methods`; returns what changed (or would)."""
    p = presets.get_preset(preset)
    todo = []
    for path, rec in _records(p, set(methods)):
        hp = rec.get("hparams")
        if not isinstance(hp, dict) or runner.hp_key(hp) != rec.get("hp_key"):
            raise MigrationRefused(f"{path}: its hp_key is not the hash of its stored settings: not migrated")
        if name in hp:
            if hp[name] != value:
                raise MigrationRefused(f"{path}: already names {name}={hp[name]!r}, not {value!r}")
            continue
        todo.append((path, rec))
    probes = _probe_renames(p, name, value, data_dir) if {"ROME", "R-ROME"} & set(methods) else []
    changed = [path.stem for path, _ in todo] + [f"rome_probe/{a.name} -> {b.name}" for a, b in probes]
    if dry_run:
        return changed
    renamed = {}
    for path, rec in todo:
        before = store.record_hash(p.name, path.stem)
        hp = {**rec["hparams"], name: value}
        store.write_json({**rec, "hparams": hp, "hp_key": runner.hp_key(hp)}, path)
        renamed[before] = store.record_hash(p.name, path.stem)
    for old, new in probes:
        old.rename(new)
    robustness.follow_record_hashes(p.name, renamed)
    return changed


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", required=True)
    ap.add_argument("--methods", nargs="+", required=True, help="the records' `method` (ROME, R-ROME, IKE, WISE, ...)")
    ap.add_argument("--name", required=True)
    ap.add_argument("--value", required=True, help="JSON: null, \"raw\", 0.5, ...")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args()
    try:
        done = migrate(a.preset, a.methods, a.name, json.loads(a.value), a.data_dir, a.dry_run)
    except MigrationRefused as e:
        sys.exit(f"refused, nothing changed: {e}")
    print(f"{'would change' if a.dry_run else 'changed'} {len(done)} file(s) of {a.preset}: {', '.join(done) or '-'}")
