"""Figures of the study (matplotlib/seaborn), saved as PNG.

The `default` preset writes into figures/ (committed, shown by the README); every other
preset writes into runs/<preset>/figures/ so that test runs never overwrite them.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from .data import REPO_ROOT  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")


def figure_path(preset: str, name: str) -> Path:
    folder = REPO_ROOT / "figures" if preset == "default" else REPO_ROOT / "runs" / preset / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


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
    ax.set(xlabel="layer", ylabel="p(first answer token)", title=f"Subject last-token restoration ({preset})")
    ax.legend()
    save(fig, preset, "subject_last_token_trace.png")
    return fig
