"""LARS / CLARS's figure: the learning rate each weight tensor got at every step."""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from thinwire.analysis.figures import BOOT_SEED, facets, figure


def _layer_lr_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The lr each weight tensor got at every step (the trace_lr:<tensor> columns LARS and CLARS
    record), one row per run, step and tensor; a panel per experiment and tensor."""
    traced = [c for c in table.columns if c.startswith("trace_lr:")]
    if not traced:
        return pd.DataFrame()
    rows = table[table["mode"].isin(["sim", "real"])].dropna(subset=traced, how="all")
    long = rows.melt(id_vars=["run", "experiment", "label", "mode", "step"], value_vars=traced,
                     var_name="tensor", value_name="lr").dropna(subset=["lr"])
    return long.assign(panel=long["experiment"] + ": " + long["tensor"].str.removeprefix("trace_lr:"))


def _layer_lr_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per experiment, tensor and label: the lr at the first and last step and its mean (over steps and
    seeds), and each label's mean lr over LARS' on the same tensor (CLARS' rule implies <= 1 at beta = 0)."""
    t = rows.sort_values("step").groupby(["experiment", "tensor", "label"], as_index=False).agg(
        first_lr=("lr", "first"), last_lr=("lr", "last"), mean_lr=("lr", "mean"), seeds=("run", "nunique"))
    t["tensor"] = t["tensor"].str.removeprefix("trace_lr:")
    lars = t[t["label"].str.startswith("lars")].groupby(["experiment", "tensor"])["mean_lr"].first()
    t["over_lars"] = t["mean_lr"].to_numpy() / lars.reindex(pd.MultiIndex.from_frame(t[["experiment", "tensor"]])).to_numpy()
    return t


@figure("lars_layer_lr", _layer_lr_rows, table=_layer_lr_table)
def _lars_layer_lr(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.relplot(data=rows, x="step", y="lr", hue="label", style="mode", kind="line", seed=BOOT_SEED,
                       facet_kws={"sharex": False, "sharey": False}, **facets(rows, "panel"))
    if (rows["lr"] > 0).all():
        grid.set(yscale="log")
    grid.set_axis_labels("step", "lr of the tensor (global lr x trust ratio)")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("LARS / CLARS: per-layer learning rate (mean over seeds, 95% CI)", y=1.02)
    return grid
