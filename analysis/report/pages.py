"""write_report: every file of the report folder, and the front page."""

from __future__ import annotations

import json
import math
import shutil
from html import escape
from pathlib import Path

import pandas as pd

from . import provenance as prov
from .common import copy_assets, html_table, page, slug
from .papers import assign, paper_page
from .runs import runs, runs_page, where
from .summary import _summary, draw_summary, headline, markdown

CLAIM_FIRST = ["id", "verdict", "measured", "expected", "evidence"]
# kind, power, tuning, config: issue 13 (a verdict says what kind of check it is, whether its runs were in
# the claim's regime, how its arms were tuned, and what ran).
CLAIM_PAGE = ["id", "kind", "paper_claim", "source", "statement", "verdict", "measured", "expected", "evidence",
              "reason", "power", "tuning", "config", "ran_on", "figure"]


def write_report(
    table: pd.DataFrame, verdicts: pd.DataFrame, figures: dict[str, Path], out_dir: Path,
    validation: pd.DataFrame | None = None, papers: dict[str, str] | None = None,
    titles: dict[str, str] | None = None, runs_dir: Path | None = None, record: dict | None = None,
) -> None:
    """Write into out_dir: claims.csv, claims.md, index.html (the front page), summary.png,
    papers/<paper>.html (one per paper: `papers` maps claim ids to papers, analysis.report.claim_papers;
    `titles` names them), runs.html (its run files linked from runs_dir/<run>/ when given),
    provenance.json, style.css, table.js, figures/ and validation.csv when there is a validation table.
    `record`: what the workflow recorded (provenance.recorded(), the default)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    claims = verdicts[CLAIM_FIRST + [c for c in verdicts.columns if c not in CLAIM_FIRST]]
    claims.to_csv(out_dir / "claims.csv", index=False)
    (out_dir / "claims.md").write_text(markdown(claims.reindex(columns=CLAIM_PAGE)))
    figure_src = _collect_figures(figures, out_dir)
    copy_assets(out_dir)
    paper_of = assign(claims, papers)
    draw_summary(claims, paper_of, out_dir / "summary.png")
    (out_dir / "papers").mkdir(exist_ok=True)
    for stale in (out_dir / "papers").glob("*.html"):  # a paper no longer in the claims
        stale.unlink()
    titles = titles or {}
    for paper in sorted(paper_of.unique()):
        (out_dir / "papers" / f"{paper}.html").write_text(
            paper_page(paper, titles.get(paper, ""), claims[paper_of == paper], figure_src))
    (out_dir / "runs.html").write_text(runs_page(table, out_dir, runs_dir))
    info = prov.collect(table, record)
    (out_dir / "provenance.json").write_text(json.dumps(info, indent=1) + "\n")
    (out_dir / "index.html").write_text(_front(table, claims, paper_of, titles, figure_src, info, validation))
    if validation is not None:
        validation.to_csv(out_dir / "validation.csv", index=False)


def _collect_figures(figures: dict[str, Path], out_dir: Path) -> dict[str, str]:
    """Copy figures into out_dir/figures if drawn elsewhere; return {name: relative src}."""
    (out_dir / "figures").mkdir(exist_ok=True)
    src = {}
    for name, path in figures.items():
        target = out_dir / "figures" / f"{name}.png"
        if Path(path).resolve() != target.resolve():
            shutil.copyfile(path, target)
        src[name] = f"figures/{name}.png"
    return src


def _validation_section(validation: pd.DataFrame | None) -> str:
    if validation is None or validation.empty:
        return ""
    err = validation["error"].abs()
    shown = validation.assign(**{c: validation[c] * 1e3 for c in ("local_s", "comm_predicted_s", "comm_measured_s",
                                                                    "predicted_s", "measured_s")})
    runs = [c for c in ("measured_runs_s", "calibration_runs_s", "round_errors") if c in shown]  # each run's: in the CSV
    shown = shown.drop(columns=runs).rename(columns=lambda c: c.replace("_s", " (ms)") if c.endswith("_s") else c)
    shown["error"] = [f"{e:+.1%}" for e in validation["error"]]
    noise = ""
    if "measured_spread" in validation:
        for c in ("local_spread", "measured_spread", "error_spread"):
            if c in validation:
                shown[c] = [f"{e:.1%}" for e in validation[c]]
        noise = (f" Each case is the median of {int(validation['repeats'].min())} rounds; the measured runs of a "
                 f"case spread by {validation['measured_spread'].median():.1%} (median; max "
                 f"{validation['measured_spread'].max():.1%}), (max - min) / median: the noise floor of this machine.")
        if "error_spread" in validation:
            noise += (" A round predicts its run from the calibration run beside it in time; the rounds' predicted / "
                      f"measured spread by {validation['error_spread'].median():.1%} (median; max "
                      f"{validation['error_spread'].max():.1%}).")
    if "round_errors" in validation:
        from thinwire.validate import noise_floor

        floors = {(stat, q): noise_floor(validation, stat, q=q) for stat in ("median", "max") for q in (0.5, 0.95)}
        if all(map(math.isfinite, floors.values())):
            noise += (" A perfect model, wrong only by the noise of the runs it reads (its rounds resampled), "
                      f"would show median |error| {floors['median', 0.5]:.1%} (95% of resamples up to "
                      f"{floors['median', 0.95]:.1%}) and max {floors['max', 0.5]:.1%} (up to {floors['max', 0.95]:.1%}).")
    return (f"<h2>Performance model against measurement (shaped links)</h2>\n<p>{len(validation)} cases: "
            f"median |error| {err.median():.1%}, mean {err.mean():.1%}, max {err.max():.1%}.{noise} "
            f'Also in <a href="validation.csv">validation.csv</a>.</p>\n'
            f"{html_table(shown.drop(columns=['case']), [''] * len(shown))}")


def _revisions(table: pd.DataFrame) -> str:
    """A warning when the measured runs come from several code revisions (results kept from older code,
    or clusters running different checkouts): their numbers may not be comparable."""
    if "env" not in table:
        return ""
    measured = table[table["mode"].isin(["sim", "real"])].drop_duplicates("run")
    revs = measured["env"].map(lambda e: json.loads(e).get("git", "unknown") if isinstance(e, str) else "unknown")
    counts = sorted(revs.value_counts().items(), key=lambda kv: (-kv[1], kv[0]))
    if len(counts) < 2:
        return ""
    each = ", ".join(f"{rev} ({n} runs)" for rev, n in counts)
    return f'<p class="warning">The runs come from {len(counts)} code revisions: {escape(each)}.</p>\n'


def _paper_list(claims: pd.DataFrame, paper_of: pd.Series, titles: dict[str, str]) -> str:
    items = []
    for paper in sorted(paper_of.unique()):
        rows = claims[paper_of == paper]
        paper_rows = rows[rows["kind"] == "paper claim"] if "kind" in rows and rows["kind"].notna().any() else rows
        counts = _summary(paper_rows["verdict"]) if len(paper_rows) else "no paper claims"
        counts = ", ".join(c for c in counts.split(", ") if not c.startswith("0 ")) or counts
        title = titles.get(paper, "")
        items.append(f'<li><a href="papers/{escape(paper)}.html">{escape(paper)}</a>'
                     f'{": " + escape(title) if title and title != paper else ""} '
                     f"<small>({len(rows)} claims; paper claims: {escape(counts)})</small></li>")
    return '<ul class="papers">\n' + "\n".join(items) + "\n</ul>"


def _front(table: pd.DataFrame, claims: pd.DataFrame, paper_of: pd.Series, titles: dict[str, str],
           figure_src: dict[str, str], info: dict[str, str], validation: pd.DataFrame | None) -> str:
    run_rows = runs(table)
    n_diverged = int((run_rows["status"] == "diverged").sum())
    figure_links = " ".join(f'<a href="{escape(src)}" id="fig-{slug(name)}">{escape(name)}</a>'
                            for name, src in figure_src.items()) or "none drawn"
    body = f"""<h1>thinwire report</h1>
<p class="headline">Claims: {escape(headline(claims))}. <a href="runs.html">Runs</a>: {len(run_rows)}
({n_diverged} diverged){escape(where(run_rows))}.</p>
{_revisions(table)}<figure class="summary"><img src="summary.png" alt="verdicts by paper and kind of check"></figure>
<h2>Papers</h2>
{_paper_list(claims, paper_of, titles)}
<h2>Provenance</h2>
{prov.html(info)}
{_validation_section(validation)}
<h2>All figures</h2>
<p>{figure_links}</p>"""
    return page("thinwire report", body)
