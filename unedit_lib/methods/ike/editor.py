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
4. Context for one evaluated question: see context.py in this package (its docstring), which holds
   the demonstration formats and `IKEPrompts`, the prompt transform `edit()` returns.
"""
from __future__ import annotations

import math
import random
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ...core import data
from ...core.embeddings import DEFAULT_SENTENCE_MODEL, SentenceEmbedder, as_embedder, sentence_embedder
from ...core.hparams import HParams
from ...core.paths import display_path, ike_embedding_cache_dir
from ...core.prompts import TEMPLATES, PromptTemplate, get_template
from ...core.store import CorruptFile, write_json
from .context import (MODES, ORDERS, PROMPT_FORMATS, Demo, Fact, Hit, IKEPrompts, copy_demo, retain_demo,
                      strip_template, update_demo)

EDITOR_NAME = "IKE"


@dataclass(frozen=True)
class IKEHParams(HParams):
    """Defaults = the paper's IKE runs (its EasyEdit fork: hparams/IKE/llama-7b.yaml, the 90/10
    pool split of zsre_transform.py, the prompts of data/icl_data.py; paper.md 2.2). The base
    (hparams.HParams) validates, copies (`replace`), records and names the deviations from the paper."""

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

    METHOD = "IKE"
    CHOICES = {"order": ORDERS, "mode": MODES, "new_fact_scope": ("forget", "requests"),
               "context_position": ("inside", "before"), "prompt_format": PROMPT_FORMATS}
    NON_NEGATIVE = ("k",)
    FRACTIONS = ("pool_fraction",)


DEFAULT_HPARAMS = asdict(IKEHParams())


# =========================================================================== pool
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


def _infer_template(requests: Sequence[dict]) -> PromptTemplate | None:
    for name in ("qa", "llama2_chat", "raw"):
        t = TEMPLATES[name]
        if requests and all("question" in r and r.get("prompt") == t.prompt(r["question"]) for r in requests):
            return t
    return None


def _model_limit(config) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        v = getattr(config, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


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


def edit(model, tokenizer, requests: Sequence[dict], *, pool, hp: IKEHParams | None = None,
         stats: dict | None = None, template=None, answers: dict | None = None, embedder=None, retain_rows=None,
         target=None, embedding_cache_dir=None, **hparams) -> IKEPrompts:
    """IKE "edit": no weights change; returns the `IKEPrompts` the evaluator asks instead of
    each question (see the module docstring). `model` only gives the context window.

    hp: an IKEHParams (default the paper's); IKEHParams fields given as keywords override it
      (`edit(..., k=3)`); other keywords (e.g. EasyEdit's `layers`) are ignored with a warning.
      k: demonstrations per prompt (16, the paper's EasyEdit yaml). mode: "logits" (context on
      generation and on the scored inputs, the paper's "_logit" runs) or "generation" (generation
      only). new_fact_scope: "forget" (requests and pool facts get their New Fact line, as the paper
      did for all forget10 questions) or "requests". prompt_format: "paper" (the question followed by
      its fact's target, or by its answer from `answers` {question: answer} for other questions, as
      the paper's icl_data.py) or "question_only".
    requests: `data.edit_requests(...)` dicts (raw `question`, `target`, templated `prompt`
      and `paraphrase`). pool: a `DemoPool` (`build_pool`), or pool rows (then `retain_rows`,
      `target`, `embedder`, `hp.seed` are passed to `build_pool`; without `embedder`,
      `hp.sentence_model_name` (MiniLM), cached under `embedding_cache_dir` if given).
      template: the evaluator's prompt template (name or PromptTemplate); None -> inferred
      from the requests' `prompt` vs `question`, else "qa". stats: filled with pool/retrieval info,
      neighbours per request, timings; the evaluator's counters accumulate under stats["eval"].
    """
    t0 = time.perf_counter()
    if hp is not None and not isinstance(hp, IKEHParams):
        raise TypeError(f"hp must be an ike.IKEHParams (got {type(hp).__name__}); pass single settings as keywords")
    ignored = sorted(set(hparams) - set(IKEHParams.field_names()))
    if ignored:
        warnings.warn(f"IKE edit(): ignoring hyperparameters {ignored}", stacklevel=2)
    hp = (hp or IKEHParams.paper()).replace(**{k: v for k, v in hparams.items() if k not in ignored})
    if template is None:
        template = _infer_template(requests) or TEMPLATES["qa"]
    template = get_template(template)
    if not isinstance(pool, DemoPool):
        if embedder is None:
            embedder = sentence_embedder(hp.sentence_model_name, cache_dir=embedding_cache_dir)
        pool = list(pool)
        if pool and isinstance(pool[0], dict):
            pool = build_pool(pool, retain_rows, target, embedder=embedder, seed=hp.seed, template=template)
        else:
            pool = DemoPool(pool, (), embedder)
    elif embedder is not None or embedding_cache_dir is not None:
        warnings.warn("IKE edit(): `embedder` ignored, the given DemoPool has its own", stacklevel=2)
    facts = [_request_fact(r, template) for r in requests]
    if hp.new_fact_scope == "forget":
        facts += pool.facts
    stats = stats if stats is not None else {}
    prompts = IKEPrompts(tokenizer, pool, facts, template, k=hp.k, mode=hp.mode, order=hp.order, truncate=hp.truncate,
                         context_position=hp.context_position, prompt_format=hp.prompt_format, answers=answers,
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
        "editor": EDITOR_NAME, "k": hp.k, "mode": hp.mode, "order": hp.order, "truncate": hp.truncate,
        "template": template.name, "context_position": hp.context_position, "new_fact_scope": hp.new_fact_scope,
        "prompt_format": hp.prompt_format, "n_answers_known": len(prompts.answers),
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
def apply(model, tokenizer, requests, hp, stats: dict | None = None, *, pool, answers=None, template=None):
    """The methods' common entry point: IKE "edits" `requests` with hyperparameters `hp`
    (an IKEHParams, or a dict holding its names, e.g. a run's settings: other names are the run's,
    not IKE's, and are left out) and a demonstration `pool` (`build_pool`). IKE changes no weight: its
    result is the prompts the model is asked, returned as (IKEPrompts, stats); `answers`
    {question: answer} feed the paper's prompt format."""
    stats = {} if stats is None else stats
    if not isinstance(hp, IKEHParams):
        hp = IKEHParams.paper().replace(**{k: v for k, v in dict(hp).items() if k in IKEHParams.field_names()})
    return edit(model, tokenizer, requests, pool=pool, hp=hp, stats=stats, template=template, answers=answers), stats


# =========================================================================== saving
def edit_metric_prompts(prompts: IKEPrompts) -> IKEPrompts:
    """The prompts IKE's edit-level metrics score with: EasyEdit's compute_icl_edit_quality puts
    the context on the logits and the question last in the prompt."""
    return prompts.rewrap(stats={}, mode="logits", prompt_format="question_only")


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
    """The `IKEPrompts` saved by `save_prompts`. A truncated or garbled ike.json raises
    store.CorruptFile naming it and how to re-make the run's edit."""
    import json

    path = Path(folder) / "ike.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: not a saved IKE edit")
    fix = (f"delete {display_path(folder)} and rerun the run's IKE notebook (04) with force=True, or notebook 08 "
           "with rebuild_missing=True, which re-makes it from its record")

    def fact(f) -> Fact:
        if not (isinstance(f, list) and 2 <= len(f) <= 3 and all(isinstance(x, str) for x in f[:2])):
            raise TypeError(f"a fact is [question, target, paraphrased question], found {str(f)[:80]}")
        return Fact(*f)

    try:
        st = json.loads(path.read_text())       # ValueError when malformed or truncated
        demos = [Demo(t, kind, i) for t, kind, i in st["demos"]]
        if not all(isinstance(d.text, str) and isinstance(d.kind, str) and isinstance(d.fact_index, int)
                   for d in demos):
            raise TypeError("a demonstration is [text, kind, fact index]")
        pool_facts, facts = [fact(f) for f in st["pool_facts"]], [fact(f) for f in st["facts"]]
        settings = dict(k=st["k"], mode=st["mode"], order=st["order"], truncate=st["truncate"],
                        context_position=st["context_position"],
                        prompt_format=st.get("prompt_format", "question_only"),   # an ike.json without it: question_only
                        answers=st.get("answers"), limit=st.get("limit"))
        template, sentence_model = st["template"], st["sentence_model"]
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptFile(path, f"not a saved IKE edit ({type(e).__name__}: {str(e)[:200]})", fix) from None
    if embedder is None:
        embedder = sentence_embedder(sentence_model, cache_dir=ike_embedding_cache_dir())
    pool = DemoPool(demos, pool_facts, embedder)
    return IKEPrompts(tokenizer, pool, facts, template, stats=stats, **settings)
