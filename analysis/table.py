"""The long-format results table: one row per (run, step), every mode, with its provenance.

Every figure and every verdict is computed from this table (results/table.csv). `val_loss` is a
run's final loss on its workload's validation split (on its last row); tuned arms are resolved here
(analysis/tuning.py): the chosen grid point's rows take the arm's label and hold the grid in `tuning`,
the other points' rows have mode "tuning".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from thinwire.algorithms.comm import ThinwireError
from thinwire.analysis.tuning import GRID_LABEL
from thinwire.analysis.tuning import select as select_tuned
from thinwire.workloads.registry import epochs_per_step

COLUMNS = ["run", "method", "params", "mode", "backend", "workload", "experiment", "label", "world_size", "seed", "dtype", "step",
           "epoch", "loss", "eval_loss", "metric", "val_loss", "bytes_sent", "bytes_recv", "stated_bits", "cum_bytes_sent", "link_bytes", "wall_s", "status",
           "n_params", "stated_bits_per_param", "ran_on", "cluster", "bandwidth_gbps", "speedup", "seconds_to_target", "env", "tuning"]


def read_run(run_dir: Path) -> pd.DataFrame:
    run_dir = Path(run_dir)
    try:
        meta = json.loads((run_dir / "meta.json").read_text())
        traj = pd.read_csv(run_dir / "trajectory.csv")
        timing = pd.read_csv(run_dir / "timing.csv")
        commlog = pd.read_csv(run_dir / "commlog.csv")
    except (OSError, ValueError) as e:
        raise ThinwireError(f"{run_dir} is not a complete run directory: {e}") from None
    t = traj.merge(timing, on="step", how="left")
    if (run_dir / "trace.csv").exists():  # a method's per-step scalars: one column trace_<name> each
        trace = pd.read_csv(run_dir / "trace.csv").pivot(index="step", columns="name", values="value")
        t = t.merge(trace.add_prefix("trace_"), left_on="step", right_index=True, how="left")
    t["cum_bytes_sent"] = t["bytes_sent"].cumsum()
    t["val_loss"] = np.nan  # the final model's, on the run's last row (None in meta: no split, or not finite)
    if len(t) and meta.get("val_loss") is not None:
        t.loc[t.index[-1], "val_loss"] = float(meta["val_loss"])
    t["link_bytes"] = t["step"].map(link_bytes(commlog, meta["world_size"])).fillna(0.0)
    for key in ("run", "method", "mode", "backend", "workload", "experiment", "label", "world_size", "seed", "dtype", "status",
                "n_params", "stated_bits_per_param"):
        t[key] = meta[key]
    t["params"] = json.dumps(meta["params"], sort_keys=True)
    # Epochs over the training data done after the row's step (NaN where the workload has no finite set).
    per_step = epochs_per_step(meta["workload"], meta["world_size"], meta.get("workload_params"))
    t["epoch"] = (t["step"] + 1) * per_step if per_step is not None else np.nan
    for name, value in meta.get("diagnostics", {}).items():
        t[f"diag_{name}"] = value
    t["env"] = json.dumps(meta["env"], sort_keys=True)
    # Where the numbers came from (the run's cluster name); `cluster` is the modelled cluster of model rows.
    t["ran_on"] = meta["env"].get("cluster", "unrecorded")
    t["cluster"], t["bandwidth_gbps"], t["speedup"], t["seconds_to_target"] = "", np.nan, np.nan, np.nan
    return t


def link_bytes(commlog: pd.DataFrame, world_size: int) -> pd.Series:
    """Bytes one rank puts on its busiest link per step when the run's own collectives use the
    performance model's ring algorithms (simulators/linkvolume.py: all_reduce 2(p-1)/p n, all_gather
    (p-1) n, all_to_all (p-1)/p n, ...): the volume papers compare, where `bytes_sent` is what a rank
    hands in. The log's method calls are read as the performance model replays them (a variable-size
    all-gather as an all-gather of its mean message)."""
    from thinwire.simulators.linkvolume import link_volume
    from thinwire.simulators.perfmodel import log_calls

    calls = log_calls(commlog, world_size, world_size, scale=1.0)
    if not len(calls.step):
        return pd.Series(dtype=float)
    volume = np.zeros(len(calls.step))
    for op, at in calls.rows.items():
        volume[at] = link_volume(op, calls.p[at], calls.n[at])
    return pd.Series(volume).groupby(calls.step).sum()


def model_rows(model_csv: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """Rows of mode "model": a source run's steps with the predicted step time on a cluster."""
    m = pd.read_csv(model_csv)
    if m.empty:
        return pd.DataFrame(columns=COLUMNS)
    source = runs.drop_duplicates("run").set_index("run")
    out = pd.DataFrame({
        "run": m["run"] + "@" + m["cluster"] + "@" + m["bandwidth_gbps"].map("{:g}Gbps".format),
        "method": m["method"], "mode": "model", "backend": "model", "workload": m["workload"],
        "world_size": m["world_size"], "seed": m["seed"], "step": m["step"], "loss": m["loss"],
        "wall_s": m["wall_s"], "status": m["run"].map(source["status"]), "cluster": m["cluster"],
        "bandwidth_gbps": m["bandwidth_gbps"], "speedup": m["speedup"],
        # Predicted seconds to the target loss (perfmodel / breakeven.time_to_target); absent in old CSVs.
        "seconds_to_target": m.get("seconds_to_target", np.nan),
    })
    for key in ("params", "experiment", "label", "dtype", "n_params", "stated_bits_per_param", "env", "ran_on"):
        out[key] = m["run"].map(source[key])
    src = runs.set_index(["run", "step"])
    out["bytes_sent"] = pd.MultiIndex.from_arrays([m["run"], m["step"]]).map(src["bytes_sent"])
    out["bytes_recv"] = pd.MultiIndex.from_arrays([m["run"], m["step"]]).map(src["bytes_recv"])
    out["cum_bytes_sent"] = out.groupby("run")["bytes_sent"].cumsum()
    return out


def aggregate(run_dirs: list[Path], model_csvs: list[Path], out: Path) -> pd.DataFrame:
    frames = [read_run(d) for d in run_dirs]
    runs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    runs = select_tuned(runs)
    # A model row priced from a grid point the rule did not choose keeps that point's label: left out.
    models = [m[~m["label"].astype(str).str.match(GRID_LABEL)] for m in (model_rows(p, runs) for p in model_csvs)]
    diag = sorted(c for c in runs.columns if c.startswith(("diag_", "trace_")))
    table = pd.concat([runs] + models, ignore_index=True).reindex(columns=COLUMNS + diag)
    table = table.sort_values(["mode", "run", "step"], kind="stable").reset_index(drop=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table
