"""The study's own settings, per method and preset, on top of each method's published defaults (the
paper's), the named ablations run beside them, and notebook 08's attack settings per preset: tables
that recipes.py reads (recipes.settings resolves one run's settings from them). Each method's
table is attached to its entry of registry.py (at the end).
"""
from __future__ import annotations

from . import models, registry
from .embeddings import DEFAULT_SENTENCE_MODEL

# The study's own choices, per method and preset, on top of each method's defaults. Everything
# not listed is the method's default (the paper's, via EasyEdit / TOFU).
STUDY_SETTINGS = {
    "rome": {
        # The reproduction runs rome.RomeHParams' defaults, the paper's (C = I, v_lr 0.1 from its fork,
        # 21 context templates). Where its edits do not take on our model, `rome_reproduction` also runs
        # the smallest v_lr of V_LR_GRID with which they do (named `+v_lr=...`), and our own settings
        # run beside them as the named ablation STUDY_ABLATIONS["rome"]. smoke (CI only, no finding
        # reads it) edits 3 facts with 8 steps and 6 templates to stay cheap.
        "all": dict(n_edits=None, n_locality=40, fallback_layer=None, edit_template=None),
        "smoke": dict(context_template_length_params=((5, 5),), n_edits=3, v_num_grad_steps=8, n_locality=6,
                      ablation="templates-6"),
        # the paper's requests: the raw question, as EasyEdit builds them (the chat template comes in only
        # at evaluation); the forget01 presets edit the chat-templated question, a difference they state
        "smollm2-forget05": dict(edit_template="raw"),
    },
    "ike": {
        "all": dict(truncate=True, n_locality=20, sentence_model=DEFAULT_SENTENCE_MODEL),
        # the paper's 40 requests: forget10's last 10% = forget01's rows, the pool the rest of the split;
        # forget05's last 20% are the same 40 rows (tests/test_ike.py checks it)
        "smollm2-forget05": dict(pool_fraction=0.8),
    },
    "baselines": {
        # Only the learning rate departs from TOFU's defaults (baselines.BaselineHParams: 10 epochs, wd
        # 0.01, warmup 1 epoch, effective batch 32 = 8 x 4, β 0.1, α=γ=1) for our subject models:
        # TOFU unlearns with the lr it fine-tuned with (1e-5, tofu.md §4), but the `tiny` subject
        # models were trained from scratch with lr ~5e-3 (models.Preset.lr), so 1e-5 would barely
        # move them in 20 optimizer steps (forget01: 40 rows / 32 per step = 2 steps per epoch).
        # 1e-3 (a fifth of the training lr) on `tiny`; `smoke` trains fewer epochs to stay cheap.
        "smoke": dict(lr=1e-3, epochs=3),
        "tiny": dict(lr=1e-3),
        "smollm2": dict(lr=1e-4),   # the lr its subject models were fine-tuned with (TOFU's rule)
        "smollm2-forget05": dict(lr=1e-4),
        "paper": dict(lr=1e-5),   # TOFU's own setting for its Llama-2-7b models
    },
    "wise": {
        # save_freq / merge_freq scaled to the forget-set size (scaled_freqs): the paper's 400
        # edits < 500 never sharded; n_locality: the paper's 400 margin-loss prompts
        "all": dict(scale_freqs=True, reference_edits=400, n_locality=400, max_edits=None, edit_template=None),
        # activation scores over real tokens: the settings the committed runs of these presets were made
        # with (the paper's, EasyEdit's padding-inclusive "easyedit", is WiseHParams' default)
        "smoke": dict(n_iter=8, n_templates=3, max_edits=8, activation_score="real-tokens"),
        "tiny": dict(activation_score="real-tokens"),
        "smollm2": dict(activation_score="real-tokens"),
        "smollm2-forget05": dict(edit_template="raw"),      # the paper's requests (as ROME's above)
    },
}
# Our own settings, each run as a named ablation beside the reproduction (notebook 03 / 05 show
# what they change from the paper's): for ROME, C from the study's QA texts + EasyEdit's v_lr 0.5
# + "{}" and 5 prefixes instead of 21 templates.
STUDY_ABLATIONS = {
    "rome": {"c-from-text+v_lr-0.5+templates-6": dict(mom2_adjustment=True, v_lr=0.5,
                                                      context_template_length_params=((5, 5),))},
}
# Presets that run the paper's settings only: no v_lr grid, none of our ablations (forget05's runs cost
# 5x forget01's; the forget01 study holds the grid and the ablations)
PAPER_SETTINGS_ONLY = ("smollm2-forget05",)


def runs_ablations(preset) -> bool:
    """Whether the study runs its v_lr grid and named ablations on `preset` (PAPER_SETTINGS_ONLY)."""
    return models.get_preset(preset).name not in PAPER_SETTINGS_ONLY


# The ROME ablation's targets where not all (smollm2: one whole run is 25-75 min on 2 CPU cores)
ROME_ABLATION_TARGETS = {"smollm2": ("dummy",)}
# ... and for WISE, run on one target by notebook 05 (`wise_ablation_runs`): the router decided per
# row on the prompt, and margins scaled to our model's activation level
WISE_ABLATIONS = ("per-row-routing", "margins-scaled")


# Notebook 08's settings per preset on top of robustness.DEFAULTS. forget05: the attacks read every 5th
# forget row (rows 0, 5, ..., 195: 40 rows, 4 of each of the 10 authors), as many as forget01 has
ATTACK_SETTINGS = {"smollm2-forget05": {"forget_every": 5}}



# each method's table above, attached to its registry entry (recipes.settings reads it there)
for _name, _table in (("rome", "rome"), ("rrome", "rome"), ("ike", "ike"), ("wise", "wise")):
    registry.attach(_name, study_settings=STUDY_SETTINGS[_table])
for _name in registry.names(registry.BASELINE):
    registry.attach(_name, study_settings=STUDY_SETTINGS["baselines"])
