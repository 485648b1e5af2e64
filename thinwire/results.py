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
run leaves no partial result behind. It is written only to a new path, an empty directory or a
thinwire run directory of the same run (replacing a finished one takes `force`), never over anything
else; `check_out` says so, and that the place can be written, before a run trains.
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

from thinwire.algorithms.comm import ThinwireError
from thinwire.launch import THREAD_VARS

FILES = ("trajectory.csv", "commlog.csv", "timing.csv", "params.npy", "meta.json")
RUN_FILES = (*FILES, "trace.csv")  # everything a run directory may hold


def check_out(out: Path, force: bool = False) -> None:
    """Refuse a results directory that is not new, empty or a thinwire run directory of this run (`out`'s
    name is the run id; a finished one is replaced only with `force`), and one that cannot be written."""
    out = Path(out)
    if out.name in ("", ".", ".."):
        raise ThinwireError(f"--out {out} must name a new directory, the run's own")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ThinwireError(f"--out {out} exists and is not a directory: choose a new path")
    if out.is_dir():
        try:
            entries = sorted(p.name for p in out.iterdir())
        except OSError as e:
            raise ThinwireError(f"--out {out} cannot be read: {e.strerror or e}") from None
        foreign = [e for e in entries if e not in RUN_FILES]
        if foreign:
            raise ThinwireError(f"--out {out} is not a thinwire run directory (it holds {', '.join(foreign[:3])}"
                                f"{' ...' if len(foreign) > 3 else ''}): choose a new path")
        if "meta.json" in entries:
            try:
                run = json.loads((out / "meta.json").read_text()).get("run")
            except (OSError, ValueError, AttributeError):
                run = None
            if run != out.name:
                raise ThinwireError(f"--out {out} holds another run ({run!r}): choose a new path")
            if not force:
                raise ThinwireError(f"--out {out} holds a finished run {run}: pass --force to replace it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent)).rmdir()
    except OSError as e:
        raise ThinwireError(f"--out {out} cannot be written: {e.strerror or e}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows([repr(v) if isinstance(v, float) else v for v in row] for row in rows)


def write_run(out: Path, meta: dict, trajectory: Any, commlog: Any, force: bool = False) -> Path:
    """Write the run directory all at once (see the module docstring), readable as the umask allows."""
    out = Path(out)
    check_out(out, force)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would hide results from the group
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
    except OSError as e:
        raise ThinwireError(f"cannot write run directory {out}: {e.strerror or e}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def cluster_name(configured: str | None = None) -> str:
    """Where a result was produced: the configured name, else slurm's cluster name, else local:<host>."""
    return configured or os.environ.get("SLURM_CLUSTER_NAME") or f"local:{platform.node() or 'unknown'}"


def environment(backend: str, cluster: str | None = None) -> dict[str, str]:
    """What produced a result: cluster, versions, CPU, its thread-count variables, GPU (model, driver,
    NCCL), git revision."""
    env = {"cluster": cluster_name(cluster), "python": platform.python_version(), "platform": platform.platform(),
           "cpu": _cpu_model(), "cores": str(os.cpu_count()), "backend": backend,
           "threads": " ".join(f"{v}={os.environ[v]}" for v in THREAD_VARS if v in os.environ) or "none set"}
    for key in ("SLURM_JOB_ID", "SLURM_JOB_NUM_NODES"):
        if key in os.environ:
            env[key.lower()] = os.environ[key]
    env.update(gpu_fingerprint())
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


def gpu_fingerprint() -> dict[str, str]:
    """GPU model and count, driver, CUDA and NCCL versions when torch sees a GPU; nothing otherwise."""
    import sys

    torch = sys.modules.get("torch")  # only if this run already uses torch: no 1-3 s import for numpy runs
    if torch is None or not torch.cuda.is_available():
        return {}
    env = {"gpu": torch.cuda.get_device_name(0), "gpus": str(torch.cuda.device_count()),
           "cuda": str(torch.version.cuda), "gpu_driver": _nvidia_driver()}
    try:
        env["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    except (AttributeError, RuntimeError):
        env["nccl"] = "unavailable"
    return env


def _nvidia_driver() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=False)
        return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


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
