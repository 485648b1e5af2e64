"""Draw the report's figures from the long-format results table.

`draw_figures(table, out_dir)` writes one PNG per figure into `out_dir` and
returns {figure name: path}. Loss curves come from the sim and real rows (seeds
aggregated into seaborn's default 95% CI band); step time and speedup come from
the model rows. A figure with no rows to plot is skipped, not drawn empty, so
the report only links figures that exist. Non-finite losses (the tail of a
diverged run) are dropped first: a diverged run shows up as a curve that stops.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

# The report is drawn headless (CI, Snakemake), never on a display.
matplotlib.use("Agg")

DPI = 110
BANDWIDTH = "bandwidth (Gbit/s)"
# Fixed bootstrap seed: the CI bands, hence the PNGs, are the same on every run.
BOOT_SEED = 0


def draw_figures(table: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """Draw every figure that has data; return {name: png path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = _loss_rows(table)
    model = _model_rows(table)
    plans = {
        "accuracy_vs_ratio": (_accuracy_rows(table), _accuracy_vs_ratio),
        "dgc_sparsity_warmup": (_warmup_rows(table), _dgc_warmup),
        "loss_vs_step": (curves, _loss_vs_step),
        "loss_vs_bytes": (curves[curves["cum_bytes_sent"] > 0], _loss_vs_bytes),
        "model_step_time": (model[model["step_time"] > 0], _model_step_time),
        "model_speedup": (model[np.isfinite(model["speedup"])], _model_speedup),
    }
    drawn = {}
    for name, (rows, draw) in plans.items():
        if rows.empty:
            continue
        grid = draw(rows)
        try:
            path = out_dir / f"{name}.png"
            grid.savefig(path, dpi=DPI)
            drawn[name] = path
        finally:
            plt.close(grid.figure)
    return drawn


def _loss_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Sim and real rows with a finite objective: the full loss of the workers' average model
    (eval_loss), which the runs record every few steps; the per-step minibatch loss is too noisy
    to compare methods by eye."""
    rows = table[table["mode"].isin(["sim", "real"])]
    rows = rows.assign(loss=pd.to_numeric(rows["eval_loss"], errors="coerce"))
    return rows[np.isfinite(rows["loss"])]


def _accuracy_rows(table: pd.DataFrame) -> pd.DataFrame:
    """One row per training run with an accuracy: its final accuracy and its compression ratio,
    32-bit dense gradient bytes over the bytes it sent per step on average."""
    rows = table[table["mode"].isin(["sim", "real"])].dropna(subset=["metric"])
    if rows.empty:
        return rows
    last = rows.sort_values("step").groupby("run").tail(1).set_index("run")
    sent = table[table["run"].isin(last.index)].groupby("run")["bytes_sent"].mean()
    last["ratio"] = last["n_params"] * 4 / sent.reindex(last.index)
    return last[np.isfinite(last["ratio"]) & (last["ratio"] > 0)].reset_index()


def _warmup_rows(table: pd.DataFrame) -> pd.DataFrame:
    """DGC runs whose bits per step change (a sparsity warm-up), step by step."""
    rows = table[table["mode"].isin(["sim", "real"]) & (table["method"] == "dgc")].dropna(subset=["stated_bits"])
    varying = rows.groupby("run")["stated_bits"].nunique()
    return rows[rows["run"].isin(varying[varying > 1].index)]


def _accuracy_vs_ratio(rows: pd.DataFrame) -> sns.FacetGrid:
    # Colour by method: the labels of a sweep name one method at several ratios.
    grid = sns.relplot(data=rows, x="ratio", y="metric", hue="method", style="mode", kind="scatter", s=60,
                       facet_kws={"sharex": False, "sharey": False}, **_facets(rows, "experiment"))
    grid.set(xscale="log")
    grid.set_axis_labels("compression ratio (32-bit dense bytes / bytes sent)", "final accuracy (average model)")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("Accuracy against compression, one point per run", y=1.02)
    return grid


def _dgc_warmup(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.relplot(data=rows, x="step", y="stated_bits", hue="label", kind="line", drawstyle="steps-post",
                       facet_kws={"sharex": False, "sharey": False}, errorbar=None, **_facets(rows, "experiment"))
    grid.set(yscale="log")
    grid.set_axis_labels("step", "bits per parameter sent")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("DGC: bits per parameter sent through its sparsity warm-up", y=1.02)
    return grid


def _model_rows(table: pd.DataFrame) -> pd.DataFrame:
    """One row per model run: its predicted step time (mean wall_s) and speedup."""
    rows = table[table["mode"] == "model"]
    keys = ["run", "label", "experiment", "cluster", "bandwidth_gbps"]
    per_run = rows.groupby(keys, as_index=False).agg(
        step_time=("wall_s", "mean"), speedup=("speedup", "mean")
    )
    # Log x needs a finite, positive bandwidth.
    finite_bw = np.isfinite(per_run["bandwidth_gbps"]) & (per_run["bandwidth_gbps"] > 0)
    return per_run[finite_bw]


def _facets(rows: pd.DataFrame, col: str) -> dict:
    """Wrap panels three to a row so many workloads or clusters stay legible."""
    return {"col": col, "col_wrap": min(rows[col].nunique(), 3), "height": 3.4, "aspect": 1.2}


def _loss_grid(rows: pd.DataFrame, x: str) -> sns.FacetGrid:
    grid = sns.relplot(
        data=rows, x=x, y="loss", hue="label", style="mode", kind="line",
        facet_kws={"sharex": False, "sharey": False}, seed=BOOT_SEED, **_facets(rows, "experiment"),
    )
    # Log y separates methods whose losses differ by orders of magnitude; it needs loss > 0.
    if (rows["loss"] > 0).all():
        grid.set(yscale="log")
    grid.set_titles("{col_name}")
    return grid


def _loss_vs_step(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = _loss_grid(rows, "step")
    grid.set_axis_labels("step", "objective (average model)")
    grid.figure.suptitle("Loss per step (mean over seeds, 95% CI)", y=1.02)
    return grid


def _loss_vs_bytes(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = _loss_grid(rows, "cum_bytes_sent")
    grid.set(xscale="log")
    grid.set_axis_labels("bytes sent per rank (cumulative)", "objective (average model)")
    grid.figure.suptitle("Loss against communication (mean over seeds, 95% CI)", y=1.02)
    return grid


def _model_step_time(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.relplot(
        data=rows, x="bandwidth_gbps", y="step_time", hue="label", style="experiment", kind="line", marker="o",
        **_facets(rows, "cluster"),
    )
    grid.set(xscale="log", yscale="log")
    grid.set_axis_labels(BANDWIDTH, "predicted step time (s)")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("Predicted step time against bandwidth", y=1.02)
    return grid


def _model_speedup(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.relplot(
        data=rows, x="bandwidth_gbps", y="speedup", hue="label", style="experiment", kind="line", marker="o",
        **_facets(rows, "cluster"),
    )
    grid.set(xscale="log")
    # Above the line a method beats dense SGD on that cluster and bandwidth.
    grid.refline(y=1.0, color="grey", linestyle="--")
    grid.set_axis_labels(BANDWIDTH, "predicted speedup over sgd (x)")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("Predicted speedup over dense SGD", y=1.02)
    return grid
