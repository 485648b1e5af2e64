"""Deep Gradient Compression's figures: bits per parameter through the sparsity warm-up, and how often
each sparsified parameter is sent (claim D7); its Tables 3-4 compression ratios regenerated (dgc_ratio_table)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from thinwire.analysis.figures import facets, figure, paper_numbers


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


def _ratio_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The runs of the paper's models' shapes (the experiments paper_numbers.yaml names): per run its last
    step, the gradient bytes dense (32-bit) and as DGC sent them."""
    experiments = [r["experiment"] for r in paper_numbers("dgc")["ratios"]]
    rows = table[table["experiment"].isin(experiments) & (table["method"] == "dgc") & table["mode"].isin(["sim", "real"])]
    if rows.empty:
        return rows
    last = rows.sort_values("step").groupby("run").tail(1)
    mib = 2 ** 20
    return last.assign(dense_mb=last["n_params"] * 4 / mib, sent_mb=last["bytes_sent"] / mib,
                       ratio=last["n_params"] * 4 / last["bytes_sent"])


def _ratio_table(rows: pd.DataFrame) -> pd.DataFrame:
    """DGC's Tables 3 and 4 (gradient size and compression ratio) beside the measured ones (mean over runs)."""
    paper = pd.DataFrame(paper_numbers("dgc")["ratios"])
    ours = rows.groupby("experiment").agg(parameters=("n_params", "first"), runs=("run", "nunique"),
                                         dense_mb=("dense_mb", "mean"), sent_mb=("sent_mb", "mean"),
                                         ratio=("ratio", "mean"))
    out = paper.rename(columns={"dense_mb": "paper_dense_mb", "dgc_mb": "paper_dgc_mb", "ratio": "paper_ratio",
                                "source": "paper_source"}).join(ours, on="experiment")
    return out[["model", "experiment", "parameters", "runs", "dense_mb", "sent_mb", "ratio",
                "paper_dense_mb", "paper_dgc_mb", "paper_ratio", "paper_source"]]


@figure("dgc_ratio_table", _ratio_rows, table=_ratio_table)
def _dgc_ratio_table(rows: pd.DataFrame) -> plt.Figure:
    """DGC's compression ratio per model: measured on the model's real parameter tensors (bars) beside the
    paper's (hatched), each bar labelled with its ratio; the table below the bars gives the sizes."""
    t = _ratio_table(rows)
    fig, ax = plt.subplots(figsize=(9, 4.6))
    x = np.arange(len(t))
    ax.bar(x - 0.2, t["ratio"], width=0.4, label="measured (thinwire, 32-bit values + 16-bit run lengths)")
    ax.bar(x + 0.2, t["paper_ratio"], width=0.4, color="white", edgecolor="black", hatch="//", label="paper")
    for xi, (m, p) in enumerate(zip(t["ratio"], t["paper_ratio"])):
        if np.isfinite(m):
            ax.annotate(f"{m:.0f}x", (xi - 0.2, m), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=8)
        ax.annotate(f"{p:g}x", (xi + 0.2, p), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=8)
    labels = [f"{m}\n{d:.4g} -> {s:.3g} MB\n(paper {pd_:g} -> {ps:g})" if np.isfinite(d) else f"{m}\n(no run)"
              for m, d, s, pd_, ps in zip(t["model"], t["dense_mb"], t["sent_mb"], t["paper_dense_mb"], t["paper_dgc_mb"])]
    ax.set_xticks(x, labels, fontsize=8)
    ax.set(ylabel="gradient compression ratio (dense fp32 / sent)",
           title="DGC Tables 3-4 regenerated: compression ratio at 99.9% sparsity")
    ax.set_ylim(0, 1.3 * np.nanmax([t["ratio"].max(), t["paper_ratio"].max()]))
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig
