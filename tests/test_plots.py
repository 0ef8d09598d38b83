"""Figures: every run distinguishable and visible, flat trace panels left out, no false legend."""
import numpy as np
import pytest

from unedit_lib.report import plots, trace_plots
from unedit_lib.tracing import causal_trace


def test_run_style_separates_every_committed_run_kind():
    runs = ["full", "retain", "base", "rome-dummy", "rome-incorrect", "rome-avoidant", "ike-dummy", "wise-dummy",
            "wise-dummy-rawprompt", "ga", "gd", "kl", "idk", "npo"]
    looks = {r: (plots.run_style(r)["color"], plots.run_style(r)["marker"], plots.run_style(r)["ls"]) for r in runs}
    assert len(set(looks.values())) == len(runs), looks
    assert plots.run_style("rome-dummy-s2") == plots.run_style("rome-dummy")      # seed suffix ignored
    assert plots.run_style("wise-dummy-rawprompt")["variant"] and not plots.run_style("wise-dummy")["variant"]
    # an ablation (settings after "+", which may hold "-") is a hollow, dashed variant of its run
    abl = plots.run_style("rome-dummy+context_template_length_params=5-5+v_lr=0.5-s1")
    assert abl["variant"] and (abl["target"], abl["marker"], abl["color"]) == ("dummy", "o", plots.run_style("rome-dummy")["color"])
    assert plots.run_label("rome-dummy+context_template_length_params=5-5+v_lr=0.5") == "rome-dummy [templates=5-5, v_lr=0.5]"
    fam = {plots.run_style(r)["family"] for r in ("ga", "gd", "npo")}
    assert fam == {"baseline"}
    assert plots.run_style("base")["family"] == "subject model"   # the pretrained model is no unlearning baseline


def test_coincident_points_are_spread_apart():
    pts = [(-6.1, 0.847), (-6.1, 0.847), (-6.1, 0.847), (-1.0, 0.3)]
    offs = plots._spread_coincident(pts)
    dx = [o[0] for o in offs[:3]]
    assert len(set(dx)) == 3 and offs[3][0] == 0.0
    assert len({o[1] for o in offs[:3]}) == 1 and offs[3][1] != offs[0][1]


def _trace(n_layers, flat, kind=None):
    # one fact, 5 tokens, subject = tokens 1..2; scores vary over layers unless flat
    base = np.linspace(0.1, 0.9, 5)[:, None]
    scores = np.repeat(base, n_layers, axis=1) if flat else base + 0.05 * np.arange(n_layers)[None, :]
    return {"scores": scores, "subject_range": (1, 3), "low_score": 0.05, "high_score": 0.95, "kind": kind}


def test_flat_window_panels_are_dropped(tmp_path, monkeypatch):
    monkeypatch.setenv("UNEDIT_RUNS_DIR", str(tmp_path))
    avgs = {"hidden": causal_trace.average_traces([_trace(4, flat=False)]),
            "mlp": causal_trace.average_traces([_trace(4, flat=True, kind="mlp")]),
            "attn": causal_trace.average_traces([_trace(4, flat=True, kind="attn")])}
    assert trace_plots.flat_over_layers(avgs["mlp"]) and not trace_plots.flat_over_layers(avgs["hidden"])
    fig = trace_plots.trace_aie_lines(avgs, "smoke")
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().split(":")[0] for ax in axes] == ["hidden"]
    assert all(float(t).is_integer() for t in axes[0].get_xticks())
    assert any("left out" in t.get_text() for t in fig.texts)
    fig = trace_plots.trace_average_heatmaps(avgs, "smoke")
    assert sum(1 for ax in fig.axes if ax.get_title().startswith("hidden")) == 1
    assert not any(ax.get_title().startswith(("mlp", "attn")) for ax in fig.axes)


def test_rome_curves_say_collapse_only_when_one_happened(tmp_path, monkeypatch):
    monkeypatch.setenv("UNEDIT_RUNS_DIR", str(tmp_path))
    st = {"edit_times_s": [0.1, 0.2, 0.3], "delta_norms": [1.0, 2.0, 3.0], "target_prob": [0.1, 0.2, 0.3]}
    fig = plots.rome_edit_curves({"rome-dummy": {"stats": st, "collapsed": False}}, "smoke")
    assert "collapse" in fig._suptitle.get_text() and "x = collapse" not in fig._suptitle.get_text()
    fig = plots.rome_edit_curves({"rome-dummy": {"stats": st, "collapsed": {"step": 1, "reason": "nan"}}}, "smoke")
    assert "x = collapse" in fig._suptitle.get_text()


def test_fq_vs_mu_draws_every_run_visible(tmp_path, monkeypatch):
    pd = pytest.importorskip("pandas")
    monkeypatch.setenv("UNEDIT_RUNS_DIR", str(tmp_path))
    table = pd.DataFrame({"forget_quality": [1e-6, 1.0, 8e-7, 8e-7, 0.15],
                          "model_utility": [0.9, 0.91, 0.85, 0.85, 0.3]},
                         index=["full", "retain", "rome-dummy", "wise-dummy-rawprompt", "gd"])
    fig = plots.fq_vs_mu(table, "smoke")
    ax = fig.axes[0]
    assert len(ax.collections) >= len(table)                    # one marker per run
    lo, hi = ax.get_xlim()
    assert lo < 8e-7 and hi > 1.0                                # every run inside the axes
    shown = [tuple(np.round(c.get_offset_transform().transform(c.get_offsets()[0]), 1)) for c in ax.collections[:len(table)]]
    assert len(set(shown)) == len(table)                         # no two runs on the same pixel


def test_one_fact_heatmaps_leave_out_flat_windows(tmp_path, monkeypatch):
    monkeypatch.setenv("UNEDIT_RUNS_DIR", str(tmp_path))
    toks = ["Q", ":", "Ann", "Lee", "?", "A"]

    def kind(k, flat):
        t = _trace(4, flat=flat, kind=k)
        scores = np.vstack([t["scores"], t["scores"][-1:]])
        return {**t, "scores": scores, "input_tokens": toks, "subject_range": (2, 4), "answer_token": " Ann"}

    rec = {"question": "Q?", "subject": "Ann Lee", "hidden": kind(None, False), "mlp": kind("mlp", True),
           "attn": kind("attn", True)}
    fig = trace_plots.trace_fact_heatmaps(rec, "smoke", "trace_fact_test.png")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert any(t.startswith("hidden") for t in titles) and not any(t.startswith(("mlp", "attn")) for t in titles)


def test_layer_ticks_stay_readable_on_deep_models(tmp_path, monkeypatch):
    # a 30-layer model (smollm2) gets every 5th layer, a 4-layer one every layer; heatmaps mid-cell
    monkeypatch.setenv("UNEDIT_RUNS_DIR", str(tmp_path))
    fig = trace_plots.trace_aie_lines({"hidden": causal_trace.average_traces([_trace(30, flat=False)])}, "smoke")
    ax = [a for a in fig.axes if a.get_title()][0]
    assert list(ax.get_xticks()) == [0, 5, 10, 15, 20, 25]
    fig = trace_plots.trace_average_heatmaps({"hidden": causal_trace.average_traces([_trace(4, flat=False)])}, "smoke")
    ax = [a for a in fig.axes if a.get_title().startswith("hidden")][0]
    assert list(ax.get_xticks()) == [0.5, 1.5, 2.5, 3.5]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2", "3"]


def test_make_figures_redraws_the_committed_records(tmp_path):
    """`make figures` (scripts/make_figures.py) on the headline preset's committed records, into a
    scratch folder (UNEDIT_FIGURES_DIR): it runs and draws the ROME and WISE figures."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from unedit_lib.core.paths import HEADLINE_PRESET

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "UNEDIT_FIGURES_DIR": str(tmp_path), "UNEDIT_RUNS_DIR": str(tmp_path / "runs"),
           "MPLBACKEND": "Agg"}
    out = subprocess.run([sys.executable, str(root / "scripts" / "make_figures.py"), "--preset", HEADLINE_PRESET],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    drawn = {f.name for f in tmp_path.rglob("*.png")}
    assert {"fq_vs_mu.png", "rome_sequential_edits.png", "wise_routing_scores.png"} <= drawn, drawn
