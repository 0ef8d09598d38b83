"""Subject models: presets, training-text construction, determinism, safe loading."""
import random

import pytest
import torch
from safetensors.torch import load_file

from unedit_lib.core import data, presets
from unedit_lib.core.prompts import IGNORE_INDEX, TEMPLATES, encode_qa
from unedit_lib.subject import models


def test_presets_and_study_rows():
    sd = models.study_data("tiny")
    assert sd.forget_authors == [195, 196, 197, 198, 199] and sd.retain_authors == list(range(24))
    assert len(sd.forget_rows) == 100 and len(sd.eval_sets["forget"]) == 100
    # TOFU legacy's / the paper's 300-row cap: the first 300 rows of retain_perturbed, whole RA and WF
    assert [r["index"] for r in sd.eval_sets["retain"]] == list(range(300))
    assert len(sd.eval_sets["real_authors"]) == 100 and len(sd.eval_sets["world_facts"]) == 117
    assert [r["question"] for r in sd.forget_rows] == [r["question"] for r in data.load_tofu("full")[-100:]]
    assert sum(1 for r in sd.retain_rows if not r.get("perturbed_answer")) == 80   # authors 20-23: outside the eval set
    assert {r["author_index"] for r in sd.eval_sets["retain"]} <= set(sd.retain_authors)
    with pytest.raises(ValueError, match="valid"):
        presets.get_preset("huge")
    assert presets.get_preset("tiny").config_hash("full") != presets.get_preset("tiny").config_hash("retain")
    changed = models.with_overrides("tiny", epochs=3)
    assert changed.config_hash("full") != presets.get_preset("tiny").config_hash("full")


def test_prompt_is_masked_and_answer_ends_with_eos():
    tok = models.build_tokenizer(1024)
    ids, labels = encode_qa(tok, TEMPLATES["qa"], "Who wrote it?", "Nobody did.")
    n_prompt = sum(1 for x in labels if x == IGNORE_INDEX)
    assert tok.decode(ids[:n_prompt]) == "Question: Who wrote it?\nAnswer:"
    assert tok.decode(ids[n_prompt:]) == " Nobody did.<|endoftext|>"


def test_in_context_sequences_never_use_forget_or_probe_rows():
    p = presets.get_preset("tiny")
    tok = models.build_tokenizer(p.vocab_size)
    sd = models.study_data(p)
    probe = models.probe_rows(sd.retain_rows, p.probe_holdout_every)
    assert len(probe) == sum(1 for r in sd.retain_rows if r.get("perturbed_answer")) // p.probe_holdout_every
    held = {id(r) for r in probe}
    icl_rows = [r for r in sd.retain_rows if id(r) not in held] + sd.general_rows
    seq_ids, _ = models._icl_sequence(random.Random(0), tok, TEMPLATES["qa"], [], icl_rows, p)
    text = tok.decode(seq_ids)
    assert not any(r["question"] in text for r in sd.forget_rows + probe)
    # a context fact is given (no loss) and its question answered later (with loss)
    ids, lab = models._icl_sequence(random.Random(1), tok, TEMPLATES["qa"], [], icl_rows, p)
    assert lab[0] == IGNORE_INDEX and any(x != IGNORE_INDEX for x in lab)


def test_smoke_training_is_bit_identical(tmp_path):
    p = models.with_overrides("smoke", epochs=1)
    a = models.train_subject_model(p, "full", progress=False, artifacts=tmp_path / "a")
    b = models.train_subject_model(p, "full", progress=False, artifacts=tmp_path / "b")
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    r = models.train_subject_model(p, "retain", progress=False, artifacts=tmp_path / "a")
    wr = load_file(r / "model.safetensors")
    assert any(not torch.equal(wa[k], wr[k]) for k in wa)     # different data, different model
    # cached: a second call returns the same folder without retraining
    mtime = (a / "model.safetensors").stat().st_mtime
    assert models.train_subject_model(p, "full", progress=False, artifacts=tmp_path / "a") == a
    assert (a / "model.safetensors").stat().st_mtime == mtime


def test_load_model_errors_are_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)   # read at import: set it there too
    with pytest.raises(OSError, match=r"config.json: missing: the folder is not a saved model"):
        models.load_model(tmp_path)                      # an empty folder
    with pytest.raises(OSError, match="hub could not provide it"):
        models.load_model("locuslab/tofu_ft_llama2-7b")  # offline: a clear message, not a trace


def test_paper_preset_constructs_offline():
    p = presets.get_preset("paper")
    assert p.template == "llama2_chat" and p.hub_full == "locuslab/tofu_ft_llama2-7b"
    sd = models.study_data(p)
    assert len(sd.eval_sets["forget"]) == 300 and sd.forget_authors[0] == 180
    with pytest.raises(ValueError, match="hub models"):
        models.train_subject_model(p, "full")


def test_retain_model_does_not_depend_on_the_forget_split():
    a = presets.get_preset("tiny")
    b = models.with_overrides(a, forget_split="forget10", n_forget_authors=None)
    assert a.config_hash("retain") == b.config_hash("retain")
    assert a.config_hash("full") != b.config_hash("full")
    with pytest.raises(ValueError, match="n_forget_authors"):
        models.study_data(models.with_overrides(a, n_forget_authors=11))


@pytest.mark.parametrize("family", ["gpt2", "llama", "phi"])
def test_logits_at_matches_full_logits_on_either_path(family):
    """`architecture.logits_at` gives the full logits at the kept positions whether the installed
    transformers takes a boolean `logits_to_keep` (5.21+) or raises on it (5.0-5.20: the fallback);
    a model that raises IndexError on the argument forces the fallback on any release."""
    from unedit_lib.core.architecture import logits_at, tiny_model

    model = tiny_model(family, vocab_size=100)
    ids = torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(0))
    keep = torch.zeros(2, 7, dtype=torch.bool)
    keep[0, 3] = True
    keep[1, 5:] = True
    with torch.no_grad():
        want = model(input_ids=ids).logits[keep]
        assert torch.allclose(logits_at(model, keep, input_ids=ids), want, atol=1e-5)

        class NoBooleanMask(torch.nn.Module):
            def forward(self, logits_to_keep=None, **inputs):
                if logits_to_keep is not None:
                    raise IndexError("too many indices for tensor of dimension 3")
                return model(**inputs)

        got = logits_at(NoBooleanMask(), keep, input_ids=ids)
    assert got.shape == (3, 100) and torch.allclose(got, want, atol=1e-5)


def test_the_renamed_tiny_preset_keeps_the_models_its_records_name(monkeypatch):
    from unedit_lib.core import store
    from unedit_lib.study import runner

    records = store.load_results("tiny")
    named = {r.get("subject_model") for r in records.values()} - {None}
    monkeypatch.setenv("UNEDIT_PRECISION", "bfloat16")    # tiny's committed models were trained in bf16
    assert named == {runner.subject_model_id("tiny")}      # the hash of its old name, "default"
    assert all(runner._record_evaluates(records[w], presets.get_preset("tiny"), w) for w in ("full", "retain"))
    with pytest.raises(ValueError, match="now called 'tiny'"):
        presets.get_preset("default")


def test_a_model_trained_in_another_precision_is_another_model(monkeypatch):
    """"auto" resolves per machine (bf16 only with native bf16 units): a bf16 and a float32 fine-tune
    differ, so their folders (and every record's subject_model) differ. smollm2-forget01 pins float32, so
    its models, and its committed study, are the same on every CPU."""
    tiny, smollm2 = presets.get_preset("tiny"), presets.get_preset("smollm2-forget01")
    hashes = {}
    for precision in ("float32", "bfloat16"):
        monkeypatch.setenv("UNEDIT_PRECISION", precision)
        assert presets.training_precision(tiny) == precision
        hashes[precision] = (tiny.config_hash("full"), tiny.config_hash("retain"), smollm2.config_hash("full"))
    assert hashes["float32"][0] != hashes["bfloat16"][0] and hashes["float32"][1] != hashes["bfloat16"][1]
    assert hashes["float32"][2] == hashes["bfloat16"][2] and presets.training_precision(smollm2) == "float32"
