"""The method registry: every run's settings, name and cache key stay what they were (a frozen
expectation and the committed records)."""
import json
from pathlib import Path

import pytest

from unedit_lib import recipes, store, study

ROOT = Path(__file__).resolve().parents[1]
FROZEN = json.loads((ROOT / "tests" / "fixtures" / "study_settings_frozen.json").read_text())


# --------------------------------------------------------------------------- no cache key moves
@pytest.mark.parametrize("key", sorted(FROZEN["settings"]))
def test_settings_are_the_frozen_ones(key):
    """Every method's settings on every preset: the same names in the same order, the same values
    (their hp_key), as computed before the registry."""
    preset, method = key.split("/")
    hp = recipes.settings(preset, method)
    assert list(hp) == FROZEN["settings"][key]["keys"]
    assert study.hp_key(hp) == FROZEN["settings"][key]["hp_key"]


@pytest.mark.parametrize("case", FROZEN["plans"], ids=lambda c: f"{c['preset']}-{c['run']}")
def test_plans_are_the_frozen_ones(case):
    name, hp, changed = recipes.plan(case["preset"], case["method"], case["target"], case["seed"], **case["overrides"])
    assert (name, study.hp_key(hp), store.to_jsonable(changed)) == (case["run"], case["hp_key"], case["changed"])
