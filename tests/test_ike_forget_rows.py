"""IKE's edit-level numbers on every forget row (issue 37 item 4), and the forget05 split whose
requests are forget01."""
from __future__ import annotations

from unedit_lib import ike
from unedit_lib.data import load_tofu


# --------------------------------------------------------------------------- the split the forget05 study uses
def test_forget05_at_0_8_requests_are_forget01():
    rows = load_tofu("forget05")
    assert len(rows) == 200 and int(200 * 0.8) == 160          # no float rounding below 160 here
    pool_rows, reqs = ike.split_pool_requests(rows, 0.8)
    assert len(pool_rows) == 160 and len(reqs) == 40
    assert [r["question"] for r in reqs] == [r["question"] for r in load_tofu("forget01")]
