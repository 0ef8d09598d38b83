"""Edit-level metrics, the same for every editor (EasyEdit's, docs/editing.md §5).

All are teacher-forced argmax comparisons at the answer positions of prompt + answer_start +
answer, prompt and answer tokenised separately (as the edits are):
  * rewrite accuracy: the share of target tokens that are the argmax after the prompt (EasyEdit
    `test_prediction_acc`; reliability with the request's prompt, generalisation with its
    paraphrase, "rephrase");
  * locality: the share of answer positions of unrelated (prompt, answer) items whose argmax
    token the edit left unchanged.
The study (recipes.py) computes them before and after each edit run; the editors do not.
"""
from __future__ import annotations

import torch

from .evaluate import shared_prompt_logits
from .prompts import encode_answer, encode_prompt, pad_id


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


def rewrite_accuracy(model, tok, prompt: str, target: str, **kw) -> float:
    """EasyEdit `test_prediction_acc`: the fraction of target tokens that are the argmax under
    teacher forcing (reliability with the prompt, generalisation with the paraphrase)."""
    pred, a = answer_predictions(model, tok, prompt, target, **kw)
    return sum(int(x == y) for x, y in zip(pred, a)) / len(a)


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

    def apply(model, tok, stats):
        pre_loc = locality_predictions(model, tok, loc_items, **loc_kw) if loc_items else None
        before = {name: pre_rewrite(model, tok, reqs, start) for name, (reqs, start) in named.items()}
        metrics_out.update(before[None] if groups is None else before)     # kept if the edit collapses
        model = run_method(model, tok, stats)
        model.eval()
        after = {name: {**before[name], **edit_metrics(model, tok, reqs, loc_items, pre_loc, answer_start=start,
                                                       locality_answer_start=loc_kw["answer_start"])}
                 for name, (reqs, start) in named.items()}
        metrics_out.update(after[None] if groups is None else after)
        return model

    return apply

