"""The paper's findings as data, and the one function that tests them on our runs.

Each `Finding` states a claim, where it comes from (`ABSTRACT`: the paper's abstract, or
`AUTHORS`: a reading of the authors' released results, docs/paper.md 7.2: their repositories,
Llama-2-7b, forget10), the runs it is about, a rule on their numbers (the same function reads
our runs, a bootstrap resample of them, or the paper's own rows in reference.py), how the rule
combines over runs (`EACH` run, or one that `EXISTS`), and the premise each run must meet for
the finding to rest on it (`PREMISES`, read by gates.py from the run's record).

`evaluate(records, boot)` decides every finding the same way:
* the runs it rests on are the *valid* ones: their premises hold (an editor whose edits did not
  take says nothing about what a taken edit does); a run whose premise fails is named, never
  counted for or against;
* the probability that the rule holds is the share of joint paired bootstrap resamples
  (joint_bootstrap.py: the same resampled rows for every run, seed and set) in which it holds on
  the valid runs (all of them for EACH, one for EXISTS);
* "reproduced" when that probability is at least LEVEL (0.95) and the valid runs cover every
  target the paper tested; "not reproduced" when it is at most 1 - LEVEL (one valid
  counterexample refutes an EACH claim; an EXISTS claim is refuted when no run of any status
  meets it and its runs reach every editor and target the paper tested); "inconclusive" in between,
  or when the valid runs do not cover the paper's targets (EACH) or its runs not (EXISTS);
  "not testable here" when no valid run can decide (the failed premises named); "not comparable"
  when a run it needs is missing or has no such number.
Without per-item logs (a preset whose logs are not committed) the rule is read at the point and
the verdict says so. `test_findings.py` applies every rule and premise to the paper's own numbers
and gets the paper's verdict for each finding.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..core import presets, reference, registry, run_names, store
from ..eval.joint_bootstrap import LEVEL, JointBootstrap, describe_fq
from . import gates
from .tables import (INCONCLUSIVE, NOT_COMPARABLE, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED, SUBJECT_MODEL_RUNS,
                     base_records)

ABSTRACT = "abstract"
AUTHORS = "authors' results"
SOURCES = {ABSTRACT: "the paper's abstract (arXiv 2512.20794)",
           AUTHORS: "a reading of the authors' released results (docs/paper.md 7.2: their repositories, "
                    "Llama-2-7b, forget10, 300 rows), not a sentence of the paper"}
EACH, EXISTS = "each", "exists"
TARGETS = ("dummy", "incorrect", "avoidant")     # the paper's targets (a finding covers all it tested)
PAPER_BASELINES = ("ga", "gd", "kl", "idk")

# What a finding may rest on, per method: the gates (gates.py, by their short names) of a run
# that must hold. "edit acts": the edit did what the method does (ROME's edits take, IKE's context
# makes the model give the target, WISE routes the forget prompts to its side memory); "others
# not routed": WISE leaves the other sets to the main memory (what "keeps utility" relies on). An
# editor not named here (registered later) rests "edit acts" on every gate it has (premise_gates).
PREMISES = {
    "edit acts": {"ROME": ("edits take",), "R-ROME": ("edits take",), "IKE": ("edit takes", "context lifts"),
                  "WISE": ("forget prompts routed",)},
    "others not routed": {"WISE": ("retain prompts routed", "real-author prompts routed", "world-fact prompts routed")},
}


@dataclass(frozen=True)
class Finding:
    claim: str
    source: str                          # ABSTRACT or AUTHORS
    runs: Callable[[list], list]         # the runs it is about, from the runs present
    rule: Callable                       # rule(view, run) -> bool, or None (no such number)
    rule_text: str
    paper: Callable[[Callable], str]     # the paper's numbers, from a reader of reference.paper_row
    show: tuple = ()                     # the numbers shown per run ("forget_quality", "mu/full", a metric)
    quantifier: str = EACH
    premise: str | None = None           # a key of PREMISES
    cover: tuple = ()                    # run groups the valid runs must each reach (the paper's targets)
    needs: tuple = ()                    # runs that must exist for the rule to be read (e.g. "full")
    given: Callable | None = None        # given(view) -> bool: what must hold for the claim to apply
    given_text: str = ""
    controls: tuple = field(default=())  # paper runs on which the rule must NOT hold (test_findings)


def _family(prefix: str):
    return lambda runs: [r for r in runs if run_names.prefix(r) == prefix and not run_names.is_variant(r)]


def _only(run: str):
    return lambda runs: [run] if run in runs else []


def _editors(runs):
    """The runs of the editors a study runs (registry.py; not R-ROME), study settings only."""
    study_editors = registry.names(registry.EDITOR, in_study=True)
    return [r for r in runs if run_names.prefix(r) in study_editors and not run_names.is_variant(r)]


def _unlearning_runs(runs):
    return [r for r in runs if r not in ("full", "retain", "base") and "+" not in r]


def _best_baseline_fq(m):
    vals = [m(b, "forget_quality") for b in PAPER_BASELINES]
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else None


def _exceeds_baselines(m, r):
    fq, best = m(r, "forget_quality"), _best_baseline_fq(m)
    return None if fq is None or best is None else fq > best


def _best_of_all(m, r):
    fq = m(r, "forget_quality")
    others = [m(o, "forget_quality") for o in m.runs if o != r and o not in ("full", "retain", "base")]
    others = [v for v in others if v is not None]
    return None if fq is None or not others else fq > max(others)


def _broken(m, r):
    """Collapsed, or ROUGE below 0.1 on all four sets (the paper's ROME-incorrect / -avoidant; its
    ROME-dummy, which did not break down, keeps world-fact ROUGE 0.63)."""
    if m.collapsed(r):
        return True
    rouge = [m(r, f"{s}/rouge") for s in ("forget", "retain", "real_authors", "world_facts")]
    return None if any(v is None for v in rouge) else all(v < 0.1 for v in rouge)


def _ratio(m, r):
    return m(r, "mu/full")


def _below(key, bar):
    return lambda m, r: None if m(r, key) is None else m(r, key) < bar


def _at_least(key, bar):
    return lambda m, r: None if m(r, key) is None else m(r, key) >= bar


def _fmt(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.3g}" if abs(v) < 1e-3 or abs(v) >= 1e3 else f"{v:.3f}"


def _p(get, run, key):
    v = get(run, key)
    return _fmt(v)


FINDINGS = (
    Finding("Editing can exceed the unlearning baselines in forget quality", ABSTRACT, _editors,
            _exceeds_baselines, "an editor run's FQ above the best of GA, GD, KL and IdK",
            lambda g: f"IKE-incorrect FQ {_p(g, 'ike-incorrect', 'forget_quality')} > best baseline (IdK) "
                      f"{_p(g, 'idk', 'forget_quality')}",
            show=("forget_quality",), quantifier=EXISTS, premise="edit acts", needs=PAPER_BASELINES,
            cover=("rome", "ike", "wise") + TARGETS),
    Finding("ROME-dummy raises forget quality above 0.05 (the full model's is below)", AUTHORS, _only("rome-dummy"),
            lambda m, r: None if m(r, "forget_quality") is None else m(r, "forget_quality") > 0.05,
            "FQ > 0.05 (not told apart from the retain model at 5%) where the full model's FQ < 0.05",
            lambda g: f"FQ {_p(g, 'rome-dummy', 'forget_quality')} vs full {_p(g, 'full', 'forget_quality')}",
            show=("forget_quality",), premise="edit acts", needs=("full",),
            given=lambda m: m("full", "forget_quality") is not None and m("full", "forget_quality") < 0.05,
            given_text="the full model's FQ is not below 0.05: nothing to raise"),
    Finding("ROME-dummy pays with utility (MU well below the full model's)", AUTHORS, _only("rome-dummy"),
            _below("mu/full", 0.8), "MU / MU(full) < 0.8",
            lambda g: f"MU {_p(g, 'rome-dummy', 'model_utility')} = {_p(g, 'rome-dummy', 'mu/full')} x full",
            show=("mu/full",), premise="edit acts", needs=("full",)),
    Finding("ROME-incorrect (a whole-sentence target) breaks down", AUTHORS, _only("rome-incorrect"), _broken,
            "collapsed, or ROUGE < 0.1 on all four sets",
            lambda g: "NaN probabilities; ROUGE " + ", ".join(_p(g, 'rome-incorrect', f"{s}/rouge")
                                                             for s in ("forget", "retain", "real_authors", "world_facts")),
            show=("forget/rouge", "world_facts/rouge"), controls=("rome-dummy",)),
    Finding("ROME-avoidant (a whole-sentence target) breaks down", AUTHORS, _only("rome-avoidant"), _broken,
            "collapsed, or ROUGE < 0.1 on all four sets",
            lambda g: "NaN probabilities; ROUGE " + ", ".join(_p(g, 'rome-avoidant', f"{s}/rouge")
                                                             for s in ("forget", "retain", "real_authors", "world_facts")),
            show=("forget/rouge", "world_facts/rouge"), controls=("rome-dummy",)),
    Finding("IKE-incorrect gives the best forget quality of all methods", AUTHORS, _only("ike-incorrect"), _best_of_all,
            "its FQ above every other unlearning run's",
            lambda g: f"FQ {_p(g, 'ike-incorrect', 'forget_quality')} (next: ROME-dummy {_p(g, 'rome-dummy', 'forget_quality')})",
            show=("forget_quality",), premise="edit acts"),
    Finding("IKE lowers ROUGE on the retain set too (its context is on every question)", AUTHORS, _family("ike"),
            lambda m, r: None if m(r, "retain/rouge") is None or m("full", "retain/rouge") is None
            else m("full", "retain/rouge") - m(r, "retain/rouge") > 0.1,
            "each IKE run's retain ROUGE more than 0.1 below the full model's",
            lambda g: "retain ROUGE " + " / ".join(_p(g, f"ike-{t}", "retain/rouge") for t in TARGETS)
                      + f" vs full {_p(g, 'full', 'retain/rouge')}",
            show=("retain/rouge",), cover=TARGETS, needs=("full",)),
    Finding("IKE costs utility", AUTHORS, _family("ike"), _below("mu/full", 0.9), "each IKE run's MU / MU(full) < 0.9",
            lambda g: "MU / MU(full) " + " / ".join(_p(g, f"ike-{t}", "mu/full") for t in TARGETS),
            show=("mu/full",), cover=TARGETS, needs=("full",)),
    Finding("WISE keeps model utility", AUTHORS, _family("wise"), _at_least("mu/full", 0.9),
            "each WISE run's MU / MU(full) >= 0.9",
            lambda g: "MU / MU(full) " + " / ".join(_p(g, f"wise-{t}", "mu/full") for t in TARGETS),
            show=("mu/full",), premise="others not routed", cover=TARGETS, needs=("full",)),
    Finding("WISE barely forgets in generation (forget ROUGE stays near the full model's)", AUTHORS, _family("wise"),
            lambda m, r: None if m(r, "forget/rouge") is None or m("full", "forget/rouge") is None
            else m(r, "forget/rouge") > m("full", "forget/rouge") - 0.1,
            "each WISE run's forget ROUGE within 0.1 of the full model's (its routing of the forget prompts "
            "explains it; not a premise)",
            lambda g: "forget ROUGE " + " / ".join(_p(g, f"wise-{t}", "forget/rouge") for t in TARGETS)
                      + f" vs full {_p(g, 'full', 'forget/rouge')}",
            show=("forget/rouge",), cover=TARGETS, needs=("full",)),
    Finding("GA destroys utility (MU -> 0)", AUTHORS, _only("ga"), lambda m, r: None if _ratio(m, r) is None
            else _ratio(m, r) <= 0.2, "MU / MU(full) <= 0.2",
            lambda g: f"MU {_p(g, 'ga', 'model_utility')}", show=("mu/full",), needs=("full",)),
    Finding("KL destroys utility (MU -> 0)", AUTHORS, _only("kl"), lambda m, r: None if _ratio(m, r) is None
            else _ratio(m, r) <= 0.2, "MU / MU(full) <= 0.2",
            lambda g: f"MU {_p(g, 'kl', 'model_utility')}", show=("mu/full",), needs=("full",)),
    Finding("GD keeps most utility", AUTHORS, _only("gd"), _at_least("mu/full", 0.8), "MU / MU(full) >= 0.8",
            lambda g: f"MU {_p(g, 'gd', 'model_utility')} = {_p(g, 'gd', 'mu/full')} x full",
            show=("mu/full",), needs=("full",)),
    Finding("IdK keeps most utility and stops reciting the forget answers", AUTHORS, _only("idk"),
            lambda m, r: None if _ratio(m, r) is None or m(r, "forget/rouge") is None
            else _ratio(m, r) >= 0.7 and m(r, "forget/rouge") < 0.2,
            "MU / MU(full) >= 0.7 and forget ROUGE < 0.2",
            lambda g: f"MU {_p(g, 'idk', 'mu/full')} x full, forget ROUGE {_p(g, 'idk', 'forget/rouge')}",
            show=("mu/full", "forget/rouge"), needs=("full",)),
    Finding("No method forgets (FQ >= 0.05) while keeping utility (MU >= 0.9 x full): they struggle to encapsulate "
            "the scope of what is to be unlearned without damage", ABSTRACT, _unlearning_runs,
            lambda m, r: None if m(r, "forget_quality") is None or _ratio(m, r) is None
            else not (m(r, "forget_quality") >= 0.05 and _ratio(m, r) >= 0.9),
            "no run reaches both FQ >= 0.05 and MU / MU(full) >= 0.9",
            lambda g: f"none does (IKE-incorrect FQ {_p(g, 'ike-incorrect', 'forget_quality')} at "
                      f"{_p(g, 'ike-incorrect', 'mu/full')} x full MU)",
            show=("forget_quality", "mu/full"), premise="edit acts", cover=("rome", "ike", "wise"), needs=("full",)),
)


# --------------------------------------------------------------------------- the numbers a rule reads
class View:
    """m(run, key) for a rule: one resample `b` of a joint bootstrap, its point (b None), or the
    record's numbers for runs the bootstrap has no logs of; "mu/full" is MU / MU(full) on the
    same rows; `collapsed(run)`."""

    def __init__(self, records: dict, boot: JointBootstrap | None, b: int | None = None):
        self.records, self.boot, self.b = records, boot, b
        self.runs = list(records)

    def __call__(self, run: str, key: str):
        if key == "mu/full":
            mu, full = self(run, "model_utility"), self("full", "model_utility")
            return None if mu is None or not full else mu / full
        if self.boot is not None and run in self.boot.point:
            return self.boot.value(run, key, self.b)
        rec = self.records.get(run)
        if rec is None or rec.get("collapsed"):
            return None
        if key in ("model_utility", "forget_quality", "ks_statistic"):
            v = rec.get(key)
        else:
            s, m = key.split("/")
            v = ((rec.get("metrics") or {}).get(s) or {}).get(m)
        return None if v is None or not math.isfinite(v) else float(v)

    def collapsed(self, run: str) -> bool:
        return bool((self.records.get(run) or {}).get("collapsed"))


class PaperView(View):
    """The same reader over the paper's rows (reference.paper_row: NaN is no number; the paper's
    ROME-incorrect / -avoidant count as collapsed, their probabilities being NaN)."""

    def __init__(self):
        self.records = {run: reference.paper_row(run) for run in reference.paper_runs()}
        self.runs = list(self.records)

    def __call__(self, run: str, key: str):
        if key == "mu/full":
            mu, full = self(run, "model_utility"), self("full", "model_utility")
            return None if mu is None or not full else mu / full
        v = (self.records.get(run) or {}).get(key)
        return None if v is None or not math.isfinite(v) else float(v)

    def collapsed(self, run: str) -> bool:
        row = self.records.get(run) or {}
        return any(isinstance(v, float) and math.isnan(v) for k, v in row.items() if k != "paper_run")


# --------------------------------------------------------------------------- premises
def premise_gates(finding: Finding, run: str, records: dict) -> list[dict]:
    """The gate rows (gates.py) of `run` that `finding` rests on (none without a premise)."""
    rec = records.get(run) or {}
    label, rows = str(rec.get("method") or ""), gates.run_gates(run, rec, records)
    wanted = PREMISES.get(finding.premise or "", {}).get(label)
    if wanted is None:
        spec = registry.of_label(label)
        editor = spec is not None and spec.kind == registry.EDITOR
        wanted = tuple(g["short"] for g in rows) if editor and finding.premise == "edit acts" else ()
    return [g for g in rows if g["short"] in wanted]


# the paper's reading of each gate: docs/paper.md 7.3's edit-level numbers (EasyEdit), since the
# paper records no routing: an edit shows only where WISE routes to its side memory (rewrite acc.),
# and unrelated prompts keep their answers where it does not (locality)
PAPER_GATES = {"edits take": ("rewrite_acc", ">=", gates.EDITS_TAKE_MIN),
               "edit takes": ("rewrite_acc", ">=", gates.EDITS_TAKE_MIN),
               "context lifts": ("rewrite_acc - pre_rewrite_acc", ">", 0.0),
               "forget prompts routed": ("rewrite_acc", ">=", gates.ROUTE_FORGET_MIN),
               "retain prompts routed": ("1 - locality", "<=", gates.ROUTE_OTHER_MAX),
               "real-author prompts routed": ("1 - locality", "<=", gates.ROUTE_OTHER_MAX),
               "world-fact prompts routed": ("1 - locality", "<=", gates.ROUTE_OTHER_MAX)}

def paper_premise_gates(finding: Finding, run: str) -> list[dict]:
    """The same premise read on the paper's run (PAPER_GATES over reference.paper_edit_metrics)."""
    em = reference.paper_edit_metrics(run) or {}
    spec = registry.of_prefix(run_names.prefix(run))
    wanted = PREMISES.get(finding.premise or "", {}).get(spec.label if spec else "", ())
    out = []
    for short in wanted:
        name, op, bar = PAPER_GATES[short]
        v = {"1 - locality": lambda: None if em.get("locality") is None else 1 - em["locality"],
             "rewrite_acc - pre_rewrite_acc": lambda: None if em.get("rewrite_acc") is None or em.get("pre_rewrite_acc")
             is None else em["rewrite_acc"] - em["pre_rewrite_acc"]}.get(name, lambda: em.get(name))()
        status = gates.UNKNOWN if v is None else gates.HOLDS if gates.OPS[op](v, bar) else gates.FAILS
        out.append({"run": run, "gate": f"{short} (paper.md 7.3 {name})", "value": v, "threshold": f"{op} {bar:g}",
                    "status": status, "short": short, "context": ""})
    return out


# --------------------------------------------------------------------------- deciding
def _holds_all(finding, view, runs):
    vals = [finding.rule(view, r) for r in runs]
    if any(v is None for v in vals):
        return None
    return all(vals) if finding.quantifier == EACH else any(vals)


def _probability(finding, view, boot, runs) -> float | None:
    """Share of resamples in which the rule holds on `runs` (None without a bootstrap of them)."""
    if boot is None or not all(r in boot.point or view.collapsed(r) for r in runs):
        return None
    hits = [_holds_all(finding, View(view.records, boot, b), runs) for b in range(boot.n_resamples)]
    return None if any(h is None for h in hits) else float(np.mean(hits))


def _ours(finding, view, runs, boot, invalid=()) -> str:
    """Each run's numbers the finding reads, with their joint-bootstrap intervals; over more than three
    runs, only those that break an EACH claim or meet an EXISTS one (at the point)."""
    prefix = ""
    if len(runs) > 3:
        telling = [r for r in runs if finding.rule(view, r) is (finding.quantifier == EXISTS)]
        prefix = (f"{len(telling)} of {len(runs)} runs {'meet' if finding.quantifier == EXISTS else 'break'} the rule"
                  + (": " if telling else ""))
        runs = telling
    parts = []
    for r in runs:
        shown = []
        for key in finding.show:
            if key == "forget_quality":
                d = view(r, "ks_statistic")
                text = describe_fq(view(r, "forget_quality"), d, boot.n.get("forget") if boot else "?")
                iv = boot.interval(r, "ks_statistic") if boot else None
                shown.append(f"FQ {text}" + (f", D in [{iv[0]:.3f}, {iv[1]:.3f}]" if iv else ""))
            elif key == "mu/full":
                iv = boot.ratio_interval(r, "full") if boot else None
                shown.append(f"MU / MU(full) {_fmt(view(r, 'mu/full'))}" + (f" [{iv[0]:.2f}, {iv[1]:.2f}]" if iv else ""))
            else:
                iv = boot.interval(r, key) if boot else None
                shown.append(f"{key} {_fmt(view(r, key))}" + (f" [{iv[0]:.3f}, {iv[1]:.3f}]" if iv else ""))
        parts.append(f"{r}{' (premise failed: not counted)' if r in invalid else ''}: "
                     + ("collapsed" if view.collapsed(r) else ", ".join(shown)))
    return prefix + "; ".join(parts)


def _premise_text(bad: list[dict]) -> str:
    return "; ".join(("premise unknown: " if g["status"] == gates.UNKNOWN else "premise failed: ") + gates.describe(g)
                     for g in bad)


def _not_reached(finding: Finding, runs) -> list[str]:
    """The finding's `cover` groups (methods, targets) that none of `runs` belongs to."""
    return [g for g in finding.cover if not any(g in (run_names.prefix(r), run_names.target(r)) for r in runs)]


def decide(finding: Finding, view: View, boot: JointBootstrap | None, gate_of) -> dict:
    """One finding on the runs `view` reads (a study's, or the paper's); `gate_of(finding, run)`
    gives a run's premise gates."""
    runs = finding.runs(list(view.runs))
    row = {"finding": finding.claim, "source": finding.source, "paper": finding.paper(PaperView()), "why": finding.rule_text,
           "runs": ", ".join(runs), "probability": None, "premises": "", "ours": ""}
    missing = [r for r in finding.needs if r not in view.runs or view.collapsed(r)]
    if not runs or missing:
        return {**row, "verdict": NOT_COMPARABLE, "ours": "runs missing or collapsed: " + ", ".join(missing or ["all"])}
    if finding.given is not None and not finding.given(view):
        return {**row, "verdict": NOT_COMPARABLE, "ours": finding.given_text}
    bad = {r: [g for g in gate_of(finding, r) if g["status"] != gates.HOLDS] for r in runs}
    valid = [r for r in runs if not bad[r]]
    row["premises"] = _premise_text([g for r in runs for g in bad[r]])
    row["ours"] = _ours(finding, view, runs, boot, invalid=[r for r in runs if bad[r]])
    if not valid:
        return {**row, "verdict": NOT_TESTABLE}
    point = _holds_all(finding, view, valid)
    if point is None:
        return {**row, "verdict": NOT_COMPARABLE}
    p = row["probability"] = _probability(finding, view, boot, valid)
    decided = p if p is not None else float(point)
    if p is None:
        row["why"] += " (no per-item logs: read at the point, no probability)"
    if decided >= LEVEL:
        uncovered = [] if finding.quantifier == EXISTS else _not_reached(finding, valid)
        if uncovered:
            row["uncovered"] = uncovered
            row["premises"] += ("; " if row["premises"] else "") + \
                f"the valid runs do not cover {', '.join(uncovered)}, which the paper tested"
        return {**row, "verdict": INCONCLUSIVE if uncovered else REPRODUCED}
    if decided > 1 - LEVEL:
        return {**row, "verdict": INCONCLUSIVE}
    if finding.quantifier == EXISTS:
        # an untested setting might show it: refuted only when no run of any status does, and the runs
        # reach every editor and target the paper tested (one not made yet might show it)
        unmade = _not_reached(finding, runs)
        if unmade:
            row["unmade"] = unmade
            row["premises"] += ("; " if row["premises"] else "") + \
                f"no run of {', '.join(unmade)}, which the paper tested, is made"
            return {**row, "verdict": INCONCLUSIVE}
        if len(valid) < len(runs):
            p_any = _probability(finding, view, boot, runs)
            any_run = p_any if p_any is not None else float(bool(_holds_all(finding, view, runs)))
            return {**row, "verdict": NOT_REPRODUCED if any_run <= 1 - LEVEL else INCONCLUSIVE}
    return {**row, "verdict": NOT_REPRODUCED}


def evaluate(records: dict, boot: JointBootstrap | None) -> list[dict]:
    """Every finding (FINDINGS) decided on a study's runs ({base run: record}; seeds enter through
    `boot`): one dict per finding with finding, source, paper, ours, probability, verdict, why, runs,
    premises, and seeds: how many seeds the runs it reads rest on in `boot` ("1", "3", "1-3"; one seed
    where a run has no per-item logs: its record's numbers)."""
    view = View(records, boot)
    rows = [decide(f, view, boot, lambda f, r: premise_gates(f, r, records)) for f in FINDINGS]
    n_seeds = {} if boot is None else {run: draws.shape[1] for run, draws in boot.seed_draws.items()}
    for row in rows:
        counts = sorted({n_seeds.get(r, 1) for r in row["runs"].split(", ") if r}) or [0]
        row["seeds"] = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return rows


def on_paper() -> list[dict]:
    """Every finding decided on the paper's own rows (reference.py) and its runs' premises read from
    paper.md 7.3: each must come out "reproduced" (test_findings.py)."""
    return [decide(f, PaperView(), None, paper_premise_gates) for f in FINDINGS]


# --------------------------------------------------------------------------- a study's records
def study_bootstrap(preset: str, records: dict, retain_run: str = "retain", **kw) -> JointBootstrap | None:
    """The joint bootstrap of a preset's runs from their per-item logs (results/<preset>/<run>/),
    seeds (`-s<k>` runs) grouped under their run; runs without logs or collapsed are left out; None
    without the retain model's logs."""
    retain = store.cached_logs(preset, retain_run)
    if retain is None:
        return None
    runs: dict = {}
    for run, rec in records.items():
        logs = None if rec.get("collapsed") else store.cached_logs(preset, run)
        if logs is not None:
            runs.setdefault(run_names.split_seed(run)[0], []).append(logs)
    return JointBootstrap(runs, retain, **kw) if runs else None


def of_seeds(records: dict, seeds=None) -> dict:
    """The records of the runs of `seeds` (None: all), and the subject models' whatever their seed."""
    return {r: rec for r, rec in records.items()
            if seeds is None or run_names.seed_of(r) in set(seeds) or run_names.split_seed(r)[0] in SUBJECT_MODEL_RUNS}


def study_findings(records: dict, seeds=None, preset: str | None = None, boot: JointBootstrap | None = None) -> list[dict]:
    """`evaluate` on a preset's study records (store.load_results) of `seeds` with their joint bootstrap
    (`boot`, if the caller has made it: study_bootstrap of the same records)."""
    kept = of_seeds(records, seeds)
    preset = preset or presets.current_name(next((rec.get("preset") for rec in records.values() if rec.get("preset")),
                                                 None))
    if boot is None and preset:
        boot = study_bootstrap(preset, kept)
    return evaluate(base_records(kept), boot)


def about(items: list[dict], *names: str, general: bool = True) -> list[dict]:
    """The findings whose statement names one of `names` as a word ("ROME" matches "ROME-dummy",
    not "R-ROME"), and with `general` the claims from the abstract: a notebook's share."""
    word = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, names)) + r")(?!\w)")
    return [f for f in items if word.search(f["finding"]) or (general and f["source"] == ABSTRACT)]


def markdown(items: list[dict]) -> str:
    """The README's findings table: source, the paper's numbers, ours, the probability that the rule
    holds (joint paired bootstrap), how many seeds its runs rest on, the verdict and the rule."""
    lines = ["| finding | source | paper | ours | P(rule holds) | seeds | verdict | rule, premises |",
             "|---|---|---|---|---|---|---|---|"]
    for f in items:
        p = "n/a" if f["probability"] is None else f"{f['probability']:.2f}"
        note = f["why"] + (f"; {f['premises']}" if f["premises"] else "")
        lines.append(f"| {f['finding']} | {f['source']} | {f['paper']} | {f['ours']} | {p} | {f.get('seeds', 'n/a')} "
                     f"| **{f['verdict']}** | {note} |")
    return "\n".join(lines)
