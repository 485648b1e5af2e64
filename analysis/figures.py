"""Draw the report's figures from the long-format results table.

A figure is a name, a function that picks its rows from the results table and the study tables, and a
function that draws them; `@figure(name, rows)` registers one. This module registers the generic figures
(loss curves from the sim and real rows, seeds aggregated into a band of +-2 standard errors; step time,
speedup and time to target from the model rows); each paper's own figures live in its folder
(analysis/papers/<paper>/figures.py), so nothing here knows a method or an experiment.
`draw_figures(table, out_dir)` writes one PNG per figure into `out_dir` and returns {figure name: path}.
A figure with no rows to plot is skipped, not drawn empty, so the report only links figures that exist.
Non-finite losses (the tail of a diverged run) are dropped first: a diverged run shows up as a curve
that stops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from thinwire.algorithms.comm import ThinwireError
from thinwire.analysis.catalog import load_paper_figures

# The report is drawn headless (CI, Snakemake), never on a display.
matplotlib.use("Agg")

DPI = 110
BANDWIDTH = "bandwidth (Gbit/s)"
# Fixed bootstrap seed: the CI bands, hence the PNGs, are the same on every run.
BOOT_SEED = 0
PAPERS_MODULE = "thinwire.analysis.papers."

Rows = Callable[[pd.DataFrame, dict[str, pd.DataFrame]], pd.DataFrame]
Draw = Callable[[pd.DataFrame], sns.FacetGrid]
Table = Callable[[pd.DataFrame], pd.DataFrame]


@dataclasses.dataclass(frozen=True)
class Figure:
    rows: Rows  # (results table, study tables by name) -> the rows to draw; empty: not drawn
    draw: Draw
    paper: str | None  # the paper folder that registered it; None for a generic figure
    table: Table | None = None  # (the rows) -> the table written beside the figure as <name>.csv


FIGURES: dict[str, Figure] = {}


def figure(name: str, rows: Rows, table: Table | None = None) -> Callable[[Draw], Draw]:
    """Register the decorated draw function as figure `name`, drawn from `rows(table, studies)`; with
    `table`, table(rows) is also written as <name>.csv (a paper's table regenerated). A paper's
    figures.py registers its own; the paper is the folder the module was loaded from."""
    def register(draw: Draw) -> Draw:
        if name in FIGURES:
            raise ThinwireError(f"figure {name} is registered twice")
        module = draw.__module__
        paper = module.removeprefix(PAPERS_MODULE).split(".")[0] if module.startswith(PAPERS_MODULE) else None
        FIGURES[name] = Figure(rows, draw, paper, table)
        return draw
    return register


def load_figures() -> dict[str, Figure]:
    """Every figure: the generic ones and those of every paper folder."""
    load_paper_figures()
    return FIGURES


def draw_figures(table: pd.DataFrame, out_dir: Path, studies: dict[str, pd.DataFrame] | None = None,
                 names: list[str] | None = None) -> dict[str, Path]:
    """Draw every figure (or those in `names`) that has data; return {name: png path}."""
    studies = studies or {}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = load_figures()
    unknown = sorted(set(names or []) - set(figures))
    if unknown:
        raise ThinwireError(f"no figure named {', '.join(unknown)}; figures: {', '.join(sorted(figures))}")
    drawn = {}
    for name, fig in figures.items():
        if names is not None and name not in names:
            continue
        rows = fig.rows(table, studies)
        if rows.empty:
            continue
        grid = fig.draw(rows)
        try:
            path = out_dir / f"{name}.png"
            grid.savefig(path, dpi=DPI)
            drawn[name] = path
        finally:
            plt.close(grid if isinstance(grid, plt.Figure) else grid.figure)
        if fig.table is not None:
            fig.table(rows).to_csv(out_dir / f"{name}.csv", index=False)
    return drawn


def paper_numbers(paper: str) -> dict:
    """The numbers a paper gives (analysis/papers/<paper>/paper_numbers.yaml): each entry a `source` (the
    paper's table or figure) and its values, for the regenerated figures to draw beside the measured ones."""
    import yaml
    from thinwire.analysis.catalog import PAPERS_DIR

    path = PAPERS_DIR / paper / "paper_numbers.yaml"
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ThinwireError(f"cannot read the paper's numbers {path}: {e}") from None


def loss_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Sim and real rows with a finite objective: the full loss of the workers' average model
    (eval_loss), which the runs record every few steps; the per-step minibatch loss is too noisy
    to compare methods by eye."""
    rows = table[table["mode"].isin(["sim", "real"])]
    rows = rows.assign(loss=pd.to_numeric(rows["eval_loss"], errors="coerce"))
    return rows[np.isfinite(rows["loss"])]


def _accuracy_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per training run with an accuracy: its final accuracy and its compression ratio,
    32-bit dense gradient bytes over the bytes it sent per step on average."""
    rows = table[table["mode"].isin(["sim", "real"])].dropna(subset=["metric"])
    if rows.empty:
        return rows
    last = rows.sort_values("step").groupby("run").tail(1).set_index("run")
    sent = table[table["run"].isin(last.index)].groupby("run")["bytes_sent"].mean()
    last["ratio"] = last["n_params"] * 4 / sent.reindex(last.index)
    return last[np.isfinite(last["ratio"]) & (last["ratio"] > 0)].reset_index()
















@figure("accuracy_vs_ratio", _accuracy_rows)
def _accuracy_vs_ratio(rows: pd.DataFrame) -> sns.FacetGrid:
    # Colour by method: the labels of a sweep name one method at several ratios.
    grid = sns.relplot(data=rows, x="ratio", y="metric", hue="method", style="mode", kind="scatter", s=60,
                       facet_kws={"sharex": False, "sharey": False}, **facets(rows, "experiment"))
    grid.set(xscale="log")
    grid.set_axis_labels("compression ratio (32-bit dense bytes / bytes sent)", "final accuracy (average model)")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("Accuracy against compression, one point per run", y=1.02)
    return grid












def model_rows(table: pd.DataFrame) -> pd.DataFrame:
    """One row per model run: its predicted step time (mean wall_s) and speedup."""
    rows = table[table["mode"] == "model"]
    keys = ["run", "label", "experiment", "cluster", "bandwidth_gbps"]
    per_run = rows.groupby(keys, as_index=False).agg(
        step_time=("wall_s", "mean"), speedup=("speedup", "mean")
    )
    # Log x needs a finite, positive bandwidth.
    finite_bw = np.isfinite(per_run["bandwidth_gbps"]) & (per_run["bandwidth_gbps"] > 0)
    return per_run[finite_bw]


def _bytes_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    rows = loss_rows(table)
    return rows[rows["cum_bytes_sent"] > 0]


def _step_time_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    rows = model_rows(table)
    return rows[rows["step_time"] > 0]


def _speedup_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    rows = model_rows(table)
    return rows[np.isfinite(rows["speedup"])]


def facets(rows: pd.DataFrame, col: str) -> dict:
    """Wrap panels three to a row so many workloads or clusters stay legible."""
    return {"col": col, "col_wrap": min(rows[col].nunique(), 3), "height": 3.4, "aspect": 1.2}


def _loss_grid(rows: pd.DataFrame, x: str) -> sns.FacetGrid:
    # +-2 standard errors over seeds (analytic), as the verdict panels: a bootstrap CI per plotted point
    # of every curve was two thirds of a report build, and from 3 seeds it says no more.
    grid = sns.relplot(
        data=rows, x=x, y="loss", hue="label", style="mode", kind="line", errorbar=("se", 2),
        facet_kws={"sharex": False, "sharey": False}, **facets(rows, "experiment"),
    )
    # Log y separates methods whose losses differ by orders of magnitude; it needs loss > 0.
    if (rows["loss"] > 0).all():
        grid.set(yscale="log")
    grid.set_titles("{col_name}")
    return grid


@figure("loss_vs_step", lambda table, studies: loss_rows(table))
def _loss_vs_step(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = _loss_grid(rows, "step")
    grid.set_axis_labels("step", "objective (average model)")
    grid.figure.suptitle("Loss per step (mean over seeds, +-2 standard errors)", y=1.02)
    return grid


@figure("loss_vs_bytes", _bytes_rows)
def _loss_vs_bytes(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = _loss_grid(rows, "cum_bytes_sent")
    grid.set(xscale="log")
    grid.set_axis_labels("bytes sent per rank (cumulative)", "objective (average model)")
    grid.figure.suptitle("Loss against communication (mean over seeds, +-2 standard errors)", y=1.02)
    return grid


def _bandwidth_grid(rows: pd.DataFrame, y: str, ylabel: str, **kw) -> sns.FacetGrid:
    """A model quantity against the modelled bandwidth (log x), a line per label, a panel per cluster."""
    grid = sns.relplot(data=rows, x="bandwidth_gbps", y=y, hue="label", style="experiment", kind="line", marker="o",
                       **kw, **facets(rows, "cluster"))
    grid.set(xscale="log")
    grid.set_axis_labels(BANDWIDTH, ylabel)
    grid.set_titles("{col_name}")
    return grid


@figure("model_step_time", _step_time_rows)
def _model_step_time(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = _bandwidth_grid(rows, "step_time", "predicted step time (s)")
    grid.set(yscale="log")
    grid.figure.suptitle("Predicted step time against bandwidth", y=1.02)
    return grid


@figure("model_speedup", _speedup_rows)
def _model_speedup(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = _bandwidth_grid(rows, "speedup", "predicted speedup over the dense baseline (x)")
    # Above the line a method beats dense SGD on that cluster and bandwidth.
    grid.refline(y=1.0, color="grey", linestyle="--")
    grid.figure.suptitle("Predicted speedup over the dense baseline (sgd unless the model job names one)", y=1.02)
    return grid


def _time_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per model run that reaches its target loss (a factor times its dense baseline's final
    loss, same seed): predicted seconds to get there, and that time over the fastest label's on the same
    experiment, cluster, bandwidth and seed (the ratio of a performance profile, Dolan and More 2002)."""
    if "seconds_to_target" not in table:
        return pd.DataFrame()
    rows = table[table["mode"] == "model"].dropna(subset=["seconds_to_target"])
    problem = ["experiment", "cluster", "bandwidth_gbps", "seed"]
    per_run = rows.groupby(["run", "label"] + problem, as_index=False)["seconds_to_target"].first()
    per_run["ratio"] = per_run["seconds_to_target"] / per_run.groupby(problem)["seconds_to_target"].transform("min")
    per_run["setup"] = per_run["experiment"] + " @ " + per_run["cluster"]
    # A profile counts the problems a label never solved too: its share is out of all its setup's problems.
    problems = per_run.drop_duplicates(["setup", "bandwidth_gbps", "seed"]).groupby("setup").size()
    per_run["problems"] = per_run["setup"].map(problems)
    return per_run


@figure("model_time_to_target", _time_rows)
def _model_time_to_target(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = _bandwidth_grid(rows, "seconds_to_target", "predicted seconds to the target loss", seed=BOOT_SEED)
    grid.set(yscale="log")
    grid.figure.suptitle("Time to target: steps each run needed x predicted step times (runs that got there)",
                         y=1.02)
    return grid


@figure("model_time_profile", _time_rows)
def _model_time_profile(rows: pd.DataFrame) -> sns.FacetGrid:
    # Each run weighs 1 / its setup's problems, so a curve ends below 1 by the share a label never solved.
    grid = sns.displot(data=rows.assign(share=1 / rows["problems"]), x="ratio", hue="label", kind="ecdf",
                       stat="count", weights="share", log_scale=True, facet_kws={"sharex": False},
                       **facets(rows, "setup"))
    grid.set(ylim=(0, 1.05))
    grid.set_axis_labels("time to target / the fastest label's (tau)", "share of bandwidths x seeds within tau")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("Performance profile of time to target over the modelled bandwidths and seeds", y=1.02)
    return grid




















def _predicted_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Long rows of simulators/predict.py's table: per cell the claimed speedup and each prediction."""
    df = studies.get("model-predicted", pd.DataFrame())
    if df.empty:
        return df
    views = {"claimed": "claimed", "predicted": "public facts", "predicted_calibrated": "calibrated (cell)",
             "predicted_cluster_calibrated": "calibrated (cluster)",
             "predicted_exploratory": "exploratory reading (after seeing the predictions)"}
    views = {k: v for k, v in views.items() if k in df}
    rows = df.melt(id_vars=["claim", "stated", "band_low", "band_high"], value_vars=list(views),
                   var_name="view", value_name="speedup").dropna(subset=["speedup"])
    return rows.assign(view=rows["view"].map(views),
                       cells=np.where(rows["stated"], "claims the model decides", "other published cells"))


@figure("model_predicted", _predicted_rows)
def _model_predicted(rows: pd.DataFrame) -> sns.FacetGrid:
    """Predicted against claimed speedup per paper cell; the grey bar is the sensitivity band of the
    public-facts prediction (each uncertain input at its published low and high)."""
    grid = sns.catplot(data=rows, x="speedup", y="claim", hue="view", col="cells", kind="strip", s=80, jitter=False,
                       sharey=False, height=4.5, aspect=1.1)
    for ax, (_, part) in zip(grid.axes.flat, rows.groupby("cells", sort=False)):
        bands = part.drop_duplicates("claim")
        ax.hlines(bands["claim"], bands["band_low"], bands["band_high"], color="grey", lw=8, alpha=0.3)
        ax.set(xlabel="speedup over the paper's baseline")
    return grid


def _fitted_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per cell with a stated baseline: the inter-node efficiency fitted to it, with its cell's layout."""
    df = studies.get("model-predicted", pd.DataFrame())
    if df.empty or "calibrated_inter_efficiency" not in df:
        return pd.DataFrame()
    df = df[np.isfinite(df["calibrated_inter_efficiency"])]
    layout = "TP " + df["tp"].astype(str) + ", PP " + df["pp"].astype(str) + ", DP " + df["dp"].astype(str)
    return df.assign(cell=df["claim"] + " (" + layout + ")",
                     cells=np.where(df["stated"], "claims the model decides", "other published cells"))


@figure("model_fitted_efficiency", _fitted_rows)
def _model_fitted_efficiency(rows: pd.DataFrame) -> sns.FacetGrid:
    """The inter-node link efficiency each stated baseline throughput implies (the per-cell calibration),
    per cluster. One set of public facts fits a cluster only if its cells agree; a value above 1 (dashed)
    moved the baseline's bytes faster than the stated link allows; the dotted line per cluster is its
    published efficiency (simulators/clusters/)."""
    grid = sns.catplot(data=rows, x="calibrated_inter_efficiency", y="cell", hue="cells", col="cluster",
                       kind="strip", s=90, jitter=False, sharey=False, height=3.2, aspect=1.6)
    for ax, (_, part) in zip(grid.axes.flat, rows.groupby("cluster", sort=False)):
        ax.set_xscale("log")
        ax.axvline(1.0, color="black", ls="--", lw=1)
        ax.axvline(float(part["public_inter_efficiency"].iloc[0]), color="grey", ls=":", lw=1.5)
        ax.set(xlabel="inter-node efficiency fitted to the stated baseline TFLOP/s", ylabel="")
    return grid


@figure("model_sensitivity", lambda table, studies: studies.get("model-sensitivity", pd.DataFrame()))
def _model_sensitivity(rows: pd.DataFrame) -> sns.FacetGrid:
    """Each uncertain input at its low and high published value: the predicted speedup per claim."""
    grid = sns.catplot(data=rows, x="speedup", y="input", hue="end", col="claim", col_wrap=3, kind="strip", s=70,
                       jitter=False, sharex=False, sharey=False, height=3, aspect=1.6)
    for ax, (_, part) in zip(grid.axes.flat, rows.groupby("claim", sort=False)):
        ax.axvline(part["claimed"].iloc[0], color="black", lw=1)
    grid.set_titles("{col_name} (line: claimed)")
    return grid
