"""The evidence figures (one per claim or claim group, analysis/evidence.py) and the papers' own figures and
tables regenerated from results (analysis/papers/<paper>/figures.py, paper_numbers.yaml)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from test_report import _model_rows, _training_rows
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
