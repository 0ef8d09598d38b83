"""The cost plan (issue 37): its FLOP formulas by hand on a tiny config, and a plan of the smoke
study that covers every run with positive numbers (no model is run; the sgemm probe is tiny)."""
import dataclasses

import pytest

from unedit_lib.core import data, presets
from unedit_lib.core.checkpoints import EditCheckpoint
from unedit_lib.subject import models
from unedit_lib.study import cost_plan as c, recipes, settings as study_settings

# d 4, 2 blocks, i 8, V 10, no GQA: P_b = 2*16 (q, o) + 2*16 (k, v) + 3*32 (gate, up, down) = 160; head 40
M = c.ModelSize(hidden=4, layers=2, intermediate=8, vocab=10, kv=4)


def test_sizes_and_pairs():
    assert (M.block_params, M.head_params) == (160, 40)
    assert c.causal_pairs(3) == 6                  # 1 + 2 + 3
    assert c.causal_pairs(2, before=3) == 9        # 4 + 5


def test_forward_by_hand():
    # 2 blocks x (2*160*3 tokens + 4*4*6 pairs) + 2*40*1 logit row = 2*(960 + 96) + 80
    assert c.forward_flops(M, 3, pairs=6, logits=1) == 2192
    assert c.sequence_forward(M, 3, logits=1) == 2192
    assert c.sequence_forward(M, 2) == 2 * (2 * 160 * 2 + 4 * 4 * 3)          # 1376
    assert c.sequence_forward(M, 2, blocks=1) == 688


def test_eval_by_hand():
    # one question of 2 prompt tokens, one answer of 1 token, 1 generated token:
    # (prompt + answer) 2192 + the prompt again 1376 + one cached step after 2 tokens (3 pairs, 1 logit row) 816
    assert c.eval_flops(M, [(2, [1])], max_new_tokens=1) == 2192 + 1376 + 816
    # with a context of 1 token: context + prompt once (3 tokens, no logits) 2112, the answer after
    # 3 cached (4 pairs) 2*(320 + 64) + 80 = 848, the generated token after 3 cached likewise 848
    assert c.eval_flops(M, [(2, [1])], max_new_tokens=1, context=1) == 2112 + 848 + 848


def test_baselines_by_hand():
    row = c.sequence_forward(M, 3, logits=3)        # 2*(960 + 96) + 2*40*3 = 2352
    assert row == 2352
    assert c.baseline_flops(M, "ga", [3], retain_mean=3, epochs=2) == 2 * 3 * row              # forget only
    assert c.baseline_flops(M, "gd", [3], retain_mean=3, epochs=2) == 2 * 2 * 3 * row          # + retain
    assert c.baseline_flops(M, "kl", [3], retain_mean=3, epochs=2) == 2 * (2 * 3 * row + row)  # + reference
    assert c.baseline_flops(M, "idk", [5], retain_mean=3, epochs=1, idk_mean=3) == 2 * 3 * row  # idk answer


def test_editors_by_hand():
    # ROME, layer 0, one template row of 2 tokens, a 1-token target, KL row of 2, one step:
    # u 1376 + first forward (2 rows of 2) 2752 + 2*40*2 head rows + 1 step x 2 x (tail 2*688 + 160)
    assert c.rome_edit_flops(M, 0, [2], 1, 2, steps=1) == 1376 + 2752 + 160 + 2 * (1376 + 160)
    # WISE, layer 0, one row (2 prefix + 1 target) and a 2-token locality text, one iteration:
    # first 2112 + 1376 + 80; side memory 2*4*8*5 = 320; tail 1056 + 688 + 320 + 80 = 2144; 2 x tail + side
    assert c.wise_edit_flops(M, 0, [(2, 1)], locality=2, iters=1) == 3568 + 2 * 2144 + 320
    # cost grows linearly in the steps
    one, two = (c.rome_edit_flops(M, 0, [2], 1, 2, steps=s) for s in (1, 2))
    assert two - one == 2 * (1376 + 160)


def test_ikes_forget_row_lift_by_hand():
    # one row: prompt 2, target 1, truth 1 token; a 1-token context: context + prompt (3 tokens, no logits)
    # 2112, each answer after 3 cached 848; without: the prompt 1376, each answer after 2 cached 816
    assert c.context_lift_flops(M, [(2, 1, 1)], context=1) == 2112 + 2 * 848 + 1376 + 2 * 816
    # an edit request: before the edit without the context (2 + 1 tokens), rewrite and rephrase after it with
    # the context's own pass (1 + 2 + 1 tokens), 1 logit row each
    assert c.edit_metrics_flops(M, [(2, 1)], [], context=1) == 2192 + 2 * c.sequence_forward(M, 4, logits=1)
    assert c.edit_metrics_flops(M, [(2, 1)], [(2, 1)]) == 5 * 2192       # no context: 3 request + 2 locality passes


def test_attacks_by_hand():
    """Notebook 08 on one row of a 2-token prompt and a 1-token answer everywhere, 1 generated token,
    1 step per fine-tune, every row relearned (none held out)."""
    one = [(2, 1)]
    rows = {k: one for k in ("question", "paraphrase", "raw_template", "insist", "few_shot", "probe_train", "holdout")}
    rows |= {"relearn_train": [3], "persistence_train": [3]}
    hp = {"max_new_tokens": 1, "relearn_every": 1, "relearn_steps": 1, "persistence_steps": 1}
    score, tune = 2192 + 1376 + 816, 3 * 2352          # test_eval_by_hand's question; 3 x a 3-token row with logits
    # 6 scores (question, persistence's after, paraphrase, 3 templates) + 2 fine-tunes + MIA's 2 rows (3 tokens,
    # 1 logit row) + the probe: 2 rows with every logit, X^T X and the solve (d + 1 = 5) a layer (3), the
    # logit lens 2 blocks x 2 x 40 x 1 token
    probe = 2 * 2352 + 3 * (2 * 1 * 25 + 2 * 125 / 3) + 2 * 2 * 40
    assert c.attack_flops(M, rows, hp) == pytest.approx(6 * score + 2 * tune + 2 * 2192 + probe)
    # IKE (a 1-token context): the scores as test_eval_by_hand's, MIA over 4 tokens, no probe
    assert c.attack_flops(M, rows, hp, context=1) == pytest.approx(6 * (2112 + 848 + 848) + 2 * tune + 2 * 2960)
    two = c.attack_flops(M, rows, {**hp, "relearn_steps": 2}) - c.attack_flops(M, rows, hp)
    assert two == pytest.approx(tune)                  # linear in the steps


@pytest.fixture(scope="module")
def smoke_plan():
    return c.plan("smoke", recipes.settings, lambda m, t, **ov: recipes.plan("smoke", m, t, **ov)[0],
                  study_settings.STUDY_ABLATIONS, c.Tokens(None), attack_settings=recipes.attack_settings)


def test_plan_covers_every_run_of_the_smoke_study(smoke_plan):
    size, runs = smoke_plan
    assert size.hidden == 32 and size.layers == 2
    names = [r.run for r in runs]
    expected = {"full", "retain", "ga", "gd", "kl", "idk", "npo"} | \
        {f"{m}-{t}" for m in ("rome", "ike", "wise") for t in data.TARGETS}
    assert expected <= set(names) and len(names) == len(set(names))
    assert any(n.startswith("rome-") and "mom2_adjustment=True" in n for n in names)   # the ROME ablation
    for r in runs:
        assert r.eval_flops > 0, r.run
        assert r.unlearn_flops > 0 or r.method == "attack", r.run   # the subject models': their fine-tunes
    by = {r.run: r for r in runs}
    assert by["full"].unlearn_flops > by["retain"].unlearn_flops and "fine-tune" in by["full"].notes[0]
    assert by["ike-dummy"].eval_flops > by["full"].eval_flops          # the contexts cost
    assert by["gd"].unlearn_flops > by["ga"].unlearn_flops             # + the retain rows
    attacked = [n.removesuffix(": attacks") for n in names if n.endswith(": attacks")]   # notebook 08's models
    assert attacked == ["full", "retain"] + [r.run for r in runs if r.method not in ("eval", "attack")
                                             and "+" not in r.run and not r.run.endswith(("-s1", "-s2"))]
    assert by["ike-dummy: attacks"].eval_flops > by["rome-dummy: attacks"].eval_flops   # its contexts


def test_table_and_a_tiny_probe(smoke_plan):
    size, runs = smoke_plan
    gflops = c.sgemm_gflops(size, tokens=8, seconds=0.01)
    assert gflops > 0
    lines = c.table(runs, gflops)
    assert lines[len(runs) + 2].startswith("total: ")   # then what is made and left, where results/smoke/ holds records
    assert all(x.startswith(("made: ", "subject-model fine-tunes", "still to run")) for x in lines[len(runs) + 3:])
    assert c.cpu_name()


def test_the_table_projects_what_is_left_at_the_share_achieved():
    """Two runs made at half the probe's rate: the runs left cost twice their projection."""
    rate = 1e9      # 1 GFLOP/s
    runs = [c.RunCost("a", "ga", 100e9, 50e9, measured={"unlearn_s": 200.0, "eval_s": 100.0}),
            c.RunCost("b", "gd", 40e9, 60e9, measured={"unlearn_s": 80.0, "eval_s": 120.0}),
            c.RunCost("full", "eval", 20e9, 30e9, measured={"unlearn_s": 400.0}),   # fine-tuned, not evaluated yet
            c.RunCost("c", "kl", 300e9, 60e9), c.RunCost("d", "npo", 30e9, 10e9)]
    lines = c.table(runs, rate / 1e9)
    assert "made: 2 runs " in lines[-3] and "50% of the probe's throughput achieved" in lines[-3]
    assert "projected 20 s, measured 400 s: 5% (not in the share above)" in lines[-2]   # kept out of the share
    assert lines[-1].startswith("still to run: 3 runs ") and "projected 430 s = 0.1 h" in lines[-1]
    assert "at the 50% achieved so far 0.2 h of one process" in lines[-1]
    assert not c.table(runs[:2], 1.0)[-1].startswith("still to run")


def test_the_plan_counts_the_runs_repeated_with_extra_seeds():
    p = presets.get_preset("smollm2-forget05")
    runs = c.study_runs(p, lambda m, t, **ov: recipes.plan(p, m, t, **ov)[0], {})
    seeded = [r for r in runs if r[0].endswith(("-s1", "-s2"))]
    assert [r[0] for r in seeded] == [f"{m}-s{s}" for s in (1, 2) for m in ("ga", "gd", "kl", "idk", "npo")]
    assert all(r[1] in ("ga", "gd", "kl", "idk", "npo") and r[2] is None for r in seeded)


def test_a_run_under_way_costs_only_what_is_left(tmp_path, monkeypatch):
    """A checkpoint (here a parked copy: checkpoints.park) of a run without a record: the plan says how far it
    got and counts only the rest of its unlearning in what is still to run."""
    monkeypatch.setenv("UNEDIT_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    rdir = tmp_path / "smoke"
    EditCheckpoint(rdir / "in_progress" / "rome-dummy.safetensors", {"run": "rome-dummy"}).save(1, {}, {})
    name = lambda m, t, **ov: recipes.plan("smoke", m, t, **ov)[0]     # noqa: E731
    by = {r.run: r for r in c.plan("smoke", recipes.settings, name, tokens=c.Tokens(None), results_dir=rdir)[1]}
    n = recipes.settings("smoke", "rome")["n_edits"] or len(models.study_data("smoke").forget_rows)
    assert by["rome-dummy"].left_share == pytest.approx(1 - 1 / n) and by["wise-dummy"].left_share == 1
    assert f"under way: edit 1 of {n} saved" in "; ".join(by["rome-dummy"].notes)
    whole = c.still_to_run([dataclasses.replace(by["rome-dummy"], left_share=1.0)], 1.0)[1]
    part = c.still_to_run([by["rome-dummy"]], 1.0)[1]
    assert whole - part == pytest.approx(by["rome-dummy"].unlearn_flops / n / 1e9)
