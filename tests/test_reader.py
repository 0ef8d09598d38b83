"""The study as a reader sees it on a clone: the committed executed notebooks have their outputs
and no errors, every figure and file the README links exists, the README is up to date with the
committed results, nothing cites a file outside the repository, and the headline preset is named
the same way everywhere (issue 15)."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from unedit_lib.core.paths import EARLIER_PRESETS, HEADLINE_PRESET, committed_presets

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _tracked(path: Path) -> bool:
    out = subprocess.run(["git", "ls-files", "--error-unmatch", str(path)], cwd=ROOT, capture_output=True)
    return out.returncode == 0


def _committed_executed(preset: str):
    folder = ROOT / "runs" / preset
    return [folder / nb.name for nb in NOTEBOOKS if (folder / nb.name).exists() and _tracked(folder / nb.name)]


@pytest.mark.parametrize("preset", committed_presets())
def test_committed_executed_notebooks_have_outputs_and_no_errors(preset):
    executed = _committed_executed(preset)
    if not executed and preset == HEADLINE_PRESET:
        pytest.skip(f"no executed notebook committed under runs/{preset}/ yet: "
                    f"`make reproduce` on the headline preset writes them, then `git add runs/{preset}`")
    missing = [nb.name for nb in NOTEBOOKS if ROOT / "runs" / preset / nb.name not in executed]
    assert not missing, f"runs/{preset}/ lacks executed copies of {missing}"
    images = {}
    for path in executed:
        cells = json.loads(path.read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{path.name}: error output {errors[0].get('ename')}: {errors[0].get('evalue')}"
        assert sum(bool(c.get("outputs")) for c in code) >= len(code) // 2, f"{path.name}: most cells have no output"
        assert all(c.get("execution_count") for c in code if c.get("source")), f"{path.name}: a cell never ran"
        meta = json.loads(path.read_text())["metadata"].get("papermill", {})
        assert not str(meta.get("input_path", "")).startswith("/"), f"{path.name}: absolute path in its metadata"
        images[path.name] = sum("image/png" in o.get("data", {}) for c in code for o in c.get("outputs", []))
    assert images.get("07_results.ipynb"), "notebook 07's figures are not in its executed copy (figure_io.save shows them)"


def _readme_links():
    text = (ROOT / "README.md").read_text()
    return [m for m in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) if not re.match(r"[a-z]+://", m)]


def test_every_file_the_readme_links_exists():
    links = _readme_links()
    assert any(link.startswith("figures/") for link in links), "the README shows no figure"
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, f"README links files that do not exist: {missing}"


def test_figures_the_readme_shows_are_committed():
    figures = [link for link in _readme_links() if link.endswith(".png")]
    untracked = [f for f in figures if not _tracked(ROOT / f)]
    assert not untracked, f"README shows figures that are not committed: {untracked}"


def test_readme_matches_the_committed_results():
    out = subprocess.run([sys.executable, "scripts/write_readme_results.py", "--check"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + out.stdout


def test_nothing_cites_the_unshipped_reference_notes():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    hits = []
    for rel in tracked:
        if rel.startswith("tests/") or not rel.endswith((".py", ".md", ".ipynb", ".toml", ".yml")):
            continue
        text = (ROOT / rel).read_text(errors="ignore")
        if "shared/reference" in text:
            hits.append(rel)
    assert not hits, f"cite ../shared/reference (not in a clone); cite docs/ or a public source: {hits}"


def _git_ignored(path: str) -> bool:
    rc = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode
    assert rc in (0, 1), f"git check-ignore {path} failed (exit {rc})"
    return rc == 0


def test_headline_preset_is_named_the_same_everywhere():
    make = (ROOT / "Makefile").read_text()
    assert re.search(rf"^HEADLINE := {HEADLINE_PRESET}$", make, re.M), "Makefile HEADLINE != paths.HEADLINE_PRESET"
    earlier = re.search(r"^EARLIER +:=(.*)$", make, re.M)
    assert earlier and tuple(earlier.group(1).split()) == EARLIER_PRESETS, "Makefile EARLIER != paths.EARLIER_PRESETS"
    ignore = (ROOT / ".gitignore").read_text().splitlines()
    for preset in committed_presets():
        assert f"!runs/{preset}/" in ignore and f"!runs/{preset}/[0-9][0-9]_*.ipynb" in ignore, \
            f".gitignore must un-ignore runs/{preset}/ (the committed executed notebooks)"
        assert not _git_ignored(f"runs/{preset}/00_data.ipynb"), f"runs/{preset}/00_data.ipynb is git-ignored"
    for preset in EARLIER_PRESETS:          # the README's earlier block shows their figures from runs/<p>/figures/
        assert not _git_ignored(f"runs/{preset}/figures/fq_vs_mu.png"), f"runs/{preset}/figures/ is git-ignored"
    assert _git_ignored("runs/smoke/00_data.ipynb"), "executed notebooks of other presets must stay ignored"
    for nb in NOTEBOOKS:                    # a reader stepping through a notebook gets the headline study
        params = next("".join(c["source"]) for c in json.loads(nb.read_text())["cells"]
                      if "parameters" in c.get("metadata", {}).get("tags", []))
        assert re.search(rf'^preset = "{HEADLINE_PRESET}"  # {HEADLINE_PRESET} \(the study\)', params, re.M), \
            f"{nb.name}: its parameters cell's default preset is not the headline {HEADLINE_PRESET}"


def test_smollm2_forget01s_run_caches_are_committed_and_other_presets_stay_local():
    """A clone reuses smollm2-forget01's runs (runner.cached: record + per-item logs) and traces; smoke's
    and tiny's logs, and every preset's temporary files and models, stay out of git."""
    for path in ("results/smollm2-forget01/full.json", "results/smollm2-forget01/rome-dummy/eval_log_forget.json",
                 "results/smollm2-forget01/rome_probe/dummy-seed0-abc.json", "results/smollm2-forget01/trace/rome_layer.json",
                 "results/smollm2-forget01/trace/traces-0123456789ab.json"):
        assert not _git_ignored(path), f"{path} is git-ignored: a clone would recompute that run"
    for path in ("results/tiny/rome-dummy/eval_log_forget.json", "results/smoke/full.json",
                 "results/tiny/trace/traces-0123456789ab.json", "results/smollm2-forget01/_tmp123.json",
                 "results/smollm2-forget01/.lock", "results/smollm2-forget01/full/.eval_log.json.tmp4242", "artifacts/smollm2-forget01/full-3fca075985/model.safetensors"):
        assert _git_ignored(path), f"{path} is not git-ignored"


def test_the_timing_line_names_its_preset_and_how_the_study_was_computed(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    import write_readme_results as w

    from unedit_lib.core import store

    monkeypatch.setenv("UNEDIT_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("UNEDIT_RUNS_DIR", str(tmp_path / "runs"))
    assert "No timed" in w._timing_line("smoke")
    store.save_record("smoke", "gd", {"run": "gd", "metrics": {}, "timings": {"unlearn_s": 1800.0, "eval_s": 360.0}})
    store.save_record("smoke", "full", {"run": "full", "metrics": {}, "timings": {"eval_s": 3240.0}})
    line = w._timing_line("smoke")          # no forced run: the records' own seconds, summed
    assert "computed in pieces" in line and "2 records hold 0.5 h of unlearning and 1.0 h of evaluation" in line
    forced = {"force": True, "finished": "2026-12-02 11:04:54", "machine": "x86_64, 2 CPUs",
              "stages_s": {"00_data.ipynb": 60.0, "07_results.ipynb": 120.0, "08_robustness.ipynb": 600.0}}
    store.write_json({"force": False, "stages_s": {"07_results.ipynb": 5.0}, "from_scratch": forced},
                     tmp_path / "runs" / "smoke" / "stage_times.json")
    line = w._timing_line("smoke")
    assert line.startswith("*Run behind these results (`smoke`)") and "notebooks 00-07 3.0 min, 08 10.0 min" in line


def test_no_study_under_way_leaves_no_progress_section(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    import write_readme_results as w

    from unedit_lib.core import paths

    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    monkeypatch.setattr(paths, "IN_PROGRESS_PRESET", None)
    monkeypatch.setattr(sys, "argv", ["write_readme_results.py", "--readme", str(readme)])
    w.main()
    text = readme.read_text()
    assert "<!-- progress:begin -->\n\n<!-- progress:end -->" in text and "study so far" not in text


def test_a_study_under_way_shows_the_joint_bootstraps_intervals_as_the_headline_does():
    """The progress block's table: FQ with its statistic D's joint-bootstrap interval, never the per-record
    row-bootstrap interval of FQ's p-value (eval/uncertainty.py: biased by resampling)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import write_readme_results as w

    table = w.progress_section("tiny", None).split("| run |", 1)[1]
    assert table.startswith(" Forget ROUGE") and "| MU / MU(full) | FQ | KS D |" in table.splitlines()[0]


def test_a_preset_without_attacks_shows_no_other_presets_attacks(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    import write_readme_results as w

    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    monkeypatch.setenv("UNEDIT_RESULTS_DIR", str(tmp_path / "results"))    # an empty results store
    monkeypatch.setattr(w, "answer_section", lambda *a: "answer")
    monkeypatch.setattr(w, "results_section", lambda *a: "results")
    monkeypatch.setattr(w, "notebooks_section", lambda *a: "notebooks")
    monkeypatch.setattr(sys, "argv", ["write_readme_results.py", "--readme", str(readme), "--preset", "smoke"])
    w.main()
    block = readme.read_text().split("<!-- robustness:begin -->")[1].split("<!-- robustness:end -->")[0]
    assert "has not run on preset `smoke`" in block and "| run |" not in block


def test_the_headline_results_name_the_subject_models_and_premises_measured_before_any_run():
    """Issue 14 item 4 on the README's first page: notebook 01's subject-model targets, the layer
    notebook 02's trace picked and notebook 04's in-context probe, read from the committed records."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import write_readme_results as w

    text = w.results_section(HEADLINE_PRESET, None)
    premises = text.split("**The subject model and the editors' premises**")[1].split("**Premise gates**")[0]
    bullets = [b for b in premises.splitlines() if b.startswith("* **")]
    assert [b.split("**")[1] for b in bullets] == ["Subject models", "Causal trace", "In-context probe"]
    assert "not run yet" not in premises, "the headline study lacks a premise measurement"


def test_the_robustness_section_names_every_study_run_attacked_or_not():
    """A run notebook 08 has not attacked is named as such, never silently missing (and the
    pretrained base model is no unlearning run to attack)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import write_readme_results as w

    from unedit_lib.core import store
    from unedit_lib.report import tables
    from unedit_lib.study import robustness

    records = store.load_results("smollm2-forget01")
    wanted = tables.runs_to_attack(records, [0])
    assert "base" not in wanted and wanted[:2] == ["full", "retain"]
    text = w.robustness_section("smollm2-forget01")
    head, table = text.split("\n\n", 1)
    attacked = set(robustness.load_summary("smollm2-forget01"))
    named = head.split("**not attacked yet**: ")[1].split(" (")[0].split(".")[0]
    for run in wanted[2:]:
        assert (f"| {run} |" in table) == (run in attacked), run
        assert (run in named.split(", ")) == (run not in attacked), run


@pytest.mark.parametrize("preset", committed_presets())
def test_no_committed_executed_notebook_shows_older_results(preset):
    """Each executed notebook of a committed preset records the digest of the results it ran against
    (scripts/run_notebooks.py); one whose results changed since must be re-executed (make readme refuses)."""
    from unedit_lib.core import store

    assert not store.stale_notebooks(preset), f"re-execute runs/{preset}/{store.stale_notebooks(preset)}"


def test_an_earlier_study_keeps_its_answer_table_and_ablations_in_the_readme(tmp_path, monkeypatch):
    """After the headline moves on, an earlier study (paths.EARLIER_PRESETS) keeps a README block of its
    own, from its own records; without one the block is empty, and one without results is a clear error."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import write_readme_results as w

    from unedit_lib.core import store

    assert w.earlier_section(()) == ""
    text = w.earlier_section(("tiny",))
    assert text.startswith("### The `tiny` study, kept beside the headline")
    assert "**What we found.**" in text and "| rome-dummy |" in text and "`rome-dummy`:" in text
    assert text.count("| full |") == 1 and "[runs/tiny/](runs/tiny/)" in text
    assert "| MU / MU(full) | FQ | KS D |" in text      # the joint bootstrap's columns, as the headline's table
    assert "| +" not in text.split("Its ROME v_lr")[0]          # ablation records only in the ablation lines
    monkeypatch.setenv("UNEDIT_RESULTS_DIR", str(tmp_path / "results"))
    with pytest.raises(SystemExit, match="earlier study 'tiny'.*has no results"):
        w.earlier_section(("tiny",))
    assert store.load_results("tiny") == {}
