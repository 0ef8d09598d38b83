"""A study beside its re-fine-tuned subject models (unedit_lib/report/subject_pairs.py): the pairs must be
one recipe with other seeds, and their numbers and verdicts are set side by side."""
import copy

import pytest

from unedit_lib.core import presets, store
from unedit_lib.report import findings, subject_pairs

GA_UTILITY = "GA destroys utility (MU -> 0)"


@pytest.fixture(autouse=True)
def _forget_given_files():
    yield
    presets._given.clear()


def _pair_files(folder, other_training="seed = 1"):
    folder.mkdir(exist_ok=True)
    presets._given.clear()
    (folder / "pair-a.toml").write_text('extends = "smollm2-forget01"\n[study]\nsubject_pairs = ["pair-b"]\n')
    (folder / "pair-b.toml").write_text(f'extends = "smollm2-forget01"\n[training]\n{other_training}\n'
                                          '[study]\nsubject_pairs = ["pair-a"]\n')
    presets.get_preset(str(folder / "pair-b.toml"))
    return presets.get_preset(str(folder / "pair-a.toml"))


def test_a_subject_pair_is_the_same_recipe_with_another_seed(tmp_path):
    a = _pair_files(tmp_path)
    assert [(q.name, q.seed) for q in subject_pairs.pairs(a)] == [("pair-a", 0), ("pair-b", 1)]
    with pytest.raises(ValueError, match=r"recipe differs in more than the seed: \['lr'\]"):
        subject_pairs.pairs(_pair_files(tmp_path / "lr", "lr = 3e-4"))
    with pytest.raises(ValueError, match="share a fine-tuning seed"):
        subject_pairs.pairs(_pair_files(tmp_path / "same", "seed = 0"))


def test_numbers_and_verdicts_side_by_side_and_where_the_pairs_disagree(tmp_path):
    a = _pair_files(tmp_path)
    ours = store.load_results("smollm2-forget01")
    again = copy.deepcopy(ours)
    again["ga"]["model_utility"] = again["full"]["model_utility"]       # re-fine-tuned: GA keeps its utility
    for run in [r for r in again if r.startswith("rome-")]:
        del again[run]                                                    # ... and has no ROME run
    records_of = {"pair-a": ours, "pair-b": again}

    table = subject_pairs.metric_table(a, records_of)
    assert list(table.index[:3]) == ["full", "retain", "base"] and "ga" in table.index and "rome-dummy" not in table.index
    assert table.loc["ga", ("model_utility", "spread")] == pytest.approx(ours["full"]["model_utility"])
    assert table.loc["gd", ("forget_quality", "spread")] == 0

    decided = {subject_pairs.label(q): findings.study_findings(records_of[q.name], preset=q.name)
               for q in subject_pairs.pairs(a)}
    verdicts = subject_pairs.verdict_table(decided).set_index("finding")
    assert verdicts.loc[GA_UTILITY, "pair-a (seed 0)"].startswith("reproduced")
    assert verdicts.loc[GA_UTILITY, "pair-b (seed 1)"].startswith("not reproduced")
    assert verdicts.loc[GA_UTILITY, "pairs agree"] == "no"
    rome = "ROME-dummy raises forget quality above 0.05 (the full model's is below)"
    assert verdicts.loc[rome, "pairs agree"].startswith("n/a")            # pair b has no ROME run to decide it
    assert verdicts.loc["IdK keeps most utility and stops reciting the forget answers", "pairs agree"] == "yes"
    n, same = subject_pairs.agreement(decided)       # the README's count: the rows that two pairs decide
    column = verdicts["pairs agree"]
    assert (n, same) == ((~column.str.startswith("n/a")).sum(), (column == "yes").sum())
    assert 0 < same < n                                   # GA's utility finding is one they disagree on
    short = {k: [{**row, "verdict": "inconclusive", "unmade": ["ike"]} if row["finding"] == GA_UTILITY else row
                 for row in rows] for k, rows in decided.items()}
    assert subject_pairs.agreement(short) == (n - 1, same)     # runs not made decide nothing
