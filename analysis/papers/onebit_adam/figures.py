"""1-bit Adam's figure: the measured volume reduction against the warm-up fraction."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import seaborn as sns
from thinwire.analysis.figures import figure


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


@figure("onebit_volume_vs_warmup", _onebit_volume_rows)
def _onebit_volume_vs_warmup(rows: pd.DataFrame) -> sns.FacetGrid:
    """Measured overall volume reduction of 1-bit Adam against the warm-up fraction, with the blog's
    1 / (w + (1 - w) / 32) for fp32 (the compression stage at exactly 1 bit per value)."""
    grid = sns.relplot(data=rows, x="warmup_fraction", y="volume_ratio", hue="experiment", s=80, height=4, aspect=1.3)
    w = np.linspace(0.01, 1.0, 200)
    grid.ax.plot(w, 1 / (w + (1 - w) / 32), color="black", lw=1)
    grid.ax.text(0.45, 3.0, "formula: 1 / (w + (1 - w) / 32)")
    grid.ax.set(xlabel="warm-up fraction w (freeze_step / steps)", ylabel="volume of Adam / 1-bit Adam",
                yscale="log", title="1-bit Adam: overall volume vs warm-up")
    return grid
