"""Name the data of records made before records did (a shape migration: no number changes).

Every record says which TOFU rows it was made from (`data`: runner.data_record, a content hash
of the rows of every config the study reads), and a run or subject-model evaluation is reused only
for the same rows. An older record without a `data` field would be recomputed. This
script adds it to such records of a preset, computed from the data folder given (default: the one
the study reads, ../shared/tofu): run it only for records that were made from that data. It also
updates the record hashes by which notebook 08 caches its attacks (robustness.json `source`), so
those attacks stay the attacks of these records. Records that already name their data are left as
they are. Usage:

    python scripts/add_data_fingerprints.py --preset smollm2-forget01 [--data-dir PATH] [--dry-run]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from unedit_lib.core import paths, presets, store  # noqa: E402
from unedit_lib.study import robustness, runner  # noqa: E402


def migrate(preset: str, data_dir=None, dry_run: bool = False) -> list[str]:
    """Add `data` to the records (and ROME v_lr probes) of `preset` that lack it; returns those changed."""
    p = presets.get_preset(preset)
    data = runner.data_record(p, data_dir)
    renamed, changed = {}, []
    for path in sorted(paths.results_dir(p.name).glob("*.json")):
        rec = store.read_json(path, "run record")
        if not (isinstance(rec, dict) and rec.get("run") == path.stem and "metrics" in rec) or rec.get("data"):
            continue
        before = store.record_hash(p.name, path.stem)
        changed.append(path.stem)
        if dry_run:
            continue
        store.write_json({**rec, "data": data}, path)
        renamed[before] = store.record_hash(p.name, path.stem)
    for path in sorted((paths.results_dir(p.name) / "rome_probe").glob("*.json")):     # ROME v_lr probes
        probe = store.read_json(path, "ROME v_lr probe")
        if isinstance(probe, dict) and not probe.get("data"):
            changed.append(f"rome_probe/{path.stem}")
            if not dry_run:
                store.write_json({**probe, "data": data}, path)
    robustness.follow_record_hashes(p.name, renamed)
    return changed


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args()
    runs = migrate(a.preset, a.data_dir, a.dry_run)
    print(f"{'would add' if a.dry_run else 'added'} `data` to {len(runs)} record(s) of {a.preset}: {', '.join(runs) or '-'}")
