"""Causal tracing (unedit_lib.tracing.causal_trace) on tiny random models of the three families."""
import numpy as np
import pytest

from unedit_lib.core import prompts
from unedit_lib.core.architecture import architecture, tiny_model
from unedit_lib.core.tokenizer import train_tokenizer
from unedit_lib.report import trace_plots
from unedit_lib.tracing import causal_trace, records as trace_records

SENTS = ["Question: Who wrote Blue Moon?\nAnswer: Jane Doe wrote Blue Moon.",
         "Question: Where was Tom Lee born?\nAnswer: Tom Lee was born in Paris.",
         "The quick brown fox jumps over the lazy dog."]
PROMPT, SUBJECT = "Question: Who wrote Blue Moon?\nAnswer:", "Blue Moon"


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(SENTS * 3, vocab_size=300)


def test_subject_token_range(tok):
    ids, (b, e) = prompts.subject_token_range(tok, PROMPT, SUBJECT)
    assert ids == tok(PROMPT)["input_ids"]
    assert tok.decode(ids[b:e]).strip() == SUBJECT
    assert SUBJECT not in tok.decode(ids[b + 1:e]) and SUBJECT not in tok.decode(ids[b:e - 1])
    # an explicit start picks the second occurrence
    text = "Who wrote Blue Moon and Blue Moon"
    _, (b2, e2) = prompts.subject_token_range(tok, text, SUBJECT, char_start=text.rindex(SUBJECT))
    _, (b1, e1) = prompts.subject_token_range(tok, text, SUBJECT)
    assert b2 > b1 and e2 - b2 == e1 - b1
    with pytest.raises(ValueError):
        prompts.subject_token_range(tok, PROMPT, "Red Sky")


def test_window_layers():
    assert causal_trace.window_layers(0, 4, 10) == [0, 1, 2, 3]
    assert causal_trace.window_layers(10, 48, 10) == list(range(5, 15))
    assert causal_trace.window_layers(47, 48, 10) == list(range(42, 48))


@pytest.mark.parametrize("family", ["gpt2", "llama", "phi"])
def test_trace_shapes_and_restoration(tok, family):
    model = tiny_model(family, vocab_size=len(tok))
    arch = architecture(model)
    n_tok = len(tok(PROMPT)["input_ids"])
    noise = causal_trace.noise_level(model, tok, [SUBJECT, "Tom Lee"])
    assert noise == pytest.approx(3 * causal_trace.embedding_std(model, tok, [SUBJECT, "Tom Lee"]))
    res = {k: causal_trace.trace_important_states(model, tok, PROMPT, SUBJECT, kind=k, samples=4, noise=noise)
           for k in causal_trace.KINDS}
    for k, r in res.items():
        assert r["scores"].shape == (n_tok, arch.n_layers)
        assert r["subject_range"] == prompts.subject_token_range(tok, PROMPT, SUBJECT)[1]
        assert len(r["input_tokens"]) == n_tok and r["kind"] == k
        assert np.isfinite(r["scores"]).all() and 0 < r["low_score"] < 1 and 0 < r["high_score"] < 1
        assert r["high_score"] == pytest.approx(res[None]["high_score"])
        assert r["low_score"] == pytest.approx(res[None]["low_score"])  # same noise draws for every kind
    hidden = res[None]
    # corruption changes the output; restoring the last token's final state gives back the clean score
    assert hidden["low_score"] != pytest.approx(hidden["high_score"], rel=1e-6)
    assert hidden["scores"][-1, -1] == pytest.approx(hidden["high_score"], rel=1e-4)
    # tokens before the subject are identical in clean and corrupted runs: restoring them does nothing
    # (the table fills their rows with low_score without running them: run one to check)
    b = hidden["subject_range"][0]
    assert b > 0 and np.allclose(hidden["scores"][:b], hidden["low_score"], rtol=1e-4)
    before = causal_trace.trace_with_patch(model, tok, PROMPT, SUBJECT, [(b - 1, l) for l in range(arch.n_layers)],
                                           samples=4, noise=noise)
    assert before["score"] == pytest.approx(hidden["low_score"], rel=1e-4)
    # restoring every token's state after layer 0 (i.e. every later input) gives the clean score
    full = causal_trace.trace_with_patch(model, tok, PROMPT, SUBJECT, [(t, 0) for t in range(n_tok)],
                                         samples=4, noise=noise)
    assert full["score"] == pytest.approx(full["high_score"], rel=1e-4)
    assert full["low_score"] == pytest.approx(hidden["low_score"], rel=1e-5)


def test_batching_matches_one_experiment_per_pass(tok):
    model = tiny_model("llama", vocab_size=len(tok))
    kw = dict(kind="mlp", samples=3, noise=0.1, window=2)
    batched = causal_trace.trace_important_states(model, tok, PROMPT, SUBJECT, **kw)
    single = causal_trace.trace_important_states(model, tok, PROMPT, SUBJECT, batch_rows=3, **kw)
    assert np.allclose(batched["scores"], single["scores"], rtol=1e-4, atol=1e-7)
    # a single experiment through trace_with_patch agrees with the table entry
    t, l = batched["subject_range"][1] - 1, 2
    one = causal_trace.trace_with_patch(model, tok, PROMPT, SUBJECT, [(t, x) for x in causal_trace.window_layers(l, 4, 2)],
                                        kind="mlp", samples=3, noise=0.1)
    assert one["score"] == pytest.approx(batched["scores"][t, l], rel=1e-4)
    other_seed = causal_trace.trace_important_states(model, tok, PROMPT, SUBJECT, seed=1, **kw)
    assert other_seed["low_score"] != batched["low_score"]


def test_average_and_choose_layer(tok):
    model = tiny_model("gpt2", vocab_size=len(tok))
    prompts = [(PROMPT, SUBJECT), ("Question: Where was Tom Lee born?\nAnswer:", "Tom Lee")]
    results = [causal_trace.trace_important_states(model, tok, p, s, kind="mlp", samples=2, noise=0.1) for p, s in prompts]
    avg = causal_trace.average_traces(results)
    assert avg["scores"].shape == (6, 4) and avg["aie"].shape == (6, 4)
    assert avg["labels"][2] == "Last subject token" and avg["n"] == 2
    # last subject token row = mean over prompts of (score - low) at each prompt's last subject token
    expect = np.mean([r["scores"][r["subject_range"][1] - 1] - r["low_score"] for r in results], axis=0)
    assert np.allclose(avg["aie"][2], expect)
    assert avg["count"][5] == 2 and avg["te"] == pytest.approx(avg["high_score"] - avg["low_score"])
    layer = causal_trace.choose_edit_layer(avg)
    assert layer == int(np.argmax(expect))
    fake = dict(avg, aie=np.zeros((6, 4)))
    fake["aie"][2, 3] = 1.0
    assert causal_trace.choose_edit_layer(fake) == 3
    assert causal_trace.choose_edit_layer(results[0]) in range(4)


def test_plot_trace(tok):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = tiny_model("gpt2", vocab_size=len(tok))
    r = causal_trace.trace_important_states(model, tok, PROMPT, SUBJECT, kind="attn", samples=2, noise=0.1)
    ax = trace_plots.plot_trace(r)
    assert any(lbl.get_text().endswith("*") for lbl in ax.get_yticklabels())
    trace_plots.plot_average(causal_trace.average_traces([r]))
    plt.close("all")


def test_cached_traces_are_reused(tok, tmp_path, monkeypatch):
    model = tiny_model("llama", vocab_size=len(tok), seed=0)
    rows = [{"question": "Who wrote Blue Moon?", "subject": "Blue Moon", "answer": "Jane Doe wrote Blue Moon."}]
    kw = dict(kinds=(None,), samples=2, window=2)
    fresh = trace_records.trace_facts_cached(model, tok, rows, cache_dir=tmp_path, **kw)
    monkeypatch.setattr(causal_trace, "trace_facts", lambda *a, **k: pytest.fail("recomputed instead of reused"))
    again = trace_records.trace_facts_cached(model, tok, rows, cache_dir=tmp_path, **kw)
    a, b = fresh["traces"][0]["hidden"], again["traces"][0]["hidden"]
    assert np.array_equal(a["scores"], b["scores"]) and a["subject_range"] == b["subject_range"]
    assert again["noise"] == fresh["noise"]
    with pytest.raises(pytest.fail.Exception):      # force recomputes
        trace_records.trace_facts_cached(model, tok, rows, cache_dir=tmp_path, force=True, **kw)
    # the same model in a clone at another path reuses the (committed) cache; another model does not
    model.config._name_or_path = "/home/a/unedit/artifacts/smollm2-forget01/full-3fca075985"
    monkeypatch.undo()
    trace_records.trace_facts_cached(model, tok, rows, cache_dir=tmp_path / "c", **kw)
    monkeypatch.setattr(causal_trace, "trace_facts", lambda *a, **k: pytest.fail("recomputed instead of reused"))
    model.config._name_or_path = "/elsewhere/clone/artifacts/smollm2-forget01/full-3fca075985"
    trace_records.trace_facts_cached(model, tok, rows, cache_dir=tmp_path / "c", **kw)
    model.config._name_or_path = "/elsewhere/clone/artifacts/smollm2-forget01/full-0000000000"
    with pytest.raises(pytest.fail.Exception):
        trace_records.trace_facts_cached(model, tok, rows, cache_dir=tmp_path / "c", **kw)


def test_a_layer_chosen_on_another_full_model_is_an_error(tmp_path, monkeypatch):
    from unedit_lib.subject import models

    monkeypatch.setenv("UNEDIT_RESULTS_DIR", str(tmp_path / "results"))
    here = models.subject_model_path("smoke", "full").name
    trace_records.save_edit_layer("smoke", 1, {"why": "test"})
    assert trace_records.load_edit_layer("smoke", 0, subject_model=here)[0] == 1
    with pytest.raises(ValueError, match="chose layer 1 on the full model .* rerun notebooks/02"):
        trace_records.load_edit_layer("smoke", 0, subject_model="full-0000000000")
    assert trace_records.load_edit_layer("smoke", 0)[0] == 1              # no model named: read as it is
    trace_records.save_edit_layer("smoke", 2, {"subject_model": None, "model_config": f"/x/artifacts/smoke/{here}"})
    assert trace_records.load_edit_layer("smoke", 0, subject_model=here)[0] == 2    # an old record: model_config


@pytest.mark.parametrize("family", ["gpt2", "llama", "phi"])
def test_tail_passes_give_the_whole_passes_scores(tok, family, monkeypatch):
    """The trace runs only the blocks from an experiment's lowest restored layer on: the same
    scores as whole forward passes (checked on its first batch, and here on every experiment);
    when the two disagree it falls back to whole passes."""
    model = tiny_model(family, vocab_size=len(tok))
    kw = dict(samples=3, noise=0.2, window=2, batch_rows=12)
    fast = {k: causal_trace.trace_important_states(model, tok, PROMPT, SUBJECT, kind=k, **kw) for k in causal_trace.KINDS}
    whole_calls = []
    full_pass = causal_trace._full_pass_scores

    def counted(*a, **k):
        whole_calls.append(1)
        return full_pass(*a, **k)

    monkeypatch.setattr(causal_trace, "_full_pass_scores", counted)
    # a tail path that disagrees (as on an architecture whose blocks need more than the captured
    # arguments) is detected on the first batch and every batch then runs whole
    monkeypatch.setattr(causal_trace, "_tail_pass_scores", lambda *a, **k: [0.5] * len(a[-2]))
    for k in causal_trace.KINDS:
        whole_calls.clear()
        slow = causal_trace.trace_important_states(model, tok, PROMPT, SUBJECT, kind=k, **kw)
        assert len(whole_calls) > 1
        assert np.allclose(fast[k]["scores"], slow["scores"], rtol=1e-4, atol=1e-7), (family, k)
        assert fast[k]["low_score"] == pytest.approx(slow["low_score"], rel=1e-5)
    monkeypatch.undo()
    monkeypatch.setattr(causal_trace, "_full_pass_scores", counted)
    whole_calls.clear()
    causal_trace.trace_important_states(model, tok, PROMPT, SUBJECT, kind="mlp", **kw)
    assert len(whole_calls) == 1        # the agreeing tail path serves every batch after the first
    # tail_passes=False: every batch whole, as rome does (bench.py --stages trace), the same scores
    monkeypatch.setattr(causal_trace, "_tail_pass_scores", lambda *a, **k: pytest.fail("a tail pass with tail_passes=False"))
    whole_calls.clear()
    whole = causal_trace.trace_important_states(model, tok, PROMPT, SUBJECT, kind="mlp", tail_passes=False, **kw)
    assert len(whole_calls) > 1
    assert np.allclose(fast["mlp"]["scores"], whole["scores"], rtol=1e-4, atol=1e-7), family


def test_an_answer_token_copied_from_the_subject_is_recognised():
    from unedit_lib.tracing import records as trace_records

    fact = lambda o: {"hidden": {"answer_token": o}, "subject": "Nikolai Abilov"}  # noqa: E731
    assert trace_records.answer_token_in_subject(fact(" N"))          # 'N' of 'Nikolai', copied
    assert not trace_records.answer_token_in_subject(fact(" The"))
    assert not trace_records.answer_token_in_subject(fact(" "))       # a bare space is no piece of a name


def test_the_subject_effect_check_names_answer_tokens_copied_from_the_subject(tok):
    """Notebook 01's short check of ROME's premise marks the rows whose scored token is a piece of
    the subject's name (the model copies it rather than recalls through the subject)."""
    assert causal_trace.token_in_subject(" Blue", "Blue Moon") and not causal_trace.token_in_subject(" ", "Blue Moon")
    model = tiny_model("llama", vocab_size=len(tok))
    rows = [{"question": "Who wrote Blue Moon?", "subject": "Blue Moon", "answer": "Blue Moon was written by Jane Doe."},
            {"question": "Who wrote Blue Moon?", "subject": "Blue Moon", "answer": "Jane Doe wrote Blue Moon."}]
    table = causal_trace.subject_last_token_effect(model, tok, rows, template="qa", samples=2)["table"]
    from unedit_lib.core.prompts import get_template
    scored = [tok.decode(tok(get_template("qa").answer(r["answer"]), add_special_tokens=False)["input_ids"][:1])
              for r in rows]                    # the token the check scores: the answer's first
    assert table["answer token"].tolist() == scored
    assert table["copied from the subject"].tolist() == [causal_trace.token_in_subject(t, "Blue Moon") for t in scored]
    assert causal_trace.token_in_subject(" Moon", "Blue Moon") and not causal_trace.token_in_subject(" Jane", "Blue Moon")


def test_the_subject_effect_summary_gives_the_first_subject_tokens_peak_beside_the_last_ones():
    """Notebook 02's finding compares the last subject token (ROME's premise) with the first (where a
    copied name shows up); both peaks come from the same averaged trace."""
    n_layers = 4
    aie = np.zeros((len(causal_trace.GROUP_LABELS), n_layers))
    aie[causal_trace.GROUP_LABELS.index("First subject token")] = [0.5, 0.6, 0.2, 0.0]
    aie[causal_trace.GROUP_LABELS.index("Last subject token")] = [0.0, 0.05, 0.1, 0.0]
    avg = {"te": 0.8, "low_score": 0.1, "high_score": 0.9, "n": 4, "aie": aie, "ci95": np.full_like(aie, 0.02)}
    out = causal_trace.subject_effect_summary(avg)
    assert (out["hidden_first_subject_peak"], out["hidden_first_subject_layer"]) == (pytest.approx(0.6), 1)
    assert (out["hidden_subject_peak"], out["hidden_subject_layer"]) == (pytest.approx(0.1), 2)
    assert out["clear"] is True          # 0.1 - 0.02 > 0 and 0.1 >= 0.1 x 0.8
