"""A long prompt run once for both halves of its evaluation: scored answers, then greedy answer.

IKE asks each evaluation question behind a ~1,000-token context of retrieved demonstrations.
The evaluator scores the question's 5-7 answers on one run of that prompt (KV cache,
`evaluate.batched_shared_prompt_logits`) and then generates the greedy answer, which would run
the prompt a second time: on 2 CPU cores the prompt passes are nearly all of an IKE
evaluation's compute. `PromptKV` keeps each scored prompt's KV cache and last-position logits
(up to `max_bytes`), and `greedy_from_kv` decodes from them: the same computation as running
prompt + answer as one sequence (explicit positions, padded cache entries masked), so the same
greedy answers to float rounding. Prompts not held (over the memory cap, another prompt) are
run again. `evaluate.evaluate_set(..., reuse_prompts=False)` runs every prompt twice instead
(bench.py --stages ike_eval compares both).
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm


MAX_BYTES = 6 * 2**30            # ~60 IKE prompts of SmolLM2-135M (float32, 46 kB per token; ~1,500-2,800 tokens)
CHUNK_QUESTIONS = 24             # questions scored, then answered, before the next ones (evaluate.evaluate_set):
                                 # their prompts' caches fit MAX_BYTES (SmolLM2, IKE: ~2.5 GB) where a whole
                                 # set's would not (real authors / world facts ~9-11 GB: ~half run again)

# generation settings under which `model.generate(do_sample=False)` is a plain argmax per step
_NEUTRAL = {"repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0), "bad_words_ids": (None,),
            "min_length": (None, 0), "min_new_tokens": (None, 0), "suppress_tokens": (None,),
            "begin_suppress_tokens": (None,), "forced_bos_token_id": (None,), "forced_eos_token_id": (None,),
            "sequence_bias": (None,), "encoder_repetition_penalty": (None, 1.0), "num_beams": (None, 1),
            "exponential_decay_length_penalty": (None,), "renormalize_logits": (None, False)}


def plain_greedy(model) -> bool:
    """True when the model's generation config adds nothing to greedy decoding (no penalties,
    suppressed or forced tokens, beams): then `greedy_from_kv` decodes as `generate` does."""
    cfg = getattr(model, "generation_config", None)
    return cfg is None or all(getattr(cfg, k, None) in ok for k, ok in _NEUTRAL.items())


def _layers(cache):
    """The cache's per-layer key/value tensors when every layer is a plain (growing) one, else
    None (sliding-window or compressed layers are not reused)."""
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer).__name__ != "DynamicLayer" for layer in layers):
        return None
    return [(layer.keys, layer.values) for layer in layers]


class PromptKV:
    """{prompt ids: (per-layer (keys, values) of shape (1, heads, len, dim), last-position logits)}."""

    def __init__(self, max_bytes: int = MAX_BYTES):
        self.max_bytes = max_bytes
        self.held: dict[tuple, tuple[list, torch.Tensor]] = {}
        self.bytes = self.peak_bytes = 0
        self.hits = self.misses = self.skipped = 0

    def put(self, prompt_ids, cache, last_logits: torch.Tensor) -> None:
        """Keep one prompt's cache (run alone, unpadded: batch size 1) and its last logits. The
        tensors are referenced, not copied: the cache's later updates make new tensors."""
        kv = _layers(cache)
        if kv is None or kv[0][0].shape[0] != 1 or kv[0][0].shape[-2] != len(prompt_ids):
            self.skipped += 1
            return
        size = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)
        key = tuple(prompt_ids)
        if key in self.held or self.bytes + size > self.max_bytes:
            self.skipped += 1
            return
        self.held[key] = (kv, last_logits.detach().reshape(-1))
        self.bytes += size
        self.peak_bytes = max(self.peak_bytes, self.bytes)

    def pop(self, prompt_ids):
        """The held entry of this prompt (removed), or None."""
        entry = self.held.pop(tuple(prompt_ids), None)
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
            self.bytes -= sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in entry[0])
        return entry


def _batch_cache(model, entries, device):
    """A DynamicCache of the entries' prompts, left padded to the longest (padding zeros, masked),
    and the attention mask over it."""
    from transformers import DynamicCache

    lengths = [e[0][0][0].shape[-2] for e in entries]
    width = max(lengths)
    cache = DynamicCache(config=model.config)
    for layer in range(len(entries[0][0])):
        k0, v0 = entries[0][0][layer]
        keys = k0.new_zeros((len(entries), k0.shape[1], width, k0.shape[-1]))
        values = v0.new_zeros((len(entries), v0.shape[1], width, v0.shape[-1]))
        for r, (kv, _) in enumerate(entries):
            k, v = kv[layer]
            keys[r, :, width - k.shape[-2]:] = k[0]
            values[r, :, width - v.shape[-2]:] = v[0]
        cache.update(keys.to(device), values.to(device), layer)
    mask = (torch.arange(width).unsqueeze(0) >= width - torch.tensor(lengths).unsqueeze(1)).long()
    return cache, mask.to(device), torch.tensor(lengths, device=device)


@torch.no_grad()
def greedy_from_kv(model, tokenizer, entries: dict, max_new_tokens: int, batch_size: int, cache_kw: str,
                   progress: bool = False, desc: str = "generate") -> dict:
    """{i: new token ids cut at EOS} for each held prompt `entries[i]` (`PromptKV.pop`): the first
    token is the argmax of the prompt's last logits, each next one the argmax of the model on the
    previous token over the cache (position = prompt length + step). Rows that reached EOS leave
    the batch when a quarter of it has (one copy of the cache each time)."""
    eos, dev = tokenizer.eos_token_id, next(model.parameters()).device
    order = sorted(entries, key=lambda i: entries[i][0][0][0].shape[-2])
    out = {}
    for s in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, leave=False):
        idx = order[s:s + batch_size]
        cache, mask, lengths = _batch_cache(model, [entries[i] for i in idx], dev)
        nxt = torch.stack([entries[i][1] for i in idx]).to(dev).argmax(-1)
        toks: list[list[int]] = [[] for _ in idx]
        rows = list(range(len(idx)))                     # batch row -> index into idx
        going = torch.ones(len(idx), dtype=torch.bool, device=dev)
        for step in range(max_new_tokens):
            for b, r in enumerate(rows):
                if going[b]:
                    toks[r].append(int(nxt[b]))
            going &= nxt != eos
            if not going.any() or step == max_new_tokens - 1:
                break
            if (~going).sum() * 4 >= len(rows):          # drop finished rows from the batch
                keep = going.nonzero().squeeze(1)
                cache.reorder_cache(keep)
                mask, lengths, nxt, going = mask[keep], lengths[keep], nxt[keep], going[keep]
                rows = [rows[b] for b in keep.tolist()]
            mask = torch.cat([mask, mask.new_ones((len(rows), 1))], 1)
            logits = model(input_ids=nxt.unsqueeze(1), attention_mask=mask, position_ids=(lengths + step).unsqueeze(1),
                           use_cache=True, logits_to_keep=1, **{cache_kw: cache}).logits
            nxt = torch.where(going, logits[:, -1].argmax(-1), torch.full_like(nxt, eos if eos is not None else 0))
        for r, i in enumerate(idx):
            t = toks[r]
            out[i] = t[:t.index(eos)] if eos in t else t
    return out


def new_prompt_kv(model, prompter, call_dependent: bool = False) -> PromptKV | None:
    """A PromptKV for an evaluation with `prompter` when reusing is possible: the
    prompter's prompts used for the scores too (IKE's logits mode), a model whose forward does
    not depend on its calls (`call_dependent`: architecture.call_dependent), and plain greedy
    decoding."""
    if prompter is None or not getattr(prompter, "on_losses", False):
        return None
    if call_dependent or not plain_greedy(model):
        return None
    return PromptKV()

