"""Check the performance model against measured step times on shaped links.

    sudo thinwire validate config/validation.yaml --work results/validation --out reports/validation.csv

For each link rate, the harness builds 2 network namespaces behind a switch (workloads/shaped.py),
measures the link with gloo (workloads/linkbench.py: alpha and beta of the model's ring formula) and
runs every method of the sheet as 2 real gloo ranks across it. The model then predicts each run's
step time from quantities measured elsewhere:

    predicted = local + priced communication
    priced    = the run's own CommLog priced by simulators/perfmodel.py with the alpha and beta that
                the link micro-benchmark measured at that rate
    local     = the mean step time of a calibration run of the same method on loopback, minus its own
                CommLog priced on the loopback link (measured the same way): the gradient, encode and
                decode, and what the link does not explain (the ranks waiting for each other, software
                overhead per call); measured on another run, not assumed

and the table compares it with the measured mean step time (steps after `skip`), per case, with the
relative error and the speedup over dense SGD both ways. Every run directory and link measurement is
kept, so an interrupted validation resumes where it stopped. Needs root for the namespaces; without
it the command says why and writes nothing.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from thinwire.algorithms.comm import ThinwireError

COLUMNS = ["case", "method", "label", "bandwidth", "bandwidth_mbit", "link_gbps", "link_latency_us",
           "local_s", "comm_predicted_s", "comm_measured_s", "predicted_s", "measured_s", "error",
           "predicted_speedup", "measured_speedup"]


def load_sheet(path: Path) -> dict[str, Any]:
    try:
        sheet = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ThinwireError(f"validation sheet {path}: {e}") from None
    for key in ("workload", "steps", "skip", "rates_mbit", "methods"):
        if key not in sheet:
            raise ThinwireError(f"validation sheet {path} has no {key!r}")
    if not 0 <= sheet["skip"] < sheet["steps"]:
        raise ThinwireError(f"validation sheet {path}: skip must be in [0, steps), got {sheet['skip']}")
    labels = [m.get("label", m["method"]) for m in sheet["methods"]]
    if "sgd" not in labels:
        raise ThinwireError(f"validation sheet {path}: speedups need a method labelled 'sgd' (dense baseline)")
    if len(set(labels)) != len(labels):
        raise ThinwireError(f"validation sheet {path}: method labels must be unique, got {labels}")
    return sheet


def _rate_name(rate: float | None) -> str:
    return "unshaped" if rate is None else f"{rate:g}mbit"


def _run_argv(sheet: dict, method: dict, out: Path) -> list[str]:
    """`thinwire run ...` arguments (after the module name) of one method's run."""
    argv = ["run", method["method"], "--workload", sheet["workload"],
            "--steps", str(sheet["steps"]), "--eval-every", str(sheet["steps"]), "--quiet",
            "--timeout", str(sheet.get("timeout_s", 120)), "--out", str(out),
            "--experiment", "validation", "--label", method.get("label", method["method"])]
    for k, v in (method.get("params") or {}).items():
        argv += ["--param", f"{k}={v}"]
    for k, v in (sheet.get("workload_params") or {}).items():
        argv += ["--wparam", f"{k}={v}"]
    return argv


def _done(out: Path, sheet: dict, method: dict) -> bool:
    """A kept run counts only if it ran what the sheet asks now (the sheet may have changed since)."""
    try:
        meta = json.loads((out / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    same = (meta["method"] == method["method"] and meta["steps"] == sheet["steps"]
            and meta["workload"] == sheet["workload"]
            and all(meta["params"].get(k) == v for k, v in (method.get("params") or {}).items())
            and all(meta["workload_params"].get(k) == v for k, v in (sheet.get("workload_params") or {}).items()))
    if not same:
        shutil.rmtree(out)
    return same


def _wait_all(procs: list[subprocess.Popen], what: str, timeout_s: float) -> None:
    try:
        codes = [p.wait(timeout=timeout_s) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        raise ThinwireError(f"{what}: ranks did not finish within {timeout_s:g} s") from None
    if any(codes):
        raise ThinwireError(f"{what}: ranks exited with {codes}")


RANK_ENV = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]


def calibrate_link(sheet: dict, work: Path) -> Path:
    """The loopback link of the calibration runs, measured as the shaped ones are."""
    link = work / "calibration" / "link.json"
    if not link.exists():
        proc = subprocess.Popen(_torchrun("-m", "thinwire.workloads.linkbench", "--out", str(link)),
                                env={**os.environ, **RANK_ENV}, stdout=subprocess.DEVNULL)
        _wait_all([proc], "loopback link benchmark", sheet.get("run_timeout_s", 600))
    return link


def calibrate_local(sheet: dict, method: dict, work: Path) -> Path:
    """A loopback run of the method (2 ranks, torchrun), from which `local` is measured."""
    out = work / "calibration" / method.get("label", method["method"])
    if not _done(out, sheet, method):
        argv = _torchrun("-m", "thinwire", *_run_argv(sheet, method, out))
        proc = subprocess.Popen(argv, env={**os.environ, **RANK_ENV}, stdout=subprocess.DEVNULL)
        _wait_all([proc], f"calibration run of {method['method']}", sheet.get("run_timeout_s", 600))
    return out


def measure_rate(sheet: dict, rate: float | None, work: Path) -> tuple[Path, list[Path]]:
    """Link benchmark and every method's run across 2 namespaces at this rate."""
    from thinwire.workloads.shaped import ShapedNet

    case_dir = work / _rate_name(rate)
    link = case_dir / "link.json"
    runs = [case_dir / m.get("label", m["method"]) for m in sheet["methods"]]
    if link.exists() and all(_done(r, sheet, m) for r, m in zip(runs, sheet["methods"])):
        return link, runs
    limit = sheet.get("run_timeout_s", 600)
    with ShapedNet(2, rate) as net:
        if not link.exists():
            bench = [sys.executable, "-m", "thinwire.workloads.linkbench", "--out", str(link)]
            _wait_all([net.popen(r, bench, env=RANK_ENV, stdout=subprocess.DEVNULL) for r in range(2)],
                      f"link benchmark at {_rate_name(rate)}", limit)
        for method, out in zip(sheet["methods"], runs):
            if not _done(out, sheet, method):
                argv = [sys.executable, "-m", "thinwire", *_run_argv(sheet, method, out)]
                _wait_all([net.popen(r, argv, env=RANK_ENV, stdout=subprocess.DEVNULL) for r in range(2)],
                          f"{method['method']} at {_rate_name(rate)}", limit)
    return link, runs


def _timing(run: Path, skip: int) -> pd.DataFrame:
    t = pd.read_csv(run / "timing.csv")
    return t[t["step"] >= skip]


def priced(run: Path, link: Path, skip: int) -> float:
    """Mean seconds per step (after `skip`) of the run's CommLog priced on a measured 2-rank link."""
    from thinwire.simulators.perfmodel import Cluster, Tier, step_comm_times

    fit = json.loads(link.read_text())
    tier = Tier(fit["bandwidth_gbps"], fit["latency_us"])
    steps = _timing(run, skip)["step"]
    per_step = step_comm_times(pd.read_csv(run / "commlog.csv"), 2, Cluster("link", 2, 1, 1.0, tier, tier), 1.0)
    return float(per_step.reindex(steps).fillna(0.0).mean())


def predict(run: Path, calibration: Path, calibration_link: Path, link: Path, skip: int) -> dict[str, float]:
    fit = json.loads(link.read_text())
    local = float(_timing(calibration, skip)["wall_s"].mean()) - priced(calibration, calibration_link, skip)
    comm = priced(run, link, skip)
    measured = _timing(run, skip)
    return {"link_gbps": fit["bandwidth_gbps"], "link_latency_us": fit["latency_us"], "local_s": local,
            "comm_predicted_s": comm, "comm_measured_s": float(measured["comm_s"].mean()),
            "predicted_s": local + comm, "measured_s": float(measured["wall_s"].mean())}


def validate(sheet_path: Path, work: Path, out: Path, progress: bool = True) -> pd.DataFrame:
    from thinwire.workloads.shaped import unavailable

    sheet = load_sheet(sheet_path)
    reason = unavailable()
    if reason:
        raise ThinwireError(f"shaped-link validation skipped: {reason}")
    rates = [None if r in (None, "unshaped") else float(r) for r in sheet["rates_mbit"]]
    calibration_link = calibrate_link(sheet, work)
    calibrations = {}
    for m in sheet["methods"]:
        if progress:
            print(f"calibrating {m.get('label', m['method'])} on loopback", file=sys.stderr)
        calibrations[m.get("label", m["method"])] = calibrate_local(sheet, m, work)
    rows = []
    for rate in rates:
        if progress:
            print(f"measuring at {_rate_name(rate)}", file=sys.stderr)
        link, runs = measure_rate(sheet, rate, work)
        for m, run in zip(sheet["methods"], runs):
            label = m.get("label", m["method"])
            row = predict(run, calibrations[label], calibration_link, link, sheet["skip"])
            rows.append({"case": f"{sheet['workload']}@{_rate_name(rate)}", "method": m["method"], "label": label,
                         "bandwidth": _rate_name(rate), "bandwidth_mbit": math.nan if rate is None else rate, **row})
    table = pd.DataFrame(rows)
    table["error"] = (table["predicted_s"] - table["measured_s"]) / table["measured_s"]
    for kind in ("predicted", "measured"):
        base = table[table["label"] == "sgd"].set_index("bandwidth")[f"{kind}_s"]
        table[f"{kind}_speedup"] = table["bandwidth"].map(base) / table[f"{kind}_s"]
    table = table[COLUMNS]
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table


def summary(table: pd.DataFrame) -> str:
    err = table["error"].abs()
    return (f"{len(table)} cases: median |error| {err.median():.1%}, mean {err.mean():.1%}, "
            f"max {err.max():.1%} ({table.loc[err.idxmax(), 'label']} at {table.loc[err.idxmax(), 'bandwidth']})")
