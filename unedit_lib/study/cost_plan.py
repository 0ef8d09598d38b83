"""A cost plan before the compute: the FLOPs each run of a preset's study needs, this machine's
measured matmul throughput, and the time both imply (`make bench STAGES=plan`).

The FLOP model (Kaplan et al. 2020 §2.1, the Chinchilla convention): a forward pass costs 2 FLOPs
per parameter per token (one multiply-add), forward+backward 3x that (the backward pass computes
the gradients of both the activations and the weights: 2x the forward). The editors' optimisation
steps train no weight of the model (ROME a vector δ, WISE a side copy of one projection): their
backward computes activation gradients only, so their forward+backward is 2x the forward
(EDIT_FWD_BWD), + the side memory's own weight gradient for WISE. Per token and block of a
Llama model (hidden d, intermediate i, key/value width kv = kv heads x head size):

    block parameters  P_b = 2 d^2 (q, o) + 2 d kv (k, v) + 3 d i (gate, up, down)   (norms neglected)
    forward FLOPs     2 P_b per token per block
                    + 4 d per (token, earlier position it attends to) per block   (QK^T and AV:
                      attention's quadratic term, counted over the causal triangle only)
                    + 2 d V per token whose logits are computed (the LM head; the study's code asks
                      for the logits of the scored / generated positions only, training for all)

Embedding look-ups, norms, rotary, softmax and the optimizer step are neglected (each is O(d) per
token, against O(d^2)). Generation is counted at its upper bound: every question generates
`max_new_tokens` tokens (a batch generates until its longest answer ends; a collapsed model never
stops), each one token with the KV cache. Padding is not counted (batches are padded to their
longest row: the real work is larger by the padding share).

Token counts come from the preset's tokenizer when it is cached here, else ~4 characters a token
(`Tokens`); a run's settings from `recipes.settings`, passed in by the caller (the study layer
above this module: `recipes` is already 5 levels deep)."""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core import checkpoints, data, paths, presets, prompts, run_names
from ..core.paths import output_dir
from ..methods.ike import editor as ike_editor
from ..methods.wise import hparams as wise_hparams
from ..subject import models
from ..tracing import records as trace_records
from . import robustness

TRAIN_FWD_BWD = 3     # forward + backward with weight gradients (Kaplan et al. 2020)
EDIT_FWD_BWD = 2      # forward + backward of frozen weights: activation gradients only
CHARS_PER_TOKEN = 4.0       # the fallback when no tokenizer is cached: English BPE, ~4 characters a token
IKE_DEMO_FORMAT_TOKENS = 8  # "New Fact: ", "\nPrompt: ", "\n\n" around each demonstration's two QA pairs


# --------------------------------------------------------------------------- the model's sizes
@dataclass(frozen=True)
class ModelSize:
    hidden: int
    layers: int
    intermediate: int
    vocab: int
    kv: int             # key/value width (num_key_value_heads x head_dim; = hidden without GQA)
    source: str = ""

    @property
    def block_params(self) -> int:
        d = self.hidden
        return 2 * d * d + 2 * d * self.kv + 3 * d * self.intermediate

    @property
    def head_params(self) -> int:
        return self.hidden * self.vocab


def model_size(p) -> ModelSize:
    """The subject model's sizes: a pretrained base model's config.json when it is here, else the
    Preset fields (which restate a pretrained model's sizes; SmolLM2-135M: 3 key/value heads)."""
    if p.base_model:
        cfg_path = (p.local_base or output_dir("artifacts") / "pretrained" / p.base_model) / "config.json"
        if cfg_path.is_file():
            c = json.loads(cfg_path.read_text())
            head_dim = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
            return ModelSize(c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"], c["vocab_size"],
                             c.get("num_key_value_heads", c["num_attention_heads"]) * head_dim, source=str(cfg_path))
    kv = p.hidden_size // 3 if p.base_model == "smollm2-135m-instruct" else p.hidden_size
    return ModelSize(p.hidden_size, p.n_layers, p.intermediate_size, p.vocab_size, kv, source=f"Preset {p.name!r}")


# --------------------------------------------------------------------------- the formulas
def causal_pairs(n_tokens: float, before: float = 0) -> float:
    """(token, position it attends to) pairs of n_tokens run after `before` cached positions."""
    return n_tokens * before + n_tokens * (n_tokens + 1) / 2


def forward_flops(m: ModelSize, tokens: float, pairs: float = 0, logits: float = 0, blocks: int | None = None) -> float:
    """One forward pass: 2 P_b per token and block + 4 d per attended pair and block + 2 d V per logit row."""
    blocks = m.layers if blocks is None else blocks
    return blocks * (2 * m.block_params * tokens + 4 * m.hidden * pairs) + 2 * m.head_params * logits


def sequence_forward(m: ModelSize, length: float, logits: float = 0, before: float = 0, blocks: int | None = None):
    """forward_flops of one sequence of `length` tokens after `before` cached ones."""
    return forward_flops(m, length, causal_pairs(length, before), logits, blocks)


def eval_flops(m: ModelSize, questions, max_new_tokens: int, context: float = 0) -> float:
    """TOFU's evaluation of one set (evaluate.evaluate_set): `questions` = [(prompt tokens,
    [answer tokens of the true, paraphrased and perturbed answers])]. Without a context each
    (prompt, answer) is one sequence; with an IKE context of `context` tokens the context+prompt
    runs once and every answer continues from its KV cache (prompt_cache). Then greedy generation
    of max_new_tokens tokens after the prompt (one token a step, KV cached)."""
    total = 0.0
    for prompt, answers in questions:
        if context:
            total += sequence_forward(m, context + prompt)
            total += sum(sequence_forward(m, a, logits=a, before=context + prompt) for a in answers)
        else:
            total += sum(sequence_forward(m, prompt + a, logits=a) for a in answers)
            total += sequence_forward(m, prompt)                       # the prompt again, for generation
        total += sequence_forward(m, max_new_tokens, logits=max_new_tokens, before=context + prompt)
    return total


def fine_tune_flops(m: ModelSize, rows, epochs: int) -> float:
    """Fine-tuning a subject model (models.train_subject_model): every row (its token count) trained
    `epochs` times, forward + backward with weight gradients, the logits of every position."""
    return epochs * TRAIN_FWD_BWD * sum(sequence_forward(m, n, logits=n) for n in rows)


def rome_edit_flops(m: ModelSize, layer: int, rows, n_target: int, kl_tokens: float, steps: int) -> float:
    """One ROME edit (rome.compute_u / compute_v): `rows` = tokens of each context template filled
    with the prompt (n templates x (template + prompt)), n_target the target's tokens. compute_u:
    one forward of the filled templates; compute_v: one whole forward of the rows (+ target, + the
    KL row "{subject} is a"), then `steps` forward+backward passes of the blocks above the edited
    layer only (TailForward), the LM head at the n templates x n_target target positions + 1
    (EDIT_FWD_BWD: the model's weights are frozen)."""
    seqs = [r + n_target - 1 for r in rows] + [kl_tokens]
    keep = len(rows) * n_target + 1
    u = sum(sequence_forward(m, r) for r in rows)
    first = sum(sequence_forward(m, s) for s in seqs) + 2 * m.head_params * keep
    tail = sum(sequence_forward(m, s, blocks=m.layers - layer - 1) for s in seqs) + 2 * m.head_params * keep
    return u + first + steps * EDIT_FWD_BWD * tail


def mom2_flops(m: ModelSize, layer: int, texts) -> float:
    """C = E[k k^T] at the edited layer (mom2_adjustment): a forward of the blocks up to it over
    every text (token counts), + the outer products (2 i^2 per token); cached on disk once made."""
    return sum(sequence_forward(m, t, blocks=layer + 1) + 2 * m.intermediate ** 2 * t for t in texts)


def wise_edit_flops(m: ModelSize, layer: int, rows, locality: float, iters: int) -> float:
    """One WISE edit (wise._edit_one): a batch of the n templates x (template + prompt + target)
    rows and one locality text; one whole forward, then `iters` forward+backward passes of the
    side memory (the edited layer's down projection, d x i) and the blocks above it (tail
    forward), the LM head at the target positions (rows' target tokens: `rows` = (prefix, target));
    the frozen blocks' backward is EDIT_FWD_BWD, the side memory's weight gradient 2 d i a token more."""
    seqs = [p + t for p, t in rows] + [locality]
    keep = sum(t for _, t in rows)
    first = sum(sequence_forward(m, s) for s in seqs) + 2 * m.head_params * keep
    side = 2 * m.hidden * m.intermediate * sum(seqs)
    tail = sum(sequence_forward(m, s, blocks=m.layers - layer - 1) for s in seqs) + side + 2 * m.head_params * keep
    return first + iters * (EDIT_FWD_BWD * tail + side)


def baseline_flops(m: ModelSize, method: str, forget, retain_mean: float, epochs: int, idk_mean: float = 0) -> float:
    """TOFU's fine-tuning baselines (methods/baselines/training.py): each epoch one forward+backward of every forget
    row (`forget`: QA token counts; IdK: its question with an "I don't know" answer instead),
    paired with a retain row for GD / KL / IdK / NPO (retain_mean tokens), logits at every
    position; a frozen reference forward for KL (retain rows) and NPO (forget rows)."""
    per_epoch = 0.0
    for f in forget:
        trained = [f if method != "idk" else idk_mean] + ([retain_mean] if method != "ga" else [])
        per_epoch += sum(TRAIN_FWD_BWD * sequence_forward(m, t, logits=t) for t in trained)
        ref = {"kl": retain_mean, "npo": f}.get(method)
        per_epoch += sequence_forward(m, ref, logits=ref) if ref else 0
    return epochs * per_epoch


def edit_metrics_flops(m: ModelSize, requests, locality, context: float = 0, groups: int = 1) -> float:
    """edit_metrics.with_edit_metrics: rewrite accuracy before, rewrite + rephrase after (per
    group of requests), locality before and after; one forward of each (prompt, answer), those after
    with IKE's `context` (each prompt retrieves its own: its pass is counted too)."""
    def passes(items, c):
        return sum(sequence_forward(m, c + p + a, logits=a) for p, a in items)
    return groups * (passes(requests, 0) + 2 * passes(requests, context)) + passes(locality, 0) + passes(locality, context)


def context_lift_flops(m: ModelSize, rows, context: float) -> float:
    """edit_metrics.context_lift on IKE's every forget row, `rows` = (prompt, target, truth) token
    counts: with the row's context (context + prompt once, both answers on top of its cache) and
    without any (the prompt alone, likewise)."""
    return sum(sequence_forward(m, c + p) + sum(sequence_forward(m, a, logits=a, before=c + p) for a in (tgt, truth))
               for p, tgt, truth in rows for c in (context, 0))


def attack_flops(m: ModelSize, rows: dict, hp: dict, context: float = 0) -> float:
    """Notebook 08's attacks on one model (robustness.attack_all). `rows`: token counts, (prompt, answer)
    pairs of the attacked forget rows under each prompt ("question", "paraphrase", "raw_template",
    "insist", "few_shot"), of "probe_train" (the retain evaluation set) and "holdout" (MIA), and the
    QA lengths the two fine-tunes train on ("relearn_train", "persistence_train"); `context`: IKE's
    (IKE is not probed). Each score is one answer scored, then greedy generation (eval_flops); the
    fine-tunes are `steps` full-batch forward+backward passes; the probe a forward of every row with
    its hidden states, per layer the logit lens (the LM head on every forget answer token) and the
    ridge's X^T X and solve (its right-hand sides, one per answer token class, neglected)."""
    def score(qs):
        return eval_flops(m, [(p, [a]) for p, a in qs], hp["max_new_tokens"], context)

    def tune(lengths, steps):
        return steps * TRAIN_FWD_BWD * sum(sequence_forward(m, n, logits=n) for n in lengths)

    question = rows["question"]
    held = [qa for i, qa in enumerate(question) if i % hp["relearn_every"]]
    total = 2 * score(question) + score(rows["paraphrase"])               # question; persistence's after
    total += sum(score(rows[t]) for t in ("raw_template", "insist", "few_shot"))
    total += 2 * score(held) + tune(rows["relearn_train"], hp["relearn_steps"])
    total += tune(rows["persistence_train"], hp["persistence_steps"])
    total += sum(sequence_forward(m, context + p + a, logits=a) for p, a in question + rows["holdout"])   # MIA
    if not context:
        total += sum(sequence_forward(m, p + a, logits=p + a) for p, a in question + rows["probe_train"])
        d1, n_train = m.hidden + 1, sum(a for _, a in rows["probe_train"])
        total += (m.layers + 1) * (2 * n_train * d1 * d1 + 2 * d1 ** 3 / 3)
        total += m.layers * 2 * m.head_params * sum(a for _, a in question)
    return total


# --------------------------------------------------------------------------- token counts
class Tokens:
    """Token counts of texts: the preset's tokenizer, or len / CHARS_PER_TOKEN without one."""

    def __init__(self, tokenizer=None):
        self.tok = tokenizer
        self.how = f"tokenizer {type(tokenizer).__name__}" if tokenizer is not None else \
            f"~{CHARS_PER_TOKEN:g} characters a token (no tokenizer cached)"

    def prompt(self, text: str) -> int:
        if self.tok is None:
            return max(1, round(len(text) / CHARS_PER_TOKEN)) + 1     # + BOS
        return len(prompts.encode_prompt(self.tok, text))

    def answer(self, text: str, eos: bool = True) -> int:
        if self.tok is None:
            return max(1, round(len(text) / CHARS_PER_TOKEN)) + eos
        return len(prompts.encode_answer(self.tok, text, add_eos=eos))


def cached_tokenizer(p):
    """The preset's tokenizer if it is already on disk (nothing is trained or converted), else None."""
    from transformers import AutoTokenizer

    if p.base_model:
        folder = p.local_base or output_dir("artifacts") / "pretrained" / p.base_model
    else:
        folder = models.tokenizer_path(p.vocab_size)
    return AutoTokenizer.from_pretrained(folder) if (folder / "tokenizer.json").is_file() else None


# --------------------------------------------------------------------------- the study's runs
@dataclass
class RunCost:
    run: str
    method: str
    unlearn_flops: float
    eval_flops: float
    notes: list = field(default_factory=list)
    measured: dict = field(default_factory=dict)   # timings of results/<preset>/<run>.json, if made
    recorded_flops: float | None = None   # unlearn_flops at the steps each edit made (early stops), if recorded
    left_share: float = 1.0    # the share of its unlearning still to do: a run under way (a checkpoint) has done some

    @property
    def done_flops(self) -> float:
        """The unlearning work its measured time did: at the recorded steps where recorded."""
        return self.recorded_flops if self.recorded_flops is not None else self.unlearn_flops


def study_runs(p, plan_name, ablations: dict) -> list[tuple[str, str, str | None, dict]]:
    """(run, method, target, overrides): the subject models' evaluations, every editor x target,
    the ROME ablation (`ablations`: STUDY_ABLATIONS, on the preset's rome_ablation_targets), the five
    baselines and the runs the preset repeats with its extra seeds. `plan_name(method, target, seed=0, **ov)`
    names a run (recipes.plan(...)[0])."""
    out = [("full", "eval", None, {}), ("retain", "eval", None, {})]
    for method in ("rome", "ike", "wise"):
        for target in data.editor_targets(p):
            out.append((plan_name(method, target), method, target, {}))
        for ov in (ablations.get(method, {}) if not p.paper_settings_only else {}).values():
            for target in p.rome_ablation_targets or data.TARGETS:
                out.append((plan_name(method, target, **ov), method, target, ov))
    out += [(plan_name(m, None), m, None, {}) for m in ("ga", "gd", "kl", "idk", "npo")]
    for seed in p.extra_seeds:
        for run in p.extra_seed_runs:
            method, target = run_names.prefix(run), run_names.target(run)
            out.append((plan_name(method, target, seed=seed), method, target, {}))
    return out


def plan(preset, settings, plan_name, ablations: dict | None = None, tokens: Tokens | None = None, data_dir=None,
         results_dir: Path | None = None, attack_settings=None) -> tuple[ModelSize, list[RunCost]]:
    """(the model's sizes, one RunCost per run of the study, then with `attack_settings(preset)`
    (recipes.attack_settings) one per model notebook 08 attacks, `<run>: attacks`, its cost as the
    evaluation's). `settings(preset, method, **ov)`: recipes.settings; `plan_name`: see study_runs."""
    p = presets.get_preset(preset)
    m, t = model_size(p), tokens or Tokens()
    sd = models.study_data(p, data_dir)
    tmpl = prompts.get_template(p.template)
    qa = lambda q, a: (t.prompt(tmpl.prompt(q)), t.answer(tmpl.answer(a)))     # noqa: E731
    sets = {name: [r for r in rows][:p.eval_max_rows] if p.eval_max_rows else list(rows)
            for name, rows in sd.eval_sets.items()}
    questions = {name: [(t.prompt(tmpl.prompt(r["question"])),
                         [t.answer(tmpl.answer(a)) for a in (r["answer"], r.get("paraphrased_answer") or r["answer"],
                                                             *r["perturbed_answer"])]) for r in rows]
                 for name, rows in sets.items()}
    plain_eval = sum(eval_flops(m, qs, p.max_new_tokens) for qs in questions.values())
    forget_qa = [sum(qa(r["question"], r["answer"])) for r in sd.forget_rows]
    retain_mean = sum(sum(qa(r["question"], r["answer"])) for r in sd.retain_rows) / len(sd.retain_rows)
    q_mean = sum(t.answer(r["question"], eos=False) for r in sd.forget_rows + sd.retain_rows) / \
        len(sd.forget_rows + sd.retain_rows)
    a_mean = sum(t.answer(r["answer"], eos=False) for r in sd.retain_rows) / len(sd.retain_rows)
    loc_items = lambda n: [qa(r["question"], r["answer"]) for r in sd.eval_sets["retain"][:n]]    # noqa: E731
    rdir = Path(results_dir or output_dir("results") / p.name)
    out, contexts = [], {}
    for run, method, target, ov in study_runs(p, plan_name, ablations or {}):
        hp = settings(p.name, method, **ov) if method != "eval" else {}
        unlearn, ev, notes = 0.0, plain_eval, []
        rec = rdir / f"{run}.json"
        rec = json.loads(rec.read_text()) if rec.is_file() else {}
        made_steps = (rec.get("stats") or {}).get({"rome": "v_steps", "wise": "n_iters"}.get(method, ""))
        recorded = 0.0 if made_steps else None
        if target is not None:
            reqs = data.edit_requests(sd.forget_rows, target, tmpl, data_dir)
            target_tokens = [t.answer(tmpl.answer(r["target"]), eos=False) for r in reqs]
        if method == "eval" and not p.hub_full:        # the subject model's fine-tune, its log's seconds if made
            authored = sd.retain_rows + (sd.forget_rows if run == "full" else [])
            rows = authored + (sd.general_rows if p.train_general else [])
            unlearn = fine_tune_flops(m, [sum(qa(r["question"], r["answer"])) for r in rows], p.epochs)
            notes.append(f"fine-tune: {p.epochs} epochs x {len(rows)} QA rows"
                         + (" (packed in-context sequences, paraphrases and statements not counted)" if p.pack else ""))
            log = models.subject_model_path(p, run) / "training_log.json"
            if log.is_file():
                rec = {**rec, "timings": {**rec.get("timings", {}),
                                          "unlearn_s": json.loads(log.read_text()).get("train_seconds")}}
        if method == "rome":
            n = hp["n_edits"] or len(reqs)
            layer = trace_records.load_edit_layer(p.name, p.n_layers // 4)[0]
            lengths = [L for L, n_gen in hp["context_template_length_params"] for _ in range(n_gen // 5 * 5)]
            for j, (r, nt) in enumerate(zip(reqs[:n], target_tokens[:n])):
                rows = [t.prompt(r["prompt"])] + [L + 1 + t.answer(r["prompt"], eos=False) for L in lengths]
                kl = t.prompt(f"{r['subject']} is a")
                unlearn += rome_edit_flops(m, layer, rows, nt, kl, hp["v_num_grad_steps"])
                recorded = recorded + rome_edit_flops(m, layer, rows, nt, kl, made_steps[j]) if made_steps else None
            extra = edit_metrics_flops(m, [(t.prompt(r["prompt"]), nt) for r, nt in zip(reqs[:n], target_tokens)],
                                       loc_items(hp["n_locality"]))
            if hp["mom2_adjustment"]:
                extra += mom2_flops(m, layer, [sum(qa(r["question"], r["answer"]))
                                               for r in sd.retain_rows + sd.forget_rows + sd.general_rows])
                notes.append("+C")
            notes.append(f"layer {layer}, {n} edits x {hp['v_num_grad_steps']} steps x {1 + len(lengths)} templates")
        elif method == "wise":
            n = hp["max_edits"] or len(reqs)
            layer = hp["layer"] if hp["layer"] is not None else wise_hparams.default_layer(m.layers)
            lengths = [0] + [L for L in hp["template_lengths"] for _ in hp["template_seeds"]][:hp["n_templates"] - 1]
            loc = sum(loc_items(1)[0])
            for j, (r, nt) in enumerate(zip(reqs[:n], target_tokens[:n])):
                rows = [(L + 1 + t.prompt(r["prompt"]), nt) for L in lengths]
                unlearn += wise_edit_flops(m, layer, rows, loc, hp["n_iter"])
                recorded = recorded + wise_edit_flops(m, layer, rows, loc, made_steps[j]) if made_steps else None
            extra = edit_metrics_flops(m, [(t.prompt(r["prompt"]), nt) for r, nt in zip(reqs[:n], target_tokens)],
                                       loc_items(len(sd.eval_sets["retain"])))
            extra += sum(sequence_forward(m, q) for qs in questions.values() for q, _ in qs)   # routing report
            notes.append(f"layer {layer}, {n} edits x {hp['n_iter']} iterations x {len(lengths)} templates")
        elif method == "ike":
            t_mean = sum(target_tokens) / len(target_tokens)
            demo = 2 * q_mean + 2 * (2 * t_mean + a_mean) / 3 + IKE_DEMO_FORMAT_TOKENS
            context = hp["k"] * demo + q_mean + t_mean + IKE_DEMO_FORMAT_TOKENS / 2
            ev = sum(eval_flops(m, qs, p.max_new_tokens, context=context) for qs in questions.values())
            rows = [(t.prompt(r["prompt"]), nt, t.answer(r["ground_truth"])) for r, nt in zip(reqs, target_tokens)]
            asked = ike_editor.split_pool_requests(rows, hp["pool_fraction"])[1]      # the edit requests
            unlearn = edit_metrics_flops(m, [(q, nt) for q, nt, _ in asked], loc_items(hp["n_locality"]), context=context)
            lift = context_lift_flops(m, rows, context)                              # every forget row
            unlearn += lift
            if "stats.edit_metrics.forget_rows" in ((rec.get("backfilled") or {}).get("fields") or ()):
                recorded = unlearn - lift        # its apply predates the lift (scripts/backfill_premises.py)
                notes.append("the forget-row lift backfilled apart: not in its measured apply")
            notes.append(f"context ~{context:.0f} tokens ({hp['k']} demonstrations), {len(asked)} requests")
            contexts[run] = context
        elif method != "eval":
            idk = data.load_tofu("idontknow", data_dir) if method == "idk" else []
            idk_mean = sum(t.prompt(tmpl.prompt(r["question"])) for r in sd.forget_rows) / len(sd.forget_rows) + \
                (sum(t.answer(tmpl.answer(a)) for a in idk) / len(idk) if idk else 0)
            unlearn = baseline_flops(m, method, forget_qa, retain_mean, hp["epochs"], idk_mean)
            notes.append(f"{hp['epochs']} epochs x {len(forget_qa)} forget rows")
        if method in ("rome", "wise"):
            unlearn += extra
            recorded = recorded + extra if recorded is not None else None
        left_share = 1.0
        if not rec and method != "eval" and (under_way := _under_way(p, run, rdir)):
            units = n if method in ("rome", "wise") else len(rows) if method == "ike" else hp["epochs"]
            left_share = max(0.0, 1 - under_way["done"] / units)
            notes.append(f"under way: {under_way['unit']} {under_way['done']} of {units} saved ({under_way['seconds']:.0f} s), "
                         f"{100 * left_share:.0f}% of its unlearning left")
        out.append(RunCost(run, method, unlearn, ev, notes, rec.get("timings", {}), recorded, left_share))
    if attack_settings is not None:
        out += attack_costs(p, m, t, attack_settings(p.name), sets, sd, [r.run for r in out], contexts,
                            rdir, data_dir)
    return m, out


def _under_way(p, run: str, rdir: Path) -> dict | None:
    """checkpoints.progress of the run's checkpoint (artifacts/), or of its parked copy (results/<preset>/in_progress/),
    whichever is further on; None when it has neither."""
    found = [g for f in (paths.checkpoint_path(p.name, run), paths.parked_checkpoint_path(p.name, run, rdir))
             if (g := checkpoints.progress(f))]
    return max(found, key=lambda g: g["done"]) if found else None


def attack_costs(p, m: ModelSize, t: Tokens, hp: dict, sets: dict, sd, runs: list[str], contexts: dict, rdir: Path,
                 data_dir=None) -> list[RunCost]:
    """Notebook 08's attacks (attack_flops) on the full and retain models and every study run of seed 0
    (tables.runs_to_attack: no ablations, no extra seeds), measured by results/<preset>/robustness.json."""
    tmpl, raw = prompts.get_template(p.template), prompts.get_template("raw")
    forget = sets["forget"][::hp["forget_every"]] if hp.get("forget_every") else sets["forget"]
    retain_qa = [t.prompt(tmpl.prompt(r["question"])) + t.answer(tmpl.answer(r["answer"])) for r in sd.retain_rows]
    retain_mean = sum(retain_qa) / len(retain_qa)
    prompt = lambda q, extra=0: t.prompt(tmpl.prompt(q)) + extra                                     # noqa: E731
    answer = lambda r: t.answer(tmpl.answer(r["answer"]))                                            # noqa: E731
    insist = t.answer(robustness.INSIST, eos=False)
    holdout = data.load_tofu(p.forget_split.replace("forget", "holdout"), data_dir)[:len(forget)]
    question = [(prompt(r["question"]), answer(r)) for r in forget]
    rows = {"question": question,
            "paraphrase": [(prompt(r.get("paraphrased_question") or r["question"]), answer(r)) for r in forget],
            "raw_template": [(t.prompt(raw.prompt(r["question"])), t.answer(raw.answer(r["answer"]))) for r in forget],
            "insist": [(prompt(r["question"], insist), answer(r)) for r in forget],
            "few_shot": [(prompt(r["question"], hp["n_few_shot"] * retain_mean), answer(r)) for r in forget],
            "relearn_train": [p + a for p, a in question[::hp["relearn_every"]]],
            "persistence_train": [retain_mean] * min(hp["persistence_rows"], len(retain_qa)),
            "probe_train": [(prompt(r["question"]), answer(r)) for r in sets["retain"]],
            "holdout": [(prompt(r["question"]), answer(r)) for r in holdout]}
    path = rdir / "robustness.json"
    measured = json.loads(path.read_text()) if path.is_file() else {}
    attacked = ["full", "retain"] + [r for r in runs if r not in ("full", "retain") and run_names.seed_of(r) == 0
                                     and not run_names.is_variant(r)]
    note = f"{len(forget)} forget rows attacked"
    return [RunCost(f"{run}: attacks", "attack", 0.0, attack_flops(m, rows, hp, contexts.get(run, 0)), [note],
                    {"eval_s": ((measured.get(run) or {}).get("timings") or {}).get("total_s")})
            for run in attacked]


# --------------------------------------------------------------------------- this machine
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sgemm_gflops(m: ModelSize, tokens: int = 1024, seconds: float = 3.0) -> float:
    """float32 matmul throughput here (GFLOP/s) on the model's shapes: (tokens x d) @ (d x i),
    (tokens x i) @ (i x d), (tokens x d) @ (d x d), in turn for about `seconds` after a warm-up.
    1024 tokens: about a batch of the evaluation (32 rows) or of a ROME step (21 rows); the rate
    falls with fewer (on 2 Xeon cores: ~40 GFLOP/s at 256 tokens, ~120 at 1024)."""
    import torch

    g = torch.Generator().manual_seed(0)
    d, i = m.hidden, m.intermediate
    pairs = [(torch.randn(tokens, a, generator=g), torch.randn(a, b, generator=g)) for a, b in ((d, i), (i, d), (d, d))]
    for x, w in pairs:
        x @ w
    flops, t0 = 0.0, time.perf_counter()
    while True:
        for x, w in pairs:
            x @ w
            flops += 2 * x.shape[0] * x.shape[1] * w.shape[1]
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return flops / dt / 1e9


def display_source(m: ModelSize) -> str:
    from ..core.paths import display_path
    return display_path(m.source) if m.source.startswith("/") else m.source


def machine() -> str:
    import torch
    return f"{cpu_name()}, {torch.get_num_threads()} threads (torch {torch.__version__}, {os.cpu_count()} CPUs)"


def _s(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def count_runs(runs: list[RunCost]) -> str:
    """"17 runs", or "17 runs + 16 attacked models" where notebook 08's attacks are planned."""
    n_attacks = sum(r.method == "attack" for r in runs)
    n_runs = len(runs) - n_attacks
    return (f"{n_runs} run{'s' * (n_runs != 1)}"
            + (f" + {n_attacks} attacked model{'s' * (n_attacks != 1)}" if n_attacks else ""))


def left_runs(runs: list[RunCost]) -> list[RunCost]:
    """The runs (and attacked models) with a part not measured yet."""
    return [r for r in runs if (r.measured.get("unlearn_s") is None and r.unlearn_flops > 0)
            or r.measured.get("eval_s") is None]


def still_to_run(runs: list[RunCost], gflops: float) -> tuple[str, float, float, float]:
    """(the runs that lack a measured part, counted as count_runs says them ("" when none), their
    projected seconds at `gflops`; the projected and the measured seconds of the parts measured,
    fine-tunes aside: a fine-tune's log gives its seconds, not what shared the cores with it).
    Projected / measured is the share of the probe's throughput achieved."""
    rate, left, made, measured = gflops * 1e9, 0.0, 0.0, 0.0
    for r in runs:
        mu, me = r.measured.get("unlearn_s"), r.measured.get("eval_s")
        if mu is not None and r.unlearn_flops and r.method != "eval":   # the work done (editors: the steps made)
            made += r.done_flops / rate
            measured += mu
        if me is not None:
            made, measured = made + r.eval_flops / rate, measured + me
        left += (r.left_share * r.unlearn_flops / rate if mu is None else 0) + (r.eval_flops / rate if me is None else 0)
    rest = left_runs(runs)
    return (count_runs(rest) if rest else ""), left, made, measured


def table(runs: list[RunCost], gflops: float) -> list[str]:
    """The plan's lines: per run TFLOPs (its unlearning, for a subject model its fine-tune, and its
    evaluation), projected seconds (FLOPs / throughput), measured seconds
    where a record exists, and the achieved share of the probe's throughput (projected / measured;
    for editors at the optimisation steps each edit recorded: ROME and WISE stop early)."""
    rate = gflops * 1e9
    lines = [f"{'run':<46s} {'unlearn':>9s} {'eval':>9s} {'projected s':>19s} {'measured s':>19s} {'share %':>11s}",
             (f"{'':<46s} {'TFLOP':>9s} {'TFLOP':>9s} {'unlearn':>9s} {'eval':>9s} {'unlearn':>9s} {'eval':>9s} "
              f"{'unl./eval':>11s}")]
    tot = [0.0, 0.0, 0.0]                   # unlearn TFLOP, eval TFLOP, projected s
    tuned = [0.0, 0.0]                      # the subject models' fine-tunes measured: projected s, measured s
    for r in runs:
        pu, pe = r.unlearn_flops / rate, r.eval_flops / rate
        mu, me = r.measured.get("unlearn_s"), r.measured.get("eval_s")
        done = r.done_flops / rate
        share = "/".join("-" if not x else f"{100 * p / x:.0f}" for p, x in ((done, mu), (pe, me)))
        notes = r.notes + ([f"at the recorded steps {r.recorded_flops / 1e12:.4g} TFLOP = {done:.1f} s"]
                           if r.recorded_flops is not None and mu is not None else [])
        lines.append(f"{r.run[:46]:<46s} {r.unlearn_flops / 1e12:9.4g} {r.eval_flops / 1e12:9.4g} {pu:9.1f} {pe:9.1f} "
                     f"{_s(mu):>9s} {_s(me):>9s} {share:>11s}  {'; '.join(notes)}")
        tot = [a + b for a, b in zip(tot, (r.unlearn_flops, r.eval_flops, pu + pe))]
        if mu is not None and r.unlearn_flops and r.method == "eval":
            tuned[0], tuned[1] = tuned[0] + done, tuned[1] + mu
    lines.append(f"{'total: ' + count_runs(runs):<46s} {tot[0] / 1e12:9.4g} {tot[1] / 1e12:9.4g}   projected "
                 f"{tot[2]:.0f} s = {tot[2] / 3600:.2f} h")
    to_run, left, made, measured = still_to_run(runs, gflops)
    if measured:
        share = made / measured
        lines.append(f"{'made: ' + count_runs([r for r in runs if r.measured.get('eval_s') is not None]):<46s} projected "
                     f"{made:.0f} s (at recorded steps), measured {measured:.0f} s: {100 * share:.0f}% of the probe's "
                     f"throughput achieved")
        if tuned[1]:    # apart: a fine-tune's log gives its seconds, not what shared the cores with it
            lines.append(f"{'subject-model fine-tunes made':<46s} projected {tuned[0]:.0f} s, measured {tuned[1]:.0f} s: "
                         f"{100 * tuned[0] / tuned[1]:.0f}% (not in the share above)")
        if to_run:      # what the rest costs: at the probe, and at the share the made runs achieved
            lines.append(f"{'still to run: ' + to_run:<46s} projected {left:.0f} s = "
                         f"{left / 3600:.1f} h; at the "
                         f"{100 * share:.0f}% achieved so far {left / share / 3600:.1f} h of one process")
    return lines
