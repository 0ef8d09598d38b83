"""The study's tables: every run of a preset, seeds aggregated, beside the paper's numbers.

* `main_table(records)`: one row per run (full, retain, each editor x target, each baseline):
  ROUGE / Prob / Truth Ratio on the four TOFU sets, model utility, forget quality, edit time;
  runs repeated over seeds (`<run>-s1`, ...) give the mean and, with two or more seeds, the
  sample standard deviation (`<metric> sd`); collapsed runs stay in the table, marked.
* `paper_comparison(records)`: our numbers next to the paper's (reference.py, cited).
* `VERDICTS`: what findings.py (the paper's findings as data, tested on our runs) may say of each.
* `markdown_table(...)`: the README's table (written by scripts/write_readme_results.py).

Everything is computed from results/<preset>/*.json; nothing here is typed by hand except
the paper's numbers, which live in reference.py.
"""
from __future__ import annotations

import math

import numpy as np

from ..core import reference, registry
from ..core.edit_records import EDIT_PROMPT, EVALUATOR_PROMPT, metric_groups
from ..core.prompts import question_of
from ..core.run_names import prefix, split_seed
from ..eval import uncertainty
from ..eval.evaluate import EVAL_SETS, METRICS, flat_metrics

SET_METRICS = [f"{s}/{m}" for s in EVAL_SETS for m in METRICS]
NUMBERS = SET_METRICS + ["model_utility", "forget_quality"]
SUBJECT_MODEL_RUNS = registry.SUBJECT_MODEL_RUNS   # the subject models' records (base: the pretrained model)
SUBJECT_MODEL = "subject model"                     # their records' `method`
def base_records(records: dict) -> dict:
    """{base run: the record of its lowest seed} (the numbers a rule reads without logs)."""
    out: dict = {}
    for run in sorted(records, key=lambda r: split_seed(r)[1]):
        out.setdefault(split_seed(run)[0], records[run])
    return out


def edit_ms(rec: dict) -> float | None:
    """Median wall time of one edit in ms (editors that record per-edit times), else None."""
    times = (rec.get("stats") or {}).get("edit_times_s")
    return 1000 * float(np.median(times)) if times else None


def _sort_key(base: str):
    """Subject models, then the registered methods in the registry's order (editors, baselines), then the rest."""
    order = SUBJECT_MODEL_RUNS + registry.names()
    head = prefix(base)
    return (order.index(head) if head in order else len(order), base)


def method_kind(method) -> str | None:
    """A record's `method` label as a kind: "subject model", registry.EDITOR or registry.BASELINE (None: unknown)."""
    if method == SUBJECT_MODEL:
        return SUBJECT_MODEL
    spec = registry.of_label(method)
    return spec.kind if spec else None


def sort_runs(runs) -> list[str]:
    """Run names in the study's order (subject models, editors, baselines; seeds together)."""
    return sorted(runs, key=lambda r: (_sort_key(split_seed(r)[0]), split_seed(r)[1]))


def runs_to_attack(records: dict, seeds=(0,)) -> list[str]:
    """Notebook 08's default: the full and retain models, then every finished, non-collapsed study
    run of `seeds` (`records` as store.load_results gives them: no ablations), in the study's order;
    the pretrained base model is no unlearning run."""
    wanted = [r for r in records if r not in SUBJECT_MODEL_RUNS and split_seed(r)[1] in seeds
              and not records[r].get("collapsed")]
    return ["full", "retain"] + sort_runs(wanted)


def describe_run(rec: dict) -> str:
    """One line per run record for the notebooks' logs (recipes.run_grid and the editors' runs)."""
    if rec.get("collapsed"):
        c = rec["collapsed"]
        return f"{rec['run']}: COLLAPSED at {c.get('step')}: {c.get('reason')}"
    return (f"{rec['run']}: MU {rec['model_utility']:.4f}  FQ {rec['forget_quality']:.3g}  "
            f"forget ROUGE {rec['metrics']['forget']['rouge']:.3f}"
            + (f"  (ablation: {rec['ablation']})" if rec.get("ablation") else ""))


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
    `retain`) have one seed. Columns: method, kind ("subject model", "editor", "baseline":
    `method_kind`), target, n_seeds, the 12 set metrics, model utility, forget quality, unlearn
    seconds, median ms per edit, collapsed ("" or "k of n seeds: reason"), and `<key> lo` / `<key> hi` for forget quality, model utility and forget
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
        row = {"run": base, "method": recs[0].get("method"), "kind": method_kind(recs[0].get("method")),
               "target": recs[0].get("target"), "n_seeds": len(recs)}
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


# --------------------------------------------------------------------------- verdicts
# the verdicts findings.py gives each of the paper's findings (its module docstring says when)
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
NOT_TESTABLE, NOT_COMPARABLE = "not testable here", "not comparable"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE, NOT_COMPARABLE)


def rome_edit_table(records: dict):
    """One row per ROME / R-ROME run record: its role (reproduction / ablation) and whether its v_lr
    was chosen by the premise gate (rome_grid.V_LR_GRID), edits asked and done, v_lr, EasyEdit's edit metrics
    before / after (rewrite, rephrase, locality), median ms per edit, and where it collapsed."""
    import pandas as pd

    rows = []
    for run, rec in records.items():
        groups, col = metric_groups(rec), rec.get("collapsed")
        em = groups.get(EDIT_PROMPT, {})
        times = (rec.get("stats") or {}).get("edit_times_s") or []
        rows.append({"run": run, "role": rec.get("role", ""), "gate-selected": rec.get("gate_selected", False),
                     "n edits": rec.get("n_edits"), "v_lr": (rec.get("hparams") or {}).get("v_lr"),
                     "pre rewrite acc": em.get("pre_rewrite_acc_mean"), "rewrite acc": em.get("rewrite_acc_mean"),
                     "rephrase acc": em.get("rephrase_acc_mean"), "locality": em.get("locality_mean"),
                     **({"rewrite acc, evaluator prompt": groups[EVALUATOR_PROMPT].get("rewrite_acc_mean")}
                        if EVALUATOR_PROMPT in groups else {}),
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
# the README's columns with the joint bootstrap's intervals (joint_bootstrap.annotate): FQ's KS
# statistic D beside it, and MU as a fraction of the full model's, paired
JOINT_COLUMNS = README_COLUMNS[:-2] + [("model_utility", "MU"), ("mu/full", "MU / MU(full)"),
                                       ("forget_quality", "FQ"), ("ks_statistic", "KS D")]


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


def forget_examples(preset: str, runs, n: int = 4, every: int | None = None) -> list[dict]:
    """The first forget questions (or every `every`-th) with each run's greedy answer
    ({"question", "truth", "answers": {run: text}}), read from the answers each run record keeps
    (`forget_answers`, so a clone shows them), else from the runs' per-item logs."""
    from ..core.store import cached_logs, load_results

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


def wise_eval_routing_table(records: dict):
    """One row per WISE run, evaluation set and pass (the teacher-forced "loss" pass, the "generate"
    pass): the shares of forward calls, prompt rows and generated-token rows its evaluation sent to a
    side memory (`stats.eval_routing`, recorded by wise.route_watch) and the side memory's mean score."""
    import pandas as pd

    rows = [{"run": run, "set": set_name, "pass": kind, "calls": c.get("calls"), "share of calls": c.get("call_share"),
             "share of prompt rows": c.get("prompt_share"), "share of generated-token rows": c.get("token_share"),
             "mean score, prompts": c.get("prompt_score_mean")}
            for run, rec in records.items() if rec.get("method") == "WISE"
            for set_name, passes in ((rec.get("stats") or {}).get("eval_routing") or {}).items()
            for kind, c in passes.items()]
    return pd.DataFrame(rows).set_index(["run", "set", "pass"]) if rows else pd.DataFrame()
