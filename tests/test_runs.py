"""Unlearned models are kept by runs.run_unlearning and come back as they were evaluated."""
import json

import pytest
import torch

from unedit_lib import evaluate, models, runs, wise
from unedit_lib.architecture import tiny_model
from unedit_lib.tokenizer import train_tokenizer

TEXTS = ["Question: Who wrote the Blue Book?\nAnswer: Ana Lopez wrote it.",
         "Question: What is the capital of France?\nAnswer: Paris.",
         "I like to read books about history and science."]


@pytest.fixture()
def scratch(tmp_path, monkeypatch):
    """Artifacts and results in a temporary folder (the repository's stay untouched)."""
    monkeypatch.setattr(models, "ARTIFACTS", tmp_path / "artifacts")
    monkeypatch.setenv("UNEDIT_RESULTS_DIR", str(tmp_path / "results"))
    return tmp_path


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS * 4, vocab_size=300)


def _logits(model, tok, text):
    with torch.no_grad():
        return model(**tok([text], return_tensors="pt")).logits


def test_plain_model_round_trip(scratch, tok):
    model = tiny_model("llama", vocab_size=len(tok), seed=3)
    path = runs.save_unlearned("smoke", "ga", model, tok)
    assert path.parent.name == runs.subject_model_id("smoke") and (path / "model.safetensors").is_file()
    assert json.loads((path / "unlearned.json").read_text())["kind"] == "model"
    back, _ = runs.load_unlearned("smoke", "ga")
    assert torch.equal(_logits(back, tok, TEXTS[0]), _logits(model, tok, TEXTS[0]))
    with pytest.raises(FileNotFoundError, match="no saved unlearned model"):
        runs.load_unlearned("smoke", "never-ran")


def test_side_memory_round_trip(tok, tmp_path):
    model = tiny_model("llama", vocab_size=len(tok), seed=0, initializer_range=0.2)
    req = {"prompt": "Question: Who wrote the Blue Book?\nAnswer:", "target": "Paris"}
    wise.edit(model, tok, [req], locality_prompts=TEXTS[1:], n_iter=10, n_templates=3)
    wise.save_side_memory(model, tmp_path)
    fresh = tiny_model("llama", vocab_size=len(tok), seed=0, initializer_range=0.2)
    wise.load_side_memory(fresh, tmp_path)
    a, b = wise.get_side_memory(model), wise.get_side_memory(fresh)
    assert torch.equal(a.side_weight, b.side_weight) and a.threshold() == b.threshold()
    for text in (req["prompt"], TEXTS[2]):
        assert torch.equal(_logits(model, tok, text), _logits(fresh, tok, text))
    assert wise.routing_decisions(fresh, tok, [req["prompt"]]) == wise.routing_decisions(model, tok, [req["prompt"]])


def test_cached_result_needs_logs_model_and_the_same_full_model(scratch, tok, monkeypatch):
    """A record is reused only with its per-item logs, its saved model and the same full model."""
    p = models.get_preset("smoke")
    model = tiny_model("llama", vocab_size=len(tok), seed=1)
    evaluate.save_result("smoke", "gd", summary=None, method="gd", collapsed=False,
                         extra={"subject_model": runs.subject_model_id(p)})
    assert runs._cached(p, "gd") is None                         # no logs, no model
    logs = {s: {"avg_gt_loss": {"0": 1.0}} for s in evaluate.EVAL_SETS}
    evaluate.save_eval_logs(logs, evaluate.results_dir("smoke") / "gd")
    assert runs._cached(p, "gd") is None                         # logs, but no saved model
    runs.save_unlearned(p, "gd", model, tok)
    assert runs._cached(p, "gd")["run"] == "gd"
    evaluate.save_result("smoke", "gd", summary=None, method="gd", collapsed=False,
                         extra={"subject_model": "full-0000000000"})
    assert runs._cached(p, "gd") is None                         # made from another full model: stale
