"""The method registry: a method registered in one place runs through the study and is reported,
gated and drawn as what it is; every run's settings, name and cache key stay what they were (a
frozen expectation and the committed records)."""
import importlib
import json
import sys
import textwrap
from pathlib import Path

import pytest

from unedit_lib.core import presets, registry, run_names, store
from unedit_lib.methods.wise import editor as wise
from unedit_lib.report import findings, gates, plots, summary, tables
from unedit_lib.study import recipes, runner
from unedit_lib.subject import models
from test_study import ga_run, scratch, tok  # noqa: F401  (the study's smoke fixtures: a real GA run on a tiny Llama)

ROOT = Path(__file__).resolve().parents[1]
FROZEN = json.loads((ROOT / "tests" / "fixtures" / "study_settings_frozen.json").read_text())

# A toy editor, all of it in one module: it scales one MLP weight by `scale`, and its premise gate
# asks that the weight grew. One registry call makes it a method of the study.
TOY_EDITOR = '''
    import torch

    from unedit_lib.core import registry


    def defaults():
        return {"scale": 1.0}


    def build(p, sd, method, target, hp, data_dir):
        def apply(model, tok, stats):
            name, w = next((n, w) for n, w in model.named_parameters() if n.endswith("mlp.down_proj.weight"))
            before = float(w.detach().norm())
            with torch.no_grad():
                w.mul_(hp["scale"])
            stats.update(weight=name, norm_ratio=float(w.detach().norm()) / before)
            return model
        return apply, {"n_edits": len(sd.forget_rows)}, hp


    def weight_gates(run, rec, records):
        ratio = (rec.get("stats") or {}).get("norm_ratio")
        status = "unknown" if ratio is None else "holds" if ratio > 1 else "fails"
        return [{"run": run, "gate": "the weight grew", "value": ratio, "threshold": "> 1", "status": status,
                 "source": "stats.norm_ratio", "context": "", "short": "weight grew"}]


    registry.register("toy", "Toy", registry.EDITOR, defaults=defaults, study_settings={"smoke": {"scale": 2.0}},
                      build=build, gates=weight_gates)
'''


@pytest.fixture()
def toy_module(tmp_path, monkeypatch):
    """The toy editor's module, importable as `toy_editor` (importing it registers the method);
    the method is unregistered afterwards."""
    (tmp_path / "toy_editor.py").write_text(textwrap.dedent(TOY_EDITOR))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "toy_editor"
    sys.modules.pop("toy_editor", None)
    if "toy" in registry.names():
        registry.unregister("toy")


def test_a_method_registered_in_one_place_runs_and_is_reported_as_an_editor(ga_run, toy_module, monkeypatch):  # noqa: F811
    # not registered: the study refuses its name, and a record of it would read as a baseline's
    with pytest.raises(ValueError, match="unknown method 'toy'; valid: rome, rrome, ike, wise, ga, gd, kl, idk, npo"):
        recipes.plan("smoke", "toy", "dummy")
    assert plots.run_style("toy-dummy")["family"] == "baseline" and tables.method_kind("Toy") is None

    importlib.import_module(toy_module)
    assert recipes.settings("smoke", "toy") == {"scale": 2.0, "seed": 0}      # its defaults < the study's < overrides
    with pytest.raises(ValueError, match="needs a target"):
        recipes.plan("smoke", "toy", None)                                     # an editor edits towards a target
    read = []                # a run resolves its preset and reads its study data once, then passes them on
    monkeypatch.setattr(models, "study_data", lambda p, data_dir=None, _read=models.study_data: read.append(p) or _read(p, data_dir))
    rec = recipes.run("smoke", "toy", "dummy")
    assert len(read) == 1 and isinstance(read[0], presets.Preset)
    assert (rec["run"], rec["method"], rec["stats"]["norm_ratio"]) == ("toy-dummy", "Toy", pytest.approx(2.0))
    model, _, prompter = recipes.load_unlearned("smoke", "toy-dummy")         # saved as a plain model
    saved = float(dict(model.named_parameters())[rec["stats"]["weight"]].detach().norm())
    assert prompter is None and saved == pytest.approx(2 * _full_norm(rec["stats"]["weight"]), rel=1e-5)

    subject = {w: {**ga_run, "run": w, "method": "subject model"} for w in ("full", "retain")}
    records = {**subject, "ga": ga_run, "toy-dummy": rec}
    table = tables.main_table(records)
    assert list(table.index) == ["full", "retain", "toy-dummy", "ga"]         # editors before baselines
    assert table.loc["toy-dummy", "kind"] == "editor" and table.loc["ga", "kind"] == "baseline"

    gate = gates.gate_table(records)
    assert gate[["run", "gate", "status"]].values.tolist() == [["toy-dummy", "the weight grew", "holds"]]
    beat = next(f for f in findings.FINDINGS if f.claim.startswith("Editing can exceed"))
    assert beat.runs(list(records)) == ["toy-dummy"]                           # an editor run of the study
    assert [g["short"] for g in findings.premise_gates(beat, "toy-dummy", records)] == ["weight grew"]

    lines = summary.answer_lines(records, table, [])
    assert any(line.startswith("* **Toy** — edit took") for line in lines)
    assert next(line for line in lines if "Unlearning baselines" in line).startswith("* **Unlearning baselines** (ga)")
    assert {"toy-dummy", "toy-incorrect", "toy-avoidant"} <= set(summary.study_runs("smoke"))

    style = plots.run_style("toy-dummy+scale=3")
    assert (style["family"], style["method"], style["variant"]) == ("Toy", "Toy", True)
    assert style["color"] != plots.run_style("ga")["color"]


def test_the_registry_refuses_what_would_break_run_names_and_lookups():
    assert registry.names() == ("rome", "rrome", "ike", "wise", "ga", "gd", "kl", "idk", "npo")   # the tables' order
    assert registry.families() == [("ROME", ("ROME", "R-ROME")), ("IKE", ("IKE",)), ("WISE", ("WISE",))]
    assert registry.names(registry.EDITOR, in_study=True) == ("rome", "ike", "wise")      # R-ROME is off by default
    assert [registry.get(n).label for n in registry.names()] == ["ROME", "R-ROME", "IKE", "WISE", "ga", "gd", "kl",
                                                                 "idk", "npo"]         # the records' `method`, as ever
    for name, label, why in (("rome", "ROME2", "registered already"), ("new", "IKE", "registered already"),
                             ("my-editor", "X", "lower-case letters"), ("full", "X", "lower-case letters")):
        with pytest.raises(ValueError, match=why):
            registry.register(name, label, registry.EDITOR)
    with pytest.raises(ValueError, match="kind 'trainer'"):
        registry.register("new", "New", "trainer")
    with pytest.raises(TypeError, match="unknown code parts \\['builder'\\]"):
        registry.attach("rome", builder=None)
    with pytest.raises(ValueError, match="no method records the label 'GA'; valid: ROME, R-ROME"):
        registry.from_label("GA")
    assert registry.of_prefix(run_names.prefix("npo+lr=1e-05-s1")).name == "npo" and registry.of_prefix("full") is None
    assert "new" not in registry.names()


def _full_norm(name: str) -> float:
    model, _ = models.load_subject_model("smoke", "full")
    return float(dict(model.named_parameters())[name].detach().norm())


# --------------------------------------------------------------------------- no cache key moves
@pytest.mark.parametrize("key", sorted(FROZEN["settings"]))
def test_settings_are_the_frozen_ones(key):
    """Every method's settings on every preset: the same names in the same order, the same values
    (their hp_key), as computed before the registry."""
    preset, method = key.split("/")
    hp = recipes.settings(preset, method)
    assert list(hp) == FROZEN["settings"][key]["keys"]
    assert runner.hp_key(hp) == FROZEN["settings"][key]["hp_key"]


@pytest.mark.parametrize("case", FROZEN["plans"], ids=lambda c: f"{c['preset']}-{c['run']}")
def test_plans_are_the_frozen_ones(case):
    name, hp, changed = recipes.plan(case["preset"], case["method"], case["target"], case["seed"], **case["overrides"])
    assert (name, runner.hp_key(hp), store.to_jsonable(changed)) == (case["run"], case["hp_key"], case["changed"])


def _committed_records():
    for preset in ("smollm2-forget01", "tiny"):
        for path in sorted((ROOT / "results" / preset).glob("*.json")):
            rec = json.loads(path.read_text())
            if rec.get("hp_key"):
                yield pytest.param(preset, path, rec, id=f"{preset}/{path.stem}")


@pytest.mark.parametrize("preset,path,rec", list(_committed_records()))
def test_committed_records_keep_their_cache_key(preset, path, rec):
    """recipes.plan on a committed record's method, target, seed and ablation names the record's run
    and, with what its inputs resolve (ROME's traced layer, WISE's scaled frequencies), gives its hp_key."""
    from unedit_lib.core import registry

    method = registry.from_label(rec["method"]).name
    name, hp, _ = recipes.plan(preset, method, rec["target"], rec["seed"], **(rec.get("ablation") or {}))
    if method in ("rome", "rrome"):
        hp = {**hp, "layer": json.loads((path.parent / "trace" / "rome_layer.json").read_text())["layer"]}
    if method == "wise" and hp["scale_freqs"]:
        hp = {**hp, **wise.scaled_freqs(rec["n_edits"], hp["reference_edits"], hp["save_freq"], hp["merge_freq"])}
    assert name == rec["run"] and runner.hp_key(hp) == rec["hp_key"]
    assert presets.current_name(rec["preset"]) == presets.get_preset(preset).name    # or its former name (renamed_from)
