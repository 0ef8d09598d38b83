"""The results store's guarantees (issue 12 item 5): atomic writes, validated reads that name
the file, leftovers cleaned, one bad record never breaks the others, ablations kept apart."""
import json

import numpy as np
import pytest

from unedit_lib.core import paths, store


@pytest.fixture()
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("UNEDIT_RESULTS_DIR", str(tmp_path / "results"))
    return tmp_path / "results"


def _rec(run, **kw):
    return {"run": run, "metrics": {}, "model_utility": 0.5, **kw}


def test_write_json_is_atomic_and_leaves_no_temporary(tmp_path):
    path = store.write_json({"a": 1}, tmp_path / "x" / "r.json")
    assert json.loads(path.read_text()) == {"a": 1} and not list(path.parent.glob(".*tmp*"))
    with pytest.raises(ValueError):                       # NaN refused before anything is replaced
        store.write_json({"a": float("nan")}, path)
    assert json.loads(path.read_text()) == {"a": 1}


def test_write_dir_replaces_a_folder_only_when_complete_and_cleans_leftovers(tmp_path):
    target = tmp_path / "model"
    store.write_dir(target, lambda d: (d / "w.txt").write_text("old"))
    (tmp_path / ".model.tmp999").mkdir()                  # a crashed writer's leftover
    with pytest.raises(RuntimeError):
        store.write_dir(target, lambda d: ((d / "w.txt").write_text("half"), (_ for _ in ()).throw(RuntimeError())))
    assert (target / "w.txt").read_text() == "old"        # the failed write left the old folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    store.write_dir(target, lambda d: (d / "w.txt").write_text("new"))
    assert (target / "w.txt").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_truncated_record_names_its_path(results):
    store.save_record("smoke", "gd", _rec("gd"))
    path = paths.record_path("smoke", "gd")
    path.write_text(path.read_text()[:20])
    with pytest.raises(store.CorruptFile, match=str(path)) as e:
        store.load_record("smoke", "gd")
    assert "force=True" in str(e.value)


def test_one_bad_record_does_not_break_load_results(results):
    store.save_record("smoke", "ga", _rec("ga"))
    store.save_record("smoke", "gd", _rec("gd"))
    paths.record_path("smoke", "gd").write_text("{\"run\": \"gd\", ")
    with pytest.warns(UserWarning, match="gd.json"):
        recs = store.load_results("smoke")
    assert list(recs) == ["ga"]


def test_load_results_leaves_ablations_out_unless_asked(results):
    store.save_record("smoke", "rome-dummy", _rec("rome-dummy", ablation={}))
    store.save_record("smoke", "rome-dummy+v_lr=0.1", _rec("rome-dummy+v_lr=0.1", ablation={"v_lr": 0.1}))
    store.write_json({"full": {}}, paths.robustness_path("smoke"))      # not a run record
    assert list(store.load_results("smoke")) == ["rome-dummy"]
    assert list(store.load_results("smoke", include_ablations=True)) == ["rome-dummy", "rome-dummy+v_lr=0.1"]


def test_load_results_leaves_out_runs_from_another_full_model_and_says_so(results):
    """A machine that fine-tunes another full model recomputes a study run by run: until it is
    done, the runs of the old model must not be read beside the new model's."""
    store.save_record("smoke", "full", _rec("full", method="subject model", subject_model="full-new"))
    store.save_record("smoke", "gd", _rec("gd", method="gd", subject_model="full-new"))
    store.save_record("smoke", "ga", _rec("ga", method="ga", subject_model="full-old"))
    with pytest.warns(UserWarning, match=r"left out 1 run\(s\) made from another full model .*\(ga\)"):
        assert list(store.load_results("smoke")) == ["full", "gd"]
    # a full record written before records named their model: its folder in model_path
    store.save_record("smoke", "full", _rec("full", method="subject model", model_path="artifacts/smoke/full-old"))
    with pytest.warns(UserWarning, match=r"\(gd\)"):
        assert list(store.load_results("smoke")) == ["full", "ga"]


def test_truncated_logs_name_their_path(results):
    store.save_record("smoke", "gd", _rec("gd"))
    store.save_eval_logs({"forget": {"avg_gt_loss": {"0": 1.0}}}, paths.logs_dir("smoke", "gd"))
    f = paths.logs_dir("smoke", "gd") / paths.LOG_FILES["forget"]
    f.write_text(f.read_text()[:10])
    with pytest.raises(store.CorruptFile, match=str(f)):
        store.cached_logs("smoke", "gd")
    f.write_text("[1, 2]")
    with pytest.raises(store.CorruptFile, match="not a TOFU eval log"):
        store.cached_logs("smoke", "gd")


def test_a_corrupt_embedding_cache_is_named(tmp_path):
    from unedit_lib.core import embeddings

    emb = embeddings.CachedEmbedder(lambda xs: np.ones((len(xs), 3)), "test", cache_dir=tmp_path)
    emb(["a", "b"])
    (f,) = tmp_path.glob("ike-emb-*.npy")
    assert not list(tmp_path.glob(".*tmp*"))
    f.write_bytes(f.read_bytes()[:30])
    with pytest.raises(store.CorruptFile, match=str(f)):
        embeddings.CachedEmbedder(lambda xs: np.ones((len(xs), 3)), "test", cache_dir=tmp_path)(["a", "b"])


def test_paths_follow_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("UNEDIT_RESULTS_DIR", str(tmp_path / "r"))
    assert paths.record_path("smoke", "gd") == tmp_path / "r" / "smoke" / "gd.json"
    with pytest.raises(ValueError, match="unknown output kind"):
        paths.output_dir("nope")


def test_stage_times_keeps_the_last_forced_run(tmp_path):
    assert store.stage_times(tmp_path) == (None, None)
    forced = {"force": True, "stages_s": {"00_setup.ipynb": 10.0, "07_x.ipynb": 5.0, "08_y.ipynb": 100.0,
                                       "09_extra.ipynb": 7.0}}
    store.write_json(forced, tmp_path / "stage_times.json")
    assert store.stage_times(tmp_path) == (forced, forced)
    assert store.study_seconds(forced) == 15.0          # 08 has its own budget; 09 is not the study's
    assert [n for n in forced["stages_s"] if store.is_study_notebook(n)] == ["00_setup.ipynb", "07_x.ipynb"]
    cached = {"force": False, "stages_s": {"04_ike.ipynb": 1.0}, "from_scratch": forced}
    store.write_json(cached, tmp_path / "stage_times.json")
    assert store.stage_times(tmp_path) == (cached, forced)
    partial = {"force": False, "stages_s": {"04_ike.ipynb": 1.0}}   # no forced run known
    store.write_json(partial, tmp_path / "stage_times.json")
    assert store.stage_times(tmp_path) == (partial, None)
    (tmp_path / "stage_times.json").write_text("[1, 2]")
    with pytest.raises(store.CorruptFile, match="JSON object"):
        store.stage_times(tmp_path)
    (tmp_path / "stage_times.json").write_text('{"force": ')
    with pytest.raises(store.CorruptFile, match="stage-times"):
        store.stage_times(tmp_path)


def test_temporaries_of_dead_writers_are_cleaned_and_live_ones_kept(tmp_path):
    import os
    import subprocess

    proc = subprocess.Popen(["true"])                       # a process id that no longer runs
    proc.wait()
    dead = proc.pid
    (tmp_path / "run").mkdir()
    left = [tmp_path / f".gd.json.tmp{dead}", tmp_path / "run" / f".eval_log.json.tmp{dead}"]
    for f in left:
        f.write_text("{")
    (tmp_path / f".gd.staged{dead}").mkdir()
    live = tmp_path / f".ga.json.tmp{os.getpid()}"
    live.write_text("{")
    kept = tmp_path / ".gd.json.lock"
    kept.write_text("")
    gone = store.clean_temporaries(tmp_path)
    assert set(gone) == set(left) | {tmp_path / f".gd.staged{dead}"}
    assert live.exists() and kept.exists() and not any(f.exists() for f in left)


def test_update_json_loses_no_update_of_concurrent_processes(tmp_path):
    import multiprocessing
    import time

    path = tmp_path / "shared.json"

    def add(key):
        for i in range(5):
            def change(d, i=i):
                time.sleep(0.01)          # widen the read-change-write window
                return {**d, f"{key}{i}": i}
            store.update_json(path, change)

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=add, args=(k,)) for k in "ab"]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert sorted(store.read_json(path)) == [f"{k}{i}" for k in "ab" for i in range(5)]


def test_commit_run_swaps_staged_folders_in_and_writes_the_record_last(tmp_path):
    logs = tmp_path / "gd"
    logs.mkdir()
    (logs / "old.json").write_text("{}")
    staged = store.stage_dir(logs, lambda d: (d / "new.json").write_text("{}"))
    assert (logs / "old.json").exists() and staged.name.startswith(".gd.staged")
    store.commit_run(tmp_path / "gd.json", {"run": "gd"}, {logs: staged})
    assert sorted(p.name for p in logs.iterdir()) == ["new.json"] and not staged.exists()
    assert store.read_json(tmp_path / "gd.json") == {"run": "gd"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gd", "gd.json"]


def test_an_executed_notebook_is_stale_once_the_results_it_showed_change(tmp_path, monkeypatch):
    monkeypatch.setenv("UNEDIT_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("UNEDIT_RUNS_DIR", str(tmp_path / "runs"))
    store.save_record("smoke", "gd", _rec("gd"))
    nb = tmp_path / "runs" / "smoke" / "07_results.ipynb"
    store.write_json({"cells": [], "metadata": {}}, nb)
    assert store.stale_notebooks("smoke") == ["07_results.ipynb"]            # never stamped
    store.write_json({"cells": [], "metadata": {"unedit": {"results_digest": store.results_digest("smoke")}}}, nb)
    assert store.stale_notebooks("smoke") == []
    store.save_record("smoke", "gd", _rec("gd", model_utility=0.4))          # a number changed
    assert store.stale_notebooks("smoke") == ["07_results.ipynb"]


def test_records_keep_paths_relative_to_the_checkout_even_through_a_symlink(tmp_path, monkeypatch):
    repo, elsewhere = tmp_path / "main", tmp_path / "elsewhere"
    (repo / "artifacts").mkdir(parents=True)
    (elsewhere / "tofu").mkdir(parents=True)
    (tmp_path / "shared").symlink_to(elsewhere)          # ../shared beside the clone, a link (as CI may lay it)
    monkeypatch.setattr(paths, "REPO_ROOT", repo)
    assert paths.display_path(repo / "artifacts" / "smoke") == "artifacts/smoke"
    assert paths.display_path(tmp_path / "shared" / "tofu") == "../shared/tofu"
    assert paths.display_path("locuslab/TOFU") == "locuslab/TOFU"     # a hub id stays a hub id
