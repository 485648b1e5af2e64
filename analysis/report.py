"""Write the report: the claim verdicts as CSV and Markdown, and one static HTML page.

`write_report(table, verdicts, figures, out_dir)` writes out_dir/claims.csv,
out_dir/claims.md and out_dir/index.html. The page is self-contained (inline
style, no script, no CDN) and links figures as figures/NAME.png, relative to
out_dir, so the folder can be copied or served as it is. All text from the
tables is passed through html.escape: claim statements are quoted from papers
and may hold '<' or '&'.
"""

from __future__ import annotations

import json
import re
import shutil
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

VERDICTS = ["reproduced", "not reproduced", "inconclusive", "out of scope", "reported"]
CLAIM_FIRST = ["id", "verdict", "measured", "expected", "evidence"]
# kind, power, tuning, config: issue 13 (a verdict says what kind of check it is, whether its runs were in
# the claim's regime, how its arms were tuned, and what ran).
CLAIM_PAGE = ["id", "kind", "paper_claim", "source", "statement", "verdict", "measured", "expected", "evidence",
              "reason", "power", "tuning", "config", "ran_on", "figure"]
KIND_ORDER = {"paper claim": "paper claims", "implementation check": "implementation checks",
              "predicted": "predicted by the performance model"}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
p.warning { background: #fff0c2; padding: 0.4em; }
.verdict-reproduced td.verdict { background: #cdeccd; }
.verdict-not-reproduced td.verdict { background: #f5c6c6; }
.verdict-inconclusive td.verdict { background: #fbe7b0; }
.verdict-out-of-scope td.verdict { background: #e2e2e2; }
.verdict-reported td.verdict { background: #dbe7f5; }
tr.diverged { background: #f5c6c6; font-weight: bold; }
img.thumb { width: 160px; }
figure img { max-width: 100%; }
"""


def write_report(
    table: pd.DataFrame, verdicts: pd.DataFrame, figures: dict[str, Path], out_dir: Path,
    validation: pd.DataFrame | None = None,
) -> None:
    """Write claims.csv, claims.md and index.html into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    claims = verdicts[CLAIM_FIRST + [c for c in verdicts.columns if c not in CLAIM_FIRST]]
    claims.to_csv(out_dir / "claims.csv", index=False)
    (out_dir / "claims.md").write_text(_markdown(claims.reindex(columns=CLAIM_PAGE)))
    figure_src = _collect_figures(figures, out_dir)
    (out_dir / "index.html").write_text(_page(table, claims, figure_src, validation))
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


def _summary(verdicts: pd.Series) -> str:
    """'2 reproduced, 1 not reproduced, ...': the five verdicts first, then any other value."""
    counts = verdicts.value_counts()
    order = VERDICTS + sorted(set(counts.index) - set(VERDICTS))
    return ", ".join(f"{counts.get(v, 0)} {v}" for v in order)


def headline(claims: pd.DataFrame) -> str:
    """The verdict counts of the paper claims (only these are reproductions of a paper), then those of
    the other kinds, each counted apart. Without a kind column (an older verdict table): all claims."""
    if "kind" not in claims or claims["kind"].isna().all():
        return _summary(claims["verdict"])
    parts = []
    for kind in list(KIND_ORDER) + sorted(set(claims["kind"].dropna()) - set(KIND_ORDER)):
        rows = claims[claims["kind"] == kind]
        if kind == "paper claim" or not rows.empty:
            parts.append(f"{KIND_ORDER.get(kind, kind)} ({len(rows)}): {_summary(rows['verdict'])}")
    return ". ".join(parts)


def _fmt(value: object) -> str:
    if value is None or (np.isscalar(value) and pd.isna(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def _markdown(claims: pd.DataFrame) -> str:
    def cell(value: object) -> str:
        # A pipe or a newline would break the table; a '<' would start raw HTML.
        return _fmt(value).replace("|", r"\|").replace("\n", " ").replace("<", "&lt;")

    lines = [
        "# thinwire claims",
        "",
        f"Verdicts: {headline(claims)}.",
        "",
        "| " + " | ".join(claims.columns) + " |",
        "|" + "---|" * len(claims.columns),
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in claims.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def _html_table(rows: pd.DataFrame, row_classes: list[str], html_columns: frozenset[str] = frozenset()) -> str:
    """An HTML table with a class per row (pandas' to_html cannot set one).

    Cells are escaped text, except those in html_columns, which the caller has
    already built from escaped parts.
    """
    head = "".join(f"<th>{escape(str(c))}</th>" for c in rows.columns)
    body = []
    for row_class, row in zip(row_classes, rows.itertuples(index=False)):
        cells = "".join(
            f'<td class="{_slug(c)}">{v if c in html_columns else escape(_fmt(v))}</td>'
            for c, v in zip(rows.columns, row)
        )
        body.append(f'<tr class="{escape(row_class)}">{cells}</tr>')
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def _figure_cell(name: object, figure_src: dict[str, str]) -> str:
    name = _fmt(name)
    if name in figure_src:
        src = escape(figure_src[name])
        return f'<a href="{src}"><img class="thumb" src="{src}" alt="{escape(name)}"></a>'
    # A claim may name a figure that was skipped for lack of data; say so.
    return f"{escape(name)} (not drawn)" if name else ""


def _runs(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its setup, length, final finite loss and metric, bytes, status."""
    rows = table.sort_values(["run", "step"])
    by_run = rows.groupby("run", sort=False)
    runs = by_run.agg(
        method=("method", "first"), label=("label", "first"), workload=("workload", "first"),
        mode=("mode", "first"),
        backend=("backend", "first"), world_size=("world_size", "first"), seed=("seed", "first"),
        steps=("step", "size"),
    )
    if "ran_on" in rows:
        runs["ran on"] = by_run["ran_on"].first()
    # A diverged run ends in NaN/inf; its last finite loss is the informative one.
    finite = rows[np.isfinite(pd.to_numeric(rows["loss"], errors="coerce"))]
    runs["final loss"] = finite.groupby("run")["loss"].last()
    runs["final metric"] = rows.groupby("run")["metric"].last()
    runs["bytes sent per rank"] = by_run["cum_bytes_sent"].max()
    runs["status"] = by_run["status"].agg(lambda s: "diverged" if (s == "diverged").any() else "ok")
    runs["mean wall_s (s)"] = by_run["wall_s"].mean()
    # Training runs first: that is where a diverged run shows up.
    mode_order = {"sim": 0, "real": 1, "model": 2}
    return runs.reset_index().sort_values(
        ["mode", "workload", "method", "seed", "run"],
        key=lambda col: col.map(mode_order) if col.name == "mode" else col,
    )


def _validation_section(validation: pd.DataFrame | None) -> str:
    if validation is None or validation.empty:
        return ""
    err = validation["error"].abs()
    shown = validation.assign(**{c: validation[c] * 1e3 for c in ("local_s", "comm_predicted_s", "comm_measured_s",
                                                                    "predicted_s", "measured_s")})
    shown = shown.rename(columns=lambda c: c.replace("_s", " (ms)") if c.endswith("_s") else c)
    shown["error"] = [f"{e:+.1%}" for e in validation["error"]]
    noise = ""
    if "measured_spread" in validation:
        for c in ("local_spread", "measured_spread"):
            shown[c] = [f"{e:.1%}" for e in validation[c]]
        noise = (f" Each case is the median of {int(validation['repeats'].min())} runs; the measured runs of a "
                 f"case spread by {validation['measured_spread'].median():.1%} (median; max "
                 f"{validation['measured_spread'].max():.1%}), (max - min) / median: the noise floor of this machine.")
    return (f"<h2>Performance model against measurement (shaped links)</h2>\n<p>{len(validation)} cases: "
            f"median |error| {err.median():.1%}, mean {err.mean():.1%}, max {err.max():.1%}.{noise} "
            f"Also in validation.csv.</p>\n{_html_table(shown.drop(columns=['case']), [''] * len(shown))}")


def _where(runs: pd.DataFrame) -> str:
    """Where the measured runs ran (their cluster names), for a report that mixes clusters."""
    if "ran on" not in runs:
        return ""
    counts = runs[runs["mode"].isin(["sim", "real"])]["ran on"].value_counts()
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return "; ran on " + ", ".join(f"{name} ({n} runs)" for name, n in ordered) if ordered else ""


def _revisions(table: pd.DataFrame) -> str:
    """A warning when the measured runs come from several code revisions (results kept from older code,
    or clusters running different checkouts): their numbers may not be comparable."""
    if "env" not in table:
        return ""
    runs = table[table["mode"].isin(["sim", "real"])].drop_duplicates("run")
    revs = runs["env"].map(lambda e: json.loads(e).get("git", "unknown") if isinstance(e, str) else "unknown")
    counts = sorted(revs.value_counts().items(), key=lambda kv: (-kv[1], kv[0]))
    if len(counts) < 2:
        return ""
    each = ", ".join(f"{rev} ({n} runs)" for rev, n in counts)
    return f'<p class="warning">The runs come from {len(counts)} code revisions: {escape(each)}.</p>\n'


def _page(table: pd.DataFrame, claims: pd.DataFrame, figure_src: dict[str, str],
          validation: pd.DataFrame | None = None) -> str:
    page_claims = claims.reindex(columns=CLAIM_PAGE)
    page_claims["figure"] = [_figure_cell(f, figure_src) for f in page_claims["figure"]]
    claim_classes = [f"verdict-{_slug(v)}" for v in page_claims["verdict"]]
    runs = _runs(table)
    n_diverged = int((runs["status"] == "diverged").sum())
    figures_html = "\n".join(
        f'<figure id="fig-{escape(name)}"><img src="{escape(src)}" alt="{escape(name)}">'
        f"<figcaption>{escape(name)}</figcaption></figure>"
        for name, src in figure_src.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>thinwire report</title>
<style>{STYLE}</style>
</head>
<body>
<h1>thinwire report</h1>
<p>Claims: {escape(headline(claims))}. Runs: {len(runs)} ({n_diverged} diverged){escape(_where(runs))}.</p>
{_revisions(table)}
<h2>Claims</h2>
{_html_table(page_claims, claim_classes, frozenset({"figure"}))}
{_validation_section(validation)}
<h2>Figures</h2>
{figures_html}
<h2>Runs</h2>
{_html_table(runs, list(runs["status"]))}
</body>
</html>
"""
