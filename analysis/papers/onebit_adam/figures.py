"""1-bit Adam's figure: the measured volume reduction against the warm-up fraction."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import seaborn as sns
from thinwire.analysis.figures import figure, paper_numbers


def _onebit_volume_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per 1-bit Adam run: its warm-up fraction (freeze_step / steps) and its whole-run link volume
    relative to the dense Adam run of the same experiment and seed."""
    rows = table[table["mode"].isin(["sim", "real"]) & table["method"].isin(["adam", "onebit-adam"])]
    if rows.empty or not (rows["method"] == "onebit-adam").any():
        return pd.DataFrame()
    per_run = rows.groupby(["run", "method", "experiment", "seed", "params"], as_index=False).agg(
        link_bytes=("link_bytes", "sum"), steps=("step", "size"))
    base = per_run[per_run["method"] == "adam"].set_index(["experiment", "seed"])["link_bytes"]
    ours = per_run[per_run["method"] == "onebit-adam"].copy()
    ours["warmup_fraction"] = [json.loads(p)["freeze_step"] / n for p, n in zip(ours["params"], ours["steps"])]
    ours["volume_ratio"] = base.reindex(pd.MultiIndex.from_frame(ours[["experiment", "seed"]])).to_numpy() / ours["link_bytes"]
    return ours.dropna(subset=["volume_ratio"])


def _volume_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per 1-bit Adam run: warm-up fraction, measured volume ratio, the fp32 formula at that fraction."""
    t = rows[["run", "experiment", "seed", "warmup_fraction", "volume_ratio"]].copy()
    t["formula_fp32"] = 1 / (t["warmup_fraction"] + (1 - t["warmup_fraction"]) / 32)
    t["paper"] = paper_numbers("onebit_adam")["volume"]["source"]
    return t


@figure("onebit_volume_vs_warmup", _onebit_volume_rows, table=_volume_table)
def _onebit_volume_vs_warmup(rows: pd.DataFrame) -> sns.FacetGrid:
    """Measured overall volume reduction of 1-bit Adam against the warm-up fraction, with the blog's
    1 / (w + (1 - w) / 32) for fp32 (the compression stage at exactly 1 bit per value)."""
    grid = sns.relplot(data=rows, x="warmup_fraction", y="volume_ratio", hue="experiment", s=80, height=4, aspect=1.3)
    w = np.linspace(0.01, 1.0, 200)
    grid.ax.plot(w, 1 / (w + (1 - w) / 32), color="black", lw=1)
    grid.ax.text(0.45, 3.0, "formula: 1 / (w + (1 - w) / 32)")
    # The paper's numbers count against fp16 (its runs all-reduce fp16): its curve and points, dashed.
    grid.ax.plot(w, 1 / (w + (1 - w) / 16), color="grey", lw=1, ls="--", label="paper: 1 / (w + (1 - w) / 16), fp16")
    for p in paper_numbers("onebit_adam")["volume"]["points"]:
        grid.ax.scatter([max(p["warmup_fraction"], 0.01)], [p["volume_ratio"]], marker="x", color="black", s=60)
        grid.ax.annotate(f"paper: {p['what']}", (max(p["warmup_fraction"], 0.01), p["volume_ratio"]),
                         xytext=(6, -10), textcoords="offset points", fontsize=7)
    grid.ax.set(xlabel="warm-up fraction w (freeze_step / steps)", ylabel="volume of Adam / 1-bit Adam",
                yscale="log", title="1-bit Adam: overall volume vs warm-up")
    return grid
