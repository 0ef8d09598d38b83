"""Where a figure goes and how it is written (every figure module saves through `save`).

The headline preset (`paths.HEADLINE_PRESET`) writes into figures/ (committed, shown by the
README); every other preset writes into runs/<preset>/figures/ so that test runs never
overwrite them (`paths.figure_path`). Matplotlib draws off-screen (Agg) in the seaborn theme.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import seaborn as sns  # noqa: E402

from ..core import paths  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")


def figure_path(preset: str, name: str) -> Path:
    path = paths.figure_path(preset, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def save(fig, preset: str, name: str) -> Path:
    """Write the figure (atomically) and, inside a notebook kernel, show the saved PNG as the
    cell's output: the Agg backend displays nothing by itself, and the executed notebooks that
    are committed must carry their figures."""
    path = figure_path(preset, name)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    tmp.replace(path)
    _show_in_notebook(path)
    return path


def _show_in_notebook(path: Path) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and getattr(shell, "kernel", None) is not None:
        display(Image(filename=str(path)))


def layer_ticks(ax, n_layers: int, first: int = 0, centred: bool = False, fontsize=None) -> None:
    """Integer layer ticks that stay readable at any depth: every layer up to 12, then every 2nd,
    5th or 10th (a 30-layer model gets 0, 5, ..., 25). `centred` puts them mid-cell (heatmaps)."""
    step = next(s for s in (1, 2, 5, 10, 20, 50) if n_layers <= 12 * s)
    ticks = list(range(first, first + n_layers, step))
    ax.set_xticks([t - first + 0.5 for t in ticks] if centred else ticks)
    ax.set_xticklabels([str(t) for t in ticks], fontsize=fontsize)


def integer_ticks(ax, axis: str = "x") -> None:
    """Integer tick labels only (layers, edits, steps)."""
    from matplotlib.ticker import MaxNLocator

    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))
