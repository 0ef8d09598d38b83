"""The study's own settings per method, on top of each method's published defaults (the paper's), and
the named ablations run beside them: tables that recipes.py reads (recipes.settings resolves one run's
settings: the method's defaults < its table's "all" here < the preset file's [settings.<table>] < the
run's overrides). What differs per preset (settings, ablation targets, attack settings) is in its
preset file (presets/*.toml). Each method's table is attached to its entry of registry.py (at the end).
"""
from __future__ import annotations

from ..core import presets, registry
from ..core.embeddings import DEFAULT_SENTENCE_MODEL

# The study's own choices for every preset, per settings table, on top of each method's defaults.
# Everything not listed is the method's default (the paper's, via EasyEdit / TOFU); a preset's file
# adds its own ([settings.rome], ...: smoke's cheap editors, the forget05 study's raw edit requests).
STUDY_SETTINGS = {
    "rome": {
        # The reproduction runs rome.RomeHParams' defaults, the paper's (C = I, v_lr 0.1 from its fork,
        # 21 context templates). Where its edits do not take on our model, `rome_reproduction` also runs
        # the smallest v_lr of V_LR_GRID with which they do (named `+v_lr=...`), and our own settings
        # run beside them as the named ablation STUDY_ABLATIONS["rome"].
        "all": dict(n_edits=None, n_locality=40, fallback_layer=None, edit_template=None),
    },
    "ike": {
        "all": dict(truncate=True, n_locality=20, sentence_model=DEFAULT_SENTENCE_MODEL),
    },
    # Only the learning rate departs from TOFU's defaults (baselines.BaselineHParams: 10 epochs, wd 0.01,
    # warmup 1 epoch, effective batch 32 = 8 x 4, β 0.1, α=γ=1), set by each preset's file: TOFU unlearns
    # with the lr it fine-tuned with (1e-5, tofu.md §4), and each preset's subject models were trained
    # with their own (forget01: 40 rows / 32 per step = 2 optimizer steps per epoch).
    "baselines": {},
    "wise": {
        # save_freq / merge_freq scaled to the forget-set size (scaled_freqs): the paper's 400
        # edits < 500 never sharded; n_locality: the paper's 400 margin-loss prompts
        "all": dict(scale_freqs=True, reference_edits=400, n_locality=400, max_edits=None, edit_template=None),
    },
}
# Our own settings, each run as a named ablation beside the reproduction (notebook 03 / 05 show
# what they change from the paper's): for ROME, C from the study's QA texts + EasyEdit's v_lr 0.5
# + "{}" and 5 prefixes instead of 21 templates.
STUDY_ABLATIONS = {
    "rome": {"c-from-text+v_lr-0.5+templates-6": dict(mom2_adjustment=True, v_lr=0.5,
                                                      context_template_length_params=((5, 5),))},
}


def runs_ablations(preset) -> bool:
    """Whether the study runs its v_lr grid and named ablations on `preset` (its file's
    [study] paper_settings_only)."""
    return not presets.get_preset(preset).paper_settings_only


# For WISE, run on one target by notebook 05 (`wise_ablation_runs`): the router decided per
# row on the prompt, and margins scaled to our model's activation level
WISE_ABLATIONS = ("per-row-routing", "margins-scaled")


def preset_settings(preset, method: str, valid) -> dict:
    """The preset file's own settings of `method` (its [settings.<table>]); a name that is none of
    `valid` (the run's settings) is an error naming the file."""
    p, table = presets.get_preset(preset), presets.settings_table(method)
    own = p.method_settings(table)
    unknown = sorted(set(own) - set(valid))
    if unknown:
        raise TypeError(f"{p.file or p.name}: [settings.{table}] sets {unknown}, not settings of {method}; "
                        f"valid: {sorted(valid)}")
    return own


def preset_attack(preset, valid) -> dict:
    """The preset file's [attack] (notebook 08's settings); a name that is none of `valid` is an error."""
    p = presets.get_preset(preset)
    unknown = sorted(set(p.attack) - set(valid))
    if unknown:
        raise TypeError(f"{p.file or p.name}: [attack] sets {unknown}; valid: {sorted(valid)}")
    return dict(p.attack)


# each method's table above, attached to its registry entry (recipes.settings reads it there)
for _name, _table in (("rome", "rome"), ("rrome", "rome"), ("ike", "ike"), ("wise", "wise")):
    registry.attach(_name, study_settings=STUDY_SETTINGS[_table])
for _name in registry.names(registry.BASELINE):
    registry.attach(_name, study_settings=STUDY_SETTINGS["baselines"])
