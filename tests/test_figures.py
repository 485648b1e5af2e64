"""The evidence figures (one per claim or claim group, analysis/evidence.py) and the papers' own figures and
tables regenerated from results (analysis/papers/<paper>/figures.py, paper_numbers.yaml)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from report_fixture import model_rows as _model_rows
from report_fixture import training_rows as _training_rows
from thinwire.algorithms.comm import ThinwireError
from thinwire.analysis.claims import load_claims, verdicts
from thinwire.analysis.evidence import draw_evidence, figure_name, groups, resolve_figures, verdict_panel


def _png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return pd.DataFrame(_training_rows() + _model_rows())


def test_every_claim_row_names_exactly_one_drawn_evidence_figure(table, tmp_path):
    """Over every claim of the quick sheet's papers: a row in scope names one claim_* figure, which the
    report draws; an out-of-scope row names none (the report says why: its reason)."""
    claims = resolve_figures(load_claims())
    rows = verdicts(table, claims, {})
    drawn = draw_evidence(table, claims, rows, tmp_path, {})
    for row in rows.itertuples():
        if row.verdict == "out of scope":
            assert row.figure == "" and len(str(row.reason)) > 40, row.id
        else:
            assert row.figure.startswith("claim_") and row.figure in drawn, (row.id, row.figure)
    assert set(drawn) == set(rows["figure"]) - {""}
    assert all(_png(p) for p in drawn.values())
    # Groups are named in claims.yaml: SDP4Bit's Table 1 claims share one figure.
    by = rows.set_index("id")["figure"]
    assert by["SDP-P3-qW"] == by["SDP-P2"] == "claim_sdp4bit_loss"


def test_a_new_claim_row_gets_its_figure_without_editing_anything():
    new = {"id": "NEW-1.b", "quantity": {"name": "mode_agreement"}, "rule": "at_most", "expected": 1}
    assert figure_name(new) == "claim_new_1_b"
    assert figure_name({**new, "figure": "loss_vs_step"}) == "claim_new_1_b"  # a generic figure is not evidence
    assert figure_name({**new, "figure": "claim_mine"}) == "claim_mine"
    assert figure_name({**new, "out_of_scope": "why"}) == ""
    assert [c["figure"] for c in resolve_figures([new, {**new, "id": "NEW-2", "figure": "claim_new_1_b"}])] == \
        ["claim_new_1_b", "claim_new_1_b"]
    with pytest.raises(ThinwireError, match="both get figure claim_new_1_b"):
        resolve_figures([new, {**new, "id": "new 1 b"}])


def test_the_verdict_panel_draws_the_accepted_band_of_each_rule():
    claims = [{"id": "W", "rule": "within", "tolerance": 0.5}, {"id": "M", "rule": "at_most", "tolerance": 0.0},
              {"id": "L", "rule": "at_least", "tolerance": 1.0}]
    rows = {"W": {"verdict": "reproduced", "measured": 2.2, "expected": 2.0},
            "M": {"verdict": "not reproduced", "measured": 3.0, "expected": 1.0},
            "L": {"verdict": "inconclusive", "measured": 1.5, "expected": 2.0}}
    fig, ax = plt.subplots()
    verdict_panel(ax, claims, rows, {"W": 0.05, "M": 0.0, "L": math.inf})
    lo, hi = ax.get_xlim()
    bands = {round(p.get_y() + p.get_height() / 2): (p.get_x(), p.get_x() + p.get_width()) for p in ax.patches}
    plt.close(fig)
    assert bands[0] == pytest.approx((1.5, 2.5))  # within: expected +- tolerance
    assert bands[1] == pytest.approx((lo, 1.0))  # at_most: up to expected + tolerance
    assert bands[2] == pytest.approx((1.0, hi))  # at_least: from expected - tolerance
    assert [t.get_text() for t in ax.get_yticklabels()] == ["W\nreproduced", "M\nnot reproduced", "L\ninconclusive"]


def test_an_evidence_figure_shows_the_claims_arms(table, tmp_path):
    """EF-1 compares topk-ef with sgd on experiment ef: its panel has one curve per arm, the seed count in
    the legend, and the verdict row beside it."""
    claims = [c for c in resolve_figures(load_claims()) if c["id"] == "EF-1"]
    rows = verdicts(table, claims, {})
    captured = {}
    real_savefig = plt.Figure.savefig

    def keep(fig, path, **kw):
        captured["legend"] = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        captured["lines"] = sum(len(ax.get_lines()) for ax in fig.axes[:-1])
        return real_savefig(fig, path, **kw)

    plt.Figure.savefig = keep
    try:
        drawn = draw_evidence(table, claims, rows, tmp_path, {})
    finally:
        plt.Figure.savefig = real_savefig
    assert _png(drawn["claim_ef_1"])
    assert captured["legend"] == ["topk-ef (2 seeds)", "sgd (2 seeds)"]
    assert captured["lines"] == 2


def test_groups_keep_the_claims_order():
    claims = [{"id": "B", "figure": "claim_g"}, {"id": "A"}, {"id": "C", "figure": "claim_g"}]
    assert {k: [c["id"] for c in v] for k, v in groups(claims).items()} == {"claim_g": ["B", "C"], "claim_a": ["A"]}


# ------------------------------------------------------------------------- the papers' figures, tables


def _run_rows(experiment: str, label: str, method: str, seeds=(0, 1), steps=4, **cols) -> list[dict]:
    from report_fixture import row as _row

    return [_row(f"{experiment}-{label}-s{s}", method, "sim", t, experiment=experiment, label=label, seed=s,
                 **{k: (v(s, t) if callable(v) else v) for k, v in cols.items()})
            for s in seeds for t in range(steps)]


def test_dgc_ratio_table_sets_the_measured_ratio_beside_the_papers(tmp_path):
    from thinwire.analysis.figures import draw_figures

    n = 25_557_032
    rows = _run_rows("dgc_ratio_resnet50", "dgc", "dgc", seeds=(0,), steps=2, n_params=n, bytes_sent=n * 4 // 300)
    drawn = draw_figures(pd.DataFrame(rows), tmp_path, names=["dgc_ratio_table"])
    assert _png(drawn["dgc_ratio_table"])
    t = pd.read_csv(tmp_path / "dgc_ratio_table.csv").set_index("experiment")
    assert t.loc["dgc_ratio_resnet50", "ratio"] == pytest.approx(300, rel=1e-4)
    assert t.loc["dgc_ratio_resnet50", "paper_ratio"] == 277 and t.loc["dgc_ratio_alexnet", "paper_ratio"] == 597
    assert np.isnan(t.loc["dgc_ratio_alexnet", "ratio"])  # no run: the paper's number stands alone


def test_sdp4bit_loss_table_gives_the_gap_to_the_baseline_beside_table_1(tmp_path):
    from thinwire.analysis.figures import draw_figures

    rows = []
    for label, loss in (("baseline", 2.0), ("qw", 2.2), ("qwd", 2.0)):
        rows += _run_rows("sdp4bit", label, "sdp", eval_loss=lambda s, t, x=loss: 5.0 if t < 3 else x + 0.01 * s)
    drawn = draw_figures(pd.DataFrame(rows), tmp_path, names=["sdp4bit_loss_table"])
    assert _png(drawn["sdp4bit_loss_table"])
    t = pd.read_csv(tmp_path / "sdp4bit_loss_table.csv").set_index("variant")
    assert list(t.index) == ["baseline", "qw", "qwd"]
    assert t.loc["qw", "gap_pct"] == pytest.approx(100 * np.mean([2.2 / 2.0 - 1, 2.21 / 2.01 - 1]))
    assert t.loc["qw", "paper_gap_pct_125M"] == pytest.approx(100 * (2.57312 / 2.29392 - 1))
    assert t.loc["baseline", "paper_loss_1.3B"] == 1.92774


def test_dsm_ls_curves_put_each_method_beside_the_others_at_its_tau(tmp_path):
    from thinwire.analysis.figures import draw_figures, load_figures

    rows = []
    for label in ("dsm_ls_tau4", "local_adamw_tau4", "slowmo_tau4", "dsm_ls_tau12"):
        rows += _run_rows("dsm_ls", label, "dsm-ls", eval_loss=lambda s, t: 3.0 - 0.1 * t)
    table = pd.DataFrame(rows)
    got = load_figures()["dsm_ls_loss_curves"].rows(table, {})
    assert set(zip(got["tau"], got["family"])) == {("tau 4", "dsm_ls"), ("tau 4", "local_adamw"),
                                                   ("tau 4", "slowmo"), ("tau 12", "dsm_ls")}
    assert _png(draw_figures(table, tmp_path, names=["dsm_ls_loss_curves"])["dsm_ls_loss_curves"])
    t = pd.read_csv(tmp_path / "dsm_ls_loss_curves.csv")
    assert t["final_loss"].tolist() == pytest.approx([2.7] * 4)


def test_zo_rate_table_fits_the_slopes_beside_the_papers_rates(tmp_path):
    from thinwire.analysis.figures import draw_figures

    steps = np.array([100, 200, 400, 800])
    study = pd.DataFrame([{"label": label, "seed": s, "steps": t, "queries": 10 * t,
                           "avg_gm_sq": t ** b * (1 + 0.01 * s), "queries_to_eps": np.inf}
                          for label, b in (("proxsgd", -0.5), ("proxsvrg", -1.0)) for s in (0, 1) for t in steps])
    drawn = draw_figures(pd.DataFrame(_run_rows("x", "sgd", "sgd")), tmp_path, {"zo_rate": study}, names=["zo_rate"])
    assert _png(drawn["zo_rate"])
    t = pd.read_csv(tmp_path / "zo_rate.csv").set_index("label")
    assert t.loc["proxsgd", "slope_vs_steps"] == pytest.approx(-0.5) and t.loc["proxsgd", "paper_exponent"] == -0.5
    assert t.loc["proxsvrg", "slope_vs_queries"] == pytest.approx(-1.0) and t.loc["proxsvrg", "paper_exponent"] == -1


def test_one_paper_figure_regenerates_alone_from_a_results_table(tmp_path):
    """What `snakemake reports/figures/<name>.png` runs (rule figure): build_figure draws only that figure."""
    from thinwire.analysis.build import build_figure

    n = 61_100_840
    csv = tmp_path / "table.csv"
    pd.DataFrame(_run_rows("dgc_ratio_alexnet", "dgc", "dgc", seeds=(0,), steps=2, n_params=n,
                           bytes_sent=n * 4 // 600)).to_csv(csv, index=False)
    path = build_figure(csv, "dgc_ratio_table", tmp_path / "figures")
    assert _png(path) and sorted(p.name for p in path.parent.iterdir()) == ["dgc_ratio_table.csv", "dgc_ratio_table.png"]
    with pytest.raises(ThinwireError, match="no rows to draw it from"):
        build_figure(csv, "sdp4bit_loss_table", tmp_path / "figures")
    evidence = build_figure(csv, "claim_d2_ratio_alexnet", tmp_path / "figures")  # a claim's evidence, alone too
    assert _png(evidence)


def test_the_readme_lists_every_regenerated_paper_figure():
    from thinwire.analysis.figures import load_figures
    from thinwire.analysis.gallery import GALLERY, markdown

    figures = load_figures()
    for f in GALLERY:
        assert f.name in figures and figures[f.name].paper == f.paper, f.name
        assert (figures[f.name].table is not None) == f.table, f.name
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert markdown() in readme, "README: paste `python -m thinwire.analysis.gallery` under 'Figures'"


def _views_drawn(claims, table, studies, tmp_path) -> list[str]:
    """The titles of the evidence panels drawn (empty title: a view that had nothing to draw)."""
    seen = {}
    real_savefig = plt.Figure.savefig

    def keep(fig, path, **kw):
        seen["titles"] = [ax.get_title() for ax in fig.axes[:-1]]
        seen["empty"] = any("no runs for this view" in t.get_text() for ax in fig.axes for t in ax.texts)
        return real_savefig(fig, path, **kw)

    plt.Figure.savefig = keep
    try:
        draw_evidence(table, claims, verdicts(table, claims, studies), tmp_path, studies)
    finally:
        plt.Figure.savefig = real_savefig
    assert not seen["empty"], seen
    return seen["titles"]


def test_the_model_and_validation_views_draw_from_their_study_tables(table, tmp_path):
    claims = [c for c in resolve_figures(load_claims()) if c["id"] in ("A2", "A2-infiniband")]
    predicted = pd.DataFrame({"claim": ["A2", "A2-infiniband"], "stated": True, "predicted": [2.5, 2.0],
                              "claimed": [3.3, 2.7], "band_low": [1.5, 1.2], "band_high": [3.5, 2.9],
                              "predicted_calibrated": [3.0, np.nan], "predicted_cluster_calibrated": [2.9, np.nan],
                              "baseline_tflops_stated": [1.0, np.nan], "error_calibrated": [-0.1, np.nan],
                              "calibrated_inter_efficiency": [0.5, np.nan], "error_cluster_calibrated": [-0.1, np.nan],
                              "cluster_inter_efficiency": [0.5, np.nan], "error": [-0.2, -0.3], "consistent": [True, True]})
    assert _views_drawn(claims, table, {"model-predicted": predicted}, tmp_path) == \
        ["performance model at the paper's setup"]
    claims = [c for c in resolve_figures(load_claims()) if c["id"] in ("PM-validation-median", "PM-validation-max")]
    validation = pd.DataFrame({"label": ["topk", "sgd"], "bandwidth": ["100mbit", "1gbit"], "measured_s": [0.1, 0.02],
                               "predicted_s": [0.11, 0.018], "error": [0.1, -0.1], "measured_spread": [0.02, 0.03],
                               "repeats": [3, 3]})
    assert _views_drawn(claims, table, {"validation": validation}, tmp_path) == ["2 cases of validation"]
    # with each run's step time, the perfect model's largest error at the runs' noise is drawn too
    runs = validation.assign(round_errors=["0.1;0.05;0.2", "-0.1;-0.12;-0.05"])
    assert _views_drawn(claims, table, {"validation": runs}, tmp_path / "runs") == ["2 cases of validation"]


def test_the_fitted_efficiency_figure_draws_one_point_per_cell_with_a_stated_baseline(tmp_path):
    """model_fitted_efficiency: the per-cell calibration's inter-node efficiency, cells without a stated
    baseline (NaN fit) left out; no cell with a fit, no figure."""
    from thinwire.analysis.figures import _fitted_rows, draw_figures

    predicted = pd.DataFrame({
        "claim": ["SDP-P1-18B-H800", "SDP-T2-1.3B-H800", "A2"], "stated": [True, False, True],
        "cluster": ["h800", "h800", "v100"], "tp": [8, 1, 1], "pp": [1, 1, 1], "dp": [16, 128, 64],
        "calibrated_inter_efficiency": [0.134, 0.088, np.nan], "public_inter_efficiency": [0.94, 0.94, 0.9]})
    rows = _fitted_rows(pd.DataFrame(), {"model-predicted": predicted})
    assert list(rows["cell"]) == ["SDP-P1-18B-H800 (TP 8, PP 1, DP 16)", "SDP-T2-1.3B-H800 (TP 1, PP 1, DP 128)"]
    assert list(rows["cells"]) == ["claims the model decides", "other published cells"]
    drawn = draw_figures(pd.DataFrame(), tmp_path, {"model-predicted": predicted}, names=["model_fitted_efficiency"])
    assert _png(drawn["model_fitted_efficiency"])
    none = predicted.assign(calibrated_inter_efficiency=np.nan)
    assert draw_figures(pd.DataFrame(), tmp_path / "none", {"model-predicted": none},
                        names=["model_fitted_efficiency"]) == {}
