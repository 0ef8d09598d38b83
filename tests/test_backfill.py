"""scripts/backfill_premises.py: premise numbers added to older IKE / WISE records, never a metric
changed, and nothing written when the re-made evaluation is not the record's."""
import importlib.util
from pathlib import Path

import pytest

from unedit_lib.core import paths, store
from unedit_lib.study import recipes, runner

_SPEC = importlib.util.spec_from_file_location("backfill_premises",
                                               Path(__file__).resolve().parents[1] / "scripts" / "backfill_premises.py")
backfill_premises = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(backfill_premises)


def _record(method, run):
    return {"run": run, "method": method, "target": "dummy", "seed": 0, "model_utility": 0.5, "forget_quality": 0.2,
            "metrics": {"forget": {"rouge": 0.4, "prob": 0.3}}, "stats": {"edit_metrics": {"post": {}}}}


@pytest.fixture()
def records(tmp_path, monkeypatch):
    monkeypatch.setenv("UNEDIT_RESULTS_DIR", str(tmp_path / "results"))
    for method, run in (("IKE", "ike-dummy"), ("WISE", "wise-dummy")):
        store.save_record("smoke", run, _record(method, run))
    routes = {"forget": {"generate": {"prompt_rows": 8, "prompt_rows_routed": 8}}}

    def remake(p, run, data_dir=None):
        return "model", "tok", None, {"edit_metrics": {"forget_rows": {"n": 8, "means": {"rewrite_acc_with_context": 1.0}}}}

    def watch(model, stats):
        stats["eval_routing"] = routes
        return "watch"

    monkeypatch.setattr(recipes, "remake_unlearned", remake)
    monkeypatch.setattr(recipes, "wise_eval_routes", watch)
    monkeypatch.setattr(backfill_premises.evaluate, "evaluate_model", lambda *a, watch=None, **k: {"watched": watch})
    return routes


def test_backfill_adds_the_premise_numbers_and_keeps_every_metric(records, monkeypatch):
    before = {r: store.load_record("smoke", r) for r in ("ike-dummy", "wise-dummy")}
    assert all(backfill_premises.lacking(rec) for rec in before.values())
    monkeypatch.setattr(runner, "summarize_against_retain", lambda p, run, logs: _record("WISE", run) | {"logs": logs})
    backfill_premises.backfill("smoke", "ike-dummy")
    backfill_premises.backfill("smoke", "wise-dummy")
    for run, old in before.items():
        new = store.load_record("smoke", run)
        assert not backfill_premises.lacking(new) and new["backfilled"]["precision"]["machine"]["cpu_model"]
        assert {k: new[k] for k in ("model_utility", "forget_quality", "metrics")} == \
               {k: old[k] for k in ("model_utility", "forget_quality", "metrics")}
    assert store.load_record("smoke", "wise-dummy")["stats"]["eval_routing"] == records
    assert store.load_record("smoke", "ike-dummy")["stats"]["edit_metrics"]["forget_rows"]["n"] == 8


def test_backfill_writes_nothing_when_the_remade_evaluation_differs(records, monkeypatch):
    path = paths.record_path("smoke", "wise-dummy")
    raw = path.read_bytes()
    monkeypatch.setattr(runner, "summarize_against_retain",
                        lambda p, run, logs: _record("WISE", run) | {"model_utility": 0.51})
    with pytest.raises(RuntimeError, match="model_utility 0.5000 vs 0.5100"):
        backfill_premises.backfill("smoke", "wise-dummy")
    assert path.read_bytes() == raw
