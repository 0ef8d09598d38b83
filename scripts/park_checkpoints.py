"""Park the runs of a preset that are under way: copy their checkpoints (ROME's edited weight, WISE's
side memory) to results/<preset>/in_progress/, to be committed, so that the next working session's
fresh clone continues them (unedit_lib.core.checkpoints.park). `make park PRESET=...`."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unedit_lib.core import checkpoints, paths  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default=paths.HEADLINE_PRESET)
    ap.add_argument("--max-mb", type=float, default=checkpoints.PARK_MAX_MB,
                    help="the largest checkpoint to park (a baseline's, ~1.6 GB on SmolLM2, is not)")
    a = ap.parse_args()
    made = checkpoints.park(a.preset, a.max_mb)
    print(f"{len(made)} checkpoint(s) parked; commit results/{a.preset}/in_progress/ to keep them")
