"""WISE's side memory: the layer installed beside one MLP output projection, its routing, and
saving / loading it (Wang et al. 2024, arXiv 2405.14768; EasyEdit `easyeditor/models/wise/`;
"§" numbers refer to docs/editing.md section 4). Deviations from EasyEdit are listed in methods/wise/editor.py.

1. `activation_score` is EasyEdit's `euc` (§4.3): padding counted as EasyEdit counts it
   (`activation_score="easyedit"`, the default) or over real tokens only ("real-tokens").
2. `ties_merge` is EasyEdit's GTA('magnitude', 'sum', normalize=True) (§4.4), used by
   `SideMemoryLayer.merge_shards`.
3. `SideMemoryLayer` replaces the MLP output projection of one late layer (§4.1). It holds
   the frozen main memory (the original module itself, never modified), the trainable side
   memory (a copy of its weight, (d_out, d_in) orientation whatever the storage layout), the
   stored / merged side memories and the per-memory threshold records.
   `SideMemoryLayer.forward` routes at inference (§4.5). Default `routing="per_call"`, as
   EasyEdit's `WISEAdapter.forward`: decided on every forward call, on that call's own input,
   from the score averaged over the batch (under a KV cache: the prompt, then each generated
   token on its own). Ablation `routing="per_row"`: per row, decided once on the prompt and
   kept for the KV-cached continuation.
4. `install` / `remove` / `get_side_memory` / `main_memory_only`, the routing read-outs
   (`routing_threshold`, `routing_scores`, `routing_decisions`, `routing_report`), and the routes
   forwards take, counted (`logging_routes`, `RouteCounts`; wise.route_watch for an evaluation).
5. `save_side_memory` / `load_side_memory` (files), `side_memory_state` / `restore_side_memory`
   (in memory: edit checkpoints): the side memory alone, the main memory being the base model's own.
"""
from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ...core.architecture import CALL_DEPENDENT, architecture
from ...core.paths import display_path
from ...core.store import CorruptFile, write_file, write_json
from .hparams import WiseHParams, default_layer

# --------------------------------------------------------------------------- activation score (§4.3)


def token_distances(main_out: torch.Tensor, side_out: torch.Tensor, act_fn) -> torch.Tensor:
    """Per-token ||act_fn(side_out) - act_fn(main_out)||_2, shape (B, T) (EasyEdit `euc`).

    Note (§4.3): act_fn is applied to the OUTPUTS of the projection, a code quirk that the
    paper's formula lacks; kept because EasyEdit's thresholds/margins are on this scale.
    """
    return torch.norm(act_fn(side_out.float()) - act_fn(main_out.float()), dim=-1)


def activation_score(dist: torch.Tensor, mask: torch.Tensor | None, max_above: int | None = None,
                     rule: str = "real-tokens") -> torch.Tensor:
    """Per-row score from per-token distances (B, T) (WiseHParams.activation_score names the rule).

    "real-tokens": over the row's real tokens only (mask 1 = real token; None: all real): their
    mean, or their max when the row has more than `max_above` real tokens.
    "easyedit": EasyEdit's `euc` (easyeditor/models/wise/WISE.py lines 30-45 at 14cea82): no mask,
    every position of the padded length T counts, padding included: `torch.mean(l2_norm, dim=-1)`
    (line 45), or when T > `max_above` the max over the T positions (`infer and l2_norm.size(1) > 100`,
    lines 37-39: the padded length decides, pads enter the max).
    `max_above` None: no max rule (EasyEdit's edit loop calls `euc` with infer=False, WISE.py:475, 302).
    """
    if rule not in ("easyedit", "real-tokens"):
        raise ValueError(f"activation score rule is 'easyedit' or 'real-tokens', got {rule!r}")
    if mask is None or rule == "easyedit":
        mask = torch.ones_like(dist)
    mask = mask.to(dist.dtype)
    n_real = mask.sum(-1)
    mean = (dist * mask).sum(-1) / n_real.clamp(min=1)
    if max_above is None:
        return mean
    mx = dist.masked_fill(mask == 0, float("-inf")).max(-1).values
    return torch.where(n_real > max_above, mx, mean)


# --------------------------------------------------------------------------- TIES merging (§4.4)


def ties_merge(base: torch.Tensor, tensors: list[torch.Tensor], density: float = 0.53,
               weights: list[float] | None = None) -> torch.Tensor:
    """EasyEdit's 'ties' = GTA(magnitude, sum, normalize=True):

    1. task vectors tau_i = W_i - base;
    2. trim: keep the top int(density * numel) entries of each tau_i by magnitude;
    3. scale by weights (default 1/n each);
    4. elect the sign per entry: sign of sum_i w_i tau_i (ties -> +);
    5. disjoint mean: sum of the agreeing weighted entries / sum of their weights (0 if none);
    6. merged = base + mixed.
    """
    n = len(tensors)
    if n == 0:
        return base.clone()
    if weights is None:
        weights = [1.0 / n] * n
    deltas = []
    for t in tensors:
        d = (t - base).float()
        if density < 1:
            k = int(density * d.numel())
            if k <= 0:
                raise ValueError("density too small: would trim the whole task vector")
            keep = torch.zeros(d.numel(), dtype=torch.bool, device=d.device)
            keep[torch.topk(d.abs().reshape(-1), k=k, largest=True).indices] = True
            d = d * keep.view_as(d)
        deltas.append(d)
    deltas = torch.stack(deltas)                                            # (n, ...)
    w = torch.tensor(weights, dtype=deltas.dtype, device=deltas.device).view(-1, *[1] * (deltas.dim() - 1))
    weighted = deltas * w
    majority = (weighted.sum(0) >= 0).to(deltas.dtype) * 2 - 1              # elected sign
    agree = (weighted.sign() == majority).to(deltas.dtype)                  # trimmed zeros never agree
    mixed = (weighted * agree).sum(0)
    divisor = (w * agree).sum(0)
    divisor[divisor == 0] = 1
    return (base.float() + mixed / divisor).to(base.dtype)


# --------------------------------------------------------------------------- the installed module


class _MaskCapture:
    """Forward pre-hook on the whole model: hands the attention mask and the number of cached
    positions of the current call to the side-memory layer (deepcopy-safe: an object, not a closure)."""

    def __init__(self, adapter: "SideMemoryLayer"):
        self.adapter = adapter

    def __call__(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if mask is None and len(args) > 1 and torch.is_tensor(args[1]):
            mask = args[1]
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs.get("inputs_embeds")
        n_in = ids.shape[1] if torch.is_tensor(ids) and ids.dim() >= 2 else None
        past = 0
        if torch.is_tensor(mask) and mask.dim() == 2 and n_in is not None:
            past = mask.shape[1] - n_in
        else:
            for key in ("past_key_values", "cache"):
                c = kwargs.get(key)
                if c is not None and hasattr(c, "get_seq_length"):
                    past = int(c.get_seq_length())
        self.adapter.begin_call(mask if torch.is_tensor(mask) and mask.dim() == 2 else None, past)


class _ClearCapture:
    def __init__(self, adapter: "SideMemoryLayer"):
        self.adapter = adapter

    def __call__(self, module, args, kwargs, output):
        self.adapter.end_call()


class SideMemoryLayer(nn.Module):
    """The MLP output projection with WISE's dual memory (§4.1).

    * `original_layer`: the original module (main memory), frozen and never modified.
    * `side_weight`: the current side memory, (d_out, d_in), float32, trainable while editing.
    * `memory_weights` / `memory_min_act`: stored (saved or TIES-merged) side memories and
      their min in-scope scores.
    * `min_act`: running min of the in-scope scores of the current shard's edits.

    Routing rule (§4.5, retrieve mode; `route_from_scores`) on scores s (one per memory):
      s0 = score(current side memory); route = side if s0 >= act_ratio * min_act else main;
      best = s0; for each stored memory i: if s_i > best and s_i > act_ratio * min_act_i:
      route = memory i, best = s_i  (top-1 by activation, as in EasyEdit).
    `routing="per_call"` (default; EasyEdit `WISEAdapter.forward`, easyeditor/models/wise/WISE.py
    lines 532-550 at 14cea82; the paper's fork at d71c0bc: lines 502-520, mean at 508): on EVERY
    forward call the rule is applied once to the scores of that call's own input averaged over
    the batch rows (`min_dist = min_dist.mean()`, line 538, then `.item()`), and the whole batch
    takes that route. Under a KV cache the prompt forward decides on the prompt, then each
    generated token decides on itself alone (one token per row).
    `routing="per_row"` (ablation): the rule per row, decided on a forward with no cached positions
    (a prompt, or any cache-free forward) and kept for the following KV-cached forwards of the
    same batch size, so a generated continuation uses the memory its prompt chose.
    Set `decisions = []` to log every routing decision (n_tokens, past, per-row scores, route);
    `logging_routes(model)` counts the route of every routed forward instead (kept routes too).
    While `editing`, each forward keeps `edit_outputs` (main output, side output, attention mask)
    and `edit_input` (the projection's input) for the editor's losses (methods/wise/editor.py).
    """

    def __init__(self, base: nn.Module, act_fn, transposed: bool, hparams: WiseHParams):
        super().__init__()
        self.original_layer = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.transposed = transposed
        self.act_fn = act_fn
        self.hparams = hparams
        w = base.weight.detach()
        w = w.T if transposed else w                       # (d_out, d_in) as in W k = v
        self.side_weight = nn.Parameter(w.float().clone(), requires_grad=False)
        self.memory_weights = nn.ParameterList()
        self.memory_min_act: list[float] = []
        self.min_act = math.inf
        self.weight_mask: torch.Tensor | None = None
        self.editing_total_cnt = 0
        self.merge_cnt = 0
        self.editing = False
        self.force_main = False
        self.context_templates: list[str] | None = None
        self._ctx = None
        self._route: torch.Tensor | None = None
        self.last_scores: torch.Tensor | None = None      # (B, 1 + n_memories) of the last decision
        self.decisions: list | None = None                # set to [] to log each routing decision
        self._listeners: list = []                        # RouteCounts of `logging_routes`, called per forward
        self.edit_outputs = None                          # (main, side, mask) of the last editing forward
        self.edit_input = None                            # the projection's input in that forward

    # -- the current call and the editing state -------------------------------------------------
    def begin_call(self, mask: torch.Tensor | None, past: int) -> None:
        """The model's forward starts: its 2-D attention mask (or None) and its cached positions."""
        self._ctx = {"mask": mask, "past": past}

    def end_call(self) -> None:
        self._ctx = None

    def reset_route(self) -> None:
        """Forget the route kept for a per_row continuation: the next forward decides afresh."""
        self._route = None

    def end_editing(self) -> None:
        """Leave editing mode: the forwards route again, nothing of the last edit is kept."""
        self.editing = False
        self.edit_outputs = None
        self.edit_input = None
        self.reset_route()

    # -- weights ---------------------------------------------------------------------------
    def main_weight(self) -> torch.Tensor:
        w = self.original_layer.weight
        return (w.T if self.transposed else w).float()

    @property
    def bias(self):
        return getattr(self.original_layer, "bias", None)

    def side_forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x W^T + b with the layer's own bias (bias in both branches: §4.7 deviation)."""
        b = self.bias
        return F.linear(x.float(), weight, None if b is None else b.float())

    def threshold(self, memory: int | None = None) -> float:
        """act_ratio x min in-scope score of the current shard (memory=None) or stored memory i."""
        m = self.min_act if memory is None else self.memory_min_act[memory]
        return self.hparams.act_ratio * m

    def _mask_for(self, x: torch.Tensor) -> torch.Tensor | None:
        ctx = self._ctx
        if ctx is None or ctx["mask"] is None:
            return None
        m = ctx["mask"]
        B, T = x.shape[0], x.shape[1]
        if m.shape[0] != B or m.shape[1] < T:
            return None
        return m[:, -T:].to(x.device)

    # -- forward ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.original_layer(x)
        if self.force_main:
            return main
        if self.editing:
            # training (§4.3): every row, the irrelevant one included, goes through the side memory
            side = self.side_forward(x, self.side_weight)
            self.edit_outputs = (main.detach(), side, self._mask_for(x))
            self.edit_input = x.detach()
            return side.to(main.dtype)
        return self._route_forward(x, main)

    def route_from_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """The retrieve-mode rule on (N, 1 + M) scores: (N,) routes, -1 main, 0 side, i + 1 memory i."""
        route = torch.where(scores[:, 0] < self.threshold(), -1, 0).long()
        best = scores[:, 0].clone()
        for i in range(len(self.memory_weights)):
            s = scores[:, i + 1]
            take = (s > best) & (s > self.threshold(i))
            route = torch.where(take, i + 1, route)
            best = torch.where(take, s, best)
        return route

    @torch.no_grad()
    def _decide(self, x, main, mask):
        """Scores of this call's input per row (B, 1 + M) and the route per row: the rule per row
        (per_row), or once on the batch mean (per_call, EasyEdit): over every row under
        activation_score "easyedit" (`min_dist.mean()`, WISE.py:538), over the rows with a real
        token under "real-tokens"."""
        hp = self.hparams
        weights = [self.side_weight] + list(self.memory_weights)
        outs, scores = [], []
        for w in weights:
            o = self.side_forward(x, w)
            outs.append(o)
            scores.append(activation_score(token_distances(main, o, self.act_fn), mask, hp.infer_max_above,
                                           hp.activation_score))
        scores = torch.stack(scores, -1)                                   # (B, 1 + M)
        if hp.routing == "per_row":
            route = self.route_from_scores(scores)
        else:
            real = torch.ones(scores.shape[0], dtype=torch.bool, device=scores.device) \
                if mask is None or hp.activation_score == "easyedit" else mask.sum(-1) > 0
            batch_mean = scores[real].mean(0, keepdim=True) if bool(real.any()) else scores.mean(0, keepdim=True)
            route = self.route_from_scores(batch_mean).expand(scores.shape[0])
        self.last_scores = scores.detach().cpu()
        return route, outs

    def _route_forward(self, x, main):
        if x.dim() != 3:
            raise ValueError(f"SideMemoryLayer expects (batch, tokens, d_in) inputs, got {tuple(x.shape)}")
        ctx = self._ctx
        past = ctx["past"] if ctx is not None else 0
        keep = self.hparams.routing == "per_row" and past > 0
        if keep and self._route is not None and self._route.shape[0] == x.shape[0]:
            route, outs = self._route.to(x.device), None       # per_row continuation: keep the prompt's route
        else:
            route, outs = self._decide(x, main, self._mask_for(x))
            self._route = route.detach()
            if self.decisions is not None:
                self.decisions.append({"n_tokens": x.shape[1], "past": past, "scores": self.last_scores,
                                       "route": route.detach().cpu()})
        for listen in self._listeners:
            listen(past, route, None if outs is None else self.last_scores)
        if bool((route < 0).all()):
            return main
        out = main
        for r in route.unique().tolist():
            if r < 0:
                continue
            w = self.side_weight if r == 0 else self.memory_weights[r - 1]
            o = outs[r] if outs is not None else self.side_forward(x, w)
            out = torch.where((route == r).view(-1, 1, 1), o.to(main.dtype), out)
        return out

    def extra_repr(self) -> str:
        return (f"edits={self.editing_total_cnt}, memories={len(self.memory_weights)}, "
                f"min_act={self.min_act:.4g}, act_ratio={self.hparams.act_ratio}")

    # -- sharding and merging (§4.4) ---------------------------------------------------------
    def new_mask(self, generator: torch.Generator):
        """Bernoulli(mask_ratio) gradient mask, redrawn at the start of every shard."""
        self.weight_mask = (torch.rand(self.side_weight.shape, generator=generator) < self.hparams.mask_ratio).to(
            self.side_weight.device, self.side_weight.dtype)

    def save_shard(self):
        """Push the current side memory with its min record; reset the side memory to W."""
        self.memory_weights.append(nn.Parameter(self.side_weight.detach().clone(), requires_grad=False))
        self.memory_min_act.append(self.min_act)
        with torch.no_grad():
            self.side_weight.copy_(self.main_weight())
        self.min_act = math.inf

    def merge_shards(self):
        """Retrieve mode: TIES-merge the last merge_freq/save_freq shards into one memory whose
        threshold record is the min of theirs."""
        hp = self.hparams
        n = hp.merge_freq // hp.save_freq
        assert len(self.memory_weights) >= n
        shards = [self.memory_weights[i].detach() for i in range(len(self.memory_weights) - n, len(self.memory_weights))]
        merged = ties_merge(self.main_weight(), shards, density=hp.densities, weights=[hp.weights / n] * n)
        min_a = min(self.memory_min_act[-n:])
        kept = [self.memory_weights[i] for i in range(len(self.memory_weights) - n)]
        self.memory_weights = nn.ParameterList(kept + [nn.Parameter(merged, requires_grad=False)])
        self.memory_min_act = self.memory_min_act[:-n] + [min_a]
        with torch.no_grad():
            self.side_weight.copy_(self.main_weight())
        self.merge_cnt += 1


# --------------------------------------------------------------------------- install / remove / helpers


def get_side_memory(model) -> SideMemoryLayer | None:
    """The installed SideMemoryLayer, or None."""
    for m in model.modules():
        if isinstance(m, SideMemoryLayer):
            return m
    return None


def install(model, hparams: WiseHParams) -> SideMemoryLayer:
    """Replace the chosen layer's MLP output projection by a SideMemoryLayer (idempotent); the adapter
    holds `hparams` with the layer resolved (`hparams` itself is frozen and unchanged)."""
    adapter = get_side_memory(model)
    if adapter is not None:
        return adapter
    arch = architecture(model)
    layer = default_layer(arch.n_layers) if hparams.layer is None else hparams.layer
    if not 0 <= layer < arch.n_layers:
        raise ValueError(f"layer {layer} outside 0..{arch.n_layers - 1}")
    hparams = hparams.replace(layer=layer)
    parent, name = arch.mlp_out_slot(layer)
    base = getattr(parent, name)
    adapter = SideMemoryLayer(base, arch.act_fn, arch.is_transposed(layer), hparams)
    adapter.to(base.weight.device)
    setattr(parent, name, adapter)
    model.register_forward_pre_hook(_MaskCapture(adapter), with_kwargs=True)
    model.register_forward_hook(_ClearCapture(adapter), with_kwargs=True)
    setattr(model, CALL_DEPENDENT, True)       # the router decides per forward call (evaluator: no shortcuts)
    return adapter


def remove(model):
    """Put the original module back (main memory only, side memories discarded); returns model."""
    adapter = get_side_memory(model)
    if adapter is None:
        return model
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if child is adapter:
                setattr(parent, name, adapter.original_layer)
    for hooks, kw in ((model._forward_pre_hooks, model._forward_pre_hooks_with_kwargs),
                      (model._forward_hooks, model._forward_hooks_with_kwargs)):
        for hid, h in list(hooks.items()):
            if isinstance(h, (_MaskCapture, _ClearCapture)):
                del hooks[hid]
                kw.pop(hid, None)
    if hasattr(model, CALL_DEPENDENT):
        delattr(model, CALL_DEPENDENT)
    return model


@contextlib.contextmanager
def main_memory_only(model):
    """Inside the block every forward uses the main memory (the unedited layer)."""
    adapter = get_side_memory(model)
    if adapter is None:
        yield model
        return
    old = adapter.force_main
    adapter.force_main = True
    try:
        yield model
    finally:
        adapter.force_main = old


class RouteCounts:
    """The routes forwards took while it listened (`logging_routes`), as counts: forward calls,
    prompt rows (rows of forwards with no cached positions: a generation's prompt, a scoring
    pass's prompt + answer) and generated-token rows (rows of forwards with cached positions, rows
    that have already ended included: generate still runs them), each with how many went to a side
    memory (any route but main; a call counts when one of its rows did); and the current side
    memory's score per row (mean, max) where a decision was made. A few numbers, however long it listens."""

    KEYS = ("calls", "calls_routed", "prompt_rows", "prompt_rows_routed", "token_rows", "token_rows_routed")

    def __init__(self):
        self.n = dict.fromkeys(self.KEYS, 0)
        self.score = {k: [0.0, 0, -math.inf] for k in ("prompt", "token")}      # sum, rows, max

    def __call__(self, past: int, route: torch.Tensor, scores: torch.Tensor | None) -> None:
        kind, routed = ("token" if past > 0 else "prompt"), int((route >= 0).sum())
        self.n["calls"] += 1
        self.n["calls_routed"] += routed > 0
        self.n[f"{kind}_rows"] += route.numel()
        self.n[f"{kind}_rows_routed"] += routed
        if scores is not None:
            s, acc = scores[:, 0].double(), self.score[kind]
            acc[0], acc[1], acc[2] = acc[0] + float(s.sum()), acc[1] + s.numel(), max(acc[2], float(s.max()))

    def summary(self) -> dict:
        """The counts, the shares routed to a side memory (None where nothing was counted) and the scores."""
        out = dict(self.n)
        for kind, total in (("call", "calls"), ("prompt", "prompt_rows"), ("token", "token_rows")):
            routed = "calls_routed" if kind == "call" else f"{total}_routed"
            out[f"{kind}_share"] = self.n[routed] / self.n[total] if self.n[total] else None
        for kind, (total, rows, mx) in self.score.items():
            out[f"{kind}_score_mean"], out[f"{kind}_score_max"] = (total / rows, mx) if rows else (None, None)
        return out


@contextlib.contextmanager
def logging_routes(model, counts: RouteCounts | None = None):
    """Inside the block, the route of every routed forward of `model` is counted into `counts` (a
    new RouteCounts unless given: counts accumulate across blocks), yielded; None and nothing
    counted when no side memory is installed."""
    adapter = get_side_memory(model)
    if adapter is None:
        yield None
        return
    counts = RouteCounts() if counts is None else counts
    adapter._listeners.append(counts)
    try:
        yield counts
    finally:
        adapter._listeners.remove(counts)


def routing_threshold(model, memory: int | None = None) -> float:
    """The routing threshold act_ratio * min_act (current shard, or stored memory `memory`)."""
    adapter = get_side_memory(model)
    if adapter is None:
        raise ValueError("no WISE side memory installed")
    return adapter.threshold(memory)


def _padded_batch(tokenizer, texts, device):
    enc = tokenizer(list(texts), return_tensors="pt", padding=len(texts) > 1)
    mask = enc["attention_mask"]
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": mask.to(device),
            "position_ids": pos.to(device), "use_cache": False}


@torch.no_grad()
def _score_batches(model, tokenizer, prompts, batch_size):
    adapter = get_side_memory(model)
    if adapter is None:
        raise ValueError("no WISE side memory installed")
    device = adapter.side_weight.device
    if tokenizer.pad_token_id is None:      # cannot pad: one prompt at a time
        batch_size = 1
    scores, routes = [], []
    for i in range(0, len(prompts), batch_size):
        model(**_padded_batch(tokenizer, prompts[i:i + batch_size], device))
        scores.append(adapter.last_scores)
        # per prompt, on its own score (under per_call routing a batch shares one decision, made on
        # the batch mean; "easyedit" scores count the batch's padding: see routing_scores)
        routes.append(adapter.route_from_scores(adapter.last_scores.to(device)).cpu())
    return torch.cat(scores), torch.cat(routes)


def routing_scores(model, tokenizer, prompts, memory: int | None = None, batch_size: int = 16) -> list[float]:
    """Activation score of each prompt for the current side memory (memory=None) or stored memory
    i, by the side memory's `activation_score` rule: under "easyedit" the padding of the prompt's
    batch (batch_size prompts, padded on the tokenizer's side) counts, as the router counts it in a
    batch (batch_size=1: the bare prompt's score); compare with `routing_threshold(model, memory)`."""
    scores, _ = _score_batches(model, tokenizer, list(prompts), batch_size)
    return scores[:, 0 if memory is None else memory + 1].tolist()


def routing_decisions(model, tokenizer, prompts, batch_size: int = 16) -> list[str]:
    """Where each prompt is routed: 'main', 'side' (current side memory) or 'memory:i'."""
    _, routes = _score_batches(model, tokenizer, list(prompts), batch_size)
    return ["main" if r < 0 else "side" if r == 0 else f"memory:{r - 1}" for r in routes.tolist()]


def routing_report(model, tokenizer, prompts_by_set: dict, batch_size: int = 16) -> dict:
    """Routing scores and decisions of prompt sets ({name: [prompt, ...]}) on an edited model.

    Returns {"threshold": current shard's threshold (inf before any edit), "memory_thresholds",
    "activation_score" (the rule; see routing_scores), "batch_size", "sets": {name: {"scores": score
    for the current side memory, "routes": 'main' | 'side' | 'memory:i', "side_rate": share not routed to main}}}.
    """
    adapter = get_side_memory(model)
    if adapter is None:
        raise ValueError("no WISE side memory installed")
    out = {"threshold": adapter.threshold(), "memory_thresholds": [adapter.threshold(i) for i in range(len(adapter.memory_weights))],
           "activation_score": adapter.hparams.activation_score, "batch_size": batch_size, "sets": {}}
    for name, prompts in prompts_by_set.items():
        prompts = list(prompts)
        scores, routes = _score_batches(model, tokenizer, prompts, batch_size)
        names = ["main" if r < 0 else "side" if r == 0 else f"memory:{r - 1}" for r in routes.tolist()]
        out["sets"][name] = {"scores": scores[:, 0].tolist(), "routes": names,
                             "side_rate": sum(r != "main" for r in names) / max(len(names), 1)}
    adapter.reset_route()
    return out


# --------------------------------------------------------------------------- saving a side memory


def side_memory_state(model) -> tuple[dict, dict]:
    """(tensors, JSON state) of the installed side memory: current and stored memories, the gradient
    mask, threshold records, hparams, context templates; the main memory is the base model's own."""
    adapter = get_side_memory(model)
    if adapter is None:
        raise ValueError("no WISE side memory installed")
    tensors = {"side_weight": adapter.side_weight.detach().contiguous()}
    for i, w in enumerate(adapter.memory_weights):
        tensors[f"memory_{i}"] = w.detach().contiguous()
    if adapter.weight_mask is not None:
        tensors["weight_mask"] = adapter.weight_mask.contiguous()
    hp = {k: v for k, v in adapter.hparams.record().items() if k not in ("margins_used", "deviations_from_paper")}
    state = {"hparams": hp, "memory_min_act": adapter.memory_min_act, "min_act": adapter.min_act,
             "editing_total_cnt": adapter.editing_total_cnt, "merge_cnt": adapter.merge_cnt,
             "context_templates": adapter.context_templates}
    return tensors, state


def save_side_memory(model, folder) -> None:
    """Write the installed side memory (side_memory_state) to `folder` as side_memory.safetensors +
    side_memory.json."""
    tensors, state = side_memory_state(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_file(folder / "side_memory.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    write_json(state, folder / "side_memory.json", allow_nan=True)   # min_act is inf before any edit


def restore_side_memory(model, tensors: dict, state: dict):
    """Install on `model` (the unedited base model) the side memory of side_memory_state's
    (tensors, state); returns the model. A state or tensors of another shape raise ValueError."""
    hp = dict(state["hparams"])
    if "routing" not in hp:     # a side memory saved without a routing setting was evaluated routed per row
        hp.update(routing="per_row", ablation="per-row-routing")
    hp.setdefault("activation_score", "real-tokens")    # saved before the setting: scored on real tokens
    hparams = WiseHParams(**hp)             # lists (JSON) become tuples
    counts = (list(state["memory_min_act"]), float(state["min_act"]), state["editing_total_cnt"],
              state["merge_cnt"], state["context_templates"])
    adapter = install(model, hparams)
    if tuple(tensors.get("side_weight", torch.empty(0)).shape) != tuple(adapter.side_weight.shape):
        remove(model)
        raise ValueError(f"no side_weight of shape {tuple(adapter.side_weight.shape)} (another model's side memory?)")
    with torch.no_grad():
        adapter.side_weight.copy_(tensors["side_weight"])
    n = sum(1 for k in tensors if k.startswith("memory_"))
    adapter.memory_weights = nn.ParameterList([nn.Parameter(tensors[f"memory_{i}"], requires_grad=False)
                                               for i in range(n)])
    adapter.weight_mask = tensors.get("weight_mask")
    (adapter.memory_min_act, adapter.min_act, adapter.editing_total_cnt, adapter.merge_cnt,
     adapter.context_templates) = counts
    return model


def load_side_memory(model, folder):
    """Install the side memory saved by `save_side_memory` on `model` (the unedited base
    model); returns the model. A truncated or garbled file raises store.CorruptFile naming it
    and how to re-make the run's model."""
    folder = Path(folder)
    fix = (f"delete {display_path(folder)} and rerun the run's WISE notebook (05) with force=True, or notebook 08 "
           "with rebuild_missing=True, which re-makes it from its record")
    if not (folder / "side_memory.json").is_file():
        raise FileNotFoundError(f"{folder} holds no saved WISE side memory (side_memory.json)")
    try:
        state = json.loads((folder / "side_memory.json").read_text())   # ValueError when malformed
    except ValueError as e:
        raise CorruptFile(folder / "side_memory.json", f"not a saved WISE side memory ({type(e).__name__}: {e})",
                          fix) from None
    try:
        tensors = load_file(str(folder / "side_memory.safetensors"))
    except Exception as e:  # noqa: BLE001 - missing, truncated, or a garbled header (SafetensorError)
        raise CorruptFile(folder / "side_memory.safetensors", f"unreadable side memory ({e})", fix) from None
    try:
        return restore_side_memory(model, tensors, state)
    except (KeyError, TypeError, ValueError) as e:
        name = "side_memory.safetensors" if "side_weight" in str(e) else "side_memory.json"
        raise CorruptFile(folder / name, f"not a saved WISE side memory ({type(e).__name__}: {e})", fix) from None
