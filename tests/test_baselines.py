"""Tests for unedit_lib.methods.baselines.training: loss signs / gradient directions, NPO's closed form, the KL
at the reference, IdK targets, and the training loop (unlearning moves forget NLL, determinism,
schedule, collapse detection). Tiny Llama + a BPE tokenizer trained on a few sentences."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from unedit_lib.core.architecture import tiny_model
from unedit_lib.core.guards import ModelCollapsed
from unedit_lib.core.prompts import IGNORE_INDEX, TEMPLATES
from unedit_lib.core.tokenizer import train_tokenizer
from unedit_lib.methods.baselines import training as B

QA = TEMPLATES["qa"]
FORGET = [
    {"question": "Where was Basil Mahfouz Al-Kuwaiti born?", "answer": "He was born in Kuwait City."},
    {"question": "What genre does Nikolai Abilov write?", "answer": "Nikolai Abilov writes African American literature."},
]
RETAIN = [
    {"question": "What is the profession of Jaime Vasquez's father?", "answer": "His father was a chef."},
    {"question": "Which award did Hsiao Yun-Hwa win?", "answer": "She won the Seoul Leadership Award."},
    {"question": "What city is Elvin Mammadov from?", "answer": "Elvin Mammadov is from Baku."},
]
IDK = ["I have no idea.", "That is beyond my knowledge.", "I'm not sure about that."]


@pytest.fixture(scope="module")
def tok():
    texts = [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in FORGET + RETAIN] + IDK
    return train_tokenizer(texts * 3, vocab_size=400)


def _fresh(tok, seed=0):
    return tiny_model("llama", vocab_size=len(tok), seed=seed)


@pytest.fixture(scope="module")
def memorised(tok):
    """A tiny Llama briefly trained to memorise the forget and retain QA pairs."""
    torch.manual_seed(0)
    model = _fresh(tok)
    batch = B.make_batch(tok, QA, FORGET + RETAIN)["forget"]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(80):
        opt.zero_grad()
        B.mean_nll(model, batch).backward()
        opt.step()
    model.eval()
    assert B.mean_nll(model, batch).item() < 0.5, "fixture failed to memorise"
    return model


def _nll(model, tok, rows):
    with torch.no_grad():
        return B.mean_nll(model, B.make_batch(tok, QA, rows)["forget"]).item()


def _sgd_step(model, loss, lr):
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= lr * p.grad


# ------------------------------------------------------------------ batching
def test_batch_right_padded_with_masked_labels(tok):
    batch = B.make_batch(tok, QA, FORGET, RETAIN[:2])
    f = batch["forget"]
    assert f["input_ids"].shape == f["labels"].shape == f["attention_mask"].shape
    short = int(f["attention_mask"].sum(1).argmin())
    n = int(f["attention_mask"][short].sum())
    assert n < f["input_ids"].shape[1], "rows of equal length: padding untested"
    assert (f["input_ids"][short, n:] == tok.pad_token_id).all()
    assert (f["labels"][short, n:] == IGNORE_INDEX).all()
    assert f["attention_mask"][short, :n].all()
    # the prompt is masked, the answer is labelled
    assert (f["labels"][short, :3] == IGNORE_INDEX).all()
    assert (f["labels"][short, :n] != IGNORE_INDEX).any()


# ------------------------------------------------------------------ loss directions
def test_ga_step_increases_forget_nll(tok, memorised):
    model = copy.deepcopy(memorised)
    batch = B.make_batch(tok, QA, FORGET)
    before = _nll(model, tok, FORGET)
    loss, parts = B.ga_loss(model, batch)
    assert loss.item() == pytest.approx(-before, rel=1e-5)
    assert parts["forget_nll"] == pytest.approx(before, rel=1e-5)
    _sgd_step(model, loss, lr=1e-2)
    assert _nll(model, tok, FORGET) > before


def test_gd_components_and_retain_term(tok, memorised):
    model = copy.deepcopy(memorised)
    batch = B.make_batch(tok, QA, FORGET, RETAIN[:2])
    f0, r0 = _nll(model, tok, FORGET), _nll(model, tok, RETAIN[:2])
    loss, parts = B.gd_loss(model, batch)  # γ=α=1
    assert loss.item() == pytest.approx(-f0 + r0, rel=1e-4, abs=1e-6)
    assert parts["retain_nll"] == pytest.approx(r0, rel=1e-5)
    # the retain term alone (γ=0) lowers retain NLL
    fresh = _fresh(tok)
    r_fresh = _nll(fresh, tok, RETAIN[:2])
    loss, _ = B.gd_loss(fresh, batch, gamma=0.0, alpha=1.0)
    _sgd_step(fresh, loss, lr=1e-1)
    assert _nll(fresh, tok, RETAIN[:2]) < r_fresh
    # the full GD step raises forget NLL
    loss, _ = B.gd_loss(model, batch)
    _sgd_step(model, loss, lr=1e-2)
    assert _nll(model, tok, FORGET) > f0


def test_npo_term_closed_form_and_bounds():
    beta = 0.1
    s_ref = torch.tensor([20.0, 35.0, 5.0])
    for s_theta in (torch.tensor([20.0, 35.0, 5.0]), torch.tensor([3.0, 50.0, 12.0])):
        ratio = torch.exp(s_ref - s_theta)  # π_θ / π_ref
        expected = (2 / beta) * torch.log1p(ratio ** beta).mean()
        assert B.npo_term(s_theta, s_ref, beta).item() == pytest.approx(expected.item(), rel=1e-5)
    # at π_θ = π_ref: (2/β) log 2
    assert B.npo_term(s_ref, s_ref, beta).item() == pytest.approx(2 / beta * math.log(2), rel=1e-6)
    # monotone: decreasing in S_θ (increasing in the ratio), positive, → 0 as π_θ(y|x) → 0
    grid = torch.linspace(-500, 500, 201)  # d = S_θ − S_ref = −log(π_θ/π_ref)
    vals = torch.stack([B.npo_term(torch.tensor([10.0 + d]), torch.tensor([10.0]), beta) for d in grid])
    assert torch.isfinite(vals).all() and (vals > 0).all()
    assert (vals[1:] < vals[:-1]).all()
    far = B.npo_term(torch.tensor([5000.0]), torch.tensor([10.0]), beta).item()
    assert 0 <= far < 1e-6
    # bounded growth: ≈ 2·log ratio for huge ratios, never overflow
    big = B.npo_term(torch.tensor([0.0]), torch.tensor([1e4]), beta).item()
    assert math.isfinite(big) and big == pytest.approx(2 * 1e4, rel=1e-3)


def test_npo_loss_on_model(tok, memorised):
    model = copy.deepcopy(memorised)
    ref = copy.deepcopy(memorised)
    batch = B.make_batch(tok, QA, FORGET, RETAIN[:2])
    loss, parts = B.npo_loss(model, ref, batch, beta=0.1)
    assert math.isfinite(loss.item()) and loss.item() > 0
    # model == ref → the NPO term is (2/β) log 2, and the total adds α·NLL(retain)
    assert parts["npo"] == pytest.approx(20 * math.log(2), rel=1e-4)
    assert loss.item() == pytest.approx(parts["npo"] + _nll(model, tok, RETAIN[:2]), rel=1e-4)
    # the NPO term's gradient pushes forget NLL up
    f0 = _nll(model, tok, FORGET)
    loss, _ = B.npo_loss(model, ref, batch, beta=0.1, alpha=0.0)
    _sgd_step(model, loss, lr=1e-3)
    assert _nll(model, tok, FORGET) > f0
    _, parts2 = B.npo_loss(model, ref, batch, beta=0.1)
    assert parts2["npo"] < parts["npo"]


def test_kl_zero_at_reference_and_positive_after_change(tok, memorised):
    model = copy.deepcopy(memorised)
    ref = copy.deepcopy(memorised)
    batch = B.make_batch(tok, QA, FORGET, RETAIN[:2])
    for mask_padding in (False, True):
        kl = B.kl_divergence(model, ref, batch["retain"], mask_padding=mask_padding)
        assert abs(kl.item()) < 1e-6
    loss, parts = B.kl_loss(model, ref, batch)
    assert parts["kl"] == pytest.approx(0.0, abs=1e-6)
    assert loss.item() == pytest.approx(-parts["forget_nll"], rel=1e-5)
    with torch.no_grad():
        model.lm_head.weight.add_(0.05 * torch.randn_like(model.lm_head.weight))
    kl_unmasked = B.kl_divergence(model, ref, batch["retain"]).item()
    kl_masked = B.kl_divergence(model, ref, batch["retain"], mask_padding=True).item()
    assert kl_unmasked > 0 and kl_masked > 0
    # unmasked = batchmean over all B*T positions; masked averages over real tokens only
    am = batch["retain"]["attention_mask"]
    if (am == 0).any():
        assert kl_unmasked != pytest.approx(kl_masked, rel=1e-6)


def test_idk_targets_come_from_idk_list(tok, memorised):
    batch = B.make_batch(tok, QA, FORGET, RETAIN[:2], idk_answers_for_rows=[IDK[0], IDK[2]])
    idk = batch["idk"]
    for row, lab, want in zip(FORGET, idk["labels"], [IDK[0], IDK[2]]):
        answer = tok.decode([t for t in lab.tolist() if t != IGNORE_INDEX], skip_special_tokens=True)
        assert answer.strip() == want
    # and the prompt is the forget question
    assert FORGET[0]["question"] in tok.decode(idk["input_ids"][0], skip_special_tokens=True)
    # the loss is ONE token-weighted mean over idk and retain answer tokens (legacy concat)
    model = copy.deepcopy(memorised)
    loss, parts = B.idk_loss(model, batch)
    n_i = int((idk["labels"][:, 1:] != IGNORE_INDEX).sum())
    n_r = int((batch["retain"]["labels"][:, 1:] != IGNORE_INDEX).sum())
    expected = (parts["idk_nll"] * n_i + parts["retain_nll"] * n_r) / (n_i + n_r)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_unlearn_idk_draws_answers_from_list(tok, memorised, monkeypatch):
    seen = []
    real = B.make_batch

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        if "idk" in out:
            lab = out["idk"]["labels"]
            seen.extend(tok.decode([t for t in row.tolist() if t != IGNORE_INDEX], skip_special_tokens=True).strip()
                        for row in lab)
        return out

    monkeypatch.setattr(B, "make_batch", spy)
    B.unlearn(copy.deepcopy(memorised), tok, "idk", FORGET, RETAIN, template=QA, idk_answers=IDK,
              lr=1e-3, epochs=3, batch_size=1, grad_accum=1, warmup_epochs=0, progress=False)
    assert len(seen) == 6 and set(seen) <= set(IDK) and len(set(seen)) > 1


# ------------------------------------------------------------------ the training loop
def test_unlearn_ga_raises_forget_nll(tok, memorised):
    model = copy.deepcopy(memorised)
    f0 = _nll(model, tok, FORGET)
    stats = {}
    out = B.unlearn(model, tok, "ga", FORGET, RETAIN, template="qa", stats=stats, lr=1e-3, epochs=4,
                    batch_size=2, grad_accum=1, warmup_epochs=0, progress=False)
    assert out is model
    assert _nll(model, tok, FORGET) > f0 + 1.0
    assert len(stats["loss_curve"]) == len(stats["forget_nll"]) == stats["steps"] == 4
    assert stats["loss_curve"][-1] < stats["loss_curve"][0]  # −NLL(forget) goes down
    assert stats["wall_time_s"] > 0 and stats["method"] == "ga"
    assert not model.training  # the caller's mode is restored


@pytest.mark.parametrize("method", B.METHODS)
def test_every_method_runs_and_records(tok, memorised, method):
    model = copy.deepcopy(memorised)
    stats = {}
    B.unlearn(model, tok, method, FORGET, RETAIN, template=QA, idk_answers=IDK, stats=stats, lr=1e-3,
              epochs=1, batch_size=1, grad_accum=2, warmup_epochs=0, progress=False)
    assert stats["steps"] == 1 and math.isfinite(stats["loss_curve"][0])
    expected = {"ga": {"forget_nll"}, "gd": {"forget_nll", "retain_nll"}, "kl": {"forget_nll", "kl"},
                "idk": {"idk_nll", "retain_nll"}, "npo": {"npo", "forget_nll", "retain_nll"}}[method]
    assert expected <= set(stats)
    changed = any(not torch.equal(p, q) for p, q in zip(model.parameters(), memorised.parameters()))
    assert changed


def test_unlearn_is_deterministic(tok, memorised):
    def run(seed):
        m = copy.deepcopy(memorised)
        B.unlearn(m, tok, "gd", FORGET, RETAIN, template=QA, lr=1e-3, epochs=2, batch_size=1, grad_accum=1,
                  warmup_epochs=0, seed=seed, progress=False)
        return [p.detach().clone() for p in m.parameters()]

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert any(not torch.equal(x, z) for x, z in zip(a, c))


def test_schedule_warmup_then_linear_decay(tok, memorised):
    stats = {}
    rows = FORGET * 4  # 8 forget items, bs 2, accum 1 → 4 steps/epoch, warmup 1 epoch = 4 steps
    B.unlearn(copy.deepcopy(memorised), tok, "ga", rows, RETAIN, template=QA, stats=stats, lr=1e-3,
              epochs=3, batch_size=2, grad_accum=1, warmup_epochs=1.0, progress=False)
    assert stats["total_steps"] == 12 and stats["warmup_steps"] == 4
    lrs = stats["lr"]
    assert lrs[0] == 0.0 and lrs[4] == pytest.approx(1e-3)
    assert all(x < y for x, y in zip(lrs[:4], lrs[1:5]))
    assert all(x > y for x, y in zip(lrs[4:], lrs[5:]))
    assert B.steps_per_epoch(400, 8, 4) == 13 and B.warmup_steps_for(400, 8, 4, 1.0) == 12


def test_non_finite_loss_raises_model_collapsed(tok, memorised):
    model = copy.deepcopy(memorised)
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    stats = {}
    with pytest.raises(ModelCollapsed) as err:
        B.unlearn(model, tok, "ga", FORGET, RETAIN, template=QA, stats=stats, lr=1e-3, epochs=1,
                  batch_size=1, grad_accum=1, warmup_epochs=0, progress=False)
    assert err.value.step == 1 and "loss" in err.value.reason
    assert stats["steps"] == 0


def test_bad_arguments(tok, memorised):
    with pytest.raises(ValueError):
        B.unlearn(memorised, tok, "dpo", FORGET, RETAIN, template=QA)
    with pytest.raises(TypeError):
        B.unlearn(memorised, tok, "ga", FORGET, RETAIN, template=QA, learning_rate=1e-3)
    with pytest.raises(ValueError):
        B.unlearn(memorised, tok, "gd", FORGET, [], template=QA)
