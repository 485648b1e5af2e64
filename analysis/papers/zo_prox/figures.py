"""The zeroth-order proximal methods' figures: rates against steps and queries, and queries to
accuracy at an equal budget."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from thinwire.analysis.figures import BOOT_SEED, figure, paper_numbers


def _zo_rate_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Claims ZO-1/ZO-2's runs (study zo_rate) over horizons, against steps and against queries, each
    label named with its log-log slopes of avg_gm_sq against both (mean over seeds)."""
    df = studies.get("zo_rate", pd.DataFrame())
    if df.empty:
        return df
    df = df[df.groupby("label")["steps"].transform("nunique") > 1]
    axes, rows = ("steps", "queries"), []
    for label, g in df.groupby("label"):
        slopes = [np.mean([np.polyfit(np.log(s[a]), np.log(s["avg_gm_sq"]), 1)[0] for _, s in g.groupby("seed")])
                  for a in axes]
        name = f"{label} (slope {slopes[0]:.2f} steps, {slopes[1]:.2f} queries)"
        rows.extend(g.assign(axis=a, x=g[a], method=name) for a in axes)
    return pd.concat(rows, ignore_index=True)


def _rate_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per label: the log-log slope of avg_gm_sq against steps and against queries (mean over seeds), and the
    rate exponent the paper states for its method (none for the ablations)."""
    exponent = paper_numbers("zo_prox")["rates"]["exponent"]
    out = []
    for label, g in rows[rows["axis"] == "steps"].groupby("label"):
        slope = {a: np.mean([np.polyfit(np.log(s[a]), np.log(s["avg_gm_sq"]), 1)[0] for _, s in g.groupby("seed")])
                 for a in ("steps", "queries")}
        out.append({"label": label, "seeds": g["seed"].nunique(), "slope_vs_steps": slope["steps"],
                    "slope_vs_queries": slope["queries"], "paper_exponent": exponent.get(label, np.nan)})
    return pd.DataFrame(out)


@figure("zo_rate", _zo_rate_rows, table=_rate_table)
def _zo_rate(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.relplot(data=rows, x="x", y="avg_gm_sq", hue="method", col="axis", kind="line", marker="o",
                       seed=BOOT_SEED, facet_kws={"sharex": False})
    grid.set(xscale="log", yscale="log")
    # The paper's rates as guides through each method's first point (dotted): T^-1/2 and T^-1.
    exponent = paper_numbers("zo_prox")["rates"]["exponent"]
    steps = rows[rows["axis"] == "steps"]
    ax = grid.axes_dict.get("steps")
    for label, b in exponent.items():
        first = steps[steps["label"] == label].groupby("x")["avg_gm_sq"].mean()
        if ax is not None and len(first) > 1:
            ax.plot(first.index, first.iloc[0] * (first.index / first.index[0]) ** b, color="grey", ls=":", lw=1)
    grid.set_axis_labels("", "mean_t |G(x_t)|^2 (exact gradient mapping)")
    grid.set_titles("against {col_name}")
    grid.figure.suptitle("zeroth-order proximal methods on sigmoid + l1 (log-log, fitted slopes; dotted: the "
                         "paper's rates T^-1/2 for ProxSGD, T^-1 for ProxSVRG / ProxSAGA)", y=1.02)
    return grid


def _zo_budget_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Claim ZO-3: function queries until |G|^2 <= EPS at an equal budget (runs budget_*; inf: never)."""
    df = studies.get("zo_rate", pd.DataFrame())
    return df[df["label"].str.startswith("budget_")] if not df.empty else df


@figure("zo_queries", _zo_budget_rows)
def _zo_queries(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.catplot(data=rows.replace(np.inf, np.nan), x="label", y="queries_to_eps", kind="bar",
                       errorbar=("ci", 95), seed=BOOT_SEED, aspect=1.6)
    grid.set_axis_labels("", "function queries to |G|^2 <= 1e-4")
    grid.figure.suptitle("queries to accuracy at an equal budget of ~2e6 queries (sigmoid + l1)", y=1.02)
    return grid
