"""Tests for the figures and the report, on a small synthetic results table.

Two methods x sim/real x two seeds x 5 steps on one workload, one of the real
runs diverging (its last loss is inf), plus model rows for two clusters at
three bandwidths.
"""

from __future__ import annotations

import json
import re
from html import escape, unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# The synthetic results the browser test's report is built from, shared (tests/report_fixture.py).
from report_fixture import DIVERGED_RUN
from report_fixture import model_rows as _model_rows
from report_fixture import row as _row
from report_fixture import table as _fixture_table
from thinwire.analysis.figures import draw_figures, load_figures
from thinwire.analysis.report import claim_papers, write_report

FIGURES = {"loss_vs_step", "loss_vs_bytes", "accuracy_vs_ratio", "model_step_time", "model_speedup"}


@pytest.fixture
def table() -> pd.DataFrame:
    return _fixture_table()


@pytest.fixture
def verdicts() -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["topk-bits", "topk-speedup", "ef-converges"],
        "source": ["Paper A, Table 2", "Paper A, Fig. 5", "Paper B, Thm 1"],
        "statement": ["Top-k sends <1% of the bits & converges", "3x faster at 1 Gbit/s", "EF converges"],
        "verdict": ["reproduced", "not reproduced", "inconclusive"],
        "measured": [0.1, 1.4, np.nan],
        "expected": [0.1, 3.0, np.nan],
        "evidence": ["bytes ratio 0.1", "predicted speedup 1.4", "too few seeds"],
        "reason": ["", "bandwidth model differs", "only 2 seeds"],
        "figure": ["loss_vs_bytes", "model_speedup", ""],
    })


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_figure_is_drawn_as_png(table: pd.DataFrame, tmp_path: Path) -> None:
    figures = draw_figures(table, tmp_path / "figures")
    assert set(figures) == FIGURES
    for name, path in figures.items():
        assert path == tmp_path / "figures" / f"{name}.png"
        assert _is_png(path), name


def test_figure_without_data_is_skipped(table: pd.DataFrame, tmp_path: Path) -> None:
    no_model = draw_figures(table[table["mode"] != "model"], tmp_path / "a")
    assert set(no_model) == {"loss_vs_step", "loss_vs_bytes", "accuracy_vs_ratio"}
    only_model = draw_figures(table[table["mode"] == "model"], tmp_path / "b")
    assert set(only_model) == {"model_step_time", "model_speedup"}
    assert not (tmp_path / "b" / "loss_vs_step.png").exists()


def test_non_finite_losses_are_dropped(table: pd.DataFrame, tmp_path: Path) -> None:
    all_bad = table.assign(eval_loss=np.where(table["step"] % 2 == 0, np.nan, -np.inf))
    figures = draw_figures(all_bad, tmp_path)
    assert set(figures) == {"model_step_time", "model_speedup", "accuracy_vs_ratio"}  # accuracy is finite


def _pages(report: Path) -> dict[str, str]:
    """Every HTML page of a built report by its path relative to the report folder."""
    return {p.relative_to(report).as_posix(): p.read_text() for p in sorted(report.rglob("*.html"))}


def test_report_pages(table: pd.DataFrame, verdicts: pd.DataFrame, tmp_path: Path) -> None:
    figures = draw_figures(table, tmp_path / "elsewhere")
    write_report(table, verdicts, figures, tmp_path / "report")
    report = tmp_path / "report"
    pages = _pages(report)
    # Without a claim -> paper map, a claim's paper is its source's first part.
    assert set(pages) == {"index.html", "runs.html", "papers/paper-a.html", "papers/paper-b.html"}
    html = pages["index.html"]
    assert "<title>thinwire report</title>" in html
    assert "http" not in "".join(pages.values()) + (report / "table.js").read_text()  # no CDN, no network
    assert "<script" not in html and '<script src="table.js"></script>' in pages["runs.html"]
    assert "1 reproduced, 1 not reproduced, 1 inconclusive, 0 out of scope" in html
    assert '<a href="papers/paper-a.html">paper-a</a>' in html and '<a href="papers/paper-b.html">' in html
    assert '<img src="summary.png"' in html and _is_png(report / "summary.png")
    for claim_id, verdict, paper in zip(verdicts["id"], verdicts["verdict"], ["a", "a", "b"]):
        card = re.search(rf'<article class="claim verdict-[a-z-]+" id="claim-{claim_id}">.*?</article>',
                         pages[f"papers/paper-{paper}.html"], re.DOTALL)
        assert card and f'<span class="badge">{verdict}</span>' in card.group(0), claim_id
    # Statements are quoted text, never markup.
    assert "&lt;1% of the bits &amp; converges" in pages["papers/paper-a.html"]
    assert "<1%" not in "".join(pages.values())

    for name in FIGURES:
        assert f'<a href="figures/{name}.png"' in html
        assert _is_png(report / "figures" / f"{name}.png")
    # Each claim shows its one figure, or says plainly that it has none.
    assert pages["papers/paper-a.html"].count("<img ") == 2
    assert '<img src="../figures/model_speedup.png"' in pages["papers/paper-a.html"]
    assert "<img " not in pages["papers/paper-b.html"] and "No figure for this claim." in pages["papers/paper-b.html"]

    runs_html = pages["runs.html"]
    assert '<table id="runs" class="sortable">' in runs_html and 'data-filter="runs"' in runs_html
    runs = re.findall(r'<tr class="(ok|diverged)"><td class="run">([^<]+)</td>', runs_html)
    assert len(runs) == 8 + 12
    assert ("diverged", DIVERGED_RUN) in runs
    assert all(status == "ok" for status, run in runs if run != DIVERGED_RUN)
    diverged_row = re.search(rf'<tr class="diverged"><td class="run">{DIVERGED_RUN}</td>.*?</tr>', runs_html)
    # Its final loss is the last finite one (step 3), not inf.
    assert '<td class="final-loss">0.26</td>' in diverged_row.group(0)
    assert "Runs</a>: 20\n(1 diverged)" in html


def test_claims_csv_and_markdown(table: pd.DataFrame, verdicts: pd.DataFrame, tmp_path: Path) -> None:
    write_report(table, verdicts, {}, tmp_path)
    claims = pd.read_csv(tmp_path / "claims.csv", keep_default_na=False, na_values=[""])
    assert list(claims.columns[:5]) == ["id", "verdict", "measured", "expected", "evidence"]
    assert set(claims.columns) == set(verdicts.columns)
    pd.testing.assert_frame_equal(
        claims[verdicts.columns].fillna({"reason": "", "figure": ""}), verdicts, check_dtype=False
    )
    first = ["id", "verdict", "measured", "expected", "evidence"]
    ordered = verdicts[first + [c for c in verdicts.columns if c not in first]]
    assert (tmp_path / "claims.csv").read_text() == ordered.to_csv(index=False)

    markdown = (tmp_path / "claims.md").read_text()
    for claim_id in verdicts["id"]:
        assert re.search(rf"^\| {claim_id} \|", markdown, re.MULTILINE)
    # No figure was drawn, so no page may link one: a sentence says so instead of a broken image.
    paper_a = (tmp_path / "papers" / "paper-a.html").read_text()
    assert "<img" not in paper_a and "Figure model_speedup was not drawn" in paper_a


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture report (tests/report_fixture.py): every claim of thinwire's papers, judged."""
    from report_fixture import build

    return build(tmp_path_factory.mktemp("built"))


def test_every_claim_is_on_exactly_one_paper_page(built: Path) -> None:
    report = built
    claims = pd.read_csv(report / "claims.csv", keep_default_na=False)
    pages = {k: v for k, v in _pages(report).items() if k.startswith("papers/")}
    assert len(pages) >= 10  # one per paper folder
    shown = [m for html in pages.values() for m in re.findall(r"<article class=\"claim [^>]*>\n<header><h3>([^<]*)</h3>",
                                                              html)]
    assert sorted(shown) == sorted(escape(i) for i in claims["id"])
    paper_of, _ = claim_papers()
    for paper, html in pages.items():  # each claim on its own paper's page, its figure or a sentence
        for claim_id in re.findall(r"<h3>([^<]*)</h3>", html):
            assert paper_of[unescape(claim_id)] == Path(paper).stem, claim_id
        assert html.count("<article") == html.count("<figure>") + html.count('class="no-figure"')
    front = (report / "index.html").read_text()
    assert all(f'href="{p}"' in front for p in pages)
    # Drawn at 1400 px wide, the front page's width.
    assert _png_size(report / "summary.png")[0] == 1400


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[16:24]
    return int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")


def test_cards_show_the_standard_error_when_the_verdict_table_has_one(table: pd.DataFrame,
                                                                      verdicts: pd.DataFrame, tmp_path: Path) -> None:
    write_report(table, verdicts.assign(sem=[0.02, np.inf, np.nan]), {}, tmp_path)
    paper_a = (tmp_path / "papers" / "paper-a.html").read_text()
    assert "<dd>0.1 ± 0.02</dd>" in paper_a and "<dd>1.4 ± ∞</dd>" in paper_a
    write_report(table, verdicts, {}, tmp_path / "without")
    assert "no standard error in the verdict table" in (tmp_path / "without" / "papers" / "paper-a.html").read_text()


def test_an_under_powered_card_says_its_power_once(table: pd.DataFrame, verdicts: pd.DataFrame,
                                                   tmp_path: Path) -> None:
    # verdicts() writes an under-powered claim's power text as its reason too; the card says it once.
    power = "under-powered: needs global_rounds >= 100, ran 12"
    rows = verdicts.assign(power=["powered: seeds 3 (>= 3)", power, "not declared"],
                           reason=["", power, "one seed"], verdict=["reproduced", "inconclusive", "inconclusive"])
    write_report(table, rows, {}, tmp_path)
    html = "".join(p.read_text() for p in (tmp_path / "papers").glob("*.html"))
    assert html.count(escape(power)) == 1
    assert "<dt>why</dt><dd>the runs are below the claim&#x27;s power (see power)</dd>" in html
    assert "<dt>why</dt><dd>one seed</dd>" in html


def test_provenance_from_the_workflow_record_or_says_it_is_missing(table: pd.DataFrame, verdicts: pd.DataFrame,
                                                                  tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    started = (datetime.now(timezone.utc) - timedelta(minutes=3, seconds=5)).isoformat()
    record = {"configfiles": ["config/my.yaml"], "started": started, "command": "snakemake --cores 2"}
    write_report(table.assign(env=json.dumps({"git": "abc1234"})), verdicts, {}, tmp_path / "wf", record=record)
    info = json.loads((tmp_path / "wf" / "provenance.json").read_text())
    assert info["configs"] == "config/my.yaml" and info["command"] == "snakemake --cores 2"
    assert re.fullmatch(r"3 min 0[5-9] s \(this workflow invocation, start to report\)", info["wall time"])
    assert info["commit (runs)"] == "abc1234 (8 runs)" and info["commit (report)"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", info["date"]) and info["machine (report)"]
    assert "config/my.yaml" in (tmp_path / "wf" / "index.html").read_text()
    write_report(table, verdicts, {}, tmp_path / "bare", record={})
    bare = json.loads((tmp_path / "bare" / "provenance.json").read_text())
    assert bare["configs"] == bare["wall time"] == "not recorded (the report was built outside the workflow)"


def test_runs_page_links_each_runs_files(built: Path) -> None:
    report = built
    runs_html = (report / "runs.html").read_text()
    links = re.findall(r'<a href="(\.\./results/runs/[^"]+)">', runs_html)
    assert len(links) == 2 * 8  # trajectory.csv and meta.json of each measured run
    assert all((report / link).is_file() for link in links)
    assert '<a href="../results/runs/topk-ef-real-s1/meta.json">' in runs_html


def test_accuracy_and_warmup_figures_from_their_rows(tmp_path: Path) -> None:
    rows = []
    for method, label, bits in (("sgd", "dense", [32.0] * 4), ("dgc", "dgc", [16.0, 8.0, 1.0, 1.0])):
        for step, b in enumerate(bits):
            rows.append(_row(f"{label}-run", method, "sim", step, label=label, stated_bits=b, metric=0.9,
                             bytes_sent=int(b * 1000 / 8), n_params=1000))
    figures = draw_figures(pd.DataFrame(rows), tmp_path)
    assert {"accuracy_vs_ratio", "dgc_sparsity_warmup"} <= set(figures)
    no_dgc = pd.DataFrame([r for r in rows if r["method"] == "sgd"])
    assert "dgc_sparsity_warmup" not in draw_figures(no_dgc, tmp_path / "b")


def _figure_rows(name: str, table: pd.DataFrame) -> pd.DataFrame:
    """The rows the registered figure `name` draws from `table` (no study tables)."""
    return load_figures()[name].rows(table, {})


def test_quantizer_accuracy_figure_reads_quantizer_and_code_bits_from_params(tmp_path: Path) -> None:
    runs = [("sgd", {}), ("ef-quant", {"quantizer": "orq", "levels": 3, "error_feedback": False}),
            ("ef-quant", {"quantizer": "bingrad"}), ("topk-ef", {"density": 0.01})]
    rows = [_row(f"{method}-{i}-s{seed}", method, "sim", step, params=json.dumps(params), seed=seed,
                 experiment="quant", metric=0.9 + 0.01 * seed)
            for i, (method, params) in enumerate(runs) for seed in (0, 1) for step in range(2)]
    table = pd.DataFrame(rows)
    final = _figure_rows("quantizer_accuracy", table).set_index("run")
    assert len(final) == 6 and set(final["step"]) == {1}  # one final row per run, topk-ef left out
    assert final.loc["ef-quant-1-s0", "quantizer"] == "orq" and final.loc["ef-quant-1-s0", "code_bits"] == 2
    assert final.loc["ef-quant-2-s1", "quantizer"] == "bingrad + EF" and final.loc["ef-quant-2-s1", "code_bits"] == 1
    assert final.loc["sgd-0-s0", "quantizer"] == "dense" and final.loc["sgd-0-s0", "code_bits"] == 32
    assert "quantizer_accuracy" in draw_figures(table, tmp_path)
    assert "quantizer_accuracy" not in draw_figures(table[table["method"] != "ef-quant"], tmp_path / "b")


def test_staleness_histogram_from_the_dgc_diagnostics(tmp_path: Path) -> None:
    shares = {"diag_update_interval_share_1": 0.1, "diag_update_interval_share_2": 0.5,
              "diag_update_interval_share_4": 0.3, "diag_never_updated_fraction": 0.1}
    rows = [_row("dgc-run", "dgc", "sim", step, experiment="dgc_staleness", label="dgc", **shares) for step in range(3)]
    rows += [_row("sgd-run", "sgd", "sim", step) for step in range(3)]  # no diagnostics: NaN columns
    table = pd.DataFrame(rows)
    figures = draw_figures(table, tmp_path)
    assert _is_png(figures["dgc_staleness_histogram"])
    got = _figure_rows("dgc_staleness_histogram", table)
    assert got["interval"].tolist() == ["[1, 2)", "[2, 4)", "[4, 8)", "never"]
    assert got["share"].tolist() == [0.1, 0.5, 0.3, 0.1] and set(got["run"]) == {"dgc-run"}
    without = table[table["method"] == "sgd"].drop(columns=list(shares))
    assert "dgc_staleness_histogram" not in draw_figures(without, tmp_path / "b")


def test_onebit_volume_figure_rows_measure_the_whole_run_volume_per_warmup_fraction():
    def run(name, method, params, per_step):
        return pd.DataFrame({"run": name, "method": method, "mode": "sim", "experiment": "ob", "seed": 0,
                             "params": json.dumps(params), "step": range(10), "link_bytes": per_step})

    table = pd.concat([run("a", "adam", {"lr": 1e-3}, [32.0] * 10),
                       run("o", "onebit-adam", {"freeze_step": 2}, [32.0] * 2 + [1.0] * 8)])
    rows = _figure_rows("onebit_volume_vs_warmup", table)
    assert rows["warmup_fraction"].tolist() == [0.2]
    assert rows["volume_ratio"].tolist() == [pytest.approx(320 / 72)]


def test_sdp4bit_loss_table_rows_keep_each_runs_last_finite_held_out_loss(tmp_path: Path) -> None:
    rows = [_row(f"{label}-s{seed}", "sdp", "sim", step, experiment="sdp4bit", label=label, seed=seed,
                 eval_loss=loss)
            for label, last in (("baseline", 2.0), ("qw", 3.0)) for seed in (0, 1)
            for step, loss in enumerate([5.0, last + seed, np.nan])]  # the last step has no eval
    rows += [_row("other-s0", "sdp", "sim", 0, experiment="sdp4bit_p8", label="qw", eval_loss=9.0)]
    table = pd.DataFrame(rows)
    got = _figure_rows("sdp4bit_loss_table", table).set_index("run")
    assert sorted(got.index) == ["baseline-s0", "baseline-s1", "qw-s0", "qw-s1"]  # only experiment sdp4bit
    assert got["loss"].to_dict() == {"baseline-s0": 2.0, "baseline-s1": 3.0, "qw-s0": 3.0, "qw-s1": 4.0}
    assert set(got["step"]) == {1}
    assert _is_png(draw_figures(table, tmp_path)["sdp4bit_loss_table"])


def test_sdp4bit_throughput_rows_are_the_compressed_labels_of_the_sdp4bit_setups(tmp_path: Path) -> None:
    rows = [_row(f"{label}-{cluster}-{bw:g}", "sdp", "model", step, experiment="sdp4bit_dp16", label=label,
                 cluster=cluster, bandwidth_gbps=bw, wall_s=t, speedup=speedup, metric=np.nan)
            for cluster in ("sdp4bit-18b-h800", "sdp4bit-6.7b-a100") for bw in (400.0, 100.0)
            for label, t, speedup in (("baseline", 4.0, 1.0), ("sdp4bit", 1.0 + 100 / bw, 4.0 / (1.0 + 100 / bw)))
            for step in range(2)]
    table = pd.DataFrame(rows + _model_rows())  # the fixture's model rows (experiment ef) are not SDP4Bit's
    got = _figure_rows("sdp4bit_model_throughput", table)
    assert set(got["label"]) == {"sdp4bit"} and set(got["cluster"]) == {"sdp4bit-18b-h800", "sdp4bit-6.7b-a100"}
    assert got["bandwidth"].tolist()[:2] == ["100 Gbit/s", "100 Gbit/s"]  # slowest link first
    by = got.set_index(["cluster", "bandwidth_gbps"])
    assert by.loc[("sdp4bit-18b-h800", 100.0), "speedup"] == pytest.approx(2.0)
    assert by.loc[("sdp4bit-6.7b-a100", 400.0), "step_time"] == pytest.approx(1.25)
    figures = draw_figures(table, tmp_path)
    assert _is_png(figures["sdp4bit_model_throughput"]) and "sdp4bit_loss_table" not in figures


def test_the_report_marks_which_cluster_produced_which_numbers(table: pd.DataFrame, tmp_path: Path) -> None:
    from thinwire.analysis.claims import verdicts

    table = table.assign(ran_on=np.where(table["mode"] == "real", "gpu-cluster", "local:laptop"))
    claim = {"id": "ef-bits", "source": "Paper A", "statement": "s", "setup": "", "rule": "at_most",
             "expected": 10.0, "tolerance": 0.0,
             "quantity": {"name": "compression_ratio", "experiment": "ef", "method": "topk-ef"}}
    v = verdicts(table, [claim])
    assert v.loc[0, "ran_on"] == "gpu-cluster, local:laptop"
    write_report(table, v, {}, tmp_path)
    html = (tmp_path / "index.html").read_text()
    assert "ran on gpu-cluster (4 runs), local:laptop (4 runs)" in html
    runs_html = (tmp_path / "runs.html").read_text()
    for run, where in [("sgd-real-s0", "gpu-cluster"), ("sgd-sim-s0", "local:laptop")]:
        row = re.search(rf'<td class="run">{run}</td>.*?</tr>', runs_html).group(0)
        assert f'<td class="ran-on">{where}</td>' in row
    assert pd.read_csv(tmp_path / "claims.csv")["ran_on"].tolist() == ["gpu-cluster, local:laptop"]


def test_runs_from_several_code_revisions_are_flagged(table: pd.DataFrame, verdicts: pd.DataFrame,
                                                      tmp_path: Path) -> None:
    same = table.assign(env=json.dumps({"git": "abc1234"}))
    write_report(same, verdicts, {}, tmp_path / "same")
    assert "code revisions" not in (tmp_path / "same" / "index.html").read_text()
    mixed = same.assign(env=np.where(same["run"].str.startswith("sgd"), json.dumps({"git": "0ld0ld0"}),
                                     json.dumps({"git": "abc1234"})))
    write_report(mixed, verdicts, {}, tmp_path / "mixed")
    html = (tmp_path / "mixed" / "index.html").read_text()
    assert "The runs come from 2 code revisions: 0ld0ld0 (4 runs), abc1234 (4 runs)." in html


def test_the_headline_counts_paper_claims_apart_from_the_other_kinds(verdicts: pd.DataFrame, table: pd.DataFrame,
                                                                      tmp_path: Path) -> None:
    from thinwire.analysis.report import headline

    kinds = verdicts.assign(kind=["paper claim", "predicted", "implementation check"],
                            power=["powered: seeds 3 (>= 3)", "not declared", "not declared"],
                            tuning=["not tuned: the sheet's fixed lr", "none: performance model",
                                    "none: implementation check"], config=["a: sgd {}", "", ""])
    text = headline(kinds)
    assert text.startswith("paper claims (1): 1 reproduced, 0 not reproduced, 0 inconclusive")
    assert "implementation checks (1): 0 reproduced, 0 not reproduced, 1 inconclusive" in text
    assert "predicted by the performance model (1): 0 reproduced, 1 not reproduced" in text
    write_report(table, kinds, {}, tmp_path)
    claims = pd.read_csv(tmp_path / "claims.csv", keep_default_na=False)
    assert {"kind", "power", "tuning", "config"} <= set(claims.columns)
    assert f"Claims: {text}." in (tmp_path / "index.html").read_text()
    assert f"Verdicts: {text}." in (tmp_path / "claims.md").read_text()


def test_a_model_card_calls_its_value_the_model_s_not_a_measurement(table: pd.DataFrame, verdicts: pd.DataFrame,
                                                                    tmp_path: Path) -> None:
    rows = verdicts.assign(measured=[2.18, 1.0, 0.5], sem=[0.0, 0.1, 0.0], verdict="reported",
                           value_from=["model", "runs", "runs"])
    write_report(table, rows, {}, tmp_path)
    html = "".join(p.read_text() for p in (tmp_path / "papers").glob("*.html"))
    assert "<dt>model value</dt><dd>2.18</dd>" in html
    assert "none sampled: the performance model&#x27;s output; its error is in the evidence" in html
    assert html.count("<dt>measured</dt>") == 2 and "± 0.1" in html
