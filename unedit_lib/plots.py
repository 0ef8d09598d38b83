"""Figures of the study (matplotlib/seaborn), saved as PNG.

The `default` preset writes into figures/ (committed, shown by the README); every other
preset writes into runs/<preset>/figures/ so that test runs never overwrite them
(`data.output_dir` moves both).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from . import paths  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")


def figure_path(preset: str, name: str) -> Path:
    path = paths.figure_path(preset, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def save(fig, preset: str, name: str) -> Path:
    path = figure_path(preset, name)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    tmp.replace(path)
    return path


def _smooth(x, k=10):
    x = np.asarray(x, dtype=float)
    if len(x) < k:
        return x
    return np.convolve(x, np.ones(k) / k, mode="valid")


def training_curves(training_logs: dict, preset: str):
    """Training loss per step of the subject models ({"full": log, "retain": log})."""
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for which, log in training_logs.items():
        ax.plot(_smooth(log["loss"]), label=which)
    ax.set(xlabel="optimizer step", ylabel="training loss (10-step mean)", yscale="log",
           title=f"Subject models ({preset})")
    ax.legend()
    save(fig, preset, "subject_model_training.png")
    return fig


def subject_effect(check: dict, preset: str):
    """Probability of the correct first answer token after restoring the subject's last-token
    hidden state at each layer (mean over facts), against the clean and corrupted runs."""
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    layers = np.arange(len(check["restored_mean"]))
    ax.plot(layers, check["restored_mean"], marker="o", label="restore subject's last token")
    ax.axhline(check["clean_mean"], color="g", ls="--", label="clean")
    ax.axhline(check["corrupted_mean"], color="r", ls=":", label="subject corrupted")
    ax.set_xticks(layers)
    ax.set(xlabel="layer", ylabel="p(first answer token)", title=f"Subject last-token restoration ({preset})")
    ax.legend()
    save(fig, preset, "subject_last_token_trace.png")
    return fig


# --------------------------------------------------------------------------- 06 baselines
_BASELINE_PARTS = {"forget_nll": "NLL(forget)", "retain_nll": "NLL(retain)", "kl": "KL(ref‖θ) retain",
                   "npo": "NPO term", "idk_nll": "NLL(IdK answer)"}


def baseline_loss_curves(records: dict, preset: str):
    """Per-optimizer-step curves of the unlearning baselines (notebook 06): one panel per run
    with the minimised loss and its components (stats recorded by baselines.unlearn). A
    collapsed run shows its curve up to the collapse and is titled as collapsed."""
    runs = [r for r, rec in records.items() if (rec.get("stats") or {}).get("loss_curve") is not None]
    if not runs:
        raise ValueError("no run with a recorded loss curve")
    fig, axes = plt.subplots(1, len(runs), figsize=(3.4 * len(runs), 3.3), squeeze=False)
    for ax, run in zip(axes[0], runs):
        rec, st = records[run], records[run]["stats"]
        steps = np.arange(1, len(st["loss_curve"]) + 1)
        ax.plot(steps, st["loss_curve"], color="k", lw=2, label="loss (minimised)")
        for key, label in _BASELINE_PARTS.items():
            if st.get(key):
                ax.plot(steps[:len(st[key])], st[key], marker=".", lw=1, label=label)
        title = f"{st.get('name', run)} ({run})"
        if rec.get("collapsed"):
            title += f"\ncollapsed at step {rec['collapsed'].get('step')}"
            ax.axvline(len(steps) + 0.5, color="r", ls=":")
        ax.set(xlabel="optimizer step", title=title)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("per-step mean")
    lr = (records[runs[0]].get("hparams") or {}).get("lr")
    fig.suptitle(f"Unlearning baselines: loss per step ({preset}" + (f", lr {lr:g})" if lr else ")"), y=1.02)
    fig.tight_layout()
    save(fig, preset, "baselines_loss_curves.png")
    return fig


# --------------------------------------------------------------------------- causal tracing (notebook 02)
_TRACE_KINDS = (("hidden", "Purples"), ("mlp", "Greens"), ("attn", "Reds"))


def trace_fact_heatmaps(rec: dict, preset: str, name: str):
    """rome's three token x layer heatmaps (hidden state, MLP window, attention window) of one fact
    (`rec` = one entry of trace.trace_facts()["traces"])."""
    from . import trace

    kinds = [k for k, _ in _TRACE_KINDS if k in rec]
    n_tok = len(rec[kinds[0]]["scores"])
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.6 * len(kinds), 1.6 + 0.24 * n_tok))
    for ax, k in zip(np.atleast_1d(axes), kinds):
        trace.plot_trace(rec[k], ax=ax, title=f"{k}: restore after corrupting the subject")
        ax.title.set_fontsize(9)
        ax.xaxis.label.set_fontsize(8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{rec['question']}  (subject: {rec['subject']})", fontsize=9)
    fig.tight_layout()
    save(fig, preset, name)
    return fig


def trace_average_heatmaps(avgs: dict, preset: str, name: str = "trace_average.png"):
    """Average p(answer) after restoration over facts, tokens grouped into rome's six classes
    (first/middle/last subject token, first subsequent, further tokens, last token) x layers."""
    fig, axes = plt.subplots(1, len(avgs), figsize=(4.6 * len(avgs), 2.8))
    for ax, (k, cmap) in zip(np.atleast_1d(axes), [(k, c) for k, c in _TRACE_KINDS if k in avgs]):
        a = avgs[k]
        mesh = ax.pcolormesh(np.nan_to_num(a["scores"], nan=a["low_score"]), cmap=cmap, vmin=a["low_score"])
        ax.invert_yaxis()
        ax.set_yticks(np.arange(len(a["labels"])) + 0.5)
        ax.set_yticklabels([f"{l} (n={c})" for l, c in zip(a["labels"], a["count"])], fontsize=7)
        L = a["scores"].shape[1]
        ax.set_xticks(np.arange(L) + 0.5)
        ax.set_xticklabels(range(L), fontsize=7)
        ax.set_xlabel("layer" if k == "hidden" else f"centre of restored {k} window", fontsize=8)
        ax.set_title(f"{k}: mean p(o) over {a['n']} facts\nclean {a['high_score']:.3f}, corrupted {a['low_score']:.3f}",
                     fontsize=9)
        fig.colorbar(mesh, ax=ax, format="%.3g")
    fig.tight_layout()
    save(fig, preset, name)
    return fig


def trace_aie_lines(avgs: dict, preset: str, name: str = "trace_aie.png",
                    rows=("First subject token", "Last subject token", "Further tokens", "Last token")):
    """Average indirect effect per layer with 95% bands, one panel per kind (rome's line plots)."""
    from . import trace

    fig, axes = plt.subplots(1, len(avgs), figsize=(4.4 * len(avgs), 3), sharey=True)
    for ax, k in zip(np.atleast_1d(axes), [k for k, _ in _TRACE_KINDS if k in avgs]):
        trace.plot_average(avgs[k], ax=ax, rows=[r for r in rows if avgs[k]["count"][avgs[k]["labels"].index(r)]])
        ax.set_title(f"{k}: AIE (n={avgs[k]['n']}, TE={avgs[k]['te']:.3f})", fontsize=9)
    fig.tight_layout()
    save(fig, preset, name)
    return fig


# --------------------------------------------------------------------------- ROME runs (notebook 03)
def rome_edit_curves(records: dict, preset: str, name: str = "rome_sequential_edits.png"):
    """Per-edit statistics of sequential ROME runs: wall time, ||ΔW||_F and the target's
    probability after v* optimisation, against the edit index; a collapse is marked with x."""
    keys = [("edit_times_s", "wall time per edit (ms)", 1000.0, False),
            ("delta_norms", "||ΔW||_F of the edit", 1.0, True),
            ("target_prob", "target prob. after v* (per token, mean)", 1.0, False)]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.4))
    for run, rec in records.items():
        st = rec.get("stats") or {}
        for ax, (key, label, scale, log) in zip(axes, keys):
            y = np.asarray(st.get(key) or [], dtype=float) * scale
            line, = ax.plot(np.arange(len(y)), y, marker=".", label=run)
            col = rec.get("collapsed")
            if col and isinstance(col, dict) and isinstance(col.get("step"), int) and len(y):
                ax.plot([min(col["step"], len(y) - 1)], [y[min(col["step"], len(y) - 1)]], "x", ms=10,
                        color=line.get_color())
            ax.set(xlabel="edit index", ylabel=label)
            if log:
                ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Sequential ROME edits ({preset}); x = collapse", fontsize=10)
    fig.tight_layout()
    save(fig, preset, name)
    return fig


# --------------------------------------------------------------------------- WISE (notebook 05)
def wise_training_curves(stats: dict, preset: str, edits=(0, 1, 2), name: str = "wise_training_curve.png",
                         title: str = ""):
    """Side-memory training of a few edits: total loss and its two parts (target NLL,
    activation-margin loss) per SGD iteration (wise.edit's loss_curves / ft_curves / act_curves)."""
    parts = [("loss_curves", "total loss"), ("ft_curves", "target NLL"), ("act_curves", "margin loss L_act")]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
    n = len(stats.get("loss_curves", []))
    for ax, (key, label) in zip(axes, parts):
        for i in [e for e in edits if e < n]:
            y = np.asarray(stats.get(key, stats["loss_curves"])[i], dtype=float)
            ax.plot(np.arange(len(y)), np.maximum(y, 1e-6), label=f"edit {i}")
        ax.set(xlabel="iteration", ylabel=label, yscale="log")
    axes[0].legend(fontsize=8)
    fig.suptitle(title or f"WISE side memory training ({preset})")
    fig.tight_layout()
    save(fig, preset, name)
    return fig


def wise_routing_histograms(routings: dict, preset: str, extra_thresholds: dict | None = None,
                            name: str = "wise_routing_scores.png", bins: int = 30):
    """One panel per run ({run: wise.routing_report output}): histograms of the routing score
    of the evaluator's prompts per set, the routing threshold as a solid line (prompts at or
    above it go to the side memory) and, per run, optional other thresholds (dashed)
    from `extra_thresholds` ({run: {label: value}})."""
    runs = list(routings)
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.4), squeeze=False)
    colors = dict(zip(["forget", "retain", "real_authors", "world_facts"], sns.color_palette(n_colors=4)))
    for ax, run in zip(axes[0], runs):
        rep = routings[run]
        vals = [v for s in rep["sets"].values() for v in s["scores"]]
        thr = rep["threshold"]
        extra = (extra_thresholds or {}).get(run, {})
        finite = [x for x in [thr, *extra.values()] if x is not None and np.isfinite(x)]
        lo, hi = min(vals + finite), max(vals + finite)
        edges = np.linspace(lo, hi + 1e-9, bins + 1) if hi > lo else bins
        for set_name, s in rep["sets"].items():
            ax.hist(s["scores"], bins=edges, alpha=0.5, color=colors.get(set_name),
                    label=f"{set_name} ({100 * s['side_rate']:.0f}% to side)")
        if np.isfinite(thr):
            ax.axvline(thr, color="k", lw=1.5, label=f"threshold {thr:.3g}")
        for (label, v), ls in zip(extra.items(), ["--", ":", "-."]):
            if v is not None and np.isfinite(v):
                ax.axvline(v, color="gray", ls=ls, lw=1.2, label=f"{label} {v:.3g}")
        ax.set(xlabel="routing score (activation distance)", ylabel="prompts", title=run)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, preset, name)
    return fig


# --------------------------------------------------------------------------- IKE (notebook 04)
def ike_demos_kept(hists: dict, k: int, preset: str, name: str = "ike_demos_kept.png"):
    """How many of the k retrieved demonstrations fit the context window, per evaluated row
    ({run: {n_kept: rows}}, IKE's stats["eval"]["demos_used"])."""
    runs_ = [r for r, h in hists.items() if h]
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    width = 0.8 / max(len(runs_), 1)
    for i, run in enumerate(runs_):
        h = {int(n): c for n, c in hists[run].items()}
        total = sum(h.values())
        xs = np.arange(0, k + 1)
        ax.bar(xs + (i - (len(runs_) - 1) / 2) * width, [h.get(x, 0) / total for x in xs], width=width, label=run)
    ax.axvline(k, color="k", ls=":", lw=1)
    ax.set(xlabel=f"demonstrations kept (of k = {k})", ylabel="share of evaluated rows",
           title=f"IKE: demonstrations that fit the context window ({preset})")
    ax.legend(fontsize=8)
    save(fig, preset, name)
    return fig


def ike_vs_paper(ours, paper, preset: str, name: str = "ike_vs_paper.png",
                 columns=("forget/rouge", "forget/prob", "retain/rouge", "model_utility", "forget_quality")):
    """Grouped bars per metric: our runs (`ours`, rows = runs) beside the paper's repo rows
    (`paper`, same row labels and columns; missing rows/values are left out). Forget quality
    is drawn on a log scale."""
    fig, axes = plt.subplots(1, len(columns), figsize=(3.0 * len(columns), 3.6))
    labels = list(dict.fromkeys(list(ours.index) + list(paper.index)))
    for ax, col in zip(np.atleast_1d(axes), columns):
        xs = np.arange(len(labels))
        for j, (df, lab, off) in enumerate(((ours, f"ours ({preset})", -0.2), (paper, "paper repo (Llama-2-7b)", 0.2))):
            vals = [float(df.loc[r, col]) if (r in df.index and col in df.columns and df.loc[r, col] == df.loc[r, col]
                                               and df.loc[r, col] is not None) else np.nan for r in labels]
            ax.bar(xs + off, vals, width=0.4, label=lab, color=f"C{j}")
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
        ax.set_title(col, fontsize=10)
        if col == "forget_quality":
            ax.set_yscale("log")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.suptitle(f"IKE beside the paper's repo results (paper.md 7.2), preset {preset}", fontsize=10)
    fig.tight_layout()
    save(fig, preset, name)
    return fig


# --------------------------------------------------------------------------- the study (notebook 07)
_FAMILY_COLORS = {"subject model": "k", "ROME": "C0", "R-ROME": "C9", "IKE": "C1", "WISE": "C2"}
_TARGET_MARKERS = {"dummy": "o", "incorrect": "s", "avoidant": "^", None: "D"}


def _family(row) -> str:
    m = str(row.get("method") or "")
    return m if m in _FAMILY_COLORS else "baseline"


def fq_vs_mu(table, preset: str, name: str = "fq_vs_mu.png", fq_floor: float = 1e-60):
    """Forget quality (log x) against model utility for every run of `report.main_table`, the
    full and retain models as anchors (stars); colour = editor family (baselines grey), marker =
    target; error bars = sample sd over seeds. Runs are numbered, with the key beside the plot;
    runs that sit on the same spot (KS p-values on 100 rows take few distinct values) share one
    label. Collapsed runs are listed under the key."""
    from matplotlib.lines import Line2D

    fig, (ax, key_ax) = plt.subplots(1, 2, figsize=(11, 5.6), gridspec_kw={"width_ratios": [3.2, 1]})
    collapsed, points, keys = [], [], []
    for run, row in table.iterrows():
        fq, mu = row.get("forget_quality"), row.get("model_utility")
        if fq is None or mu is None or not np.isfinite(fq) or not np.isfinite(mu):
            collapsed.append(run)
            continue
        x = max(fq, fq_floor)
        fam = _family(row)
        if run in ("full", "retain"):
            ax.scatter([x], [mu], marker="*", s=260, color="k" if run == "full" else "gold", edgecolor="k", zorder=5)
        else:
            ax.scatter([x], [mu], marker=_TARGET_MARKERS.get(row.get("target"), "D"), s=60, zorder=4,
                       color=_FAMILY_COLORS.get(fam, "0.45"), edgecolor="k", linewidth=0.5)
        xerr, yerr = row.get("forget_quality sd"), row.get("model_utility sd")
        if yerr is not None and np.isfinite(yerr):
            ax.errorbar([x], [mu], yerr=[yerr], color="0.5", lw=0.8, capsize=2, zorder=3)
        if xerr is not None and np.isfinite(xerr):
            ax.errorbar([x], [mu], xerr=[[min(xerr, x * 0.99)], [xerr]], color="0.5", lw=0.8, capsize=2, zorder=3)
        keys.append(run)
        points.append((len(keys), np.log10(x), mu))
    groups: list[list] = []                      # runs on (nearly) the same spot share a label
    for p in points:
        for g in groups:
            if abs(g[0][1] - p[1]) < 0.12 and abs(g[0][2] - p[2]) < 0.02:
                g.append(p)
                break
        else:
            groups.append([p])
    for g in groups:
        ax.annotate(",".join(str(n) for n, _, _ in g), (10 ** g[0][1], g[0][2]), xytext=(5, 4),
                    textcoords="offset points", fontsize=8)
    ax.axvline(0.05, color="0.6", ls="--", lw=1)
    ax.text(0.05, ax.get_ylim()[0], " FQ = 0.05", fontsize=7, color="0.4", va="bottom")
    ax.set(xscale="log", xlabel="forget quality (KS p-value vs the retain model; log)", ylabel="model utility",
           title=f"Forgetting against utility, every run ({preset}); top right is best")
    fams = {_family(table.loc[r]) for r in keys}
    handles = [Line2D([], [], marker="*", ls="", color="k", ms=12, label="full model"),
               Line2D([], [], marker="*", ls="", color="gold", mec="k", ms=12, label="retain model")]
    handles += [Line2D([], [], marker="o", ls="", color=c, ms=7, label=f) for f, c in _FAMILY_COLORS.items()
                if f != "subject model" and f in fams]
    if "baseline" in fams:
        handles += [Line2D([], [], marker="D", ls="", color="0.45", ms=7, label="unlearning baseline")]
    handles += [Line2D([], [], marker=m, ls="", color="w", mec="k", ms=7, label=f"target: {t}")
                for t, m in _TARGET_MARKERS.items() if t]
    ax.legend(handles=handles, fontsize=7, loc="lower center", framealpha=0.9, ncol=2)
    key_ax.axis("off")
    lines = [f"{i:>2}  {run}" for i, run in enumerate(keys, 1)]
    if collapsed:
        lines += ["", "collapsed (no metrics):"] + [f"    {r}" for r in collapsed]
    key_ax.text(0, 1, "\n".join(lines), family="monospace", fontsize=8.5, va="top", transform=key_ax.transAxes)
    fig.tight_layout()
    save(fig, preset, name)
    return fig


def per_set_bars(table, preset: str, name: str = "per_set_bars.png"):
    """ROUGE / Prob / Truth Ratio on each TOFU set, one bar per run (seed means, sd as error
    bars), the full and retain models first; collapsed runs are left empty."""
    sets = ["forget", "retain", "real_authors", "world_facts"]
    metrics = [("rouge", "ROUGE-L recall"), ("prob", "Prob."), ("truth_ratio", "Truth Ratio")]
    runs_ = list(table.index)
    fig, axes = plt.subplots(len(metrics), 1, figsize=(max(9, 0.62 * len(runs_) + 2), 8.5), sharex=True)
    xs = np.arange(len(runs_))
    width = 0.8 / len(sets)
    colors = dict(zip(sets, sns.color_palette(n_colors=4)))
    for ax, (m, label) in zip(axes, metrics):
        for i, s in enumerate(sets):
            vals = table[f"{s}/{m}"].astype(float).to_numpy()
            sd_col = f"{s}/{m} sd"
            err = table[sd_col].astype(float).to_numpy() if sd_col in table.columns else None
            ax.bar(xs + (i - 1.5) * width, vals, width=width, color=colors[s], label=s.replace("_", " "),
                   yerr=err, error_kw={"lw": 0.7, "capsize": 1.5})
        ax.set(ylabel=label, ylim=(0, 1.05))
    axes[0].legend(ncol=4, fontsize=8, loc="upper right")
    axes[-1].set_xticks(xs)
    axes[-1].set_xticklabels(runs_, rotation=45, ha="right", fontsize=8)
    fig.suptitle(f"TOFU metrics per set and run ({preset}); forget: lower ROUGE/Prob = more forgotten, "
                 "TR near the retain model's = better", fontsize=10)
    fig.tight_layout()
    save(fig, preset, name)
    return fig


def forget_answers(examples: list[dict], preset: str, name: str = "forget_answers.png", width: int = 110):
    """A few forget questions with each run's greedy answer beside the truth.

    examples: [{"question", "truth", "answers": {run: text}}] (report.forget_examples)."""
    import textwrap

    lines = []
    for ex in examples:
        lines.append(("Q: " + ex["question"], "bold"))
        lines.append(("   truth: " + textwrap.shorten(ex["truth"], width), "italic"))
        for run, text in ex["answers"].items():
            lines.append((f"   {run:>16}: " + textwrap.shorten(text or "(empty)", width), "normal"))
        lines.append(("", "normal"))
    fig, ax = plt.subplots(figsize=(13, 0.19 * len(lines) + 0.6))
    ax.axis("off")
    for i, (text, style) in enumerate(lines):
        ax.text(0, 1 - i / max(len(lines), 1), text, family="monospace", fontsize=7.5, va="top",
                fontweight="bold" if style == "bold" else "normal",
                fontstyle="italic" if style == "italic" else "normal", transform=ax.transAxes)
    ax.set_title(f"Greedy answers to forget questions ({preset})", loc="left", fontsize=10)
    save(fig, preset, name)
    return fig


# --------------------------------------------------------------------------- robustness (notebook 08)
def robustness_recovery(table, preset: str, name: str = "robustness_recovery.png"):
    """Forget ROUGE per run under each attack (robustness.summary_table): the plain question,
    the best attack without forget data, and the held-out rows before / after relearning."""
    from .robustness import RESURFACING

    runs_ = list(table.index)
    best = [max(table.loc[r, f"ROUGE: {a}"] for a in RESURFACING) for r in runs_]
    series = [("question", table["ROUGE: question"].to_numpy(), "C7"),
              ("best prompt / retain fine-tune", np.asarray(best), "C1"),
              ("held-out rows, before relearning", table["ROUGE: relearn before"].to_numpy(), "C0"),
              ("held-out rows, after relearning on 10%", table["ROUGE: relearn after"].to_numpy(), "C3")]
    fig, ax = plt.subplots(figsize=(max(9, 0.6 * len(runs_) + 2), 4.2))
    xs = np.arange(len(runs_))
    w = 0.8 / len(series)
    for i, (label, vals, c) in enumerate(series):
        ax.bar(xs + (i - 1.5) * w, vals, width=w, label=label, color=c)
    ax.set_xticks(xs)
    ax.set_xticklabels(runs_, rotation=45, ha="right", fontsize=8)
    ax.set(ylabel="forget ROUGE-L recall", ylim=(0, 1.05),
           title=f"Does the forgotten answer come back? ({preset}; full and retain models first)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    save(fig, preset, name)
    return fig


def probe_by_layer(results: dict, preset: str, name: str = "robustness_probe_layers.png"):
    """Linear-probe and logit-lens accuracy of the forget answers' next tokens per layer, per
    run (robustness.probe_layers); the full and retain models drawn thick."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    chance, layers = None, []
    for run, r in results.items():
        pr = (r.get("probe") or {}) if isinstance(r, dict) else {}
        if not pr.get("layers"):
            continue
        layers = pr["layers"]
        style = dict(lw=3, color="k") if run == "full" else dict(lw=3, color="gold") if run == "retain" else dict(lw=1.2)
        for ax, key in zip(axes, ("linear_probe", "logit_lens")):
            ax.plot(pr["layers"], pr[key], marker=".", label=run, **style)
        chance = pr["chance"]
    for ax, title in zip(axes, ("linear probe trained on retain authors", "logit lens")):
        if chance is not None:
            ax.axhline(chance, color="0.5", ls=":", lw=1, label="chance (most frequent token)")
        ax.set(xlabel="layer (0 = embeddings)", title=title)
        if layers:
            ax.set_xticks(layers)
    axes[0].set_ylabel("top-1 accuracy on forget answers")
    axes[1].legend(fontsize=7, ncol=2, loc="best")
    fig.suptitle(f"Is the forgotten answer still decodable inside the model? ({preset})", fontsize=10)
    fig.tight_layout()
    save(fig, preset, name)
    return fig
