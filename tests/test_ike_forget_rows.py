"""IKE's edit-level numbers on every forget row: the IKE recipe's stats.edit_metrics.forget_rows,
edit_metrics.target_vs_truth on a tiny random Llama, and the forget05 split whose requests are forget01."""
from __future__ import annotations


import functools

import numpy as np
import pytest

from unedit_lib.core import presets, registry
from unedit_lib.core.architecture import tiny_model
from unedit_lib.core.checkpoints import EditCheckpoint
from unedit_lib.core.data import load_tofu
from unedit_lib.core.prompts import TEMPLATES, encode_prompt
from unedit_lib.core.tokenizer import train_tokenizer
from unedit_lib.eval import edit_metrics as em, evaluate as ev
from unedit_lib.methods.ike import context as ike_context, editor as ike
from unedit_lib.study import recipes
from unedit_lib.subject import models

from test_checkpoints import Killed, KilledAfter  # a checkpoint whose process dies once it saved n units done
from test_ike import FACTS, bow_embedder  # the IKE tests' facts and their deterministic stub embedder

QA = TEMPLATES["qa"]
RETAIN = [{"question": "What city is Elvin Mammadov from?", "answer": "Baku."},
          {"question": "Which award did Jaime Vasquez win?", "answer": "The Edgar Award."}]


@pytest.fixture(scope="module")
def tok():
    texts = []
    for r in FACTS:
        texts += [QA.full(r["question"], r["answer"]), ike_context.copy_demo(r["question"], r["target"]),
                  ike_context.update_demo(r["question"], r["target"], r["paraphrased_question"])]
    texts += [QA.full(r["question"], r["answer"]) for r in RETAIN]
    return train_tokenizer(texts * 3, vocab_size=500)


@pytest.fixture(scope="module")
def model(tok):
    return tiny_model("llama", vocab_size=len(tok), seed=0)


def _probe(tok, model, k=2):
    """The prompts the edit-level metrics score with (question last) for FACTS' first two rows as
    requests and the third as a pool fact."""
    pool = ike.build_pool(FACTS[2:], RETAIN, embedder=bow_embedder())
    reqs = [{"prompt": QA.prompt(r["question"]), "question": r["question"], "target": r["target"]} for r in FACTS[:2]]
    prompts = ike.edit(model, tok, reqs, pool=pool, k=k, template=QA)
    return ike.edit_metric_prompts(prompts)


def _rows():
    return [(QA.prompt(r["question"]), r["target"], r["answer"]) for r in FACTS]


# --------------------------------------------------------------------------- the split the forget05 study uses
def test_forget05_at_0_8_requests_are_forget01():
    rows = load_tofu("forget05")
    assert len(rows) == 200 and int(200 * 0.8) == 160          # no float rounding below 160 here
    pool_rows, reqs = ike.split_pool_requests(rows, 0.8)
    assert len(pool_rows) == 160 and len(reqs) == 40
    assert [r["question"] for r in reqs] == [r["question"] for r in load_tofu("forget01")]


# --------------------------------------------------------------------------- edit_metrics.target_vs_truth
def test_no_context_gives_the_numbers_without_context(tok, model):
    empty = ike_context.IKEPrompts(tok, ike.DemoPool([], [], bow_embedder()), [], QA, k=0, prompt_format="question_only")
    assert empty.augment_prompt(QA.prompt(FACTS[0]["question"])) == QA.prompt(FACTS[0]["question"])
    with_ctx = em.target_vs_truth(model, tok, _rows(), answer_start=QA.answer_start, prompter=empty)
    without = em.target_vs_truth(model, tok, _rows(), answer_start=QA.answer_start)
    assert with_ctx["n"] == without["n"] == len(FACTS)
    assert with_ctx["rewrite_acc"] == without["rewrite_acc"]
    assert with_ctx["target_beats_truth"] == without["target_beats_truth"]
    np.testing.assert_allclose(with_ctx["target_logprob"], without["target_logprob"], atol=1e-5)
    np.testing.assert_allclose(with_ctx["truth_logprob"], without["truth_logprob"], atol=1e-5)


@pytest.mark.parametrize("with_context", [False, True])
def test_scores_are_the_evaluators_and_the_rewrite_accuracy_edit_metrics(tok, model, with_context):
    probe = _probe(tok, model) if with_context else None
    res = em.target_vs_truth(model, tok, _rows(), answer_start=QA.answer_start, prompter=probe, batch_size=2)
    # log-probabilities: minus the evaluator's average answer loss (answer tokens + EOS), same prompts
    pairs = [(r["question"], a) for r in FACTS for a in (r["target"], r["answer"])]
    losses = ev.answer_losses(model, tok, QA, pairs, prompter=probe)
    np.testing.assert_allclose(res["target_logprob"], [-x for x in losses[0::2]], atol=1e-5)
    np.testing.assert_allclose(res["truth_logprob"], [-x for x in losses[1::2]], atol=1e-5)
    assert res["target_beats_truth"] == [t < a for t, a in zip(losses[0::2], losses[1::2])]
    # rewrite accuracy: edit_metrics.rewrite_accuracy (the target without EOS)
    assert res["rewrite_acc"] == [em.rewrite_accuracy(model, tok, p, t, answer_start=QA.answer_start, prompter=probe)
                                  for p, t, _ in _rows()]


def test_with_context_scores_the_ike_prompt(tok, model, monkeypatch):
    asked = []
    real = ev.batched_shared_prompt_logits

    def spy(model, prompts, answers, pad, *a, **k):
        asked.extend(prompts)
        return real(model, prompts, answers, pad, *a, **k)

    monkeypatch.setattr(em, "batched_shared_prompt_logits", spy)
    probe = _probe(tok, model)
    em.target_vs_truth(model, tok, _rows(), answer_start=QA.answer_start, prompter=probe)
    for r in FACTS:
        text = probe.augment_prompt(QA.prompt(r["question"]))
        assert f"New Fact: {r['question']} {r['target']}\nPrompt: {r['question']}" in text     # its fact line
        assert text.count("New Fact: ") == 3                                               # 2 demos + the line
        assert encode_prompt(tok, text) in asked
    assert len(asked) == len(FACTS)            # one context pass a row, target and truth on top


# --------------------------------------------------------------------------- the IKE recipe (recipes._ike)
@pytest.fixture(scope="module")
def smoke():
    sd = models.study_data("smoke")
    sd.eval_sets["forget"] = sd.forget_rows[:3] + sd.forget_rows[-3:]      # 3 pool rows, 3 of the 4 requests
    return sd


def _ike_run(smoke, monkeypatch):
    """(apply, model, tok) of the smoke study's ike-incorrect run on a tiny random Llama."""
    monkeypatch.setattr(recipes, "shared_embedder", lambda name: bow_embedder())
    p = presets.get_preset("smoke")
    rows = smoke.forget_rows + smoke.retain_rows
    texts = [QA.full(r["question"], r["answer"]) for r in rows] + [r["perturbed_answer"][0] for r in smoke.forget_rows]
    tok = train_tokenizer(texts, vocab_size=600)
    model = tiny_model("llama", vocab_size=len(tok), seed=0, max_position_embeddings=4096)
    hp = recipes.settings("smoke", "ike", k=2)
    apply, _, hp = recipes._build(p, smoke, "ike", "incorrect", hp, None)
    return apply, model, tok


def test_the_ike_run_records_every_forget_row(smoke, monkeypatch):
    apply, model, tok = _ike_run(smoke, monkeypatch)
    stats: dict = {}
    _, prompts = apply(model, tok, stats)
    em_ = stats["edit_metrics"]
    assert {"pre", "post", "per_request", "answer_start"} <= set(em_)            # the older fields stay
    fr = em_["forget_rows"]
    n = len(smoke.eval_sets["forget"])
    assert fr["n"] == n == 6
    for k in ("rewrite_acc", "target_beats_truth", "target_logprob", "truth_logprob"):
        assert len(fr[f"{k}_with_context"]) == len(fr[f"{k}_without_context"]) == n
    assert fr["request_row"] == [False] * 3 + [True] * 3 and fr["counts"]["request_rows"] == 3
    assert fr["means"]["rewrite_acc_with_context"] == pytest.approx(np.mean(fr["rewrite_acc_with_context"]))
    assert fr["means"]["target_beats_truth_without_context"] == pytest.approx(
        np.mean(fr["target_beats_truth_without_context"]))
    assert fr["means"]["rewrite_acc_lift"] == pytest.approx(
        fr["means"]["rewrite_acc_with_context"] - fr["means"]["rewrite_acc_without_context"])
    assert fr["time_s"] > 0 and fr["time_per_row_s"] == pytest.approx(fr["time_s"] / n)
    assert fr["truncated_rows"] == fr["dropped_demos"] == 0 and "length-normalised" in fr["logprob"]
    # the request rows agree with the requests' own edit-level numbers (the last 3 of the 4 requests)
    assert fr["rewrite_acc_with_context"][3:] == em_["per_request"]["rewrite_acc"][1:]
    # each row's target is the run's (the incorrect target: TOFU's first perturbed answer), its context the evaluator's
    forget = smoke.eval_sets["forget"]
    probe = ike.edit_metric_prompts(prompts)
    for i, r in enumerate(forget):
        prompt, target = QA.prompt(r["question"]), r["perturbed_answer"][0]
        assert fr["rewrite_acc_without_context"][i] == em.rewrite_accuracy(model, tok, prompt, target,
                                                                           answer_start=QA.answer_start)
        assert f"New Fact: {r['question']} {target}\nPrompt: {r['question']}" in probe.augment_prompt(prompt)
        assert prompts.prefix_for(prompt) == probe.prefix_for(prompt)      # the evaluator's context


def test_a_killed_ike_run_resumes_after_its_last_scored_rows(smoke, monkeypatch, tmp_path, capsys):
    apply, model, tok = _ike_run(smoke, monkeypatch)
    straight: dict = {}
    apply(model, tok, straight)                                                   # 6 rows in one chunk of 20
    monkeypatch.setattr(em, "context_lift", functools.partial(em.context_lift, chunk=2))     # cut: 3 chunks
    path, key = tmp_path / "ike-incorrect.safetensors", {"run": "ike-incorrect", "hp_key": "abc"}
    with pytest.raises(Killed):
        apply(model, tok, {}, checkpoint=KilledAfter(path, key, 4))
    monkeypatch.setattr(em, "edit_metrics", lambda *a, **k: pytest.fail("the saved edit metrics are recomputed"))
    scored, real = [], em.target_vs_truth

    def spy(model, tok, rows, **k):
        scored.extend(rows if k.get("prompter") is not None else [])
        return real(model, tok, rows, **k)

    monkeypatch.setattr(em, "target_vs_truth", spy)
    resumed, unit = {}, registry.code("ike", "resumable")
    ckpt = EditCheckpoint(path, key, unit=unit)
    apply(model, tok, resumed, checkpoint=ckpt)
    assert f"resuming after {unit} 4 " in capsys.readouterr().out
    assert len(scored) == 2                                                     # rows 5 and 6 only
    assert [(s["from_edit"], s["to_edit"]) for s in ckpt.record()] == [(0, 4), (4, 6)]
    a, b = straight["edit_metrics"], resumed["edit_metrics"]
    untimed = lambda d: {k: v for k, v in d.items() if not k.startswith("time")}      # noqa: E731
    assert untimed(a) == {**untimed(b), "forget_rows": a["forget_rows"]}             # the killed run's, kept
    assert untimed(a["forget_rows"]) == untimed(b["forget_rows"]) and b["forget_rows"]["n"] == 6
