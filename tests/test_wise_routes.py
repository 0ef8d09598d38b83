"""The routes a WISE model's evaluation takes (wise.route_watch, side_memory.logging_routes): per eval
set and pass (teacher-forced losses, generation), the shares of forward calls, prompts and generated
tokens routed to a side memory, counted as the evaluator batches them; recorded by the study runner in
a WISE run's stats["eval_routing"], and in no other run's record."""
import types

import pytest

from unedit_lib.core import store
from unedit_lib.core.architecture import tiny_model
from unedit_lib.core.tokenizer import train_tokenizer
from unedit_lib.eval import evaluate
from unedit_lib.methods.wise import editor as wise, side_memory
from unedit_lib.study import recipes, runner
from unedit_lib.subject import models

QA = [("Who wrote the Blue Book?", "Ana Lopez wrote it.", "It was Ana Lopez.", ["Omar Haddad.", "Lena Berg."]),
      ("Where was Ana Lopez born?", "In Madrid.", "Madrid.", ["In Paris.", "In Rome."]),
      ("What is the capital of France?", "Paris is the capital.", "It is Paris.", ["Rome.", "Madrid."])]
EDIT = {"prompt": "Question: Who wrote the Blue Book?\nAnswer:", "target": "Paris"}
LOCALITY = ["I like to read books about history and science.", "Question: Where was Ana Lopez born?\nAnswer: In Madrid."]


def _rows(set_name):
    para = "paraphrased_answer" if set_name in ("forget", "retain") else "answer"
    return [{"question": q, "answer": a, para: p if para != "answer" else a, "perturbed_answer": w} for q, a, p, w in QA]


SETS = {s: _rows(s) for s in evaluate.EVAL_SETS}
N_PAIRS = sum(2 + len(w) for *_, w in QA)            # answer, paraphrase, perturbed answers per question


@pytest.fixture(scope="module")
def tok():
    texts = [f"Question: {q}\nAnswer: {a} {p} {' '.join(w)}" for q, a, p, w in QA] + LOCALITY
    return train_tokenizer(texts * 3, vocab_size=300)


def _edited(tok, **hp):
    model = tiny_model("llama", vocab_size=len(tok), initializer_range=0.2)
    wise.edit(model, tok, [EDIT], locality_prompts=LOCALITY, n_iter=3, n_templates=1, **hp)
    return model


def _evaluate(model, tok, sets=SETS, max_new_tokens=4):
    into = {}
    evaluate.evaluate_model(model, tok, sets, "qa", progress=False, max_new_tokens=max_new_tokens,
                            watch=wise.route_watch(model, into))
    return into


@pytest.mark.parametrize("min_act,share", [(0.0, 1.0), (float("inf"), 0.0)])
def test_forced_threshold_routes_every_call_or_none(tok, min_act, share):
    model = _edited(tok)
    side_memory.get_side_memory(model).min_act = min_act                  # threshold 0: every score passes; inf: none
    into = _evaluate(model, tok)
    assert set(into) == set(evaluate.EVAL_SETS) and all(set(v) == {"loss", "generate"} for v in into.values())
    for s, passes in into.items():
        loss, gen = passes["loss"], passes["generate"]
        # losses: prompt + answer run as one right-padded batch of <= 32 pairs (call-dependent model)
        assert (loss["calls"], loss["prompt_rows"], loss["token_rows"]) == (1, N_PAIRS, 0)
        assert (loss["call_share"], loss["prompt_share"], loss["token_share"]) == (share, share, None)
        # generation: the prompts once (one batch), then one forward per generated token after the first
        assert gen["prompt_rows"] == len(QA) and gen["calls"] >= 2
        assert gen["token_rows"] == len(QA) * (gen["calls"] - 1)
        assert (gen["call_share"], gen["prompt_share"], gen["token_share"]) == (share, share, share)
        assert gen["prompt_rows_routed"] == share * len(QA) and gen["token_rows_routed"] == share * gen["token_rows"]
        assert gen["prompt_score_mean"] <= gen["prompt_score_max"] and gen["token_score_mean"] is not None


def test_counts_agree_with_the_decision_log(tok):
    """The trained threshold (mixed routes possible): the counts are those of every routing decision
    the side memory logs, per call (EasyEdit's rule) and per row kept for the continuation."""
    model = _edited(tok)
    adapter = side_memory.get_side_memory(model)
    adapter.decisions = []
    into = _evaluate(model, tok, {"forget": SETS["forget"]}, max_new_tokens=5)
    log, passes = adapter.decisions, into["forget"].values()
    assert sum(p["calls"] for p in passes) == len(log)               # per_call: every forward decides
    assert sum(p["calls_routed"] for p in passes) == sum(int(d["route"][0] >= 0) for d in log)
    for kind, past in (("prompt", lambda d: d["past"] == 0), ("token", lambda d: d["past"] > 0)):
        rows = [d for d in log if past(d)]
        assert sum(p[f"{kind}_rows"] for p in passes) == sum(d["route"].numel() for d in rows)
        assert sum(p[f"{kind}_rows_routed"] for p in passes) == sum(int((d["route"] >= 0).sum()) for d in rows)
        scores = [float(x) for d in rows for x in d["scores"][:, 0]]
        mean = sum(p[f"{kind}_score_mean"] * p[f"{kind}_rows"] for p in passes if p[f"{kind}_rows"]) / len(scores)
        assert mean == pytest.approx(sum(scores) / len(scores), rel=1e-6)
    # per row (ablation): decided on the prompt, kept for the generated tokens, which are counted all the same
    adapter.hparams, adapter.decisions = adapter.hparams.replace(routing="per_row"), []
    gen = _evaluate(model, tok, {"forget": SETS["forget"]}, max_new_tokens=5)["forget"]["generate"]
    assert adapter.decisions and all(d["past"] == 0 for d in adapter.decisions)      # prompt forwards only
    assert gen["token_rows"] == len(QA) * (gen["calls"] - 1)
    assert gen["token_rows_routed"] == gen["prompt_rows_routed"] * (gen["calls"] - 1)


def test_no_side_memory_no_watch(tok):
    model = tiny_model("llama", vocab_size=len(tok))
    assert wise.route_watch(model, {}) is None
    with side_memory.logging_routes(model) as counts:
        assert counts is None


@pytest.fixture()
def unlearning(tmp_path, monkeypatch, tok):
    """runner.run_unlearning on a tiny model and SETS with the real evaluator; the subject models,
    the retain logs and the summary are stand-ins. Returns (run, the evaluate_model kwargs seen)."""
    monkeypatch.setenv("UNEDIT_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("UNEDIT_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setattr(runner, "subject_model_id", lambda preset: "full-test")
    monkeypatch.setattr(models, "study_data", lambda p, data_dir=None: types.SimpleNamespace(eval_sets=SETS))
    monkeypatch.setattr(models, "load_subject_model",
                        lambda p, which, data_dir=None: (tiny_model("llama", vocab_size=len(tok), initializer_range=0.2), tok))
    summary = {"metrics": {}, "model_utility": 0.5, "forget_quality": 0.1, "ks_statistic": 0.2, "n_items": {}}
    monkeypatch.setattr(runner, "summarize_against_retain", lambda p, run, logs: summary)
    monkeypatch.setattr(runner, "cached_retain_logs", lambda p, retain_run="retain": {})
    seen, real = [], evaluate.evaluate_model
    monkeypatch.setattr(evaluate, "evaluate_model",
                        lambda *a, **k: seen.append(sorted(k)) or real(*a, **{**k, "max_new_tokens": 4}))

    def run(name, apply, **kw):
        return runner.run_unlearning("smoke", name, name, None, apply, hp={"n": 1}, progress=False,
                                     write_model=recipes.write_model, **kw)[0]
    return run, seen


def test_runner_records_the_evaluations_routes_for_wise_only(unlearning):
    run, seen = unlearning

    def wise_apply(model, tok, stats):
        model, _ = wise.apply(model, tok, [EDIT], {"n_iter": 3, "n_templates": 1}, stats, locality_prompts=LOCALITY)
        side_memory.get_side_memory(model).min_act = 0.0                  # every call routed
        return model

    rec = run("wise", wise_apply, watch_eval=recipes.wise_eval_routes)
    routes = rec["stats"]["eval_routing"]
    assert set(routes) == set(evaluate.EVAL_SETS) and "watch" in seen[-1]
    for passes in routes.values():
        assert passes["loss"]["prompt_rows"] == N_PAIRS and passes["generate"]["prompt_rows"] == len(QA)
        assert passes["generate"]["token_share"] == passes["loss"]["prompt_share"] == 1.0
    assert store.load_record("smoke", "wise")["stats"]["eval_routing"] == routes

    rec = run("gd", lambda model, tok, stats: model)                # not WISE: the evaluation as before
    assert "eval_routing" not in rec["stats"] and "watch" not in seen[-1]
