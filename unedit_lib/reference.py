"""Published reference numbers, cited, for tables beside ours (never our own results).

Sources: ../shared/reference/tofu.md section 5.1 (TOFU legacy logs, Llama-2-7b-chat,
forget10, ds_size 300) and ../shared/reference/paper.md section 7.2 (the authors' repo
results for arXiv 2512.20794, Llama-2-7b, forget10).
"""
from __future__ import annotations

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
