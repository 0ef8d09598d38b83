"""Fine-tuning unlearning baselines: GradAscent, GradDiff, KL, IdK and NPO, one training loop.

The paper's baselines are TOFU's own released unlearned checkpoints (docs/paper.md section 4:
Gradient Ascent, Gradient Difference, KL minimisation and "Preference Optimization", i.e.
IdK targets). We re-run them on our models with the losses and defaults of
docs/tofu.md section 4 (names as in open-unlearning), and add NPO.

Notation (tofu.md §4): NLL(x) = mean token cross-entropy over the answer tokens of a batch
(HF `outputs.loss`); S(x) = summed answer NLL per sequence = −log π(y|x); ref = a frozen copy
of the model before unlearning.

| short | name        | loss minimised (tofu.md §4)                                        |
|-------|-------------|--------------------------------------------------------------------|
| ga    | GradAscent  | −NLL(forget)                                                       |
| gd    | GradDiff    | γ·(−NLL(forget)) + α·NLL(retain)                                   |
| kl    | KL          | γ·(−NLL(forget)) + α·KL(π_ref ‖ π_θ) on retain inputs              |
| idk   | IdK ("PO")  | NLL over (forget question, random IdK answer) ∪ retain, one mean   |
| npo   | NPO(-RT)    | γ·(2/β)·mean log(1 + (π_θ/π_ref)^β) + α·NLL(retain)                |

Every loss function takes `batch = {"forget": inputs, "retain": inputs[, "idk": inputs]}`,
where `inputs` is a right-padded dict (input_ids, attention_mask, labels with −100 on the
prompt and padding), and returns `(loss, parts)`: the scalar tensor to minimise and a dict of
float components (forget_nll, retain_nll, kl, npo, idk_nll) recorded in `stats`.

Data (tofu.md §4): each training item is one forget example plus one retain example drawn
uniformly at random (re-drawn every epoch; open-unlearning ForgetRetainDataset, legacy
TextForgetDatasetQA); an epoch is one pass over the forget set in shuffled order. For IdK, each
forget question is paired with an answer drawn uniformly from `idontknow` at every visit
(legacy TextForgetDatasetQA with loss_type "idk").

Optimisation follows the HF Trainer the references use (tofu.md §4 "Training
hyperparameters"): AdamW (β1 0.9, β2 0.999, eps 1e-8; the references' paged_adamw_32bit has the
same update), weight decay 0.01 on matrices only (HF exempts biases and norm weights), gradient
clipping at norm 1.0 (HF default `max_grad_norm`), linear warmup for `warmup_epochs` epochs then
linear decay to 0 (HF `get_linear_schedule_with_warmup`, so the very first step has lr 0 when
warmup > 0), per-micro-batch mean losses averaged over `grad_accum` micro-batches.

Deviations, all deliberate: float32 on whatever device the model is on (references: bf16 +
DeepSpeed); lr/epochs/batch are parameters because a small from-scratch model needs a larger lr
than 1e-5; a partial last accumulation group still makes an optimizer step (so every forget
example is seen every epoch, as in current HF Trainer).
"""
from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ...core.guards import ModelCollapsed, check_health, weight_norms
from ...core.hparams import HParams
from ...core.prompts import IGNORE_INDEX, encode_qa, get_template, pad_batch, pad_id

METHODS = ("ga", "gd", "kl", "idk", "npo")
METHOD_NAMES = {"ga": "GradAscent", "gd": "GradDiff", "kl": "KL", "idk": "IdK", "npo": "NPO"}
# which batch parts each method needs, and whether it needs the frozen reference model
_NEEDS_RETAIN = {"ga": False, "gd": True, "kl": True, "idk": True, "npo": True}
_NEEDS_REF = {"ga": False, "gd": False, "kl": True, "idk": False, "npo": True}

@dataclass(frozen=True)
class BaselineHParams(HParams):
    """Defaults of open-unlearning's TOFU unlearning runs (tofu.md §4): lr 1e-5, 10 epochs (legacy
    TOFU: 5), wd 0.01, warmup 1 epoch, effective batch 32 (here 8 x 4 accumulation, one device),
    seed 0, β=0.1, α=γ=1. The base (hparams.HParams) validates, copies (`replace`) and records them
    with their deviations from these (the "paper's" values: the paper ran TOFU's released checkpoints)."""

    lr: float = 1e-5
    epochs: int = 10
    batch_size: int = 8
    grad_accum: int = 4
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    max_grad_norm: float = 1.0
    seed: int = 0
    beta: float = 0.1
    alpha: float = 1.0
    gamma: float = 1.0
    kl_mask_padding: bool = False
    max_length: int | None = 500         # legacy TOFU max_length (capped at the model's context length)
    check_params_every: int = 10         # optimizer steps between (cheap) parameter health checks
    max_norm_ratio: float | None = None  # opt-in: also fail when a watched weight's norm grows this many times
    progress: bool = True

    METHOD = "baseline"
    POSITIVE = ("epochs", "batch_size", "grad_accum", "beta", "max_length", "max_norm_ratio")
    NON_NEGATIVE = ("lr", "weight_decay", "warmup_epochs", "max_grad_norm", "alpha", "gamma", "check_params_every")
    # TOFU's training settings (the others: the seed and our guards)
    PAPER_FIELDS = ("lr", "epochs", "batch_size", "grad_accum", "weight_decay", "warmup_epochs", "max_grad_norm",
                    "beta", "alpha", "gamma", "kl_mask_padding", "max_length")
    NOT_RECORDED = ("progress",)       # a progress bar, no setting


DEFAULTS = asdict(BaselineHParams())


# --------------------------------------------------------------------------- batching
def encode_example(tokenizer, template, question: str, answer: str, max_length: int | None = None):
    """(input_ids, labels) for one QA pair via prompts.encode_qa, truncated to max_length."""
    ids, labels = encode_qa(tokenizer, get_template(template), question, answer)
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return ids, labels


def collate(examples, pad: int, device=None) -> dict:
    """Right-pad a list of (input_ids, labels) into model inputs; labels are −100 on padding."""
    input_ids, mask = pad_batch([ids for ids, _ in examples], pad, "right")
    labels, _ = pad_batch([lab for _, lab in examples], IGNORE_INDEX, "right")
    out = {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
    return {k: v.to(device) for k, v in out.items()} if device is not None else out


def make_batch(tokenizer, template, forget_rows, retain_rows=None, idk_answers_for_rows=None,
               max_length: int | None = None, device=None) -> dict:
    """The loss functions' input: {"forget", "retain", "idk"} parts built from row dicts.

    `retain_rows` are paired position-wise with `forget_rows`; `idk_answers_for_rows`, when
    given, holds one refusal per forget row and yields the "idk" part (forget question + refusal).
    """
    pad = pad_id(tokenizer)
    enc = lambda q, a: encode_example(tokenizer, template, q, a, max_length)  # noqa: E731
    batch = {"forget": collate([enc(r["question"], r["answer"]) for r in forget_rows], pad, device)}
    if retain_rows:
        batch["retain"] = collate([enc(r["question"], r["answer"]) for r in retain_rows], pad, device)
    if idk_answers_for_rows is not None:
        batch["idk"] = collate([enc(r["question"], a) for r, a in zip(forget_rows, idk_answers_for_rows)],
                               pad, device)
    return batch


# --------------------------------------------------------------------------- log-likelihoods
def _forward(model, inputs):
    return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position answer NLL (B, T−1) after the causal shift, and the mask of labelled positions."""
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    nll = F.cross_entropy(shift_logits.transpose(1, 2), shift_labels,
                          ignore_index=IGNORE_INDEX, reduction="none")
    return nll, shift_labels != IGNORE_INDEX


def mean_nll(model, inputs) -> torch.Tensor:
    """NLL(x): mean over all answer tokens of the batch (HF `outputs.loss`, tofu.md §4)."""
    nll, mask = token_nll(_forward(model, inputs).logits, inputs["labels"])
    return nll.sum() / mask.sum().clamp(min=1)


def sequence_nll(model, inputs) -> torch.Tensor:
    """S(x): summed answer NLL per sequence, −log π(y|x), shape (B,) (open-unlearning
    trainer/utils.py compute_batch_nll)."""
    nll, _ = token_nll(_forward(model, inputs).logits, inputs["labels"])
    return nll.sum(dim=-1)


def kl_divergence(model, ref_model, inputs, mask_padding: bool = False) -> torch.Tensor:
    """Token-level KL(π_ref ‖ π_θ) on `inputs` (open-unlearning compute_kl_divergence).

    As the reference does (tofu.md §4 "Notes on KL"), the KL is summed over the vocabulary and
    averaged ("batchmean") over ALL flattened positions — prompt and padding positions included,
    no mask. `mask_padding=True` instead averages over the non-padding positions only
    (attention_mask == 1), a cleaner variant that is not the reference's.
    """
    with torch.no_grad():
        ref_logp = F.log_softmax(_forward(ref_model, inputs).logits.float(), dim=-1)
    logp = F.log_softmax(_forward(model, inputs).logits.float(), dim=-1)
    vocab = logp.shape[-1]
    if not mask_padding:
        return F.kl_div(logp.reshape(-1, vocab), ref_logp.reshape(-1, vocab),
                        reduction="batchmean", log_target=True)
    per_pos = F.kl_div(logp, ref_logp, reduction="none", log_target=True).sum(-1)  # (B, T)
    mask = inputs["attention_mask"].to(per_pos.dtype)
    return (per_pos * mask).sum() / mask.sum().clamp(min=1)


def npo_term(seq_nll_model: torch.Tensor, seq_nll_ref: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """L_NPO = −(2/β)·mean log σ(−β(S_ref − S_θ)) = (2/β)·mean log(1 + (π_θ/π_ref)^β).

    tofu.md §4 (open-unlearning npo.py = compute_dpo_loss with no winner; NPO authors' `npo`):
    S are sequence-level SUMMED answer NLLs, so log(π_θ/π_ref) = S_ref − S_θ. The loss is
    positive, equals (2/β)·log 2 at π_θ = π_ref, decreases to 0 as π_θ(y|x) → 0, and grows only
    linearly (≈ 2·log ratio) as the ratio grows — `logsigmoid` keeps it finite.
    """
    log_ratio = seq_nll_ref - seq_nll_model
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()


# --------------------------------------------------------------------------- the five losses
def ga_loss(model, batch):
    """GradAscent: −NLL(forget) (open-unlearning grad_ascent.py; legacy "grad_ascent")."""
    forget_nll = mean_nll(model, batch["forget"])
    return -forget_nll, {"forget_nll": forget_nll.item()}


def gd_loss(model, batch, gamma: float = 1.0, alpha: float = 1.0):
    """GradDiff: γ·(−NLL(forget)) + α·NLL(retain), γ=α=1 (open-unlearning grad_diff.py)."""
    forget_nll = mean_nll(model, batch["forget"])
    retain_nll = mean_nll(model, batch["retain"])
    loss = gamma * -forget_nll + alpha * retain_nll
    return loss, {"forget_nll": forget_nll.item(), "retain_nll": retain_nll.item()}


def kl_loss(model, ref_model, batch, gamma: float = 1.0, alpha: float = 1.0, mask_padding: bool = False):
    """KL minimisation: γ·(−NLL(forget)) + α·KL(π_ref ‖ π_θ) on the retain inputs
    (open-unlearning GradDiff with retain_loss_type KL; legacy "KL"). See `kl_divergence`."""
    forget_nll = mean_nll(model, batch["forget"])
    kl = kl_divergence(model, ref_model, batch["retain"], mask_padding=mask_padding)
    loss = gamma * -forget_nll + alpha * kl
    return loss, {"forget_nll": forget_nll.item(), "kl": kl.item()}


def idk_loss(model, batch):
    """IdK ("Preference Optimization" in TOFU/the paper): NLL on (forget question, IdK answer)
    and on the retain example.

    Follows legacy TOFU (dataloader.py "idk"): the idk and retain batches are concatenated and
    one HF loss is taken, i.e. ONE token-weighted mean over the answer tokens of both (not
    NLL(idk) + NLL(retain)). Computed here as (Σ idk-token NLL + Σ retain-token NLL) / (n_idk +
    n_retain), which is the same number without re-padding the two batches together.
    """
    nll_i, m_i = token_nll(_forward(model, batch["idk"]).logits, batch["idk"]["labels"])
    nll_r, m_r = token_nll(_forward(model, batch["retain"]).logits, batch["retain"]["labels"])
    n_i, n_r = m_i.sum().clamp(min=1), m_r.sum().clamp(min=1)
    loss = (nll_i.sum() + nll_r.sum()) / (n_i + n_r)
    return loss, {"idk_nll": (nll_i.sum() / n_i).item(), "retain_nll": (nll_r.sum() / n_r).item()}


def npo_loss(model, ref_model, batch, beta: float = 0.1, gamma: float = 1.0, alpha: float = 1.0):
    """NPO-RT: γ·L_NPO(forget) + α·NLL(retain), β=0.1, γ=α=1 (open-unlearning npo.py,
    configs/trainer/NPO.yaml; NPO authors' `npo_grad_diff`). See `npo_term`."""
    s_theta = sequence_nll(model, batch["forget"])
    with torch.no_grad():
        s_ref = sequence_nll(ref_model, batch["forget"])
    npo = npo_term(s_theta, s_ref, beta)
    retain_nll = mean_nll(model, batch["retain"])
    loss = gamma * npo + alpha * retain_nll
    n_tok = (batch["forget"]["labels"][:, 1:] != IGNORE_INDEX).sum().clamp(min=1)
    return loss, {"npo": npo.item(), "forget_nll": (s_theta.sum() / n_tok).item(),
                  "retain_nll": retain_nll.item()}


def compute_loss(method: str, model, batch, ref_model=None, *, beta=0.1, alpha=1.0, gamma=1.0,
                 kl_mask_padding=False):
    """Dispatch on the short method name (METHODS)."""
    if method == "ga":
        return ga_loss(model, batch)
    if method == "gd":
        return gd_loss(model, batch, gamma=gamma, alpha=alpha)
    if method == "kl":
        return kl_loss(model, ref_model, batch, gamma=gamma, alpha=alpha, mask_padding=kl_mask_padding)
    if method == "idk":
        return idk_loss(model, batch)
    if method == "npo":
        return npo_loss(model, ref_model, batch, beta=beta, gamma=gamma, alpha=alpha)
    raise ValueError(f"unknown method {method!r}; valid: {METHODS}")


# --------------------------------------------------------------------------- schedule
def steps_per_epoch(n_forget: int, batch_size: int, grad_accum: int) -> int:
    """Optimizer steps per epoch: ⌈⌈N/bs⌉ / accum⌉ (a partial last group still steps)."""
    return math.ceil(math.ceil(n_forget / batch_size) / grad_accum)


def warmup_steps_for(n_forget: int, batch_size: int, grad_accum: int, warmup_epochs: float) -> int:
    """open-unlearning's conversion: ⌊warmup_epochs·N / (bs·accum)⌋ (one device)."""
    return int((warmup_epochs * n_forget) // (batch_size * grad_accum))


def linear_schedule(warmup: int, total: int):
    """HF get_linear_schedule_with_warmup's multiplier for optimizer step k (0-based)."""
    def factor(k: int) -> float:
        if k < warmup:
            return k / max(1, warmup)
        return max(0.0, (total - k) / max(1, total - warmup))
    return factor


def _watched_params(model, n: int = 4):
    """A few parameters spread over the network (first, middle, last...) for cheap checks."""
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    if len(named) <= n:
        return named
    idx = sorted({round(i * (len(named) - 1) / (n - 1)) for i in range(n)})
    return [named[i] for i in idx]


# --------------------------------------------------------------------------- training loop
def unlearn(model, tokenizer, method: str, forget_rows, retain_rows, *, template,
            idk_answers=None, stats: dict | None = None, ref_model=None, hp: BaselineHParams | None = None,
            checkpoint=None, **hparams):
    """Unlearn `forget_rows` from `model` in place with one of METHODS; returns the model.

    `forget_rows` / `retain_rows`: TOFU rows (dicts with "question", "answer").
    `template`: the prompt template (name or PromptTemplate) — the one the evaluator uses.
    `idk_answers`: refusal strings for "idk" (default: data.load_tofu("idontknow")).
    `ref_model`: the frozen reference for "kl"/"npo" (default: a deepcopy of `model` taken now).
    `stats`: if given, filled with loss_curve and component curves (per optimizer step, the
    mean over its micro-batches), lr, steps, wall_time_s, method, hparams (`hp.record(deviations=False)`).
    `hp`: a BaselineHParams (default TOFU's), overridden by any of its fields given as keywords
    (lr, epochs, batch_size, grad_accum, weight_decay, warmup_epochs, max_grad_norm, seed, beta,
    alpha, gamma, kl_mask_padding, max_length, check_params_every, max_norm_ratio, progress).
    `checkpoint` (an checkpoints.EditCheckpoint, its unit an epoch) saves after every epoch the
    weights, AdamW's moments, both random generators and the curves; a rerun with it continues after
    the last saved epoch and ends where the uninterrupted run ends (tests/test_checkpoints.py).

    Raises ModelCollapsed(step, reason) when a loss or a watched parameter becomes non-finite.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {METHODS}")
    if hp is not None and not isinstance(hp, BaselineHParams):
        raise TypeError(f"hp must be a baselines.BaselineHParams (got {type(hp).__name__}); pass single settings as keywords")
    hp = (hp or BaselineHParams.paper()).replace(**hparams)      # unknown names raise TypeError naming the valid ones
    forget_rows, retain_rows = list(forget_rows), list(retain_rows or [])
    if not forget_rows:
        raise ValueError("forget_rows is empty")
    if _NEEDS_RETAIN[method] and not retain_rows:
        raise ValueError(f"method {method!r} needs retain_rows")
    if method == "idk":
        if idk_answers is None:
            from ...core.data import load_tofu
            idk_answers = load_tofu("idontknow")
        idk_answers = list(idk_answers)
        if not idk_answers:
            raise ValueError("idk_answers is empty")

    t0 = time.perf_counter()
    torch.manual_seed(hp.seed)
    rng = random.Random(hp.seed)  # shuffling, retain pairing, IdK answers
    device = next(model.parameters()).device
    max_len = hp.max_length
    ctx = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if ctx is not None:
        max_len = ctx if max_len is None else min(max_len, ctx)

    if _NEEDS_REF[method] and ref_model is None:
        ref_model = copy.deepcopy(model)
    if ref_model is not None:
        ref_model.eval()
        for p in ref_model.parameters():
            p.requires_grad_(False)

    # AdamW with HF's weight-decay split: no decay on biases and norm weights (1-D tensors).
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": hp.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=hp.lr, betas=(0.9, 0.999), eps=1e-8)

    bs, accum = hp.batch_size, hp.grad_accum
    n = len(forget_rows)
    per_epoch = steps_per_epoch(n, bs, accum)
    total = per_epoch * hp.epochs
    warmup = warmup_steps_for(n, bs, accum, hp.warmup_epochs)
    lr_factor = linear_schedule(warmup, total)
    watched = _watched_params(model)
    ref_norms = weight_norms(watched) if hp.max_norm_ratio else None

    curves: dict[str, list[float]] = {"loss_curve": [], "lr": []}
    saved = checkpoint.load() if checkpoint is not None else None
    first_epoch = 0
    if saved is not None:       # the epochs an earlier process trained (the reference was taken above, before)
        first_epoch = saved["done"]
        _restore_training_state(model, optimizer, rng, saved)
        curves = saved["stats"]
    was_training = model.training
    model.train()
    step = first_epoch * per_epoch  # optimizer steps completed; ModelCollapsed reports the 1-based step that failed
    from tqdm.auto import tqdm
    bar = tqdm(total=total, initial=step, desc=f"unlearn[{method}]", disable=not hp.progress, leave=False)
    try:
        for epoch in range(first_epoch, hp.epochs):
            # one epoch = the forget set in shuffled order, each item with a fresh random retain row
            order = list(range(n))
            rng.shuffle(order)
            micro = [order[i:i + bs] for i in range(0, n, bs)]
            for g in range(0, len(micro), accum):
                group = micro[g:g + accum]
                for pg in optimizer.param_groups:
                    pg["lr"] = hp.lr * lr_factor(step)
                optimizer.zero_grad(set_to_none=True)
                step_loss, step_parts = 0.0, {}
                for idx in group:
                    f_rows = [forget_rows[i] for i in idx]
                    r_rows = [retain_rows[rng.randrange(len(retain_rows))] for _ in idx] if retain_rows else None
                    idk = [idk_answers[rng.randrange(len(idk_answers))] for _ in idx] if method == "idk" else None
                    batch = make_batch(tokenizer, template, f_rows, r_rows if _NEEDS_RETAIN[method] else None,
                                       idk, max_length=max_len, device=device)
                    loss, parts = compute_loss(method, model, batch, ref_model, beta=hp.beta,
                                               alpha=hp.alpha, gamma=hp.gamma,
                                               kl_mask_padding=hp.kl_mask_padding)
                    value = loss.item()
                    if not math.isfinite(value):
                        raise ModelCollapsed(step + 1, f"{method} loss is {value}")
                    (loss / len(group)).backward()
                    step_loss += value / len(group)
                    for k, v in parts.items():
                        step_parts[k] = step_parts.get(k, 0.0) + v / len(group)
                if hp.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, hp.max_grad_norm)
                optimizer.step()
                curves["loss_curve"].append(step_loss)
                curves["lr"].append(optimizer.param_groups[0]["lr"])
                for k, v in step_parts.items():
                    curves.setdefault(k, []).append(v)
                step += 1
                if step % max(1, hp.check_params_every) == 0 or step == total:
                    check_health(step, watched, reference_norms=ref_norms,
                                 max_norm_ratio=hp.max_norm_ratio or 10.0, loss=step_loss)
                bar.update(1)
                bar.set_postfix(loss=f"{step_loss:.3f}")
            if checkpoint is not None:
                tensors, state = _training_state(model, optimizer, rng)
                checkpoint.save(epoch + 1, tensors, curves, state)
    finally:
        bar.close()
        model.train(was_training)
        optimizer.zero_grad(set_to_none=True)
        if stats is not None:
            stats.update(curves)
            stats.update(method=method, name=METHOD_NAMES[method], steps=step, total_steps=total,
                         warmup_steps=warmup,
                         wall_time_s=time.perf_counter() - t0 + (checkpoint.seconds_before if saved else 0.0),
                         hparams=hp.record(deviations=False))
    return model


def _training_state(model, optimizer, rng: random.Random) -> tuple[dict, dict]:
    """What an epoch boundary must keep for the next epochs to run as if uninterrupted: the trained
    parameters, AdamW's per-parameter state, torch's and the shuffling generator's states."""
    tensors = {f"param.{n}": p for n, p in model.named_parameters() if p.requires_grad}
    opt = optimizer.state_dict()
    for i, per_param in opt["state"].items():
        tensors.update({f"optimizer.{i}.{k}": v for k, v in per_param.items()})
    tensors["rng.torch"] = torch.get_rng_state()
    return tensors, {"param_groups": opt["param_groups"], "rng": rng.getstate()}


def _restore_training_state(model, optimizer, rng: random.Random, saved: dict) -> None:
    tensors, state = saved["tensors"], saved["state"]
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.copy_(tensors[f"param.{n}"])
    per_param: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optimizer."):
            _, i, name = k.split(".", 2)
            per_param.setdefault(int(i), {})[name] = v
    optimizer.load_state_dict({"state": per_param, "param_groups": state["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    version, internal, gauss = state["rng"]            # JSON gave lists back for Random's tuples
    rng.setstate((version, tuple(internal), gauss))


# --------------------------------------------------------------------------- entry point
def apply(model, tokenizer, requests, hp, stats: dict | None = None, *, method: str, retain_rows, template,
          idk_answers=None, checkpoint=None):
    """The methods' common entry point: unlearn the forget rows `requests` with `method` and
    hyperparameters `hp` (a BaselineHParams or a dict of its names); retain rows for the methods that use them.
    Returns (model, stats)."""
    stats = {} if stats is None else stats
    hp = hp if isinstance(hp, BaselineHParams) else BaselineHParams.paper().replace(**dict(hp))
    model = unlearn(model, tokenizer, method, requests, retain_rows, template=template, idk_answers=idk_answers,
                    stats=stats, hp=hp, checkpoint=checkpoint)
    return model, stats
