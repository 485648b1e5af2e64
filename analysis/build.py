"""Build reports/ from results/table.csv: verdicts, figures, claims.csv/md and index.html (or one figure)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from thinwire.algorithms.comm import ThinwireError
from thinwire.analysis.claims import load_claims, verdicts
from thinwire.analysis.evidence import PREFIX, draw_evidence, groups, resolve_figures
from thinwire.analysis.figures import draw_figures
from thinwire.analysis.report import claim_papers, write_report


def read_results(table_csv: Path, studies_dir: Path | None = None) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The results table and the study tables by name (results/studies/<name>.csv)."""
    try:
        # cluster is empty except on model rows: read it as text, not as a guessed mixed column.
        table = pd.read_csv(table_csv, dtype={"cluster": str, "label": str, "experiment": str, "tuning": str})
    except (OSError, ValueError) as e:
        raise ThinwireError(f"cannot read results table {table_csv}: {e}") from None
    table["cluster"] = table["cluster"].fillna("")
    # Studies: measurements that are not training runs (e.g. quantizer error by distribution).
    studies = {p.stem: pd.read_csv(p) for p in sorted(Path(studies_dir).glob("*.csv"))} if studies_dir else {}
    return table, studies


def build_report(table_csv: Path, out_dir: Path, claims_dir: Path | None = None,
                 studies_dir: Path | None = None) -> pd.DataFrame:
    table, studies = read_results(table_csv, studies_dir)
    claims = resolve_figures(load_claims(claims_dir))  # every claim in scope names its evidence figure
    v = verdicts(table, claims, studies)
    figures = draw_figures(table, Path(out_dir) / "figures", studies)
    figures.update(draw_evidence(table, claims, v, Path(out_dir) / "figures", studies))
    papers, titles = claim_papers(claims_dir)
    # The runs' own files (results/runs/<run>/, beside results/table.csv), linked from runs.html.
    write_report(table, v, figures, Path(out_dir), studies.get("validation"), papers, titles,
                 runs_dir=Path(table_csv).parent / "runs")
    return v


def build_figure(table_csv: Path, name: str, out_dir: Path, studies_dir: Path | None = None) -> Path:
    """Draw the one figure `name` into out_dir/<name>.png; an error when the results have no rows for it."""
    table, studies = read_results(table_csv, studies_dir)
    if name.startswith(PREFIX):  # a claim's evidence figure: its claims' verdicts, then the figure
        members = groups(resolve_figures(load_claims())).get(name)
        if members is None:
            raise ThinwireError(f"no claim has the evidence figure {name}")
        return draw_evidence(table, members, verdicts(table, members, studies), Path(out_dir), studies)[name]
    drawn = draw_figures(table, Path(out_dir), studies, names=[name])
    if name not in drawn:
        raise ThinwireError(f"figure {name}: the results in {table_csv} have no rows to draw it from")
    return drawn[name]
