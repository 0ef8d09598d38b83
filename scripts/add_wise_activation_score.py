"""Name the activation-score rule of WISE records made before WISE had that setting (a shape
migration: no number changes).

`WiseHParams.activation_score` says how a row's activation score counts padding: "easyedit"
(EasyEdit's rule, the paper's: the default now) or "real-tokens" (padding excluded), the rule every
WISE run made before the setting used. runner.hp_key hashes every setting of a run, so the new
setting changes every WISE run's cache key, and the committed WISE records would no longer be
reused. The presets whose WISE runs were made before the setting (smoke, tiny, smollm2-forget01) keep
"real-tokens" (their preset files' [settings.wise]); for their records this script

* adds "activation_score": "real-tokens" to the record's settings (`hparams`, after
  `infer_max_above`, where a new record has it) and recomputes `hp_key` from them as runner.hp_key
  does (run names and `ablation` do not change: the value is the preset's study setting);
* adds it to the edit's own WiseHParams record (`stats.hparams`), with its `deviations_from_paper`
  entry, as a run made now with that setting records it;
* updates the record hashes by which notebook 08 keys its attacks (robustness.json `source`), so
  those attacks stay the attacks of these records.

Records that already name the setting, and every other record, are left as they are. Run it only
on records made before the setting. Usage:

    python scripts/add_wise_activation_score.py --preset smollm2-forget01 [--dry-run]

(UNEDIT_RESULTS_DIR=<folder> points it at another results folder, e.g. a copy to try it on.)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from unedit_lib.core import paths, presets, store  # noqa: E402
from unedit_lib.methods.wise import hparams as wise_hparams  # noqa: E402
from unedit_lib.study import robustness, runner  # noqa: E402

VALUE = "real-tokens"   # the rule of every WISE run made before WiseHParams.activation_score


def _with_setting(hp: dict, value=VALUE) -> dict:
    """`hp` with activation_score inserted after infer_max_above (at the end without it)."""
    out, placed = {}, False
    for k, v in hp.items():
        out[k] = v
        if k == "infer_max_above":
            out["activation_score"], placed = value, True
    if not placed:
        out["activation_score"] = value
    return out


def _stats_hparams(hp: dict) -> dict:
    """The edit's WiseHParams record with the setting, and its deviation from the paper's listed in
    wise_hparams.PAPER_FIELDS order (as WiseHParams.deviations_from_paper lists it)."""
    out = _with_setting(hp)
    if isinstance(hp.get("deviations_from_paper"), dict):
        devs = {**hp["deviations_from_paper"],
                "activation_score": {"value": VALUE, "paper": wise_hparams.WiseHParams().activation_score}}
        order = [k for k in wise_hparams.PAPER_FIELDS if k in devs] + [k for k in devs if k not in wise_hparams.PAPER_FIELDS]
        out["deviations_from_paper"] = {k: devs[k] for k in order}
    return out


def migrated(rec: dict) -> dict | None:
    """The record with the setting named, or None when it needs no change."""
    hp = rec.get("hparams")
    if rec.get("method") != "WISE" or not isinstance(hp, dict) or "activation_score" in hp:
        return None
    new = dict(rec)
    new["hparams"] = _with_setting(hp)
    new["hp_key"] = runner.hp_key(new["hparams"])
    stats = rec.get("stats")
    if isinstance(stats, dict) and isinstance(stats.get("hparams"), dict) and "activation_score" not in stats["hparams"]:
        new["stats"] = {**stats, "hparams": _stats_hparams(stats["hparams"])}
    return new


def migrate(preset: str, dry_run: bool = False) -> list[str]:
    """Name the setting in the WISE records of `preset` that lack it; returns those changed."""
    p = presets.get_preset(preset)
    renamed, changed = {}, []
    for path in sorted(paths.results_dir(p.name).glob("*.json")):
        rec = store.read_json(path, "run record")
        if not (isinstance(rec, dict) and rec.get("run") == path.stem):
            continue
        new = migrated(rec)
        if new is None:
            continue
        changed.append(path.stem)
        if dry_run:
            continue
        before = store.record_hash(p.name, path.stem)
        store.write_json(new, path)
        renamed[before] = store.record_hash(p.name, path.stem)
    robustness.follow_record_hashes(p.name, renamed)
    return changed


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", required=True)
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args()
    runs = migrate(a.preset, a.dry_run)
    print(f"{'would name' if a.dry_run else 'named'} activation_score={VALUE!r} in {len(runs)} WISE record(s) of "
          f"{a.preset}: {', '.join(runs) or '-'}")
