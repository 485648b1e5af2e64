"""Where a method pays off: the bandwidth at which it reaches a speedup, and its time to a target loss.

    bandwidth_at_speedup   the inter-node bandwidth below which a method's predicted step time beats
                           its dense baseline's by at least `speedup` (1: the break-even bandwidth).
                           log(speedup) - log(target) is evaluated on a log-spaced grid of
                           bandwidths (GRID_GBPS) and the highest crossing from above to below is
                           refined by Brent's method (scipy.optimize.brentq) on log bandwidth. inf: the
                           target still holds at the grid's top; 0: it holds nowhere on the grid.
    time_to_target         seconds until a run's objective (eval_loss, the full loss of the average
                           model) first reaches factor x its baseline's final objective, same seed:
                           the model's predicted step times summed over the steps the run took to
                           get there (np.nan if it never does).
The speedup is step time at equal steps; time to target also charges a method for needing more steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.optimize import brentq

GRID_GBPS = np.geomspace(1e-3, 1e5, 33)  # 4 points a decade from 1 Mbit/s to 100 Tbit/s
KEYS = ["experiment", "workload", "seed", "source_mode", "source_backend", "source_world_size"]


def bandwidth_at_speedup(run_wall: Callable[[float], float], baseline_wall: Callable[[float], float],
                         speedup: float = 1.0) -> float:
    """Gbit/s below which baseline_wall(bw) / run_wall(bw) >= speedup (see the module docstring)."""
    def gap(log_bw: float) -> float:
        bw = math.exp(log_bw)
        # A step that costs nothing (no compute given, nothing sent) makes the ratio 0 or inf, not an error.
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.log(np.float64(baseline_wall(bw)) / run_wall(bw)) - math.log(speedup))

    logs = np.log(GRID_GBPS)
    gaps = np.array([gap(x) for x in logs])
    if gaps[-1] >= 0:
        return math.inf
    above = np.flatnonzero(gaps >= 0)
    if above.size == 0:
        return 0.0
    i = above[-1]
    return math.exp(brentq(gap, logs[i], logs[i + 1], xtol=1e-6))


def baseline_runs(runs: pd.DataFrame, baseline: str) -> pd.Series:
    """run -> the run it is compared with: the run whose method or label is `baseline`, with the same
    experiment, workload, seed and source (mode, backend, world size); where a sheet has several, the
    first. No baseline: NaN."""
    runs = runs.drop_duplicates("run")
    is_base = (runs["method"] == baseline) | (runs["label"] == baseline)
    base = runs[is_base].drop_duplicates(KEYS).set_index(KEYS)["run"]
    return pd.Series(base.reindex(pd.MultiIndex.from_frame(runs[KEYS])).to_numpy(), index=runs["run"].to_numpy())


def time_to_target(table: pd.DataFrame, base: pd.Series, factor: float) -> pd.DataFrame:
    """Per row of a model table (run, bandwidth_gbps, step, wall_s, eval_loss): the run's target loss
    and its predicted seconds to reach it at that bandwidth."""
    t = table[["run", "bandwidth_gbps", "step", "wall_s"]].assign(eval_loss=table.get("eval_loss", np.nan))
    t = t.sort_values(["run", "bandwidth_gbps", "step"])
    t["elapsed"] = t.groupby(["run", "bandwidth_gbps"])["wall_s"].cumsum()
    final = t.dropna(subset=["eval_loss"]).groupby("run")["eval_loss"].last()
    t["target_loss"] = factor * final.reindex(base.reindex(t["run"]).to_numpy()).to_numpy()
    reached = t[t["eval_loss"] <= t["target_loss"]].groupby(["run", "bandwidth_gbps"])["elapsed"].first()
    t["seconds_to_target"] = reached.reindex(pd.MultiIndex.from_frame(t[["run", "bandwidth_gbps"]])).to_numpy()
    return t[["target_loss", "seconds_to_target"]].reindex(table.index)


def summary(models: dict[str, Callable[[float], float]], table: pd.DataFrame, base: pd.Series,
            speedups: list[float]) -> pd.DataFrame:
    """Long table of a cluster's predictions per run: `bandwidth_at_speedup` (target: the speedup,
    value: Gbit/s) for every run with a baseline other than itself, and `seconds_to_target` (target:
    the loss, value: seconds) at each modelled bandwidth, and `codec_share` (value: mean encode/decode
    seconds over mean step seconds) at each bandwidth for every run the cluster charges a codec."""
    about = ["run", "method", "label", "experiment", "workload", "seed", "cluster"]
    info = table.drop_duplicates("run").set_index("run")[about[1:]]
    rows = []
    for run, ref in base.dropna().items():
        if run == ref:
            continue
        for s in speedups:
            rows.append({"run": run, **info.loc[run], "quantity": "bandwidth_at_speedup", "target": s,
                         "bandwidth_gbps": np.nan, "value": bandwidth_at_speedup(models[run], models[ref], s)})
    ttt = (table.groupby(["run", "bandwidth_gbps"], as_index=False)[["target_loss", "seconds_to_target"]].first()
           .dropna(subset=["target_loss"]))
    for r in ttt.itertuples(index=False):
        rows.append({"run": r.run, **info.loc[r.run], "quantity": "seconds_to_target", "target": r.target_loss,
                     "bandwidth_gbps": r.bandwidth_gbps, "value": r.seconds_to_target})
    if "codec_s" in table:
        share = table.groupby(["run", "bandwidth_gbps"], as_index=False)[["codec_s", "wall_s"]].mean()
        for r in share[share["codec_s"] > 0].itertuples(index=False):
            rows.append({"run": r.run, **info.loc[r.run], "quantity": "codec_share", "target": np.nan,
                         "bandwidth_gbps": r.bandwidth_gbps, "value": r.codec_s / r.wall_s})
    return pd.DataFrame(rows, columns=about + ["quantity", "target", "bandwidth_gbps", "value"])
