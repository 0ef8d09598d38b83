"""The study's tables: every run of a preset, seeds aggregated, beside the paper's numbers.

* `main_table(records)`: one row per run (full, retain, each editor x target, each baseline):
  ROUGE / Prob / Truth Ratio on the four TOFU sets, model utility, forget quality, edit time;
  runs repeated over seeds (`<run>-s1`, ...) give the mean and, with two or more seeds, the
  sample standard deviation (`<metric> sd`); collapsed runs stay in the table, marked.
* `paper_comparison(records)`: our numbers next to the paper's (reference.py, cited).
* `findings(table, gate_rows)`: the paper's qualitative findings, each tested on our runs and
  labelled with one of `VERDICTS` ("reproduced", "not reproduced", "not testable here" when a
  premise gate of gates.py does not hold, "not comparable") with the numbers and the reason;
  `study_findings(records)` computes both from the records, `findings_about(items, "ROME")`
  keeps one method's share (the editor and baseline notebooks show those).
* `markdown_table(...)`: the README's table (written by scripts/write_readme_results.py).

Everything is computed from results/<preset>/*.json; nothing here is typed by hand except
the paper's numbers, which live in reference.py.
"""
from __future__ import annotations

import math
import re

import numpy as np

from . import gates as gates_mod
from . import reference, uncertainty
from .evaluate import EVAL_SETS, METRICS, flat_metrics
from .prompts import question_of

SET_METRICS = [f"{s}/{m}" for s in EVAL_SETS for m in METRICS]
NUMBERS = SET_METRICS + ["model_utility", "forget_quality"]
EDITOR_METHODS = ("ROME", "R-ROME", "IKE", "WISE")
_ORDER = ("full", "retain", "base", "rome", "rrome", "ike", "wise", "ga", "gd", "kl", "idk", "npo")
_SEED = re.compile(r"^(?P<base>.+?)-s(?P<seed>\d+)$")


def split_seed(run: str) -> tuple[str, int]:
    """`rome-dummy-s2` -> ("rome-dummy", 2); `rome-dummy` -> ("rome-dummy", 0) (study.run_name's inverse)."""
    m = _SEED.match(run)
    return (m["base"], int(m["seed"])) if m else (run, 0)


def edit_ms(rec: dict) -> float | None:
    """Median wall time of one edit in ms (editors that record per-edit times), else None."""
    times = (rec.get("stats") or {}).get("edit_times_s")
    return 1000 * float(np.median(times)) if times else None


def _sort_key(base: str):
    head = base.split("-")[0]
    return (_ORDER.index(head) if head in _ORDER else len(_ORDER), base)


def sort_runs(runs) -> list[str]:
    """Run names in the study's order (subject models, editors, baselines; seeds together)."""
    return sorted(runs, key=lambda r: (_sort_key(split_seed(r)[0]), split_seed(r)[1]))


SUBJECT_MODEL_RUNS = ("full", "retain", "base")   # the subject models' records (base: the pretrained model)


def runs_to_attack(records: dict, seeds=(0,)) -> list[str]:
    """Notebook 08's default: the full and retain models, then every finished, non-collapsed study
    run of `seeds` (`records` as store.load_results gives them: no ablations), in the study's order;
    the pretrained base model is no unlearning run."""
    wanted = [r for r in records if r not in SUBJECT_MODEL_RUNS and split_seed(r)[1] in seeds
              and not records[r].get("collapsed")]
    return ["full", "retain"] + sort_runs(wanted)


def group_by_run(records: dict) -> dict[str, dict[int, dict]]:
    """{base run: {seed: record}}."""
    groups: dict[str, dict[int, dict]] = {}
    for run, rec in records.items():
        base, seed = split_seed(run)
        groups.setdefault(base, {})[seed] = rec
    return {b: groups[b] for b in sorted(groups, key=_sort_key)}


def main_table(records: dict, seeds=None):
    """One row per run, seeds aggregated (mean; `<metric> sd` with >= 2 seeds).

    seeds: keep only these seeds (None = every seed found). The subject models (`full`,
    `retain`) have one seed. Columns: method, target, n_seeds, the 12 set metrics, model
    utility, forget quality, unlearn seconds, median ms per edit, collapsed ("" or "k of n
    seeds: reason"), and `<key> lo` / `<key> hi` for forget quality, model utility and forget
    ROUGE: the row-bootstrap interval stored in a one-seed record (uncertainty.py; NaN when the
    record has none or the run has several seeds). A collapsed seed contributes no numbers; a run whose every seed collapsed
    has NaN numbers and says so in `collapsed`.
    """
    import pandas as pd

    rows = []
    for base, by_seed in group_by_run(records).items():
        if seeds is not None and base not in ("full", "retain"):
            by_seed = {s: r for s, r in by_seed.items() if s in set(seeds)}
        if not by_seed:
            continue
        recs = [by_seed[s] for s in sorted(by_seed)]
        ok = [r for r in recs if not r.get("collapsed")]
        row = {"run": base, "method": recs[0].get("method"), "target": recs[0].get("target"),
               "n_seeds": len(recs)}
        flats = [flat_metrics(r) for r in ok]
        for k in NUMBERS:
            vals = [f[k] for f in flats if f[k] is not None]
            row[k] = float(np.mean(vals)) if vals else math.nan
            if len(recs) > 1:
                row[f"{k} sd"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan
        ivs = uncertainty.intervals_of(ok[0]) if len(ok) == 1 and len(recs) == 1 else {}
        for k in uncertainty.KEYS:   # row-bootstrap interval (one seed; with several, the sd stands in)
            row[f"{k} lo"], row[f"{k} hi"] = ivs.get(k, (math.nan, math.nan))
        unl = [r.get("timings", {}).get("unlearn_s") for r in recs]
        unl = [u for u in unl if u is not None]
        row["unlearn_s"] = float(np.mean(unl)) if unl else math.nan
        ms = [edit_ms(r) for r in recs]
        ms = [m for m in ms if m is not None]
        row["ms_per_edit"] = float(np.mean(ms)) if ms else math.nan
        bad = [r for r in recs if r.get("collapsed")]
        if bad:
            c = bad[0]["collapsed"]
            why = f"{c.get('step')}: {c.get('reason')}" if isinstance(c, dict) else str(c)
            row["collapsed"] = f"{len(bad)} of {len(recs)} seeds (step {why})"
        else:
            row["collapsed"] = ""
        rows.append(row)
    df = pd.DataFrame(rows)
    return df.set_index("run") if len(df) else df


def paper_comparison(table):
    """Ours beside the paper's for every run that has a paper counterpart (reference.py).

    Columns per quantity: ours / paper; plus MU as a fraction of the full model's MU (ours
    and paper), the scale-free reading of utility across two very different models.
    """
    import pandas as pd

    keys = ["forget/rouge", "forget/prob", "forget/truth_ratio", "retain/rouge", "model_utility", "forget_quality"]
    mu_full = table.loc["full", "model_utility"] if "full" in table.index else math.nan
    p_full = reference.paper_row("full")["model_utility"]
    rows = []
    for run in reference.paper_runs():
        paper = reference.paper_row(run)
        row = {"run": run, "paper run": paper["paper_run"]}
        ours = table.loc[run] if run in table.index else None
        for k in keys:
            row[f"{k} ours"] = None if ours is None else ours[k]
            row[f"{k} paper"] = paper[k]
        row["MU / MU(full) ours"] = None if ours is None or not mu_full else ours["model_utility"] / mu_full
        row["MU / MU(full) paper"] = paper["model_utility"] / p_full
        row["collapsed ours"] = "" if ours is None else ours["collapsed"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


# --------------------------------------------------------------------------- findings
REPRODUCED, NOT_REPRODUCED = "reproduced", "not reproduced"
NOT_TESTABLE, NOT_COMPARABLE = "not testable here", "not comparable"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_TESTABLE, NOT_COMPARABLE)


def _get(table, run, key):
    if run not in table.index or key not in table.columns:
        return None
    v = table.loc[run, key]
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _fmt(v):
    if v is None:
        return "n/a"
    return f"{v:.3g}" if abs(v) < 1e-3 or abs(v) >= 1e3 else f"{v:.3f}"


def premise_status(gate_rows) -> dict[str, tuple[str, list[dict]]]:
    """{base run: (status, the gates that do not hold)} from gate rows (gates.gate_rows or
    gates.gate_table) over all seeds of a run: "fails" when any gate of any seed fails,
    else "unknown" when any is unknown, else "holds"."""
    rows = gate_rows.to_dict("records") if hasattr(gate_rows, "to_dict") else list(gate_rows or [])
    out: dict[str, tuple[str, list[dict]]] = {}
    for g in rows:
        base = split_seed(g["run"])[0]
        status, bad = out.get(base, (gates_mod.HOLDS, []))
        if g["status"] != gates_mod.HOLDS:
            bad = bad + [g]
            if g["status"] == gates_mod.FAILS or status == gates_mod.FAILS:
                status = gates_mod.FAILS
            else:
                status = gates_mod.UNKNOWN
        out[base] = (status, bad)
    return out


class _Evidence:
    """The numbers a finding reads, with their row-bootstrap intervals and the runs' premises.

    `cmp(run, key, op, threshold)` compares a number with a threshold and notes when the
    threshold lies inside the number's interval (or between the interval and the point, which
    the percentile interval of a p-value near 1 may leave out): the comparison then "flips
    inside the interval". `beats(a, b, key)` does the same for two runs (intervals overlap)."""

    def __init__(self, table, gate_rows):
        self.table = table
        self.premises = premise_status(gate_rows) if gate_rows is not None else None
        self.flips: list[str] = []

    def value(self, run, key):
        return _get(self.table, run, key)

    def span(self, run, key):
        """(low, high) of the interval joined with the point, or None without an interval."""
        v, lo, hi = self.value(run, key), self.value(run, f"{key} lo"), self.value(run, f"{key} hi")
        return None if v is None or lo is None or hi is None else (min(lo, v), max(hi, v))

    def fmt(self, run, key):
        v, lo, hi = self.value(run, key), self.value(run, f"{key} lo"), self.value(run, f"{key} hi")
        return _fmt(v) + (f" [{_fmt(lo)}, {_fmt(hi)}]" if lo is not None and hi is not None else "")

    def cmp(self, run, key, op, threshold, label=None) -> bool:
        v = self.value(run, key)
        holds = v > threshold if op == ">" else v >= threshold if op == ">=" else v < threshold if op == "<" else v <= threshold
        sp = self.span(run, key)
        if sp is not None and sp[0] <= threshold <= sp[1]:
            self.flips.append(f"{run} {label or key} {self.fmt(run, key)} spans {_fmt(threshold)}")
        return holds

    def beats(self, a, b, key, label=None) -> bool:
        sa, sb = self.span(a, key), self.span(b, key)
        if sa is not None and sb is not None and sa[0] <= sb[1] and sb[0] <= sa[1]:
            self.flips.append(f"{label or key} intervals of {a} {self.fmt(a, key)} and {b} {self.fmt(b, key)} overlap")
        return self.value(a, key) > self.value(b, key)

    def premise(self, run) -> tuple[str, list[dict]]:
        """(status, gates not holding) of a run; runs without gates hold; no gate rows given:
        every editor run is "unknown" (a premise never passes silently)."""
        is_editor = run in self.table.index and str(self.table.loc[run, "method"]) in EDITOR_METHODS
        if self.premises is None and is_editor:
            return gates_mod.UNKNOWN, [{"run": run, "gate": "premise gates", "value": None, "threshold": "computed",
                                        "status": gates_mod.UNKNOWN, "context": "not given to report.findings"}]
        return (self.premises or {}).get(run, (gates_mod.HOLDS, []))

    def take_flips(self) -> str:
        out, self.flips = "; ".join(dict.fromkeys(self.flips)), []
        return out


def _premise_text(bad: list[dict]) -> str:
    """'premise failed: <run>: <gate> <value> (needs ...)', one per gate not holding; with more
    than two runs, one line per run with its first such gate (the gates table has the rest)."""
    if len({g["run"] for g in bad}) > 2:
        first = {}
        for g in sorted(bad, key=lambda g: g["status"] != gates_mod.FAILS):
            first.setdefault(g["run"], g)
        return (f"premises not holding on {len(first)} runs: "
                + "; ".join(f"{r}: {g.get('short') or g['gate']} {'not recorded' if g['value'] is None else _fmt(g['value'])} "
                            f"(needs {g['threshold']})" for r, g in first.items()))
    return "; ".join(("premise unknown: " if g["status"] == gates_mod.UNKNOWN else "premise failed: ")
                     + gates_mod.describe(g) for g in bad)


def findings(table, gate_rows=None) -> list[dict]:
    """The paper's findings (docs/paper.md 7.2 and 8), each tested on our runs.

    table: `main_table(records)`; gate_rows: the premise gates of the same records
    (`gates.gate_rows(records)` or `gates.gate_table(records)`); without them every editor
    premise counts as unknown. Each item: finding, paper (its numbers), ours (our numbers, with
    row-bootstrap intervals where recorded), verdict, why (the rule), premises (the premise
    numbers behind "not testable here"), flips (comparisons whose threshold lies inside an
    interval: "" when none). The verdict is one of
    * "not comparable": a run the finding needs is missing or collapsed, or the full model has
      no utility to compare against;
    * "not testable here": a premise of a run the finding is about failed or is unknown
      (gates.py: the edits did not take, the model ignores its context, the router is not
      selective); the failed premise is named with its number;
    * "reproduced" / "not reproduced": the stated rule on the numbers, only when every premise
      holds. Claims over all editors ("editing can exceed the baselines", "no method forgets
      without damage") are decided on the runs whose premises hold when those runs decide them,
      else "not testable here".
    """
    ev = _Evidence(table, gate_rows)
    out = []

    def add(finding, paper, ours, holds, why="", runs=()):
        """holds: True / False / None (not comparable); runs: the runs whose premises must hold."""
        bad = [g for r in runs for g in ev.premise(r)[1]]
        flips = ev.take_flips()
        if holds is None:
            verdict, bad = NOT_COMPARABLE, []
        elif bad:
            verdict, flips = NOT_TESTABLE, ""
            ours = f"{ours} (the rule would say: {REPRODUCED if holds else NOT_REPRODUCED})"
        else:
            verdict = REPRODUCED if holds else NOT_REPRODUCED
        out.append({"finding": finding, "paper": paper, "ours": ours, "verdict": verdict, "why": why,
                    "premises": _premise_text(bad), "flips": flips})

    def add_over_runs(finding, paper, ours, decided, undecided_bad, why=""):
        """A claim over many runs: `decided` True / False from runs whose premises hold, or None
        (those runs do not decide it: the runs with failed/unknown premises `undecided_bad` might)."""
        flips = ev.take_flips()
        if decided is None:
            verdict, flips = NOT_TESTABLE, ""
        else:
            verdict = REPRODUCED if decided else NOT_REPRODUCED
        out.append({"finding": finding, "paper": paper, "ours": ours, "verdict": verdict, "why": why,
                    "premises": _premise_text(undecided_bad) if decided is None else "", "flips": flips})

    g = ev.value
    mu_full, fq_full, fr_full = g("full", "model_utility"), g("full", "forget_quality"), g("full", "forget/rouge")
    rel = lambda v: None if v is None or not mu_full else v / mu_full  # noqa: E731  MU as a fraction of full's
    xfull = lambda v: "n/a" if rel(v) is None else f"{rel(v):.2f} x full"  # noqa: E731
    editors = [r for r in table.index if str(table.loc[r, "method"]) in EDITOR_METHODS]
    baselines = [r for r in table.index if r.split("-")[0] in ("ga", "gd", "kl", "idk", "npo")]
    paper_baselines = [r for r in baselines if r in ("ga", "gd", "kl", "idk")]
    valid = lambda r: ev.premise(r)[0] == gates_mod.HOLDS  # noqa: E731

    # 1. the abstract: editors can exceed baselines in forget quality (exists an editor run)
    fq_e = {r: g(r, "forget_quality") for r in editors if g(r, "forget_quality") is not None}
    fq_b = {r: g(r, "forget_quality") for r in paper_baselines if g(r, "forget_quality") is not None}
    claim = "Editing can exceed the unlearning baselines in forget quality (abstract)"
    if fq_e and fq_b:
        bb = max(fq_b, key=fq_b.get)
        ok = [r for r in fq_e if valid(r)]
        be = max(ok, key=fq_e.get) if ok else max(fq_e, key=fq_e.get)
        exceeds = ev.beats(be, bb, "forget_quality", "FQ") if ok else None
        decided = True if exceeds else (False if ok and len(ok) == len(fq_e) else None)
        add_over_runs(claim, "best editor IKE-incorrect FQ 0.249 > best baseline IdK FQ 5.1e-17",
                      f"best editor{'' if ok else ' (premises not holding)'} {be} FQ {ev.fmt(be, 'forget_quality')} vs "
                      f"best baseline (GA/GD/KL/IdK) {bb} FQ {ev.fmt(bb, 'forget_quality')}",
                      decided, [x for r in fq_e for x in ev.premise(r)[1]],
                      "held to: an editor run whose premises hold beats the best baseline")
    else:
        add(claim, "best editor FQ 0.249 > best baseline 5.1e-17", "runs missing or collapsed", None)

    # 2. ROME-dummy: forgets, costs utility
    fq, mu = g("rome-dummy", "forget_quality"), g("rome-dummy", "model_utility")
    if fq is not None and mu is not None:
        add("ROME-dummy raises forget quality far above the full model's",
            "FQ 0.121 vs 4.9e-20", f"FQ {ev.fmt('rome-dummy', 'forget_quality')} vs {_fmt(fq_full)}",
            # scale-free (FQ's floor depends on the forget set's size): from distinguishable from the
            # retain model (full, p < 0.05) to not (p > 0.05); not comparable if the full model is not
            None if fq_full is None or fq_full >= 0.05 else ev.cmp("rome-dummy", "forget_quality", ">", 0.05, "FQ"),
            "held to: above 0.05 where the full model's is below 0.05", runs=("rome-dummy",))
        add("ROME-dummy pays with utility (MU falls well below the full model's)",
            "MU 0.153 = 0.24 x full", f"MU {ev.fmt('rome-dummy', 'model_utility')} = {xfull(mu)}",
            None if rel(mu) is None else ev.cmp("rome-dummy", "model_utility", "<", 0.8 * mu_full, "MU"),
            "held to: below 0.8 x the full model's MU", runs=("rome-dummy",))
    else:
        add("ROME-dummy raises forget quality and costs utility", "FQ 0.121, MU 0.153", "run missing or collapsed", None)

    # 3. ROME with long targets collapses (premise: ROME's edits take on this model, seen on rome-dummy)
    for t in ("incorrect", "avoidant"):
        run, claim = f"rome-{t}", f"ROME-{t} (a whole-sentence target) breaks down"
        if run not in table.index:
            add(claim, "NaN probabilities, ROUGE < 0.1 everywhere", "not run", None)
            continue
        col = bool(table.loc[run, "collapsed"])
        rr = g(run, "retain/rouge")
        add(claim, "NaN probabilities, ROUGE < 0.1 everywhere",
            "collapsed: " + table.loc[run, "collapsed"] if col else
            f"finite metrics, retain ROUGE {_fmt(rr)}, MU {ev.fmt(run, 'model_utility')}",
            col or (rr is not None and rr < 0.1),
            "held to: collapsed, or retain ROUGE < 0.1; premise: ROME's edits take on this model (rome-dummy)",
            runs=("rome-dummy",))

    # 4. IKE-incorrect: best forget quality of all methods
    fq_all = {r: g(r, "forget_quality") for r in editors + baselines if g(r, "forget_quality") is not None}
    claim = "IKE-incorrect gives the best forget quality of all methods"
    if "ike-incorrect" in fq_all and len(fq_all) > 1:
        rival = max((r for r in fq_all if r != "ike-incorrect"), key=fq_all.get)
        add(claim, "FQ 0.249 (next: ROME-dummy 0.121)",
            f"FQ {ev.fmt('ike-incorrect', 'forget_quality')}; best other: {rival} {ev.fmt(rival, 'forget_quality')}",
            ev.beats("ike-incorrect", rival, "forget_quality", "FQ"), runs=("ike-incorrect",))
    else:
        add(claim, "FQ 0.249", "run missing or collapsed", None)

    # 5. IKE lowers ROUGE everywhere (the context is on every query), MU 0.34-0.47
    ike = [r for r in ("ike-dummy", "ike-incorrect", "ike-avoidant") if g(r, "retain/rouge") is not None]
    if ike and g("full", "retain/rouge") is not None:
        add("IKE lowers ROUGE on the retain set too (the context is put on every question)",
            "retain ROUGE 0.25-0.29 vs 0.98", ", ".join(f"{r} {_fmt(g(r, 'retain/rouge'))}" for r in ike)
            + f" vs {_fmt(g('full', 'retain/rouge'))}",
            all(g("full", "retain/rouge") - g(r, "retain/rouge") > 0.1 for r in ike),
            "held to: every IKE run's retain ROUGE more than 0.1 below the full model's", runs=ike)
        mus = [g(r, "model_utility") for r in ike]
        add("IKE costs utility", "MU 0.338 / 0.473 / 0.452 = 0.54-0.76 x full",
            ", ".join(f"{r} {ev.fmt(r, 'model_utility')} = {xfull(m)}" for r, m in zip(ike, mus)),
            None if rel(mus[0]) is None else all([ev.cmp(r, "model_utility", "<", 0.9 * mu_full, "MU") for r in ike]),
            "held to: every IKE run below 0.9 x the full model's MU", runs=ike)
    else:
        add("IKE lowers ROUGE on every set", "retain ROUGE 0.25-0.29", "runs missing or collapsed", None)

    # 6. WISE keeps utility but barely forgets
    wise = [r for r in ("wise-dummy", "wise-incorrect", "wise-avoidant") if g(r, "model_utility") is not None]
    if wise:
        add("WISE keeps model utility", "MU 0.603-0.612 vs 0.625 (>= 0.96 x full)",
            ", ".join(f"{r} {ev.fmt(r, 'model_utility')} = {xfull(g(r, 'model_utility'))}" for r in wise),
            None if not mu_full else all([ev.cmp(r, "model_utility", ">=", 0.9 * mu_full, "MU") for r in wise]),
            "held to: every WISE run >= 0.9 x full MU", runs=wise)
        add("WISE barely forgets in generation (forget ROUGE stays near the full model's)",
            "forget ROUGE 0.965-0.986 vs 0.986",
            ", ".join(f"{r} {ev.fmt(r, 'forget/rouge')}" for r in wise) + f" vs {_fmt(fr_full)}",
            None if fr_full is None else all([ev.cmp(r, "forget/rouge", ">", fr_full - 0.1, "forget ROUGE") for r in wise]),
            "held to: every WISE run within 0.1 of full", runs=wise)
    else:
        add("WISE keeps utility but barely forgets", "MU ~0.61, forget ROUGE ~0.98", "runs missing or collapsed", None)

    # 7-9. baselines (no premise gates: TOFU's own methods)
    for m in ("ga", "kl"):
        v = g(m, "model_utility")
        add(f"{m.upper()} destroys utility (MU -> 0)", "MU 0",
            "not run" if m not in table.index else ("collapsed" if v is None else f"MU {ev.fmt(m, 'model_utility')} = {xfull(v)}"),
            None if rel(v) is None else ev.cmp(m, "model_utility", "<=", 0.2 * mu_full, "MU"), "held to: <= 0.2 x full MU")
    v = g("gd", "model_utility")
    add("GD keeps most utility", "MU 0.589 = 0.94 x full",
        "not run" if v is None else f"MU {ev.fmt('gd', 'model_utility')} = {xfull(v)}",
        None if rel(v) is None else ev.cmp("gd", "model_utility", ">=", 0.8 * mu_full, "MU"), "held to: >= 0.8 x full MU")
    v, fr = g("idk", "model_utility"), g("idk", "forget/rouge")
    add("IdK keeps most utility and stops reciting the forget answers", "MU 0.539 = 0.86 x full, forget ROUGE 0.053",
        "not run" if v is None else f"MU {ev.fmt('idk', 'model_utility')} = {xfull(v)}, forget ROUGE {ev.fmt('idk', 'forget/rouge')}",
        None if rel(v) is None else all([ev.cmp("idk", "model_utility", ">=", 0.7 * mu_full, "MU"),
                                         ev.cmp("idk", "forget/rouge", "<", 0.2, "forget ROUGE")]),
        "held to: >= 0.7 x full MU and forget ROUGE < 0.2")

    # 10. the abstract: no method forgets without damage (for all runs)
    both = [r for r in editors + baselines if g(r, "forget_quality") is not None and g(r, "model_utility") is not None]
    claim = ("No method forgets (FQ >= 0.05) while keeping utility (>= 0.9 x full) (abstract: 'they struggle to "
             "encapsulate the scope ... without damage')")
    if both and mu_full:
        good = [r for r in both if all([ev.cmp(r, "forget_quality", ">=", 0.05, "FQ"),
                                        ev.cmp(r, "model_utility", ">=", 0.9 * mu_full, "MU")])]
        ev.flips = [f for f in ev.flips if valid(f.split(" ")[0]) and _both_open(ev, f.split(" ")[0], mu_full)]
        good_valid = [r for r in good if valid(r)]
        untested = [r for r in both if not valid(r)]
        decided = False if good_valid else (True if not untested else None)
        good_invalid = [r for r in good if r not in good_valid]
        does = ("none does" if not good else "these do: " + ", ".join(good_valid) if good_valid
                else "only runs whose premises do not hold do")
        if good_invalid:
            does += f"{'; ' if good_valid else ': '}{', '.join(good_invalid)} with premises not holding"
        add_over_runs(claim, "none does (best FQ 0.249 at 0.76 x full MU)",
                      does
                      + (f" ({len(untested)} run{'s' if len(untested) != 1 else ''} with premises not holding: {', '.join(untested)})" if untested else ""),
                      decided, [x for r in untested for x in ev.premise(r)[1]],
                      "held to: no run whose premises hold reaches both")
    else:
        add(claim, "none does", "runs missing, or the full model has no utility", None)
    return out


def _both_open(ev, run: str, mu_full) -> bool:
    """Finding 10 keeps a run's interval notes only when the run could reach both bars: its FQ
    and MU each reach the bar at the point or within the interval."""
    def reaches(key, bar):
        sp = ev.span(run, key)
        return (ev.value(run, key) or 0.0) >= bar or (sp is not None and sp[1] >= bar)
    return reaches("forget_quality", 0.05) and reaches("model_utility", 0.9 * mu_full)


def study_findings(records: dict, seeds=None) -> list[dict]:
    """`findings` on a preset's study records ({run: record}, store.load_results) with their
    premise gates (gates.gate_rows): the one call the notebooks make."""
    return findings(main_table(records, seeds=seeds), gates_mod.gate_rows(records))


def findings_about(items: list[dict], *names: str, general: bool = True) -> list[dict]:
    """The findings whose statement names one of `names` as a word ("ROME" matches "ROME-dummy",
    not "R-ROME"; "GA", "IKE", ...), and with `general` the claims over every method (the two
    from the paper's abstract): an editor or baseline notebook's share of `findings`."""
    word = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, names)) + r")(?!\w)")
    return [f for f in items if word.search(f["finding"]) or (general and "(abstract" in f["finding"])]


def rome_edit_table(records: dict):
    """One row per ROME / R-ROME run record: its role (reproduction / ablation) and whether its v_lr
    was chosen by the premise gate (recipes.V_LR_GRID), edits asked and done, v_lr, EasyEdit's edit metrics
    before / after (rewrite, rephrase, locality), median ms per edit, and where it collapsed."""
    import pandas as pd

    rows = []
    for run, rec in records.items():
        em, col = rec.get("edit_metrics") or {}, rec.get("collapsed")
        times = (rec.get("stats") or {}).get("edit_times_s") or []
        rows.append({"run": run, "role": rec.get("role", ""), "gate-selected": rec.get("gate_selected", False),
                     "n edits": rec.get("n_edits"), "v_lr": (rec.get("hparams") or {}).get("v_lr"),
                     "pre rewrite acc": em.get("pre_rewrite_acc_mean"), "rewrite acc": em.get("rewrite_acc_mean"),
                     "rephrase acc": em.get("rephrase_acc_mean"), "locality": em.get("locality_mean"),
                     "edits done": len(times), "median ms / edit": edit_ms(rec),
                     "collapsed at edit": col.get("step") if isinstance(col, dict) else None,
                     "collapse reason": col.get("reason") if isinstance(col, dict) else None})
    return pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()


# --------------------------------------------------------------------------- markdown
def _isnum(v):
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _md_number(v, sd=None, lo=None, hi=None):
    """'0.850', '0.850 ± 0.010' (sd over seeds) or '0.850 [0.800, 0.900]' (row-bootstrap interval)."""
    if not _isnum(v):
        return "–"
    one = lambda x: f"{x:.2g}" if (abs(x) < 1e-2 and x != 0) else f"{x:.3f}"  # noqa: E731
    s = one(v)
    if _isnum(sd):
        s += f" ± {one(sd)}"
    if _isnum(lo) and _isnum(hi):
        s += f" [{one(lo)}, {one(hi)}]"
    return s


README_COLUMNS = [("forget/rouge", "Forget ROUGE"), ("forget/prob", "Forget Prob"),
                  ("forget/truth_ratio", "Forget TR"), ("retain/rouge", "Retain ROUGE"),
                  ("real_authors/rouge", "RA ROUGE"), ("world_facts/rouge", "WF ROUGE"),
                  ("model_utility", "MU"), ("forget_quality", "FQ")]


def markdown_table(table, columns=README_COLUMNS) -> str:
    """A GitHub-markdown table of `main_table`: mean ± sd where several seeds; FQ, MU and forget
    ROUGE of one-seed runs with their 95% row-bootstrap interval in brackets where recorded."""
    head = "| run | " + " | ".join(name for _, name in columns) + " | ms / edit |"
    sep = "|" + "---|" * (len(columns) + 2)
    lines = [head, sep]
    for run, row in table.iterrows():
        if row.get("collapsed") and all(isinstance(row[k], float) and math.isnan(row[k]) for k, _ in columns):
            lines.append(f"| {run} | collapsed: {row['collapsed']} |" + " |" * len(columns))
            continue
        cells = [_md_number(row[k], row.get(f"{k} sd"), row.get(f"{k} lo"), row.get(f"{k} hi")) for k, _ in columns]
        ms = row.get("ms_per_edit")
        lines.append(f"| {run}{' (collapsed ' + row['collapsed'] + ')' if row.get('collapsed') else ''} | "
                     + " | ".join(cells) + f" | {f'{ms:.0f}' if ms == ms else '–'} |")
    return "\n".join(lines)


def markdown_findings(items: list[dict]) -> str:
    """The README's findings table: the verdict with the failed premise and its number ("not
    testable here") or the comparisons that flip inside their row-bootstrap interval."""
    lines = ["| finding (paper) | paper | ours | verdict |", "|---|---|---|---|"]
    for f in items:
        why = f" ({f['why']})" if f.get("why") else ""
        note = f"; {f['premises']}" if f.get("premises") else ""
        note += f"; flips inside the interval: {f['flips']}" if f.get("flips") else ""
        lines.append(f"| {f['finding']} | {f['paper']} | {f['ours']}{why} | **{f['verdict']}**{note} |")
    return "\n".join(lines)


def forget_examples(preset: str, runs, n: int = 4, every: int | None = None) -> list[dict]:
    """The first forget questions (or every `every`-th) with each run's greedy answer
    ({"question", "truth", "answers": {run: text}}), read from the answers each run record keeps
    (`forget_answers`, so a clone shows them), else from the runs' per-item logs."""
    from .store import cached_logs, load_results

    records = load_results(preset)
    gens = {}
    for r in runs:
        kept = (records.get(r) or {}).get("forget_answers")
        if kept:
            gens[r] = {str(a["index"]): [a["prompt"], a["answer"], a["truth"]] for a in kept}
        elif (lg := cached_logs(preset, r)) is not None:
            gens[r] = lg["forget"]["generated_text"]
    if not gens:
        return []
    first = next(iter(gens.values()))
    keys = sorted(first, key=int)
    keys = keys[::every][:n] if every else keys[:n]
    out = []
    for k in keys:
        prompt, _, truth = first[k]
        q = question_of(prompt)
        out.append({"question": q, "truth": truth,
                    "answers": {r: g[k][1] for r, g in gens.items() if k in g}})
    return out
