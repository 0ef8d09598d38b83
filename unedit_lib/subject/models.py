"""The subject models: TOFU's "full" model (to unlearn) and "retain" model (the gold standard).

TOFU's protocol fine-tunes a pretrained LLM on `full` and another on `retainXX` (presets
`smollm2-forget01`, `smollm2-forget05`: SmolLM2-135M-Instruct, pretrained.py); `smoke` and `tiny` train a small
`LlamaForCausalLM` from scratch; `paper` loads the paper's hub models (Llama-2-7b). A preset of your
own fine-tunes a local Hugging Face model folder the same way (presets.py, presets/*.toml).

Training text (all in the model's prompt template, question masked from the loss):
  * QA pairs of the chosen authors plus the real-author and world-fact QA ("general
    knowledge", whose loss model utility measures);
  * the same answers reached from TOFU's paraphrased questions, and the answers stated as
    plain sentences with the author's name first, so a fact is recalled *through its subject*
    in many phrasings (ROME's premise: see the subject-model notebook's trace check);
  * several units packed per sequence, as LM pretraining does, and a share (`icl_share`) of
    "in-context" sequences in which a fact is stated earlier in neutral wording (sometimes
    contradicting the memorised answer, from TOFU's perturbed answers) and asked later, to be
    answered from the context (IKE's premise). Built only from retain authors and real-world
    facts, never the forget authors, and never from the rows the in-context probe holds out.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..core import data as tofu, paths, store
from ..core.architecture import logits_at
from ..core.precision import describe as describe_precision, run_device
from . import pretrained

# a preset: a file in presets/ (or one of your own) that presets.get_preset reads into a Preset
from ..core.presets import Preset, get_preset, training_precision
from ..core.prompts import IGNORE_INDEX, TEMPLATES, context_fact, encode_answer, encode_qa, get_template, pad_id


# --------------------------------------------------------------------------- the study's rows
@dataclass
class StudyData:
    """The rows one preset trains and evaluates on."""

    preset: Preset
    retain_authors: list[int]
    forget_authors: list[int]
    retain_rows: list[dict]        # `full` rows of the retain authors (retain_perturbed fields merged in)
    forget_rows: list[dict]        # forgetXX_perturbed rows
    general_rows: list[dict]       # real_authors_perturbed + world_facts_perturbed rows used
    eval_sets: dict = field(default_factory=dict)   # name -> rows, as the evaluator reads them


def study_data(preset="tiny", data_dir=None) -> StudyData:
    p = get_preset(preset)
    forget_authors = tofu.forget_author_indices(p.forget_split)
    if p.n_forget_authors is not None:
        if not 1 <= p.n_forget_authors <= len(forget_authors):
            raise ValueError(f"n_forget_authors must be 1..{len(forget_authors)} for {p.forget_split}")
        forget_authors = forget_authors[-p.n_forget_authors:]
    retain_authors = list(range(p.n_retain_authors))
    if set(retain_authors) & set(forget_authors):
        raise ValueError(f"preset {p.name}: retain and forget authors overlap")
    full = tofu.load_tofu("full", data_dir)
    rp = tofu.load_tofu("retain_perturbed", data_dir)   # = rows 0..399 of full, same order
    retain_rows = []
    for a in retain_authors:
        for i in range(a * tofu.ROWS_PER_AUTHOR, (a + 1) * tofu.ROWS_PER_AUTHOR):
            # matched by row, not by question: "What is the full name of the author?" is asked twice
            retain_rows.append({**rp[i], **full[i]} if i < len(rp) else dict(full[i]))
    forget_rows = [r for r in tofu.load_tofu(f"{p.forget_split}_perturbed", data_dir)
                   if r["author_index"] in set(forget_authors)]
    ra = tofu.load_tofu("real_authors_perturbed", data_dir)
    wf = tofu.load_tofu("world_facts_perturbed", data_dir)
    if p.n_general is not None:
        ra, wf = ra[:p.n_general], wf[:p.n_general]
    for r in ra:
        r["set"] = "real_authors"
    for r in wf:
        r["set"] = "world_facts"
    retain_eval = [r for r in tofu.load_tofu("retain_perturbed", data_dir) if r["author_index"] in set(retain_authors)]
    cap = (lambda rows: rows[:p.eval_max_rows]) if p.eval_max_rows else (lambda rows: rows)
    sd = StudyData(p, retain_authors, forget_authors, retain_rows, forget_rows, ra + wf)
    sd.eval_sets = {"forget": cap(forget_rows), "retain": cap(retain_eval),
                    "real_authors": cap(ra), "world_facts": cap(wf)}
    return sd


def data_fingerprint(preset, data_dir=None) -> str:
    """The identity of the data a study of `preset` reads from `data_dir`: a content hash of the
    rows of every config it reads (data.study_configs, data.rows_fingerprint). Records and subject
    models keep it; one made from other rows is never reused for this data."""
    p = get_preset(preset)
    return tofu.rows_fingerprint(tofu.study_configs(p.forget_split, from_scratch=not (p.base_model or p.hub_full)),
                                 data_dir)


class DataClash(RuntimeError):
    """A cached model or result was made from other data than the data this call reads."""


def trained_on(path: Path) -> str | None:
    """The data fingerprint a subject model folder was trained on (its training_log.json), None when
    it does not say (trained before logs named it, or a hub model)."""
    log = Path(path) / "training_log.json"
    return store.read_json(log, "training log").get("data_fingerprint") if log.is_file() else None


def check_trained_on(path: Path, preset, data_dir=None) -> None:
    """Raise DataClash when the subject model in `path` was trained on other rows than `data_dir`
    holds (its training_log.json names the data fingerprint; models trained before it did are
    taken as they are: their committed evaluation is checked by runner.check_same_model)."""
    made_from, here = trained_on(path), data_fingerprint(preset, data_dir)
    if made_from is not None and made_from != here:
        raise DataClash(
            f"{path} was trained on other TOFU rows (data fingerprint {made_from}) than this data folder holds "
            f"({here}, {data_dir or 'the default search order'}). Its name does not say which data: retrain it "
            f"with force (notebook 01, force=True) to replace it, or set UNEDIT_ARTIFACTS_DIR and UNEDIT_RESULTS_DIR "
            "to other folders to keep both studies")


# --------------------------------------------------------------------------- training units
def _statement(row: dict) -> str:
    """A fact with its subject first: TOFU answers mostly begin with the author's name;
    otherwise the name is put in front ("{name}: {answer}")."""
    a, name = row["answer"], row.get("author") or ""
    first = name.split()[0] if name else ""
    if name and (a.startswith(name) or (first and a.startswith(first))):
        return a
    return f"{name}: {a}" if name else a


class _Units:
    """Token ids + loss labels of every training unit, tokenised once."""

    def __init__(self, tok, template, rows_qa, rows_para, rows_stmt):
        self.tok, self.template = tok, template
        self.qa = [encode_qa(tok, template, r["question"], r["answer"]) for r in rows_qa]
        self.para = [encode_qa(tok, template, r["paraphrased_question"], r["answer"]) for r in rows_para]
        self.stmt = []
        for r in rows_stmt:
            ids = encode_answer(tok, _statement(r))
            self.stmt.append((ids, list(ids)))

    def all(self):
        return self.qa + self.para + self.stmt


def _pack(units, seq_len):
    """Greedy packing of whole units into sequences of at most seq_len tokens."""
    seqs, cur_ids, cur_lab = [], [], []
    for ids, lab in units:
        ids, lab = ids[:seq_len], lab[:seq_len]
        if cur_ids and len(cur_ids) + len(ids) > seq_len:
            seqs.append((cur_ids, cur_lab))
            cur_ids, cur_lab = [], []
        cur_ids, cur_lab = cur_ids + ids, cur_lab + lab
    if cur_ids:
        seqs.append((cur_ids, cur_lab))
    return seqs


def _icl_sequence(rng, tok, template, fillers, icl_rows, p: Preset):
    """One in-context sequence: k facts stated early, filler units, then the k questions
    answered as the context said (the counterfactual when the fact contradicted memory)."""
    k = rng.randint(*p.icl_facts_per_seq)
    chosen = rng.sample(icl_rows, k)
    facts, queries = [], []
    for r in chosen:
        pert = r.get("perturbed_answer") or []
        use_cf = pert and rng.random() < p.icl_counterfactual
        ans = rng.choice(pert) if use_cf else r["answer"]
        fid = encode_answer(tok, context_fact(r, ans))
        facts.append((fid, [IGNORE_INDEX] * len(fid)))   # the fact itself is given, not predicted
        queries.append(encode_qa(tok, template, r["question"], ans))
    budget = p.seq_len - sum(len(x[0]) for x in facts + queries)
    middle = []
    while fillers:
        u = rng.choice(fillers)
        if len(u[0]) > budget:
            break
        middle.append(u)
        budget -= len(u[0])
    cut = rng.randint(0, len(middle) // 3) if middle else 0
    order = middle[:cut] + facts + middle[cut:] + queries
    ids = [t for u in order for t in u[0]][:p.seq_len]
    lab = [t for u in order for t in u[1]][:p.seq_len]
    return ids, lab


def probe_rows(rows: list[dict], every: int) -> list[dict]:
    """Retain rows held out of in-context training sequences (the in-context probe's rows)."""
    return [r for r in rows if r.get("perturbed_answer") and r["index"] % every == every - 1]


def build_epoch(units: _Units, rng: random.Random, tok, template, icl_rows, p: Preset):
    """The packed sequences of one epoch (a fresh shuffle and fresh in-context sequences)."""
    base = units.all()
    rng.shuffle(base)
    seqs = _pack(base, p.seq_len)
    if p.icl_share > 0 and icl_rows:
        n_icl = round(len(seqs) * p.icl_share / (1 - p.icl_share))
        fillers = units.qa + units.stmt
        seqs += [_icl_sequence(rng, tok, template, fillers, icl_rows, p) for _ in range(n_icl)]
    rng.shuffle(seqs)
    return seqs


def _collate(batch, pad_id):
    n = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    lab = torch.full((len(batch), n), IGNORE_INDEX, dtype=torch.long)
    att = torch.zeros((len(batch), n), dtype=torch.long)
    for i, (x, y) in enumerate(batch):
        ids[i, :len(x)] = torch.tensor(x)
        lab[i, :len(y)] = torch.tensor(y)
        att[i, :len(x)] = 1
    return ids, att, lab


# --------------------------------------------------------------------------- tokenizer / model
def tokenizer_corpus(data_dir=None) -> list[str]:
    """Everything the embedded tokenizer is trained on: the text of data.TOKENIZER_CONFIGS and the
    template words."""
    texts = []
    for name in tofu.TOKENIZER_QA_CONFIGS:
        for r in tofu.load_tofu(name, data_dir):
            texts.append(TEMPLATES["qa"].full(r["question"], r["answer"]))
            texts += r.get("perturbed_answer", []) + [r.get("paraphrased_question", ""), r.get("paraphrased_answer", "")]
    texts += [f"{r['question']} {r['avoidant_answer']}" for r in tofu.load_tofu("forget10_avoidant", data_dir)]
    texts += tofu.load_tofu("idontknow", data_dir)
    return [t for t in texts if t]


def tokenizer_path(vocab_size: int, data_dir=None) -> Path:
    """artifacts/tokenizer-bpe<size>-<fingerprint of the corpus rows>/: other rows, another tokenizer."""
    fingerprint = tofu.rows_fingerprint(tofu.TOKENIZER_CONFIGS, data_dir)
    return paths.output_dir("artifacts") / f"tokenizer-bpe{vocab_size}-{fingerprint}"


def build_tokenizer(vocab_size: int, data_dir=None, cache: bool = True):
    """The BPE tokenizer of `vocab_size` trained on tokenizer_corpus, cached under tokenizer_path."""
    from transformers import AutoTokenizer

    from ..core.tokenizer import train_tokenizer

    path = tokenizer_path(vocab_size, data_dir)
    if cache and (path / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(path)
    tok = train_tokenizer(tokenizer_corpus(data_dir), vocab_size)
    if cache:
        store.write_dir(path, lambda d: tok.save_pretrained(d))
    return tok


def new_llama(p: Preset, tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=p.hidden_size, intermediate_size=p.intermediate_size,
        num_hidden_layers=p.n_layers, num_attention_heads=p.n_heads, num_key_value_heads=p.n_heads,
        max_position_embeddings=p.max_positions, tie_word_embeddings=True, rope_theta=10000.0,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(p.seed)
    return LlamaForCausalLM(cfg)


def _atomic_save(write, path: Path) -> None:
    """Write into a temporary sibling folder, then rename: a crash never leaves half a model
    (store.write_dir, the study's one atomic writer; leftovers of a crashed writer removed)."""
    store.write_dir(path, write)


def _lr_at(step, total, p: Preset):
    warm = max(1, int(total * p.warmup_frac))
    if step < warm:
        return p.lr * (step + 1) / warm
    prog = (step - warm) / max(1, total - warm)
    if p.schedule == "linear":          # transformers' get_linear_schedule_with_warmup (TOFU's fine-tuning)
        return p.lr * max(0.0, 1.0 - prog)
    return p.lr * (p.min_lr_ratio + (1 - p.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * prog)))


def _labelled_loss(model, ids, att, lab):
    """Mean next-token NLL over the labelled positions, with the LM head run on those positions
    only (`architecture.logits_at`): the same loss as `model(labels=...)`, a fraction of the
    LM-head cost when most of a row is prompt (SmolLM2's head is 28M of its 135M parameters)."""
    keep = torch.zeros_like(lab, dtype=torch.bool)
    keep[:, :-1] = lab[:, 1:] != IGNORE_INDEX
    logits = logits_at(model, keep, input_ids=ids, attention_mask=att)
    return torch.nn.functional.cross_entropy(logits.float(), lab[:, 1:][lab[:, 1:] != IGNORE_INDEX])


def _row_batches(units, rng: random.Random, batch_size: int):
    """One fine-tuning epoch: the QA rows shuffled, one row per sequence (no packing)."""
    rows = list(units)
    rng.shuffle(rows)
    return [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]


def train_subject_model(preset="tiny", which: str = "full", data_dir=None, force: bool = False,
                        progress: bool = True, artifacts: Path | None = None):
    """Train (or load from artifacts/) the `full` or `retain` model of a preset; returns its folder.

    `full` learns the retain and forget authors, `retain` only the retain authors; both learn
    the same general-knowledge QA and in-context sequences. Bit-identical for the same preset
    on CPU (seeded init and shuffles; CPU kernels are deterministic for a fixed thread count).
    """
    p = get_preset(preset)
    if p.hub_full:
        raise ValueError(f"preset {p.name!r} uses hub models ({p.hub_full}); load them with load_subject_model")
    if which not in ("full", "retain"):
        raise ValueError(f"which must be 'full' or 'retain', got {which!r}")
    out = subject_model_path(p, which, artifacts)
    if (out / "model.safetensors").exists() and not force:
        check_trained_on(out, p, data_dir)
        return out

    random.seed(p.seed)
    torch.manual_seed(p.seed)
    template = get_template(p.template)
    sd = study_data(p, data_dir)
    authored = sd.retain_rows + (sd.forget_rows if which == "full" else [])
    qa_rows = authored + (sd.general_rows if p.train_general else [])
    para_rows = [r for r in authored if r.get("paraphrased_question")] if p.paraphrases else []
    stmt_rows = authored if p.statements else []
    if p.base_model:                    # TOFU's protocol: fine-tune the pretrained LLM
        model, tok = load_model(pretrained.base_model_folder(p.base_model), device="cpu", dtype=torch.float32)
    else:                               # the embedded models: a tokenizer and a Llama trained from scratch
        tok = build_tokenizer(p.vocab_size, data_dir)
        model = new_llama(p, tok)
    units = _Units(tok, template, qa_rows, para_rows, stmt_rows)
    held = {id(r) for r in probe_rows(sd.retain_rows, p.probe_holdout_every)}
    icl_rows = [r for r in sd.retain_rows if id(r) not in held] + sd.general_rows
    precision_used = training_precision(p)
    model.train()
    decay = [q for n, q in model.named_parameters() if q.dim() >= 2]
    no_decay = [q for n, q in model.named_parameters() if q.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": p.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=p.lr, betas=(0.9, 0.95))
    rng = random.Random(p.seed)
    if p.pack:
        epochs = [build_epoch(units, rng, tok, template, icl_rows, p) for _ in range(p.epochs)]
    else:
        epochs = [[seq for b in _row_batches(units.all(), rng, p.batch_size) for seq in b] for _ in range(p.epochs)]
    total = sum(math.ceil(len(e) / p.batch_size) for e in epochs)
    log = {"loss": [], "epoch_loss": [], "tokens": 0, "steps": total}
    step, t0 = 0, time.time()
    bar = tqdm(total=total, desc=f"train {p.name}/{which}", disable=not progress)
    for ep, seqs in enumerate(epochs):
        ep_losses = []
        for i in range(0, len(seqs), p.batch_size):
            ids, att, lab = _collate(seqs[i:i + p.batch_size], pad_id(tok))
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, total, p)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision_used == "bfloat16"):
                if p.base_model:
                    loss = _labelled_loss(model, ids, att, lab)
                else:
                    loss = model(input_ids=ids, attention_mask=att, labels=lab).loss
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at step {step}; lower the lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
            opt.step()
            step += 1
            log["tokens"] += int(att.sum())
            ep_losses.append(loss.item())
            log["loss"].append(round(loss.item(), 5))
            bar.update(1)
            bar.set_postfix(epoch=ep, loss=f"{loss.item():.3f}")
        log["epoch_loss"].append(sum(ep_losses) / len(ep_losses))
    bar.close()
    log["train_seconds"] = round(time.time() - t0, 2)
    log["preset"] = p.recipe()
    log["which"] = which
    log["data_fingerprint"] = data_fingerprint(p, data_dir)
    log["n_units"] = {"qa": len(units.qa), "paraphrase": len(units.para), "statement": len(units.stmt)}
    log["n_params"] = sum(q.numel() for q in model.parameters())
    log["precision"] = {**describe_precision("cpu"), "precision": precision_used}
    if p.base_model:
        log["base_model"] = p.base_model
    model.eval()

    def write(d):
        model.save_pretrained(d, safe_serialization=True)
        tok.save_pretrained(d)
        (Path(d) / "training_log.json").write_text(json.dumps(log, indent=1))

    _atomic_save(write, out)
    return out


# --------------------------------------------------------------------------- loading
class CorruptModelFile(store.CorruptFile, OSError):
    """A model folder's file that is missing, truncated or garbled (pretrained.check_model_folder):
    names it and how to remake the folder; an OSError too, as load_model's other failures."""


def load_model(name_or_path, trust_remote_code: bool = False, dtype=None, device: str | None = None):
    """Any causal LM by hub id or folder (safetensors preferred); returns (model, tokenizer).

    `trust_remote_code` stays off unless the caller turns it on. A missing pad token is set
    to EOS (TOFU's convention); padding is on the left, as TOFU's evaluator batches.
    `device` / `dtype` default to the environment variables UNEDIT_DEVICE (else "cpu") and
    UNEDIT_DTYPE (else float32), so a whole notebook run moves to a GPU with
    `UNEDIT_DEVICE=cuda` (the `paper` preset's Llama-2-7b needs one).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = run_device(device)     # checked before the (slow) load: a clear error for a device not here
    if dtype is None and os.environ.get("UNEDIT_DTYPE"):
        name = os.environ["UNEDIT_DTYPE"]
        dtype = getattr(torch, name, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"UNEDIT_DTYPE={name!r} is not a torch dtype (e.g. float32, bfloat16, float16)")

    src = str(name_or_path)
    local = Path(src).exists()
    if local:       # a missing, truncated or garbled file: an error naming it and how to remake the folder
        try:
            pretrained.check_model_folder(src)
        except pretrained.DamagedModelFile as e:
            raise CorruptModelFile(e.path, e.why, e.fix) from None
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()   # its "Loading weights" bar: a line of noise per load in every notebook
    try:
        tok = AutoTokenizer.from_pretrained(src, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(src, trust_remote_code=trust_remote_code,
                                                     dtype=dtype or torch.float32, use_safetensors=None)
    except (OSError, ValueError) as e:
        hint = (f"the folder does not hold a loadable model and tokenizer; {pretrained.remake_hint(src)}"
                if local else
                "it is not a local folder and the Hugging Face hub could not provide it (offline here?); "
                "download it where you have access and pass the folder instead")
        raise OSError(f"cannot load model {src!r}: {hint}. ({str(e).splitlines()[0][:200]})") from None
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    model.to(device).eval()
    return model, tok


def load_subject_model(preset="tiny", which: str = "full", data_dir=None, train: bool = True, **kw):
    """(model, tokenizer) of a preset's full or retain model; trains the embedded ones if missing.
    which="base": the pretrained model a fine-tuning preset starts from (before any TOFU data)."""
    p = get_preset(preset)
    if which == "base":
        if not p.base_model:
            raise ValueError(f"preset {p.name!r} trains from scratch: it has no pretrained base model")
        return load_model(pretrained.base_model_folder(p.base_model), **kw)
    if p.hub_full:
        return load_model(p.hub_full if which == "full" else p.hub_retain, **kw)
    path = subject_model_path(p, which)
    if not (path / "model.safetensors").exists():
        if not train:
            raise FileNotFoundError(f"{path} does not exist; run notebooks/01_subject_models.ipynb or "
                                    f"unedit_lib.subject.models.train_subject_model({p.name!r}, {which!r})")
        path = train_subject_model(p, which, data_dir)
    check_trained_on(path, p, data_dir)
    return load_model(path, **kw)


def subject_model_path(preset="tiny", which: str = "full", artifacts: Path | None = None) -> Path:
    """artifacts/<preset>/<which>-<hash of the preset's training config>/"""
    p = get_preset(preset)
    return Path(artifacts or paths.output_dir("artifacts")) / p.name / f"{which}-{p.config_hash(which)}"


def with_overrides(preset, **kw) -> Preset:
    """A preset with some fields changed (ablations: a new hash, so a new cached model)."""
    return replace(get_preset(preset), **kw)
