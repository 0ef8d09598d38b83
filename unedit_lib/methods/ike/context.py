"""IKE's text (Zheng et al. 2023, as the paper ran it; docs/editing.md section 3, docs/paper.md
sections 2.2 and 3): the demonstrations, and `IKEPrompts`, the prompt transform that is IKE's
"edit". The demonstration pool, its retrieval and `edit()` are in methods/ike/editor.py.

Context for one evaluated question (paper.md 2.2, `data/icl_data.py` [repo]):
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
   measured with. "question_only" (an ablation) ends the prompt with
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

from dataclasses import dataclass
from typing import Iterable, Sequence

from ...core.prompts import ContextTooLong, PromptTemplate, encode_prompt, get_template

DEMO_END = "\n\n"
ORDERS = ("most_similar_first", "most_similar_last")
MODES = ("logits", "generation")
PROMPT_FORMATS = ("paper", "question_only")


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


@dataclass(frozen=True)
class Hit:
    index: int
    score: float


# =========================================================================== prompts
def strip_template(prompt_text: str, template: PromptTemplate) -> str | None:
    """The question inside a templated prompt, or None if the text does not match it."""
    qs, qe = template.question_start, template.question_end
    for text in (prompt_text, prompt_text.lstrip(), prompt_text.strip()):
        if text.startswith(qs) and (not qe or text.endswith(qe)) and len(text) >= len(qs) + len(qe):
            return text[len(qs):len(text) - len(qe)] if qe else text[len(qs):]
    return None


@dataclass
class _Context:
    question: str
    kind: str  # "forget" | "other"
    hits: list[Hit]  # demonstrations used whole, most similar first
    fact_line: str  # "New Fact: ...\nPrompt: "
    fact_index: int | None = None
    fact_hit: Hit | None = None  # for "other": the (k+1)-th hit whose first line is the fact line


# =========================================================================== prompts the evaluator feeds
class IKEPrompts:
    """IKE's "edit": the prompt the model is asked instead of each question (no weights change).

    `prompt_ids(question, n_answer_tokens, extra_tokens)` gives the token ids of
    `template.prompt(context + question [+ " " + answer])` (see the module docstring for the
    context and `prompt_format`), with the least similar demonstrations dropped when
    `truncate` and the row would not fit the model's window (`limit` positions, counting the
    answer or the generated tokens). The evaluator (evaluate.py, `prompter=`) asks it for every
    (question, answer) pair it scores (when `on_losses`: mode "logits") and every question it
    generates for; counters accumulate in `stats["eval"]`. `pool` is an `ike.DemoPool` (its
    `demos` and `search_many`).
    """

    def __init__(self, tokenizer, pool, facts: Sequence[Fact], template, *, k: int = 16,
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
