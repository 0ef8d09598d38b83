"""Preset files (presets/*.toml, presets.py): the committed presets' cache keys are pinned, a malformed
file is an error naming the file and the field, and a preset file for a local Hugging Face model folder
runs the subject-model notebooks."""
import json
import sys
from pathlib import Path

import pytest

from unedit_lib.core import data, paths, presets, registry
from unedit_lib.methods.wise import editor as wise
from unedit_lib.report import gates
from unedit_lib.study import recipes, runner, settings as study_settings
from unedit_lib.subject import models

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("smoke", "tiny", "smollm2-forget01", "smollm2-forget05", "smollm2-forget05-ft1", "paper")


@pytest.fixture(autouse=True)
def _forget_given_files():
    """Preset files a test gives by path are named in the process afterwards: not in the next test."""
    yield
    presets._given.clear()

# The committed presets' cache keys: a preset file (or loader) change that moves one leaves that preset's
# models or runs behind. The subject models' folder hashes (full, retain) in each training precision
# ("auto" resolves per machine; smollm2-forget01 pins float32): artifacts/smollm2-forget01/full-157d6204d5 and
# retain-ad5935bdee, tiny's bf16 full-b1e378f178 (results/tiny/full.json's model_path) among them ...
CONFIG_HASHES = {
    "smoke": {"float32": ("ca65ceba25", "91dae633d5"), "bfloat16": ("42fdfe6a2a", "bbf89811ce")},
    "tiny": {"float32": ("6f16a6fc15", "b2ee686f41"), "bfloat16": ("b1e378f178", "d49c0dc81a")},
    "smollm2-forget01": {"float32": ("157d6204d5", "ad5935bdee"), "bfloat16": ("157d6204d5", "ad5935bdee")},
    "smollm2-forget05": {"float32": ("f2570e88f4", "beeed622e0"), "bfloat16": ("f2570e88f4", "beeed622e0")},
    "smollm2-forget05-ft1": {"float32": ("590f8383dd", "cc90b2b7b5"), "bfloat16": ("590f8383dd", "cc90b2b7b5")},
    "paper": {"float32": ("8970f455d7", "e6e59cf1bf"), "bfloat16": ("c2ed282ed2", "7434557da5")},
}
# ... and runner.hp_key of recipes.settings(preset, method), every setting of a run before its inputs
# resolve anything (ROME's layer, WISE's scaled frequencies)
SETTINGS_KEYS = {
    "smoke": {"rome": "dae503c089a31c30", "rrome": "9fa83946375b3f42", "ike": "6eda03cb2554168f", "wise": "7d40e0b09c990ba6",
              "ga": "4a88ff7596efa620", "gd": "4a88ff7596efa620", "kl": "4a88ff7596efa620", "idk": "4a88ff7596efa620",
              "npo": "4a88ff7596efa620"},
    "tiny": {"rome": "7eec464d7afa8ceb", "rrome": "5a4164cc2cd50c44", "ike": "6eda03cb2554168f", "wise": "0a31fccba63adfc2",
             "ga": "a43080d2a3b9e0af", "gd": "a43080d2a3b9e0af", "kl": "a43080d2a3b9e0af", "idk": "a43080d2a3b9e0af",
             "npo": "a43080d2a3b9e0af"},
    "smollm2-forget01": {"rome": "7eec464d7afa8ceb", "rrome": "5a4164cc2cd50c44", "ike": "6eda03cb2554168f",
                "wise": "0a31fccba63adfc2", "ga": "7e5edac10e3f9dc3", "gd": "7e5edac10e3f9dc3", "kl": "7e5edac10e3f9dc3",
                "idk": "7e5edac10e3f9dc3", "npo": "7e5edac10e3f9dc3"},
    "smollm2-forget05": {"rome": "eaba2a75a8f52fc4", "rrome": "e2f7fbdd3d966f7f", "ike": "0f398ab752af26c7",
                         "wise": "23ee7bd770a08cfa", "ga": "7e5edac10e3f9dc3", "gd": "7e5edac10e3f9dc3",
                         "kl": "7e5edac10e3f9dc3", "idk": "7e5edac10e3f9dc3", "npo": "7e5edac10e3f9dc3"},
    "smollm2-forget05-ft1": {"rome": "eaba2a75a8f52fc4", "rrome": "e2f7fbdd3d966f7f", "ike": "0f398ab752af26c7",
                             "wise": "23ee7bd770a08cfa", "ga": "7e5edac10e3f9dc3", "gd": "7e5edac10e3f9dc3",
                             "kl": "7e5edac10e3f9dc3", "idk": "7e5edac10e3f9dc3", "npo": "7e5edac10e3f9dc3"},
    "paper": {"rome": "7eec464d7afa8ceb", "rrome": "5a4164cc2cd50c44", "ike": "6eda03cb2554168f", "wise": "8e78e12a99515e50",
              "ga": "715cd2a906b36ba7", "gd": "715cd2a906b36ba7", "kl": "715cd2a906b36ba7", "idk": "715cd2a906b36ba7",
              "npo": "715cd2a906b36ba7"},
}


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_no_subject_model_folder_moves(precision, monkeypatch):
    monkeypatch.setenv("UNEDIT_PRECISION", precision)
    got = {n: (presets.get_preset(n).config_hash("full"), presets.get_preset(n).config_hash("retain")) for n in PRESETS}
    assert got == {n: CONFIG_HASHES[n][precision] for n in PRESETS}


def test_the_forget01_study_was_called_smollm2_and_reuses_the_records_made_under_that_name(tmp_path):
    """smollm2-forget01 was called smollm2 (renamed_from): its models keep their folders (CONFIG_HASHES), the
    old name says the new one, and its committed records, whose `preset` field still says "smollm2" (their
    files are as they were made), are reused by the runner's cache, read as this preset's by gates and
    findings, and keep notebook 08's attacks (keyed by each record file's hash)."""
    from unedit_lib.core import store
    from unedit_lib.report import findings
    from unedit_lib.study import robustness

    with pytest.raises(ValueError, match="'smollm2' is now called 'smollm2-forget01'"):
        presets.get_preset("smollm2")
    (tmp_path / "mine.toml").write_text('extends = "smollm2"\n')
    with pytest.raises(presets.PresetFileError, match="extends: preset 'smollm2' is now called 'smollm2-forget01'"):
        presets.get_preset(str(tmp_path / "mine.toml"))
    p = presets.get_preset("smollm2-forget01")
    assert p.renamed_from == "smollm2" and presets.current_name("smollm2") == p.name
    records = store.load_results(p.name, include_ablations=True)
    assert {rec["preset"] for rec in records.values()} == {"smollm2"}
    data = runner.data_record(p)
    for run in ("ga", "npo", "ike-dummy"):
        rec = records[run]
        name, hp, changed = recipes.plan(p, registry.from_label(rec["method"]).name, rec["target"], rec["seed"])
        got, why = runner.cached(p, run, hp, changed, data)
        assert name == run and got == rec, f"{run}: {why}"
    full, ret, base = records["full"], records["retain"], records["base"]
    assert gates.subject_model_targets(full, ret, base) == gates.subject_model_targets({**full, "preset": p.name}, ret, base)
    study = store.load_results(p.name)
    assert findings.study_findings(study, [0]) == findings.study_findings(study, [0], preset=p.name)
    attacks = {r: v for r, v in robustness.load_summary(p.name).items() if not r.startswith("_")}
    assert attacks and all(v["source"] == store.record_hash(p.name, r) for r, v in attacks.items())


def test_no_run_settings_move():
    got = {n: {m: runner.hp_key(recipes.settings(n, m)) for m in SETTINGS_KEYS[n]} for n in PRESETS}
    assert got == SETTINGS_KEYS


@pytest.mark.parametrize("preset", ["smollm2-forget01", "tiny"])
def test_the_committed_records_are_this_codes_runs(preset):
    """Every committed ROME, IKE, WISE and baseline record is the run recipes.plan names with the settings
    it resolves now (ROME's layer from notebook 02's rome_layer.json, WISE's frequencies scaled to the
    forget set): the same run name and hp_key, so the study reuses them."""
    layer = json.loads(paths.edit_layer_path(preset).read_text())["layer"]
    n_forget = len(models.study_data(preset).forget_rows)
    seen = set()
    for f in sorted((ROOT / "results" / preset).glob("*.json")):
        rec = json.loads(f.read_text())
        if rec.get("method") in (None, "subject model"):
            continue
        method = registry.from_label(rec["method"]).name
        name, hp, _ = recipes.plan(preset, method, rec["target"], rec["seed"], **(rec.get("ablation") or {}))
        if method in ("rome", "rrome"):
            hp = {**hp, "layer": layer}
        if method == "wise" and hp["scale_freqs"]:
            n = min(n_forget, hp["max_edits"] or n_forget)
            hp = {**hp, **wise.scaled_freqs(n, hp["reference_edits"], hp["save_freq"], hp["merge_freq"])}
        assert (name, runner.hp_key(hp)) == (rec["run"], rec["hp_key"]), f.name
        seen.add(rec["method"])
    assert {"ROME", "IKE", "WISE", "ga", "gd", "kl", "idk", "npo"} <= seen


def test_the_per_preset_study_choices_read_from_the_files():
    sm, f05, tiny = (presets.get_preset(n) for n in ("smollm2-forget01", "smollm2-forget05", "tiny"))
    assert (sm.trace_facts, tiny.trace_facts, presets.get_preset("paper").trace_facts) == (4, 15, None)
    assert sm.rome_ablation_targets == ("dummy",) and tiny.rome_ablation_targets is None
    assert study_settings.runs_ablations(sm) and not study_settings.runs_ablations(f05)
    assert recipes.attack_settings(f05)["forget_every"] == 5 and "forget_every" not in recipes.attack_settings(sm)
    assert recipes.settings(f05, "ike")["pool_fraction"] == 0.8 and recipes.settings(f05, "wise")["edit_template"] == "raw"
    full = {"preset": f05.name, "metrics": {"forget": {"rouge": 1.0}}, "model_utility": 0.5, "forget_quality": 1e-3}
    ret = {"preset": f05.name, "metrics": {"forget": {"rouge": 0.1}}, "model_utility": 0.5, "forget_quality": 1.0}
    fq = lambda rec: next(r for r in gates.subject_model_targets(rec, ret) if "quality" in r["target"])  # noqa: E731
    assert fq(full)["limit"] == "<= 0.0001" and fq({**full, "preset": "smollm2-forget01"})["limit"] == "<= 0.01"
    # the forget05 study inherits smollm2-forget01's recipe (another split) and baselines' lr, not its measured times
    differ = {k for k, v in f05.recipe().items() if sm.recipe()[k] != v}
    assert differ == {"name", "forget_split"} and recipes.settings(f05, "ga")["lr"] == 1e-4
    assert f05.first_run_s is None and not f05.subject_model_s and not f05.budgets and sm.subject_model_s["full"] == 480
    assert not set(sm.recipe()) & set(presets.STUDY_FIELDS)


def test_the_tables_a_file_may_name_are_the_librarys():
    assert presets.settings_tables() == sorted(study_settings.STUDY_SETTINGS)
    assert presets.settings_table("rrome") == "rome" and presets.settings_table("npo") == "baselines"
    assert set(presets.FORGET_SPLITS) == {c for c in data.CONFIGS if c.startswith("forget") and c[6:].isdigit()}
    assert presets.names() == sorted(PRESETS)


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, where, why", [
    ("[training]\nlr = 'fast'\n", "[training] lr", "expected a number, got 'fast'"),
    ("[training]\npack = 1\n", "[training] pack", "expected true or false, got 1"),
    ("[training]\nforget_split = 'forget01'\n", "[training] forget_split", "belongs in [data]"),
    ("[data]\nforget_split = 'forget02'\n", "[data] forget_split", "'forget02' is not one of"),
    ("[data]\nn_forget_authors = 'some'\n", "[data] n_forget_authors", 'expected an integer or "all"'),
    ("[data]\nicl_facts_per_seq = [1]\n", "[data] icl_facts_per_seq", "expected two integers"),
    ("[model]\ntemplate = 'llama3'\n", "[model] template", "'llama3' is not one of"),
    ("[model]\nbase_model = 'x'\nhub_full = 'a/b'\nhub_retain = 'a/c'\n", "[model]", "give one source"),
    ("[model]\nhub_full = 'a/b'\n", "[model] hub_full", "both hub_full and hub_retain"),
    ("[model]\nfolder = 'nowhere'\n", "[model] folder", "holds no config.json"),
    ("[modle]\n", "modle", "not a field of a preset file"),
    ("[settings.romee]\nv_lr = 1\n", "settings.romee", "[settings.<one of"),
    ("[runner]\nfirst_run = 3\n", "[runner] first_run", "expected one of"),
    ("extends = 'nothing'\n", "extends", "no preset 'nothing'"),
    ("[training\nlr = 1\n", "TOML syntax", "Expected ']'"),
])
def test_a_malformed_file_names_the_file_and_the_field(tmp_path, text, where, why):
    path = _write(tmp_path, "mine", text)
    with pytest.raises(presets.PresetFileError) as e:
        presets.get_preset(str(path))
    assert f"preset file {paths.display_path(path)}: {where}: " in str(e.value) and why in str(e.value)


def test_unknown_names_list_the_valid_ones_and_a_renamed_preset_says_its_name():
    with pytest.raises(ValueError, match=r"unknown preset 'smok'; valid: \['paper', 'smoke', 'smollm2-forget01'"):
        presets.get_preset("smok")
    with pytest.raises(ValueError, match="now called 'tiny'"):
        presets.get_preset("default")


def test_a_record_naming_a_renamed_preset_by_its_former_name_reads_the_preset(tmp_path, monkeypatch):
    """A renamed preset's records keep its former name in their `preset` field (their files stay as they
    were made); what reads that field reads the preset by its name now (presets.current_name)."""
    (tmp_path / "fq-strict.toml").write_text('renamed_from = "fq-old"\nextends = "smoke"\n'
                                             '[subject_targets]\nmax_forget_quality = 1e-6\n')
    monkeypatch.setenv(presets.ENV, str(tmp_path))
    assert presets.current_name("fq-old") == "fq-strict"
    assert [presets.current_name(n) for n in ("smoke", "no-such-preset", None)] == ["smoke", "no-such-preset", None]
    with pytest.raises(ValueError, match="'fq-old' is now called 'fq-strict'"):
        presets.get_preset("fq-old")
    (tmp_path / "mine.toml").write_text('extends = "fq-old"\n')
    with pytest.raises(presets.PresetFileError, match="extends: preset 'fq-old' is now called 'fq-strict': extend"):
        presets.get_preset(str(tmp_path / "mine.toml"))
    full = {"preset": "fq-old", "metrics": {"forget": {"rouge": 1.0}}, "model_utility": 0.5, "forget_quality": 1e-5}
    ret = {**full, "metrics": {"forget": {"rouge": 0.1}}, "forget_quality": 1.0}
    fq = next(r for r in gates.subject_model_targets(full, ret) if "quality" in r["target"])
    assert fq["limit"] == "<= 1e-06" and not fq["holds"]        # fq-strict's own target, read by its former name


def test_a_file_extends_another_and_is_named_by_its_file(tmp_path, monkeypatch):
    path = _write(tmp_path, "smoke-forget05", 'extends = "smoke"\n[data]\nforget_split = "forget05"\n'
                                              '[settings.baselines]\nepochs = 2\n')
    p = presets.get_preset(str(path))
    smoke = presets.get_preset("smoke")
    assert p.name == "smoke-forget05" and p.forget_split == "forget05" and p.hidden_size == smoke.hidden_size
    assert recipes.settings(p, "ga")["epochs"] == 2 and recipes.settings(p, "ga")["lr"] == 1e-3
    assert p.config_hash("retain") != smoke.config_hash("retain")      # its name is in the hash
    assert presets.get_preset("smoke-forget05") is p                    # given by path: now named too
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv(presets.ENV, str(other))                        # a folder of presets, by name
    _write(other, "mine", 'extends = "../smoke-forget05.toml"\n[evaluation]\nmax_new_tokens = 8\n')
    assert presets.get_preset("mine").forget_split == "forget05" and presets.get_preset("mine").max_new_tokens == 8
    _write(other, "smoke", 'extends = "tiny"\n')
    with pytest.raises(ValueError, match="two preset files are named 'smoke'"):
        presets.get_preset("mine")


def test_unknown_settings_attack_settings_and_targets_name_the_file(tmp_path):
    p = presets.get_preset(str(_write(tmp_path, "a", '[settings.rome]\nv_lrr = 0.5\n')))
    with pytest.raises(TypeError, match=r"a.toml: \[settings.rome\] sets \['v_lrr'\], not settings of rome"):
        recipes.settings(p, "rome")
    p = presets.get_preset(str(_write(tmp_path, "b", '[attack]\nforget_evry = 5\n')))
    with pytest.raises(TypeError, match=r"b.toml: \[attack\] sets \['forget_evry'\]"):
        recipes.attack_settings(p)
    presets.get_preset(str(_write(tmp_path, "c", '[subject_targets]\nmax_fq = 5\n')))
    with pytest.raises(ValueError, match=r"c.toml: \[subject_targets\] sets \['max_fq'\]"):
        gates.subject_model_targets({"preset": "c"}, {})


def test_a_wheel_base_models_sizes_are_checked_against_its_config(tmp_path, monkeypatch):
    monkeypatch.setenv("UNEDIT_ARTIFACTS_DIR", str(tmp_path))
    assert presets.get_preset(str(ROOT / "presets" / "smollm2-forget01.toml")).n_layers == 30    # no config yet: as stated
    folder = tmp_path / "pretrained" / "smollm2-135m-instruct"
    folder.mkdir(parents=True)
    config = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                  num_attention_heads=9, max_position_embeddings=8192)
    (folder / "config.json").write_text(json.dumps(config))
    presets._loaded.clear()
    assert presets.get_preset("smollm2-forget01").config_hash("full") == CONFIG_HASHES["smollm2-forget01"]["float32"][0]
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 24}))
    presets._loaded.clear()
    with pytest.raises(presets.PresetFileError, match=r"\[model\] n_layers: states 30, the model's .* says 24"):
        presets.get_preset("smollm2-forget01")
    presets._loaded.clear()


# --------------------------------------------------------------------------- your own model
def local_model(folder: Path, rows) -> Path:
    """A tiny randomly initialised Llama and a tokenizer trained on `rows`' text, saved as a Hugging
    Face model folder (what save_pretrained writes)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from unedit_lib.core.tokenizer import train_tokenizer

    tok = train_tokenizer([f"{r['question']} {r['answer']}" for r in rows], vocab_size=600)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


# the guide's example for a local folder ("Run the study on your own model"), at smoke's size
OWN_MODEL = """
[model]
folder = "my-llama"             # relative to this file
template = "qa"

[data]
forget_split = "forget01"
n_forget_authors = "all"
n_retain_authors = 2
n_general = 8
paraphrases = false
statements = false
icl_share = 0.0

[training]
epochs = 2
lr = 1e-3
batch_size = 4
seq_len = 256
schedule = "linear"
warmup_frac = 0.2
pack = false
train_general = false
precision = "float32"

[evaluation]
eval_max_rows = 8
max_new_tokens = 24

[study]
trace_facts = 2

[settings.baselines]
lr = 1e-3
"""


@pytest.mark.slow
def test_a_local_model_folder_runs_the_subject_model_notebooks(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    import run_notebooks

    for kind in paths.OUTPUT_KINDS:                     # everything the notebooks write goes here
        monkeypatch.setenv(f"UNEDIT_{kind.upper()}_DIR", str(tmp_path / kind))
    smoke = models.study_data("smoke")
    base = local_model(tmp_path / "mine" / "my-llama", smoke.retain_rows + smoke.forget_rows + smoke.general_rows)
    file = _write(tmp_path / "mine", "my-llama", OWN_MODEL)
    p = presets.get_preset(str(file))
    assert (p.name, p.base_model, p.local_base) == ("my-llama", str(base), base)
    assert (p.hidden_size, p.n_layers, p.n_heads, p.intermediate_size, p.max_positions) == (32, 2, 2, 64, 512)

    run_notebooks.run(["00", "01"], str(file), out_dir=tmp_path / "out")

    for nb in ("00_data.ipynb", "01_subject_models.ipynb"):
        cells = json.loads((tmp_path / "out" / nb).read_text())["cells"]
        assert not [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"], nb
    results = tmp_path / "results" / "my-llama"
    recs = {w: json.loads((results / f"{w}.json").read_text()) for w in ("full", "retain", "base")}
    for which in ("full", "retain"):
        folder = models.subject_model_path(p, which)
        assert folder.parent == tmp_path / "artifacts" / "my-llama" and (folder / "model.safetensors").is_file()
        assert recs[which]["subject_model"] == folder.name and recs[which]["preset"] == "my-llama"
        log = json.loads((folder / "training_log.json").read_text())
        assert log["base_model"] == str(base) and log["preset"] == json.loads(json.dumps(p.recipe()))
        assert log["n_units"]["qa"] == len(smoke.retain_rows) + (len(smoke.forget_rows) if which == "full" else 0)
    assert recs["base"]["subject_model"] == str(base)
    for rec in recs.values():
        assert rec["n_items"]["forget"] == 8 and 0 <= rec["model_utility"] <= 1
    assert "in_context_probe" in recs["full"]


def test_the_guides_preset_files_read(tmp_path):
    """docs/guide.md's example files ("Run the study on your own model") are valid preset files: the local
    folder's sizes come from its config.json, and the shortest file is smollm2-forget01's recipe on that folder."""
    import re

    text = (ROOT / "docs" / "guide.md").read_text().split("## Run the study on your own model")[1].split("\n## ")[0]
    examples = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert len(examples) == 3
    folder = tmp_path / "my-llama-folder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(dict(vocab_size=500, hidden_size=64, intermediate_size=128,
                                                        num_hidden_layers=4, num_attention_heads=4,
                                                        max_position_embeddings=256)))
    got = [presets.get_preset(str(_write(tmp_path, f"example{i}", t.replace('"/models/my-llama"', f'"{folder}"'))))
           for i, t in enumerate(examples)]
    short, full, hub = got
    assert (short.local_base, short.n_layers, short.vocab_size, short.template) == (folder, 4, 500, "chatml")
    sm = presets.get_preset("smollm2-forget01").recipe()
    assert {k for k, v in short.recipe().items() if sm[k] != v} == \
        {"name", "base_model", "vocab_size", "hidden_size", "intermediate_size", "n_layers", "n_heads", "max_positions"}
    assert {k: v for k, v in full.recipe().items() if k != "name"} == {k: v for k, v in short.recipe().items() if k != "name"}
    assert full.method_settings("baselines") == {"lr": 1e-4} and full.trace_facts == 4
    assert hub.hub_full == "you/tofu-full-model" and hub.base_model is None and hub.forget_split == "forget10"


def test_a_preset_repeats_the_runs_it_names_with_its_extra_seeds(monkeypatch):
    p = presets.get_preset("smollm2-forget05")
    assert p.extra_seeds == (1, 2) and "ga" in p.extra_seed_runs and not presets.get_preset("smollm2-forget05-ft1").extra_seeds
    assert p.study_seeds([0]) == [0, 1, 2] and p.seeds_of("ga", [0]) == [0, 1, 2] and p.seeds_of("rome-dummy", [0]) == [0]
    made = []
    monkeypatch.setattr(recipes, "run", lambda p, m, t, seed, **kw: made.append((seed, m, t)) or {"run": f"{m}-{seed}"})
    monkeypatch.setattr(recipes.tables, "describe_run", lambda rec: rec["run"])
    recipes.run_grid(p, ["ga", "npo"], seeds=[0])
    assert made == [(0, "ga", None), (0, "npo", None), (1, "ga", None), (1, "npo", None), (2, "ga", None), (2, "npo", None)]
    made.clear()
    recipes.run_grid(p, "wise", ["dummy", "incorrect"], seeds=[0])          # not named: seed 0 only
    assert made == [(0, "wise", "dummy"), (0, "wise", "incorrect")]
    made.clear()
    recipes.run_grid(p, "ga", seeds=[0], lr=3e-4)                             # an ablation is not repeated
    assert made == [(0, "ga", None)]


def test_extra_seed_runs_must_be_study_runs(tmp_path):
    f = tmp_path / "bad-seeds.toml"
    f.write_text('extends = "smoke"\n[study]\nextra_seeds = [1]\nextra_seed_runs = ["memit-dummy"]\n')
    with pytest.raises(presets.PresetFileError, match="'memit-dummy' is no study run"):
        presets.get_preset(str(f))
    f.write_text('extends = "smoke"\n[study]\nextra_seeds = [-1]\n')
    with pytest.raises(presets.PresetFileError, match="a list of seeds"):
        presets.get_preset(str(f))


def test_editor_targets_choose_the_editor_runs_of_a_study(tmp_path):
    """A preset that names fewer targets (a second subject-model pair) plans, and expects, only those
    editor runs; a name that is no target is an error naming the file."""
    from unedit_lib.core import data
    from unedit_lib.report import summary
    from unedit_lib.study import cost_plan, recipes

    ft1 = presets.get_preset("smollm2-forget05-ft1")
    assert data.editor_targets(ft1) == ("dummy",) and data.editor_targets(presets.get_preset("smoke")) == data.TARGETS
    assert ft1.config_hash("full") != presets.get_preset("smollm2-forget05").config_hash("full")   # its own models
    planned = [r[0] for r in cost_plan.study_runs(ft1, lambda m, t, **ov: recipes.plan(ft1, m, t, **ov)[0], {})]
    assert [r for r in planned if r.startswith(("rome", "ike", "wise"))] == ["rome-dummy", "ike-dummy", "wise-dummy"]
    assert summary.study_runs("smollm2-forget05-ft1") == ["rome-dummy", "ike-dummy", "wise-dummy", "ga", "gd", "kl",
                                                          "idk", "npo"]
    f = tmp_path / "bad-targets.toml"
    f.write_text('extends = "smoke"\n[study]\neditor_targets = ["dummy", "silly"]\n')
    with pytest.raises(data.TofuDataError, match=r"bad-targets.toml: \[study\] editor_targets names \['silly'\]"):
        data.editor_targets(presets.get_preset(str(f)))
