"""WISE: a side memory beside one MLP output projection, activation routing, sharding and TIES merging.

Re-implementation of WISE (Wang et al. 2024, arXiv 2405.14768) as EasyEdit ships it
(`easyeditor/models/wise/`), following docs/editing.md section 4 (numbers
below, e.g. "§4.3", refer to that file) and the paper's hparams (paper.md §2.3).
Three files in this package, each read top to bottom (a name is imported from the file that holds it):

* hparams.py: `WiseHParams` (defaults = the paper's run) and the named ablations.
* side_memory.py: the side memory (its docstring): `SideMemoryLayer` (§4.1), the activation
  score (§4.3), routing at inference (§4.5), `ties_merge` (§4.4), install / remove, saving
  and loading.
* this file: the editing loop. `edit()` trains the side memory for each request in turn
  (§4.2 batch, §4.3 losses with the margins), then does the sharding / merging bookkeeping
  (§4.4); `apply` is the methods' common entry point; `route_watch` counts the routes an
  evaluation takes (side_memory.logging_routes).

Deviations from EasyEdit (each one deliberate):
* Bias in both branches (§4.7 suggestion): side output = x W_side^T + b with the layer's own
  bias, so a side memory equal to W reproduces the layer exactly (EasyEdit drops the bias on
  the side branch of non-GPT-2 layers; harmless for Llama, wrong for Phi fc2).
* Activation scores: the default `activation_score="easyedit"` is EasyEdit's (`euc`, WISE.py:30-45
  at 14cea82): padding counts, in the margin loss, the threshold record and at routing time; the
  edit batch is padded on the left with EOS, as EasyEdit pads it (`build_batch`). Option
  "real-tokens" (named ablation "real-token-scores"; the committed runs of tiny, smollm2-forget01 and smoke,
  their preset files' [settings.wise]) excludes padding in all three and right-pads the edit batch. Why it
  matters: under "easyedit" the pads of the edit batch are trained like its tokens, the threshold
  is the padded rows' score, and a bare prompt may never reach it (SmolLM2 with EasyEdit at
  14cea82: threshold ~148, bare prompts 14-27).
* Label mask per row from each row's own prompt length (§4.7); EasyEdit uses the padded
  length. Prompt and target are tokenised separately and concatenated, exactly as
  `prompts.encode_qa` does for the evaluator (EasyEdit tokenises `prompt + ' ' + target`
  as one string). The labels are padded on the batch's side, so the mask is exact for every row.
* The target NLL is a plain mean over target tokens per row, then over rows (EasyEdit's
  divisor also counts one prompt position and padding: a scale quirk, not a choice).
* Routing (§4.5, §7 WISE.7): the default `routing="per_call"` is EasyEdit's rule; under
  "easyedit" scores, so are its score, batch mean (every row) and "> 100 tokens -> max" rule (on
  the call's padded length, pads in the max); under "real-tokens" a row's score is over its real
  tokens, rows with no real token in the call do not enter the batch mean and the max rule is
  applied per row on real tokens. Either way, with stored memories the batch mean of each
  memory's score is compared (EasyEdit compares a (B,) tensor, which works for one row only). `routing="per_row"` (named ablation "per-row-routing")
  decides per row, once on the prompt, and keeps the route for the KV-cached continuation.
* Margins: `act_margin_scale` multiplies (alpha, beta, gamma); 1 = the paper's. Ablation
  "margins-scaled" (`scaled_margin_overrides`) sets it from a pilot run with the paper's margins.
* The recorded in-scope score of an edit is computed with the edit's FINAL weights (one
  extra no-grad forward); EasyEdit records it at the last iteration before the last SGD step.
* The edit runs with the model in eval mode (no dropout); EasyEdit leaves the mode as is.
* Random state is seeded (mask per shard, irrelevant row per edit); EasyEdit uses the
  global numpy RNG.
* Option `threshold_tokens="prompt"` (default "all" = EasyEdit) records the in-scope score
  over the edit rows' prompt tokens only: the router decides generation on the bare prompt,
  whose score is lower than the prompt+target score EasyEdit records. Both scores are in `stats`.
* Only WISE-Retrieve (`retrieve=True`, the default of every yaml and of the paper's runs)
  is implemented; WISE-Merge raises NotImplementedError. Replay (off by default) is absent.
"""
from __future__ import annotations

import contextlib
import math
import random
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ...core import data
from ...core.architecture import TailForward, logits_at
from ...core.guards import ModelCollapsed, check_health
from ...core.prompts import IGNORE_INDEX, encode_prompt, get_template, pad_batch, pad_id
from .hparams import WiseHParams
from .side_memory import (RouteCounts, SideMemoryLayer, activation_score, get_side_memory, install, logging_routes,
                          main_memory_only, restore_side_memory, side_memory_state, token_distances)

# --------------------------------------------------------------------------- training batch (§4.2)


@torch.no_grad()
def context_templates(model, tokenizer, hp: WiseHParams) -> list[str]:
    """'{}' + greedy generations from the 5 seeds with each length, each followed by ' {}'
    (EasyEdit get_context_templates with length_params [[5,5],[10,5]]: num_beams 1, greedy).
    Generated with the main memory. Braces in generated text are removed so .format works."""
    templates = ["{}"]
    if hp.n_templates > 1:
        device = next(model.parameters()).device
        pad = pad_id(tokenizer)
        # one padded batch of seeds as EasyEdit; one seed at a time if the tokenizer cannot pad
        groups = [list(hp.template_seeds)] if tokenizer.pad_token_id is not None else [[s] for s in hp.template_seeds]
        with main_memory_only(model):
            for length in hp.template_lengths:
                for group in groups:
                    enc = tokenizer(group, return_tensors="pt", padding=len(group) > 1)
                    out = model.generate(input_ids=enc["input_ids"].to(device),
                                         attention_mask=enc["attention_mask"].to(device),
                                         max_new_tokens=length, do_sample=False, num_beams=1, pad_token_id=pad)
                    for text in tokenizer.batch_decode(out, skip_special_tokens=True):
                        templates.append(text.replace("{", "").replace("}", "") + " {}")
    return templates[:hp.n_templates]


def build_batch(tokenizer, request: dict, templates: list[str], loc_text: str, hp: WiseHParams, device):
    """Rows: each template formatted with the prompt, followed by the target tokens (labels =
    target only: prompt masked per row with the row's own prompt length), then the irrelevant
    row (no labels); attention mask 0 on pads. activation_score "easyedit": padded as EasyEdit pads
    it, on the LEFT (its editor sets padding_side='left' for WISE, easyeditor/editors/editor.py:181-183
    at 14cea82; utils.tokenize pads all rows together, the irrelevant row included, utils.py:104)
    with EOS (pad_token_id = eos_token_id for Llama / Mistral / GPT models, editor.py:148-177) and no
    position ids (WISE.py:264 calls model(**tokens)), so the scores count those pads. "real-tokens":
    right padding with the pad token, the positions of every row exact."""
    target = request.get("target", request.get("target_new"))
    if hp.template is not None:
        target_text = get_template(hp.template).answer(target)
    else:
        target_text = hp.target_prefix + target
    tgt = list(tokenizer(target_text, add_special_tokens=False)["input_ids"])
    if hp.target_eos and tokenizer.eos_token_id is not None:
        tgt.append(tokenizer.eos_token_id)
    rows, labels = [], []
    for t in templates:
        p = encode_prompt(tokenizer, t.format(request["prompt"]))
        ids, lab = p + tgt, [IGNORE_INDEX] * len(p) + tgt
        if hp.max_length:
            ids, lab = ids[-hp.max_length:], lab[-hp.max_length:]
        rows.append(ids)
        labels.append(lab)
    loc = list(tokenizer(loc_text)["input_ids"])
    if hp.max_length:
        loc = loc[:hp.max_length]
    rows.append(loc)
    labels.append([IGNORE_INDEX] * len(loc))
    easyedit = hp.activation_score == "easyedit"
    pad = tokenizer.eos_token_id if easyedit and tokenizer.eos_token_id is not None else pad_id(tokenizer)
    side = "left" if easyedit else "right"
    input_ids, attn = pad_batch(rows, pad, side)
    lab, _ = pad_batch(labels, IGNORE_INDEX, side)
    return {"input_ids": input_ids.to(device), "attention_mask": attn.to(device)}, lab.to(device)


# --------------------------------------------------------------------------- losses (§4.3)


def target_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean NLL over target tokens per row, then mean over the edit rows (all but the last)."""
    logits, labels = logits[:-1, :-1].float(), labels[:-1, 1:]
    tok = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                          ignore_index=IGNORE_INDEX, reduction="none").view(labels.shape)
    m = (labels != IGNORE_INDEX).float()
    return ((tok * m).sum(1) / m.sum(1).clamp(min=1)).mean()


def _mean_pos(t: torch.Tensor) -> torch.Tensor:
    pos = t[t > 0]
    return pos.mean() if pos.numel() else t.new_zeros(())


def activation_loss(in_scores: torch.Tensor, out_score: torch.Tensor, margins) -> torch.Tensor:
    """L_act = mean+[out - in + gamma] + mean+[out - alpha] + mean+[beta - in] (mean+ = mean of the
    positive entries, 0 if none): irrelevant rows below alpha, edit rows above beta, gap >= gamma."""
    alpha, beta, gamma = margins
    return _mean_pos(out_score.view(-1, 1) - in_scores + gamma) + _mean_pos(out_score - alpha) + _mean_pos(beta - in_scores)


# --------------------------------------------------------------------------- the editor


@contextlib.contextmanager
def _editing(model, adapter):
    """Eval mode, only the side weight trainable, adapter in editing mode; all restored after."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    model.eval()
    adapter.side_weight.requires_grad_(True)
    adapter.editing = True
    try:
        yield
    finally:
        adapter.end_editing()
        for p, f in flags:
            p.requires_grad_(f)
        adapter.side_weight.requires_grad_(False)
        adapter.side_weight.grad = None
        model.train(was_training)


def _edit_scores(adapter, labels):
    """(in-scope scores of the edit rows, score of the irrelevant row, in-scope scores over
    the edit rows' prompt tokens only), by the activation_score rule: "real-tokens", over real
    tokens (masked mean); "easyedit", over the padded length as EasyEdit's loss and threshold record
    (`_cal_activation_loss` and `save_editing_activation`: `euc` with no mask, infer=False, WISE.py:302,
    475), the prompt-only score then over the positions that are not target tokens (prompt and pads)."""
    main, side, mask = adapter.edit_outputs
    rule = adapter.hparams.activation_score
    d = token_distances(main, side, adapter.act_fn)
    s = activation_score(d, mask, None, rule)
    real = torch.ones_like(labels) if mask is None or rule == "easyedit" else mask
    prompt_only = activation_score(d[:-1], (real[:-1] > 0) & (labels[:-1] == IGNORE_INDEX), None)
    return s[:-1], s[-1:], prompt_only.detach()


class _EditForward:
    """The loss forward of one edit, computed from the side memory's input on.

    While an edit trains only the side memory changes, so the input x of the edited projection,
    the residual stream around its output and the arguments of the blocks above it are the
    same at every iteration. They are captured by one full forward; each iteration then
    recomputes the side output, the blocks above (none when the side memory sits in the last
    block, as on the from-scratch presets' models), the final norm and the LM head at the target positions
    only. In eval mode this is the full forward's arithmetic, reordered; the first tail forward
    is compared with the full one and any disagreement falls back to full forwards (an
    architecture whose head does more than norm + LM head, say).
    """

    def __init__(self, model, adapter: SideMemoryLayer, batch: dict, labels: torch.Tensor):
        self.model, self.adapter, self.batch = model, adapter, batch
        self.mask = batch["attention_mask"]
        self.keep = torch.zeros_like(labels, dtype=torch.bool)      # logits that predict a target token
        self.keep[:-1, :-1] = labels[:-1, 1:] != IGNORE_INDEX
        self.targets = labels[:, 1:][self.keep[:, :-1]]
        self.rows = self.keep.nonzero(as_tuple=True)[0]
        self.n_rows = labels.shape[0] - 1
        self.tail = TailForward(model, adapter.hparams.layer, self.keep, **batch)
        main, side, _ = adapter.edit_outputs                      # from the tail's full forward
        self.x, self.main = adapter.edit_input, main.detach()
        self.residual = self.tail.h - side.detach().to(self.tail.h.dtype)  # block output minus the projection's
        with torch.no_grad():
            self.exact = self.tail.matches(self._tail_logits())    # covers TailForward.exact's check

    def _tail_logits(self) -> torch.Tensor:
        side = self.adapter.side_forward(self.x, self.adapter.side_weight)
        self.adapter.edit_outputs = (self.main, side, self.mask)
        return self.tail.logits(self.residual + side.to(self.residual.dtype))

    def target_nll(self) -> torch.Tensor:
        """`target_nll` of the batch (same definition), from the tail or a full forward."""
        logits = self._tail_logits() if self.exact else \
            logits_at(self.model, self.keep, **self.batch, use_cache=False).float()
        tok = F.cross_entropy(logits, self.targets, reduction="none")
        per_row = torch.zeros(self.n_rows, device=tok.device).index_add(0, self.rows, tok)
        count = torch.zeros(self.n_rows, device=tok.device).index_add(0, self.rows, torch.ones_like(tok))
        return (per_row / count.clamp(min=1)).mean()


def _edit_one(model, tokenizer, adapter: SideMemoryLayer, request, loc_text, hp: WiseHParams):
    device = adapter.side_weight.device
    batch, labels = build_batch(tokenizer, request, adapter.context_templates, loc_text, hp, device)
    W = adapter.main_weight()
    opt = torch.optim.SGD([adapter.side_weight], lr=hp.edit_lr, weight_decay=hp.weight_decay)
    curve, ft_curve, act_curve, prev, last = [], [], [], None, None
    tol, floor = hp.early_stop
    stopped = False
    fwd = _EditForward(model, adapter, batch, labels)
    for it in range(hp.n_iter):
        ft = fwd.target_nll()
        in_s, out_s, in_p = _edit_scores(adapter, labels)
        act = activation_loss(in_s, out_s, hp.margins())
        loss = ft + act
        # EarlyStopMeter: checked on the two previous losses, before this iteration's step
        if prev is not None and abs(last - prev) <= tol and last <= floor:
            stopped = True
            break
        if not torch.isfinite(loss):
            raise ModelCollapsed(adapter.editing_total_cnt, f"WISE loss is {loss.item()} at iteration {it}")
        opt.zero_grad()
        loss.backward()
        adapter.side_weight.grad.mul_(adapter.weight_mask)          # random-subspace gradient mask (§4.4)
        opt.step()
        with torch.no_grad():                                       # elementwise clamp to W +- c (§4.3)
            c = hp.norm_constraint
            adapter.side_weight.copy_(torch.maximum(torch.minimum(adapter.side_weight, W + c), W - c))
        prev, last = last, loss.item()
        curve.append(last)
        ft_curve.append(ft.item())
        act_curve.append(act.item())
        if hp.verbose:
            print(f"WISE it {it}: loss {last:.4f} = {ft.item():.4f} + {act.item():.4f}")
    if not stopped:                     # score of the FINAL weights (deviation, see module doc)
        with torch.no_grad():
            ft = fwd.target_nll()
            in_s, out_s, in_p = _edit_scores(adapter, labels)
            act = activation_loss(in_s, out_s, hp.margins())
    return {"curve": curve, "ft_curve": ft_curve, "act_curve": act_curve, "in_score": float(in_s.detach().mean()),
            "out_score": float(out_s.detach().mean()), "in_score_prompt": float(in_p.detach().mean()), "tail_forward": fwd.exact,
            "ft_loss": float(ft.detach()), "act_loss": float(act.detach()), "n_iter": len(curve)}


def _make_hparams(hparams: dict, existing: WiseHParams | None) -> WiseHParams:
    """The paper's settings (no side memory yet) or the installed memory's (its layer fixed) with `hparams`."""
    if existing is None:
        return WiseHParams.paper().replace(**hparams)
    if hparams.get("layer") is not None and hparams["layer"] != existing.layer:
        raise ValueError(f"a side memory is already installed at layer {existing.layer}")
    return existing.replace(**{k: v for k, v in hparams.items() if k != "layer"})


def edit(model, tokenizer, requests, *, locality_prompts, stats=None, checkpoint=None, **hparams):
    """Edit `requests` sequentially into a WISE side memory; returns the same model object.

    requests: dicts with `prompt` (already in the model's template) and `target`.
    locality_prompts: question+answer texts outside the evaluation set; one is sampled per
    edit (seeded by `seed` and the edit's global index) as the irrelevant row x_i.
    hparams: see WiseHParams. A later call continues from the installed side memory: its
    layer is fixed, hparams passed again override, the others keep their earlier values.
    stats (optional dict) receives lists (one entry per edit, appended across calls):
    edit_times_s, loss_curves (total loss per iteration; ft_curves / act_curves: its target-NLL
    and activation-margin parts), in_scores (edit rows, all real
    tokens), in_scores_prompt (edit rows, prompt tokens only), out_scores (irrelevant row),
    ft_losses, act_losses, n_iters; and threshold, memory_thresholds, n_memories, layer; and
    hparams (`WiseHParams.record()`: every setting, the ablation name, deviations_from_paper).
    `checkpoint` (an checkpoints.EditCheckpoint; a first call only) saves the side memory and
    `stats` after every edit, and a rerun continues after its last save.
    """
    if not locality_prompts:
        raise ValueError("WISE needs locality_prompts (irrelevant x_i for the margin loss, §7 WISE.1)")
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:               # the edits an earlier process made: their side memory, their stats
        if get_side_memory(model) is not None:
            raise ValueError("a checkpointed WISE run starts on a model without a side memory")
        restore_side_memory(model, saved["tensors"], saved["state"])
        requests = list(requests)[saved["done"]:]
        if stats is not None:
            stats.update(saved["stats"])
    n_before = 0 if saved is None else saved["done"]
    adapter = get_side_memory(model)
    hp = _make_hparams(hparams, adapter.hparams if adapter is not None else None)
    if adapter is None:
        templates = context_templates(model, tokenizer, hp)
        adapter = install(model, hp)
        adapter.context_templates = templates
        hp = adapter.hparams                    # with its resolved layer
    else:
        adapter.hparams = hp
        if adapter.context_templates is None or len(adapter.context_templates) != hp.n_templates:
            adapter.context_templates = context_templates(model, tokenizer, hp)
    if stats is not None:
        stats["hparams"] = hp.record()          # before the edits: kept when one collapses
        for k in ("edit_times_s", "loss_curves", "ft_curves", "act_curves", "in_scores", "in_scores_prompt", "out_scores", "ft_losses",
                  "act_losses", "n_iters", "tail_forward"):
            stats.setdefault(k, [])
    step_0 = adapter.editing_total_cnt
    for request in tqdm(requests, desc="WISE edits", leave=False, disable=len(requests) < 2,    # not a setting
                        total=n_before + len(requests), initial=n_before):
        step = adapter.editing_total_cnt
        t0 = time.perf_counter()
        if step % hp.save_freq == 0 or adapter.weight_mask is None:     # fresh subspace per shard
            adapter.new_mask(torch.Generator().manual_seed(hp.seed * 1_000_003 + step // hp.save_freq))
        loc_text = random.Random(hp.seed * 1_000_003 + step).choice(list(locality_prompts))
        with _editing(model, adapter):
            res = _edit_one(model, tokenizer, adapter, request, loc_text, hp)
        check_health(step, [("wise.side_weight", adapter.side_weight)], loss=res["ft_loss"] + res["act_loss"])
        record = res["in_score"] if hp.threshold_tokens == "all" else res["in_score_prompt"]
        adapter.min_act = min(adapter.min_act, record)                # running min of the shard (§4.3)
        adapter.editing_total_cnt += 1
        if adapter.editing_total_cnt % hp.save_freq == 0:
            adapter.save_shard()
        if adapter.editing_total_cnt % hp.merge_freq == 0:
            adapter.merge_shards()
        dt = time.perf_counter() - t0
        if stats is not None:
            stats["edit_times_s"].append(dt)
            stats["loss_curves"].append(res["curve"])
            stats["ft_curves"].append(res["ft_curve"])
            stats["act_curves"].append(res["act_curve"])
            stats["in_scores"].append(res["in_score"])
            stats["in_scores_prompt"].append(res["in_score_prompt"])
            stats["out_scores"].append(res["out_score"])
            stats["ft_losses"].append(res["ft_loss"])
            stats["act_losses"].append(res["act_loss"])
            stats["n_iters"].append(res["n_iter"])
            stats["tail_forward"].append(res["tail_forward"])
        if checkpoint is not None:
            tensors, state = side_memory_state(model)
            checkpoint.save(n_before + adapter.editing_total_cnt - step_0, tensors, stats, state)
    if stats is not None:
        stats["threshold"] = adapter.threshold()
        stats["memory_thresholds"] = [adapter.threshold(i) for i in range(len(adapter.memory_weights))]
        stats["n_memories"] = len(adapter.memory_weights)
        stats["layer"] = hp.layer
    adapter.reset_route()
    return model


# --------------------------------------------------------------------------- entry point
def apply(model, tokenizer, requests, hp, stats: dict | None = None, *, locality_prompts, checkpoint=None):
    """The methods' common entry point: edit `requests` into a WISE side memory with
    hyperparameters `hp` (WiseHParams or a dict of its names) and the irrelevant texts
    `locality_prompts` (x_i of the margin loss). Returns (model, stats), the routing left to
    each forward call."""
    stats = {} if stats is None else stats
    hp = {n: getattr(hp, n) for n in WiseHParams.field_names()} if isinstance(hp, WiseHParams) else dict(hp)
    edit(model, tokenizer, requests, locality_prompts=locality_prompts, stats=stats, checkpoint=checkpoint, **hp)
    adapter = get_side_memory(model)
    if adapter is not None:
        adapter.reset_route()
    return model, stats


def route_watch(model, into: dict):
    """A `watch` for evaluate.evaluate_model (None when no side memory is installed): each pass of
    the evaluation, `watch(set_name, kind)` ("loss": the teacher-forced answer losses, "generate":
    greedy generation), is counted by `logging_routes` and its `RouteCounts.summary()` written to
    into[set_name][kind] when the pass ends (a pass met again adds to its counts)."""
    if get_side_memory(model) is None:
        return None
    counters: dict = {}

    @contextlib.contextmanager
    def watch(set_name: str, kind: str):
        counts = counters.setdefault((set_name, kind), RouteCounts())
        try:
            with logging_routes(model, counts):
                yield
        finally:
            into.setdefault(set_name, {})[kind] = counts.summary()
    return watch


# --------------------------------------------------------------------------- the study's inputs (paper.md §2.3)
def scaled_freqs(n_edits: int, reference_edits: int = 400, save_freq: int = 500, merge_freq: int = 1000) -> dict:
    """save_freq / merge_freq scaled to an edit count below the reference run's: the paper edited 400
    requests with EasyEdit's 500 / 1000 (paper.md §2.1-2.3), so no shard was saved or merged (editing.md
    §4.4); scaling both by n_edits / 400 keeps that regime (0.8 of a shard). merge_freq stays a multiple."""
    if n_edits >= reference_edits:
        return {"save_freq": save_freq, "merge_freq": merge_freq}
    s = max(1, math.ceil(save_freq * n_edits / reference_edits))
    return {"save_freq": s, "merge_freq": s * max(1, round(merge_freq / save_freq))}


def wise_locality_texts(sd, template, n: int = 400, data_dir=None) -> tuple[list[str], str]:
    """The irrelevant inputs x_i of WISE's margin loss: "question + answer" texts in `template`
    that no evaluation set contains (paper.md §2.3: 400 retain-set QA strings outside TOFU's
    retain eval set; EasyEdit's reference scripts use NQ train QA).

    First choice: the study's retain rows without `perturbed_answer` (not in the retain
    evaluation). When there are none (our presets' retain authors are exactly retain_perturbed's
    20 authors), the QA of TOFU `full` authors outside the study, in author order: the same kind
    of fictitious-author QA, in no evaluation set and never trained on. Returns (texts, source).
    """
    t = get_template(template)
    rows = [r for r in sd.retain_rows if not r.get("perturbed_answer")]
    source = "study retain rows outside the retain eval set"
    if not rows:
        used = set(sd.retain_authors) | set(sd.forget_authors)
        n_authors = data.FULL_ROWS // data.ROWS_PER_AUTHOR
        others = [a for a in range(n_authors) if a not in used][:max(1, math.ceil(n / data.ROWS_PER_AUTHOR))]
        rows = data.authors_rows(others, data_dir)
        source = f"TOFU full authors {others[0]}-{others[-1]} (outside the study; no retain row lies outside the eval set)"
    return [t.full(r["question"], r["answer"]) for r in rows[:n]], source
