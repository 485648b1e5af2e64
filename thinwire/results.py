"""One run's results directory, written all at once or not at all.

    results/runs/<run id>/
        trajectory.csv   step, loss, eval_loss, metric, bytes_sent, bytes_recv (deterministic)
        commlog.csv      every collective: step, op, group_size, sent, recv, category (deterministic)
        timing.csv       step, wall_s, comm_s: the step's seconds and those inside the method's
                         collectives (measured, so they differ between repeats)
        params.npy       the workers' average model after the last step (deterministic)
        meta.json        what ran, where, the status, the environment fingerprint
        trace.csv        optional: step, name, value: scalars the method records every step (e.g.
                         LARS' per-layer lr), only when it records any (deterministic)

The directory is built under a temporary name and renamed into place, so an interrupted or failed
run leaves no partial result behind.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

FILES = ("trajectory.csv", "commlog.csv", "timing.csv", "params.npy", "meta.json")


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows([repr(v) if isinstance(v, float) else v for v in row] for row in rows)


def write_run(out: Path, meta: dict, trajectory: Any, commlog: Any) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_csv(tmp / "trajectory.csv", trajectory.COLUMNS, trajectory.rows)
        _write_csv(tmp / "commlog.csv", commlog.COLUMNS, commlog.rows())
        _write_csv(tmp / "timing.csv", ("step", "wall_s", "comm_s"), trajectory.wall)
        np.save(tmp / "params.npy", trajectory.params)
        if trajectory.trace:
            _write_csv(tmp / "trace.csv", ("step", "name", "value"), trajectory.trace)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def environment(backend: str) -> dict[str, str]:
    """What produced a result: versions, CPU, accelerator, git revision."""
    env = {"python": platform.python_version(), "platform": platform.platform(),
           "cpu": _cpu_model(), "cores": str(os.cpu_count()), "backend": backend}
    for pkg in ("numpy", "torch", "mpi4py", "deepspeed", "thinwire"):
        try:
            env[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    env["git"] = _git_revision()
    if backend == "mpi":
        from mpi4py import MPI

        env["mpi_library"] = MPI.Get_library_version().splitlines()[0].strip()
    return env


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_revision() -> str:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=False)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
