"""DSM-LS's figure: the gradient norm against the horizon (claim S3's study)."""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from thinwire.analysis.figures import BOOT_SEED, facets, figure


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
