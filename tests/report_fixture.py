"""A small built report for the report and browser tests: a synthetic results folder (two methods x
sim/real x two seeds x 5 steps, one real run diverging, model rows for two clusters at three bandwidths,
each measured run with its run directory) judged against every claim of thinwire's papers, so the
report has all its pages, some figures drawn and some claims without results.

    python tests/report_fixture.py OUT    # builds OUT/results and OUT/reports
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

DIVERGED_RUN = "topk-ef-real-s1"
STEPS = 5


def row(run: str, method: str, mode: str, step: int, **overrides: object) -> dict:
    bytes_per_step = 4000 if method == "sgd" else 400
    out = {
        "run": run, "method": method, "params": json.dumps({"k": 0.01} if method != "sgd" else {}),
        "mode": mode, "backend": {"sim": "numpy", "real": "gloo", "model": "model"}[mode],
        "workload": "logreg", "experiment": "ef", "label": method, "world_size": 4, "seed": 0, "dtype": "float32",
        "step": step, "loss": 1.0 / (step + 1), "eval_loss": 1.0 / (step + 1), "metric": 0.5 + 0.05 * step,
        "bytes_sent": bytes_per_step, "bytes_recv": bytes_per_step, "cum_bytes_sent": bytes_per_step * (step + 1),
        "wall_s": 0.01, "status": "ok", "n_params": 1000, "stated_bits_per_param": 32.0, "stated_bits": 32.0,
        "cluster": "", "bandwidth_gbps": np.nan, "speedup": np.nan,
    }
    out.update(overrides)
    return out


def training_rows() -> list[dict]:
    rows = []
    for method in ["sgd", "topk-ef"]:
        for mode in ["sim", "real"]:
            for seed in [0, 1]:
                run = f"{method}-{mode}-s{seed}"
                for step in range(STEPS):
                    loss = 1.0 / (step + 1) + 0.01 * seed
                    status = "ok"
                    if run == DIVERGED_RUN and step == STEPS - 1:
                        loss, status = np.inf, "diverged"
                    rows.append(row(run, method, mode, step, seed=seed, loss=loss, eval_loss=loss, status=status))
    return rows


def model_rows() -> list[dict]:
    rows = []
    for cluster in ["ethernet", "infiniband"]:
        for bandwidth in [1.0, 10.0, 100.0]:
            dense_time = 0.01 + 1.0 / bandwidth
            for method, step_time in [("sgd", dense_time), ("topk-ef", 0.012 + 0.1 / bandwidth)]:
                run = f"{method}-{cluster}-{bandwidth:g}"
                for step in range(3):
                    rows.append(row(
                        run, method, "model", step, wall_s=step_time, cluster=cluster,
                        bandwidth_gbps=bandwidth, speedup=dense_time / step_time, metric=np.nan,
                    ))
    return rows


def table() -> pd.DataFrame:
    return pd.DataFrame(training_rows() + model_rows())


def build(out: Path) -> Path:
    """out/results (table.csv and each measured run's directory) and out/reports; returns out/reports."""
    from thinwire.analysis.build import build_report

    out = Path(out)
    results = out / "results"
    t = table()
    for run, rows in t[t["mode"] != "model"].groupby("run"):
        folder = results / "runs" / run
        folder.mkdir(parents=True, exist_ok=True)
        rows[["step", "loss", "eval_loss", "metric", "bytes_sent", "bytes_recv"]].to_csv(
            folder / "trajectory.csv", index=False)
        (folder / "meta.json").write_text(json.dumps({"run": run, "status": rows["status"].iloc[-1]}) + "\n")
    t.to_csv(results / "table.csv", index=False)
    build_report(results / "table.csv", out / "reports")
    return out / "reports"


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
