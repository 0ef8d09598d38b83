"""Drawing of causal traces (unedit_lib.tracing.causal_trace results): rome's per-fact heatmap and the
average-effect line plot, and notebook 02's saved figures built from them (one fact's three
heatmaps, the averages, the AIE lines; panels flat over layers left out). The algorithm
(tracing/causal_trace.py) draws nothing; the figures are saved like every other (figure_io.save)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .figure_io import layer_ticks, save

_CMAPS = {None: "Purples", "mlp": "Greens", "attn": "Reds"}


def plot_trace(result: dict, ax=None, title: str | None = None):
    """rome `plot_trace_heatmap`: tokens x layers, colour p(o), vmin = low_score, subject tokens
    marked with '*'. Returns the matplotlib Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(3.5, 2 + 0.25 * len(result["scores"])))
    kind = result["kind"]
    b, e = result["subject_range"]
    positions = result.get("positions") or range(len(result["scores"]))
    labels = [repr(result["input_tokens"][t])[1:-1] + ("*" if b <= t < e else "") for t in positions]
    mesh = ax.pcolormesh(result["scores"], cmap=_CMAPS[kind], vmin=result["low_score"])
    ax.invert_yaxis()
    ax.set_yticks([0.5 + i for i in range(len(labels))])
    ax.set_yticklabels(labels)
    layer_ticks(ax, result["scores"].shape[1], centred=True)
    ax.set_xlabel("single restored layer" if kind is None
                  else f"center of interval of {result['window']} restored {kind.upper() if kind == 'mlp' else 'Attn'} layers")
    ax.set_title(title or f"Impact of restoring {'state' if kind is None else kind} after corrupted input")
    cb = ax.figure.colorbar(mesh, ax=ax)
    cb.ax.set_title(f"p({result['answer_token'].strip()})", fontsize=8)
    return ax


def plot_average(avg: dict, ax=None, rows=("Last subject token", "Last token")):
    """AIE per layer with 95% bands for some token classes (rome's average-effect line plots)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4, 2.5))
    x = np.arange(avg["aie"].shape[1])
    for name in rows:
        i = avg["labels"].index(name)
        ax.plot(x, avg["aie"][i], label=name)
        ax.fill_between(x, avg["aie"][i] - avg["ci95"][i], avg["aie"][i] + avg["ci95"][i], alpha=0.2)
    what = {None: "single restored layer", "mlp": "MLP window centre", "attn": "Attn window centre"}[avg["kind"]]
    ax.set_xlabel(what)
    ax.set_ylabel("AIE")
    ax.legend(fontsize=7)
    ax.set_title(f"Average indirect effect (n={avg['n']})")
    return ax


# --------------------------------------------------------------------------- notebook 02's figures
_TRACE_KINDS = (("hidden", "Purples"), ("mlp", "Greens"), ("attn", "Reds"))


def trace_fact_heatmaps(rec: dict, preset: str, name: str):
    """rome's three token x layer heatmaps (hidden state, MLP window, attention window) of one fact
    (`rec` = one entry of causal_trace.trace_facts()["traces"]); kinds flat over layers are left out."""

    kinds, dropped = _informative(rec)
    n_tok = len(rec[kinds[0]]["scores"])
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.6 * len(kinds) + 0.6, 1.6 + 0.24 * n_tok), squeeze=False)
    for ax, k in zip(axes[0], kinds):
        plot_trace(rec[k], ax=ax, title=f"{k}: restore after corrupting the subject")
        ax.title.set_fontsize(9)
        ax.xaxis.label.set_fontsize(8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{rec['question']}  (subject: {rec['subject']})", fontsize=9)
    if dropped:
        fig.text(0.01, -0.02, _dropped_note(dropped, rec), fontsize=7, color="0.35", va="top")
    fig.tight_layout()
    save(fig, preset, name)
    return fig


def flat_over_layers(avg: dict, tol: float = 1e-9) -> bool:
    """True when every row (token class of an averaged trace, or token of one fact's trace) has
    the same score at every layer: a restored window that covers all layers (rome's window 10 on
    a 4-layer model) restores the same modules at every centre, so such a panel carries no
    per-layer signal."""
    import warnings

    a = np.asarray(avg["scores"], dtype=float)
    with warnings.catch_warnings():                     # a token class absent from every fact is all-NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = np.nanmax(a, axis=1) - np.nanmin(a, axis=1)
    return bool(np.all(np.nan_to_num(spread) <= tol))


def _informative(avgs: dict) -> tuple[list, list]:
    kinds = [k for k, _ in _TRACE_KINDS if k in avgs]
    keep = [k for k in kinds if k == "hidden" or not flat_over_layers(avgs[k])]
    return keep, [k for k in kinds if k not in keep]


def _dropped_note(dropped: list, avgs: dict) -> str:
    if not dropped:
        return ""
    L = np.asarray(avgs[dropped[0]]["scores"]).shape[1]
    return (f"{' and '.join(dropped)} panels left out: their restored window covers all {L} layers, "
            "so they are flat (see the single-layer MLP trace)")


def trace_average_heatmaps(avgs: dict, preset: str, name: str = "trace_average.png"):
    """Average p(answer) after restoration over facts, tokens grouped into rome's six classes
    (first/middle/last subject token, first subsequent, further tokens, last token) x layers.
    Kinds that are flat over layers (window covering the whole depth) are left out and named."""
    kinds, dropped = _informative(avgs)
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.6 * len(kinds) + 0.6, 2.8), squeeze=False)
    for ax, k in zip(axes[0], kinds):
        a, cmap = avgs[k], dict(_TRACE_KINDS)[k]
        mesh = ax.pcolormesh(np.nan_to_num(a["scores"], nan=a["low_score"]), cmap=cmap, vmin=a["low_score"])
        ax.invert_yaxis()
        ax.set_yticks(np.arange(len(a["labels"])) + 0.5)
        ax.set_yticklabels([f"{l} (n={c})" for l, c in zip(a["labels"], a["count"])], fontsize=7)
        layer_ticks(ax, a["scores"].shape[1], centred=True, fontsize=7)
        ax.set_xlabel("layer" if k == "hidden" else f"centre of restored {k} window", fontsize=8)
        ax.set_title(f"{k}: mean p(o) over {a['n']} facts\nclean {a['high_score']:.3f}, corrupted {a['low_score']:.3f}",
                     fontsize=9)
        fig.colorbar(mesh, ax=ax, format="%.3g")
    if dropped:
        fig.text(0.01, -0.02, _dropped_note(dropped, avgs), fontsize=7, color="0.35", va="top")
    fig.tight_layout()
    save(fig, preset, name)
    return fig


def trace_aie_lines(avgs: dict, preset: str, name: str = "trace_aie.png",
                    rows=("First subject token", "Last subject token", "Further tokens", "Last token")):
    """Average indirect effect per layer with 95% bands, one panel per kind (rome's line plots),
    integer layer ticks; kinds that are flat over layers are left out and named."""

    kinds, dropped = _informative(avgs)
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.4 * len(kinds) + 0.6, 3), sharey=True, squeeze=False)
    for ax, k in zip(axes[0], kinds):
        plot_average(avgs[k], ax=ax, rows=[r for r in rows if avgs[k]["count"][avgs[k]["labels"].index(r)]])
        ax.set_title(f"{k}: AIE (n={avgs[k]['n']}, TE={avgs[k]['te']:.3f})", fontsize=9)
        layer_ticks(ax, np.asarray(avgs[k]["aie"]).shape[1])
    if dropped:
        fig.text(0.01, -0.02, _dropped_note(dropped, avgs), fontsize=7, color="0.35", va="top")
    fig.tight_layout()
    save(fig, preset, name)
    return fig
