"""Where every file of the study goes: the one module that decides paths.

Four output folders, each movable with an environment variable UNEDIT_<KIND>_DIR (the
benchmark runs the whole study in a scratch folder that way, leaving the committed results
and figures alone):

  artifacts/<preset>/...            models, tokenizers and caches (rebuildable, git-ignored)
  results/<preset>/<run>.json       one run's record; results/<preset>/<run>/ its per-item logs
  figures/ (the headline preset) or runs/<preset>/figures/
  runs/<preset>/                    executed notebooks and stage_times.json

Records store paths relative to the repository (`display_path`), so they read the same on
another machine. Nothing here creates folders; the writers in `store` do.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUT_KINDS = ("artifacts", "results", "figures", "runs")
# The preset whose results, figures (figures/) and executed notebooks (runs/<preset>/*.ipynb) are
# committed and shown by the README. The Makefile's HEADLINE and .gitignore's un-ignored
# runs/<preset>/ name the same preset (tests/test_reader.py checks it).
HEADLINE_PRESET = "smollm2-forget01"
# Studies that were the headline once and stay committed under their own name beside it: results/<p>/,
# the executed notebooks runs/<p>/*.ipynb with their figures runs/<p>/figures/, and the README's
# `earlier` block (its answer, main table and ablations). The Makefile's EARLIER and .gitignore name
# the same presets (tests/test_reader.py checks it).
EARLIER_PRESETS: tuple[str, ...] = ()
# A preset whose study is under way: `make readme` shows its runs and premises so far in the README's
# `progress` block (scripts/write_readme_results.py); None when no study is in progress.
IN_PROGRESS_PRESET = "smollm2-forget05"


def committed_presets() -> tuple[str, ...]:
    """The presets whose executed notebooks are committed: the headline, then the earlier studies."""
    return (HEADLINE_PRESET, *EARLIER_PRESETS)


def output_dir(kind: str) -> Path:
    """The folder of one output kind: the repository's, or the one UNEDIT_<KIND>_DIR names."""
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"unknown output kind {kind!r}; valid: {sorted(OUTPUT_KINDS)}")
    env = os.environ.get(f"UNEDIT_{kind.upper()}_DIR")
    return Path(env) if env else REPO_ROOT / kind


def display_path(path) -> str:
    """A path as records keep it: relative to the repository when inside it or beside it (the
    data in ../shared/tofu), else as given (a hub id stays a hub id)."""
    p = Path(str(path))
    if not p.is_absolute():           # a hub id, or a path relative to where the user is: as given
        return str(path)
    for where in (Path(os.path.abspath(p)), p.resolve()):      # as given, then through symlinks
        for base, shown in ((REPO_ROOT, Path()), (REPO_ROOT.parent, Path(".."))):
            if where.is_relative_to(base):
                return str(shown / where.relative_to(base))
    return str(path)


LOG_FILES = {  # a run's per-item logs: TOFU's legacy file names (locuslab/tofu config/eval_everything.yaml)
    "retain": "eval_log.json",
    "forget": "eval_log_forget.json",
    "real_authors": "eval_real_author_wo_options.json",
    "world_facts": "eval_real_world_wo_options.json",
}


# --------------------------------------------------------------------------- artifacts
def artifacts_dir(preset: str) -> Path:
    return output_dir("artifacts") / preset


def unlearned_dir(preset: str, subject_model: str, run: str) -> Path:
    """artifacts/<preset>/unlearned/<full model folder name>/<run>/: a run's unlearned model."""
    return artifacts_dir(preset) / "unlearned" / subject_model / run


def mom2_cache_dir(preset: str) -> Path:
    """ROME's second-moment statistics C of one preset's models."""
    return artifacts_dir(preset) / "mom2"


def checkpoint_path(preset: str, run: str) -> Path:
    """A sequential-edit run's state after its last edit (checkpoints.EditCheckpoint), while it runs."""
    return artifacts_dir(preset) / "checkpoints" / f"{run}.safetensors"


def eval_checkpoint_dir(preset: str, run: str) -> Path:
    """A run's evaluated sets so far (checkpoints.EvalCheckpoint), while it is evaluated."""
    return artifacts_dir(preset) / "checkpoints" / f"{run}.eval"


def ike_embedding_cache_dir() -> Path:
    """Sentence embeddings of IKE demonstration pools (shared by presets: keyed by content)."""
    return output_dir("artifacts") / "ike_embeddings"


# --------------------------------------------------------------------------- results
def results_dir(preset: str) -> Path:
    return output_dir("results") / preset


def record_path(preset: str, run: str) -> Path:
    return results_dir(preset) / f"{run}.json"


def logs_dir(preset: str, run: str) -> Path:
    return results_dir(preset) / run


def trace_dir(preset: str) -> Path:
    """Causal-trace caches and the chosen ROME layer (notebook 02)."""
    return results_dir(preset) / "trace"


def edit_layer_path(preset: str) -> Path:
    return trace_dir(preset) / "rome_layer.json"


def parked_checkpoint_path(preset: str, run: str, results: Path | None = None) -> Path:
    """results/<preset>/in_progress/<run>.safetensors (or under `results`, a preset's results folder given
    apart): a run's EditCheckpoint committed so that a session (a fresh clone) continues a run longer
    than one (checkpoints.park)."""
    return (results or results_dir(preset)) / "in_progress" / f"{run}.safetensors"


def robustness_path(preset: str) -> Path:
    return results_dir(preset) / "robustness.json"


# --------------------------------------------------------------------------- figures and runs
def figure_path(preset: str, name: str) -> Path:
    """figures/<name> for the headline preset (the README shows them), else runs/<preset>/figures/."""
    folder = output_dir("figures") if preset == HEADLINE_PRESET else output_dir("runs") / preset / "figures"
    return folder / name


def runs_dir(preset: str) -> Path:
    return output_dir("runs") / preset
