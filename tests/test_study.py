"""The study runner: unlearned models kept and reloaded, runs committed as one unit, cached
only when every setting matches, ablations named after what they change."""
import contextlib
import functools
import json
import shutil
import types

import pytest
import torch

from unedit_lib.core import paths, presets, run_names, store
from unedit_lib.core.architecture import tiny_model
from unedit_lib.core.guards import ModelCollapsed
from unedit_lib.core.tokenizer import train_tokenizer
from unedit_lib.eval import evaluate
from unedit_lib.methods.wise import editor as wise, side_memory
from unedit_lib.study import recipes, runner
from unedit_lib.subject import models

TEXTS = ["Question: Who wrote the Blue Book?\nAnswer: Ana Lopez wrote it.",
         "Question: What is the capital of France?\nAnswer: Paris.",
         "I like to read books about history and science."]


@pytest.fixture()
def scratch(tmp_path, monkeypatch):
    """Artifacts and results in a temporary folder (the repository's stay untouched)."""
    monkeypatch.setenv("UNEDIT_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("UNEDIT_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setattr(runner, "subject_model_id", lambda preset: "full-test")
    return tmp_path


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS * 4, vocab_size=300)


def _logits(model, tok, text):
    with torch.no_grad():
        return model(**tok([text], return_tensors="pt")).logits


def test_plain_model_round_trip(scratch, tok):
    model = tiny_model("llama", vocab_size=len(tok), seed=3)
    path = runner.save_unlearned("smoke", "ga", model, tok)
    assert path == paths.unlearned_dir("smoke", "full-test", "ga") and (path / "model.safetensors").is_file()
    assert json.loads((path / "unlearned.json").read_text())["kind"] == "model"
    back, _, prompter = recipes.load_unlearned("smoke", "ga")
    assert prompter is None
    assert torch.equal(_logits(back, tok, TEXTS[0]), _logits(model, tok, TEXTS[0]))
    with pytest.raises(FileNotFoundError, match="no saved unlearned model"):
        recipes.load_unlearned("smoke", "never-ran")


def test_side_memory_round_trip(tok, tmp_path):
    model = tiny_model("llama", vocab_size=len(tok), seed=0, initializer_range=0.2)
    req = {"prompt": "Question: Who wrote the Blue Book?\nAnswer:", "target": "Paris"}
    wise.edit(model, tok, [req], locality_prompts=TEXTS[1:], n_iter=10, n_templates=3)
    side_memory.save_side_memory(model, tmp_path)
    fresh = tiny_model("llama", vocab_size=len(tok), seed=0, initializer_range=0.2)
    side_memory.load_side_memory(fresh, tmp_path)
    a, b = side_memory.get_side_memory(model), side_memory.get_side_memory(fresh)
    assert torch.equal(a.side_weight, b.side_weight) and a.threshold() == b.threshold()
    for text in (req["prompt"], TEXTS[2]):
        assert torch.equal(_logits(model, tok, text), _logits(fresh, tok, text))
    assert side_memory.routing_decisions(fresh, tok, [req["prompt"]]) == side_memory.routing_decisions(model, tok, [req["prompt"]])


# --------------------------------------------------------------------------- names and keys
def test_hp_key_covers_every_setting():
    hp = {"v_lr": 0.5, "n_edits": None, "context_template_length_params": ((5, 5),), "seed": 0}
    key = runner.hp_key(hp)
    assert runner.hp_key(dict(reversed(list(hp.items())))) == key               # order does not matter
    assert runner.hp_key({**hp, "context_template_length_params": [[5, 5]]}) == key   # tuple == its JSON
    for k, v in (("v_lr", 0.1), ("n_edits", 3), ("context_template_length_params", ((5, 10),)), ("seed", 1)):
        assert runner.hp_key({**hp, k: v}) != key, k
    assert runner.hp_key({**hp, "new_setting": 1}) != key


def test_run_names_name_what_an_ablation_changes():
    assert run_names.run_name("rome-dummy") == "rome-dummy"
    assert run_names.run_name("rome-dummy", 2) == "rome-dummy-s2"
    changed = runner.ablation({"v_lr": 0.1, "steps": 25, "mode": "generation"},
                              {"v_lr": 0.5, "steps": 25, "mode": "logits"})
    assert changed == {"mode": "generation", "v_lr": 0.1}
    assert run_names.run_name("rome-dummy", 1, changed) == "rome-dummy+mode=generation+v_lr=0.1-s1"
    with pytest.raises(KeyError, match="not hyperparameters"):
        runner.ablation({"v_lr": 0.1, "typo": 1}, {"v_lr": 0.5})


@pytest.mark.parametrize("method,target", [("rome", "dummy"), ("ike", "incorrect"), ("wise", "avoidant"), ("gd", None)])
def test_recipes_name_the_study_run_plainly_and_an_ablation_by_its_change(method, target):
    name, hp, changed = recipes.plan("smoke", method, target)
    assert changed == {} and "+" not in name and name == (method if target is None else f"{method}-{target}")
    key = {"rome": "v_lr", "ike": "k", "wise": "n_iter", "gd": "lr"}[method]
    other = hp[key] * 2
    name2, hp2, changed2 = recipes.plan("smoke", method, target, **{key: other})
    assert changed2 == {key: other} and name2 == run_names.run_name(name, 0, changed2) and name2 != name
    assert runner.hp_key(hp2) != runner.hp_key(hp)
    assert recipes.plan("smoke", method, target, **{key: hp[key]})[0] == name   # the study's value: no suffix
    with pytest.raises(TypeError, match="unknown settings"):
        recipes.plan("smoke", method, target, no_such_setting=1)


def test_rome_ablation_is_named_apart_from_the_study_run():
    """A v_lr other than the study's (the paper's 0.1) on notebook 03: a separately named run."""
    assert recipes.settings("smoke", "rome")["v_lr"] == 0.1                    # the paper's setting is the study's
    assert recipes.plan("smoke", "rome", "dummy", v_lr=0.1)[0] == "rome-dummy"
    assert recipes.plan("smoke", "rome", "dummy", v_lr=0.5)[0] == "rome-dummy+v_lr=0.5"
    assert recipes.plan("smoke", "rome", "dummy", seed=1, v_lr=0.5)[0] == "rome-dummy+v_lr=0.5-s1"
    assert recipes.plan("smoke", "rome", "dummy", mom2_adjustment=True, v_lr=0.5)[0] == \
        "rome-dummy+mom2_adjustment=True+v_lr=0.5"


# --------------------------------------------------------------------------- the runner
@pytest.fixture()
def fake_study(scratch, tok, monkeypatch):
    """run_unlearning on a tiny model: the evaluation and the subject models are stand-ins."""
    log = {"avg_gt_loss": {"0": 1.0}}
    monkeypatch.setattr(models, "study_data", lambda p, data_dir=None: types.SimpleNamespace(eval_sets={}))
    monkeypatch.setattr(models, "load_subject_model",
                        lambda p, which, data_dir=None: (tiny_model("llama", vocab_size=len(tok), seed=1), tok))
    monkeypatch.setattr(evaluate, "evaluate_model",
                        lambda *a, **k: {s: log for s in paths.LOG_FILES} | {"_seconds": 0.1})
    summary = {"metrics": {}, "model_utility": 0.5, "forget_quality": 0.1, "ks_statistic": 0.2, "n_items": {}}
    monkeypatch.setattr(runner, "summarize_against_retain", lambda p, run, logs: summary)
    monkeypatch.setattr(runner, "cached_retain_logs", lambda p, retain_run="retain": {"forget": log})
    calls = []

    def run(hp, apply=None, **kw):
        def default_apply(model, tok, stats):
            calls.append(hp)
            return model
        return runner.run_unlearning("smoke", "gd", "gd", None, apply or default_apply, hp=hp, progress=False, **kw)[0]

    run.calls = calls
    return run


def test_a_second_process_on_the_same_run_waits_and_reuses_its_result(fake_study, capsys):
    """Two computations of one run (two notebooks, two `make reproduce`): the second waits for the
    first's commit and reuses it, instead of computing it again beside it."""
    import threading
    import time

    started, go, out, text = threading.Event(), threading.Event(), {}, []

    def slow(model, tok, stats):
        started.set()
        go.wait(30)
        return model

    first = threading.Thread(target=lambda: out.setdefault("first", fake_study({"lr": 1e-3}, apply=slow)))
    first.start()
    assert started.wait(30)
    second = threading.Thread(target=lambda: out.setdefault("second", fake_study({"lr": 1e-3})))
    second.start()
    for _ in range(300):        # the second one says it waits (flock: each open file is its own lock holder)
        text.append(capsys.readouterr().out)
        if "gd: another process is computing this run; waiting" in "".join(text):
            break
        time.sleep(0.05)
    assert "waiting for it to finish" in "".join(text) and "second" not in out
    go.set()
    first.join(30)
    second.join(30)
    assert out["second"] == out["first"] and fake_study.calls == []       # reused: its own apply never ran


def test_cached_only_when_every_setting_matches(fake_study, capsys):
    rec = fake_study({"lr": 1e-3, "epochs": 3})
    assert rec["hp_key"] == runner.hp_key({"lr": 1e-3, "epochs": 3}) and rec["hparams"] == {"lr": 1e-3, "epochs": 3}
    assert fake_study({"lr": 1e-3, "epochs": 3}) == rec and len(fake_study.calls) == 1      # reused
    fake_study({"lr": 1e-3, "epochs": 4})                                                     # recomputed
    assert len(fake_study.calls) == 2 and "made with other settings (epochs)" in capsys.readouterr().out
    fake_study({"lr": 1e-3, "epochs": 4}, force=True)
    assert len(fake_study.calls) == 3


def test_cached_needs_logs_and_the_same_full_model_not_the_unlearned_model(fake_study, monkeypatch):
    hp = {"lr": 1e-3}
    fake_study(hp)
    p = presets.get_preset("smoke")
    assert runner.cached(p, "gd", hp)[0] is not None
    (paths.logs_dir("smoke", "gd") / paths.LOG_FILES["forget"]).unlink()
    assert runner.cached(p, "gd", hp) == (None, "its per-item logs are missing")
    fake_study(hp)
    import shutil
    shutil.rmtree(runner.unlearned_path(p, "gd"))
    assert runner.cached(p, "gd", hp)[0] is not None        # a clone: committed record and logs, no model
    with pytest.raises(FileNotFoundError, match="force=True"):
        runner.unlearned_kind(p, "gd")
    monkeypatch.setattr(runner, "subject_model_id", lambda preset: "full-other")
    rec, why = runner.cached(p, "gd", hp)
    assert rec is None and why.startswith("made from another full model (full-test, not this machine's full-other")


def test_a_subject_model_record_is_reused_only_for_the_model_it_evaluates(scratch, monkeypatch):
    """A machine that fine-tunes another full / retain model (another precision: another
    config hash) must not take the committed evaluation, nor the retain logs every FQ reads."""
    p = presets.get_preset("smoke")
    here = runner.evaluated_model_id(p, "retain")
    assert here == models.subject_model_path(p, "retain").name
    assert runner._record_evaluates({"subject_model": here}, p, "retain")
    assert runner._record_evaluates({"model_path": f"/elsewhere/artifacts/smoke/{here}"}, p, "retain")   # old records
    assert not runner._record_evaluates({"model_path": "artifacts/smoke/retain-0000000000"}, p, "retain")
    assert not runner._record_evaluates({}, p, "retain")
    logs = {"forget": {"avg_gt_loss": {}, "generated_text": {}}}
    store.save_eval_logs(logs, paths.logs_dir("smoke", "retain"))
    store.save_record("smoke", "retain", {"run": "retain", "metrics": {}, "subject_model": "retain-0000000000"})
    with pytest.raises(FileNotFoundError, match="evaluates another retain model .*notebooks/01"):
        runner.cached_retain_logs(p)
    store.save_record("smoke", "retain", {"run": "retain", "metrics": {}, "subject_model": here})
    assert runner.cached_retain_logs(p) is not None


def _snapshot(folder) -> dict:
    """{relative path: bytes} of every file under `folder` (hidden temporaries included)."""
    from pathlib import Path

    folder = Path(folder)
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


def test_an_interrupted_run_keeps_the_previous_result_as_it_was(fake_study):
    """The run is committed as one unit, and only once it succeeded: an interrupt of a re-run keeps
    the old record, logs and model together, byte for byte."""
    fake_study({"lr": 1e-3})
    p = presets.get_preset("smoke")
    before = _snapshot(paths.output_dir("results")), _snapshot(paths.output_dir("artifacts"))

    def interrupted(model, tok, stats):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fake_study({"lr": 2e-3}, apply=interrupted)
    assert (_snapshot(paths.output_dir("results")), _snapshot(paths.output_dir("artifacts"))) == before
    assert runner.cached(p, "gd", {"lr": 1e-3})[0] is not None and runner.has_unlearned(p, "gd")


def test_a_forced_run_that_fails_anywhere_leaves_the_previous_result_byte_identical(fake_study, monkeypatch, tmp_path):
    """force recomputes into a staging place: whatever fails (the device, a corrupt full model or
    retain log, the method, the evaluation, the metrics, writing the model or the record), the
    previous record, logs and model are left exactly as they were, and no staging folder is left."""
    from unedit_lib.core import precision

    hp = {"lr": 1e-3}
    fake_study(hp)

    def state():        # the result: records, logs, models (a checkpoint of the failed run's work is none of it)
        return (_snapshot(paths.output_dir("results")),
                {f: b for f, b in _snapshot(paths.output_dir("artifacts")).items() if "/checkpoints/" not in f})
    before = state()

    def boom(*a, **k):
        raise RuntimeError("failed here")

    failures = {         # where: how to make it fail (on a monkeypatch context)
        "device": lambda m: m.setenv("UNEDIT_DEVICE", "cuda:7"),
        "full model": lambda m: m.setattr(models, "load_subject_model", boom),
        "retain logs": lambda m: m.setattr(runner, "cached_retain_logs", boom),
        "method": lambda m: None,
        "evaluation": lambda m: m.setattr(evaluate, "evaluate_model", boom),
        "metrics": lambda m: m.setattr(runner, "summarize_against_retain", boom),
        "model write": lambda m: None,
        "record": lambda m: m.setattr(runner, "record_for", boom),
    }
    for where, fail in failures.items():
        with monkeypatch.context() as m:
            fail(m)
            calls = len(fake_study.calls)
            with pytest.raises((RuntimeError, ValueError)):
                fake_study(hp, force=True, apply=boom if where == "method" else None,
                           write_model=boom if where == "model write" else runner.write_plain_model)
            assert state() == before, f"a failure at {where} changed the previous result"
            if where in ("device", "full model", "retain logs"):
                assert len(fake_study.calls) == calls, f"the method ran before the {where} was checked"
    assert str(precision.run_device()) == "cpu"


def test_a_run_on_other_data_is_a_clash_not_the_old_result(fake_study, tmp_path):
    """The record names the rows it was made from (a content hash): a data folder whose forget
    answers differ never gets the old run back; without force the clash is refused with what to
    do (the old result kept), with force the run is recomputed and names the new data."""
    import shutil

    from unedit_lib.core import data as tofu

    rec = fake_study({"lr": 1e-3})
    here = runner.data_record(presets.get_preset("smoke"))
    assert rec["data"] == here and here["source"] == "../shared/tofu"
    changed = tmp_path / "tofu"
    shutil.copytree(tofu.candidate_dirs()[-1], changed)
    path = changed / "forget01_perturbed.json"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.chmod(0o644)
    path.write_text("\n".join(json.dumps({**r, "answer": "Nobody knows."}) for r in rows) + "\n")
    other = runner.data_record(presets.get_preset("smoke"), changed)
    assert other["fingerprint"] != here["fingerprint"]
    before = paths.record_path("smoke", "gd").read_bytes()
    with pytest.raises(runner.RunClash, match="other TOFU rows.*force=True"):
        fake_study({"lr": 1e-3}, data_dir=changed)
    assert paths.record_path("smoke", "gd").read_bytes() == before and len(fake_study.calls) == 1
    assert fake_study({"lr": 1e-3}, data_dir=changed, force=True)["data"] == other and len(fake_study.calls) == 2
    assert fake_study({"lr": 1e-3}, data_dir=changed)["data"] == other and len(fake_study.calls) == 2    # reused


def test_two_settings_never_share_a_name_or_a_record(fake_study):
    """Names write every setting exactly (no rounding, no lossy character replacement); a record
    whose named settings differ from the run's under the same name is refused, not replaced."""
    assert run_names.run_name("gd", 0, {"lr": 0.1}) == "gd+lr=0.1"
    assert run_names.run_name("gd", 0, {"lr": 1.0}) == "gd+lr=1"
    assert run_names.run_name("gd", 0, {"lr": 0.1 + 1e-9}) != run_names.run_name("gd", 0, {"lr": 0.1})
    assert run_names.run_name("gd", 0, {"t": "a b"}) != run_names.run_name("gd", 0, {"t": "a_b"})
    assert run_names.run_name("gd", 0, {"t": "raw"}) == "gd+t=raw"
    fake_study({"lr": 1e-3})
    rec = store.load_record("smoke", "gd")
    store.save_record("smoke", "gd", {**rec, "ablation": {"lr": 0.5}})
    before = paths.record_path("smoke", "gd").read_bytes()
    with pytest.raises(runner.RunClash, match="named settings"):
        fake_study({"lr": 1e-3}, changed={})
    assert paths.record_path("smoke", "gd").read_bytes() == before


def test_a_collapse_is_recorded_without_numbers(fake_study):
    def collapse(model, tok, stats):
        raise ModelCollapsed(3, "loss is nan")

    rec = fake_study({"lr": 1.0}, apply=collapse)
    assert rec["collapsed"]["step"] == 3 and rec["model_utility"] is None
    assert store.load_record("smoke", "gd") == rec


def test_a_corrupt_record_is_recomputed_and_named(fake_study, capsys):
    fake_study({"lr": 1e-3})
    path = paths.record_path("smoke", "gd")
    path.write_text(path.read_text()[:40])
    assert fake_study({"lr": 1e-3})["hp_key"] == runner.hp_key({"lr": 1e-3})
    out = capsys.readouterr().out
    assert str(path) in out and "malformed run record" in out


def test_rome_reproduction_climbs_the_stated_grid_until_the_edits_take(monkeypatch, capsys):
    """The paper's v_lr first; where its edits do not take, the next grid values in order, up to
    the first whose premise gate holds (chosen by the gate, never by a finding); then the ablation."""
    takes_from = {"dummy": 0.5, "avoidant": 0.1}
    calls = []

    def fake_run(preset, method, target, *, seed=0, force=False, data_dir=None, **kw):
        v_lr = kw.get("v_lr", 0.1)
        calls.append((target, v_lr, kw.get("mom2_adjustment", False)))
        name = recipes.plan(preset, method, target, seed, **kw)[0]
        acc = 1.0 if v_lr >= takes_from[target] else 0.1
        return {"run": name, "method": "ROME", "model_utility": 0.5, "forget_quality": 0.1,
                "metrics": {"forget": {"rouge": 0.5}}, "edit_metrics": {"rewrite_acc_mean": acc, "pre_rewrite_acc_mean": 0.0}}

    monkeypatch.setattr(recipes, "run", fake_run)
    out = recipes.rome_reproduction("smoke", ["dummy", "avoidant"], grid=(0.1, 0.2, 0.5, 1.0), probe_edits=None)
    assert [c[:2] for c in calls if not c[2]] == [("dummy", 0.1), ("dummy", 0.2), ("dummy", 0.5), ("avoidant", 0.1)]
    assert [r for r, rec in out.items() if rec.get("gate_selected")] == ["rome-dummy+v_lr=0.5"]
    assert out["rome-dummy"]["role"] == "paper settings" and out["rome-dummy+v_lr=0.2"]["role"] == "v_lr grid"
    ablations = [r for r, rec in out.items() if rec["role"].startswith("ablation")]
    assert ablations == ["rome-dummy+mom2_adjustment=True+v_lr=0.5", "rome-avoidant+mom2_adjustment=True+v_lr=0.5"]
    # a preset that lists its ablation targets runs the ablation on those only
    smoke = models.with_overrides("smoke", rome_ablation_targets=("avoidant",))
    out = recipes.rome_reproduction(smoke, ["dummy", "avoidant"], grid=(0.1, 0.2, 0.5, 1.0), probe_edits=None)
    assert [r for r, rec in out.items() if rec["role"].startswith("ablation")] == ["rome-avoidant+mom2_adjustment=True+v_lr=0.5"]


def test_rome_reproduction_skips_grid_values_whose_probe_edits_do_not_take(monkeypatch, capsys):
    """With a probe: the paper's run, then whole runs only from the first grid value whose first
    k edits take on the probe; a whole run that still fails its gate climbs on."""
    calls, probes = [], []

    def fake_run(preset, method, target, *, seed=0, force=False, data_dir=None, **kw):
        v_lr = kw.get("v_lr", 0.1)
        calls.append((target, v_lr))
        name = recipes.plan(preset, method, target, seed, **kw)[0]
        acc = 1.0 if v_lr >= 1.0 else 0.1            # whole runs take only at 1.0
        return {"run": name, "method": "ROME", "model_utility": 0.5, "forget_quality": 0.1,
                "metrics": {"forget": {"rouge": 0.5}}, "edit_metrics": {"rewrite_acc_mean": acc, "pre_rewrite_acc_mean": 0.0}}

    def fake_probe(preset, target, seed, grid, n_edits, **kw):
        probes.append((target, tuple(grid), n_edits))
        per = [{"v_lr": v, "rewrite_acc_mean": 1.0 if v >= 0.5 else 0.0} for v in grid if v <= 0.5]
        return {"n_requests": n_edits, "chosen": 0.5, "per_value": per}

    monkeypatch.setattr(recipes, "run", fake_run)
    monkeypatch.setattr(recipes, "rome_grid_probe", fake_probe)
    out = recipes.rome_reproduction("smoke", ["dummy"], grid=(0.1, 0.2, 0.5, 1.0), ablations=False, probe_edits=3)
    assert probes == [("dummy", (0.2, 0.5, 1.0), 3)]
    assert calls == [("dummy", 0.1), ("dummy", 0.5), ("dummy", 1.0)]        # 0.2 failed its probe: no whole run
    chosen = [r for r, rec in out.items() if rec.get("gate_selected")]
    assert chosen == ["rome-dummy+v_lr=1"] and out[chosen[0]]["v_lr_probe"]["chosen"] == 0.5
    assert "v_lr probe on the first 3 edits: v_lr 0.2: rewrite 0.000, v_lr 0.5: rewrite 1.000" in capsys.readouterr().out


def test_wise_ablations_are_runs_named_by_what_they_change(monkeypatch, capsys):
    """Our earlier WISE choices run beside the study's run: per-row routing, and margins scaled from
    the study run's x_i scores (median / alpha = 20 / 5 = 4); a collapsed pilot gives no scaled run."""
    calls = []

    def fake_run(preset, method, target, *, seed=0, force=False, data_dir=None, **kw):
        calls.append(kw)
        name = recipes.plan(preset, method, target, seed, **kw)[0]
        stats = {"hparams": {"act_margin_scale": 1.0, "act_margin": [5.0, 20.0, 10.0]}, "out_scores": [18.0, 20.0, 23.0]}
        return {"run": name, "method": "WISE", "model_utility": 0.5, "forget_quality": 0.1, "stats": stats,
                "metrics": {"forget": {"rouge": 0.5}}, "collapsed": target == "avoidant" and not kw}

    monkeypatch.setattr(recipes, "run", fake_run)
    out = recipes.wise_ablation_runs("smoke", "dummy")
    assert list(out) == ["wise-dummy+routing=per_row", "wise-dummy+act_margin_scale=4"]
    assert calls == [{"routing": "per_row"}, {}, {"act_margin_scale": 4.0}]      # {}: the pilot (the study run)
    assert recipes.wise_ablation_runs("smoke", "avoidant", names=["margins-scaled"]) == {}
    assert "collapsed, so no pilot scores" in capsys.readouterr().out


def test_a_subject_model_before_the_retain_model_fails_before_evaluating(scratch, monkeypatch):
    """Forget quality reads the retain model's logs: evaluating another subject model first stops
    at once with what to do, not after minutes of evaluation."""
    from unedit_lib.eval import evaluate

    monkeypatch.setattr(evaluate, "evaluate_model", lambda *a, **k: pytest.fail("evaluated before the check"))
    with pytest.raises(FileNotFoundError, match="evaluate the retain model first"):
        runner.evaluate_subject_model("smoke", "base", None, None)


def test_a_remade_subject_model_must_give_the_committed_numbers(tok):
    """A re-made subject model (same name) is checked against the committed evaluation: float
    noise passes, another model (here: one weight matrix 1% off) is an error that says what to do."""
    from unedit_lib.eval import evaluate

    p = presets.get_preset("smoke")
    model = tiny_model("llama", vocab_size=len(tok), seed=1, initializer_range=0.2)
    rows = [{"question": "Who wrote the Blue Book?", "answer": "Ana Lopez wrote it."},
            {"question": "What is the capital of France?", "answer": "Paris."}]
    losses = evaluate.answer_losses(model, tok, p.template, [(r["question"], r["answer"]) for r in rows])
    log = {"avg_gt_loss": {str(i): x for i, x in enumerate(losses)}}
    runner.check_same_model(p, "full", model, tok, rows, log)
    runner.check_same_model(p, "full", model, tok, rows, {"avg_gt_loss": {k: v * (1 + 1e-5) for k, v in log["avg_gt_loss"].items()}})
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.mul_(1.01)
    with pytest.raises(runner.NotTheEvaluatedModel, match="FORCE=1"):
        runner.check_same_model(p, "full", model, tok, rows, log)
    with pytest.raises(runner.NotTheEvaluatedModel, match="is not the model"):
        runner.check_same_model(p, "full", model, tok, rows, {"avg_gt_loss": {}})


def test_a_reused_subject_model_evaluation_keeps_its_versions_and_checks_the_model(fake_study, tok, monkeypatch):
    """Re-recording a subject model from its cached logs keeps the versions and the machine's
    precision that computed them (not this machine's), and checks the model against them first."""
    p = presets.get_preset("smoke")
    rows = [str(i) for i in range(3)]
    log = {"avg_gt_loss": {i: 1.0 + int(i) for i in rows}, "avg_paraphrased_loss": {i: 1.2 for i in rows},
           "average_perturb_loss": {i: [2.0, 2.1 + int(i)] for i in rows}, "rougeL_recall": {i: 0.5 for i in rows},
           "rouge1_recall": {i: 0.5 for i in rows}, "generated_text": {i: ["q", "a", "a"] for i in rows}}
    monkeypatch.setattr(evaluate, "evaluate_model", lambda *a, **k: {s: log for s in paths.LOG_FILES} | {"_seconds": 0.1})
    model = tiny_model("llama", vocab_size=len(tok), seed=1)
    first = runner.evaluate_subject_model("smoke", "retain", model, tok, progress=False)
    assert first["subject_model"] == runner.evaluated_model_id(p, "retain")
    elsewhere = {"methods_and_evaluation": "float32", "machine": {"device": "cpu", "cpu_capability": "AVX2-only CPU"}}
    store.save_record("smoke", "retain", {**first, "versions": {"transformers": "5.0.0"}, "precision": elsewhere,
                                          "model_path": "artifacts/smoke/retain-0"})   # a field older records had
    checked = []
    monkeypatch.setattr(models, "study_data", lambda p, data_dir=None: types.SimpleNamespace(eval_sets={"forget": []}))
    monkeypatch.setattr(runner, "check_same_model", lambda *a, **k: checked.append(a[1]))
    monkeypatch.setattr(evaluate, "evaluate_model", lambda *a, **k: pytest.fail("re-evaluated cached logs"))
    before = paths.record_path("smoke", "retain").read_bytes()
    again = runner.evaluate_subject_model("smoke", "retain", model, tok, progress=False)
    assert again["versions"] == {"transformers": "5.0.0"} and checked == ["retain"]
    assert again["precision"] == elsewhere
    assert paths.record_path("smoke", "retain").read_bytes() == before     # the same evaluation: record kept as it is


# --------------------------------------------------------------------------- re-making a lost unlearned model
QA_ROWS = [{"question": "Who wrote the Blue Book?", "answer": "Ana Lopez wrote it."},
           {"question": "What is the capital of France?", "answer": "Paris."}]


@pytest.fixture()
def ga_run(scratch, tok, monkeypatch):
    """A real gradient-ascent run through recipes.run on a tiny Llama (the subject model), its
    'evaluation' the real answer losses of the forget rows: the record a clone would have."""
    from unedit_lib.eval import evaluate

    monkeypatch.setattr(models, "study_data", lambda p, data_dir=None: types.SimpleNamespace(
        eval_sets={"forget": QA_ROWS}, forget_rows=QA_ROWS, retain_rows=QA_ROWS))
    monkeypatch.setattr(models, "load_subject_model",
                        lambda p, which, data_dir=None: (tiny_model("llama", vocab_size=len(tok), seed=1), tok))

    def forget_losses(model, tok, eval_sets, template, **k):
        pairs = [(r["question"], r["answer"]) for r in eval_sets["forget"]]
        log = {"avg_gt_loss": {str(i): x for i, x in enumerate(evaluate.answer_losses(model, tok, template, pairs))}}
        return {s: log for s in paths.LOG_FILES} | {"_seconds": 0.1}

    monkeypatch.setattr(evaluate, "evaluate_model", forget_losses)
    summary = {"metrics": {}, "model_utility": 0.5, "forget_quality": 0.1, "ks_statistic": 0.2, "n_items": {}}
    monkeypatch.setattr(runner, "summarize_against_retain", lambda p, run, logs: summary)
    monkeypatch.setattr(runner, "cached_retain_logs", lambda p, retain_run="retain": {})
    return recipes.run("smoke", "ga")


def _weights(folder):
    return {k: v.clone() for k, v in models.load_model(folder)[0].state_dict().items()}


def test_a_lost_unlearned_model_is_remade_from_its_record_and_checked(ga_run, tok):
    """A clone has a run's record and logs but not its model: rebuild_unlearned applies the
    method again with the recorded settings and keeps the model only if it gives the record's
    answer losses; a record it cannot match is an error that says what to do, and saves nothing."""
    import shutil

    folder = runner.unlearned_path("smoke", "ga")
    made = _weights(folder)
    shutil.rmtree(folder)
    with pytest.raises(FileNotFoundError, match="no saved unlearned model"):
        recipes.load_unlearned("smoke", "ga")
    recipes.rebuild_unlearned("smoke", "ga")
    remade = _weights(folder)
    assert all(torch.allclose(made[k], remade[k], atol=1e-6) for k in made)
    full = tiny_model("llama", vocab_size=len(tok), seed=1).state_dict()
    assert any(not torch.allclose(full[k], remade[k]) for k in full), "gradient ascent changed nothing"

    logs_dir = paths.logs_dir("smoke", "ga")
    logs = store.cached_logs("smoke", "ga")
    off = {s: {"avg_gt_loss": {k: v * 1.01 for k, v in logs["forget"]["avg_gt_loss"].items()}} for s in paths.LOG_FILES}
    store.save_eval_logs(off, logs_dir)               # the record of another model
    shutil.rmtree(folder)
    with pytest.raises(runner.NotTheEvaluatedModel, match="force=True"):
        recipes.rebuild_unlearned("smoke", "ga")
    assert not folder.exists()

    rec = store.load_record("smoke", "ga")
    store.save_record("smoke", "ga", {**rec, "hp_key": "0" * 16})     # settings this code no longer makes
    with pytest.raises(recipes.CannotRebuild, match="hp_key"):
        recipes.rebuild_unlearned("smoke", "ga")
    with pytest.raises(FileNotFoundError, match="run its notebook"):
        recipes.rebuild_unlearned("smoke", "gd")


def test_attacks_remake_a_missing_model_only_when_asked_and_keep_other_runs(ga_run, monkeypatch, capsys):
    """attack_runs names a run whose model is missing (and keeps saying so when later asked for
    other runs), re-makes it with rebuild=True (also over an incomplete folder), and keeps the
    cached attacks of runs it was not asked for while their records are unchanged, in the study's
    order."""
    import shutil

    from unedit_lib.study import robustness

    attacked = []

    def attack_all(model, tok, sd, **kw):
        attacked.append(model)
        return {"timings": {"total_s": 0.0}, "hparams": store.to_jsonable(recipes.attack_settings("smoke"))}

    monkeypatch.setattr(robustness, "attack_all", attack_all)
    monkeypatch.setattr(robustness, "holdout_for", lambda sd, data_dir=None, hparams=None: [])
    shutil.rmtree(runner.unlearned_path("smoke", "ga"))
    out = recipes.attack_runs("smoke", ["ga"])
    assert "ga" not in out and "no saved unlearned model" in out["_skipped"]["ga"] and not attacked
    assert "NOT attacked: ga" in capsys.readouterr().out
    assert recipes.attack_runs("smoke", []) == {}                 # another call, for other runs ...
    assert "no saved unlearned model" in robustness.load_summary("smoke")["_skipped"]["ga"]   # ... keeps the note
    left = runner.unlearned_path("smoke", "ga")
    left.mkdir(parents=True)
    (left / "model.safetensors").write_bytes(b"cut short")      # a copy interrupted: no unlearned.json
    out = recipes.attack_runs("smoke", ["ga"], rebuild=True)
    assert "ga" in out and "_skipped" not in out and len(attacked) == 1
    assert "_skipped" not in robustness.load_summary("smoke")    # attacked now: the note is gone
    assert recipes.attack_runs("smoke", []) == {}                 # asked for nothing ...
    assert "ga" in robustness.load_summary("smoke")             # ... the file keeps ga's attacks
    recipes.attack_runs("smoke", ["ga"])
    assert len(attacked) == 1                                      # reused: its record is unchanged
    store.save_record("smoke", "ga", {**store.load_record("smoke", "ga"), "note": "re-run"})
    recipes.attack_runs("smoke", ["ga"])
    assert len(attacked) == 2                                      # a changed record is attacked again
    recipes.attack_runs("smoke", ["full"])
    assert list(robustness.load_summary("smoke")) == ["full", "ga"]   # the study's order, not the order attacked
    paths.record_path("smoke", "ga").unlink()
    recipes.attack_runs("smoke", [])
    assert "ga" not in robustness.load_summary("smoke")         # a deleted run's attacks go with it


def test_a_remake_that_collapses_is_named_not_saved(ga_run, monkeypatch):
    """A run that did not collapse but whose re-make does (another CPU's rounding over a fragile
    edit) cannot be the recorded model: an error saying what to do, and no model saved."""
    import shutil

    build = recipes._build

    def collapsing(*a, **k):
        apply, extra, hp = build(*a, **k)

        def apply_and_collapse(model, tok, stats):
            raise ModelCollapsed(3, "non-finite loss")
        return apply_and_collapse, extra, hp

    monkeypatch.setattr(recipes, "_build", collapsing)
    folder = runner.unlearned_path("smoke", "ga")
    shutil.rmtree(folder)
    with pytest.raises(recipes.CannotRebuild, match="collapsed .*force=True"):
        recipes.rebuild_unlearned("smoke", "ga")
    assert not folder.exists()


def test_attacks_of_other_runs_survive_a_forced_subset_and_a_second_process(ga_run, monkeypatch):
    """notebook 08 with force and a subset re-attacks that subset only; two notebook-08 processes
    attacking different runs at once both keep their attacks (robustness.json is updated per run
    under a lock)."""
    import multiprocessing
    import time

    from unedit_lib.study import robustness

    def attack_all(model, tok, sd, **kw):
        time.sleep(0.3)                  # long enough for the two processes' updates to interleave
        return {"timings": {"total_s": 0.0}, "hparams": store.to_jsonable(recipes.attack_settings("smoke")),
                "pid": __import__("os").getpid(), "when": time.time()}

    monkeypatch.setattr(robustness, "attack_all", attack_all)
    monkeypatch.setattr(robustness, "holdout_for", lambda sd, data_dir=None, hparams=None: [])
    store.save_record("smoke", "full", {"run": "full", "method": "subject model", "metrics": {}})
    first = recipes.attack_runs("smoke", ["full", "ga"])
    out = recipes.attack_runs("smoke", ["ga"], force=True)
    saved = robustness.load_summary("smoke")
    assert set(saved) == {"full", "ga"} and saved["full"] == first["full"]       # full kept as it was
    assert out["ga"]["when"] > first["ga"]["when"]                               # ga attacked again

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=recipes.attack_runs, args=("smoke", [run]), kwargs={"force": True})
             for run in ("full", "ga")]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0]
    saved = robustness.load_summary("smoke")
    assert {saved["full"]["pid"], saved["ga"]["pid"]} == {proc.pid for proc in procs}


def test_a_subject_model_trained_on_other_data_is_not_reused(scratch, tmp_path, monkeypatch):
    """The subject model's training log names the rows it was trained on: loading or reusing it
    for a data folder with other rows is an error that says what to do, not the old model."""
    p = presets.get_preset("smoke")
    folder = models.subject_model_path(p, "full")
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"")
    store.write_json({"data_fingerprint": models.data_fingerprint(p)}, folder / "training_log.json")
    models.check_trained_on(folder, p)                               # the same rows: fine
    assert models.train_subject_model(p, "full") == folder           # reused, not retrained
    store.write_json({"data_fingerprint": "0" * 16}, folder / "training_log.json")
    with pytest.raises(models.DataClash, match="trained on other TOFU rows.*force=True"):
        models.train_subject_model(p, "full")
    with pytest.raises(models.DataClash, match="UNEDIT_ARTIFACTS_DIR"):
        models.load_subject_model(p, "full")


def test_a_forced_ablation_does_not_recompute_the_studys_own_ablations(monkeypatch, capsys):
    """notebook 03 / 05 with a user's setting and force: the user's variant is run (and forced), the
    study's own ablation runs (whose settings the override may not change) are not run at all."""
    calls = []

    def fake_run(preset, method, target, *, seed=0, force=False, data_dir=None, **kw):
        calls.append((recipes.plan(preset, method, target, seed, **kw)[0], force))
        return {"run": calls[-1][0], "method": method, "model_utility": 0.5, "forget_quality": 0.1, "collapsed": False,
                "metrics": {"forget": {"rouge": 0.5}}, "edit_metrics": {"rewrite_acc_mean": 1.0}}

    monkeypatch.setattr(recipes, "run", fake_run)
    recipes.rome_reproduction("smoke", ["dummy"], force=True, probe_edits=None, v_lr=0.3, n_edits=None)
    assert calls == [("rome-dummy+v_lr=0.3", True)]
    assert "ROME ablations are not run" in capsys.readouterr().out
    calls.clear()
    recipes.rome_reproduction("smoke", ["dummy"], force=True, probe_edits=None, v_lr=None)   # no override
    assert calls[0] == ("rome-dummy", True) and any("+" in name for name, _ in calls[1:])
    calls.clear()
    assert recipes.wise_ablation_runs("smoke", "dummy", force=True, act_margin_scale=3.0) == {} and not calls


def _three_edits(done_by: list, kill_after=None):
    """A resumable apply of 3 edits that saves after each (appending where it started to `done_by`) and
    dies after edit `kill_after`."""
    def apply(model, tok, stats, checkpoint):
        saved = checkpoint.load()
        start = saved["done"] if saved else 0
        stats.update(saved["stats"] if saved else {"edited": []})
        done_by.append(start)
        for i in range(start, 3):
            stats["edited"].append(i)
            checkpoint.save(i + 1, {"w": torch.full((2,), float(i))}, stats)
            if i + 1 == kill_after:
                raise KeyboardInterrupt
        return model
    return apply


def test_a_killed_resumable_run_continues_after_its_last_edit_and_says_so(fake_study):
    """runner.run_unlearning(resumable=True): the checkpoint a killed process left is the rerun's start,
    under this run's settings only; the record lists the segments and counts their seconds; the
    committed run leaves no checkpoint behind."""
    done_by = []
    edits = functools.partial(_three_edits, done_by)

    ckpt = paths.checkpoint_path("smoke", "gd")
    with pytest.raises(KeyboardInterrupt):
        fake_study({"lr": 1e-3}, apply=edits(kill_after=2), resumable=True)
    assert ckpt.is_file() and store.load_record("smoke", "gd") is None
    rec = fake_study({"lr": 1e-3}, apply=edits(), resumable=True)
    assert done_by == [0, 2] and rec["stats"]["edited"] == [0, 1, 2]
    assert [(s["from_edit"], s["to_edit"]) for s in rec["stats"]["segments"]] == [(0, 2), (2, 3)]
    assert rec["timings"]["unlearn_s"] >= sum(s["seconds"] for s in rec["stats"]["segments"][:1])
    assert not ckpt.exists()
    with pytest.raises(KeyboardInterrupt):        # a checkpoint of other settings is not this run's start
        fake_study({"lr": 5e-3}, apply=edits(kill_after=1), resumable=True)
    rec = fake_study({"lr": 2e-3}, apply=edits(), resumable=True, force=True)
    assert done_by[-1] == 0 and "segments" not in rec["stats"] and not ckpt.exists()


def test_a_parked_run_continues_on_a_fresh_clone(fake_study, capsys):
    """checkpoints.park copies a killed run's checkpoint into results/<preset>/in_progress/ (committed):
    with artifacts/ gone, as on the next session's fresh clone, the rerun continues after its last
    edit from that copy; each segment names the subject model it ran on; the commit removes the copy."""
    from unedit_lib.core import checkpoints

    edits = functools.partial(_three_edits, [])

    with pytest.raises(KeyboardInterrupt):
        fake_study({"lr": 1e-3}, apply=edits(kill_after=2), resumable=True)
    assert checkpoints.park("smoke", max_mb=1e-6) == []            # over the size limit: not parked
    assert "not parked" in capsys.readouterr().out
    parked = paths.parked_checkpoint_path("smoke", "gd")
    assert checkpoints.park("smoke") == [parked] and parked.is_file()
    assert checkpoints.park("smoke") == []                          # as far on already: left as it is
    assert [(r["run"], r["done"], r["unit"]) for r in checkpoints.parked_runs("smoke")] == [("gd", 2, "edit")]
    shutil.rmtree(paths.artifacts_dir("smoke"))                     # the next session's fresh clone
    rec = fake_study({"lr": 1e-3}, apply=edits(), resumable=True)
    assert "resuming after edit 2 (parked in " in capsys.readouterr().out
    assert rec["stats"]["edited"] == [0, 1, 2]
    assert [(s["from_edit"], s["to_edit"]) for s in rec["stats"]["segments"]] == [(0, 2), (2, 3)]
    assert all(len(s["subject_digest"]) == 16 for s in rec["stats"]["segments"])
    assert not parked.exists() and not paths.checkpoint_path("smoke", "gd").exists()
    assert checkpoints.parked_runs("smoke") == []


def test_a_killed_evaluation_continues_with_the_sets_it_had_not_finished(fake_study, monkeypatch, tok):
    """Every run's evaluation keeps each finished set (checkpoints.EvalCheckpoint): a rerun of the same
    run on the same model evaluates only the sets left, and what the evaluation wrote into the record's
    stats for the finished sets (WISE's routes) is kept; another model is evaluated afresh."""
    evaluated, kill = [], {"after": 2}

    def evaluate_model(model, tok, sets, template, finished=None, on_set=None, watch=None, **kw):
        logs = {}
        for name in paths.LOG_FILES:
            if name in (finished or {}):
                logs[name] = finished[name]
                continue
            with watch(name, "loss"):
                evaluated.append(name)
            logs[name] = {"avg_gt_loss": {"0": float(len(evaluated))}}
            on_set(name, logs[name])
            if len(evaluated) == kill["after"]:
                raise KeyboardInterrupt
        return logs | {"_seconds": 0.5}

    @contextlib.contextmanager
    def seen(stats, name, kind):
        yield
        stats.setdefault("eval_routing", {})[name] = kind

    monkeypatch.setattr(evaluate, "evaluate_model", evaluate_model)
    watch_eval = lambda model, stats: functools.partial(seen, stats)    # noqa: E731
    folder = paths.eval_checkpoint_dir("smoke", "gd")
    with pytest.raises(KeyboardInterrupt):
        fake_study({"lr": 1e-3}, watch_eval=watch_eval)
    assert sorted(f.name for f in folder.glob("*.json")) == ["checkpoint.json", "forget.json", "retain.json"]
    kill["after"] = None
    rec = fake_study({"lr": 1e-3}, watch_eval=watch_eval)
    assert evaluated == list(paths.LOG_FILES)                     # each set once, over the two processes
    assert rec["stats"]["eval_routing"] == dict.fromkeys(paths.LOG_FILES, "loss")
    first = next(iter(paths.LOG_FILES))
    assert store.cached_logs("smoke", "gd")[first]["avg_gt_loss"] == {"0": 1.0}       # the killed process's set
    assert rec["timings"]["eval_s"] >= 0.5 and not folder.exists()

    evaluated.clear()
    kill["after"] = 1
    with pytest.raises(KeyboardInterrupt):
        fake_study({"lr": 2e-3}, watch_eval=watch_eval, force=True)
    kill["after"] = None          # a model of other weights (another CPU's re-made one) is evaluated afresh
    monkeypatch.setattr(models, "load_subject_model", lambda p, which, data_dir=None: (tiny_model("llama", vocab_size=len(tok), seed=2), tok))
    fake_study({"lr": 2e-3}, watch_eval=watch_eval, force=True)
    assert evaluated == [first] + list(paths.LOG_FILES)
