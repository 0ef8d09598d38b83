"""Causal tracing (Meng et al. 2022, "Locating and Editing Factual Associations in GPT").

A re-implementation of kmeng01/rome `experiments/causal_trace.py` (commit 0874014) and the
aggregation of `notebooks/average_causal_effects.ipynb`, for GPT-2, Llama and Phi through
`unedit_lib.core.architecture`. Section numbers refer to docs/editing.md.

The experiment (section 1):
1. Clean run: the model reads the prompt; the probability of the answer's first token `o` at the
   last position is `high_score` (o = the clean argmax when no answer is given, as in rome).
2. Corrupted runs: Gaussian noise (scale `noise` = 3 x the embedding std, "s3") is added to the
   *token embeddings* of the subject tokens only; `samples` (10) noise draws from a seeded
   generator, the SAME draws for every experiment (common random numbers, section 1.2).
   `low_score` = p(o) averaged over the corrupted rows with nothing restored.
3. Restoration: for every (token t, layer l) the corrupted rows get the clean state back at token t:
   the block output (kind=None, one layer), or the MLP / attention output over a window of 10
   layers centred on l (kind="mlp"/"attn", section 1.3). The score is p(o) at the last position,
   averaged over the corrupted rows.

Batching (a porting choice, not rome's loop): rome runs one forward pass of [clean row + 10 noisy
rows] per (t, l). Here the clean states are recorded once, then many (t, l) experiments are packed
into one batch (`samples` rows each) and patched from the recorded clean states. In eval mode
(no dropout) the clean row is the same in every pass, so the scores are identical.
The corrupted run is also made once, and each experiment runs only the blocks from its lowest
restored layer on, with the LM head at the last position (`_corrupted_scores`; on SmolLM2-135M
2x faster for the block-output trace, 1.4x for a 10-layer MLP window, scores bit-identical).

Subject tokens are found with the fast tokenizer's `offset_mapping` (section 1.6: rome's
decode-and-join `find_token_range` breaks on SentencePiece); special tokens (BOS) are never part
of the subject span nor of the std estimate.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from ..core.architecture import architecture
from ..core.prompts import subject_token_range

GROUP_LABELS = ["First subject token", "Middle subject tokens", "Last subject token",
                "First subsequent token", "Further tokens", "Last token"]
KINDS = (None, "mlp", "attn")


# --------------------------------------------------------------------------- noise level
@torch.no_grad()
def embedding_std(model, tokenizer, subjects) -> float:
    """rome `collect_embedding_std`: one global std over all elements of the token embeddings of
    every subject string, embedded alone (no prompt, no special tokens)."""
    emb = architecture(model).embedding
    device = next(model.parameters()).device
    vecs = []
    for s in subjects:
        ids = tokenizer(s, add_special_tokens=False)["input_ids"]
        if ids:
            vecs.append(emb(torch.tensor([ids], device=device))[0].float())
    if not vecs:
        raise ValueError("no subject tokens to estimate the embedding std from")
    return float(torch.cat(vecs).std())


def noise_level(model, tokenizer, subjects, factor: float = 3.0) -> float:
    """The "s3" rule (section 1.2): noise std = factor (3) x the embedding std over `subjects`."""
    return factor * embedding_std(model, tokenizer, subjects)


# --------------------------------------------------------------------------- hooks
def _module_for(arch, kind: str | None, layer: int):
    """The module whose output is restored: the block (residual stream after the block), or the
    MLP / attention sublayer (its contribution to the residual stream)."""
    if kind is None:
        return arch.block(layer)
    if kind == "mlp":
        return arch.mlp(layer)
    if kind == "attn":
        return arch.attn(layer)
    raise ValueError(f"kind must be None, 'mlp' or 'attn', not {kind!r}")


def _first(output):
    """Block / attention outputs may be tuples; the hidden state is element 0 (section 1.6)."""
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output, new):
    return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new


@contextmanager
def _hooks(handles):
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def window_layers(layer: int, n_layers: int, window: int = 10) -> list[int]:
    """rome `trace_important_window`: layers max(0, l - w//2) .. min(L, l - (-w//2)) - 1,
    i.e. l-5 .. l+4 for w = 10, clamped to the model depth."""
    return list(range(max(0, layer - window // 2), min(n_layers, layer - (-window // 2))))


# --------------------------------------------------------------------------- tracing
@torch.no_grad()
def _clean_run(model, arch, ids: torch.Tensor, kind):
    """Clean forward pass: logits at the last position and every layer's clean state (T, d)."""
    states = {}

    def rec(layer):
        def hook(mod, inp, out):
            states[layer] = _first(out)[0].detach().clone()
        return hook

    handles = [_module_for(arch, kind, l).register_forward_hook(rec(l)) for l in range(arch.n_layers)]
    with _hooks(handles):
        logits = model(input_ids=ids).logits[0, -1].float()
    return logits, states


def _batch(x, samples: int, n: int):
    """A captured block argument for a batch of n x `samples` rows: tensors batched over the
    `samples` corrupted rows (dim 0 == samples, 2-D or more) are repeated n times; the rest (batch
    1 broadcasts, positions, caches) pass unchanged. The tail path's check catches anything else."""
    if isinstance(x, torch.Tensor):
        return x.repeat(n, *([1] * (x.dim() - 1))) if n > 1 and x.dim() >= 2 and x.shape[0] == samples else x
    if isinstance(x, (tuple, list)):
        return type(x)(_batch(v, samples, n) for v in x)
    if isinstance(x, dict):
        return {k: _batch(v, samples, n) for k, v in x.items()}
    return x


@torch.no_grad()
def _corrupted_block_inputs(model, arch, ids, subject_range, noise_draws) -> list:
    """One forward pass of the `samples` corrupted rows, nothing restored: every block's input
    hidden state and the other arguments it was called with, [(h, args, kwargs)] per layer."""
    b, e = subject_range
    got: dict[int, tuple] = {}

    def corrupt(mod, inp, out):
        out = out.clone()
        out[:, b:e] += noise_draws.to(out.dtype)
        return out

    def record(layer):
        def hook(mod, args, kwargs):
            if args:
                got[layer] = (args[0].detach(), args[1:], dict(kwargs))
            else:
                got[layer] = (kwargs["hidden_states"].detach(), (),
                              {k: v for k, v in kwargs.items() if k != "hidden_states"})
        return hook

    handles = [arch.embedding.register_forward_hook(corrupt)]
    handles += [arch.block(l).register_forward_pre_hook(record(l), with_kwargs=True) for l in range(arch.n_layers)]
    with _hooks(handles):
        model(input_ids=ids.repeat(noise_draws.shape[0], 1), use_cache=False)
    return [got[l] for l in range(arch.n_layers)]


def _restore_hooks(arch, kind, clean_states, chunk, samples):
    """Hooks that give experiment j's rows [j*samples, (j+1)*samples) the clean states of its
    (token, layer) specs back (rome `patch_rep`'s restoration)."""
    by_layer: dict[int, list[tuple[int, int]]] = {}
    for j, spec in enumerate(chunk):
        for t, l in spec:
            by_layer.setdefault(l, []).append((j, t))

    def restore(layer):
        def hook(mod, inp, out):
            h = _first(out).clone()
            for j, t in by_layer[layer]:
                h[j * samples:(j + 1) * samples, t] = clean_states[layer][t]
            return _replace_first(out, h)
        return hook

    return [_module_for(arch, kind, l).register_forward_hook(restore(l)) for l in by_layer]


@torch.no_grad()
def _full_pass_scores(model, arch, ids, subject_range, noise_draws, answer, kind, clean_states, chunk):
    """p(answer) per experiment of `chunk` from whole forward passes: corrupt the subject-token
    embeddings of every row with the same draws, restore, read the last position."""
    samples, n = noise_draws.shape[0], len(chunk)
    b, e = subject_range

    def corrupt(mod, inp, out):
        out = out.clone()
        out[:, b:e] += noise_draws.repeat(n, 1, 1).to(out.dtype)
        return out

    handles = [arch.embedding.register_forward_hook(corrupt)]
    handles += _restore_hooks(arch, kind, clean_states, chunk, samples)
    with _hooks(handles):
        logits = model(input_ids=ids.repeat(n * samples, 1)).logits[:, -1].float()
    return torch.softmax(logits, dim=-1)[:, answer].view(n, samples).mean(dim=1).tolist()


@torch.no_grad()
def _tail_pass_scores(model, arch, inputs, start, answer, kind, clean_states, chunk, samples):
    """The same scores running only blocks `start`.. from the corrupted state entering block
    `start` (every restored layer is >= start, so the blocks below see the corrupted run alone),
    and the LM head at the last position only."""
    n = len(chunk)
    h = inputs[start][0].repeat(n, 1, 1)
    with _hooks(_restore_hooks(arch, kind, clean_states, chunk, samples)):
        for l in range(start, arch.n_layers):
            _, args, kwargs = inputs[l]
            h = _first(arch.block(l)(h, *_batch(args, samples, n), **_batch(kwargs, samples, n)))
        logits = model.get_output_embeddings()(arch.final_norm(h[:, -1])).float()
    return torch.softmax(logits, dim=-1)[:, answer].view(n, samples).mean(dim=1).tolist()


@torch.no_grad()
def _corrupted_scores(model, arch, ids, subject_range, noise_draws, answer, kind, clean_states,
                      experiments, batch_rows, tail_passes: bool = True):
    """p(answer) at the last position for each experiment, averaged over its noisy rows.

    `experiments` is a list of patch specs, each a list of (token, layer) whose clean state is
    restored (an empty list = nothing restored = the `low_score` run).

    Speed (a porting choice; the same arithmetic): below the lowest restored layer an experiment's
    rows are the corrupted run itself, the same for every experiment. That run is made once and each
    experiment runs only the blocks from its lowest restored layer on (about half the blocks for
    the block-output trace, two thirds for a 10-layer window), with the LM head at the last position
    only. The first batch is also run whole; if the two ways disagree (an architecture whose blocks
    take more than the captured arguments), every batch runs whole. `tail_passes=False` runs every
    batch whole, as rome does (benchmarks/bench.py --stages trace times both).
    """
    samples = noise_draws.shape[0]
    per_batch = max(1, batch_rows // samples)
    start = [min((l for _, l in spec), default=0) for spec in experiments]
    inputs = _corrupted_block_inputs(model, arch, ids, subject_range, noise_draws)
    scores: list[float | None] = [None] * len(experiments)
    tail_ok = None if tail_passes else False
    for m in sorted(set(start)):
        idx = [i for i, s in enumerate(start) if s == m]
        for k in range(0, len(idx), per_batch):
            part = idx[k:k + per_batch]
            chunk = [experiments[i] for i in part]
            got = None
            if tail_ok is not False:
                got = _tail_pass_scores(model, arch, inputs, m, answer, kind, clean_states, chunk, samples)
            if tail_ok is None:
                whole = _full_pass_scores(model, arch, ids, subject_range, noise_draws, answer, kind,
                                          clean_states, chunk)
                tail_ok = bool(np.allclose(got, whole, rtol=1e-4, atol=1e-7))
                got = whole
            elif tail_ok is False:
                got = _full_pass_scores(model, arch, ids, subject_range, noise_draws, answer, kind,
                                        clean_states, chunk)
            for i, v in zip(part, got):
                scores[i] = v
    return scores


def _answer_token(tokenizer, answer_first_token) -> int:
    if isinstance(answer_first_token, str):
        ids = tokenizer(answer_first_token, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"answer {answer_first_token!r} encodes to no tokens")
        return ids[0]
    return int(answer_first_token)


@torch.no_grad()
def trace_important_states(model, tok, prompt: str, subject: str, answer_first_token=None,
                           kind: str | None = None, samples: int = 10, noise: float | None = None,
                           window: int = 10, seed: int = 0, batch_rows: int = 128,
                           tokens=None, tail_passes: bool = True) -> dict:
    """Causal trace of one prompt (rome `calculate_hidden_flow`).

    answer_first_token: token id, or a string whose first token is used (e.g. " " + answer);
        None = the clean model's argmax next token (rome's default).
    kind: None (block output, one layer), "mlp" or "attn" (sublayer outputs, `window` layers).
    noise: the noise std; None = 3 x the embedding std of this subject alone (pass
        `noise_level(model, tok, all_subjects)` for rome's global estimate).
    tokens: token positions to trace (default all, as rome).
    tail_passes: run each restoration from its lowest restored layer (`_corrupted_scores`; the same
        scores); False: whole forward passes, as rome.

    Returns dict(scores [tokens x layers] numpy, low_score, high_score, subject_range (b, e),
    input_tokens (strings), input_ids, answer (id), answer_token (string), kind, window, noise).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be None, 'mlp' or 'attn', not {kind!r}")
    arch = architecture(model)
    device = next(model.parameters()).device
    ids_list, subject_range = subject_token_range(tok, prompt, subject)
    ids = torch.tensor([ids_list], device=device)
    if noise is None:
        noise = noise_level(model, tok, [subject])

    logits, clean_states = _clean_run(model, arch, ids, kind)
    answer = int(logits.argmax()) if answer_first_token is None else _answer_token(tok, answer_first_token)
    high_score = float(torch.softmax(logits, dim=-1)[answer])

    # the same `samples` noise draws for every experiment (rome: RandomState(1) in every call)
    b, e = subject_range
    gen = torch.Generator().manual_seed(seed)
    draws = torch.randn(samples, e - b, arch.hidden_size, generator=gen).to(device) * noise

    n_layers = arch.n_layers
    positions = list(range(len(ids_list))) if tokens is None else list(tokens)
    # A token before the subject is never touched by the noise (causal attention): its corrupted
    # states are its clean states, and restoring them restores nothing, so its row is low_score
    # exactly. Those experiments are not run (on a chat template's prompt, often half of them).
    run_positions = [t for t in positions if t >= b]
    experiments = [[]]  # the first one restores nothing: low_score
    for t in run_positions:
        for l in range(n_layers):
            layers = [l] if kind is None else window_layers(l, n_layers, window)
            experiments.append([(t, ll) for ll in layers])
    scores = _corrupted_scores(model, arch, ids, subject_range, draws, answer, kind, clean_states,
                               experiments, batch_rows, tail_passes)
    low_score = scores[0]
    table = np.full((len(positions), n_layers), low_score)
    table[[i for i, t in enumerate(positions) if t >= b]] = np.array(scores[1:]).reshape(len(run_positions), n_layers)
    return dict(scores=table, low_score=low_score, high_score=high_score, subject_range=subject_range,
                input_ids=ids_list, input_tokens=[tok.decode([i]) for i in ids_list], positions=positions,
                answer=answer, answer_token=tok.decode([answer]), kind=kind,
                window=None if kind is None else window, noise=float(noise))


@torch.no_grad()
def trace_with_patch(model, tok, prompt: str, subject: str, states_to_patch, answer_first_token=None,
                     kind: str | None = None, samples: int = 10, noise: float | None = None,
                     seed: int = 0) -> dict:
    """One experiment (rome `trace_with_patch`): corrupt the subject, restore the clean states of
    every (token, layer) in `states_to_patch` at once; returns dict(score, low_score, high_score)."""
    arch = architecture(model)
    device = next(model.parameters()).device
    ids_list, (b, e) = subject_token_range(tok, prompt, subject)
    ids = torch.tensor([ids_list], device=device)
    if noise is None:
        noise = noise_level(model, tok, [subject])
    logits, clean_states = _clean_run(model, arch, ids, kind)
    answer = int(logits.argmax()) if answer_first_token is None else _answer_token(tok, answer_first_token)
    gen = torch.Generator().manual_seed(seed)
    draws = torch.randn(samples, e - b, arch.hidden_size, generator=gen).to(device) * noise
    low, score = _corrupted_scores(model, arch, ids, (b, e), draws, answer, kind, clean_states,
                                   [[], list(states_to_patch)], batch_rows=2 * samples)
    return dict(score=score, low_score=low, high_score=float(torch.softmax(logits, -1)[answer]), answer=answer)


def trace_all(model, tok, prompt, subject, **kw) -> dict:
    """The three traces of one prompt: {"hidden": kind None, "mlp": ..., "attn": ...}."""
    return {("hidden" if k is None else k): trace_important_states(model, tok, prompt, subject, kind=k, **kw)
            for k in KINDS}


# --------------------------------------------------------------------------- aggregation
def average_traces(results: list[dict]) -> dict:
    """Average indirect effects over prompts (rome `average_causal_effects.ipynb`, `read_knowlege`).

    Token classes (rows): first subject token, middle subject tokens (pooled), last subject token,
    first subsequent token, further tokens (pooled), last token. As in rome, a one-token subject
    counts as both first and last subject token, and a subject ending right before the last token
    makes the first subsequent token the last token. Traces must cover all tokens.

    Returns dict(labels, scores [6 x L] mean p(o) after restoration, std, count (rows pooled
    per class), aie [6 x L] mean of (p_restored - low_score), aie_std, ci95 (1.96 std / sqrt(n) of
    the aie), low_score, high_score (means), te (high - low), n (prompts), kind).
    """
    if not results:
        raise ValueError("no traces to average")
    groups: list[list[np.ndarray]] = [[] for _ in GROUP_LABELS]
    effects: list[list[np.ndarray]] = [[] for _ in GROUP_LABELS]
    for r in results:
        scores = np.asarray(r["scores"], dtype=float)
        if r.get("positions") is not None and list(r["positions"]) != list(range(len(scores))):
            raise ValueError("average_traces needs traces over every token position")
        first_e, first_a = r["subject_range"]
        last_e, last_a = first_a - 1, len(scores) - 1
        rows = [[scores[first_e]], list(scores[first_e + 1:last_e]), [scores[last_e]],
                [scores[first_a]] if first_a <= last_a else [], list(scores[first_a + 1:last_a]),
                [scores[last_a]]]
        for g, rs in enumerate(rows):
            groups[g].extend(rs)
            effects[g].extend(x - r["low_score"] for x in rs)
    n_layers = np.asarray(results[0]["scores"]).shape[1]

    def stat(rows, fn):
        return fn(np.stack(rows), axis=0) if rows else np.full(n_layers, np.nan)

    count = np.array([len(g) for g in groups])
    aie_std = np.stack([stat(g, np.std) for g in effects])
    low = float(np.mean([r["low_score"] for r in results]))
    high = float(np.mean([r["high_score"] for r in results]))
    return dict(labels=list(GROUP_LABELS), scores=np.stack([stat(g, np.mean) for g in groups]),
                std=np.stack([stat(g, np.std) for g in groups]), count=count,
                aie=np.stack([stat(g, np.mean) for g in effects]), aie_std=aie_std,
                ci95=1.96 * aie_std / np.sqrt(np.maximum(count, 1))[:, None],
                low_score=low, high_score=high, te=high - low, n=len(results), kind=results[0]["kind"])


def choose_edit_layer(avg_mlp_result: dict, exclude_last_layer: bool = False) -> int:
    """The layer (0-based) with the peak MLP effect at the last subject token (section 1.5).

    Accepts an `average_traces` result (uses its AIE row "Last subject token") or a single
    `trace_important_states` result (uses the last subject token's row of its scores).
    exclude_last_layer: never pick the final layer. With single-layer (window 1) MLP traces its
    effect at a non-final token is exactly 0 (nothing reads that position afterwards), so on a
    shallow model whose other layers have negative or tiny effects the argmax would be a
    layer where a ROME edit cannot change the answer at all.
    """
    if avg_mlp_result.get("kind") not in (None, "mlp"):
        raise ValueError(f"choose_edit_layer expects an MLP trace, got kind {avg_mlp_result['kind']!r}")
    if "aie" in avg_mlp_result:
        row = np.asarray(avg_mlp_result["aie"])[GROUP_LABELS.index("Last subject token")]
    else:
        scores = np.asarray(avg_mlp_result["scores"])
        row = scores[avg_mlp_result["subject_range"][1] - 1] - avg_mlp_result["low_score"]
    if exclude_last_layer and len(row) > 1:
        row = row[:-1]
    return int(np.nanargmax(row))


def token_in_subject(token: str, subject: str) -> bool:
    """Whether an answer token is a piece of the subject's own name (a bare space is not): the model
    can copy it from the question, so a trace of it locates the copying, not the fact."""
    return bool(token.strip()) and token.strip() in subject


def subject_last_token_effect(model, tok, rows, template="qa", samples: int = 10, seed: int = 0) -> dict:
    """The subject-model notebook's short check of ROME's premise, over a few QA rows.

    For each row (needs `question`, `subject`, `answer`): corrupt the subject's embeddings
    (noise = 3 x the embedding std over these subjects), then restore the clean hidden state
    (block output) at the subject's LAST token in one layer at a time; score = p(first token
    of the true answer). Returns per-layer means of the restored score, the clean and the
    corrupted means, and a per-row table (with the scored token and whether it is a piece of the subject's name,
    a token the model copies from the question rather than recalls through the subject).
    """
    import pandas as pd

    from ..core.prompts import get_template

    template = get_template(template)
    rows = [r for r in rows if r["subject"] in r["question"]]
    noise = noise_level(model, tok, [r["subject"] for r in rows])
    restored, table = [], []
    for r in rows:
        prompt = template.prompt(r["question"])
        b, e = subject_token_range(tok, prompt, r["subject"])[1]
        res = trace_important_states(model, tok, prompt, r["subject"], template.answer(r["answer"]),
                                     kind=None, samples=samples, noise=noise, seed=seed, tokens=[e - 1])
        restored.append(res["scores"][0])
        table.append({"question": r["question"], "subject": r["subject"], "clean": res["high_score"],
                      "corrupted": res["low_score"], "best restored": float(res["scores"][0].max()),
                      "best layer": int(res["scores"][0].argmax()),
                      # the scored token is a piece of the subject's name: the model copies it from the
                      # corrupted subject tokens, which one restored state does not undo
                      "answer token": res["answer_token"],
                      "copied from the subject": token_in_subject(res["answer_token"], r["subject"])})
    df = pd.DataFrame(table)
    return {"restored_mean": np.mean(restored, axis=0), "clean_mean": float(df["clean"].mean()),
            "corrupted_mean": float(df["corrupted"].mean()), "table": df}


# --------------------------------------------------------------------------- study helpers
def window_covers_depth(n_layers: int, window: int = 10) -> bool:
    """True when every window centre restores the same layers (window >= about 2 x depth), so a
    windowed MLP/attention trace is flat over layers and cannot localise an edit layer."""
    return len({tuple(window_layers(l, n_layers, window)) for l in range(n_layers)}) == 1


def trace_facts(model, tok, rows, template="qa", kinds=KINDS, samples: int = 10, window: int = 10,
                noise: float | None = None, noise_factor: float = 3.0, seed: int = 0,
                answer: str = "clean", progress: bool = False) -> dict:
    """Causal traces of many QA facts (rows with `question`, `subject`, `answer`), rome-style.

    The prompt is the question in the model's `template`; the subject must be a substring of the
    question (other rows are skipped and listed). noise: the std; None = `noise_factor` x the
    embedding std over ALL these subjects (rome's global `collect_embedding_std`). The same
    `samples` draws (generator seeded with `seed`) serve every restoration.
    answer: "clean" = the clean model's argmax first token (rome's `o`); "truth" = the first token
    of the true answer.

    Returns dict(traces: [{kind name -> trace result, "row": index, "question", "subject",
    "true_first": id of the true answer's first token}], skipped: [row indices], noise).
    """
    from ..core.prompts import encode_answer, get_template

    template = get_template(template)
    keep = [i for i, r in enumerate(rows) if r["subject"] and r["subject"] in r["question"]]
    skipped = [i for i in range(len(rows)) if i not in set(keep)]
    if noise is None:
        noise = noise_level(model, tok, [rows[i]["subject"] for i in keep], noise_factor)
    out = []
    it = keep
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(keep, desc="tracing")
    for i in it:
        r = rows[i]
        prompt = template.prompt(r["question"])
        true_first = encode_answer(tok, template.answer(r["answer"]), add_eos=False)[0]
        ans = None if answer == "clean" else int(true_first)
        rec = {"row": i, "question": r["question"], "subject": r["subject"], "true_first": int(true_first)}
        for k in kinds:
            rec["hidden" if k is None else k] = trace_important_states(
                model, tok, prompt, r["subject"], ans, kind=k, samples=samples, noise=noise,
                window=window, seed=seed)
        out.append(rec)
    return {"traces": out, "skipped": skipped, "noise": float(noise)}


def subject_effect_summary(avg_hidden: dict, avg_mlp: dict | None = None, min_share: float = 0.1) -> dict:
    """Is the fact recalled through the subject? From `average_traces` results.

    For the hidden-state trace (and the MLP trace when given): the peak AIE at the last subject
    token, its layer and 95% half-width, the peak AIE at the first subject token and its layer (for
    comparison: a model that copies the subject's name into its answer shows its effect there), the
    peak AIE at the last token, and the total effect TE.
    `clear` = the last-subject-token peak is above zero by more than its 95% half-width AND is at
    least `min_share` of TE (TE > 0). In rome's GPT models the hidden-state AIE at the last
    subject token reaches a large share of TE in the early-middle layers.
    """
    out = {"te": avg_hidden["te"], "low_score": avg_hidden["low_score"], "high_score": avg_hidden["high_score"],
           "n": avg_hidden["n"]}
    i_subj, i_last = GROUP_LABELS.index("Last subject token"), GROUP_LABELS.index("Last token")
    i_first = GROUP_LABELS.index("First subject token")
    for name, avg in (("hidden", avg_hidden), ("mlp", avg_mlp)):
        if avg is None:
            continue
        row = np.asarray(avg["aie"][i_subj])
        l = int(np.nanargmax(row))
        out[f"{name}_subject_peak"] = float(row[l])
        out[f"{name}_subject_layer"] = l
        out[f"{name}_subject_ci95"] = float(avg["ci95"][i_subj][l])
        first = np.asarray(avg["aie"][i_first])
        out[f"{name}_first_subject_peak"] = float(np.nanmax(first))
        out[f"{name}_first_subject_layer"] = int(np.nanargmax(first))
        out[f"{name}_last_token_peak"] = float(np.nanmax(avg["aie"][i_last]))
    te = out["te"]
    peak, ci = out["hidden_subject_peak"], out["hidden_subject_ci95"]
    out["clear"] = bool(te > 0 and peak - ci > 0 and peak >= min_share * te)
    return out
