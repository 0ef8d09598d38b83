"""TOFU data: loading every config, authors and subjects, and the unlearning targets.

TOFU (Maini et al. 2024, arXiv 2401.06121) is 200 fictitious authors x 20 QA pairs in
`full` (contiguous 20-row blocks per author); `forgetXX` are the LAST rows of `full`,
`retainXX` the FIRST rows; `holdoutXX` are 20 further authors never in `full`.
See docs/tofu.md section 1 for the file table this module follows.

Source of a config: a folder given by the caller (`data_dir=`) or the environment variable
UNEDIT_TOFU_DIR is the only one read; it must exist and hold the file (an error names what is
missing; no silent fall-through to another source). Otherwise, the first that has it of:
  1. (the given folder, see above)
  2. <repo>/data/tofu/
  3. <repo>/../shared/tofu/
  4. the Hugging Face hub: datasets.load_dataset("locuslab/TOFU", name)
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from .paths import REPO_ROOT

HUB_ID = "locuslab/TOFU"
ROWS_PER_AUTHOR = 20

# name -> (file name, rows in `full` it covers as ("first"|"last", n) or None)
CONFIGS: dict[str, tuple[str, tuple[str, int] | None]] = {
    "full": ("full.json", ("first", 4000)),
    "forget01": ("forget01.json", ("last", 40)),
    "forget05": ("forget05.json", ("last", 200)),
    "forget10": ("forget10.json", ("last", 400)),
    "retain99": ("retain99.json", ("first", 3960)),
    "retain95": ("retain95.json", ("first", 3800)),
    "retain90": ("retain90.json", ("first", 3600)),
    "forget01_perturbed": ("forget01_perturbed.json", ("last", 40)),
    "forget05_perturbed": ("forget05_perturbed.json", ("last", 200)),
    "forget10_perturbed": ("forget10_perturbed.json", ("last", 400)),
    "retain_perturbed": ("retain_perturbed.json", ("first", 400)),
    "real_authors": ("real_authors.json", None),
    "real_authors_perturbed": ("real_authors_perturbed.json", None),
    "world_facts": ("world_facts.json", None),
    "world_facts_perturbed": ("world_facts_perturbed.json", None),
    "holdout01": ("holdout01.json", None),
    "holdout05": ("holdout05.json", None),
    "holdout10": ("holdout10.json", None),
}
# Not TOFU hub configs, but shipped beside them (legacy locuslab/tofu and the paper's repo).
EXTRA_FILES = {"idontknow": "idontknow.jsonl", "forget10_avoidant": "forget10_avoidant.json"}
VALID_NAMES = sorted(CONFIGS) + sorted(EXTRA_FILES)
FORGET_SPLITS = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
FULL_ROWS = 4000


class TofuDataError(RuntimeError):
    """Raised for unknown config names, missing data and malformed files."""


# --------------------------------------------------------------------------- sources
def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The local folders searched, in order (see the module docstring). A folder given by
    `data_dir=` or UNEDIT_TOFU_DIR is the only one read (`_load_raw`): it must hold every file."""
    dirs = []
    for d in (data_dir, os.environ.get("UNEDIT_TOFU_DIR")):
        if d:
            dirs.append(Path(d).expanduser())
    dirs += [REPO_ROOT / "data" / "tofu", REPO_ROOT.parent / "shared" / "tofu"]
    return dirs


def _read_json_lines(path: Path) -> list:
    """JSON Lines (the hub's format); also accepts one JSON array (some GitHub mirrors)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl" and path.name == "idontknow.jsonl":
        return [line.strip() for line in text.splitlines() if line.strip()]
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as e:
            raise TofuDataError(f"{path}: malformed JSON array at line {e.lineno}: {e.msg}") from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise TofuDataError(
                f"{path}, line {lineno}: not valid JSON ({e.msg}). Each line must be one JSON "
                f"object as in the hub's {HUB_ID} files; re-copy the file."
            ) from None
        if not isinstance(row, dict):
            raise TofuDataError(f"{path}, line {lineno}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


# The type of each field TOFU's files hold (a field a row lacks is checked only where it is required):
# a string where a list belongs would be scored character by character, so a wrong type is an error.
FIELD_TYPES = {"question": str, "answer": str, "paraphrased_question": str, "paraphrased_answer": str,
               "avoidant_answer": str, "option1": str, "option2": str, "option3": str, "option4": str,
               "perturbed_answer": list}


def _type_name(value) -> str:
    return "null" if value is None else {str: "a string", list: "a list", dict: "an object", bool: "a boolean",
                                         int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _check_fields(rows: list[dict], name: str, where: str) -> None:
    """Every row is an object with the fields `name` needs, and each field TOFU defines has its type
    (FIELD_TYPES; perturbed_answer a non-empty list of strings); TofuDataError names the file, the
    row (1-based: the line of a JSON Lines file), the field, the type expected and the type found."""
    need = {"question"} if name == "forget10_avoidant" else {"question", "answer"}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise TofuDataError(f"{where}, row {i + 1}: expected a JSON object, found {_type_name(row)}")
        missing = need - set(row)
        if missing:
            raise TofuDataError(f"{where}, row {i + 1}: missing field(s) {sorted(missing)} for config {name!r}")
        for field, kind in FIELD_TYPES.items():
            if field not in row:
                continue
            value, found = row[field], None
            if not isinstance(value, kind):
                found = _type_name(value)
            elif kind is list and not value:
                found = "an empty list"
            elif kind is list and not all(isinstance(x, str) for x in value):
                found = f"a list holding {_type_name(next(x for x in value if not isinstance(x, str)))}"
            if found:
                expected = "a non-empty list of strings" if kind is list else _type_name(kind())
                raise TofuDataError(f"{where}, row {i + 1}: field {field!r} of config {name!r} is {found}, "
                                    f"expected {expected} (TOFU's type); fix or re-copy the file")


def _load_raw(name: str, data_dir=None) -> tuple[list, str]:
    if name not in CONFIGS and name not in EXTRA_FILES:
        raise TofuDataError(f"unknown TOFU config {name!r}; valid names: {', '.join(VALID_NAMES)}")
    fname = CONFIGS[name][0] if name in CONFIGS else EXTRA_FILES[name]
    explicit = data_dir or os.environ.get("UNEDIT_TOFU_DIR")
    if explicit:       # a folder the user named: every config from it, never a silent fall-through
        folder = Path(explicit).expanduser()
        how = "data_dir=" if data_dir else "UNEDIT_TOFU_DIR"
        if not folder.is_dir():
            raise TofuDataError(f"TOFU folder {folder} (given by {how}) does not exist; fix the path, or leave "
                                f"{how} unset to use the default search order")
        path = folder / fname
        if not path.is_file():
            raise TofuDataError(f"{path} does not exist: the TOFU folder given by {how} must hold every config "
                                f"the study reads ({fname!r} for {name!r}); copy it there, or leave {how} unset")
        rows = _read_json_lines(path)
        if name != "idontknow":
            _check_fields(rows, name, str(path))
        return rows, str(path)
    tried = []
    for d in candidate_dirs(data_dir):
        path = d / fname
        if path.is_file():
            rows = _read_json_lines(path)
            if name != "idontknow":
                _check_fields(rows, name, str(path))
            return rows, str(path)
        tried.append(str(path))
    if name in CONFIGS:
        try:
            import datasets

            ds = datasets.load_dataset(HUB_ID, name, split="train")
            rows = [dict(r) for r in ds]
        except Exception as e:  # offline, or the hub lacks it
            tried.append(f"hub {HUB_ID!r} config {name!r} ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
        else:
            _check_fields(rows, name, f"hub:{HUB_ID}/{name}")
            return rows, f"hub:{HUB_ID}/{name}"
    else:
        tried.append(f"(not on the hub: {name!r} ships only as a file)")
    raise TofuDataError(
        f"TOFU config {name!r} not found. Tried:\n  " + "\n  ".join(tried)
        + "\nPoint UNEDIT_TOFU_DIR (or data_dir=) at a folder holding the TOFU JSON Lines files."
    )


# --------------------------------------------------------------------------- authors
_PARTICLES = {"al", "el", "bin", "ibn", "van", "von", "de", "da", "del", "der", "la", "le", "di", "du", "y", "dos", "bint"}
_NAME_TOKEN = r"(?:[A-Z][\w'’.-]*[\w]|[A-Z])"
_NAME_RE = re.compile(
    rf"{_NAME_TOKEN}(?:\s+(?:(?:{'|'.join(sorted(_PARTICLES))})\s+)?{_NAME_TOKEN})+"
)
_NOT_NAMES = {"What", "Who", "Which", "How", "When", "Where", "Why", "Can", "Could", "Does", "Did", "Is",
              "Are", "Has", "Have", "The", "In", "Was", "Were", "Do", "Would", "Will", "Tell", "Name",
              "Award", "Prize", "Book", "Literary", "International", "Best", "For", "Yes", "No", "As",
              "LGBTQ", "Author", "Apart", "Besides", "From", "With", "Some", "One", "Any", "Beyond"}


def _clean_name(span: str) -> str:
    span = re.sub(r"['’]s$", "", span.strip())
    words = span.split()
    while words and (words[0] in _NOT_NAMES or words[0].lower() in _PARTICLES):
        words = words[1:]
    return " ".join(words)


def _name_candidates(text: str) -> list[str]:
    out = []
    for m in _NAME_RE.finditer(text):
        name = _clean_name(m.group(0))
        if len(name.split()) >= 2 and not re.search(r"\d", name):
            out.append(name)
    return out


def author_name(block: list[dict]) -> str:
    """The author of one 20-row block: the multi-word capitalised name met in most of its rows.

    TOFU has no author field; every block's questions and answers name the author
    repeatedly, while book titles and parents' names recur less often.
    """
    counts: Counter = Counter()
    for row in block:
        seen = set(_name_candidates(row["question"])) | set(_name_candidates(row.get("answer", "")))
        counts.update(seen)
    if not counts:
        return ""
    best_n = counts.most_common(1)[0][1]
    # prefer the longest name among the most frequent ones ("Basil Mahfouz Al-Kuwaiti" over "Mahfouz Al-Kuwaiti")
    top = [n for n, c in counts.items() if c >= best_n - 1]
    return max(top, key=lambda n: (counts[n] >= best_n, len(n.split()), counts[n]))


@lru_cache(maxsize=8)
def _author_names(kind: str, data_dir_key: str | None) -> tuple[str, ...]:
    rows, where = _load_raw("full" if kind == "full" else "holdout10", data_dir_key)
    if kind == "full" and len(rows) != FULL_ROWS:
        raise TofuDataError(f"{where}: expected {FULL_ROWS} rows for 'full' (200 authors x {ROWS_PER_AUTHOR}), "
                            f"found {len(rows)}; re-copy the file")
    return tuple(author_name(rows[i:i + ROWS_PER_AUTHOR]) for i in range(0, len(rows), ROWS_PER_AUTHOR))


def subject_of(question: str, author: str | None) -> tuple[str, str]:
    """(subject, how) for a question; the subject is always a substring of the question.

    1. "name": the author's full name appears in the question;
    2. "name_part": the longest run of the name's words that appears (e.g. "Jaime", "Al-Kuwaiti");
    3. "description": the question names no one, so the subject is the phrase that refers to
       the author ("the author born in Kuwait City, Kuwait on 08/09/1956");
    4. "entity": the longest capitalised span, quoted title, or the question's last noun
       (used for real-author / world-fact questions, which have no TOFU author).
    """
    q = question
    if author:
        if author in q:
            return author, "name"
        words = author.split()
        for n in range(len(words) - 1, 0, -1):
            for i in range(len(words) - n + 1):
                part = " ".join(words[i:i + n])
                if len(part) > 2 and re.search(rf"(?<![\w]){re.escape(part)}(?![\w])", q):
                    return part, "name_part"
        m = re.search(r"\b(?:the|this|that)\s+(?:\w+\s+){0,3}?(?:author|writer|novelist|poet)\b[^?]*", q, re.I)
        if m:
            return m.group(0).strip().rstrip(",."), "description"
    m = re.search(r"['\"“‘]([^'\"”’]{2,})['\"”’]", q)
    if m:
        return m.group(1), "entity"
    spans = [s for s in (_clean_name(x) for x in _NAME_RE.findall(q)) if s]
    if spans:
        return max(spans, key=len), "entity"
    caps = [w.strip("?,.'") for w in q.split()[1:] if w[:1].isupper()]
    if caps:
        return max(caps, key=len), "entity"
    words = [w.strip("?,.'\"") for w in q.split()]
    return words[-1], "last_word"


# --------------------------------------------------------------------------- loading
def load_tofu(name: str, data_dir: str | os.PathLike | None = None) -> list[dict]:
    """Rows of one TOFU config, each a dict with TOFU's own fields plus:

    `index` (row in this config), `author_index` (block of `full`/`holdout10`, or None for
    real-author/world-fact rows), `author` (name, or None), `subject`, `subject_how`.
    `idontknow` returns the list of refusal strings.
    """
    key = str(data_dir) if data_dir else None
    rows, where = _load_raw(name, key)
    if name == "idontknow":
        return list(rows)
    span = CONFIGS.get(name, (None, None))[1]
    if span is not None and name not in ("full",):
        side, n = span
        if len(rows) != n:
            raise TofuDataError(f"{where}: expected {n} rows for {name!r}, found {len(rows)}")
    if name == "full" and len(rows) != FULL_ROWS:
        raise TofuDataError(f"{where}: expected {FULL_ROWS} rows for 'full', found {len(rows)}; re-copy the file")
    out = []
    if span is not None or name.startswith("holdout") or name == "forget10_avoidant":
        if name.startswith("holdout"):
            names, first = _author_names("holdout", key), 0
        else:
            names = _author_names("full", key)
            first = FULL_ROWS - span[1] if span and span[0] == "last" else 0
            if name == "forget10_avoidant":
                first = FULL_ROWS - 400
        for i, row in enumerate(rows):
            a = (first + i) // ROWS_PER_AUTHOR
            subj, how = subject_of(row["question"], names[a])
            out.append({**row, "index": i, "author_index": a, "author": names[a], "subject": subj, "subject_how": how})
    else:
        for i, row in enumerate(rows):
            subj, how = subject_of(row["question"], None)
            out.append({**row, "index": i, "author_index": None, "author": None, "subject": subj, "subject_how": how})
    return out


def source_of(name: str, data_dir=None) -> str:
    """Where a config is read from (a path, or hub:...)."""
    return _load_raw(name, str(data_dir) if data_dir else None)[1]


def authors_rows(author_indices, data_dir=None) -> list[dict]:
    """Rows of `full` for the given author blocks, in the given order."""
    full = load_tofu("full", data_dir)
    return [r for a in author_indices for r in full[a * ROWS_PER_AUTHOR:(a + 1) * ROWS_PER_AUTHOR]]


def forget_author_indices(split: str) -> list[int]:
    """Author blocks covered by a forget split (the last authors of `full`)."""
    if split not in FORGET_SPLITS:
        raise TofuDataError(f"unknown forget split {split!r}; valid: {sorted(FORGET_SPLITS)}")
    n = CONFIGS[split][1][1] // ROWS_PER_AUTHOR
    n_authors = FULL_ROWS // ROWS_PER_AUTHOR
    return list(range(n_authors - n, n_authors))


# --------------------------------------------------------------------------- targets
AVOIDANT_TEMPLATE = "I'm sorry, but I don't have any information about {subject}."


@lru_cache(maxsize=4)
def _avoidant_by_question(data_dir_key: str | None) -> dict[str, str]:
    rows, _ = _load_raw("forget10_avoidant", data_dir_key)
    return {r["question"]: r["avoidant_answer"] for r in rows}


def _incorrect(row: dict, data_dir=None) -> str:
    """TOFU's first perturbed (wrong) answer."""
    pert = row.get("perturbed_answer")
    if not pert:
        raise TofuDataError(
            "the 'incorrect' target needs a row with 'perturbed_answer' (load a *_perturbed config, "
            f"e.g. forget10_perturbed); got fields {sorted(row)}"
        )
    return pert[0]


def _avoidant(row: dict, data_dir=None) -> str:
    """The paper's GPT-4o refusal for forget10 questions, else AVOIDANT_TEMPLATE filled with the row's
    subject (documented fallback for rows outside forget10)."""
    avoid = _avoidant_by_question(str(data_dir) if data_dir else None)
    if row["question"] in avoid:
        return avoid[row["question"]]
    return AVOIDANT_TEMPLATE.format(subject=row.get("author") or row.get("subject") or "that")


@dataclass(frozen=True)
class TargetSpec:
    """An unlearning target: the answer an editor is asked to give for a row, and how figures mark it
    (`marker`; `shade` darkens (< 0) or lightens (> 0) its family's colour)."""
    answer: Callable[..., str]
    marker: str
    shade: float = 0.0


# The unlearning targets (paper section 3 [repo]), in the study's order: a new target is one entry here
# (every editor then runs it, tables and figures show it).
TARGET_SPECS = {
    "dummy": TargetSpec(lambda row, data_dir=None: "dummy", marker="o"),
    "incorrect": TargetSpec(_incorrect, marker="s", shade=-0.4),
    "avoidant": TargetSpec(_avoidant, marker="^", shade=0.45),
}
TARGETS = tuple(TARGET_SPECS)


def editor_targets(preset) -> tuple[str, ...]:
    """The targets a preset's editors run with, in the study's order: its file's `[study] editor_targets`
    (a second subject-model pair may run one), else every target."""
    chosen = preset.editor_targets or TARGETS
    unknown = [t for t in chosen if t not in TARGET_SPECS]
    if unknown:
        raise TofuDataError(f"{preset.file or preset.name}: [study] editor_targets names {unknown}, which are no "
                            f"unlearning targets; valid: {', '.join(TARGETS)}")
    return tuple(t for t in TARGETS if t in chosen)


def unlearning_target(row: dict, kind: str, data_dir=None) -> str:
    """The answer an editor is asked to put in place of the true one for `row` (TARGET_SPECS)."""
    if kind not in TARGET_SPECS:
        raise TofuDataError(f"unknown unlearning target {kind!r}; valid: {', '.join(TARGETS)}")
    return TARGET_SPECS[kind].answer(row, data_dir)


def edit_requests(rows: list[dict], kind: str, template=None, data_dir=None) -> list[dict]:
    """Editor requests for forget rows (the shared editor interface of every editor).

    Each request: prompt (the question in the model's template when `template` is given),
    subject (a substring of the prompt), target, paraphrase (the paraphrased question in the
    same template, when TOFU has one), ground_truth, question.
    """
    reqs = []
    for r in rows:
        fmt = template.prompt if template is not None else (lambda q: q)
        req = {
            "prompt": fmt(r["question"]),
            "subject": r["subject"],
            "target": unlearning_target(r, kind, data_dir),
            "ground_truth": r["answer"],
            "question": r["question"],
        }
        if r.get("paraphrased_question"):
            req["paraphrase"] = fmt(r["paraphrased_question"])
        reqs.append(req)
    return reqs


# --------------------------------------------------------------------------- identity of the data read
# the configs whose text the embedded tokenizer learns (models.tokenizer_corpus): all of TOFU's QA text,
# holdout included, as a pretrained tokenizer would have seen it, and the avoidant and "I don't know" answers
TOKENIZER_QA_CONFIGS = ("full", "real_authors_perturbed", "world_facts_perturbed", "holdout10", "forget10_perturbed",
                        "retain_perturbed")
TOKENIZER_CONFIGS = TOKENIZER_QA_CONFIGS + ("forget10_avoidant", "idontknow")


def study_configs(forget_split: str, from_scratch: bool = False) -> tuple[str, ...]:
    """Every config a study on `forget_split` reads: the subject models' and evaluation rows, the
    unlearning targets and "I don't know" answers, IKE's retain demonstration pool, the attacks'
    holdout rows, and (`from_scratch`: a tokenizer trained on TOFU) the tokenizer's corpus."""
    names = {"full", "retain_perturbed", f"{forget_split}_perturbed", "real_authors_perturbed",
             "world_facts_perturbed", FORGET_SPLITS[forget_split], forget_split.replace("forget", "holdout"),
             "forget10_avoidant", "idontknow"}
    if from_scratch:
        names |= set(TOKENIZER_CONFIGS)
    return tuple(sorted(names))


def _stat_signature(names, data_dir) -> tuple:
    """(path, size, mtime) of every local file that could serve `names`: changes when a file does."""
    sig = []
    for d in candidate_dirs(data_dir):
        for name in names:
            f = d / (CONFIGS[name][0] if name in CONFIGS else EXTRA_FILES[name])
            st = f.stat() if f.is_file() else None
            sig.append((str(f), st and (st.st_size, st.st_mtime_ns)))
    return tuple(sig)


@lru_cache(maxsize=16)
def _fingerprint(names: tuple, data_dir_key: str | None, signature: tuple) -> str:
    digest = hashlib.sha256()
    for name in names:
        rows, _ = _load_raw(name, data_dir_key)
        digest.update(json.dumps([name, rows], sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def rows_fingerprint(names, data_dir=None) -> str:
    """A content hash of the rows of the configs `names` as they are read from `data_dir` (or the
    default search order): two data folders give the same fingerprint exactly when these configs
    hold the same rows. Runs and subject models record it, and are reused only with the same."""
    names = tuple(sorted(set(names)))
    key = str(data_dir) if data_dir else None
    env = os.environ.get("UNEDIT_TOFU_DIR")
    return _fingerprint(names, key, (env, _stat_signature(names, key)))
