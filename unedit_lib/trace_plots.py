"""Drawing of causal traces (unedit_lib.trace results): rome's per-fact heatmap and the
average-effect line plot. Study-level: the algorithm (trace.py) draws nothing; plots.py builds
notebook 02's saved figures from these."""
from __future__ import annotations

import numpy as np

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
    n_layers = result["scores"].shape[1]
    step = max(1, n_layers // 8)
    ax.set_xticks([0.5 + i for i in range(0, n_layers, step)])
    ax.set_xticklabels(list(range(0, n_layers, step)))
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
