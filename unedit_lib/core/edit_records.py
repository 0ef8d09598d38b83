"""Reading the edit-level metrics (edit_metrics.py) back from a run record, in one shape for every
editor: gates, summary and report read them through `metric_groups`."""
from __future__ import annotations

EDIT_PROMPT, EVALUATOR_PROMPT = "edit prompt", "evaluator prompt"


def metric_groups(rec: dict) -> dict[str, dict]:
    """A run record's edit-level metrics in one shape, whichever editor wrote them:
    {prompt group: {"pre_rewrite_acc_mean", "rewrite_acc_mean", "rephrase_acc_mean", "locality_mean",
    "n_edits", ...}}, group EDIT_PROMPT (the prompts the edit was made with) and, where the edit was
    written in another template than the evaluator asks in, EVALUATOR_PROMPT. Records hold them as
    ROME: `edit_metrics` (flat, or by group); WISE: `stats.edit_metrics` by group; IKE:
    `stats.edit_metrics` {pre, post, per_request} (its edit prompt is the evaluator's). {} when none."""
    em = rec.get("edit_metrics") or (rec.get("stats") or {}).get("edit_metrics") or {}
    if not isinstance(em, dict):
        return {}
    if isinstance(em.get("post"), dict):                               # IKE
        pre, post, per = em.get("pre") or {}, em["post"], em.get("per_request") or {}
        return {EDIT_PROMPT: {"pre_rewrite_acc_mean": pre.get("rewrite_acc"), "rewrite_acc_mean": post.get("rewrite_acc"),
                              "rephrase_acc_mean": post.get("rephrase_acc"), "locality_mean": post.get("locality"),
                              "n_edits": len(per.get("rewrite_acc") or []) or None}}
    groups = {k: v for k, v in em.items() if k in (EDIT_PROMPT, EVALUATOR_PROMPT) and isinstance(v, dict)}
    if groups:
        return groups
    return {EDIT_PROMPT: em} if "rewrite_acc_mean" in em or "pre_rewrite_acc_mean" in em else {}
