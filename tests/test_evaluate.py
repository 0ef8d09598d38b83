"""TOFU metric definitions on hand-computed cases (tofu.md section 2)."""
import math

import numpy as np
import pytest
from scipy import stats

from unedit_lib.core import store
from unedit_lib.eval import evaluate as ev


def _log(gt, para, pert, rouge):
    k = lambda xs: {str(i): x for i, x in enumerate(xs)}
    return {"avg_gt_loss": k(gt), "avg_paraphrased_loss": k(para), "average_perturb_loss": k(pert),
            "rougeL_recall": k(rouge)}


def test_truth_ratio_uses_geometric_mean_of_perturbed():
    # perturbed losses 1 and 3 -> geometric mean prob exp(-2); paraphrase loss 0.5
    log = _log([0.1], [0.5], [[1.0, 3.0]], [1.0])
    r = ev.truth_ratios(log)[0]
    assert r == pytest.approx(math.exp(-2.0) / math.exp(-0.5))
    arithmetic = (math.exp(-1) + math.exp(-3)) / 2 / math.exp(-0.5)
    assert abs(r - arithmetic) > 0.05   # the paper's arithmetic form would differ


def test_forget_and_utility_aggregation_forms():
    # item 0: R = exp(0.2 - 1.2) = e^-1 ; item 1: R = exp(1.5 - 0.5) = e^1
    log = _log([0.0, math.log(2)], [0.2, 1.5], [[1.2], [0.5]], [0.5, 1.0])
    m_forget = ev.set_metrics(log, "forget")
    assert m_forget["truth_ratio"] == pytest.approx(math.exp(-1))          # mean(min(R, 1/R))
    assert m_forget["prob"] == pytest.approx((1 + 0.5) / 2)
    assert m_forget["rouge"] == pytest.approx(0.75)
    m_retain = ev.set_metrics(log, "retain")
    assert m_retain["truth_ratio"] == pytest.approx((1 - math.exp(-1) + 0.0) / 2)   # mean(max(0, 1-R))


def test_prob_normalised_against_options_on_real_authors():
    p_true, p_wrong = 0.5, [0.1, 0.2, 0.2]
    log = _log([-math.log(p_true)], [-math.log(p_true)], [[-math.log(p) for p in p_wrong]], [1.0])
    assert ev.set_metrics(log, "real_authors")["prob"] == pytest.approx(0.5 / 1.0)
    assert ev.set_metrics(log, "retain")["prob"] == pytest.approx(0.5)


def test_model_utility_is_harmonic_mean_and_zero_edge():
    m = {s: {"rouge": 0.5, "prob": 0.25, "truth_ratio": 1.0} for s in ev.UTILITY_SETS}
    assert ev.model_utility(m) == pytest.approx(stats.hmean([0.5, 0.25, 1.0] * 3))
    assert ev.model_utility(m) == pytest.approx(9 / (3 * (2 + 4 + 1)))
    m["retain"]["rouge"] = 0.0
    assert ev.model_utility(m) == 0.0
    m["retain"]["rouge"] = float("nan")
    with pytest.raises(ev.NonFiniteMetric):
        ev.model_utility(m)


def test_forget_quality_is_ks_pvalue_and_edge_cases():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.1, 1.0, 40)
    b = rng.uniform(0.1, 1.0, 40)
    mk = lambda r: _log([0.0] * len(r), list(-np.log(1 / r)), [[0.0]] * len(r), [0.0] * len(r))
    la, lb = mk(a), mk(b)
    p, d = ev.forget_quality(la, lb)
    ref = stats.ks_2samp(ev.truth_ratios(la), ev.truth_ratios(lb))
    assert p == pytest.approx(ref.pvalue) and d == pytest.approx(ref.statistic)
    assert ev.forget_quality(la, la)[0] == pytest.approx(1.0)          # identical distributions
    far = mk(a * 1e-6)
    assert ev.forget_quality(far, la)[0] < 1e-10                          # fully separated
    with pytest.raises(ValueError, match="different items"):
        ev.forget_quality(mk(a[:10]), la)


def test_summarize_and_nan_detection():
    log = _log([0.1, 0.2], [0.3, 0.4], [[1.0, 2.0], [1.0, 1.5]], [0.9, 1.0])
    logs = {s: log for s in ev.EVAL_SETS}
    s = ev.summarize(logs)
    assert s["forget_quality"] is None and 0 < s["model_utility"] <= 1
    assert set(s["metrics"]) == set(ev.EVAL_SETS)
    assert ev.summarize(logs, retain_logs=logs)["forget_quality"] == pytest.approx(1.0)
    bad = _log([float("nan"), 0.2], [0.3, 0.4], [[1.0], [1.0]], [0.9, 1.0])
    with pytest.raises(ev.NonFiniteMetric, match="not finite"):
        ev.summarize({**logs, "retain": bad})


def test_repetitive_answers_are_flagged_and_counted_in_the_summary_table():
    assert ev.is_repetitive("speci bene bene speci bene bene bene bene")
    assert not ev.is_repetitive("The author Basil Mahfouz Al-Kuwaiti is male.")
    assert not ev.is_repetitive("dummy dummy")                    # too short to call degenerate
    ga = {"forget_answers": [{"answer": "bene " * 20}, {"answer": "Basil was born in Kuwait City."}]}
    assert ev.repetitive_share(ga) == 0.5 and ev.repetitive_share({}) is None
    table = ev.summary_table({"ga": {**ga, "model_utility": 0.0, "forget_quality": 0.1}})
    assert table.loc["ga", "repetitive forget answers"] == 0.5


def test_rouge_recall_is_rouge_l_recall_with_stemmer():
    r1, rl = ev.rouge_recall("The author writes books", "books the author writes")
    assert rl == pytest.approx(3 / 4) and r1 == pytest.approx(1.0)
    assert ev.rouge_recall("running dogs", "run dog")[1] == pytest.approx(1.0)   # stemmer


def test_logs_roundtrip(tmp_path):
    log = _log([0.1], [0.3], [[1.0]], [0.9])
    store.save_eval_logs({"forget": log, "retain": log}, tmp_path / "logs")
    back = store.load_eval_logs(tmp_path / "logs")
    assert back["forget"] == log and (tmp_path / "logs" / "eval_log_forget.json").exists()
    with pytest.raises(FileNotFoundError):
        store.load_eval_logs(tmp_path / "nothing")


def test_summarize_reproduces_tofu_published_llama2_numbers():
    """TOFU's own legacy logs (tests/fixtures/tofu_legacy, trimmed to the loss/ROUGE fields):
    Llama-2-7b full model MU 0.623, FQ vs retain90 1.8e-21, KS 0.40 (tofu.md section 5.1)."""
    from pathlib import Path

    fx = Path(__file__).parent / "fixtures" / "tofu_legacy"
    full = store.load_eval_logs(fx / "llama2-7b_full")
    retain = store.load_eval_logs(fx / "llama2-7b_retain90")
    s = ev.summarize(full, retain_logs=retain)
    assert round(s["model_utility"], 3) == 0.623
    assert s["forget_quality"] == pytest.approx(1.834e-21, rel=1e-3)
    assert round(s["ks_statistic"], 2) == 0.40
    m = s["metrics"]
    assert (round(m["retain"]["prob"], 3), round(m["retain"]["rouge"], 3), round(m["retain"]["truth_ratio"], 3)) == (0.990, 0.986, 0.475)
    assert (round(m["real_authors"]["prob"], 3), round(m["real_authors"]["truth_ratio"], 3)) == (0.455, 0.596)
    assert (round(m["world_facts"]["prob"], 3), round(m["world_facts"]["rouge"], 3)) == (0.419, 0.882)
    assert (round(m["forget"]["prob"], 3), round(m["forget"]["rouge"], 3), round(m["forget"]["truth_ratio"], 3)) == (0.991, 0.985, 0.516)
    assert ev.summarize(retain)["metrics"]["forget"]["rouge"] == pytest.approx(0.408, abs=5e-4)


def test_pad_batch_right_and_left():
    from unedit_lib.core.prompts import pad_batch

    ids, mask = pad_batch([[1, 2, 3], [4]], 0, "right")
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, mask = pad_batch([[1, 2, 3], [4]], 9, "left")
    assert ids.tolist() == [[1, 2, 3], [9, 9, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    with pytest.raises(ValueError, match="side"):
        pad_batch([[1]], 0, "middle")


# --------------------------------------------------------------------------- the evaluator's shortcuts
QUESTIONS = ["Who wrote the novel about the river?", "Where was the author born?", "What genre does she write?"]
ANSWERS = ["A writer from the north wrote it.", "In a small town by the sea.", "Mostly poems.", "Crime novels."]


@pytest.fixture(scope="module")
def tok():
    from unedit_lib.core.tokenizer import train_tokenizer

    return train_tokenizer((QUESTIONS + ANSWERS) * 5, vocab_size=300)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_shared_prompt_scoring_equals_one_pass_per_pair(tok, family):
    """A question's prompt run once under all its answers (KV cache) gives the numbers of
    prompt + answer run as one right-padded sequence (the path kept for call-dependent models)."""
    from unedit_lib.core.architecture import CALL_DEPENDENT, tiny_model

    model = tiny_model(family, vocab_size=len(tok), seed=1).eval()
    pairs = [(q, a) for q in QUESTIONS for a in ANSWERS]
    shared = ev.answer_token_logprobs(model, tok, "qa", pairs, batch_size=5)
    setattr(model, CALL_DEPENDENT, True)
    one_pass = ev.answer_token_logprobs(model, tok, "qa", pairs, batch_size=5)
    assert [len(x) for x in shared] == [len(x) for x in one_pass]
    np.testing.assert_allclose(np.concatenate(shared), np.concatenate(one_pass), rtol=1e-4, atol=1e-4)
    assert len({round(sum(x), 3) for x in shared}) > len(ANSWERS)       # the pairs differ (not a constant)


def test_long_answers_continue_in_a_second_pass(tok, monkeypatch):
    """Rows still going after FIRST_PASS_TOKENS continue from prompt + their tokens: the same
    greedy answers as one pass of max_new_tokens (a call-dependent model's path)."""
    from unedit_lib.core.architecture import CALL_DEPENDENT, tiny_model

    model = tiny_model("llama", vocab_size=len(tok), seed=2).eval()
    monkeypatch.setattr(ev, "FIRST_PASS_TOKENS", 3)
    calls = []
    real = ev._greedy
    monkeypatch.setattr(ev, "_greedy", lambda m, t, prompts, *a, **k: calls.append(len(prompts)) or real(m, t, prompts, *a, **k))
    two = ev.generate_answers(model, tok, "qa", QUESTIONS, max_new_tokens=9, batch_size=2)
    assert len(calls) == 2 and calls[1] > 0                 # a random model rarely stops within 3 tokens
    setattr(model, CALL_DEPENDENT, True)
    calls.clear()
    one = ev.generate_answers(model, tok, "qa", QUESTIONS, max_new_tokens=9, batch_size=2)
    assert calls == [len(QUESTIONS)] and two == one
    assert any(len(tok(g)["input_ids"]) > 3 for g in one)
