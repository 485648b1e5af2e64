"""The runs: one row per run (setup, length, final loss and metric, bytes, status), and runs.html, the
table sortable and filterable by the report's own script (table.js), each run linking its files."""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from .common import html_table, page


def runs(table: pd.DataFrame) -> pd.DataFrame:
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


def where(runs: pd.DataFrame) -> str:
    """Where the measured runs ran (their cluster names), for a report that mixes clusters."""
    if "ran on" not in runs:
        return ""
    counts = runs[runs["mode"].isin(["sim", "real"])]["ran on"].value_counts()
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return "; ran on " + ", ".join(f"{name} ({n} runs)" for name, n in ordered) if ordered else ""


def _files(run: str, runs_dir: Path | None, out_dir: Path) -> str:
    """Links to the files of a run's directory (runs_dir/<run>/), relative to the report folder; none
    when the report was built without the run directories (a model run has none)."""
    folder = Path(runs_dir) / run if runs_dir else None
    if folder is None or not folder.is_dir():
        return ""
    rel = Path(os.path.relpath(folder.resolve(), Path(out_dir).resolve()))
    return " ".join(f'<a href="{escape((rel / p.name).as_posix())}">{escape(p.name)}</a>'
                    for p in sorted(folder.iterdir()) if p.is_file())


def runs_page(table: pd.DataFrame, out_dir: Path, runs_dir: Path | None = None) -> str:
    shown = runs(table)
    shown.insert(1, "files", [_files(r, runs_dir, out_dir) for r in shown["run"]])  # beside its run: in view
    n_diverged = int((shown["status"] == "diverged").sum())
    body = f"""<h1>Runs</h1>
<p>{len(shown)} runs ({n_diverged} diverged){escape(where(shown))}. Click a column head to sort; type to
filter (every word must appear; <code>status:diverged</code> looks in one column).</p>
<p><input class="filter" type="search" data-filter="runs" placeholder="filter runs, e.g. sim topk status:ok"
 aria-label="filter runs"> <span data-count="runs"></span></p>
{html_table(shown, list(shown["status"]), frozenset({"files"}), table_id="runs").replace(
        '<table id="runs">', '<table id="runs" class="sortable">', 1)}"""
    return page("thinwire runs", body, script=True)
