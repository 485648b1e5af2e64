"""SDP4Bit's figures: its Table 1 analogue (final held-out loss per variant) and the predicted
throughput of its model setups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from thinwire.analysis.figures import figure, loss_rows, model_rows

SDP4BIT_LABELS = ("baseline", "qw", "qwd", "tlq", "tlq_hs", "sdp4bit")


def _sdp4bit_loss_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """SDP4Bit's Table 1 analogue: the last finite held-out loss of every run of experiment sdp4bit,
    one row per run (label, seed)."""
    rows = loss_rows(table)
    rows = rows[rows["experiment"] == "sdp4bit"]
    return rows.sort_values("step", kind="stable").groupby("run", sort=False).tail(1).sort_index()


@figure("sdp4bit_loss_table", _sdp4bit_loss_rows)
def _sdp4bit_loss_table(rows: pd.DataFrame) -> sns.FacetGrid:
    # Table 1's column order; labels it does not name follow.
    order = [x for x in SDP4BIT_LABELS if x in set(rows["label"])]
    order += sorted(set(rows["label"]) - set(order))
    # seaborn divides the dodge by the number of modes less one: no dodge for a single mode.
    dodge = 0.3 if rows["mode"].nunique() > 1 else False
    grid = sns.catplot(data=rows, x="label", y="loss", order=order, hue="mode", kind="point", dodge=dodge,
                       linestyle="none", errorbar=("se", 2), capsize=0.2, height=3.6, aspect=1.6)
    grid.set_axis_labels("variant (qw / qwd: weights; tlq / tlq_hs: gradients; sdp4bit: qwd + tlq_hs)",
                         "final held-out loss")
    grid.figure.suptitle("SDP4Bit variants, final held-out loss (mean over seeds, +-2 standard errors)", y=1.02)
    return grid


def _sdp4bit_throughput_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The compressed labels of SDP4Bit's model setups (experiments sdp4bit_*; the cluster column names
    the model size and cluster): predicted speedup over the setup's baseline, mean over seeds, per
    modelled inter-node bandwidth."""
    model = model_rows(table)
    rows = model[model["experiment"].str.startswith("sdp4bit") & (model["label"] != "baseline")]
    rows = rows[np.isfinite(rows["speedup"])]
    rows = rows.sort_values("bandwidth_gbps", kind="stable")  # legend from the slowest link up
    return rows.assign(bandwidth=rows["bandwidth_gbps"].map("{:g} Gbit/s".format))


@figure("sdp4bit_model_throughput", _sdp4bit_throughput_rows)
def _sdp4bit_model_throughput(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.catplot(data=rows, x="cluster", y="speedup", hue="bandwidth", col="label", kind="bar",
                       errorbar=None, height=3.6, aspect=1.4)
    grid.refline(y=1.0, color="grey", linestyle="--")
    grid.set_axis_labels("model setup (model size, cluster)", "predicted throughput / the baseline's (x)")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("SDP4Bit: predicted end-to-end speedup over uncompressed sharded DP", y=1.02)
    return grid
