"""The study's tables: every run of a preset, seeds aggregated, beside the paper's numbers.

* `main_table(records)`: one row per run (full, retain, each editor x target, each baseline):
  ROUGE / Prob / Truth Ratio on the four TOFU sets, model utility, forget quality, edit time;
  runs repeated over seeds (`<run>-s1`, ...) give the mean and, with two or more seeds, the
  sample standard deviation (`<metric> sd`); collapsed runs stay in the table, marked.
* `paper_comparison(records)`: our numbers next to the paper's (reference.py, cited).
* `findings(records)`: the paper's qualitative findings, each tested on our runs and labelled
  "reproduced", "not reproduced" or "not comparable" with the numbers and the reason.
* `markdown_table(...)`: the README's table (written by scripts/write_readme_results.py).

Everything is computed from results/<preset>/*.json; nothing here is typed by hand except
the paper's numbers, which live in reference.py.
"""
from __future__ import annotations

import math
import re

import numpy as np

from . import reference
from .evaluate import EVAL_SETS, METRICS, flat_metrics

SET_METRICS = [f"{s}/{m}" for s in EVAL_SETS for m in METRICS]
NUMBERS = SET_METRICS + ["model_utility", "forget_quality"]
EDITOR_METHODS = ("ROME", "R-ROME", "IKE", "WISE")
_ORDER = ("full", "retain", "rome", "rrome", "ike", "wise", "ga", "gd", "kl", "idk", "npo")
_SEED = re.compile(r"^(?P<base>.+?)-s(?P<seed>\d+)$")


def split_seed(run: str) -> tuple[str, int]:
    """`rome-dummy-s2` -> ("rome-dummy", 2); `rome-dummy` -> ("rome-dummy", 0) (runs.run_name's inverse)."""
    m = _SEED.match(run)
    return (m["base"], int(m["seed"])) if m else (run, 0)


def edit_ms(rec: dict) -> float | None:
    """Median wall time of one edit in ms (editors that record per-edit times), else None."""
    times = (rec.get("stats") or {}).get("edit_times_s")
    return 1000 * float(np.median(times)) if times else None


def _sort_key(base: str):
    head = base.split("-")[0]
    return (_ORDER.index(head) if head in _ORDER else len(_ORDER), base)


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
    seeds: reason"). A collapsed seed contributes no numbers; a run whose every seed collapsed
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
def _get(table, run, key):
    if run not in table.index:
        return None
    v = table.loc[run, key]
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _fmt(v):
    if v is None:
        return "n/a"
    return f"{v:.3g}" if abs(v) < 1e-3 or abs(v) >= 1e3 else f"{v:.3f}"


def findings(table) -> list[dict]:
    """The paper's findings (docs/paper.md 7.2 and 8), each tested on our runs.

    Each item: finding, paper (its numbers), ours (our numbers), verdict ("reproduced",
    "not reproduced", "not comparable") and why. A finding is "not comparable" when the runs
    it needs are missing or collapsed here, or when our full model has no utility to compare
    against (stated in `ours`).
    """
    out = []

    def add(finding, paper, ours, holds, why=""):
        verdict = "not comparable" if holds is None else "reproduced" if holds else "not reproduced"
        out.append({"finding": finding, "paper": paper, "ours": ours, "verdict": verdict, "why": why})

    g = lambda run, key: _get(table, run, key)  # noqa: E731
    mu_full, fq_full, fr_full = g("full", "model_utility"), g("full", "forget_quality"), g("full", "forget/rouge")
    rel = lambda v: None if v is None or not mu_full else v / mu_full  # noqa: E731  MU as a fraction of full's
    xfull = lambda v: "n/a" if rel(v) is None else f"{rel(v):.2f} x full"  # noqa: E731
    editors = [r for r in table.index if str(table.loc[r, "method"]) in EDITOR_METHODS]
    baselines = [r for r in table.index if r.split("-")[0] in ("ga", "gd", "kl", "idk", "npo")]
    paper_baselines = [r for r in baselines if r in ("ga", "gd", "kl", "idk")]

    # 1. the abstract: editors can exceed baselines in forget quality
    fq_e = {r: g(r, "forget_quality") for r in editors if g(r, "forget_quality") is not None}
    fq_b = {r: g(r, "forget_quality") for r in paper_baselines if g(r, "forget_quality") is not None}
    claim = "Editing can exceed the unlearning baselines in forget quality (abstract)"
    if fq_e and fq_b:
        be, bb = max(fq_e, key=fq_e.get), max(fq_b, key=fq_b.get)
        add(claim, "best editor IKE-incorrect FQ 0.249 > best baseline IdK FQ 5.1e-17",
            f"best editor {be} FQ {_fmt(fq_e[be])} vs best baseline (GA/GD/KL/IdK) {bb} FQ {_fmt(fq_b[bb])}",
            fq_e[be] > fq_b[bb])
    else:
        add(claim, "best editor FQ 0.249 > best baseline 5.1e-17", "runs missing or collapsed", None)

    # 2. ROME-dummy: forgets, costs utility
    fq, mu = g("rome-dummy", "forget_quality"), g("rome-dummy", "model_utility")
    if fq is not None and mu is not None:
        add("ROME-dummy raises forget quality far above the full model's",
            "FQ 0.121 vs 4.9e-20", f"FQ {_fmt(fq)} vs {_fmt(fq_full)}",
            None if fq_full is None else fq > max(1e3 * fq_full, 0.05),
            "held to: above 0.05 and 1000x the full model's")
        add("ROME-dummy pays with utility (MU falls well below the full model's)",
            "MU 0.153 = 0.24 x full", f"MU {_fmt(mu)} = {xfull(mu)}", None if rel(mu) is None else rel(mu) < 0.8,
            "held to: below 0.8 x the full model's MU")
    else:
        add("ROME-dummy raises forget quality and costs utility", "FQ 0.121, MU 0.153", "run missing or collapsed", None)

    # 3. ROME with long targets collapses
    for t in ("incorrect", "avoidant"):
        run, claim = f"rome-{t}", f"ROME-{t} (a whole-sentence target) breaks down"
        if run not in table.index:
            add(claim, "NaN probabilities, ROUGE < 0.1 everywhere", "not run", None)
            continue
        col = bool(table.loc[run, "collapsed"])
        rr = g(run, "retain/rouge")
        add(claim, "NaN probabilities, ROUGE < 0.1 everywhere",
            "collapsed: " + table.loc[run, "collapsed"] if col else
            f"finite metrics, retain ROUGE {_fmt(rr)}, MU {_fmt(g(run, 'model_utility'))}",
            col or (rr is not None and rr < 0.1), "held to: collapsed, or retain ROUGE < 0.1")

    # 4. IKE-incorrect: best forget quality of all methods
    fq_all = {r: g(r, "forget_quality") for r in editors + baselines if g(r, "forget_quality") is not None}
    claim = "IKE-incorrect gives the best forget quality of all methods"
    if "ike-incorrect" in fq_all:
        best = max(fq_all, key=fq_all.get)
        add(claim, "FQ 0.249 (next: ROME-dummy 0.121)", f"FQ {_fmt(fq_all['ike-incorrect'])}; best: {best} {_fmt(fq_all[best])}",
            best == "ike-incorrect")
    else:
        add(claim, "FQ 0.249", "run missing or collapsed", None)

    # 5. IKE lowers ROUGE everywhere (the context is on every query), MU 0.34-0.47
    ike = [r for r in ("ike-dummy", "ike-incorrect", "ike-avoidant") if g(r, "retain/rouge") is not None]
    if ike and g("full", "retain/rouge") is not None:
        add("IKE lowers ROUGE on the retain set too (the context is put on every question)",
            "retain ROUGE 0.25-0.29 vs 0.98", ", ".join(f"{r} {_fmt(g(r, 'retain/rouge'))}" for r in ike)
            + f" vs {_fmt(g('full', 'retain/rouge'))}",
            all(g("full", "retain/rouge") - g(r, "retain/rouge") > 0.1 for r in ike),
            "held to: every IKE run's retain ROUGE more than 0.1 below the full model's")
        mus = [g(r, "model_utility") for r in ike]
        add("IKE costs utility", "MU 0.338 / 0.473 / 0.452 = 0.54-0.76 x full",
            ", ".join(f"{r} {_fmt(m)} = {xfull(m)}" for r, m in zip(ike, mus)),
            None if rel(mus[0]) is None else all(rel(m) < 0.9 for m in mus),
            "held to: every IKE run below 0.9 x the full model's MU")
    else:
        add("IKE lowers ROUGE on every set", "retain ROUGE 0.25-0.29", "runs missing or collapsed", None)

    # 6. WISE keeps utility but barely forgets
    wise = [r for r in ("wise-dummy", "wise-incorrect", "wise-avoidant") if g(r, "model_utility") is not None]
    if wise:
        add("WISE keeps model utility", "MU 0.603-0.612 vs 0.625 (>= 0.96 x full)",
            ", ".join(f"{r} {xfull(g(r, 'model_utility'))}" for r in wise),
            None if not mu_full else all(rel(g(r, "model_utility")) >= 0.9 for r in wise),
            "held to: every WISE run >= 0.9 x full MU")
        add("WISE barely forgets in generation (forget ROUGE stays near the full model's)",
            "forget ROUGE 0.965-0.986 vs 0.986",
            ", ".join(f"{r} {_fmt(g(r, 'forget/rouge'))}" for r in wise) + f" vs {_fmt(fr_full)}",
            all(fr_full - g(r, "forget/rouge") < 0.1 for r in wise), "held to: every WISE run within 0.1 of full")
    else:
        add("WISE keeps utility but barely forgets", "MU ~0.61, forget ROUGE ~0.98", "runs missing or collapsed", None)

    # 7-9. baselines
    for m in ("ga", "kl"):
        v = g(m, "model_utility")
        add(f"{m.upper()} destroys utility (MU -> 0)", "MU 0",
            "not run" if m not in table.index else ("collapsed" if v is None else f"MU {_fmt(v)} = {xfull(v)}"),
            None if rel(v) is None else rel(v) <= 0.2, "held to: <= 0.2 x full MU")
    v = g("gd", "model_utility")
    add("GD keeps most utility", "MU 0.589 = 0.94 x full", "not run" if v is None else f"MU {_fmt(v)} = {xfull(v)}",
        None if rel(v) is None else rel(v) >= 0.8, "held to: >= 0.8 x full MU")
    v, fr = g("idk", "model_utility"), g("idk", "forget/rouge")
    add("IdK keeps most utility and stops reciting the forget answers", "MU 0.539 = 0.86 x full, forget ROUGE 0.053",
        "not run" if v is None else f"MU {_fmt(v)} = {xfull(v)}, forget ROUGE {_fmt(fr)}",
        None if rel(v) is None else (rel(v) >= 0.7 and fr < 0.2), "held to: >= 0.7 x full MU and forget ROUGE < 0.2")

    # 10. the abstract: no method forgets without damage
    both = [r for r in editors + baselines if g(r, "forget_quality") is not None and g(r, "model_utility") is not None]
    claim = ("No method forgets (FQ >= 0.05) while keeping utility (>= 0.9 x full) (abstract: 'they struggle to "
             "encapsulate the scope ... without damage')")
    if both and mu_full:
        good = [r for r in both if g(r, "forget_quality") >= 0.05 and rel(g(r, "model_utility")) >= 0.9]
        add(claim, "none does (best FQ 0.249 at 0.76 x full MU)", "none does" if not good else "these do: " + ", ".join(good),
            not good)
    else:
        add(claim, "none does", "runs missing, or the full model has no utility", None)
    return out


# --------------------------------------------------------------------------- markdown
def _md_number(v, sd=None):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    s = f"{v:.2g}" if (abs(v) < 1e-2 and v != 0) else f"{v:.3f}"
    if sd is not None and not (isinstance(sd, float) and math.isnan(sd)):
        s += f" ± {sd:.2g}" if abs(sd) < 1e-2 and sd != 0 else f" ± {sd:.3f}"
    return s


README_COLUMNS = [("forget/rouge", "Forget ROUGE"), ("forget/prob", "Forget Prob"),
                  ("forget/truth_ratio", "Forget TR"), ("retain/rouge", "Retain ROUGE"),
                  ("real_authors/rouge", "RA ROUGE"), ("world_facts/rouge", "WF ROUGE"),
                  ("model_utility", "MU"), ("forget_quality", "FQ")]


def markdown_table(table, columns=README_COLUMNS) -> str:
    """A GitHub-markdown table of `main_table` (mean ± sd where several seeds)."""
    head = "| run | " + " | ".join(name for _, name in columns) + " | ms / edit |"
    sep = "|" + "---|" * (len(columns) + 2)
    lines = [head, sep]
    for run, row in table.iterrows():
        if row.get("collapsed") and all(isinstance(row[k], float) and math.isnan(row[k]) for k, _ in columns):
            lines.append(f"| {run} | collapsed: {row['collapsed']} |" + " |" * len(columns))
            continue
        cells = [_md_number(row[k], row.get(f"{k} sd")) for k, _ in columns]
        ms = row.get("ms_per_edit")
        lines.append(f"| {run}{' (collapsed ' + row['collapsed'] + ')' if row.get('collapsed') else ''} | "
                     + " | ".join(cells) + f" | {f'{ms:.0f}' if ms == ms else '–'} |")
    return "\n".join(lines)


def markdown_findings(items: list[dict]) -> str:
    lines = ["| finding (paper) | paper | ours | verdict |", "|---|---|---|---|"]
    for f in items:
        why = f" ({f['why']})" if f.get("why") else ""
        lines.append(f"| {f['finding']} | {f['paper']} | {f['ours']}{why} | **{f['verdict']}** |")
    return "\n".join(lines)


def forget_examples(preset: str, runs, n: int = 4, every: int | None = None) -> list[dict]:
    """The first forget questions (or every `every`-th) with each run's greedy answer
    ({"question", "truth", "answers": {run: text}}), read from the answers each run record keeps
    (`forget_answers`, so a clone shows them), else from the runs' per-item logs."""
    from .evaluate import cached_logs, load_results

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
        q = prompt.split("Question: ")[-1].split("\nAnswer:")[0].replace("[INST] ", "").replace(" [/INST]", "")
        out.append({"question": q, "truth": truth,
                    "answers": {r: g[k][1] for r, g in gens.items() if k in g}})
    return out
