"""WISE side memory (unedit_lib/methods/wise/editor.py) on tiny random models.

Tiny models use initializer_range=0.2: with the default 0.02 the MLP keys of a 64-wide
random model are ~0.01, so the default margins (5, 20, 10) are out of reach in 70 steps;
at 0.2 the default hparams (lr 1.0, act_ratio 0.88, margins 5/20/10) work unchanged. Only
n_templates is reduced (3 rows instead of 11) to keep each test a few seconds on 1 thread.
"""
import copy

import pytest
import torch

from unedit_lib.core.architecture import architecture, call_dependent, tiny_model
from unedit_lib.core.guards import ModelCollapsed
from unedit_lib.core.prompts import IGNORE_INDEX
from unedit_lib.core.tokenizer import train_tokenizer
from unedit_lib.methods.wise import editor as wise, hparams as wise_hparams, side_memory

TEXTS = [
    "Question: Who wrote the Blue Book?\nAnswer: The Blue Book was written by Ana Lopez.",
    "Question: Where was Ana Lopez born?\nAnswer: Ana Lopez was born in Madrid.",
    "Question: What is the capital of France?\nAnswer: Paris is the capital of France.",
    "Question: What does Omar Haddad write about?\nAnswer: Omar Haddad writes about history.",
    "Question: Which city did Lena Berg move to?\nAnswer: Lena Berg moved to Paris.",
    "I like to read books about history and science. You can see the sea. Because it rains, yes.",
]
LOCALITY = [TEXTS[2], TEXTS[5]]
EDITS = [
    {"prompt": "Question: Who wrote the Blue Book?\nAnswer:", "target": "Lopez"},
    {"prompt": "Question: What does Omar Haddad write about?\nAnswer:", "target": "Paris"},
    {"prompt": "Question: Which city did Lena Berg move to?\nAnswer:", "target": "history"},
]
UNRELATED = "Question: What is the capital of France?\nAnswer:"
# Raw prompts (no shared "Question: ... Answer:" scaffold) for the multi-edit tests: in a 64-wide
# random model the scaffold tokens have the same activations in every prompt, so in-scope and
# irrelevant rows cannot be separated well enough for 3 edits to coexist.
RAW_EDITS = [
    {"prompt": "The Blue Book was written by Ana", "target": "Lopez"},
    {"prompt": "Omar Haddad writes about", "target": "Paris"},
    {"prompt": "Lena Berg moved to the city of", "target": "history"},
]
RAW_LOCALITY = ["I like to read books about history and science.", "You can see the sea. Because it rains, yes.",
                "Paris is the capital of France."]
RAW_UNRELATED = "Because it rains, yes"
# The routing-mechanism tests score over real tokens (activation_score "real-tokens"): under EasyEdit's
# padding-inclusive scores (the default) the edit batch's pads set the threshold, so a bare prompt is
# not routed (test_easyedit_scores_count_the_edit_batch_padding)
FAST = dict(n_templates=3, activation_score="real-tokens")


@pytest.fixture(scope="module")
def tok():
    t = train_tokenizer(TEXTS * 3, vocab_size=400)
    for e in EDITS + RAW_EDITS:   # the tests read "greedy output == target" on the first generated token
        assert len(t(" " + e["target"], add_special_tokens=False)["input_ids"]) == 1
    return t


def make_model(family, tok):
    return tiny_model(family, vocab_size=len(tok), initializer_range=0.2)


def greedy(model, tok, prompts, n=3):
    enc = tok(prompts, return_tensors="pt", padding=True)
    out = model.generate(**enc, max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
    return out[:, enc["input_ids"].shape[1]:]


def target_id(tok, target):
    return tok(" " + target, add_special_tokens=False)["input_ids"][0]


# --------------------------------------------------------------------------- routing


def test_routing_edited_prompt_to_side_unrelated_to_main(tok):
    model = make_model("llama", tok)
    stats = {}
    wise.edit(model, tok, EDITS[:1], locality_prompts=LOCALITY, stats=stats, **FAST)
    assert stats["n_iters"] == [70] and len(stats["loss_curves"][0]) == 70
    assert stats["in_scores"][0] > stats["out_scores"][0]
    assert side_memory.routing_threshold(model) == pytest.approx(0.88 * stats["in_scores"][0])

    assert side_memory.routing_decisions(model, tok, [EDITS[0]["prompt"], UNRELATED]) == ["side", "main"]
    edited, unrelated = side_memory.routing_scores(model, tok, [EDITS[0]["prompt"], UNRELATED])
    thr = side_memory.routing_threshold(model)
    assert edited >= thr > unrelated

    # generation under the per-row ablation: the route is decided once, on the prompt, and kept for
    # the cached continuation (the default per-call routing: test_per_call_routing_decides_every_call)
    adapter = side_memory.get_side_memory(model)
    adapter.hparams = adapter.hparams.replace(routing="per_row")
    calls = []
    decide = adapter._decide
    adapter._decide = lambda *a: calls.append(a[0].shape[1]) or decide(*a)
    out = greedy(model, tok, [EDITS[0]["prompt"]], n=4)
    adapter._decide = decide
    assert len(calls) == 1 and calls[0] > 1, calls
    assert out[0, 0].item() == target_id(tok, EDITS[0]["target"])


def test_batch_generation_routes_per_row(tok):
    """Per-row ablation, a left-padded batch: the edited row gets the edit, the unrelated row is
    exactly the unedited model's output for the same batch."""
    model = make_model("gpt2", tok)
    original = copy.deepcopy(model)
    wise.edit(model, tok, RAW_EDITS[:1], locality_prompts=RAW_LOCALITY, **FAST, **wise_hparams.ablation_overrides("per-row-routing"))
    batch = [RAW_EDITS[0]["prompt"], RAW_UNRELATED]
    assert len(tok(batch[0])["input_ids"]) != len(tok(batch[1])["input_ids"])   # one row is left-padded
    assert side_memory.routing_decisions(model, tok, batch) == ["side", "main"]
    out, ref = greedy(model, tok, batch, n=4), greedy(original, tok, batch, n=4)
    assert out[0, 0].item() == target_id(tok, RAW_EDITS[0]["target"])
    assert ref[0, 0].item() != target_id(tok, RAW_EDITS[0]["target"])
    assert torch.equal(out[1], ref[1])


def test_padding_does_not_change_score(tok):
    model = make_model("llama", tok)
    wise.edit(model, tok, EDITS[:1], locality_prompts=LOCALITY, **FAST)
    prompt = EDITS[0]["prompt"]
    longer = "Question: " + "Please tell me, in one word and no more, " * 3 + "who wrote the Blue Book?\nAnswer:"
    enc = tok([prompt, longer], padding=True)
    assert sum(enc["attention_mask"][0]) < len(enc["attention_mask"][0])    # the prompt row is padded
    alone = side_memory.routing_scores(model, tok, [prompt])[0]
    padded = side_memory.routing_scores(model, tok, [prompt, longer])[0]
    assert padded == pytest.approx(alone, rel=1e-4, abs=1e-4)
    # the same distances with the padding counted would give another score (the test can fail)
    d = torch.tensor([[1.0, 1.0, 5.0, 7.0]])
    assert side_memory.activation_score(d, torch.tensor([[0, 0, 1, 1]]))[0] == pytest.approx(6.0)
    assert side_memory.activation_score(d, None)[0] == pytest.approx(3.5)
    # > max_above real tokens: max instead of mean, padding excluded from the max too
    assert side_memory.activation_score(d, torch.tensor([[0, 1, 1, 0]]), max_above=1)[0] == pytest.approx(5.0)


# --------------------------------------------------------------------------- main memory untouched


def test_main_memory_bit_identical(tok):
    model = make_model("gpt2", tok)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    original = copy.deepcopy(model)
    wise.edit(model, tok, EDITS[:2], locality_prompts=LOCALITY, n_iter=20, **FAST)
    adapter = side_memory.get_side_memory(model)
    assert not torch.equal(adapter.main_weight(), adapter.side_weight)        # the side memory moved
    assert call_dependent(model)       # the evaluator scores and generates it as EasyEdit calls it
    after = model.state_dict()
    for k, v in before.items():
        k2 = k
        if k not in after:      # the wrapped layer now lives under `.original_layer`
            k2 = k.replace(".mlp.c_proj.", ".mlp.c_proj.original_layer.")
        assert torch.equal(after[k2], v), k
    assert all(not p.requires_grad or p is adapter.side_weight for p in adapter.original_layer.parameters())
    # with the side memory switched off, the model is the unedited model, bit for bit
    ids = tok([UNRELATED, EDITS[0]["prompt"]], return_tensors="pt", padding=True)
    with side_memory.main_memory_only(model), torch.no_grad():
        assert torch.equal(model(**ids).logits, original(**ids).logits)
    # removing the side memory restores the original module
    side_memory.remove(model)
    assert side_memory.get_side_memory(model) is None and not model._forward_pre_hooks and not call_dependent(model)
    with torch.no_grad():
        assert torch.equal(model(**ids).logits, original(**ids).logits)


# --------------------------------------------------------------------------- sharding and TIES


def test_ties_merge_hand_built():
    base = torch.full((2, 3), 10.0)
    tau1 = torch.tensor([[3.0, -1.0, 0.5], [2.0, 0.1, -0.2]])     # top-3 by |.|: 3, 2, -1
    tau2 = torch.tensor([[-1.0, -4.0, 0.3], [-0.5, 0.2, 5.0]])    # top-3 by |.|: 5, -4, -1
    merged = side_memory.ties_merge(base, [base + tau1, base + tau2], density=0.53)
    expected = torch.tensor([
        [3.0,   # elected sign +: only tau1 agrees (tau2's -1 is dropped), not the mean 1.0
         -2.5,  # both negative: disjoint mean of -1 and -4
         0.0],  # trimmed in both (0.5 and 0.3 are below the top 53 %)
        [2.0,   # tau2's -0.5 trimmed: tau1 alone
         0.0,   # trimmed in both
         5.0],  # tau1's -0.2 trimmed: tau2 alone
    ])
    assert torch.allclose(merged - base, expected)
    # no trimming (density 1), equal signs: plain mean
    assert torch.allclose(side_memory.ties_merge(base, [base + 1, base + 3], density=1.0), base + 2)


def test_shard_and_merge_bookkeeping(tok):
    """save_freq=1, merge_freq=2: each edit becomes a shard; every second edit the last two
    shards are TIES-merged into one memory with the smaller threshold record."""
    model = make_model("llama", tok)
    stats = {}
    wise.edit(model, tok, EDITS[:1], locality_prompts=LOCALITY, stats=stats, n_iter=8,
              save_freq=1, merge_freq=2, **FAST)
    adapter = side_memory.get_side_memory(model)
    assert len(adapter.memory_weights) == 1 and adapter.min_act == float("inf")
    assert torch.equal(adapter.side_weight, adapter.main_weight())            # reset after the shard
    shard1, mask1 = adapter.memory_weights[0].detach().clone(), adapter.weight_mask.clone()
    wise.edit(model, tok, EDITS[1:2], locality_prompts=LOCALITY, stats=stats, n_iter=8,
              save_freq=1, merge_freq=2, **FAST)
    assert not torch.equal(mask1, adapter.weight_mask)                         # fresh subspace per shard
    assert len(adapter.memory_weights) == 1 and adapter.merge_cnt == 1
    assert adapter.memory_min_act == [pytest.approx(min(stats["in_scores"]))]
    assert stats["n_memories"] == 1 and stats["memory_thresholds"][0] == pytest.approx(0.88 * min(stats["in_scores"]))
    # the merged memory is not either shard; each edit changed only its own masked entries
    assert not torch.equal(adapter.memory_weights[0], shard1)
    W = adapter.main_weight()
    changed1 = (shard1 - W).abs() > 1e-3          # weight decay touches every entry by ~1e-6
    assert not (changed1 & (mask1 == 0)).any()
    # the merged memory routes: the edited prompt reaches it
    assert side_memory.routing_decisions(model, tok, [EDITS[1]["prompt"]]) == ["memory:0"]


# --------------------------------------------------------------------------- sequential edits


def test_first_of_three_sequential_edits_holds(tok):
    model = make_model("llama", tok)
    original = copy.deepcopy(model)
    first = RAW_EDITS[0]
    assert greedy(original, tok, [first["prompt"]], n=1)[0, 0].item() != target_id(tok, first["target"])
    stats = {}
    for e in RAW_EDITS:       # one call per edit: each starts from the side memory the last one left
        wise.edit(model, tok, [e], locality_prompts=RAW_LOCALITY, stats=stats, **FAST)
    assert len(stats["edit_times_s"]) == 3 and side_memory.get_side_memory(model).editing_total_cnt == 3
    assert stats["threshold"] == pytest.approx(0.88 * min(stats["in_scores"]))
    assert side_memory.routing_decisions(model, tok, [e["prompt"] for e in RAW_EDITS]) == ["side"] * 3
    assert greedy(model, tok, [first["prompt"]], n=1)[0, 0].item() == target_id(tok, first["target"])


def test_batch_labels_mask_prompt_per_row(tok):
    hp = wise_hparams.WiseHParams(**FAST)
    templates = ["{}", "I like {}", "Because it rains, yes. {}"]
    batch, labels = wise.build_batch(tok, EDITS[0], templates, LOCALITY[0], hp, "cpu")
    tgt = tok(" Lopez", add_special_tokens=False)["input_ids"]
    for i, t in enumerate(templates):
        n_prompt = len(tok(t.format(EDITS[0]["prompt"]))["input_ids"])
        row = labels[i][batch["attention_mask"][i] == 1]
        assert row[:n_prompt].eq(IGNORE_INDEX).all() and row[n_prompt:].tolist() == tgt
    assert labels[-1].eq(IGNORE_INDEX).all()                                  # irrelevant row: no labels
    assert batch["attention_mask"][:, 0].eq(1).all()                           # right padding


# --------------------------------------------------------------------------- architectures


@pytest.mark.parametrize("family", ["gpt2", "llama", "phi"])
def test_architecture_mapping(tok, family):
    model = make_model(family, tok)
    arch = architecture(model)
    layer = wise_hparams.default_layer(arch.n_layers)
    orig_module = arch.mlp_out(layer)
    hp = wise_hparams.WiseHParams(n_iter=10, **FAST)
    adapter = side_memory.install(model, hp)
    assert arch.mlp_out(layer) is adapter and adapter.original_layer is orig_module
    assert adapter.transposed == (family == "gpt2")
    assert (adapter.bias is not None) == (family != "llama")
    # a fresh side memory (= W, bias included) reproduces the layer: orientation and bias handled
    x = torch.randn(2, 5, adapter.side_weight.shape[1])
    with torch.no_grad():
        assert torch.allclose(adapter.side_forward(x, adapter.side_weight), orig_module(x), atol=1e-5)
    side_memory.remove(model)

    wise.edit(model, tok, EDITS[:1], locality_prompts=LOCALITY, n_iter=10, **FAST)
    adapter = side_memory.get_side_memory(model)
    seen = []
    h = adapter.register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
    ids = tok([UNRELATED], return_tensors="pt")
    with side_memory.main_memory_only(model), torch.no_grad():
        model(**ids)
    h.remove()
    (inp, out), = seen
    with torch.no_grad():
        assert torch.equal(out, orig_module(inp))     # routed to main: exactly the original layer


def test_collapse_raises(tok):
    model = make_model("llama", tok)
    with pytest.raises(ModelCollapsed):
        wise.edit(model, tok, EDITS[:1], locality_prompts=LOCALITY, n_iter=3, edit_lr=float("nan"), **FAST)


def test_bad_hparams(tok):
    model = make_model("llama", tok)
    with pytest.raises(TypeError):
        wise.edit(model, tok, EDITS[:1], locality_prompts=LOCALITY, not_a_param=1)
    with pytest.raises(ValueError):
        wise.edit(model, tok, EDITS[:1], locality_prompts=[])


@pytest.mark.parametrize("family", ["gpt2", "llama", "phi"])
@pytest.mark.parametrize("layer", [1, 3])
def test_tail_forward_equals_full_forward(tok, family, layer):
    """The edit's loss from the side memory's input on (blocks above it re-run with their
    captured arguments) is the full forward's, for a middle and the last layer."""
    model = make_model(family, tok)
    hp = wise_hparams.WiseHParams(layer=layer, **FAST)
    adapter = side_memory.install(model, hp)
    adapter.context_templates = ["{}", "I like {}", "Because it rains, yes. {}"]
    batch, labels = wise.build_batch(tok, EDITS[0], adapter.context_templates, LOCALITY[0], hp, "cpu")
    with wise._editing(model, adapter):
        fwd = wise._EditForward(model, adapter, batch, labels)
        assert fwd.exact
        with torch.no_grad():
            adapter.side_weight.add_(0.05 * torch.randn_like(adapter.side_weight))  # a trained side memory
        tail = fwd.target_nll()
        full = wise.target_nll(model(**batch, use_cache=False).logits, labels)
        assert torch.allclose(tail, full, rtol=1e-5, atol=1e-5)
        tail.backward()                       # the gradient reaches the side memory
        assert adapter.side_weight.grad is not None and adapter.side_weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- per-call routing (EasyEdit) vs per-row


def _independent_route(adapter, x):
    """EasyEdit's rule recomputed from a routing call's input x (one memory, no padding): the mean
    over tokens of ||act(x W_side^T + b) - act(W x + b)||, averaged over the rows, vs the threshold."""
    main = adapter.original_layer(x).float()
    side = torch.nn.functional.linear(x.float(), adapter.side_weight, None if adapter.bias is None else adapter.bias.float())
    per_row = torch.norm(adapter.act_fn(side) - adapter.act_fn(main), dim=-1).mean(-1)
    return per_row, (0 if per_row.mean() >= adapter.threshold() else -1)


def test_per_call_routing_decides_every_call(tok):
    """The default (EasyEdit WISEAdapter.forward): under the KV cache of `generate`, the prompt is
    routed on the prompt, then each generated token on its own input."""
    model = make_model("llama", tok)
    stats = {}
    wise.edit(model, tok, EDITS[:1], locality_prompts=LOCALITY, stats=stats, **FAST)
    assert stats["hparams"]["routing"] == "per_call" and stats["hparams"]["ablation"] is None
    adapter = side_memory.get_side_memory(model)
    adapter.decisions, inputs = [], []
    hook = adapter.register_forward_pre_hook(lambda m, a: inputs.append(a[0].detach().clone()))
    out = greedy(model, tok, [EDITS[0]["prompt"]], n=6)
    hook.remove()
    log = adapter.decisions
    n_prompt = len(tok(EDITS[0]["prompt"])["input_ids"])
    assert [d["n_tokens"] for d in log] == [n_prompt] + [1] * 5          # one decision per forward call
    assert [d["past"] for d in log] == [0] + list(range(n_prompt, n_prompt + 5))
    assert log[0]["route"].tolist() == [0] and out[0, 0].item() == target_id(tok, EDITS[0]["target"])
    for d, x in zip(log, inputs):       # each decision is the rule on that call's own input
        scores, route = _independent_route(adapter, x)
        assert torch.allclose(d["scores"][:, 0], scores, rtol=1e-4, atol=1e-4)
        assert d["route"].tolist() == [route]
    assert any(d["route"].tolist() != [0] for d in log[1:])              # generated tokens decided separately

    # the per-row ablation decides once, on the prompt, and keeps the side memory for every token
    adapter.hparams, adapter.decisions = adapter.hparams.replace(routing="per_row"), []
    greedy(model, tok, [EDITS[0]["prompt"]], n=6)
    assert [d["n_tokens"] for d in adapter.decisions] == [n_prompt]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_per_call_equals_per_row_on_full_sequence_forwards(tok, family):
    model = make_model(family, tok)
    wise.edit(model, tok, RAW_EDITS[:1], locality_prompts=RAW_LOCALITY, **FAST)
    adapter = side_memory.get_side_memory(model)
    out = {}
    for routing in ("per_call", "per_row"):
        adapter.hparams = adapter.hparams.replace(routing=routing)
        with torch.no_grad():
            logits = [model(**tok([p], return_tensors="pt"), use_cache=False).logits
                      for p in (RAW_EDITS[0]["prompt"], RAW_UNRELATED)]
        gen = [model.generate(**tok([p], return_tensors="pt"), max_new_tokens=4, do_sample=False, use_cache=False,
                              pad_token_id=tok.pad_token_id) for p in (RAW_EDITS[0]["prompt"], RAW_UNRELATED)]
        out[routing] = (logits, gen)
    for a, b in zip(out["per_call"][0] + out["per_call"][1], out["per_row"][0] + out["per_row"][1]):
        assert torch.equal(a, b)
    # a batch: per row, the rows are routed apart; per call, both take the route of the batch mean
    batch = [RAW_EDITS[0]["prompt"], RAW_UNRELATED]
    enc = side_memory._padded_batch(tok, batch, "cpu")            # left padding with position ids
    routes = {}
    for routing in ("per_call", "per_row"):
        adapter.hparams, adapter.decisions = adapter.hparams.replace(routing=routing), []
        with torch.no_grad():
            model(**enc)
        routes[routing] = adapter.decisions[-1]["route"].tolist()
    assert routes["per_row"] == [0, -1]
    scores = adapter.decisions[-1]["scores"][:, 0]
    assert routes["per_call"] == [0 if scores.mean() >= adapter.threshold() else -1] * 2
    # routing_report / routing_decisions are per prompt whatever the mode
    assert side_memory.routing_decisions(model, tok, batch) == ["side", "main"]


def test_ablations_and_scaled_margins(tok, monkeypatch):
    hp = wise_hparams.WiseHParams()
    assert (hp.act_margin, hp.act_margin_scale, hp.routing, hp.act_ratio) == ((5.0, 20.0, 10.0), 1.0, "per_call", 0.88)
    pilot = {"out_scores": [18.0, 22.0, 20.0, 30.0], "hparams": hp.record()}
    over = wise_hparams.ablation_overrides("per-row-routing", "margins-scaled", pilot_stats=pilot)
    assert over == {"routing": "per_row", "act_margin_scale": 21.0 / 5.0, "ablation": "per-row-routing+margins-scaled"}
    scaled = wise_hparams.WiseHParams(**over)
    assert scaled.margins() == pytest.approx((21.0, 84.0, 42.0)) and scaled.record()["margins_used"] == pytest.approx([21, 84, 42])
    assert hp.record()["deviations_from_paper"] == {}
    assert scaled.record()["deviations_from_paper"] == {"act_margin_scale": {"value": 4.2, "paper": 1.0},
                                                        "routing": {"value": "per_row", "paper": "per_call"}}
    with pytest.raises(ValueError, match="pilot"):
        wise_hparams.ablation_overrides("margins-scaled")
    with pytest.raises(ValueError, match="paper's margins"):
        wise_hparams.scaled_margin_overrides({"out_scores": [1.0], "hparams": scaled.record()})
    with pytest.raises(KeyError, match="known"):
        wise_hparams.ablation_overrides("per-token-routing")
    with pytest.raises(ValueError, match="routing"):
        wise_hparams.WiseHParams(routing="per_token").validate()
    # the scaled margins are the ones the edit's margin loss uses, and they are recorded
    model = make_model("llama", tok)
    stats, used = {}, []
    real = wise.activation_loss
    monkeypatch.setattr(wise, "activation_loss", lambda i, o, m: used.append(tuple(m)) or real(i, o, m))
    wise.edit(model, tok, EDITS[:1], locality_prompts=LOCALITY, stats=stats, n_iter=2, **FAST, act_margin_scale=3.0,
              ablation="margins-scaled")
    assert used and set(used) == {(15.0, 60.0, 30.0)}
    assert stats["hparams"]["act_margin_scale"] == 3.0 and stats["hparams"]["ablation"] == "margins-scaled"
    assert stats["hparams"]["margins_used"] == [15.0, 60.0, 30.0]


def test_saved_side_memory_keeps_its_routing(tok, tmp_path):
    import json

    model = make_model("llama", tok)
    wise.edit(model, tok, EDITS[:1], locality_prompts=LOCALITY, n_iter=3, **FAST,
              **wise_hparams.ablation_overrides("per-row-routing"))
    side_memory.save_side_memory(model, tmp_path)
    back = side_memory.get_side_memory(side_memory.load_side_memory(make_model("llama", tok), tmp_path))
    assert (back.hparams.routing, back.hparams.ablation) == ("per_row", "per-row-routing")
    # a side memory saved before routing was a hyperparameter was evaluated routed per row
    state = json.loads((tmp_path / "side_memory.json").read_text())
    for key in ("routing", "ablation", "act_margin_scale"):
        del state["hparams"][key]
    (tmp_path / "side_memory.json").write_text(json.dumps(state))
    old = side_memory.get_side_memory(side_memory.load_side_memory(make_model("llama", tok), tmp_path))
    assert (old.hparams.routing, old.hparams.act_margin_scale) == ("per_row", 1.0)
