"""DSM-LS's figures: the gradient norm against the horizon (claim S3's study), and its loss curves against
local AdamW and SlowMo (dsm_ls_loss_curves, claims S1 and S2)."""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from thinwire.analysis.figures import BOOT_SEED, facets, figure, loss_rows, paper_numbers


def _sign_rate_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Claim S3's study in long form: each gradient-norm statistic of each run against its horizon."""
    df = studies.get("sign_rate", pd.DataFrame())
    if df.empty:
        return df
    return df.melt(id_vars=["sign", "seed", "rounds"], value_vars=["avg_grad_sq", "min_grad_sq", "avg_grad_l1"],
                   var_name="statistic")


@figure("sign_rate", _sign_rate_rows)
def _sign_rate(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.relplot(data=rows, x="rounds", y="value", hue="sign", kind="line", marker="o", seed=BOOT_SEED,
                       facet_kws={"sharey": False}, **facets(rows, "statistic"))
    grid.set(xscale="log", yscale="log")
    # A T^(-1/2) guide through each panel's first randomized-sign point.
    for statistic, ax in grid.axes_dict.items():
        first = rows[(rows["statistic"] == statistic) & (rows["sign"] == "randomized")].groupby("rounds")["value"].mean()
        ax.plot(first.index, first.iloc[0] * (first.index / first.index[0]) ** -0.5, color="grey", linestyle="--")
    grid.set_axis_labels("global rounds T (local lr 0.5 / sqrt(T))", "gradient norm statistic at the global model")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("DSM-LS on logreg-nc: gradient norm against the horizon (dashed: T^-1/2)", y=1.02)
    return grid


def _loss_curve_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Experiment dsm_ls: held-out loss per step of every arm, with its method family and its tau (the
    label's _tau<k> suffix), so DSM-LS sits beside local AdamW and SlowMo at the same tau."""
    rows = loss_rows(table)
    rows = rows[rows["experiment"] == "dsm_ls"]
    if rows.empty:
        return rows
    tau = rows["label"].str.extract(r"_tau(\d+)$")[0]
    return rows.assign(tau="tau " + tau.fillna("?"), family=rows["label"].str.replace(r"_tau\d+$", "", regex=True))


def _loss_curve_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per arm: final held-out loss (mean over seeds, standard error) and the paper's number (none readable)."""
    last = rows.sort_values("step").groupby("run").tail(1)
    t = last.groupby(["tau", "family", "label"], as_index=False).agg(
        seeds=("seed", "nunique"), final_loss=("loss", "mean"), final_loss_sd=("loss", "std"), steps=("step", "max"))
    t["paper"] = paper_numbers("dsm_ls")["loss_curves"]["source"]
    return t


@figure("dsm_ls_loss_curves", _loss_curve_rows, table=_loss_curve_table)
def _dsm_ls_loss_curves(rows: pd.DataFrame) -> sns.FacetGrid:
    # +-2 standard errors (analytic): a bootstrap per step would cost seconds in every report build.
    grid = sns.relplot(data=rows, x="step", y="loss", hue="family", col="tau", kind="line", errorbar=("se", 2),
                       facet_kws={"sharey": True}, height=3.6, aspect=1.3)
    grid.set_axis_labels("step", "held-out loss (text-gpt)")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("DSM-LS against local AdamW and SlowMo at the same tau (mean over seeds, +-2 se); "
                         "the paper's own curves could not be read, so none are drawn", y=1.03)
    return grid
