"""The performance model's validation figures: predicted against measured step time on shaped links, and
against published GPU all-reduce bus bandwidths."""

from __future__ import annotations

import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns
from thinwire.analysis.figures import figure


def _validation_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The shaped-link cases of `thinwire validate` (results/studies/validation.csv)."""
    return studies.get("validation", pd.DataFrame())


@figure("model_validation", _validation_rows)
def _model_validation(rows: pd.DataFrame) -> sns.FacetGrid:
    """Predicted against measured step time on shaped links, one point per method and link; the
    diagonal is a perfect model, the band +-25% the acceptance bound."""
    grid = sns.relplot(data=rows, x="measured_s", y="predicted_s", hue="label", style="bandwidth", s=70,
                       height=4.5, aspect=1.2)
    ax = grid.ax
    lo = min(rows["measured_s"].min(), rows["predicted_s"].min()) / 1.5
    hi = max(rows["measured_s"].max(), rows["predicted_s"].max()) * 1.5
    line = np.geomspace(lo, hi, 50)
    ax.plot(line, line, color="black", lw=1)
    ax.fill_between(line, line * 0.75, line * 1.25, color="grey", alpha=0.15, lw=0)
    ax.set(xscale="log", yscale="log", xlabel="measured step time (s)", ylabel="predicted step time (s)",
           title="performance model vs shaped-link runs (2 gloo ranks)")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_formatter(mticker.NullFormatter())
    return grid


@figure("model_collectives", lambda table, studies: studies.get("model-collectives", pd.DataFrame()))
def _model_collectives(rows: pd.DataFrame) -> sns.FacetGrid:
    """Predicted against published all-reduce bus bandwidth (nccl-tests), the diagonal a perfect model."""
    grid = sns.relplot(data=rows, x="measured_busbw_gbs", y="predicted_busbw_gbs", hue="name", s=70, height=4.5,
                       aspect=1.4)
    line = np.geomspace(rows[["measured_busbw_gbs", "predicted_busbw_gbs"]].min().min() / 1.5,
                        rows[["measured_busbw_gbs", "predicted_busbw_gbs"]].max().max() * 1.5, 50)
    grid.ax.plot(line, line, color="black", lw=1)
    grid.ax.set(xscale="log", yscale="log", xlabel="published busbw (GB/s)", ylabel="predicted busbw (GB/s)")
    return grid
