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
   The question itself (`prompt_format`): "paper" (default) as the paper's `data/icl_data.py`
   (shariqahn/EasyEdit, its last version, commit c30a1c9) built every evaluated question: the
   question followed by " {target}" for a forget question, and by " {answer}" (the row's own
   answer, `answers=`) for any other question, i.e. the prompt reads
   "...New Fact: {q_fact} {t}\nPrompt: {question} {t}". It puts the expected answer inside
   the prompt (for the other sets, the true answer) and is what the paper's IKE numbers were
   measured with. "question_only" (our earlier default, an ablation now) ends the prompt with
   the question, as EasyEdit's own IKE evaluation (`compute_icl_edit_quality`) and paper.md 2.2
   describe it; the edit-level metrics always use that one (EasyEdit's).

What `edit()` returns: prompts, not a model
-------------------------------------------
IKE changes no weight; its "edit" is the prompt each question is asked with. `edit()` returns
an `IKEPrompts`, which the evaluator takes as `prompter=` (evaluate.py): for every (question,
answer) pair it scores (mode "logits", the paper's "_logit" runs) and every question it
generates for, it asks `prompt_ids(question, ...)` instead of encoding the template's prompt;
the answer tokens are encoded as for any model. With mode "generation" only generation gets the
context (the paper's non-"_logit" runs). The evaluator computes each distinct prompt once and
scores all its answers on top of it (a KV cache; evaluate.answer_token_logprobs).

Context-window guard: if context + prompt (+ answer, or + max_new_tokens when generating)
exceeds `max_position_embeddings` / `n_positions`, a ValueError names the token count, the
limit and says to lower k; with `truncate=True` the least similar demonstrations are dropped
one by one until it fits (counted in `stats["eval"]`).
"""
from __future__ import annotations

import math
import random
import time
import warnings
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import data
from .embeddings import (DEFAULT_SENTENCE_MODEL, CachedEmbedder, SentenceEmbedder,  # noqa: F401
                         as_embedder, load_sentence_model, packaged_model_path, sentence_embedder)
from .paths import ike_embedding_cache_dir
from .store import read_json, write_json
from .prompts import TEMPLATES, ContextTooLong, PromptTemplate, encode_prompt, get_template

EDITOR_NAME = "IKE"
DEMO_END = "\n\n"
ORDERS = ("most_similar_first", "most_similar_last")
MODES = ("logits", "generation")
PROMPT_FORMATS = ("paper", "question_only")


@dataclass(frozen=True)
class IKEHParams:
    """Defaults = the paper's IKE runs (its EasyEdit fork: hparams/IKE/llama-7b.yaml, the 90/10
    pool split of zsre_transform.py, the prompts of data/icl_data.py; paper.md 2.2)."""

    k: int = 16                                  # demonstrations per prompt
    sentence_model_name: str = DEFAULT_SENTENCE_MODEL
    pool_fraction: float = 0.9                   # forget rows in the demonstration pool
    order: str = "most_similar_first"            # EasyEdit keeps similarity order
    mode: str = "logits"                         # the paper's "_logit" runs: context on the scored inputs too
    new_fact_scope: str = "forget"               # every forget question gets its New Fact line
    context_position: str = "inside"             # the context inside the prompt template
    prompt_format: str = "paper"                 # the answer after the question (icl_data.py)
    truncate: bool = False                       # the paper's 4096 positions never needed it
    seed: int = 0                                # the retain demonstrations' draw


DEFAULT_HPARAMS = asdict(IKEHParams())


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
            t = data.unlearning_target(row, target, data_dir)
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
    retain_name = data.FORGET_SPLITS[split] if split in data.FORGET_SPLITS else split
    held = {r["question"] for r in data.load_tofu("retain_perturbed", data_dir)}
    return [r for r in data.load_tofu(retain_name, data_dir) if r["question"] not in held]


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


def _model_limit(config) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        v = getattr(config, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


# =========================================================================== prompts the evaluator feeds
class IKEPrompts:
    """IKE's "edit": the prompt the model is asked instead of each question (no weights change).

    `prompt_ids(question, n_answer_tokens, extra_tokens)` gives the token ids of
    `template.prompt(context + question [+ " " + answer])` (see the module docstring for the
    context and `prompt_format`), with the least similar demonstrations dropped when
    `truncate` and the row would not fit the model's window (`limit` positions, counting the
    answer or the generated tokens). The evaluator (evaluate.py, `prompter=`) asks it for every
    (question, answer) pair it scores (when `on_losses`: mode "logits") and every question it
    generates for; counters accumulate in `stats["eval"]`.
    """

    def __init__(self, tokenizer, pool: DemoPool, facts: Sequence[Fact], template, *, k: int = 16,
                 mode: str = "logits", order: str = "most_similar_first", truncate: bool = False,
                 context_position: str = "inside", prompt_format: str = "paper", answers: dict | None = None,
                 limit: int | None = None, stats: dict | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        if context_position not in ("inside", "before"):
            raise ValueError(f"context_position must be 'inside' or 'before', got {context_position!r}")
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, got {prompt_format!r}")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        self.tokenizer = tokenizer
        self.pool = pool
        self.template = get_template(template)
        self.k, self.mode, self.order, self.truncate = int(k), mode, order, truncate
        self.context_position, self.prompt_format = context_position, prompt_format
        self.answers = {q.strip(): a for q, a in (answers or {}).items()}   # question -> its answer (paper format)
        self.limit = limit
        self.stats = stats if stats is not None else {}
        self.stats.setdefault("eval", {"rows_forward": 0, "rows_generate": 0, "forget_rows": 0, "other_rows": 0,
                                       "truncated_rows": 0, "dropped_demos": 0, "no_answer_after_question": 0})
        self._facts: list[Fact] = []
        self._fact_by_question: dict[str, int] = {}
        for f in facts:
            self._add_fact(f)
        self._contexts: dict[str, _Context] = {}
        self._enc_cache: dict[tuple[str, int], list[int]] = {}

    @property
    def on_losses(self) -> bool:
        """Whether the context also goes on the scored (question, answer) inputs (mode "logits")."""
        return self.mode == "logits"

    def rewrap(self, template=None, stats: dict | None = None, **settings) -> "IKEPrompts":
        """The same pool and facts with another prompt template and/or settings (fresh caches)."""
        kw = {"k": self.k, "mode": self.mode, "order": self.order, "truncate": self.truncate,
              "context_position": self.context_position, "prompt_format": self.prompt_format,
              "answers": self.answers, "limit": self.limit, **settings}
        return IKEPrompts(self.tokenizer, self.pool, self._facts, self.template if template is None else template,
                          stats=stats, **kw)

    # -- facts and contexts ---------------------------------------------------
    def _add_fact(self, f: Fact) -> None:
        i = len(self._facts)
        self._facts.append(f)
        for q in (f.question, f.paraphrased_question):
            if q:
                self._fact_by_question.setdefault(q.strip(), i)

    @property
    def facts(self) -> list[Fact]:
        return list(self._facts)

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
        for want in sorted({p[2] for p in plans}):        # one search call per k
            sel = [i for i, p in enumerate(plans) if p[2] == want]
            results = self.pool.search_many([queries[i] for i in sel], want)
            for i, hits in zip(sel, results):
                q, (kind, fi, _) = todo[i], plans[i]
                if kind == "forget":
                    f = self._facts[fi]
                    ctx = _Context(q, "forget", hits, new_fact_prefix(f.question, f.target), fi)
                elif hits:
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

    def answer_after(self, question: str) -> str | None:
        """What the paper's format puts after the question: the fact's target for a forget
        question, the row's answer for another known question, else None (nothing is put)."""
        f = self.fact_for(question)
        if f is not None:
            return f.target
        return self.answers.get(question.strip())

    def _augment(self, question: str, context: str) -> str:
        if self.prompt_format == "paper":
            after = self.answer_after(question)
            if after is not None:
                question = f"{question} {after}"     # icl_data.py: f'{x} {target_new}' / f'{x} {answer}'
        if self.context_position == "inside":
            return self.template.prompt(context + question)
        return context + self.template.prompt(question)

    def prefix_for(self, prompt_text: str) -> str:
        """The context inserted right before the question (demonstrations + New Fact line)."""
        return self._context_text(self._context(self.question_of(prompt_text)))

    def augment_prompt(self, prompt_text: str) -> str:
        """The full prompt text the model sees instead of `prompt_text` (all k demonstrations)."""
        q = self.question_of(prompt_text)
        return self._augment(q, self._context_text(self._context(q)))

    def neighbours(self, prompt_text: str) -> list[dict]:
        """Retrieved demonstrations for a prompt, most similar first."""
        ctx = self._context(self.question_of(prompt_text))
        hits = ctx.hits + ([ctx.fact_hit] if ctx.fact_hit else [])
        return [{"index": h.index, "score": round(h.score, 6), "kind": self.pool.demos[h.index].kind,
                 "fact_index": self.pool.demos[h.index].fact_index,
                 "role": "new_fact_line" if h is ctx.fact_hit else "demo"} for h in hits]

    # -- the evaluator's prompts ----------------------------------------------
    def prompt_ids(self, question: str, n_answer_tokens: int = 0, extra_tokens: int = 0,
                   kind: str = "forward") -> list[int]:
        """Token ids of the prompt asked instead of `question`, fitted to the window with room
        for `n_answer_tokens` (a scored answer) and `extra_tokens` (generation); counted in
        stats["eval"] (`kind`: "forward" | "generate")."""
        ev = self.stats["eval"]
        ev["rows_generate" if kind == "generate" else "rows_forward"] += 1
        ctx = self._context(question)
        ev["forget_rows" if ctx.kind == "forget" else "other_rows"] += 1
        if self.prompt_format == "paper" and self.answer_after(question) is None:
            ev["no_answer_after_question"] += 1
        ids, n = self.fit(question, n_answer_tokens, extra_tokens)
        used = ev.setdefault("demos_used", {})  # histogram: demonstrations kept -> rows
        used[str(n)] = used.get(str(n), 0) + 1
        if len(ctx.hits) - n:
            ev["truncated_rows"] += 1
            ev["dropped_demos"] += len(ctx.hits) - n
        return ids

    def fit(self, question: str, n_answer_tokens: int = 0, extra_tokens: int = 0) -> tuple[list[int], int]:
        """(prompt ids, demonstrations kept): all k when they fit the window with the answer /
        generated tokens, else (with `truncate`) the most that fit, least similar dropped first;
        a row that cannot fit raises, naming its token count and the limit."""
        ctx = self._context(question)
        n = len(ctx.hits)
        budget = None if self.limit is None else self.limit - n_answer_tokens - extra_tokens
        ids = self._encoded(question, ctx, n)
        if budget is None or len(ids) <= budget:
            return ids, n
        if not (self.truncate and len(self._encoded(question, ctx, 0)) <= budget):
            if self.truncate:
                n, ids = 0, self._encoded(question, ctx, 0)
            total = len(ids) + n_answer_tokens + extra_tokens
            what = "context + prompt" + (" + answer" if n_answer_tokens else "") + \
                   (f" + max_new_tokens ({extra_tokens})" if extra_tokens else "")
            raise ContextTooLong(
                f"IKE context too long: {what} is {total} tokens, over the model's limit of {self.limit} "
                f"positions (max_position_embeddings/n_positions) with {n} demonstrations (k={self.k}). "
                + ("It does not fit even with no demonstrations." if self.truncate else
                   "Lower k, or pass truncate=True to drop the least similar demonstrations."))
        lo, hi = 0, n - 1      # binary search: the prompt grows with the number of demonstrations
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(self._encoded(question, ctx, mid)) <= budget:
                lo = mid
            else:
                hi = mid - 1
        return self._encoded(question, ctx, lo), lo

    def _encoded(self, question: str, ctx: _Context, n_demos: int) -> list[int]:
        """Token ids of the augmented prompt with the first `n_demos` demonstrations (cached)."""
        key = (question, n_demos)
        ids = self._enc_cache.get(key)
        if ids is None:
            ids = encode_prompt(self.tokenizer, self._augment(question, self._context_text(ctx, n_demos)))
            self._enc_cache[key] = ids
        return ids


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
         new_fact_scope: str = "forget", context_position: str = "inside", prompt_format: str = "paper",
         answers: dict | None = None, embedder=None, retain_rows=None, target=None, seed: int = 0,
         sentence_model_name: str | None = None, embedding_cache_dir=None, **hparams) -> IKEPrompts:
    """IKE "edit": no weights change; returns the `IKEPrompts` the evaluator asks instead of
    each question (see the module docstring). `model` only gives the context window.

    requests: `data.edit_requests(...)` dicts (raw `question`, `target`, templated `prompt`
      and `paraphrase`). pool: a `DemoPool` (`build_pool`), or pool rows (then `retain_rows`,
      `target`, `embedder`, `seed` are passed to `build_pool`; without `embedder`, MiniLM or
      `sentence_model_name`, cached under `embedding_cache_dir` if given). k: demonstrations per prompt
      (16, the paper's EasyEdit yaml). mode: "logits" (context on generation and on the scored
      inputs, the paper's "_logit" runs) or "generation" (generation only).
      template: the evaluator's prompt template (name or PromptTemplate); None -> inferred
      from the requests' `prompt` vs `question`, else "qa". new_fact_scope: "forget" (requests
      and pool facts get their New Fact line, as the paper did for all forget10 questions) or
      "requests". prompt_format: "paper" (the question followed by its fact's target, or by
      its answer from `answers` {question: answer} for other questions, as the paper's
      icl_data.py) or "question_only". stats: filled with pool/retrieval info, neighbours per
      request, timings; the evaluator's counters accumulate under stats["eval"].
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
    prompts = IKEPrompts(tokenizer, pool, facts, template, k=k, mode=mode, order=order, truncate=truncate,
                         context_position=context_position, prompt_format=prompt_format, answers=answers,
                         limit=_model_limit(model.config), stats=stats)
    _ = pool.embeddings  # embed the pool now (timed)
    t1 = time.perf_counter()
    req_facts = facts[:len(requests)]
    prompts.prepare([f.question for f in req_facts] + [f.paraphrased_question for f in req_facts
                                                      if f.paraphrased_question])
    t2 = time.perf_counter()
    per_request = []
    for f in req_facts:
        item = {"question": f.question, "target": f.target, "neighbours": prompts.neighbours(f.question)}
        if f.paraphrased_question:
            item["paraphrase_neighbours"] = prompts.neighbours(f.paraphrased_question)
        per_request.append(item)
    emb = pool.embedder
    stats.update({
        "editor": EDITOR_NAME, "k": k, "mode": mode, "order": order, "truncate": truncate,
        "template": template.name, "context_position": context_position, "new_fact_scope": new_fact_scope,
        "prompt_format": prompt_format, "n_answers_known": len(prompts.answers),
        "n_requests": len(requests), "n_pool_demos": len(pool), "n_pool_facts": len(pool.facts),
        "pool_kinds": pool.kind_counts(), "embedder": emb.name,
        "embedder_source": getattr(emb, "source", None) or (
            f"disk cache ({emb.cache_dir})" if isinstance(emb, SentenceEmbedder) and emb.misses == 0 and emb.cache_dir
            else "custom"),
        "model_limit": prompts.limit, "requests": per_request,
        "time_pool_embed_s": pool.embed_seconds, "time_retrieval_s": t2 - t1,
        "time_total_s": time.perf_counter() - t0,
    })
    return prompts


# =========================================================================== entry point
def apply(model, tokenizer, requests, hp: dict, stats: dict | None = None, *, pool, answers=None, template=None):
    """The methods' common entry point: IKE "edits" `requests` with hyperparameters `hp`
    (an IKEHParams, or a dict of its names: k, mode, order, truncate, new_fact_scope,
    context_position, prompt_format, seed) and a demonstration `pool` (`build_pool`). IKE changes no weight: its
    result is the prompts the model is asked, returned as (IKEPrompts, stats); `answers`
    {question: answer} feed the paper's prompt format."""
    stats = {} if stats is None else stats
    hp = asdict(hp) if is_dataclass(hp) else dict(hp)
    kw = {k: hp[k] for k in ("k", "mode", "order", "truncate", "new_fact_scope", "context_position",
                             "prompt_format", "seed") if k in hp}
    return edit(model, tokenizer, requests, pool=pool, stats=stats, template=template, answers=answers, **kw), stats


# =========================================================================== saving
def save_prompts(prompts: IKEPrompts, folder) -> None:
    """Write an IKE "edit" (no weights: the demonstrations, the facts, the answers and the
    settings) as `ike.json` in `folder`; `load_prompts` rebuilds it."""
    emb = prompts.pool.embedder
    state = {
        "editor": EDITOR_NAME, "template": prompts.template.name, "k": prompts.k, "mode": prompts.mode,
        "order": prompts.order, "truncate": prompts.truncate, "context_position": prompts.context_position,
        "prompt_format": prompts.prompt_format, "answers": prompts.answers, "limit": prompts.limit,
        "sentence_model": getattr(emb, "name", DEFAULT_SENTENCE_MODEL),
        "demos": [[d.text, d.kind, d.fact_index] for d in prompts.pool.demos],
        "pool_facts": [[f.question, f.target, f.paraphrased_question] for f in prompts.pool.facts],
        "facts": [[f.question, f.target, f.paraphrased_question] for f in prompts._facts],
    }
    write_json(state, Path(folder) / "ike.json")


def load_prompts(tokenizer, folder, embedder=None, stats: dict | None = None) -> IKEPrompts:
    """The `IKEPrompts` saved by `save_prompts`."""
    path = Path(folder) / "ike.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: not a saved IKE edit")
    st = read_json(path, "IKE edit")
    if embedder is None:
        embedder = sentence_embedder(st["sentence_model"], cache_dir=ike_embedding_cache_dir())
    pool = DemoPool([Demo(t, kind, i) for t, kind, i in st["demos"]], [Fact(*f) for f in st["pool_facts"]], embedder)
    return IKEPrompts(tokenizer, pool, [Fact(*f) for f in st["facts"]], st["template"], k=st["k"], mode=st["mode"],
                      order=st["order"], truncate=st["truncate"], context_position=st["context_position"],
                      prompt_format=st.get("prompt_format", "question_only"),   # saved before the paper format
                      answers=st.get("answers"), limit=st.get("limit"), stats=stats)
