"""ROME (unedit_lib.methods.rome.editor) on tiny models: rank-one update, the edit itself, C vs I, layouts, guards."""
import pytest
import torch

from unedit_lib.core.architecture import TailForward, architecture, tiny_model
from unedit_lib.core.guards import ModelCollapsed
from unedit_lib.core.tokenizer import train_tokenizer
from unedit_lib.eval import edit_metrics as em
from unedit_lib.methods.rome import editor as rome
from unedit_lib.study import rome_grid

FACTS = [("Moon", "Jane"), ("Sky", "Tom"), ("Hill", "Ana"), ("Road", "Max"), ("Sea", "Eve"), ("Lake", "Bob")]
SENTS = [f"Who wrote {b}? {a}." for b, a in FACTS] + [f"The book {b} is by {a}." for b, a in FACTS]
UNRELATED = ["A cat sat on the mat and looked at the bird.", "The quick brown fox jumps over the lazy dog.",
             "Rain fell on the old town all night long.", "She sold sea shells by the sea shore today.",
             "Numbers like 42 and 7 are fun to add.", "Green apples are sour but red ones are sweet."]
FAST = dict(v_num_grad_steps=3, context_template_length_params=[[5, 5]])  # 6 templates, 3 steps
REQ = dict(prompt="Who wrote Moon?", subject="Moon", target="Ana")


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(SENTS * 5 + UNRELATED, vocab_size=360)


@pytest.fixture(scope="module")
def trained_llama_state(tok):
    """A tiny Llama trained on the facts, so that the subject drives the next token.

    Trained to convergence (loss ~0.2805, the floor these sentences allow), so that every CPU gets
    the same model: 60 steps at lr 1e-2 stopped mid-trajectory, where AVX2 and AVX512 kernels'
    rounding gave two different models, and the layer-2 edits below took on one and not on the
    other. With 200 steps at lr 3e-3 the edits take on all of init seeds 0-7, with either kernel set."""
    model = tiny_model("llama", vocab_size=len(tok))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    ids, mask = rome._right_pad([tok(s)["input_ids"] + [tok.eos_token_id] for s in SENTS], tok.pad_token_id, "cpu")
    labels = ids.masked_fill(mask == 0, -100)
    for _ in range(200):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _trained_llama(tok, state):
    model = tiny_model("llama", vocab_size=len(tok))
    model.load_state_dict(state)
    return model.eval()


def test_edit_metrics_of_each_prompt_group_start_with_their_own_accuracy_before_the_edit(tok, trained_llama_state):
    """em.with_edit_metrics with groups (WISE's edit-time and evaluator prompts): each group
    records its rewrite accuracy before the edit beside its metrics after, and a collapsed edit
    still leaves the before values."""
    model = _trained_llama(tok, trained_llama_state)
    req = dict(prompt="Who wrote Moon", subject="Moon", target="Ana")
    groups = {"edit prompt": ([req], " "), "evaluator prompt": ([dict(req, prompt="Who wrote Moon", target="Tom Ana")], " ")}
    pre = {name: em.rewrite_accuracy(model, tok, r[0][0]["prompt"], r[0][0]["target"]) for name, r in groups.items()}
    hp = rome.PAPER_HPARAMS.with_ablations("v_lr-0.5")

    def run_method(m, t, stats):
        return rome.edit(m, t, [req], hp=hp, layer=2, stats=stats, v_num_grad_steps=50, clamp_norm_factor=8.0)

    out: dict = {}
    em.with_edit_metrics(run_method, [req], [("Who wrote Sky?", "Tom")], " ", out, groups)(model, tok, {})
    assert set(out) == set(groups)
    for name in groups:
        assert out[name]["pre_rewrite_acc"] == [pre[name]] and out[name]["pre_rewrite_acc_mean"] == pre[name]
        assert out[name]["n_edits"] == 1 and len(out[name]["locality"]) == 1
    assert out["edit prompt"]["pre_rewrite_acc_mean"] == 0.0 and out["edit prompt"]["rewrite_acc_mean"] == 1.0

    def collapse(m, t, stats):
        raise ModelCollapsed(0, "test")

    kept: dict = {}
    with pytest.raises(ModelCollapsed):
        em.with_edit_metrics(collapse, [req], None, " ", kept, groups)(_trained_llama(tok, trained_llama_state),
                                                                            tok, {})
    assert {name: v["pre_rewrite_acc_mean"] for name, v in kept.items()} == pre


def _greedy_next(model, tok, prompt):
    with torch.no_grad():
        return int(model(input_ids=torch.tensor([tok(prompt)["input_ids"]])).logits[0, -1].argmax())


def _keys(model, tok, layer, texts):
    arch, got = architecture(model), []
    h = arch.mlp_out(layer).register_forward_pre_hook(lambda m, inp: got.append(inp[0][0].detach()))
    with torch.no_grad():
        for t in texts:
            model(input_ids=torch.tensor([tok(t)["input_ids"]]))
    h.remove()
    return torch.cat(got)


def _random_texts(tok, n, seed, length=12):
    gen = torch.Generator().manual_seed(seed)
    return [tok.decode(torch.randint(2, len(tok), (length,), generator=gen).tolist()) for _ in range(n)]


# ---------------------------------------------------------------------- (a) the edit
def test_edit_is_rank_one_and_rewrites_completion(tok, trained_llama_state):
    model = _trained_llama(tok, trained_llama_state)
    # the subject ends the prompt here: a tiny model has no subject-to-answer attention circuit
    req = dict(prompt="Who wrote Moon", subject="Moon", target="Ana")
    target_id = tok(" Ana", add_special_tokens=False)["input_ids"]
    assert len(target_id) == 1
    before = _greedy_next(model, tok, req["prompt"])
    assert before != target_id[0]
    assert em.rewrite_accuracy(model, tok, req["prompt"], req["target"]) == 0.0
    loc_items = [("Who wrote Sky?", "Tom"), ("The book Lake is by", "Bob")]
    pre_loc = em.locality_predictions(model, tok, loc_items)

    arch = architecture(model)
    w0 = arch.mlp_out_weight(2).detach().clone()
    stats = {}
    # clamp 8 and v_lr 0.5 (the named ablation), not the paper's 4 and 0.1: with the paper's values the
    # edit takes on this model but not on every init seed (3 of seeds 0-7 miss; ||δ|| is clamped to
    # 4 ||target_init||); with these it takes on all 8, by 2 nats or more. The rank-one algebra is
    # what this test checks.
    hp = rome.PAPER_HPARAMS.with_ablations("v_lr-0.5")
    out = rome.edit(model, tok, [req], hp=hp, layer=2, stats=stats, v_num_grad_steps=50, clamp_norm_factor=8.0)
    assert out is model
    delta = arch.mlp_out_weight(2).detach() - w0
    assert torch.linalg.matrix_rank(delta).item() == 1
    assert _greedy_next(model, tok, req["prompt"]) == target_id[0]
    m = em.edit_metrics(model, tok, [dict(req, paraphrase="Who wrote Moon")], loc_items, pre_loc)
    assert m["rewrite_acc"] == [1.0] and m["rephrase_acc_mean"] == 1.0
    assert len(m["locality"]) == 2 and all(0.0 <= x <= 1.0 for x in m["locality"])
    # stats: one entry per edit, 21 templates (1 + 10 + 10), the update norm recorded
    assert len(stats["context_templates"]) == 21 and stats["context_templates"][0] == "{}"
    assert all(t.endswith(". {}") for t in stats["context_templates"][1:])
    for key in ("edit_times_s", "delta_norms", "target_loss", "final_loss", "v_steps", "denominators"):
        assert len(stats[key]) == 1
    assert stats["delta_norms"][0] == pytest.approx(float(delta.norm()), rel=1e-4)
    assert stats["target_loss"][0] < 0.5 and stats["layer"] == 2
    # every hyperparameter is recorded, the ablation's name included
    changed = {"v_lr": 0.5, "layer": 2, "v_num_grad_steps": 50, "clamp_norm_factor": 8.0}
    assert stats["hparams"] == {**rome.RomeHParams().record(), **changed, "ablation": "v_lr-0.5",
                                "deviations_from_paper": {k: {"value": v, "paper": getattr(rome.PAPER_HPARAMS, k)}
                                                          for k, v in changed.items()}}


def test_sequential_edits_and_determinism(tok):
    model = tiny_model("llama", vocab_size=len(tok))
    arch = architecture(model)
    w0 = arch.mlp_out_weight(2).detach().clone()
    reqs = [REQ, dict(prompt="The book Sky is by", subject="Sky", target="Bob")]
    stats = {}
    rome.edit(model, tok, reqs, layer=2, stats=stats, **FAST)
    total = arch.mlp_out_weight(2).detach() - w0
    assert torch.linalg.matrix_rank(total).item() == 2
    assert len(stats["edit_times_s"]) == 2
    again = tiny_model("llama", vocab_size=len(tok))
    rome.edit(again, tok, reqs, layer=2, **FAST)
    assert torch.equal(architecture(again).mlp_out_weight(2), arch.mlp_out_weight(2))
    # layer is clamped to the depth; unknown hparams are refused
    st = {}
    rome.edit(tiny_model("llama", vocab_size=len(tok)), tok, [REQ], layer=50, stats=st, **FAST)
    assert st["layer"] == 3
    with pytest.raises(TypeError):
        rome.edit(model, tok, [REQ], layer=1, v_lrr=0.1)


# ---------------------------------------------------------------------- (b) C = E[kk^T] vs C = I
def test_second_moment_protects_unrelated_keys(tok, tmp_path):
    model = tiny_model("llama", vocab_size=len(tok))
    layer = 1
    corpus = _random_texts(tok, 80, seed=0) + UNRELATED + SENTS  # ~1000 keys for d_ff = 128
    cov = rome.layer_second_moment(model, tok, layer, corpus, cache_dir=tmp_path)
    keys = _keys(model, tok, layer, corpus)
    assert torch.allclose(cov, keys.double().T.matmul(keys.double()).float() / len(keys), rtol=1e-4, atol=1e-7)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    assert torch.equal(rome.layer_second_moment(model, tok, layer, corpus, cache_dir=tmp_path), cov)
    (cache,) = tmp_path.glob("*_mom2.safetensors")
    assert not list(tmp_path.glob(".*tmp*"))                       # written atomically
    cache.write_bytes(cache.read_bytes()[:50])                    # a truncated cache: named, then rebuilt
    with pytest.warns(UserWarning, match=str(cache)):
        assert torch.equal(rome.layer_second_moment(model, tok, layer, corpus, cache_dir=tmp_path), cov)
    assert torch.equal(rome.layer_second_moment(model, tok, layer, corpus, cache_dir=tmp_path), cov)

    templates = rome.context_templates(model, tok, [[5, 5]])
    hp = rome.RomeHParams(**FAST, consistent_keys=True)
    dw_i, res_i = rome.rome_update(model, tok, REQ, layer, templates, hp, cov=None)
    dw_c, res_c = rome.rome_update(model, tok, REQ, layer, templates, hp, cov=cov)
    assert torch.allclose(res_i["v_star"], res_c["v_star"])  # v* does not depend on u
    assert torch.allclose(dw_i @ res_i["k_ref"], dw_c @ res_c["k_ref"], rtol=1e-3, atol=1e-5)  # same edit

    def moved(dw, texts):
        return (_keys(model, tok, layer, texts) @ dw.T).norm(dim=1).pow(2).mean()

    assert moved(dw_c, corpus) < 0.5 * moved(dw_i, corpus)
    held_out = _random_texts(tok, 10, seed=1) + ["The old dog sat by the lazy cat.", "Red apples fell on the mat."]
    assert moved(dw_c, held_out) < moved(dw_i, held_out)

    # edit() with mom2_adjustment computes C itself (cached) and gives the same update
    w0 = architecture(model).mlp_out_weight(layer).detach().clone()
    rome.edit(model, tok, [REQ], layer=layer, mom2_adjustment=True, mom2_texts=corpus, mom2_cache_dir=tmp_path,
              consistent_keys=True, context_templates=templates, **FAST)
    assert torch.allclose(architecture(model).mlp_out_weight(layer) - w0, dw_c, atol=1e-5)
    with pytest.raises(ValueError):
        rome.edit(model, tok, [REQ], layer=layer, mom2_adjustment=True, **FAST)


# ---------------------------------------------------------------------- (c) layouts
@pytest.mark.parametrize("family", ["gpt2", "llama", "phi"])
@pytest.mark.parametrize("consistent", [False, True])
def test_update_orientation_per_family(tok, family, consistent):
    model = tiny_model(family, vocab_size=len(tok))
    arch = architecture(model)
    layer = 2
    storage0 = arch.mlp_out(layer).weight.detach().clone()
    templates = rome.context_templates(model, tok, [[5, 5]])
    hp = rome.RomeHParams(**FAST, consistent_keys=consistent)
    dw, res = rome.rome_update(model, tok, REQ, layer, templates, hp)
    d_out, d_in = arch.mlp_out_weight(layer).shape
    assert dw.shape == (d_out, d_in) and d_in > d_out  # (hidden, intermediate)
    arch.add_to_mlp_out_weight(layer, dw)
    # the stored weight changed in its own layout (Conv1D stores (in, out))
    stored_delta = arch.mlp_out(layer).weight.detach() - storage0
    assert stored_delta.shape == ((d_in, d_out) if family == "gpt2" else (d_out, d_in))
    assert torch.allclose(stored_delta, dw.T if family == "gpt2" else dw)
    if family == "phi":
        assert arch.mlp_out_bias(layer) is not None
    # (W + ΔW) k + b = v* at the key used in the update: the bare prompt's k0, or the template mean (R-ROME)
    filled = [rome._fill(t, REQ["prompt"], REQ["subject"]) for t in (templates if consistent else ["{}"])]
    k, out = rome._rewrite_io_at(model, tok, layer, filled, REQ["subject"])
    assert torch.allclose(k.mean(0), res["k_ref"], atol=1e-5)
    assert torch.allclose(out.mean(0), res["v_star"], rtol=1e-3, atol=1e-4)
    # edit() applies exactly this update
    fresh = tiny_model(family, vocab_size=len(tok))
    rome.edit(fresh, tok, [REQ], layer=layer, consistent_keys=consistent, context_templates=templates, **FAST)
    assert torch.allclose(architecture(fresh).mlp_out(layer).weight, arch.mlp_out(layer).weight, atol=1e-6)


@pytest.mark.parametrize("family", ["gpt2", "llama", "phi"])
@pytest.mark.parametrize("layer", [1, 3])
def test_v_star_from_the_blocks_above_equals_full_forwards(tok, family, layer, monkeypatch):
    """compute_v runs only the blocks above the edited one at each step (TailForward); the
    result is that of full forwards with the δ hook (the fallback, forced here), for a middle
    and the last layer."""
    model = tiny_model(family, vocab_size=len(tok))
    templates = rome.context_templates(model, tok, [[5, 5]])
    hp = rome.RomeHParams(v_num_grad_steps=6, context_template_length_params=[[5, 5]], v_lr=0.5)
    tail = rome.compute_v(model, tok, REQ, layer, templates, hp)
    real = TailForward

    class NotExact(real):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.exact = False

    monkeypatch.setattr(rome, "TailForward", NotExact)
    full = rome.compute_v(model, tok, REQ, layer, templates, hp)
    assert tail["steps"] == full["steps"] == 6
    assert torch.allclose(tail["target_init"], full["target_init"])
    assert torch.allclose(torch.tensor(tail["losses"]), torch.tensor(full["losses"]), rtol=1e-4, atol=1e-5)
    assert torch.allclose(tail["delta"], full["delta"], rtol=1e-3, atol=1e-5)
    assert tail["delta"].norm() > 0


# ---------------------------------------------------------------------- (e) guards
def test_nan_update_raises_model_collapsed(tok, monkeypatch):
    model = tiny_model("llama", vocab_size=len(tok))
    real = rome.compute_v
    calls = []

    def nan_on_second(*a, **kw):
        res = real(*a, **kw)
        calls.append(1)
        if len(calls) == 2:
            res["v_star"] = res["v_star"] * float("nan")
        return res

    monkeypatch.setattr(rome, "compute_v", nan_on_second)
    reqs = [REQ, dict(REQ, target="Bob")]
    with pytest.raises(ModelCollapsed) as e:
        rome.edit(model, tok, reqs, layer=1, **FAST)
    assert e.value.step == 1 and "non-finite" in e.value.reason


def test_nan_loss_and_norm_explosion_raise(tok):
    model = tiny_model("llama", vocab_size=len(tok))
    arch = architecture(model)
    w0 = arch.mlp_out_weight(1).detach().clone()
    templates = rome.context_templates(model, tok, [[5, 5]])
    h = arch.mlp(2).register_forward_hook(lambda m, i, o: o * float("nan"))
    with pytest.raises(ModelCollapsed) as e:
        rome.edit(model, tok, [REQ], layer=1, context_templates=templates, **FAST)
    h.remove()
    assert e.value.step == 0 and "loss" in e.value.reason
    assert torch.equal(arch.mlp_out_weight(1), w0)  # nothing applied when v* failed
    with pytest.raises(ModelCollapsed) as e:
        rome.edit(model, tok, [REQ], layer=1, max_norm_ratio=1.0 + 1e-9, **FAST)
    assert "grew" in e.value.reason


# ---------------------------------------------------------------------- (f) the paper's settings, ablations, v_lr gate
def test_paper_defaults_and_named_ablations():
    hp = rome.RomeHParams()
    # the paper's fork (shariqahn/EasyEdit hparams/ROME/llama-7b.yaml): C = I, v_lr 0.1, 21 templates, layer 5
    assert (hp.mom2_adjustment, hp.v_lr, hp.layer, hp.v_num_grad_steps, hp.clamp_norm_factor) == (False, 0.1, 5, 25, 4.0)
    assert hp.context_template_length_params == ((5, 10), (10, 10)) and hp.ablation is None
    old = hp.with_ablations("c-from-text", "v_lr-0.5", "templates-6")
    assert (old.mom2_adjustment, old.v_lr, old.context_template_length_params) == (True, 0.5, ((5, 5),))
    assert old.ablation == "c-from-text+v_lr-0.5+templates-6" and old.record()["ablation"] == old.ablation
    assert hp.record()["deviations_from_paper"] == {}
    assert set(old.record()["deviations_from_paper"]) == {"mom2_adjustment", "v_lr", "context_template_length_params"}
    assert hp.replace(v_lr=0.5).record()["deviations_from_paper"] == {"v_lr": {"value": 0.5, "paper": 0.1}}   # unnamed too
    assert rome.RomeHParams(context_template_length_params=[[5, 5]]) == hp.replace(context_template_length_params=((5, 5),))
    with pytest.raises(KeyError, match="known"):
        hp.with_ablations("v_lr-9")
    with pytest.raises(TypeError, match="v_lrr"):
        hp.replace(v_lrr=0.1)
    with pytest.raises(ValueError, match="fact_token"):
        rome.RomeHParams(fact_token="subject_middle")
    with pytest.raises(ValueError, match="v_lr"):
        rome.RomeHParams(v_lr=0)
    with pytest.raises(Exception):      # frozen
        hp.v_lr = 0.5


def test_v_lr_gate_picks_the_smallest_passing_grid_value(tok, trained_llama_state):
    model = _trained_llama(tok, trained_llama_state)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    req = dict(prompt="Who wrote Moon", subject="Moon", target="Ana")
    hp = rome.RomeHParams(layer=2, v_num_grad_steps=50, clamp_norm_factor=8.0, context_template_length_params=((5, 5),))
    out = rome_grid.smallest_v_lr_passing_gate(model, tok, [req], grid=(0.5, 0.01, 0.1, 2.0), hp=hp, stop_at_first=False)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())   # never edits its argument
    assert out["grid"] == [0.01, 0.1, 0.5, 2.0] and [r["v_lr"] for r in out["per_value"]] == out["grid"]
    holds = [r["holds"] for r in out["per_value"]]
    assert not holds[0] and holds[-1]      # the gate can fail (tiny v_lr) and hold (large v_lr) on this model
    assert out["chosen"] == min(v for v, h in zip(out["grid"], holds) if h)
    assert out["paper_v_lr"] == 0.1 and out["paper_v_lr_holds"] == holds[1]
    assert all(r["pre_rewrite_acc_mean"] == 0.0 for r in out["per_value"])
    # the chosen value's number is what an independent edit with it gives
    fresh = _trained_llama(tok, trained_llama_state)
    rome.edit(fresh, tok, [req], hp=hp, v_lr=out["chosen"])
    chosen_row = next(r for r in out["per_value"] if r["v_lr"] == out["chosen"])
    assert chosen_row["rewrite_acc_mean"] == em.rewrite_accuracy(fresh, tok, req["prompt"], req["target"]) >= 0.8
    # stop_at_first: values above the chosen one are not run
    short = rome_grid.smallest_v_lr_passing_gate(model, tok, [req], grid=out["grid"], hp=hp)
    assert short["chosen"] == out["chosen"] and short["per_value"][-1]["v_lr"] == out["chosen"]
    with pytest.raises(ValueError, match="grid"):
        rome_grid.smallest_v_lr_passing_gate(model, tok, [req], grid=(0.1, 0.1), hp=hp)


def test_first_token_candidates_agree_with_rewrite_accuracy(tok, trained_llama_state):
    """What the model puts first instead of the target (edit_metrics.first_token_candidates):
    rank 1 exactly when rewrite accuracy counts the target's first token, and the top tokens'
    probabilities are the softmax of the same logits."""
    model = _trained_llama(tok, trained_llama_state)
    ranks = []
    for prompt, target in [("Who wrote Moon?", "Jane"), ("Who wrote Moon?", "Ana")]:   # learned / not learned
        c = em.first_token_candidates(model, tok, prompt, target, k=3)
        ranks.append(c["target_rank"])
        pred, ids = em.answer_predictions(model, tok, prompt, target)
        assert c["target_token"] == tok.decode([ids[0]])
        assert (c["target_rank"] == 1) == (pred[0] == ids[0])
        assert c["top"][0][1] >= c["top"][1][1] >= c["top"][2][1] and abs(sum(v for _, v in c["top"])) <= 1.0
        assert (c["target_rank"] == 1) == (c["top"][0][1] == pytest.approx(c["target_prob"]))
    assert ranks[0] == 1 and ranks[1] > 1
    # the answer's first token depends on answer_start: " Ana" and "Ana" are different tokens here
    assert em.first_token_candidates(model, tok, "Who wrote Moon?", "Ana", answer_start="")["target_token"] != " Ana"
