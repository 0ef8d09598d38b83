"""Figures of the study (matplotlib/seaborn), saved as PNG through `figure_io.save` (figures/
for the headline preset, runs/<preset>/figures/ for the others). Notebook 02's causal-trace
figures are in trace_plots.py."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from ..core import data, registry, run_names
from .figure_io import integer_ticks, layer_ticks, save


def _smooth(x, k=10):
    x = np.asarray(x, dtype=float)
    if len(x) < k:
        return x
    return np.convolve(x, np.ones(k) / k, mode="valid")


# --------------------------------------------------------------------------- one style per run
# One colour per method (registry.py's `color`: R-ROME apart from ROME, every baseline the same), one
# marker per unlearning target (data.TARGET_SPECS; baselines: their own marker), so every run of every figure can be told
# apart; a variant of a run (a run name with more than family-target, e.g. wise-dummy-rawprompt) is
# drawn dashed / hollow.
SUBJECT_COLORS = {"full": "k", "retain": "gold", "base": "0.65"}
SUBJECT_LABELS = {"full": "full model", "retain": "retain model", "base": "pretrained model (before fine-tuning)"}


def run_style(run: str) -> dict:
    """{"family", "method", "target", "color", "marker", "variant", "ls", "fill"} of a run, from its name
    (`rome-dummy`, `rome-dummy+v_lr=0.5`, `ga`, `full`; a seed suffix `-s1` is ignored; settings
    after a `+` make a variant of the run before it). `family`: its method's family in registry.py for
    an editor, "baseline" for an unlearning baseline (and a prefix no method has); `method`: its label."""
    parts = run_names.base_parts(run)
    head = parts[0]
    if head in SUBJECT_COLORS:          # the fine-tuned models and the pretrained one before them (base)
        return {"family": "subject model", "method": None, "target": None, "color": SUBJECT_COLORS[head],
                "marker": "*", "variant": False, "ls": "-", "fill": True}
    spec = registry.of_prefix(head)
    editor = spec is not None and spec.kind == registry.EDITOR
    target = parts[1] if editor and len(parts) > 1 else None
    variant = run_names.is_variant(run) or len(parts) > (2 if editor else 1)
    marker = (data.TARGET_SPECS[target].marker if target in data.TARGET_SPECS else "D") if editor else (spec and spec.marker) or "D"
    color = spec.color if spec else registry.BASELINE_COLOR
    return {"family": spec.family if editor else registry.BASELINE, "method": spec.label if spec else head,
            "target": target, "color": _shade(color, target), "marker": marker,
            "variant": variant, "ls": "--" if variant else "-", "fill": not variant}


def run_label(run: str) -> str:
    """A run's name for a legend: its settings suffix (`+name=value` ...) as a short list, the
    longest setting names abbreviated (`rome-dummy [templates=5-5, mom2_adjustment=True, v_lr=0.5]`)."""
    base, _, suffix = str(run).partition("+")
    if not suffix:
        return base
    short = suffix.replace("context_template_length_params", "templates").split("+")
    return f"{base} [{', '.join(short)}]"


def _shade(color, target) -> tuple:
    """The family's hue shaded by the target (data.TARGET_SPECS: darker for `incorrect`, lighter for
    `avoidant`), so lines of one family stay distinguishable where markers are small."""
    from matplotlib.colors import to_rgb

    c = np.asarray(to_rgb(color))
    s = data.TARGET_SPECS[target].shade if target in data.TARGET_SPECS else 0.0
    c = (1 + s) * c if s < 0 else c + s * (1 - c)
    return tuple(float(x) for x in c)


def zoom(ax, values, axis: str = "y", pad: float = 0.08, lo=None, hi=None) -> None:
    """Limit an axis to the finite `values` (reference values included) plus a margin."""
    v = np.asarray([x for x in np.ravel(values) if x is not None and np.isfinite(x)], dtype=float)
    if not len(v):
        return
    a, b = v.min(), v.max()
    m = pad * (b - a) if b > a else 0.05 * max(abs(b), 1e-3)
    a, b = a - m, b + m
    a, b = (max(a, lo) if lo is not None else a), (min(b, hi) if hi is not None else b)
    (ax.set_ylim if axis == "y" else ax.set_xlim)(a, b)


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
    layer_ticks(ax, len(layers))
    ax.set(xlabel="layer", ylabel="p(first answer token)", title=f"Subject last-token restoration ({preset})")
    ax.legend(loc="center right", fontsize=8, framealpha=0.9)
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
        for i, (key, label) in enumerate(_BASELINE_PARTS.items()):   # one colour per part in every panel
            if st.get(key):
                ax.plot(steps[:len(st[key])], st[key], marker=".", lw=1, color=f"C{i}", label=label)
        ax.plot(steps, st["loss_curve"], color="k", lw=1.5, ls="--", label="loss (minimised)", zorder=3)
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


# --------------------------------------------------------------------------- ROME runs (notebook 03)
def rome_edit_curves(records: dict, preset: str, name: str = "rome_sequential_edits.png"):
    """Per-edit statistics of sequential ROME runs: wall time, ||ΔW||_F and the target's
    probability after v* optimisation, against the edit index; a collapsed run is marked with
    an x at its collapse (and the legend says so only when a run collapsed). The norm axis is
    logarithmic; where some edit made no update (its v* started at the target: earlier edits
    already give it) it is symmetric-log, linear below 0.1, so those edits show at 0 instead of
    vanishing."""
    keys = [("edit_times_s", "wall time per edit (s)", 1.0, False),
            ("delta_norms", "||ΔW||_F of the edit", 1.0, True),
            ("target_prob", "target prob. after v* (per token, mean)", 1.0, False)]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.4))
    any_collapse = False
    for run, rec in records.items():
        st, sty = rec.get("stats") or {}, run_style(run)
        for ax, (key, label, scale, log) in zip(axes, keys):
            y = np.asarray(st.get(key) or [], dtype=float) * scale
            ax.plot(np.arange(len(y)), y, marker=sty["marker"], ms=3, lw=1, ls=sty["ls"], color=sty["color"],
                    alpha=0.85, label=run_label(run), mfc=sty["color"] if sty["fill"] else "none")
            col = rec.get("collapsed")
            if col and isinstance(col, dict) and isinstance(col.get("step"), int) and len(y):
                any_collapse = True
                i = min(col["step"], len(y) - 1)
                ax.plot([i], [y[i]], "x", ms=10, color="r", label=f"{run} collapsed" if ax is axes[0] else None)
            ax.set(xlabel="edit index", ylabel=label)
            integer_ticks(ax)
    zero = sum(int(x == 0) for rec in records.values() for x in ((rec.get("stats") or {}).get("delta_norms") or []))
    for ax, (_, _, _, log) in zip(axes, keys):
        if log and zero:
            ax.set_yscale("symlog", linthresh=0.1)
            ax.set_ylim(bottom=0)
        elif log:
            ax.set_yscale("log")
    if zero:
        axes[1].set_title(f"{zero} edit(s) at 0: v* already gave the target, no update", fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    n_rows = -(-len(labels) // 3)
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"Sequential ROME edits ({preset})" + ("; x = collapse" if any_collapse else "; no run collapsed"),
                 fontsize=10)
    fig.set_figheight(3.4 + 0.3 * n_rows)
    fig.tight_layout(rect=(0, 0.3 * n_rows / (3.4 + 0.3 * n_rows) + 0.02, 1, 1))
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
    """One panel per run ({run: side_memory.routing_report output}): the routing score of the
    evaluator's prompts per set as a share of that set's prompts (outlines, the forget set
    filled and drawn on top, so a small set is not buried under a large one), the routing
    threshold as a solid line (prompts at or above it go to the side memory) and, per run,
    optional other thresholds (dashed) from `extra_thresholds` ({run: {label: value}})."""
    runs = list(routings)
    ncols = min(len(runs), 3)
    nrows = -(-len(runs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 4.4 * nrows), squeeze=False)
    for ax in axes.flat[len(runs):]:
        ax.set_visible(False)
    colors = dict(zip(["forget", "retain", "real_authors", "world_facts"], sns.color_palette(n_colors=4)))
    for ax, run in zip(axes.flat, runs):
        rep = routings[run]
        vals = [v for s in rep["sets"].values() for v in s["scores"]]
        thr = rep["threshold"]
        extra = (extra_thresholds or {}).get(run, {})
        finite = [x for x in [thr, *extra.values()] if x is not None and np.isfinite(x)]
        lo, hi = min(vals + finite), max(vals + finite)
        edges = np.linspace(lo, hi + 1e-9, bins + 1) if hi > lo else bins
        order = sorted(rep["sets"], key=lambda k: k == "forget")          # forget last = on top
        for set_name in order:
            sc = rep["sets"][set_name]
            w = np.full(len(sc["scores"]), 1.0 / max(len(sc["scores"]), 1))
            fg = set_name == "forget"
            ax.hist(sc["scores"], bins=edges, weights=w, color=colors.get(set_name), histtype="stepfilled" if fg else "step",
                    alpha=0.45 if fg else 1.0, lw=1.6, zorder=3 if fg else 2,
                    label=f"{set_name} (n={len(sc['scores'])}, {100 * sc['side_rate']:.0f}% to side)")
        if np.isfinite(thr):
            ax.axvline(thr, color="k", lw=1.5, label=f"threshold {thr:.3g}")
        for (label, v), ls in zip(extra.items(), ["--", ":", "-."]):
            if v is not None and np.isfinite(v):
                ax.axvline(v, color="gray", ls=ls, lw=1.2, label=f"{label} {v:.3g}")
        ax.set(xlabel="routing score (activation distance)", ylabel="share of the set's prompts")
        ax.set_title(run_label(run), fontsize=10)
        ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.24), ncol=2)   # below: never over the bars
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
        ax.bar(xs + (i - (len(runs_) - 1) / 2) * width, [h.get(x, 0) / total for x in xs], width=width, label=run,
               color=run_style(run)["color"], edgecolor="k", lw=0.3)
    ax.axvline(k, color="k", ls=":", lw=1)
    integer_ticks(ax)
    ax.set(xlabel=f"demonstrations kept (of k = {k})", ylabel="share of evaluated rows",
           title=f"IKE: demonstrations that fit the context window ({preset})")
    ax.legend(fontsize=8)
    save(fig, preset, name)
    return fig


def ike_vs_paper(ours, paper, preset: str, name: str = "ike_vs_paper.png",
                 columns=("forget/rouge", "forget/prob", "retain/rouge", "model_utility", "forget_quality")):
    """Our runs (`ours`, rows = runs) beside the paper's repo rows (`paper`, same row labels and
    columns; missing rows/values are left out): grouped bars for the metrics in [0, 1]; forget
    quality, a p-value spanning many decades, as points on a log axis with the FQ = 0.05 line.
    The legend sits below the panels, clear of the data."""
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, len(columns), figsize=(3.0 * len(columns), 3.9))
    labels = list(dict.fromkeys(list(ours.index) + list(paper.index)))
    sources = ((ours, f"ours ({preset})", -0.2, "o"), (paper, "paper's repo results (Llama-2-7b)", 0.2, "s"))

    def values(df, col):
        return [float(df.loc[r, col]) if (r in df.index and col in df.columns and df.loc[r, col] is not None
                                          and df.loc[r, col] == df.loc[r, col]) else np.nan for r in labels]

    for ax, col in zip(np.atleast_1d(axes), columns):
        xs = np.arange(len(labels))
        for j, (df, lab, off, marker) in enumerate(sources):
            vals = values(df, col)
            if col == "forget_quality":
                ax.scatter(xs + off, vals, marker=marker, s=45, color=f"C{j}", edgecolor="k", lw=0.5, zorder=3)
            else:
                ax.bar(xs + off, vals, width=0.4, color=f"C{j}")
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
        ax.set_title(col, fontsize=10)
        if col == "forget_quality":
            ax.set_yscale("log")
            ax.axhline(0.05, color="0.4", ls="--", lw=1)
            ax.text(-0.5, 0.05, " FQ = 0.05", fontsize=7, color="0.35", ha="left", va="bottom")
        else:
            ax.set_ylim(0, 1.05)
    handles = [Line2D([], [], marker="s", ls="", color=f"C{j}", ms=8, label=lab) for j, (_, lab, _, _) in enumerate(sources)]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, bbox_to_anchor=(0.5, -0.04))
    fig.suptitle(f"IKE beside the paper's repo results (shariqahn/tofu model_outputs, Llama-2-7b, forget10), "
                 f"preset {preset}", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    save(fig, preset, name)
    return fig


# --------------------------------------------------------------------------- the study (notebook 07)
def _spread_coincident(points, dx_log: float = 0.15, dy: float = 0.035, step_pt: float = 11.0):
    """Display offsets (points) that spread runs sitting on (nearly) the same spot side by side,
    so that every marker stays visible; points = [(log10 fq, mu)] -> [(dx_pt, group id)]."""
    groups, offsets = [], [None] * len(points)
    for i, (x, y) in enumerate(points):
        for g in groups:
            x0, y0 = points[g[0]]
            if abs(x0 - x) < dx_log and abs(y0 - y) < dy:
                g.append(i)
                break
        else:
            groups.append([i])
    for gid, g in enumerate(groups):
        for j, i in enumerate(g):
            offsets[i] = ((j - (len(g) - 1) / 2) * step_pt, gid)
    return offsets


def fq_vs_mu(table, preset: str, name: str = "fq_vs_mu.png", fq_floor: float = 1e-60,
             keep_utility: float = 0.9, fq_threshold: float = 0.05):
    """Forget quality (log x) against model utility for every run of `tables.main_table`, the
    full and retain models as anchors (stars); colour = method family, marker = target
    (baselines: one marker per method); error bars = sample sd over seeds. Runs that sit on the
    same spot (KS p-values on 100 rows take few distinct values) are drawn side by side, so
    every run is visible; each is numbered, with the key beside the plot. Reference lines are
    the verdicts' thresholds: FQ = `fq_threshold` (indistinguishable from the retain model) and
    MU = `keep_utility` x the full model's. Collapsed runs are listed under the key."""
    from matplotlib.lines import Line2D
    from matplotlib.transforms import offset_copy

    fig, (ax, key_ax) = plt.subplots(1, 2, figsize=(11, 5.6), gridspec_kw={"width_ratios": [3.2, 1]})
    collapsed, keys, xy = [], [], []
    for run, row in table.iterrows():
        fq, mu = row.get("forget_quality"), row.get("model_utility")
        if fq is None or mu is None or not np.isfinite(fq) or not np.isfinite(mu):
            collapsed.append(run)
            continue
        keys.append(run)
        xy.append((max(fq, fq_floor), mu))
    offsets = _spread_coincident([(np.log10(x), y) for x, y in xy])
    for n, (run, (x, mu), (dx, _)) in enumerate(zip(keys, xy, offsets), 1):
        row, sty = table.loc[run], run_style(run)
        tr = offset_copy(ax.transData, fig=fig, x=dx, y=0, units="points")
        big = sty["family"] == "subject model"
        ax.scatter([x], [mu], marker=sty["marker"], s=260 if big else 60, transform=tr, zorder=5 if big else 4,
                   color=sty["color"] if sty["fill"] else "w", edgecolor=sty["color"] if not sty["fill"] else "k",
                   linewidth=1.5 if not sty["fill"] else 0.5)
        xerr, yerr = row.get("forget_quality sd"), row.get("model_utility sd")
        if yerr is not None and np.isfinite(yerr):
            ax.errorbar([x], [mu], yerr=[yerr], color="0.5", lw=0.8, capsize=2, zorder=3, transform=tr)
        if xerr is not None and np.isfinite(xerr):
            ax.errorbar([x], [mu], xerr=[[min(xerr, x * 0.99)], [xerr]], color="0.5", lw=0.8, capsize=2, zorder=3,
                        transform=tr)
        ax.annotate(str(n), (x, mu), xytext=(dx, 7), textcoords="offset points", fontsize=7.5, ha="center")
    ax.set_xscale("log")                   # limits set by hand: offset markers do not update the data limits
    lx = np.log10([x for x, _ in xy] + [fq_threshold])
    ax.set_xlim(10 ** (lx.min() - 0.4), 10 ** (lx.max() + 0.4))
    zoom(ax, [y for _, y in xy], axis="y", pad=0.1)
    ax.axvline(fq_threshold, color="0.5", ls="--", lw=1)
    ax.text(fq_threshold, ax.get_ylim()[0], f" FQ = {fq_threshold:g}", fontsize=7, color="0.35", va="bottom")
    if "full" in table.index and np.isfinite(table.loc["full", "model_utility"]):
        mu_ref = keep_utility * float(table.loc["full", "model_utility"])
        ax.axhline(mu_ref, color="0.5", ls=":", lw=1)
        ax.text(ax.get_xlim()[0], mu_ref, f" {keep_utility:g} x MU(full)", fontsize=7, color="0.35", va="bottom")
    ax.set(xlabel="forget quality (KS p-value vs the retain model; log; runs on one spot drawn side by side)",
           ylabel="model utility",
           title=f"Forgetting against utility, every run ({preset}); top right is best")
    styles = [run_style(r) for r in keys]
    editors = [m for m in registry.all_methods(registry.EDITOR) if any(s["method"] == m.label for s in styles)]
    handles = [Line2D([], [], marker="*", ls="", color=c, mec="k", ms=12, label=SUBJECT_LABELS[w])
               for w, c in SUBJECT_COLORS.items() if w in ("full", "retain") or w in keys]
    handles += [Line2D([], [], marker="o", ls="", color=m.color, ms=7, label=m.label) for m in editors]
    if any(s["family"] == registry.BASELINE for s in styles):
        handles.append(Line2D([], [], marker="D", ls="", color=registry.BASELINE_COLOR, ms=7, label="unlearning baseline"))
    handles += [Line2D([], [], marker=m, ls="", color="w", mec="k", ms=7, label=f"target: {t}")
                for t, m in ((t, spec.marker) for t, spec in data.TARGET_SPECS.items()) if any(s["target"] == t for s in styles)]
    if any(s["variant"] for s in styles):
        handles += [Line2D([], [], marker="o", ls="", color="w", mec="0.3", mew=1.5, ms=7, label="variant (hollow)")]
    ax.legend(handles=handles, fontsize=7, loc="best", framealpha=0.9, ncol=2)
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


# --------------------------------------------------------------------------- robustness (notebook 08)
def robustness_recovery(results: dict, preset: str, name: str = "robustness_recovery.png"):
    """The verdicts by levels (robustness_verdicts.verdicts): per attack, each unlearned run's forget ROUGE
    (last panel: MIA Min-K AUC) against the full (black) and retain (gold) models' under the same
    attack; a bar is the run's +-1.96 paired standard errors about the references' midpoint (dotted):
    red = closer to the full model beyond the noise, blue = closer to the retain model, grey =
    within the noise, hollow = the attack cannot tell the references apart. Panel titles carry the
    attack's calibration (the full model's change from the plain question)."""
    from .robustness_verdicts import CALIBRATED, INCONCLUSIVE, Z_MARGIN, calibration, level, mia_level, verdicts
    from .tables import sort_runs

    if "full" not in results or "retain" not in results:
        return None
    runs_ = sort_runs([r for r, v in results.items() if isinstance(v, dict) and "question" in v
                       and r not in ("full", "retain")])
    F, R = results["full"], results["retain"]
    cal = {c["attack"]: c for c in calibration(results)}
    panels = list(CALIBRATED) + ["MIA"]
    fig, axes = plt.subplots(2, 4, figsize=(16, 0.36 * len(runs_) * 2 + 2.4), sharey=True)
    colors = {True: "C3", False: "C0", INCONCLUSIVE: "0.45"}
    ys = np.arange(len(runs_))[::-1]
    for ax, attack in zip(axes.flat, panels):
        lv = [mia_level(results[r], F, R) if attack == "MIA" else level(results[r], F, R, attack) for r in runs_]
        ref = lv[0] if lv else {}
        for y, x in zip(ys, lv):
            d = x["closer to full"]
            if d is None:
                continue
            c = colors.get(d, "0.6")
            err = Z_MARGIN * x["se"] if math.isfinite(x["se"]) else 0
            ax.errorbar(x["run"], y, xerr=err, fmt="o", ms=6, color=c, mfc=c if d in colors else "w", capsize=2, lw=1.2)
        for v, c, ls in ((ref.get("full"), "k", "-"), (ref.get("retain"), "goldenrod", "-")):
            if v is not None:
                ax.axvline(v, color=c, ls=ls, lw=2)
        if ref.get("full") is not None:
            ax.axvline((ref["full"] + ref["retain"]) / 2, color="0.5", ls=":", lw=1.2)
        if attack == "MIA":
            ax.set(title="MIA Min-K AUC\n(Hanley-McNeil SE)", xlim=(0, 1.02), xlabel="AUC forget vs holdout")
        else:
            c = cal[attack]
            head = attack + ("" if c["informative"] else ": uninformative")
            ch = "" if attack == "question" else f" ({c['full: change']:+.2f} vs question)"
            ax.set(title=f"{head}\nfull {c['full']:.2f}{ch}, retain {c['retain']:.2f}", xlim=(0, 1.02),
                   xlabel="forget ROUGE-L recall")
        ax.title.set_fontsize(9)
    verdict = {v["run"]: v["verdict"] for v in verdicts(results)}
    labels = [f"{r}: {verdict.get(r, '?')}" for r in runs_]
    axes[0, 0].set_yticks(ys)
    axes[0, 0].set_yticklabels(labels, fontsize=8)
    axes[1, 0].set_yticklabels(labels, fontsize=8)
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color="k", lw=2, label="full model"),
               Line2D([], [], color="goldenrod", lw=2, label="retain model"),
               Line2D([], [], color="0.5", ls=":", label="midpoint"),
               *[Line2D([], [], marker="o", color=c, ls="", mfc=mfc, label=lab) for c, mfc, lab in (
                   ("C3", "C3", "closer to full (beyond the noise)"), ("C0", "C0", "closer to retain"),
                   ("0.45", "0.45", "within the noise"), ("0.6", "w", "attack uninformative"))]]
    fig.legend(handles=handles, loc="lower center", ncol=7, fontsize=8, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(f"Does the forgotten answer come back? Each run's level (y: run: verdict) against the full and "
                 f"retain models under the same attack ({preset}; bars: ±{Z_MARGIN} paired SE)", fontsize=10)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    save(fig, preset, name)
    return fig


def probe_by_layer(results: dict, preset: str, name: str = "robustness_probe_layers.png"):
    """Linear-probe and logit-lens accuracy of the forget answers' next tokens per layer, per
    run (robustness.probe_layers): colour = method family, marker = target (baselines: one
    marker per method), variants dashed; the full and retain models drawn thick (the
    references of the "still decodable" verdict). Each panel is zoomed to its data."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4))
    chance, layers, seen = None, [], {ax: [] for ax in axes}
    for run, r in results.items():
        pr = (r.get("probe") or {}) if isinstance(r, dict) else {}
        if not pr.get("layers"):
            continue
        layers, sty = pr["layers"], run_style(run)
        big = sty["family"] == "subject model"
        for ax, key in zip(axes, ("linear_probe", "logit_lens")):
            ax.plot(pr["layers"], pr[key], marker="." if big else sty["marker"], ms=5, lw=3 if big else 1.2,
                    ls=sty["ls"], color=sty["color"], mfc=sty["color"] if sty["fill"] else "w", label=run,
                    zorder=4 if big else 3)
            seen[ax] += list(pr[key])
        chance = pr["chance"]
    for ax, title in zip(axes, ("linear probe trained on retain authors", "logit lens")):
        if chance is not None:
            ax.axhline(chance, color="0.5", ls=":", lw=1, label="chance (most frequent token)")
        ax.set(xlabel="layer (0 = embeddings)", title=title)
        if layers:
            layer_ticks(ax, len(layers), first=min(layers))
        zoom(ax, seen[ax] + ([chance] if chance is not None else []), axis="y", lo=0, hi=1.02)
    axes[0].set_ylabel("top-1 accuracy on forget answers")
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, ncol=1, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"Is the forgotten answer still decodable inside the model? ({preset})", fontsize=10)
    fig.tight_layout()
    save(fig, preset, name)
    return fig
