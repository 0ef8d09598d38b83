"""Notebook 08's verdicts: is a run's forgotten knowledge removed, or only hidden? Judged by levels.

Every attack of `robustness` is run on the unlearned model *and* on the two references, attacked
the same way: the full model (knows the forget set) and the retain model (never saw it). Each
criterion compares the run's level with theirs **under the same attack**, never the run with its
own starting point: a wiped model (GA: forget ROUGE 0) that turns fluent again after relearning
and lands where the retain model lands under the same relearning has learned what anyone learns
from those rows, not recovered anything; a run that lands at the full model's level has.

Criteria (`verdicts`; each True / False / "inconclusive", "uninformative" where the attack cannot
tell the references apart, None where it does not apply):

* **forgotten (question)**: on the plain question the run's forget ROUGE is closer to the retain
  model's than to the full model's.
* **resurfaces: <attack>**, for paraphrase, raw_template, insist, few_shot, persistence (no forget
  data) and relearn after (fine-tuned on 10% of the forget rows, scored on the other 90%): the
  run's forget ROUGE under the attack is closer to the full model's than to the retain model's
  under that attack. Test (`level`): with s = sign(F - R) of the references' means under the
  attack, each row i gives d_i = s (r_i - (F_i + R_i) / 2), on the same rows (the forget questions,
  relearning's held-out rows; `rouge_rows` in robustness.json); mean(d) > 0 <=> closer to the
  full model. Its standard error is the paired one, sd(d) / sqrt(n): every model answers the same
  questions, so the question-to-question spread (a hard question is hard for all) cancels. Where a
  model lacks per-row scores or the rows do not match (another n, relearning on another split),
  the unpaired bound replaces it (means as independent; row variance the sample variance, else
  mu (1 - mu), the Bhatia-Davis bound for a score in [0, 1]): `paired` says which was used.
  An attack under which the references themselves are not apart (s (F_i - R_i), paired, within
  `z` standard errors of 0) cannot tell hidden from removed: "uninformative", left out of the
  verdict (the bare `raw_template` prompt: full 0.02, retain 0.01 on smollm2-forget01).
* **knowledge inside (MIA)**: the run's Min-K% AUC (forget vs holdout rows) is closer to the full
  model's than to the retain model's. Noise: Hanley & McNeil (1982, Radiology 143:29-36)
  for an AUC of n_forget x n_holdout pairs, SE^2 = (A(1-A) + (n1-1)(Q1-A^2) + (n2-1)(Q2-A^2)) /
  (n1 n2), Q1 = A / (2 - A), Q2 = 2 A^2 / (1 + A), with max(A, 1 - A) for A (symmetric in the
  labels); the three AUCs taken as independent (they share the forget and holdout rows; that
  correlation is not estimated: only the AUCs are stored). An AUC far below 0.5 (forget rows less
  likely than unseen ones) is closer to the retain model's: it shows the unlearning, not the facts.
* **still decodable (probe)**: the best layer's linear-probe accuracy on the forget answers is
  closer to the full model's than to the retain model's: s (p - midpoint) against the binomial
  noise of the tokens (unpaired: per-token hits are not stored; tokens of one answer correlate,
  which this understates). IKE is not probed (None).
MIA and probe are "uninformative" too when the references' own values are not apart.

Each criterion decides only when its statistic is more than `z` (1.96) standard errors from 0,
else "inconclusive". Not corrected for the number of criteria (up to 8): "hidden" needs one True,
"removed" every applicable one False, which favours "hidden".

Calibration (`calibration`): each attack's effect on the references, the full model's forget ROUGE
under the attack against its ROUGE on the plain question (relearn after: against relearn before,
the same held-out rows), the retain model's likewise, both with paired standard errors, and the
references' separation under the attack. An attack that cuts the full model's own recall (0.87 to
about 0.5 on smollm2-forget01) is weaker evidence both ways: a run "at the full model's level" under it
recalls only what the attack leaves the full model, and a run held at the retain model's level
shows removal only against that weakened bar.

Verdicts (`VERDICTS`), in this order: **not forgotten** (forgotten (question) is False: nothing to
recover); **hidden by construction** (IKE leaves the weights unchanged, WISE the main memory: the
knowledge is in weights the method did not touch, whatever the attacks show; the criteria are
still reported as evidence); **inconclusive** when forgotten (question) is undecided; **hidden**
when any criterion is True; **removed** when every applicable one is False; else **inconclusive**
with the undecided criteria named. `decided by` names the criteria behind each verdict. A run's
method is its study record's `method` (store.load_results, passed as `records`), else its name's
prefix (ike-*, wise-*).
"""
from __future__ import annotations

import math

import numpy as np

from ..core import registry, run_names

RESURFACING = ("paraphrase", "raw_template", "insist", "few_shot", "persistence")   # without forget data
LEVEL_ATTACKS = RESURFACING + ("relearn after",)
CALIBRATED = ("question",) + LEVEL_ATTACKS
Z_MARGIN = 1.96          # a criterion decides only when its statistic is this many standard errors from its bar
INCONCLUSIVE = "inconclusive"
UNINFORMATIVE = "uninformative"
BY_CONSTRUCTION = {"IKE": "weights unchanged", "WISE": "main memory unchanged"}   # methods that hide by design
_CONSTRUCTION_WHY = {"IKE": "IKE leaves the weights unchanged (a context before the full model)",
                     "WISE": "WISE leaves the main memory unchanged (a routed side memory)"}
VERDICTS = ("not forgotten", "hidden by construction", "hidden", "removed", INCONCLUSIVE)
MIA = "knowledge inside (MIA)"
PROBE = "still decodable (probe)"
FORGOTTEN = "forgotten (question)"


def summary_table(results: dict):
    """One row per run: forget ROUGE and Prob under each attack, relearning before/after,
    probing at the last and the best layer, MIA AUCs and PrivLeak."""
    import pandas as pd

    rows = []
    for run, r in results.items():
        if not isinstance(r, dict) or "question" not in r:
            continue
        row = {"run": run, "ROUGE: question": r["question"]["rouge"], "Prob: question": r["question"]["prob"],
               "ROUGE: paraphrase": r["paraphrase"]["rouge"], "Prob: paraphrase": r["paraphrase"]["prob"]}
        for name, s in r["prompts"].items():
            row[f"ROUGE: {name}"], row[f"Prob: {name}"] = s["rouge"], s["prob"]
        rl = r["relearn"]
        row["ROUGE: relearn before"], row["ROUGE: relearn after"] = rl["before"]["rouge"], rl["after"]["rouge"]
        row["Prob: relearn before"], row["Prob: relearn after"] = rl["before"]["prob"], rl["after"]["prob"]
        row["ROUGE: persistence"], row["Prob: persistence"] = r["persistence"]["after"]["rouge"], r["persistence"]["after"]["prob"]
        pr = r.get("probe") or {}
        if pr.get("linear_probe"):
            row["probe: last layer"], row["probe: best layer"] = pr["linear_probe"][-1], max(pr["linear_probe"])
            row["logit lens: best layer"] = max(pr["logit_lens"])
            row["probe: chance"] = pr["chance"]
        m = r["mia"]
        row["MIA LOSS AUC"], row["MIA Min-K AUC"], row["PrivLeak"] = m["loss_auc"], m["min_k_auc"], m.get("privleak")
        rows.append(row)
    return pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()


# --------------------------------------------------------------------------- noise
def _rouge_entry(r: dict, attack: str) -> dict:
    """The forget_scores entry of one attack ("question", an attack of RESURFACING, "relearn before/after")."""
    if attack in ("question", "paraphrase"):
        return r[attack]
    if attack == "persistence":
        return r["persistence"]["after"]
    if attack.startswith("relearn "):
        return r["relearn"][attack.split(" ")[1]]
    return r["prompts"][attack]


def _mean(entry: dict) -> float:
    """An entry's mean forget ROUGE; NaN where the attack was skipped (stored as null in JSON)."""
    v = entry.get("rouge")
    return math.nan if v is None else float(v)


def baseline_of(attack: str) -> str:
    """The plain-question entry an attack is calibrated against (relearning: the same held-out rows before)."""
    return "relearn before" if attack.startswith("relearn") else "question"


def _row_var(entry: dict) -> float:
    """Variance of one row's ROUGE: the sample variance of the stored per-row scores
    (`rouge_rows`), else the Bhatia-Davis bound mu (1 - mu) for a score in [0, 1] with mean mu."""
    rows = entry.get("rouge_rows")
    if rows is not None and len(rows) > 1:
        return float(np.var(rows, ddof=1))
    mu = _mean(entry)
    return max(mu * (1 - mu), 0.0)


def _paired(terms) -> bool:
    """Do the entries of these (weight, model result, attack) terms hold per-row scores of the same
    rows? The same count everywhere, and for relearning the same split (n_held, relearn_every)."""
    entries = [_rouge_entry(r, a) for _, r, a in terms]
    ns = {len(e.get("rouge_rows") or []) for e in entries} | {int(e.get("n") or 0) for e in entries}
    if len(ns) != 1 or min(ns) < 2:
        return False
    splits = {(r["relearn"].get("n_held"), (r.get("hparams") or {}).get("relearn_every"))
              for _, r, a in terms if a.startswith("relearn")}
    return len(splits) <= 1


def paired_mean(terms) -> dict:
    """Mean and standard error of sum_k w_k x_k over (w_k, model result, attack) terms: per row
    (paired: the standard error of the per-row sums) when every model has per-row scores of the
    same rows (`_paired`), else the unpaired bound (means as independent, `_row_var`).
    {"mean", "se", "paired"}."""
    entries = [(w, _rouge_entry(r, a)) for w, r, a in terms]
    means = [_mean(e) for _, e in entries]
    if any(not math.isfinite(m) for m in means):
        return {"mean": math.nan, "se": math.nan, "paired": False}
    if _paired(terms):
        d = sum(w * np.asarray(e["rouge_rows"], dtype=float) for w, e in entries)
        return {"mean": float(d.mean()), "se": float(d.std(ddof=1) / math.sqrt(len(d))), "paired": True}
    mean = sum(w * m for (w, _), m in zip(entries, means))
    se = math.sqrt(sum(w * w * _row_var(e) / max(int(e.get("n") or 1), 1) for w, e in entries))
    return {"mean": float(mean), "se": se, "paired": False}


def _decide(stat: float, se: float, z: float = Z_MARGIN):
    """stat >= 0 as True / False, or INCONCLUSIVE when |stat| <= z * se."""
    return INCONCLUSIVE if abs(stat) <= z * se else bool(stat >= 0)


def _binomial_var(acc: float, n: int) -> float:
    """Variance of a top-1 accuracy over n tokens taken as independent trials (tokens of one
    answer are correlated, so this understates the noise)."""
    return acc * (1 - acc) / max(n, 1)


def hanley_mcneil_se(auc: float, n1: int, n2: int) -> float:
    """Standard error of an AUC from n1 x n2 pairs (Hanley & McNeil 1982, Radiology 143:29-36);
    symmetric in the labels (computed with max(A, 1 - A)). 0 at AUC 0 or 1 (complete separation)."""
    a = max(auc, 1 - auc)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n2 - 1) * (q2 - a * a)) / max(n1 * n2, 1)
    return math.sqrt(max(var, 0.0))


# --------------------------------------------------------------------------- levels
def level(run: dict, full: dict, retain: dict, attack: str, z: float = Z_MARGIN) -> dict:
    """The run's forget ROUGE under `attack` against the references' under the same attack.
    {"run", "full", "retain", "position" ((run - retain) / (full - retain): 0 = the retain model's
    level, 1 = the full model's), "stat" (s (run - midpoint)), "se", "paired", "separation",
    "separation se", "informative", "closer to full" (True / False / inconclusive /
    "uninformative" / None when skipped)}."""
    f, r, x = (_mean(_rouge_entry(m, attack)) for m in (full, retain, run))
    s = 1.0 if f >= r else -1.0
    stat = paired_mean([(s, run, attack), (-s / 2, full, attack), (-s / 2, retain, attack)])
    sep = paired_mean([(s, full, attack), (-s, retain, attack)])
    informative = sep["mean"] > z * sep["se"]
    if not all(map(math.isfinite, (f, r, x))):
        closer = None
    else:
        closer = _decide(stat["mean"], stat["se"], z) if informative else UNINFORMATIVE
    return {"attack": attack, "run": x, "full": f, "retain": r,
            "position": (x - r) / (f - r) if f != r else math.nan, "stat": stat["mean"], "se": stat["se"],
            "paired": stat["paired"] and sep["paired"], "separation": sep["mean"], "separation se": sep["se"],
            "informative": bool(informative), "closer to full": closer}


def calibration(results: dict, z: float = Z_MARGIN) -> list[dict]:
    """Per attack (the plain question first): the full and retain models' forget ROUGE under it,
    its change from the plain question (relearn after: from relearn before, same rows) with its
    paired standard error, the references' separation under it, and whether it is informative
    (the references apart beyond `z` standard errors) and whether it weakens the full model
    (its recall falls beyond the noise)."""
    if "full" not in results or "retain" not in results:
        return []
    F, R = results["full"], results["retain"]
    out = []
    for a in CALIBRATED:
        b = baseline_of(a)
        lv = level(F, F, R, a, z)
        row = {"attack": a}
        for name, m in (("full", F), ("retain", R)):
            ch = paired_mean([(1, m, a), (-1, m, b)])
            q = _mean(_rouge_entry(m, b))
            row.update({f"{name}": lv[name], f"{name}: plain": q, f"{name}: change": ch["mean"],
                        f"{name}: change se": ch["se"]})
        row["full keeps"] = lv["full"] / row["full: plain"] if row["full: plain"] else math.nan
        row.update({"separation": lv["separation"], "separation se": lv["separation se"],
                    "informative": lv["informative"], "paired": lv["paired"],
                    "weakens the full model": a != "question" and row["full: change"] < -z * row["full: change se"]})
        out.append(row)
    return out


def method_of(run: str, records: dict | None = None) -> str | None:
    """The run's method: its study record's `method`, else the label the registry gives its name's
    prefix (ike-* IKE, wise-* WISE, rome-* ROME, a baseline its name), else the prefix."""
    rec = (records or {}).get(run) or {}
    if rec.get("method"):
        return rec["method"]
    spec = registry.of_prefix(run_names.prefix(run))
    return spec.label if spec else run_names.prefix(run)


def mia_level(res: dict, F: dict, R: dict, z: float = Z_MARGIN) -> dict:
    """The run's Min-K% AUC against the references' (as `level` does for ROUGE): {"run", "full",
    "retain", "stat" (s (AUC - midpoint)), "se" (Hanley-McNeil, the three AUCs independent),
    "separation", "separation se", "informative", "closer to full"} ("closer to full" None when an AUC is missing)."""
    get = lambda m: (m.get("mia") or {}).get("min_k_auc")   # noqa: E731
    a, af, ar = get(res), get(F), get(R)
    out = {"run": a, "full": af, "retain": ar, "stat": math.nan, "se": math.nan, "separation": math.nan,
           "separation se": math.nan, "informative": False, "closer to full": None}
    if any(v is None or not math.isfinite(v) for v in (a, af, ar)):
        return out
    def se(m, v):
        return hanley_mcneil_se(v, int(m["mia"].get("n_forget") or 1), int(m["mia"].get("n_holdout") or 1))

    s = 1.0 if af >= ar else -1.0
    out.update({"stat": s * (a - (af + ar) / 2),
                "se": math.sqrt(se(res, a) ** 2 + (se(F, af) ** 2 + se(R, ar) ** 2) / 4),
                "separation": s * (af - ar), "separation se": math.hypot(se(F, af), se(R, ar))})
    out["informative"] = bool(out["separation"] > z * out["separation se"])
    out["closer to full"] = _decide(out["stat"], out["se"], z) if out["informative"] else UNINFORMATIVE
    return out


def _probe(r, full, ret, res, F, R, z):
    """(still decodable (probe), the run's best-layer probe accuracy) from the summary table's rows
    (`r`, `full`, `ret`) and the results' token counts (`res`, `F`, `R`): closer to the full
    model's accuracy than to the retain model's, binomial noise of the tokens (`_binomial_var`)."""
    probe = r.get("probe: best layer")
    if probe is None or (isinstance(probe, float) and math.isnan(probe)):
        return None, None
    pf, pr = full["probe: best layer"], ret["probe: best layer"]
    n = lambda x: int((x.get("probe") or {}).get("n_tokens") or 1)  # noqa: E731
    vf, vr = _binomial_var(pf, n(F)), _binomial_var(pr, n(R))
    s = 1.0 if pf >= pr else -1.0
    if s * (pf - pr) <= z * math.sqrt(vf + vr):
        return UNINFORMATIVE, float(probe)
    se = math.sqrt(_binomial_var(probe, n(res)) + (vf + vr) / 4)
    return _decide(s * (probe - (pf + pr) / 2), se, z), float(probe)


def _reasons(crit: dict, value) -> str:
    """The criteria with this value, in words: "resurfaces under persistence, relearn after; knowledge inside (MIA)"."""
    attacks = [k.split(": ", 1)[1] for k, v in crit.items() if k.startswith("resurfaces: ") and v is value]
    other = [k for k, v in crit.items() if not k.startswith("resurfaces: ") and v is value]
    if value is True:
        words = (["resurfaces under " + ", ".join(attacks)] if attacks else []) + other
    else:
        words = (["closer to the retain model under " + ", ".join(attacks)] if attacks else []) + \
                [f"{k.split(' (')[1][:-1]} like the retain model's" for k in other]
    return "; ".join(words)


def verdicts(results: dict, table=None, utility: dict | None = None, z: float = Z_MARGIN,
             records: dict | None = None) -> list[dict]:
    """Per unlearned run: its level against the references under every attack, the MIA and probe
    criteria, and the verdict with the criteria that decided it (module docstring). `utility`
    ({run: MU / MU(full)}) is reported beside, since a destroyed model "removes" everything;
    `records` (store.load_results) give each run's method (else its name's prefix)."""
    t = summary_table(results) if table is None else table
    if "full" not in t.index or "retain" not in t.index:
        return []
    F, R = results["full"], results["retain"]
    full, ret = t.loc["full"], t.loc["retain"]
    out = []
    for run in t.index:
        if run in ("full", "retain") or run not in results:
            continue
        res, method = results[run], method_of(run, records)
        q = level(res, F, R, "question", z)
        forgotten = q["closer to full"] if q["closer to full"] in (None, INCONCLUSIVE, UNINFORMATIVE) \
            else not q["closer to full"]
        crit, item = {}, {"run": run, "method": method, "forget ROUGE (question)": q["run"],
                          "level: question": q["position"], FORGOTTEN: forgotten}
        unpaired = [] if q["paired"] else ["question"]
        for a in LEVEL_ATTACKS:
            lv = level(res, F, R, a, z)
            item[f"level: {a}"], crit[f"resurfaces: {a}"] = lv["position"], lv["closer to full"]
            unpaired += [] if lv["paired"] else [a]
        mia = mia_level(res, F, R, z)
        crit[MIA], item["MIA Min-K AUC"] = mia["closer to full"], mia["run"]
        crit[PROBE], item["probe acc. (best layer)"] = _probe(t.loc[run], full, ret, res, F, R, z)
        held = [k for k, v in crit.items() if v is True]
        undecided = [k for k, v in crit.items() if v == INCONCLUSIVE]
        if forgotten is False:
            verdict, by, undecided = "not forgotten", ["closer to the full model on the plain question"], []
        elif method in BY_CONSTRUCTION:
            evidence = _reasons(crit, True)
            verdict, undecided = "hidden by construction", []
            by = [_CONSTRUCTION_WHY[method], f"evidence: {evidence}" if evidence else ""]
        elif forgotten is not True:   # inconclusive, or the question skipped
            verdict, by, undecided = INCONCLUSIVE, [], [FORGOTTEN]
        elif held:
            verdict, by, undecided = "hidden", [_reasons(crit, True)], []
        else:
            by = [_reasons(crit, False)]
            verdict = INCONCLUSIVE if undecided else "removed"
        item.update(crit)
        item.update({"uninformative": ", ".join(k for k, v in crit.items() if v == UNINFORMATIVE),
                     "unpaired": ", ".join(unpaired),
                     "MU / MU(full)": None if utility is None else utility.get(run),
                     "verdict": verdict, "decided by": "; ".join(b for b in by if b),
                     "undecided": ", ".join(undecided)})
        out.append(item)
    return out


def utility_of(records: dict) -> dict:
    """{run: MU / MU(full)} from the study's result records (store.load_results)."""
    mu_full = (records.get("full") or {}).get("model_utility")
    return {run: rec["model_utility"] / mu_full for run, rec in records.items()
            if mu_full and rec.get("model_utility") is not None}


# --------------------------------------------------------------------------- markdown
_MARK = {True: "F", False: "R", INCONCLUSIVE: "?", UNINFORMATIVE: "n/i", None: "–"}


def _fmt(x, spec=".2f", none="–"):
    return none if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def markdown_calibration(results: dict, z: float = Z_MARGIN) -> str:
    """The attacks' calibration as a markdown table: the references' forget ROUGE under each attack."""
    rows = calibration(results, z)
    lines = [("| attack | full model: forget ROUGE (change from the plain question) | retain model (change) "
              "| full − retain (± SE) | reading |"), "|---|---|---|---|---|"]

    def change(c, who):
        return "" if c["attack"] == "question" else f" ({c[who + ': change']:+.2f} ± {c[who + ': change se']:.2f})"

    for c in rows:
        reading = ("reference" if c["attack"] == "question" else
                   "uninformative: cannot tell the references apart" if not c["informative"] else
                   f"weakens the full model (keeps {c['full keeps']:.0%} of its recall): weaker evidence"
                   if c["weakens the full model"] else "informative")
        lines.append(f"| {c['attack']} | {c['full']:.2f}{change(c, 'full')} | {c['retain']:.2f}{change(c, 'retain')} | "
                     f"{c['separation']:+.2f} ± {c['separation se']:.2f} | {reading} |")
    return "\n".join(lines)


def _short(criterion: str) -> str:
    return criterion.split(": ", 1)[1] if criterion.startswith("resurfaces: ") else criterion.split(" (")[1][:-1]


def _short_why(item: dict) -> str:
    """The verdict's reasons for the README table, its cells carrying the detail."""
    crit = [k for k in item if k.startswith("resurfaces: ") or k in (MIA, PROBE)]
    held = ", ".join(_short(k) for k in crit if item[k] is True)
    if item["verdict"] == "not forgotten":
        return "question F"
    if item["verdict"] == "hidden by construction":
        return f"{item['method']}: {BY_CONSTRUCTION[item['method']]}" + (f"; F: {held}" if held else "")
    if item["verdict"] == "hidden":
        return f"F: {held}"
    if item["verdict"] == "removed":
        return "R under every informative criterion"
    return "undecided: " + ", ".join(_short(k) if k != FORGOTTEN else "question" for k in item["undecided"].split(", "))


def markdown_summary(results: dict, records: dict | None = None) -> str:
    """The README's robustness tables: per run, its forget ROUGE under each attack marked against
    the references under the same attack, the MIA and probe evidence, the verdict and what decided
    it (`records`, the study's result records, add MU as a fraction of the full model's and each
    run's method); then the attacks' calibration."""
    t = summary_table(results)
    v = verdicts(results, t, utility_of(records) if records else None, records=records)
    if not v:
        return "_robustness results need the full and retain models' rows_"
    full, ret = t.loc["full"], t.loc["retain"]
    cal = {c["attack"]: c for c in calibration(results)}
    heads = [f"{a} (full {cal[a]['full']:.2f}, retain {cal[a]['retain']:.2f})" for a in CALIBRATED]
    lines = ["| run | MU / MU(full) | " + " | ".join(heads) + " | "
             f"MIA Min-K AUC (full {full['MIA Min-K AUC']:.2f}, retain {ret['MIA Min-K AUC']:.2f}) | PrivLeak | "
             f"probe acc., best layer (full {_fmt(full.get('probe: best layer'))}, "
             f"retain {_fmt(ret.get('probe: best layer'))}) "
             "| verdict (decided by) |",
             "|---|---|" + "---|" * len(heads) + "---|---|---|---|"]
    for item in v:
        r, res = t.loc[item["run"]], results[item["run"]]
        forgot = item[FORGOTTEN]
        mark = _MARK[(not forgot) if isinstance(forgot, bool) else forgot]      # the question: F = not forgotten
        cells = [f"{_fmt(item['forget ROUGE (question)'], '.3f')} {mark}"]
        cells += [f"{_fmt(_rouge_entry(res, a)['rouge'])} {_MARK[item[f'resurfaces: {a}']]}" for a in LEVEL_ATTACKS]
        mia = f"{_fmt(item['MIA Min-K AUC'])} {_MARK[item[MIA]]}"
        probe = ("n/a (weights unchanged)" if item["probe acc. (best layer)"] is None
                 else f"{item['probe acc. (best layer)']:.2f} {_MARK[item[PROBE]]}")
        why = _short_why(item)
        lines.append(f"| {item['run']} | {_fmt(item['MU / MU(full)'])} | " + " | ".join(cells) + f" | {mia} | "
                     f"{_fmt(r['PrivLeak'], '.0f')} | {probe} | **{item['verdict']}** ({why}) |")
    legend = ("F = closer to the full model's level under the same attack, beyond the noise (for the question: not "
              "forgotten); R = closer to the retain model's; ? = within the noise; n/i = the attack does not separate "
              "the full model from the retain model (uninformative). Noise: paired over the same forget rows "
              f"(z = {Z_MARGIN}); MIA: Hanley-McNeil standard error of each AUC.")
    return ("\n".join(lines) + "\n\n" + legend + "\n\n**Calibration of the attacks** (the references under each "
            "attack):\n\n" + markdown_calibration(results))
