"""Deep Gradient Compression's figures: bits per parameter through the sparsity warm-up, and how often
each sparsified parameter is sent (claim D7)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from thinwire.analysis.figures import facets, figure


def _warmup_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """DGC runs whose bits per step change (a sparsity warm-up), step by step."""
    rows = table[table["mode"].isin(["sim", "real"]) & (table["method"] == "dgc")].dropna(subset=["stated_bits"])
    varying = rows.groupby("run")["stated_bits"].nunique()
    return rows[rows["run"].isin(varying[varying > 1].index)]


@figure("dgc_sparsity_warmup", _warmup_rows)
def _dgc_warmup(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.relplot(data=rows, x="step", y="stated_bits", hue="label", kind="line", drawstyle="steps-post",
                       facet_kws={"sharex": False, "sharey": False}, errorbar=None, **facets(rows, "experiment"))
    grid.set(yscale="log")
    grid.set_axis_labels("step", "bits per parameter sent")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("DGC: bits per parameter sent through its sparsity warm-up", y=1.02)
    return grid


def _staleness_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """DGC runs that tracked staleness (claim D7): per run, the share of sparsified parameters in each
    bin of steps between sends (diagnostics update_interval_share_<b>: [b, 2b)), and those never sent."""
    shares = [c for c in table.columns if c.startswith("diag_update_interval_share_")]
    if not shares:
        return pd.DataFrame()
    runs = table.dropna(subset=shares, how="all").groupby("run").first()
    rows = [{"run": run, "experiment": r["experiment"], "label": r["label"], "bin": int(c.rsplit("_", 1)[1]),
             "share": r[c]} for run, r in runs.iterrows() for c in shares if pd.notna(r[c])]
    never = [{"run": run, "experiment": r["experiment"], "label": r["label"], "bin": np.inf,
              "share": r["diag_never_updated_fraction"]} for run, r in runs.iterrows()]
    out = pd.DataFrame(rows + never)
    if out.empty:
        return out
    # Bins below the shortest interval any run has are empty: leave them out.
    out = out[out["bin"] >= out.loc[out["share"] > 0, "bin"].min()].sort_values("bin")
    return out.assign(interval=[f"[{b:.0f}, {2 * b:.0f})" if np.isfinite(b) else "never" for b in out["bin"]])


@figure("dgc_staleness_histogram", _staleness_rows)
def _dgc_staleness_histogram(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.catplot(data=rows, x="interval", y="share", hue="label", kind="bar", errorbar=None,
                       sharey=False, **facets(rows, "experiment"))
    grid.set_xticklabels(rotation=45, horizontalalignment="right")
    grid.set_axis_labels("steps between sends after warm-up (the paper: 600-1000)",
                         "share of sparsified parameters")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("DGC: how often each sparsified parameter is sent", y=1.02)
    return grid
