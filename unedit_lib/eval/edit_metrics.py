"""Edit-level metrics, the same for every editor (EasyEdit's, docs/editing.md §5).

All are teacher-forced argmax comparisons at the answer positions of prompt + answer_start +
answer, prompt and answer tokenised separately (as the edits are):
  * rewrite accuracy: the share of target tokens that are the argmax after the prompt (EasyEdit
    `test_prediction_acc`; reliability with the request's prompt, generalisation with its
    paraphrase, "rephrase");
  * locality: the share of answer positions of unrelated (prompt, answer) items whose argmax
    token the edit left unchanged.
The study (recipes.py) computes them before and after each edit run; the editors do not.
`target_vs_truth` scores many rows at once (IKE's every forget row, with and without its
context): the rewrite accuracy of each row's target and whether the target is more probable than
the true answer, both from one teacher-forced pass of the two answers on top of the row's prompt.
"""
from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from ..core.architecture import call_dependent
from ..core.prompts import encode_answer, encode_prompt, pad_id
from .evaluate import batched_shared_prompt_logits, shared_prompt_logits


def _device(model):
    return next(model.parameters()).device if hasattr(model, "parameters") else torch.device("cpu")


@torch.no_grad()
def answer_logits(model, tok, prompt: str, answer: str, *, answer_start: str = " ",
                  add_eos: bool = False, prompter=None) -> tuple[torch.Tensor, list[int]]:
    """(logits, answer_ids): the teacher-forced logits that predict each answer token of
    prompt + answer_start + answer (tokenised separately, as the edit; (n answer tokens, vocab)),
    and the answer's ids. `prompter` (IKE): the prompt is `prompter.prompt_ids(question of prompt,
    n answer tokens)`, run once with the answer on top (evaluate.shared_prompt_logits)."""
    p = encode_prompt(tok, prompt)
    a = encode_answer(tok, answer_start + answer, add_eos=add_eos)
    if prompter is not None:
        ids = prompter.prompt_ids(prompter.question_of(prompt), len(a))
        head, tail = shared_prompt_logits(model, ids, [a], pad_id(tok), keep=min(max(1, len(p)), len(ids)))
        return torch.cat([head[-1:], tail[0, :len(a) - 1]]), a
    ids = torch.tensor([p + a], device=_device(model))
    logits = model(input_ids=ids).logits[0]
    return logits[len(p) - 1:len(p) - 1 + len(a)], a


def answer_predictions(model, tok, prompt: str, answer: str, **kw) -> tuple[list[int], list[int]]:
    """(predicted, answer_ids): the teacher-forced argmax tokens at the answer positions
    (`answer_logits`, same arguments) and the answer's ids."""
    logits, a = answer_logits(model, tok, prompt, answer, **kw)
    return logits.argmax(-1).tolist(), a


def first_token_candidates(model, tok, prompt: str, target: str, k: int = 5, **kw) -> dict:
    """What the model puts first where the target should start (the first answer position of
    `answer_logits`): the target's first token, its probability and rank (1 = the argmax, what
    rewrite accuracy counts), and the k most likely tokens with their probabilities. Shows what an
    edit that did not take says instead."""
    logits, a = answer_logits(model, tok, prompt, target, **kw)
    probs = logits[0].float().softmax(-1)
    top = probs.topk(k)
    return {"target_token": tok.decode([a[0]]), "target_prob": float(probs[a[0]]),
            "target_rank": int((probs > probs[a[0]]).sum()) + 1,
            "top": [(tok.decode([int(i)]), float(v)) for v, i in zip(top.values, top.indices)]}


def token_accuracy(pred: list[int], answer_ids: list[int]) -> float:
    """The share of answer tokens that are the teacher-forced argmax (`pred`, one per answer token)."""
    return sum(int(x == y) for x, y in zip(pred, answer_ids)) / len(answer_ids)


def rewrite_accuracy(model, tok, prompt: str, target: str, **kw) -> float:
    """EasyEdit `test_prediction_acc`: the fraction of target tokens that are the argmax under
    teacher forcing (reliability with the prompt, generalisation with the paraphrase)."""
    pred, a = answer_predictions(model, tok, prompt, target, **kw)
    return token_accuracy(pred, a)


def locality_predictions(model, tok, items, **kw) -> list[list[int]]:
    """Argmax tokens at the answer positions of each (prompt, answer) locality item; call before
    and after editing and compare with `locality_scores` (EasyEdit's locality)."""
    return [answer_predictions(model, tok, p, a, **kw)[0] for p, a in items]


def locality_scores(pre: list[list[int]], post: list[list[int]]) -> list[float]:
    """Per item: the fraction of answer positions whose argmax token is unchanged by the edit."""
    return [sum(int(x == y) for x, y in zip(a, b)) / max(len(a), 1) for a, b in zip(pre, post)]


def edit_metrics(model, tok, requests, locality_items=None, pre_locality=None, locality_answer_start=None,
                 **kw) -> dict:
    """EasyEdit-style edit-level metrics after editing.

    rewrite_acc (request prompt -> target), rephrase_acc (its paraphrase, when present) and, when
    `locality_items` [(prompt, answer)] and `pre_locality` (= locality_predictions before editing)
    are given, locality (scored with `locality_answer_start` when the locality prompts are in another
    template than the requests). Each is a per-request list, with its mean under "<name>_mean".
    """
    out = {"rewrite_acc": [rewrite_accuracy(model, tok, r["prompt"], r["target"], **kw) for r in requests]}
    out["rephrase_acc"] = [rewrite_accuracy(model, tok, r["paraphrase"], r["target"], **kw)
                           for r in requests if r.get("paraphrase")]
    if locality_items is not None and pre_locality is not None:
        loc_kw = kw if locality_answer_start is None else {**kw, "answer_start": locality_answer_start}
        out["locality"] = locality_scores(pre_locality, locality_predictions(model, tok, locality_items, **loc_kw))
    for k in list(out):
        out[f"{k}_mean"] = sum(out[k]) / len(out[k]) if out[k] else None
    return out


def with_edit_metrics(run_method, requests, loc_items, answer_start, metrics_out, groups=None, loc_answer_start=None):
    """Wrap a method's edit with the EasyEdit edit-level metrics (this module) before and
    after, into `metrics_out` (a dict in the record's `extra`, kept when the edit collapses):
    pre_rewrite_acc, then rewrite_acc / rephrase_acc / locality (per request and "<name>_mean").
    `groups` ({name: (requests, answer_start)}) measures other prompt sets too, each with the answer
    start of its own template, then `metrics_out` holds {name: metrics} (the edit-time and the
    evaluator's prompts), each with its pre_rewrite_acc. Locality is scored on `loc_items` with
    `loc_answer_start` (default `answer_start`): the template those prompts are written in."""
    named = {None: (requests, answer_start)} if groups is None else groups
    loc_kw = {"answer_start": answer_start if loc_answer_start is None else loc_answer_start}

    def pre_rewrite(model, tok, reqs, start):
        pre = [rewrite_accuracy(model, tok, r["prompt"], r["target"], answer_start=start) for r in reqs]
        return {"pre_rewrite_acc": pre, "pre_rewrite_acc_mean": sum(pre) / len(pre) if pre else None,
                "n_edits": len(reqs)}

    def apply(model, tok, stats, **kw):          # kw: run_method's own (a checkpoint)
        pre_loc = locality_predictions(model, tok, loc_items, **loc_kw) if loc_items else None
        before = {name: pre_rewrite(model, tok, reqs, start) for name, (reqs, start) in named.items()}
        metrics_out.update(before[None] if groups is None else before)     # kept if the edit collapses
        model = run_method(model, tok, stats, **kw)
        model.eval()
        after = {name: {**before[name], **edit_metrics(model, tok, reqs, loc_items, pre_loc, answer_start=start,
                                                       locality_answer_start=loc_kw["answer_start"])}
                 for name, (reqs, start) in named.items()}
        metrics_out.update(after[None] if groups is None else after)
        return model

    return apply


# --------------------------------------------------------------------------- many rows, two answers each
@torch.no_grad()
def answer_set_logits(model, tok, items, *, answer_start: str = " ", add_eos: bool = False, prompter=None,
                      batch_size: int = 16, progress: bool = False, desc: str = "answers") -> list[list[tuple]]:
    """`answer_logits` for many answers at once: items [(prompt, [answer, ...])] -> per item, per
    answer, (logits, answer_ids) as `answer_logits(model, tok, prompt, answer, ...)` defines them.
    The passes are those of the evaluator (evaluate._shared_prompt_logprobs): a prompt runs once
    and its answers on top (evaluate.batched_shared_prompt_logits); without `prompter` the prompts
    of `batch_size` items share one call (left padded), with `prompter` (IKE's ~1,000-token
    contexts) each prompt is `prompter.prompt_ids(question of prompt, n answer tokens)` (answers
    whose token count fits the window differently get their own prompt) and runs alone. A model
    whose forward depends on its calls (WISE) is scored one answer at a time (`answer_logits`).
    `progress`: a tqdm bar, shown when the passes take more than a few seconds."""
    if call_dependent(model):
        return [[answer_logits(model, tok, p, a, answer_start=answer_start, add_eos=add_eos, prompter=prompter)
                 for a in answers] for p, answers in items]
    enc = [[encode_answer(tok, answer_start + a, add_eos=add_eos) for a in answers] for _, answers in items]
    groups = []                                   # (prompt ids, item, answer indices)
    if prompter is None:
        groups = [(encode_prompt(tok, p), i, list(range(len(enc[i])))) for i, (p, _) in enumerate(items)]
        step = max(1, batch_size)
    else:
        questions = [prompter.question_of(p) for p, _ in items]
        prompter.prepare(questions)              # one retrieval call
        for i, q in enumerate(questions):
            by_prompt: dict[tuple, list[int]] = {}
            for j, a in enumerate(enc[i]):
                by_prompt.setdefault(tuple(prompter.prompt_ids(q, len(a))), []).append(j)
            groups += [(list(ids), i, js) for ids, js in by_prompt.items()]
        step = 1
    out: list[list] = [[None] * len(e) for e in enc]
    pad = pad_id(tok)
    for s in tqdm(range(0, len(groups), step), desc=desc, disable=not progress, delay=5, leave=False):
        chunk = groups[s:s + step]
        answers = [[enc[i][j] for j in js] for _, i, js in chunk]
        head, tail, owner = batched_shared_prompt_logits(model, [ids for ids, _, _ in chunk], answers, pad)
        flat = [(i, j) for _, i, js in chunk for j in js]
        for n, (i, j) in enumerate(flat):
            a = enc[i][j]
            logits = torch.cat([head[owner[n], -1:], tail[n, :len(a) - 1]]) if tail is not None else head[owner[n], -1:]
            out[i][j] = (logits[:len(a)], a)
    return out


def mean_logprob(logits: torch.Tensor, answer_ids: list[int]) -> float:
    """The mean log-probability of the answer tokens under their teacher-forced logits: minus the
    evaluator's average answer loss (evaluate.answer_losses; exp of it is TOFU's P̄(a|q))."""
    lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, torch.tensor(answer_ids, device=logits.device).unsqueeze(-1))
    return float(lp.mean())


def target_vs_truth(model, tok, rows, *, answer_start: str = " ", prompter=None, batch_size: int = 16,
                    progress: bool = False, desc: str = "target vs truth") -> dict:
    """For each row (prompt, target, truth): the target's rewrite accuracy (`rewrite_accuracy`:
    teacher-forced argmax over the target's tokens, no EOS) and both answers' log-probabilities as
    the evaluator scores answers: the answer tokens + EOS, **length-normalised** (the mean
    log-probability, minus TOFU's average answer loss; evaluate.answer_losses). Length-normalised
    because the evaluator's every answer score is (P̄, truth ratio, evaluate.in_context_probe's
    "prefers"), and a summed log-probability would favour a short target ("dummy") over the
    truth whatever the context says. "target_beats_truth": target's mean log-probability > the truth's.
    One teacher-forced pass per row for both answers (`answer_set_logits`; with `prompter`, the
    row's context runs once). Returns per-row lists, "n" and "time_s"."""
    t0 = time.perf_counter()
    rows = list(rows)
    scored = answer_set_logits(model, tok, [(p, [t, a]) for p, t, a in rows], answer_start=answer_start,
                               add_eos=True, prompter=prompter, batch_size=batch_size, progress=progress, desc=desc)
    out = {"rewrite_acc": [], "target_logprob": [], "truth_logprob": [], "target_beats_truth": []}
    for (p, t, a), ((t_logits, t_ids), (a_logits, a_ids)) in zip(rows, scored):
        n_t = len(encode_answer(tok, answer_start + t, add_eos=False))     # the target without its EOS
        out["rewrite_acc"].append(token_accuracy(t_logits[:n_t].argmax(-1).tolist(), t_ids[:n_t]))
        lt, la = mean_logprob(t_logits, t_ids), mean_logprob(a_logits, a_ids)
        out["target_logprob"].append(lt)
        out["truth_logprob"].append(la)
        out["target_beats_truth"].append(lt > la)
    out.update(n=len(rows), time_s=time.perf_counter() - t0)
    return out


def context_lift(model, tok, requests, prompter, *, answer_start: str = " ", progress: bool = False,
                 desc: str = "rows", done: dict | None = None, on_chunk=None, chunk: int = 20) -> dict:
    """`target_vs_truth` of requests (data.edit_requests: prompt, target, ground_truth) with
    `prompter`'s context and without any context (the model alone): per-row lists
    "<rewrite_acc | target_beats_truth | target_logprob | truth_logprob>_<with | without>_context",
    their "means" (and "rewrite_acc_lift", with minus without), "counts" (rows where the target
    beats the truth, rows with every target token the argmax), "n", what "logprob" is, and timings.
    The rows with context (IKE: ~1,000-token passes, an hour and more on forget05) go `chunk` at a time:
    `on_chunk(partial)` before the first and after each, and `done` (a partial it was given) skips the rows
    a killed process scored. Each context pass runs alone (answer_set_logits), so cutting changes no
    number. The prompter's counters of cut contexts (IKEPrompts.stats["eval"]) are counted over the rows."""
    rows = [(r["prompt"], r["target"], r["ground_truth"]) for r in requests]
    ev = (getattr(prompter, "stats", None) or {}).get("eval", {})
    counters = [k for k in ("truncated_rows", "dropped_demos") if k in ev]     # two prompts a row: target, truth
    if prompter is not None:                  # one retrieval for every row, as uncut: each chunk reuses it
        prompter.prepare([prompter.question_of(p) for p, _, _ in rows])
    part = {"rewrite_acc": [], "target_beats_truth": [], "target_logprob": [], "truth_logprob": [], "time_s": 0.0,
            **{k: 0 for k in counters}, **(done or {})}
    if on_chunk is not None and not done:
        on_chunk(part)
    for s in range(len(part["rewrite_acc"]), len(rows), chunk):
        before = dict(ev)
        res = target_vs_truth(model, tok, rows[s:s + chunk], answer_start=answer_start, prompter=prompter,
                              progress=progress, desc=f"{desc} with context, {s + 1}-{min(s + chunk, len(rows))}")
        part = {k: part[k] + (ev[k] - before[k] if k in counters else res[k]) for k in part}
        if on_chunk is not None:
            on_chunk(part)
    runs = {"with_context": part,
            "without_context": target_vs_truth(model, tok, rows, answer_start=answer_start, progress=progress,
                                               desc=f"{desc} without context")}
    out: dict = {"n": len(rows),
                 "logprob": "length-normalised: mean log-probability over the answer tokens + EOS (the evaluator's)"}
    for name, res in runs.items():
        for m in ("rewrite_acc", "target_beats_truth", "target_logprob", "truth_logprob"):
            out[f"{m}_{name}"] = res[m]
    mean = lambda xs: sum(float(x) for x in xs) / len(xs) if xs else None
    means = {f"{m}_{name}": mean(out[f"{m}_{name}"]) for m in ("rewrite_acc", "target_beats_truth") for name in runs}
    with_, without = means["rewrite_acc_with_context"], means["rewrite_acc_without_context"]
    means["rewrite_acc_lift"] = None if with_ is None else with_ - without
    out["means"] = means
    out["counts"] = {**{f"target_beats_truth_{name}": sum(res["target_beats_truth"]) for name, res in runs.items()},
                     **{f"rewrite_acc_1_{name}": sum(a == 1.0 for a in res["rewrite_acc"]) for name, res in runs.items()}}
    times = {f"time_{name}_s": res["time_s"] for name, res in runs.items()}
    total = sum(times.values())
    out.update(times, time_s=total, time_per_row_s=total / len(rows) if rows else None, **{k: part[k] for k in counters})
    return out
