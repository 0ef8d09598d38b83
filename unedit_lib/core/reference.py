"""Published reference numbers, cited, for tables beside ours (never our own results).

Sources:
* docs/tofu.md section 5.1: TOFU's legacy logs (Llama-2-7b-chat, forget10,
  ds_size 300).
* docs/paper.md section 7.2: the results of arXiv 2512.20794's authors'
  repositories (shariqahn/tofu, shariqahn/EasyEdit; Llama-2-7b TOFU fine-tuned, forget10,
  300 evaluated rows). The paper's own table is not available; paper.md explains why these
  repo rows stand in for it (one of them matches the numbers published from the paper).
  "FQ*" values there are recomputed from the committed logs; NaN entries (collapsed ROME
  runs) are kept as NaN.
* paper.md section 7.3: EasyEdit's edit-level metrics of the same runs.

Everything here is typed from those notes, once, and only read by notebooks and tables.
"""
from __future__ import annotations

import math

NAN = math.nan

# tofu.md 5.1: forget10 set (Prob / ROUGE-L recall / min(R,1/R)), MU, FQ vs retain90
TOFU_LLAMA2 = {
    "full": {"forget/rouge": 0.985, "forget/prob": 0.991, "forget/truth_ratio": 0.516,
             "model_utility": 0.623, "forget_quality": 1.8e-21},
    "retain90": {"forget/rouge": 0.408, "forget/prob": 0.148, "forget/truth_ratio": 0.674,
                 "model_utility": 0.614, "forget_quality": 1.0},
}


def tofu_llama2_subject_rows():
    import pandas as pd

    return pd.DataFrame(TOFU_LLAMA2).T.rename(index=lambda r: f"TOFU Llama-2-7b (tofu.md 5.1): {r}")


# paper.md 7.2, column order of the table there:
# R-RA P-RA TR-RA | R-RW P-RW TR-RW | R-Ret P-Ret TR-Ret | R-F P-F TR-F | MU | FQ
PAPER_COLUMNS = ("real_authors/rouge", "real_authors/prob", "real_authors/truth_ratio",
            "world_facts/rouge", "world_facts/prob", "world_facts/truth_ratio",
            "retain/rouge", "retain/prob", "retain/truth_ratio",
            "forget/rouge", "forget/prob", "forget/truth_ratio",
            "model_utility", "forget_quality")

# our run name -> (the paper.md 7.2 row it corresponds to, its 14 numbers)
_PAPER_72 = {
    "full": ("Finetuned, no unlearning (tofu_baseline_runpod)",
             (0.933, 0.4486, 0.581, 0.8746, 0.4262, 0.5594, 0.9822, 0.9895, 0.4832, 0.9855, 0.9901, 0.5063, 0.6251, 4.915e-20)),
    "retain": ("Retain90 reference (retain90_wd0.01)",
               (0.923, 0.4341, 0.5707, 0.8974, 0.4143, 0.5442, 0.9758, 0.9889, 0.471, 0.4082, 0.1476, 0.674, 0.6137, 1.0)),
    "ga": ("Gradient Ascent (runpod)",
           (0, 0.2316, 0.3683, 0, 0.2389, 0.3825, 0, 4.901e-36, 0.07523, 0.001744, 7.728e-36, 0.8445, 0, 1.433e-22)),
    "gd": ("Gradient Difference",
           (0.8173, 0.5637, 0.7324, 0.8889, 0.4648, 0.6074, 0.4665, 0.5479, 0.4929, 0.002444, 1.615e-31, 0.8218, 0.5889, 1.125e-25)),
    "kl": ("KL (checkpoint-60)",
           (0, 0.2737, 0.3916, 0, 0.2507, 0.3809, 0, 3.784e-33, 0.06674, 0, 1.311e-33, 0.8658, 0, 4.876e-33)),
    "idk": ("Preference Opt. / IdK (runpod)",
            (0.5247, 0.4029, 0.5041, 0.8561, 0.3915, 0.4842, 0.7726, 0.9417, 0.4551, 0.05331, 0.848, 0.547, 0.5385, 5.1e-17)),
    "rome-dummy": ("ROME dummy (v_lr 0.1; ROME_dummy_lr_1)",
                   (0.1212, 0.3537, 0.454, 0.6264, 0.4296, 0.5827, 0.08933, 0.04091, 0.2282, 0.04127, 0.01168, 0.6969, 0.1527, 0.1212)),
    "rome-incorrect": ("ROME incorrect (v_lr 0.1)",
                       (0.002, NAN, NAN, 0.02707, 0.2576, 0.2386, 0.08973, NAN, NAN, 0.09891, NAN, NAN, NAN, 8.836e-08)),
    "rome-avoidant": ("ROME avoidant (v_lr 0.1)",
                      (0.006667, 0.275, 0.281, 0.002849, 0.2353, 0.1897, 0.02971, NAN, NAN, 0.03558, NAN, NAN, NAN, 9.253e-11)),
    "ike-dummy": ("IKE dummy (ICL on logits)",
                  (0.1633, 0.3407, 0.3889, 0.2261, 0.456, 0.5803, 0.2834, 0.7131, 0.583, 0.4663, 0.6769, 0.5084, 0.3382, 4.915e-20)),
    "ike-incorrect": ("IKE incorrect (ICL on logits)",
                      (0.48, 0.3553, 0.4175, 0.8212, 0.4376, 0.5666, 0.2898, 0.7813, 0.5741, 0.4236, 0.3856, 0.7123, 0.4728, 0.2488)),
    "ike-avoidant": ("IKE avoidant (ICL on logits)",
                     (0.4735, 0.3299, 0.3684, 0.7293, 0.4806, 0.6172, 0.2508, 0.7839, 0.5831, 0.3832, 0.567, 0.5392, 0.4521, 2.431e-17)),
    "wise-dummy": ("WISE dummy",
                   (0.933, 0.4372, 0.5867, 0.8746, 0.4236, 0.564, 0.9822, 0.8033, 0.4676, 0.9647, 0.8147, 0.5183, 0.6105, 4.22e-21)),
    "wise-incorrect": ("WISE incorrect",
                       (0.933, 0.4234, 0.554, 0.8746, 0.426, 0.5745, 0.9822, 0.918, 0.4248, 0.9819, 0.8656, 0.6075, 0.6028, 8.994e-07)),
    "wise-avoidant": ("WISE avoidant (matches paper.md 7.1)",
                      (0.933, 0.4065, 0.5644, 0.8746, 0.4262, 0.5591, 0.9822, 0.9487, 0.4867, 0.9855, 0.8992, 0.5111, 0.6119, 2.431e-17)),
}

# paper.md 7.2 [repo]: IKE with the context on generation only (the paper's other IKE runs). Their
# probabilities are the full model's, so their forget quality is invalid (the repo's CSV says 1): NaN here.
_PAPER_72_IKE_GENERATION = {
    "ike-dummy": ("IKE dummy (ICL on generation only)",
                  (0.2633, 0.4487, 0.581, 0.137, 0.426, 0.5588, 0.2897, 0.9895, 0.4829, 0.1331, 0.9901, 0.5065, 0.35, NAN)),
    "ike-incorrect": ("IKE incorrect (ICL on generation only)",
                      (0.245, 0.4487, 0.5809, 0.1876, 0.4261, 0.5588, 0.3128, 0.9895, 0.4829, 0.4235, 0.9901, 0.5065, 0.3785, NAN)),
    "ike-avoidant": ("IKE avoidant (ICL on generation only)",
                     (0.22, 0.4487, 0.5809, 0.1491, 0.4261, 0.5588, 0.2553, 0.9895, 0.4829, 0.383, 0.9901, 0.5065, 0.3417, NAN)),
}

# paper.md 7.3: EasyEdit edit-level post-edit means (requests, pre rewrite, rewrite, rephrase, locality)
_PAPER_73 = {
    "rome-dummy": (400, 0.0, 0.985, 0.975, 0.3132),
    "rome-incorrect": (400, 0.5773, 0.0464, 0.0461, 0.0429),
    "rome-avoidant": (400, 0.6029, 0.0903, 0.0942, 0.0287),
    "ike-dummy": (40, 0.0, 1.0, 1.0, 0.8882),
    "ike-incorrect": (40, 0.6025, 0.9961, 0.9834, 0.9055),
    "ike-avoidant": (40, 0.6164, 0.9994, 0.997, 0.9193),
    "wise-dummy": (400, 0.0, 0.1, 0.0425, 0.999),
    "wise-incorrect": (400, 0.5773, 0.6094, 0.5957, 0.9995),
    "wise-avoidant": (400, 0.6029, 0.8785, 0.7995, 0.9998),
}

PAPER_SOURCE = ("arXiv 2512.20794 authors' repo results (docs/paper.md 7.2): "
                "Llama-2-7b TOFU fine-tuned, forget10, 300 evaluated rows")


def paper_row(run: str) -> dict | None:
    """The paper's numbers for one of our run names (metric name -> value; NaN where the
    authors' run produced NaN), with "paper_run" naming the row; None without a counterpart."""
    if run not in _PAPER_72:
        return None
    name, values = _PAPER_72[run]
    return {"paper_run": name, **dict(zip(PAPER_COLUMNS, values))}


def paper_ike_generation_row(run: str) -> dict | None:
    """The paper's "ICL on generation only" IKE row for one of our IKE run names (paper.md 7.2
    [repo]; forget quality NaN: invalid there, the logits being the full model's), or None."""
    if run not in _PAPER_72_IKE_GENERATION:
        return None
    name, values = _PAPER_72_IKE_GENERATION[run]
    return {"paper_run": name, **dict(zip(PAPER_COLUMNS, values))}


def paper_edit_metrics(run: str) -> dict | None:
    """paper.md 7.3 edit-level metrics for one of our run names, or None."""
    if run not in _PAPER_73:
        return None
    return dict(zip(("requests", "pre_rewrite_acc", "rewrite_acc", "rephrase_acc", "locality"), _PAPER_73[run]))


def paper_runs() -> list[str]:
    """Our run names that have a paper counterpart, in the paper table's order."""
    return list(_PAPER_72)


def paper_table():
    """The paper's rows (paper.md 7.2) as a DataFrame indexed by our run names."""
    import pandas as pd

    return pd.DataFrame({run: paper_row(run) for run in _PAPER_72}).T
