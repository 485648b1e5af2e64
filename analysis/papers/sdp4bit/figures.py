"""SDP4Bit's figures: its Table 1 regenerated (final held-out loss per variant, as the gap to the baseline
beside the paper's gaps at 125M, 350M and 1.3B) and its Table 2 cells predicted by the performance model
(labelled predicted: nothing here measures an H800 or A100 cluster) beside the paper's speedups; each
also written as a table (sdp4bit_loss_table.csv, sdp4bit_model_throughput.csv)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from thinwire.analysis.figures import figure, loss_rows, model_rows, paper_numbers

SDP4BIT_LABELS = ("baseline", "qw", "qwd", "tlq", "tlq_hs", "sdp4bit")


def _sdp4bit_loss_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """SDP4Bit's Table 1 analogue: the last finite held-out loss of every run of experiment sdp4bit,
    one row per run (label, seed)."""
    rows = loss_rows(table)
    rows = rows[rows["experiment"] == "sdp4bit"]
    return rows.sort_values("step", kind="stable").groupby("run", sort=False).tail(1).sort_index()


def _paper_gaps() -> pd.DataFrame:
    """Table 1 as relative gaps to its baseline, one row per model size and variant."""
    t1 = paper_numbers("sdp4bit")["table1"]
    rows = [{"size": size, "label": v, "paper_loss": x, "paper_gap_pct": 100 * (x / losses[0] - 1)}
            for size, losses in t1["loss"].items() for v, x in zip(t1["variants"], losses)]
    return pd.DataFrame(rows)


def _loss_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per variant: the measured final held-out loss (mean over seeds, standard error), its gap to the
    baseline's (mean of the per-seed ratios - 1, in %), and Table 1's loss and gap at each model size."""
    base = rows[rows["label"] == "baseline"].groupby(["mode", "seed"])["loss"].first()
    out = []
    for (mode, label), g in rows.groupby(["mode", "label"], sort=False):
        per_seed = g.groupby("seed")["loss"].first()
        b = base.xs(mode, level="mode").reindex(per_seed.index) if mode in base.index.get_level_values(0) else None
        gap = 100 * (per_seed / b - 1) if b is not None else pd.Series(np.nan, index=per_seed.index)
        out.append({"variant": label, "mode": mode, "seeds": len(per_seed), "loss": per_seed.mean(),
                    "loss_se": per_seed.std(ddof=1) / np.sqrt(len(per_seed)) if len(per_seed) > 1 else np.nan,
                    "gap_pct": gap.mean(),
                    "gap_se_pct": gap.std(ddof=1) / np.sqrt(gap.count()) if gap.count() > 1 else np.nan})
    table = pd.DataFrame(out)
    paper = _paper_gaps().pivot(index="label", columns="size")
    for size in paper.columns.get_level_values(1).unique():
        table[f"paper_loss_{size}"] = table["variant"].map(paper[("paper_loss", size)])
        table[f"paper_gap_pct_{size}"] = table["variant"].map(paper[("paper_gap_pct", size)])
    order = {v: i for i, v in enumerate(SDP4BIT_LABELS)}
    return table.sort_values(["mode", "variant"], key=lambda c: c.map(order).fillna(99) if c.name == "variant" else c)


@figure("sdp4bit_loss_table", _sdp4bit_loss_rows, table=_loss_table)
def _sdp4bit_loss_table(rows: pd.DataFrame) -> plt.Figure:
    """Left: the measured final held-out loss per variant (mean over seeds, +-2 standard errors). Right: each
    variant's gap to the baseline in %, measured (+-2 se) beside Table 1's at 125M, 350M and 1.3B."""
    table = _loss_table(rows)
    paper = _paper_gaps()
    order = list(SDP4BIT_LABELS) + sorted(set(rows["label"]) - set(SDP4BIT_LABELS))  # Table 1's, even unmeasured
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.arange(len(order))
    modes = list(table["mode"].unique())
    for i, mode in enumerate(modes):
        t = table[table["mode"] == mode].set_index("variant").reindex(order)
        dx = (i - (len(modes) - 1) / 2) * 0.15
        left.errorbar(x + dx, t["loss"], yerr=2 * t["loss_se"], fmt="o", capsize=3, label=f"measured ({mode})")
        right.errorbar(x + dx, t["gap_pct"], yerr=2 * t["gap_se_pct"], fmt="o", capsize=3, ms=7,
                       label=f"measured, {rows['workload'].iloc[0]} ({mode})")
    for j, (size, g) in enumerate(paper.groupby("size", sort=False)):
        g = g.set_index("label").reindex(order)
        right.scatter(x + 0.25 + 0.08 * j, g["paper_gap_pct"], marker="x", s=40, label=f"paper, GPT {size}")
    right.axhline(0, color="grey", lw=1)
    for ax in (left, right):
        ax.set_xticks(x, order)
    left.set(xlabel="variant", ylabel="final held-out loss", title="measured (mean over seeds, +-2 se)")
    right.set(xlabel="variant", ylabel="gap to the baseline's loss (%)",
              title="gap to the baseline: measured vs the paper's Table 1")
    right.legend(fontsize=8)
    fig.suptitle("SDP4Bit Table 1 regenerated (qw / qwd: weights; tlq / tlq_hs: gradients; sdp4bit: qwd + tlq_hs)")
    fig.tight_layout()
    return fig


def _sdp4bit_throughput_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The compressed labels of SDP4Bit's model setups (experiments sdp4bit_*; the cluster column names
    the model size and cluster): predicted speedup over the setup's baseline, mean over seeds, per
    modelled inter-node bandwidth."""
    model = model_rows(table)
    rows = model[model["experiment"].str.startswith("sdp4bit") & (model["label"] != "baseline")]
    rows = rows[np.isfinite(rows["speedup"])]
    rows = rows.sort_values("bandwidth_gbps", kind="stable")  # legend from the slowest link up
    return rows.assign(bandwidth=rows["bandwidth_gbps"].map("{:g} Gbit/s".format))


def _throughput_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Table 2's cells the runs sheet prices: per setup, label and bandwidth the predicted speedup (mean
    over seeds), beside the paper's measured speedup and TFLOP/s of that setup."""
    cells = pd.DataFrame(paper_numbers("sdp4bit")["table2"]["cells"]).set_index("setup")
    t = rows.groupby(["cluster", "label", "bandwidth_gbps"], as_index=False)["speedup"].mean()
    t = t.rename(columns={"cluster": "setup", "speedup": "predicted_speedup"})
    t["kind"] = "predicted by the performance model"
    for col in ("model", "cluster", "baseline_tflops", "sdp4bit_tflops", "speedup"):
        t[f"paper_{col}"] = t["setup"].map(cells[col])
    return t


@figure("sdp4bit_model_throughput", _sdp4bit_throughput_rows, table=_throughput_table)
def _sdp4bit_model_throughput(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.catplot(data=rows, x="cluster", y="speedup", hue="bandwidth", col="label", kind="bar",
                       errorbar=None, height=3.6, aspect=1.4)
    grid.refline(y=1.0, color="grey", linestyle="--")
    cells = {c["setup"]: c for c in paper_numbers("sdp4bit")["table2"]["cells"]}
    for ax in grid.axes.flat:
        for i, tick in enumerate(ax.get_xticklabels()):
            cell = cells.get(tick.get_text())
            if cell:
                ax.plot([i - 0.4, i + 0.4], [cell["speedup"]] * 2, color="black", lw=2)
                ax.annotate(f"paper {cell['speedup']:g}x", (i, cell["speedup"]), xytext=(0, 3),
                            textcoords="offset points", ha="center", fontsize=8)
    grid.set_axis_labels("model setup (model size, cluster)", "predicted throughput / the baseline's (x)")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("SDP4Bit Table 2: end-to-end speedup over uncompressed sharded DP, PREDICTED by the "
                         "performance model (bars) against the paper's measured speedup (black line)", y=1.02)
    return grid
