"""Predicted against claimed: the performance model at each paper's stated setup (simulators/cells.yaml).

For every cell, the logged runs of its experiment (the baseline's and the method's label) are priced on the
cell's cluster (its file's facts, one set per cluster) with the paper's layout (simulators/layout.py), and
the predicted speedup is the baseline's mean step time over the method's. Three views:

    uncalibrated   the cluster's facts as published (each with its label and source)
    calibrated     the one unknown that no published measurement pins for this cluster, the inter-node
                   link efficiency, fitted so that the predicted baseline throughput (Megatron's model
                   TFLOP/s per GPU) equals a stated baseline; then the method is predicted with it. Only
                   baselines are used, never a claimed speedup or a method's throughput. Two fits:
                   per cell (that cell's own baseline) and per cluster (once, on the cluster's `anchor`
                   cell in cells.yaml, e.g. GPT-18B's 14.5 TFLOP/s on the H800s, then every cell of the
                   cluster with that one value). The fitted efficiencies are reported: values that differ
                   from cell to cell, or leave (0, 1], say what the model's structure misses.
    sensitivity    each uncertain input at its low and high published value (cells.yaml), one at a time,
                   uncalibrated; the prediction's range over them is the band the claim is read against:
                   "consistent within the model's error" when the claimed speedup lies inside it.
    exploratory    a cluster's numbers read another way from a source found after seeing the predictions
                   (cells.yaml `exploratory`), all of the cluster's readings at once: reported in columns
                   of their own (*_exploratory), never in the band or the calibration.

    python -m thinwire.simulators.predict results/runs --out results/studies/model-predicted.csv \\
        --sensitivity results/studies/model-sensitivity.csv
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.optimize import brentq
from thinwire.algorithms.comm import ThinwireError
from thinwire.simulators.layout import Layout
from thinwire.simulators.perfmodel import Cluster, Options, StepModel, load_cluster

HERE = Path(__file__).parent
CELLS = HERE / "cells.yaml"
CLUSTERS = HERE / "clusters"


def with_fact(cluster: Cluster, key: str, value: float) -> Cluster:
    """The cluster with one number (a dotted key as Cluster.facts names it) replaced."""
    parts = key.split(".")
    if parts[0] == "tiers":
        tier = getattr(cluster, parts[1])
        return replace(cluster, **{parts[1]: replace(tier, **{parts[2]: value})})
    if parts[0] == "codec_values_per_s":
        return replace(cluster, codec_values_per_s={**cluster.codec_values_per_s, parts[1]: value})
    return replace(cluster, **{parts[0]: value})


def runs_by_label(root: Path, experiment: str) -> dict[str, Path]:
    """label -> run directory of one experiment's runs under `root` (the first seed found)."""
    found: dict[str, Path] = {}
    for meta_path in sorted(Path(root).glob("*/meta.json")):
        meta = json.loads(meta_path.read_text())
        if meta.get("experiment") == experiment:
            found.setdefault(meta.get("label", meta["method"]), meta_path.parent)
    return found


class Priced:
    """One run's log, read once, priced on any variant of a cluster with a layout."""

    def __init__(self, run: Path) -> None:
        self.meta = json.loads((run / "meta.json").read_text())
        self.commlog = pd.read_csv(run / "commlog.csv")
        self.steps = pd.read_csv(run / "trajectory.csv")["step"].to_numpy()

    def step_seconds(self, cluster: Cluster, layout: Layout) -> float:
        model = StepModel(self.commlog, self.steps, self.meta, cluster, Options(layout=layout))
        return model.mean_wall(cluster.inter.bandwidth_gbps)


def tflops(layout: Layout, cluster: Cluster, seconds: float) -> float:
    """Megatron's logged throughput: model FLOPs per step / GPUs / step seconds, in TFLOP/s."""
    world = cluster.world_size
    return layout.model_flops(world) / world / seconds / 1e12


def calibrate(base: Priced, cluster: Cluster, layout: Layout, stated_tflops: float) -> float:
    """Inter-node efficiency at which the baseline's predicted TFLOP/s equals the stated one. Not bounded
    by 1: a fit above 1 says the stated baseline moved its bytes faster than the stated link allows; NaN
    when nothing between 1e-4 and 100 reaches it."""
    def gap(log_eff: float) -> float:
        c = with_fact(cluster, "tiers.inter.efficiency", float(np.exp(log_eff)))
        return np.log(tflops(layout, c, base.step_seconds(c, layout)) / stated_tflops)

    low, high = np.log(1e-4), np.log(100.0)
    if gap(high) < 0 or gap(low) > 0:
        return float("nan")
    return float(np.exp(brentq(gap, low, high, xtol=1e-9)))


def cell_layout(spec: dict, cell: dict) -> Layout:
    """The cell's layout: its named layout, its model's shape, its tensor and pipeline sizes."""
    base = spec["layouts"][cell.get("layout", spec["defaults"]["layout"])]
    return Layout.from_dict({**base, **spec["models"][cell["model"]], "tp": cell["tp"], "pp": cell["pp"]})


def vary(cluster: Cluster, layout: Layout, key: str, value: float) -> tuple[Cluster, Layout]:
    """One uncertain input changed: a cluster number (dotted key) or a layout field (layout.<field>)."""
    try:
        if key.startswith("layout."):
            field = key.split(".", 1)[1]
            return cluster, replace(layout, **{field: type(getattr(layout, field))(value)})
        return with_fact(cluster, key, value), layout
    except (AttributeError, TypeError, ValueError):
        raise ThinwireError(f"{CELLS.name}: {key!r} is neither a number of cluster {cluster.name} (a dotted key "
                            "as its file names it) nor a layout field (layout.<field>)") from None


def speedup(base: Priced, method: Priced, cluster: Cluster, layout: Layout) -> tuple[float, float, float]:
    """(baseline step / method step, baseline step s, method step s) on `cluster`."""
    b, m = base.step_seconds(cluster, layout), method.step_seconds(cluster, layout)
    return b / m, b, m


def exploratory(spec: dict, name: str, cluster: Cluster, layout: Layout) -> tuple[Cluster, Layout, str] | None:
    """Cluster `name` and the cell's layout under all of the cluster's exploratory readings (cells.yaml), and a
    line naming them; None if it has none."""
    readings = (spec.get("exploratory") or {}).get(name) or {}
    if not readings:
        return None
    for key, r in readings.items():
        cluster, layout = vary(cluster, layout, key, float(r["value"]))
    return cluster, layout, "; ".join(f"{key} = {float(r['value']):g}" for key, r in readings.items())


def predict_cell(spec: dict, cell: dict, runs: dict[str, Path], clusters: Path,
                 anchored: dict[str, float]) -> tuple[dict, list[dict]]:
    """One cell's row and its sensitivity rows; records the cluster's fit in `anchored` for an anchor cell."""
    cluster = load_cluster(clusters / f"{cell['cluster']}.yaml")
    layout = cell_layout(spec, cell)
    labels = spec["labels"][cell.get("labels", spec["defaults"]["labels"])]
    base, method = Priced(runs[labels["baseline"]]), Priced(runs[labels["method"]])
    s, b, m = speedup(base, method, cluster, layout)
    eff = calibrate(base, cluster, layout, cell["baseline_tflops"]) if "baseline_tflops" in cell else float("nan")
    if cell.get("anchor"):
        anchored[cell["cluster"]] = eff
    eff_cluster = anchored.get(cell["cluster"], float("nan"))
    s_cal, s_cluster = (speedup(base, method, with_fact(cluster, "tiers.inter.efficiency", e), layout)[0]
                        if np.isfinite(e) else float("nan") for e in (eff, eff_cluster))
    sens = []
    for key, r in spec["sensitivity"][cell["cluster"]].items():
        for end in ("low", "high"):
            v = speedup(base, method, *vary(cluster, layout, key, float(r[end])))[0]
            sens.append({"claim": cell["claim"], "cluster": cell["cluster"], "input": key, "end": end,
                         "value": float(r[end]), "speedup": v, "claimed": cell["claimed"], "source": r["source"]})
    ends = [x["speedup"] for x in sens] + [s]
    world = cluster.world_size
    explored = exploratory(spec, cell["cluster"], cluster, layout)
    s_x, b_x, m_x = speedup(base, method, *explored[:2]) if explored else (np.nan,) * 3
    row = {
        "claim": cell["claim"], "stated": bool(cell["stated"]), "cluster": cell["cluster"],
        "model": cell["model"], "tp": layout.tp, "pp": layout.pp, "dp": layout.data_parallel(world),
        "params": layout.params, "sequences_per_step": layout.sequences(world), "bubble": layout.bubble(world),
        "claimed": cell["claimed"], "predicted": s, "error": s / cell["claimed"] - 1,
        "band_low": min(ends), "band_high": max(ends), "consistent": bool(min(ends) <= cell["claimed"] <= max(ends)),
        "baseline_tflops_stated": cell.get("baseline_tflops", np.nan),
        "baseline_tflops_predicted": tflops(layout, cluster, b),
        "method_tflops_stated": cell.get("method_tflops", np.nan), "method_tflops_predicted": tflops(layout, cluster, m),
        "public_inter_efficiency": cluster.inter.efficiency,
        "calibrated_inter_efficiency": eff, "predicted_calibrated": s_cal,
        "error_calibrated": s_cal / cell["claimed"] - 1,
        "cluster_inter_efficiency": eff_cluster, "predicted_cluster_calibrated": s_cluster,
        "error_cluster_calibrated": s_cluster / cell["claimed"] - 1,
        "exploratory_reading": explored[2] if explored else "", "predicted_exploratory": s_x,
        "error_exploratory": s_x / cell["claimed"] - 1,
        "baseline_tflops_exploratory": tflops(explored[1], explored[0], b_x) if explored else np.nan,
        "method_tflops_exploratory": tflops(explored[1], explored[0], m_x) if explored else np.nan,
        "baseline_step_s": b, "method_step_s": m,
        "compute_s": layout.compute_seconds(world, cluster.sustained_tflops),
        "tensor_parallel_s": layout.tensor_parallel_seconds(cluster),
        "pipeline_parallel_s": layout.pipeline_seconds(cluster),
    }
    return row, sens


def predictions(runs_root: Path, cells_path: Path = CELLS, clusters: Path = CLUSTERS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per cell: uncalibrated, calibrated, band, error; one row per cell x uncertain input x end).
    A stated cell without its runs under `runs_root` is an error; a held-out cell without them is left out
    (a runs sheet may not run every layout's experiment) and named on stdout."""
    spec = yaml.safe_load(Path(cells_path).read_text())
    rows, sens, anchored = [], [], {}
    # Anchor cells first, so every cell of a cluster can use its cluster's one fitted value.
    for cell in sorted(spec["cells"], key=lambda c: not c.get("anchor", False)):
        runs = runs_by_label(runs_root, cell["experiment"])
        labels = spec["labels"][cell.get("labels", spec["defaults"]["labels"])]
        missing = [lab for lab in labels.values() if lab not in runs]
        if missing and cell["stated"]:
            raise ThinwireError(f"{cell['claim']}: no run of experiment {cell['experiment']} labelled "
                                f"{', '.join(missing)} under {runs_root}")
        if missing:
            print(f"{cell['claim']}: left out, no run of experiment {cell['experiment']} labelled {', '.join(missing)}")
            continue
        row, rs = predict_cell(spec, cell, runs, Path(clusters), anchored)
        rows.append(row)
        sens += rs
    if not rows:
        raise ThinwireError(f"no cell of {cells_path} has its runs under {runs_root}")
    order = {c["claim"]: i for i, c in enumerate(spec["cells"])}
    table = pd.DataFrame(rows).sort_values("claim", key=lambda c: c.map(order), ignore_index=True)
    return table, pd.DataFrame(sens)


def summary(table: pd.DataFrame) -> str:
    """Median and max |error| over the stated cells and the held-out ones, uncalibrated and calibrated."""
    lines = []
    for stated, part in table.groupby("stated"):
        for col in ("error", "error_calibrated", "error_cluster_calibrated", "error_exploratory"):
            e = part[col].abs().dropna()
            if e.empty:
                continue
            lines.append(f"{'stated' if stated else 'held-out'} cells, {col}: median |error| "
                         f"{e.median():.1%}, max {e.max():.1%} over {len(e)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, help="folder of run directories (results/runs)")
    p.add_argument("--cells", type=Path, default=CELLS)
    p.add_argument("--out", type=Path, required=True, help="CSV: one row per cell")
    p.add_argument("--sensitivity", type=Path, required=True, help="CSV: one row per cell, input and end")
    args = p.parse_args(argv)
    try:
        table, sens = predictions(args.runs, args.cells)
    except ThinwireError as e:
        raise SystemExit(f"thinwire: error: {e}") from None
    for path, df in ((args.out, table), (args.sensitivity, sens)):
        path.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(path, index=False)
    print(summary(table))


if __name__ == "__main__":
    main()
