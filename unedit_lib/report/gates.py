"""Premise gates: did each editor run work as the method is meant to, before its findings count?

A finding about an editor is only evidence against the paper when the editor did what the
paper's runs did. Each gate reads one number from a run record (runner.run_unlearning writes them; nothing is recomputed here) and compares it with a stated
threshold:

* ROME / R-ROME, "edits take": mean rewrite accuracy of the edit prompts after all sequential
  edits (record `edit_metrics.rewrite_acc_mean`; before any edit: `pre_rewrite_acc_mean`) is
  at least `EDITS_TAKE_MIN` = 0.8. The paper's repo reached 0.985 for ROME-dummy (paper.md 7.3).
* IKE, read on every forget row the evaluator asks, each with the context retrieved for it
  (`stats.edit_metrics.forget_rows`): "edit takes", the rows' mean rewrite accuracy of the target
  with their context is at least `EDITS_TAKE_MIN` (the paper's repo had 1.0 / 0.996 / 0.999 on its
  40 requests, paper.md 7.3); "the context lifts it", that mean is above the same rows' without any
  context (the model gives the target because of its context). A record made before the per-row
  numbers were recorded gives "unknown" (its few requests' numbers are shown as context). The
  subject model's held-out in-context probe (`evaluate.in_context_probe`, stored by
  `record_in_context_probe`) describes the model and gates nothing.
* WISE, "router selective", read on the routes the evaluation itself took (`stats.eval_routing`,
  recorded per set and pass by wise.route_watch): the share of the rows the side memory served in
  each pass (the teacher-forced loss pass: prompt + answer rows; the generation: its prompt rows
  and every generated token's row). The forget set is routed when both passes send at least
  `ROUTE_FORGET_MIN` = 0.8 of their rows there (the lower share counts); retain, real-author and
  world-fact sets are left to the main memory when neither pass sends more than `ROUTE_OTHER_MAX`
  = 0.2 (the higher share counts). WISE's claim: edited knowledge in the side memory, everything
  else in the main one (editing.md section 4). A record made before the evaluation's routes were
  recorded gives "unknown": its per-prompt routing (`stats.routing`, each prompt scored alone, not
  the evaluator's batches) is shown as context, never gated on.

Each method's gates are attached to its entry of registry.py (below: ROME's serve R-ROME too);
`run_gates` reads them from there by the record's `method` label.

Which gates a finding rests on is findings.PREMISES' choice ("edit acts": ROME's and IKE's edits
take, WISE routes the forget prompts; "others not routed": what "WISE keeps utility" relies on);
findings about damage ("breaks down") and about what happens anyway ("WISE barely forgets") rest
on none. A number that the record lacks gives the status "unknown": it never counts as holding.
"""
from __future__ import annotations

import math
import operator

from ..core import presets, registry
from ..core.edit_records import EDIT_PROMPT, metric_groups as edit_metric_groups

EDITS_TAKE_MIN = 0.8      # mean rewrite accuracy after the edits (the paper's ROME-dummy: 0.985)
IKE_FOLLOW_MIN = 0.5      # in-context follow rate: more than half the probe questions (notebook 04)
ROUTE_FORGET_MIN = 0.8    # share of forget prompts routed to the side memory
ROUTE_OTHER_MAX = 0.2     # share of retain / real-author / world-fact prompts routed there, each

HOLDS, FAILS, UNKNOWN = "holds", "fails", "unknown"
OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt}
_OTHER_SETS = (("retain", "retain"), ("real_authors", "real-author"), ("world_facts", "world-fact"))


def _dig(obj, *path):
    """obj[path[0]][path[1]]... or None where a step is missing."""
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _number(v):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _gate(run, gate, value, op, threshold, source, context="", short=""):
    """One gate row: status "holds" / "fails" / "unknown" (value missing); `short` names the
    premise in a few words for lists over many runs."""
    value = _number(value)
    status = UNKNOWN if value is None else HOLDS if OPS[op](value, threshold) else FAILS
    return {"run": run, "gate": gate, "value": value, "threshold": f"{op} {threshold:g}", "status": status,
            "source": source, "context": context, "short": short or gate}


def probe_summary(probe: dict) -> dict:
    """The JSON-able numbers of `evaluate.in_context_probe` (its per-item table left out), to
    store as a record's `stats.in_context_probe` (or the full model's `in_context_probe`)."""
    return {k: v for k, v in probe.items() if k != "items"}


def record_in_context_probe(preset: str, probe: dict, run: str = "full") -> None:
    """Store the subject model's in-context probe (`evaluate.in_context_probe(full model, ...)`)
    in results/<preset>/<run>.json as `in_context_probe` (atomically), where the README reads
    it (a description of the model; no gate reads it). Re-evaluating that run rewrites its record
    without it, so a probe of an older model is never shown for a newer one."""
    from ..core import paths, store

    path = paths.record_path(preset, run)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no record of run {run!r}; evaluate the subject models first "
                                "(notebooks/01_subject_models.ipynb)")
    rec = store.read_json(path, "run record")
    rec["in_context_probe"] = store.to_jsonable(probe_summary(probe))
    store.write_json(rec, path)


def rome_gates(run: str, rec: dict, records: dict | None = None) -> list[dict]:
    em = edit_metric_groups(rec).get(EDIT_PROMPT, {})        # the prompts the edits were made with
    pre = _number(em.get("pre_rewrite_acc_mean"))
    n = em.get("n_edits") or rec.get("n_edits")
    return [_gate(run, "edits take (rewrite acc. after all edits)", em.get("rewrite_acc_mean"), ">=", EDITS_TAKE_MIN,
                  "edit_metrics.rewrite_acc_mean",
                  (f"before the edits {pre:.3f}" if pre is not None else "") + (f", {n} edits" if n else ""),
                  "edits take")]



def rome_edits_take(run: str, rec: dict) -> bool:
    """Whether a ROME run's edits take: its `rome_gates` gate holds (rewrite accuracy after all edits)."""
    return rome_gates(run, rec)[0]["status"] == HOLDS


def ike_gates(run: str, rec: dict, records: dict) -> list[dict]:
    """IKE's premise, on every forget row: its context makes the model give the target, and because of
    the context. Records without the per-row numbers: "unknown", the requests' numbers as context."""
    rows = _dig(rec, "stats", "edit_metrics", "forget_rows") or {}
    means, counts, n = rows.get("means") or {}, rows.get("counts") or {}, rows.get("n")
    if means:
        with_, lift = means.get("rewrite_acc_with_context"), means.get("rewrite_acc_lift")
        without = _number(means.get("rewrite_acc_without_context"))
        beats = counts.get("target_beats_truth_with_context")
        ctx_take = (f"{n} forget rows" + (f"; the target beats the truth on {beats}" if beats is not None else "")
                    + (f" (without the context {counts.get('target_beats_truth_without_context')})"
                       if counts.get("target_beats_truth_without_context") is not None else ""))
        ctx_lift = f"without the context {without:.3f}" if without is not None else ""
    else:
        post = _number(_dig(rec, "stats", "edit_metrics", "post", "rewrite_acc"))
        with_ = lift = None
        ctx_take = ctx_lift = "not recorded on every forget row" + (
            f"; its {len(_dig(rec, 'stats', 'edit_metrics', 'per_request', 'rewrite_acc') or [])} requests: {post:.3f}"
            if post is not None else "")
    src = "stats.edit_metrics.forget_rows.means"
    return [_gate(run, "edit takes (rewrite acc. with the context, every forget row)", with_, ">=", EDITS_TAKE_MIN,
                  f"{src}.rewrite_acc_with_context", ctx_take, "edit takes"),
            _gate(run, "the context lifts it (rewrite acc. with minus without the context)", lift, ">", 0.0,
                  f"{src}.rewrite_acc_lift", ctx_lift, "context lifts")]


def eval_routed_shares(rec: dict, set_name: str) -> dict:
    """{pass: share of its rows the side memory served} of one evaluation set ({} when the record
    has no `stats.eval_routing`): "loss" (prompt + answer rows), "generate" (prompt and token rows)."""
    out = {}
    for kind, c in (_dig(rec, "stats", "eval_routing", set_name) or {}).items():
        rows = (c.get("prompt_rows") or 0) + (c.get("token_rows") or 0)
        out[kind] = ((c.get("prompt_rows_routed") or 0) + (c.get("token_rows_routed") or 0)) / rows if rows else None
    return out


def wise_gates(run: str, rec: dict, records: dict | None = None) -> list[dict]:
    per_prompt = _dig(rec, "stats", "routing", "sets") or {}
    out = []
    for key, name, op, bar, pick in (("forget", "forget", ">=", ROUTE_FORGET_MIN, min),
                                     *((k, n, "<=", ROUTE_OTHER_MAX, max) for k, n in _OTHER_SETS)):
        shares = {k: v for k, v in eval_routed_shares(rec, key).items() if v is not None}
        if shares:
            value = pick(shares.values())
            context = ", ".join(f"{'generation' if k == 'generate' else k} {v:.3f}" for k, v in sorted(shares.items()))
        else:
            alone = _number(_dig(per_prompt, key, "side_rate"))
            value, context = None, ("the evaluation's routes not recorded" +
                                    (f"; prompts scored alone: {alone:.3f}" if alone is not None else ""))
        out.append(_gate(run, f"router: share of the {name} set's evaluation sent to the side memory "
                              f"({'lower' if pick is min else 'higher'} of its passes)", value, op, bar,
                         f"stats.eval_routing.{key}", context, f"{name} prompts routed"))
    return out


for _name, _gates in (("rome", rome_gates), ("rrome", rome_gates), ("ike", ike_gates), ("wise", wise_gates)):
    registry.attach(_name, gates=_gates)


def run_gates(run: str, rec: dict, records: dict | None = None) -> list[dict]:
    """The gates of one run record: its method's registered `gates` (none for methods without
    premises: subject models, baselines)."""
    spec = registry.of_label(str(rec.get("method") or ""))
    fn = registry.code(spec.name, "gates", None) if spec else None
    return fn(run, rec, records or {}) if fn else []


def gate_rows(records: dict) -> list[dict]:
    """Every gate of every run record ({run: record}, e.g. store.load_results(preset))."""
    return [g for run, rec in records.items() for g in run_gates(run, rec, records)]


def gate_table(records: dict, methods=None):
    """A tidy table of the premise gates, one row per run and gate: run, gate, value,
    threshold, status (holds / fails / unknown), where the value comes from, context, short
    name. `methods` (e.g. ("ROME", "R-ROME")) keeps those methods' runs (an editor notebook's)."""
    import pandas as pd

    if methods is not None:
        methods = {methods} if isinstance(methods, str) else set(methods)
        keep = {run for run, rec in records.items() if rec.get("method") in methods}
        rows = [g for g in gate_rows(records) if g["run"] in keep]
    else:
        rows = gate_rows(records)
    cols = ["run", "gate", "value", "threshold", "status", "source", "context", "short"]
    return pd.DataFrame(rows, columns=cols)


def describe(g: dict) -> str:
    """'rome-dummy: edits take (...) 0.040 (needs >= 0.8; before the edits 0.000)'."""
    v = "not recorded" if g["value"] is None else f"{g['value']:.3f}"
    ctx = f"; {g['context']}" if g.get("context") else ""
    return f"{g['run']}: {g['gate']} {v} (needs {g['threshold']}{ctx})"


def markdown_gates(rows) -> str:
    """The README's gates table (rows: gate_rows or gate_table's records)."""
    rows = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    lines = ["| run | premise | value | needs | status |", "|---|---|---|---|---|"]
    for g in rows:
        v = "not recorded" if g["value"] is None or (isinstance(g["value"], float) and math.isnan(g["value"])) \
            else f"{g['value']:.3f}"
        ctx = f" ({g['context']})" if g.get("context") else ""
        lines.append(f"| {g['run']} | {g['gate']} | {v}{ctx} | {g['threshold']} | **{g['status']}** |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the subject models (notebook 01)
# What TOFU's protocol asks of a full / retain model pair before any unlearning can be measured on it
SUBJECT_TARGETS = dict(full_forget_rouge=0.8, forget_rouge_gap=0.4, max_forget_quality=0.01,
                       max_utility_gap=0.05, max_general_rouge_drop=0.1)


def _preset_targets(name) -> dict:
    """The [subject_targets] of a preset's file (none for a record without a preset; a record's former
    preset name is read as the preset's name now: presets.current_name)."""
    if name is None:
        return {}
    p = presets.get_preset(presets.current_name(name))
    unknown = sorted(set(p.subject_targets) - set(SUBJECT_TARGETS))
    if unknown:
        raise ValueError(f"{p.file or p.name}: [subject_targets] sets {unknown}; valid: {sorted(SUBJECT_TARGETS)}")
    return dict(p.subject_targets)


def subject_model_targets(full: dict, retain: dict, base: dict | None = None, targets: dict | None = None) -> list[dict]:
    """Rows {target, value, limit, holds} from the evaluation summaries (records) of the full,
    retain and (for a fine-tuned preset) pretrained base model; `targets` default: SUBJECT_TARGETS with
    the records' preset's own (its file's [subject_targets])."""
    t = targets or {**SUBJECT_TARGETS, **_preset_targets(full.get("preset"))}
    f_rouge, r_rouge = full["metrics"]["forget"]["rouge"], retain["metrics"]["forget"]["rouge"]
    gap_mu = abs(full["model_utility"] - retain["model_utility"])
    rows = [
        {"target": "full model's forget ROUGE-L recall", "value": f_rouge, "limit": f">= {t['full_forget_rouge']}",
         "holds": f_rouge >= t["full_forget_rouge"]},
        {"target": "full minus retain model's forget ROUGE", "value": f_rouge - r_rouge,
         "limit": f">= {t['forget_rouge_gap']}", "holds": f_rouge - r_rouge >= t["forget_rouge_gap"]},
        {"target": "forget quality of the full model (vs retain)", "value": full["forget_quality"],
         "limit": f"<= {t['max_forget_quality']}", "holds": full["forget_quality"] <= t["max_forget_quality"]},
        {"target": "|MU(full) - MU(retain)|", "value": gap_mu, "limit": f"<= {t['max_utility_gap']}",
         "holds": gap_mu <= t["max_utility_gap"]},
    ]
    if base is not None:
        for which, rec in (("full", full), ("retain", retain)):
            for s in ("real_authors", "world_facts"):
                drop = base["metrics"][s]["rouge"] - rec["metrics"][s]["rouge"]
                rows.append({"target": f"{s} ROUGE drop of the {which} model from the pretrained one", "value": drop,
                             "limit": f"<= {t['max_general_rouge_drop']}", "holds": drop <= t["max_general_rouge_drop"]})
    return rows
