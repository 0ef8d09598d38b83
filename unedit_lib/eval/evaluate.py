"""The TOFU evaluator: per-item logs in TOFU's legacy format, and the aggregate metrics.

Definitions follow docs/tofu.md section 2 exactly:
  * P̄(a|q) = exp(-avg_loss), avg_loss = mean token NLL over the answer tokens + EOS (2.1);
  * Prob: mean P̄(answer|q) on forget/retain; on real authors / world facts normalised
    against the 3 wrong options, P̄(a)/(P̄(a)+Σ P̄(wrong)) (2.2);
  * ROUGE: greedy generation, rouge_score ROUGE-L recall with the stemmer (2.3);
  * Truth ratio R = exp(-mean_i avg_loss(perturbed_i)) / P̄(paraphrased) (geometric mean of
    the perturbed answers; `answer` replaces the paraphrase on real authors / world facts);
    forget aggregates mean(min(R, 1/R)), the others mean(max(0, 1 - R)) (2.4);
  * Forget quality: scipy.stats.ks_2samp p-value between this model's and the retain
    model's per-item forget R (2.5);
  * Model utility: scipy.stats.hmean of the 9 non-forget numbers (2.6).
Generation follows OpenUnlearning (max_new_tokens 200, greedy, cut at EOS); the prompt is
the template's (see prompts.py). `max_rows` caps every set (legacy TOFU used 300).
"""
from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch
from scipy import stats
from tqdm.auto import tqdm

from ..core.architecture import call_dependent, logits_at
from ..core.prompts import context_fact, encode_answer, encode_prompt, get_template, pad_batch, pad_id
from . import prompt_cache

EVAL_SETS = ("forget", "retain", "real_authors", "world_facts")
UTILITY_SETS = ("retain", "real_authors", "world_facts")
METRICS = ("rouge", "prob", "truth_ratio")


class NonFiniteMetric(ValueError):
    """A metric came out NaN/inf: the model is broken; record it as collapsed, not as a result."""


# --------------------------------------------------------------------------- model passes
def _device(model):
    return next(model.parameters()).device if hasattr(model, "parameters") else torch.device("cpu")


def _cache_kw(model) -> str:
    """The KV-cache argument of `model.forward`: `cache` in recent transformers 5 releases,
    `past_key_values` before."""
    import inspect

    try:
        return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    except (TypeError, ValueError):
        return "past_key_values"


def shared_prompt_logits(model, prompt_ids: list[int], answers: list[list[int]], pad: int, keep: int = 1):
    """(head, tail): one prompt run once (KV cache; the LM head on its last `keep` positions:
    `head`, (keep, vocab)), then all `answers` on top of it in one right-padded batch (`tail`,
    (n answers, longest answer, vocab); None when every answer is empty). The logits are those
    of running prompt + answer as one sequence: same positions, same attention; a long prompt
    with many answers (IKE's ~1,000-token contexts) is computed once instead of per answer.
    `batched_shared_prompt_logits` with one prompt."""
    head, tail, _ = batched_shared_prompt_logits(model, [list(prompt_ids)], [answers], pad, keep)
    return head[0], tail


@torch.no_grad()
def batched_shared_prompt_logits(model, prompts: list[list[int]], answers: list[list[list[int]]], pad: int,
                                 keep: int = 1, prompt_kv=None):
    """Several prompts, each with its answers, in two calls: (head, tail, owner). The prompts run
    once, left padded with explicit positions (head: (n prompts, keep, vocab), the LM head on the
    last `keep` positions of the batch, each prompt's last token last); the cache is repeated per
    answer (`owner[j]`: the prompt of answer j, answers flattened in order) and the answers run on
    top, right padded (tail: (n answers, longest answer, vocab); None when every answer is empty).
    The same numbers as each prompt + answer run as one sequence. `prompt_kv`
    (prompt_cache.PromptKV, one prompt per call): keeps the prompt's cache and last logits for
    the greedy answer."""
    from transformers import DynamicCache

    dev = _device(model)
    kw = _cache_kw(model)
    ids, mask = pad_batch(prompts, pad, "left")
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    head = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev), use_cache=True,
                 logits_to_keep=keep, **{kw: cache}).logits
    if prompt_kv is not None and len(prompts) == 1:
        prompt_kv.put(prompts[0], cache, head[0, -1])
    owner = [g for g, group in enumerate(answers) for _ in group]
    flat = [a for group in answers for a in group]
    if not flat or not max(len(a) for a in flat):
        return head, None, owner
    rows = torch.tensor(owner, dtype=torch.long)
    cache.reorder_cache(rows.to(dev))                        # one copy of its prompt's cache per answer
    a_ids, a_mask = pad_batch(flat, pad, "right")
    width = a_ids.shape[1]
    lengths = mask.sum(1)[rows]
    a_pos = lengths.unsqueeze(1) + torch.arange(width).unsqueeze(0)
    full_mask = torch.cat([mask[rows], a_mask], 1)
    tail = model(input_ids=a_ids.to(dev), attention_mask=full_mask.to(dev), position_ids=a_pos.to(dev),
                 use_cache=True, **{kw: cache}).logits
    return head, tail, owner


def _shared_prompt_logprobs(model, tokenizer, questions, enc, order, batch_size, prompter, progress, desc,
                            prompt_kv=None):
    """answer_token_logprobs, the pairs of a batch that share a prompt scored on one run of it
    (`batched_shared_prompt_logits`, all the batch's prompts in one call). The prompt is the
    template's (`enc`), or `prompter`'s (e.g. IKE's, one ~1,000-token context per question: one
    prompt per call; `prompt_kv` keeps those prompts' caches for generate_answers)."""
    out: list[list[float]] = [[] for _ in enc]
    pad = pad_id(tokenizer)
    for s in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, leave=False):
        idx = order[s:s + batch_size]
        if prompter is not None:
            prompter.prepare([questions[i] for i in idx])           # one retrieval call per batch
        groups: dict[tuple, list[int]] = {}
        for i in idx:
            full, n_prompt = enc[i]
            prompt = full[:n_prompt] if prompter is None else prompter.prompt_ids(questions[i], len(full) - n_prompt)
            groups.setdefault(tuple(prompt), []).append(i)
        items = list(groups.items())
        step = len(items) if prompter is None else 1
        for g0 in range(0, len(items), step):
            chunk = items[g0:g0 + step]
            answers = [[enc[i][0][enc[i][1]:] for i in members] for _, members in chunk]
            head, tail, owner = batched_shared_prompt_logits(model, [list(p) for p, _ in chunk], answers, pad,
                                                             prompt_kv=prompt_kv if prompter is not None else None)
            flat = [(i, a) for (_, members), group in zip(chunk, answers) for i, a in zip(members, group)]
            for j, (i, ans) in enumerate(flat):
                logits = torch.cat([head[owner[j], -1:], tail[j, :len(ans) - 1]]).float()   # predict each answer token
                tgt = torch.tensor(ans, device=logits.device).unsqueeze(-1)
                out[i] = torch.log_softmax(logits, dim=-1).gather(-1, tgt).squeeze(-1).cpu().tolist()
    return out


@torch.no_grad()
def answer_token_logprobs(model, tokenizer, template, pairs, batch_size: int = 32, progress: bool = False,
                          desc: str = "losses", contexts=None, prompter=None, prompt_kv=None) -> list[list[float]]:
    """Log-probability of every answer token (answer tokens + EOS) for each (question, answer) pair.

    Prompt and answer are tokenised as in training (prompts.encode_qa). Pairs are sorted by
    prompt length and then by prompt, so a question's answers sit side by side in a batch, and
    the pairs of a batch that share a prompt are scored on one run of it: the prompt once (KV
    cache), its answers on top (`batched_shared_prompt_logits`; the numbers of prompt + answer run
    as one sequence, each prompt run once instead of for each of TOFU's 5-7 answers). A model whose forward
    depends on its calls (WISE, architecture.CALL_DEPENDENT) is scored as its reference
    evaluator does: prompt + answer in one right-padded batch, the LM head on the answer
    positions only (`architecture.logits_at`).
    `contexts` (optional, one string per pair) is stated before the prompt as a unit of its
    own (text + EOS), as the in-context training sequences state facts.
    `prompter` (optional, e.g. ike_context.IKEPrompts): when its `on_losses`, each pair's prompt is
    `prompter.prompt_ids(question, n answer tokens)` instead of the template's; `prompt_kv`
    (prompt_cache.PromptKV) then keeps each such prompt's cache for generate_answers.
    """
    template = get_template(template)
    enc = []
    for j, (q, a) in enumerate(pairs):
        p = encode_prompt(tokenizer, template.prompt(q))
        if contexts is not None and contexts[j]:
            p = encode_answer(tokenizer, contexts[j]) + p
        ans = encode_answer(tokenizer, template.answer(a))
        enc.append((p + ans, len(p)))
    order = sorted(range(len(enc)), key=lambda i: (enc[i][1], enc[i][0][:enc[i][1]], len(enc[i][0])))
    if prompter is not None and prompter.on_losses:
        return _shared_prompt_logprobs(model, tokenizer, [q for q, _ in pairs], enc, order, batch_size, prompter,
                                       progress, desc, prompt_kv)
    if not call_dependent(model):
        return _shared_prompt_logprobs(model, tokenizer, None, enc, order, batch_size, None, progress, desc)
    out: list[list[float]] = [[] for _ in enc]
    pad = pad_id(tokenizer)
    dev = _device(model)
    for s in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, leave=False):
        idx = order[s:s + batch_size]
        ids, att = pad_batch([enc[i][0] for i in idx], pad, "right")
        n = ids.shape[1]
        keep = torch.zeros((len(idx), n), dtype=torch.bool)   # positions that predict an answer token (+EOS)
        tgt = torch.zeros((len(idx), n), dtype=torch.long)
        for r, i in enumerate(idx):
            full, n_prompt = enc[i]
            keep[r, n_prompt - 1:len(full) - 1] = True
            tgt[r, n_prompt - 1:len(full) - 1] = torch.tensor(full[n_prompt:])
        logits = logits_at(model, keep.to(dev), input_ids=ids.to(dev), attention_mask=att.to(dev)).float()
        tok_lp = torch.log_softmax(logits, dim=-1).gather(-1, tgt[keep].to(dev).unsqueeze(-1)).squeeze(-1)
        for r, chunk in zip(idx, torch.split(tok_lp.cpu(), keep.sum(1).tolist())):
            out[r] = chunk.tolist()
    return out


def answer_losses(model, tokenizer, template, pairs, batch_size: int = 32, progress: bool = False,
                  desc: str = "losses", contexts=None, prompter=None, prompt_kv=None) -> list[float]:
    """Average answer NLL (answer tokens + EOS) for each (question, answer) pair
    (`answer_token_logprobs`, averaged): -log P̄(a|q), tofu.md 2.1."""
    lps = answer_token_logprobs(model, tokenizer, template, pairs, batch_size, progress, desc, contexts, prompter,
                                prompt_kv)
    return [-float(np.mean(lp)) for lp in lps]


# Greedy generation runs every row of a batch until its longest row ends, so one rambling answer
# holds 63 finished ones for up to 200 steps. Rows run FIRST_PASS_TOKENS steps; those still going
# continue from prompt + their tokens in a second, smaller pass: greedy decoding from the same
# prefix, the same answers (to float rounding, as any change of batch).
FIRST_PASS_TOKENS = 64


def _greedy(model, tokenizer, prompts: dict, order: list, max_new_tokens: int, batch_size: int, progress: bool,
            desc: str):
    """{i: (new token ids cut at EOS, finished)} for each prompt (left padding, KV cache), in
    batches of `order`."""
    pad, eos = pad_id(tokenizer), tokenizer.eos_token_id
    dev = _device(model)
    out = {}
    for s in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, leave=False):
        idx = order[s:s + batch_size]
        ids, att = pad_batch([prompts[i] for i in idx], pad, "left")
        n = ids.shape[1]
        gen = model.generate(input_ids=ids.to(dev), attention_mask=att.to(dev), do_sample=False,
                             max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=eos, use_cache=True)
        for r, i in enumerate(idx):
            new = gen[r, n:].tolist()
            done = eos in new
            out[i] = (new[:new.index(eos)] if done else new, done or len(new) < max_new_tokens)
    return out


@torch.no_grad()
def generate_answers(model, tokenizer, template, questions, max_new_tokens: int = 200,
                     batch_size: int = 64, progress: bool = False, desc: str = "generate", prompter=None,
                     prompt_kv=None) -> list[str]:
    """Greedy answers (left padding, KV cache), cut at EOS and stripped; at most `max_new_tokens`
    each, in two passes (FIRST_PASS_TOKENS, then the rows still going; one pass for a model whose
    forward depends on its calls, architecture.CALL_DEPENDENT). `prompter` (optional, e.g.
    ike_context.IKEPrompts): each question's prompt is `prompter.prompt_ids(question, 0, max_new_tokens)`
    (batches as without it: by the template prompt's length). A prompt held in `prompt_kv`
    (prompt_cache.PromptKV, filled by answer_token_logprobs) is decoded from its cache in one pass
    (prompt_cache.greedy_from_kv) instead of being run again."""
    template = get_template(template)
    prompts = [encode_prompt(tokenizer, template.prompt(q)) for q in questions]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    if prompter is not None:
        by_batch = {}
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            prompter.prepare([questions[i] for i in idx])          # one retrieval call per batch
            by_batch.update({i: prompter.prompt_ids(questions[i], 0, max_new_tokens, kind="generate") for i in idx})
        prompts = [by_batch[i] for i in range(len(prompts))]
    held = {}
    if prompt_kv is not None:
        held = {i: e for i in order if (e := prompt_kv.pop(prompts[i])) is not None}
    new = {i: (toks, True) for i, toks in prompt_cache.greedy_from_kv(
        model, tokenizer, held, max_new_tokens, batch_size, _cache_kw(model), progress, f"{desc} (cached prompts)").items()}
    order = [i for i in order if i not in held]
    first = max_new_tokens if call_dependent(model) else min(max_new_tokens, FIRST_PASS_TOKENS)
    new.update(_greedy(model, tokenizer, dict(enumerate(prompts)), order, first, batch_size, progress, desc))
    going = {i: prompts[i] + toks for i, (toks, done) in new.items() if not done}
    if going and first < max_new_tokens:
        rest = _greedy(model, tokenizer, going, sorted(going, key=lambda i: len(going[i])), max_new_tokens - first,
                       batch_size, progress, f"{desc} (long answers)")
        new.update({i: (new[i][0] + toks, True) for i, (toks, _) in rest.items()})
    return [tokenizer.decode(new[i][0], skip_special_tokens=True).strip() for i in range(len(prompts))]


_SCORER = None


def rouge_recall(ground_truth: str, generation: str) -> tuple[float, float]:
    """(ROUGE-1 recall, ROUGE-L recall), `RougeScorer(['rouge1','rougeL'], use_stemmer=True)`."""
    global _SCORER
    if _SCORER is None:
        from rouge_score import rouge_scorer

        _SCORER = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    s = _SCORER.score(ground_truth, generation)
    return s["rouge1"].recall, s["rougeL"].recall


# --------------------------------------------------------------------------- per-set logs
def scores_and_answers(model, tokenizer, template, questions, answers, max_new_tokens: int = 200,
                       batch_size: int = 32, progress: bool = False, desc: str = "", prompter=None,
                       reuse_prompts: bool = True, watch=None):
    """(answer_losses of every (questions[i], a) for a in answers[i], in that order; the greedy
    answer to each question). With IKE's prompts (prompt_cache.new_prompt_kv) each prompt's KV
    cache from the scores is decoded from, a chunk of questions (prompt_cache.CHUNK_QUESTIONS)
    scored and then answered before the next, so that only their caches are held at once.
    `reuse_prompts=False` runs each prompt again for its greedy answer (the same answers, slower).
    `watch` (optional): `watch(kind)` is a context manager entered around each pass, kind "loss"
    (the teacher-forced answer losses) or "generate" (greedy generation)."""
    watch = watch or (lambda kind: contextlib.nullcontext())
    prompt_kv = prompt_cache.new_prompt_kv(model, prompter, call_dependent(model)) if reuse_prompts else None
    chunk = len(questions) if prompt_kv is None else prompt_cache.CHUNK_QUESTIONS
    losses, gens = [], []
    for c0 in range(0, len(questions), chunk):
        part = range(c0, min(c0 + chunk, len(questions)))
        of = f" {c0 // chunk + 1}/{-(-len(questions) // chunk)}" if chunk < len(questions) else ""
        with watch("loss"):
            losses += answer_losses(model, tokenizer, template, [(questions[i], a) for i in part for a in answers[i]],
                                    batch_size, progress, desc=f"{desc} probs{of}", prompter=prompter,
                                    prompt_kv=prompt_kv)
        with watch("generate"):
            gens += generate_answers(model, tokenizer, template, [questions[i] for i in part], max_new_tokens,
                                     2 * batch_size, progress, desc=f"{desc} generate{of}", prompter=prompter,
                                     prompt_kv=prompt_kv)
    return losses, gens


def evaluate_set(model, tokenizer, rows, set_name: str, template="qa", max_rows: int | None = None,
                 max_new_tokens: int = 200, batch_size: int = 32, progress: bool = True,
                 question_key: str = "question", prompter=None, reuse_prompts: bool = True, watch=None) -> dict:
    """Per-item log of one eval set in TOFU's legacy format (dicts keyed by row index).
    `prompter`: the prompts asked instead of the template's (IKE; see answer_token_logprobs);
    the logs keep the template's prompt in `generated_text`. `reuse_prompts`: see
    scores_and_answers. `watch` (optional): `watch(set_name, kind)` is entered around each pass
    (kinds: scores_and_answers)."""
    if set_name not in EVAL_SETS:
        raise ValueError(f"unknown eval set {set_name!r}; valid: {EVAL_SETS}")
    rows = list(rows)[:max_rows] if max_rows else list(rows)
    if not rows:
        raise ValueError(f"eval set {set_name!r} is empty")
    para_key = "paraphrased_answer" if set_name in ("forget", "retain") else "answer"
    for r in rows:
        missing = [k for k in (question_key, "answer", para_key, "perturbed_answer") if not r.get(k)]
        if missing:
            raise ValueError(f"{set_name} row {r.get('index')}: missing {missing}; eval sets need the *_perturbed configs")
    qs = [r[question_key] for r in rows]
    answers, slots = [], []
    for i, r in enumerate(rows):
        answers.append([r["answer"], r[para_key], *r["perturbed_answer"]])
        slots += [(i, "gt"), (i, "para")] + [(i, j) for j in range(len(r["perturbed_answer"]))]
    losses, gens = scores_and_answers(model, tokenizer, template, qs, answers, max_new_tokens, batch_size, progress,
                                      set_name, prompter, reuse_prompts,
                                      None if watch is None else (lambda kind: watch(set_name, kind)))
    gt, para = {}, {}
    pert = {i: [None] * len(r["perturbed_answer"]) for i, r in enumerate(rows)}
    for (i, kind), loss in zip(slots, losses):
        if kind == "gt":
            gt[i] = loss
        elif kind == "para":
            para[i] = loss
        else:
            pert[i][kind] = loss
    tmpl = get_template(template)
    log = {"avg_gt_loss": {}, "avg_paraphrased_loss": {}, "average_perturb_loss": {},
           "rougeL_recall": {}, "rouge1_recall": {}, "generated_text": {}}
    for i, r in enumerate(rows):
        k = str(i)
        r1, rl = rouge_recall(r["answer"], gens[i])
        log["avg_gt_loss"][k] = gt[i]
        log["avg_paraphrased_loss"][k] = para[i]
        log["average_perturb_loss"][k] = pert[i]
        log["rougeL_recall"][k] = rl
        log["rouge1_recall"][k] = r1
        log["generated_text"][k] = [tmpl.prompt(qs[i]), gens[i], r["answer"]]
    return log


def evaluate_model(model, tokenizer, eval_sets: dict, template="qa", max_rows: int | None = None,
                   progress: bool = True, finished: dict | None = None, on_set=None, **kw) -> dict:
    """Logs for every eval set given ({"forget": rows, "retain": rows, ...}); timing included (of the
    sets evaluated here). `finished`: logs of sets evaluated already (a checkpoint's), taken as they
    are; `on_set(name, log)` is called after each set evaluated here. `kw`: evaluate_set's (e.g.
    `watch(set_name, kind)`, a context manager around each pass)."""
    model.eval()
    logs = {}
    t0 = time.time()
    for name in EVAL_SETS:
        if name in (finished or {}):
            logs[name] = finished[name]
        elif name in eval_sets:
            logs[name] = evaluate_set(model, tokenizer, eval_sets[name], name, template, max_rows,
                                      progress=progress, **kw)
            if on_set is not None:
                on_set(name, logs[name])
    logs["_seconds"] = round(time.time() - t0, 2)
    return logs


# --------------------------------------------------------------------------- aggregation
def _values(d: dict) -> list:
    return [d[k] for k in sorted(d, key=lambda s: int(s))]


def truth_ratios(log: dict) -> np.ndarray:
    """Per-item R = exp(-mean_i loss(perturbed_i)) / exp(-loss(paraphrased)) (code definition:
    geometric mean over the perturbed answers; tofu.md 2.4)."""
    para = np.array(_values(log["avg_paraphrased_loss"]), dtype=np.float64)
    pert = np.array([np.mean(v) for v in _values(log["average_perturb_loss"])], dtype=np.float64)
    return np.exp(para - pert)


def set_metrics(log: dict, set_name: str) -> dict:
    """{"rouge", "prob", "truth_ratio"} of one set, aggregated as upstream."""
    p_true = np.exp(-np.array(_values(log["avg_gt_loss"]), dtype=np.float64))
    if set_name in ("real_authors", "world_facts"):
        p_wrong = np.exp(-np.array([np.asarray(v, dtype=np.float64) for v in _values(log["average_perturb_loss"])]))
        prob = float(np.mean(p_true / (p_true + p_wrong.sum(axis=1))))
    else:
        prob = float(np.mean(p_true))
    r = truth_ratios(log)
    if set_name == "forget":
        tr = float(np.mean(np.minimum(r, 1 / r)))
    else:
        tr = float(np.mean(np.maximum(0.0, 1 - r)))
    rouge = float(np.mean(_values(log["rougeL_recall"])))
    return {"rouge": rouge, "prob": prob, "truth_ratio": tr}


def forget_quality(model_forget_log: dict, retain_forget_log: dict) -> tuple[float, float]:
    """(p-value, KS statistic) of scipy.stats.ks_2samp on the per-item forget truth ratios."""
    if set(model_forget_log["avg_paraphrased_loss"]) != set(retain_forget_log["avg_paraphrased_loss"]):
        raise ValueError("forget logs of the model and of the retain model cover different items; "
                         "evaluate both on the same forget rows (same split and max_rows)")
    a, b = truth_ratios(model_forget_log), truth_ratios(retain_forget_log)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise NonFiniteMetric("non-finite truth ratios on the forget set")
    res = stats.ks_2samp(a, b)
    return float(res.pvalue), float(res.statistic)


def model_utility(metrics: dict) -> float:
    """Harmonic mean of the 9 non-forget numbers (retain, real authors, world facts x 3)."""
    vals = [metrics[s][m] for s in UTILITY_SETS for m in METRICS]
    if any(not math.isfinite(v) for v in vals):
        raise NonFiniteMetric(f"non-finite utility component among {vals}")
    if any(v < 0 for v in vals):
        raise ValueError(f"utility components must be >= 0, got {vals}")
    if any(v == 0 for v in vals):
        return 0.0   # the harmonic mean of values including 0 is 0
    return float(stats.hmean(vals))


def summarize(logs: dict, retain_logs: dict | None = None) -> dict:
    """Aggregate per-item logs: per set rouge/prob/truth_ratio, model_utility, forget_quality.

    `forget_quality` is None without the retain model's logs. Raises NonFiniteMetric on NaN.
    """
    metrics = {s: set_metrics(logs[s], s) for s in EVAL_SETS if s in logs}
    for s, m in metrics.items():
        bad = [k for k, v in m.items() if not math.isfinite(v)]
        if bad:
            raise NonFiniteMetric(f"{s}: {bad} are not finite")
    out = {"metrics": metrics,
           "model_utility": model_utility(metrics) if all(s in metrics for s in UTILITY_SETS) else None,
           "forget_quality": None, "ks_statistic": None, "n_items": {s: len(logs[s]["avg_gt_loss"]) for s in metrics}}
    if retain_logs is not None and "forget" in logs:
        out["forget_quality"], out["ks_statistic"] = forget_quality(logs["forget"], retain_logs["forget"])
    return out


# --------------------------------------------------------------------------- tables
def summary_table(records: dict):
    """A pandas table (one row per run) of the 12 set metrics, MU and FQ."""
    import pandas as pd

    rows = [{"run": run, **flat_metrics(rec), "collapsed": bool(rec.get("collapsed")),
             "repetitive forget answers": repetitive_share(rec)} for run, rec in records.items()]
    return pd.DataFrame(rows).set_index("run")


def is_repetitive(answer: str, min_words: int = 6, share: float = 0.5) -> bool:
    """A degenerate greedy answer: at least `min_words` words, one of which makes up `share` of
    them or more (e.g. GA's "bene bene bene ..."). Such a model is not NaN, so `guards` lets it
    through, and its low ROUGE is real; this flag says the low numbers come from broken text."""
    words = answer.split()
    return len(words) >= min_words and max(words.count(w) for w in set(words)) >= share * len(words)


def repetitive_share(rec: dict) -> float | None:
    """Share of a record's kept forget answers (`forget_answers`) that are repetitive; None without them."""
    kept = rec.get("forget_answers")
    return float(np.mean([is_repetitive(a["answer"]) for a in kept])) if kept else None


def flat_metrics(rec: dict) -> dict:
    """One result record's numbers: the 12 "set/metric" values, model_utility and
    forget_quality (None where the run collapsed)."""
    out = {f"{s}/{m}": rec["metrics"][s][m] if rec.get("metrics") else None for s in EVAL_SETS for m in METRICS}
    out["model_utility"] = rec.get("model_utility")
    out["forget_quality"] = rec.get("forget_quality")
    return out


@torch.no_grad()
def in_context_probe(model, tokenizer, rows, template="qa", max_new_tokens: int = 64) -> dict:
    """Does a fact stated in the context override the memorised answer?

    For each row with perturbed answers: the counterfactual c = perturbed_answer[0] is stated
    (in the neutral wording used in training) before the question; "follows" when the greedy
    answer's ROUGE-L recall against c exceeds that against the true answer; "prefers" when
    c's length-normalised probability exceeds the true answer's. The same questions without
    context give the base rates.
    """
    template = get_template(template)
    rows = [r for r in rows if r.get("perturbed_answer")]
    pad = pad_id(tokenizer)
    dev = _device(model)
    results = []
    for with_ctx in (False, True):
        seqs = []
        for r in rows:
            ids = encode_prompt(tokenizer, template.prompt(r["question"]))
            if with_ctx:
                ids = encode_answer(tokenizer, context_fact(r, r["perturbed_answer"][0])) + ids
            seqs.append(ids)
        ids, att = pad_batch(seqs, pad, "left")
        n = ids.shape[1]
        gen = model.generate(input_ids=ids.to(dev), attention_mask=att.to(dev), do_sample=False,
                             max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
        for i, r in enumerate(rows):
            new = gen[i, n:].tolist()
            if tokenizer.eos_token_id in new:
                new = new[:new.index(tokenizer.eos_token_id)]
            text = tokenizer.decode(new, skip_special_tokens=True).strip()
            r_cf = rouge_recall(r["perturbed_answer"][0], text)[1]
            r_true = rouge_recall(r["answer"], text)[1]
            results.append({"context": with_ctx, "question": r["question"], "generation": text,
                            "rouge_counterfactual": r_cf, "rouge_true": r_true, "follows": r_cf > r_true})
    import pandas as pd

    df = pd.DataFrame(results)
    rate = df.groupby("context")["follows"].mean()
    # the same question by probability: is the counterfactual more likely than the truth?
    pairs = [(r["question"], a) for r in rows for a in (r["perturbed_answer"][0], r["answer"])]
    prefer = {}
    for with_ctx in (False, True):
        ctx = [context_fact(r, r["perturbed_answer"][0]) if with_ctx else None for r in rows for _ in (0, 1)]
        losses = answer_losses(model, tokenizer, template, pairs, contexts=ctx)
        prefer[with_ctx] = float(np.mean([losses[2 * i] < losses[2 * i + 1] for i in range(len(rows))]))
    return {"follow_rate_with_context": float(rate.get(True, float("nan"))),
            "follow_rate_without_context": float(rate.get(False, float("nan"))),
            "prefers_counterfactual_with_context": prefer[True],
            "prefers_counterfactual_without_context": prefer[False],
            "n": len(rows), "items": df}


FORGET_ANSWERS_KEPT = 40  # forget rows whose greedy answer each record keeps (per-item logs are not committed)


def forget_answers(logs: dict, n: int = FORGET_ANSWERS_KEPT) -> list[dict]:
    """The first `n` forget rows of per-item logs as [{"index", "prompt", "answer", "truth"}]:
    kept in the run record so that a clone can show what each run answers (notebook 07)."""
    gen = logs["forget"]["generated_text"]
    return [{"index": int(k), "prompt": gen[k][0], "answer": gen[k][1], "truth": gen[k][2]}
            for k in sorted(gen, key=int)[:n]]
