"""Set up one run (method, workload, communicator) in any mode and write its results directory.

Under torchrun:   torchrun --standalone --nproc_per_node 2 -m thinwire run topk-ef --workload digits-mlp
Under mpiexec:    mpiexec -n 2 thinwire run topk-ef --workload logreg --backend mpi
Simulator:        thinwire sim topk-ef --workload logreg --workers 8
DeepSpeed's own OnebitAdam (workloads/deepspeed_backend.py), under torchrun:
                  ... -m thinwire run onebit-adam --backend deepspeed --param deepspeed_compat=true ...
PyTorch's own PowerSGD DDP hook (workloads/ddp_hooks.py), under torchrun:
                  ... -m thinwire run powersgd --backend ddp --param ddp_compat=true ...
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from thinwire.algorithms.comm import ThinwireError
from thinwire.algorithms.registry import get_method, make_config
from thinwire.options import DTYPES, RUN, check_finite
from thinwire.results import check_out, environment, write_run
from thinwire.runner import train
from thinwire.workloads.registry import make_workload


@dataclasses.dataclass
class RunSpec:
    method: str
    workload: str
    steps: int = RUN.steps
    seed: int = RUN.seed
    dtype: str = RUN.dtype
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    workload_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    eval_every: int = RUN.eval_every
    experiment: str = ""  # the runs-sheet entry this run belongs to; figures group runs by it
    label: str = ""  # names this method variant in figures and claims (default: the method)
    cluster_name: str = ""  # where it ran, for the report (default: slurm's cluster name, else local:<host>)

    def validate(self) -> tuple[Any, Any]:
        """Check everything checkable before any process group exists; return (method class, config)."""
        if self.steps < 1:
            raise ThinwireError(f"steps must be >= 1, got {self.steps}")
        if self.seed < 0:
            raise ThinwireError(f"seed must be >= 0, got {self.seed}")
        if self.dtype not in DTYPES:
            raise ThinwireError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.eval_every < 1:
            raise ThinwireError(f"eval_every must be >= 1, got {self.eval_every}")
        cls = get_method(self.method)
        config = make_config(cls, self.params, run_seed=self.seed)
        check_finite(self.method, config)
        try:  # a config whose validity depends on the run's length (e.g. 1-bit Adam's freeze_step)
            getattr(config, "check_run", lambda steps: None)(self.steps)
        except ValueError as e:
            raise ThinwireError(f"method {self.method!r}: {e}") from None
        return cls, config


def _meta(spec: RunSpec, run_id: str, mode: str, backend: str, world_size: int, method: Any,
          workload: Any, traj: Any, measured: dict | None = None) -> dict:
    value_bits = np.dtype(spec.dtype).itemsize * 8
    return {
        "run": run_id, "method": spec.method, "params": dataclasses.asdict(method.config),
        "mode": mode, "backend": backend, "workload": spec.workload, "experiment": spec.experiment or spec.workload,
        "label": spec.label or spec.method,
        "workload_params": dataclasses.asdict(workload.config), "world_size": world_size,
        "workload_provenance": getattr(workload, "provenance", {}),  # e.g. the corpus hash of a text workload
        "seed": spec.seed, "dtype": spec.dtype, "steps": spec.steps, "steps_done": len(traj.rows),
        "status": traj.status, "message": traj.message, "n_params": workload.n_params,
        # The last step's: for some methods (DGC's sampled threshold) they depend on the step's data.
        "stated_bits_per_param": (traj.rows[-1][traj.COLUMNS.index("stated_bits")] if traj.rows
                                  else method.bits_per_parameter(value_bits, 0)),
        "diagnostics": traj.diagnostics,
        "val_loss": validation_loss(workload, traj.params),  # tuning chooses on it (analysis/tuning.py)
        "env": {**environment(backend, spec.cluster_name), **{k: repr(v) for k, v in (measured or {}).items()}},
    }


def validation_loss(workload: Any, params: Any) -> float | None:
    """The final model's loss on the workload's validation split, disjoint from its eval data; None
    when the workload has none or the loss is not finite (a diverged run)."""
    if params is None or not getattr(workload, "validation_split", ""):
        return None
    from thinwire.runner import to_numpy

    with np.errstate(over="ignore", invalid="ignore"):
        value = float(workload.validation_loss(to_numpy(params)))
    return value if math.isfinite(value) else None


def run_sim(spec: RunSpec, workers: int, out: Path, array_lib: str | None = None,
            progress: bool = True, force: bool = False) -> dict:
    """All workers in this process (simulators/simcomm.py)."""
    from thinwire.simulators.simcomm import SimComm

    cls, config = spec.validate()
    if workers < 1:
        raise ThinwireError(f"workers must be >= 1, got {workers}")
    try:  # a method whose topology needs a world size (sdp's ranks_per_node)
        getattr(config, "check_world", lambda world: None)(workers)
    except ValueError as e:
        raise ThinwireError(f"method {spec.method!r}: {e}") from None
    check_out(out, force)
    workload = make_workload(spec.workload, workers, spec.seed, spec.workload_params)
    method = cls(config, workload.layout)
    xp = _namespace(array_lib or getattr(workload, "prefers", "numpy"))
    comm = SimComm(workers, xp)
    x = xp.asarray(np.broadcast_to(workload.x0(), (workers, workload.n_params)).astype(spec.dtype))
    traj = train(method, x, workload.oracle(xp, None, spec.dtype), comm, workload, spec.steps,
                 simulated=True, eval_every=spec.eval_every, progress=progress)
    meta = _meta(spec, out.name, "sim", "numpy" if xp.__name__.endswith("numpy") else "torch", workers,
                 method, workload, traj)
    write_run(out, meta, traj, comm.log, force)
    return meta


def run_real(spec: RunSpec, out: Path, backend: str = "auto", timeout_s: float = RUN.collective_timeout_s,
             device: str | None = None, progress: bool = True, inject_failure: str | None = None,
             busbw_mb: float | None = None, world_size: int | None = None, force: bool = False) -> dict | None:
    """One worker per process: torch.distributed (gloo/NCCL) or MPI. Rank 0 writes the results and
    gets their metadata back; the other ranks get None. With torch.distributed and DeepSpeed, the
    all-reduce bus bandwidth of `busbw_mb` MB is measured first and kept in the fingerprint (default:
    64 MB on GPUs, not on CPUs; MPI runs do not measure it). With `world_size`, a run started with
    another number of ranks stops before training."""
    cls, config = spec.validate()
    if not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise ThinwireError(f"--timeout must be a positive number of seconds, got {timeout_s}")
    backend = _detect_backend(backend)
    fail_at = _failure(inject_failure)
    check_out(out, force)  # on every rank, before any process group: a bad --out fails before training
    measured: dict = {}
    if backend in ("deepspeed", "ddp"):  # a framework's own implementation trains: the reference backends
        if backend == "deepspeed":
            from thinwire.workloads.deepspeed_backend import train_deepspeed as train_reference
        else:
            from thinwire.workloads.ddp_hooks import train_ddp as train_reference

        _check_world(int(os.environ.get("WORLD_SIZE", "1")), world_size)
        traj, log, method, workload, world, rank, measured = train_reference(spec, cls, config, timeout_s, progress,
                                                                             busbw_mb, fail_at)
        meta = _meta(spec, out.name, "real", backend, world, method, workload, traj, measured)
        if rank == 0:
            write_run(out, meta, traj, log, force)
        return meta if rank == 0 else None
    if backend == "mpi":
        from thinwire.workloads.mpicomm import MPIComm

        comm = MPIComm(timeout_s)
        _check_world(comm.world_size, world_size)
        workload = make_workload(spec.workload, comm.world_size, spec.seed, spec.workload_params)
        comm.xp = _namespace(getattr(workload, "prefers", "numpy"))
        dev = None
    else:
        from thinwire.workloads.torchcomm import TorchComm, measure_busbw

        dev = _device(device)
        comm = TorchComm(dev, timeout_s)
        _check_world(comm.world_size, world_size)
        if busbw_mb is None:
            busbw_mb = 64.0 if dev.type == "cuda" else 0.0
        if busbw_mb > 0 and comm.world_size > 1:
            measured = measure_busbw(dev, int(busbw_mb * 2**20))
        workload = make_workload(spec.workload, comm.world_size, spec.seed, spec.workload_params)
    method = cls(config, workload.layout)
    xp = comm.xp
    x0 = workload.x0().astype(spec.dtype)
    x = xp.asarray(x0, device=dev) if dev is not None else xp.asarray(x0)
    try:
        traj = train(method, x, workload.oracle(xp, comm.rank, spec.dtype, dev), comm, workload, spec.steps,
                     simulated=False, eval_every=spec.eval_every, progress=progress and comm.rank == 0,
                     fail_at=fail_at and (lambda t: fail_at(comm.rank, t)))
        name = backend if backend == "mpi" else comm.backend
        meta = _meta(spec, out.name, "real", name, comm.world_size, method, workload, traj, measured)
        if comm.rank == 0:
            write_run(out, meta, traj, comm.log, force)
    finally:
        comm.close()
    return meta if comm.rank == 0 else None


def _check_world(started: int, planned: int | None) -> None:
    if planned is not None and started != planned:
        raise ThinwireError(f"this rank belongs to a job of {started} rank(s), {planned} were planned: the launcher "
                            f"did not join the ranks into one job (e.g. the MPI library's PMI does not match srun "
                            f"--mpi; try mpi_launcher srun-pmix or mpiexec)")


def _device(device: str | None) -> Any:
    """The rank's torch device: `device` ("cpu", "cuda" = this rank's GPU, "cuda:N"), else its GPU when
    CUDA is present, else the CPU. Asking for CUDA without a GPU (or NCCL) is an error, not a fallback."""
    import torch
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(f"cuda:{local}" if device == "cuda" else device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ThinwireError(f"device {device} (backend nccl) requested, but torch sees no GPU here "
                                f"(torch {torch.__version__}); run with --device cpu (gloo)")
        if not dist.is_nccl_available():
            raise ThinwireError(f"device {device} needs NCCL, which this torch ({torch.__version__}) lacks")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ThinwireError(f"device {dev} requested, but this node has {torch.cuda.device_count()} GPUs")
    return dev


def _namespace(name: str) -> Any:
    if name == "torch":
        import array_api_compat.torch as xp
    elif name == "numpy":
        import array_api_compat.numpy as xp
    else:
        raise ThinwireError(f"array library must be numpy or torch, got {name!r}")
    return xp


def _detect_backend(backend: str) -> str:
    if backend not in ("auto", "torch", "mpi", "deepspeed", "ddp"):
        raise ThinwireError(f"backend must be auto, torch, mpi, deepspeed or ddp, got {backend!r}")
    if backend != "auto":
        return backend
    launched_by_mpi = any(k in os.environ for k in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"))
    return "mpi" if launched_by_mpi and "RANK" not in os.environ else "torch"


def _failure(spec: str | None):
    """--inject-failure RANK:STEP:{exit,hang,nan}: make one rank die, hang, or turn its model to NaN at STEP
    (to test that peers don't hang and that divergence is recorded). The returned function of (rank,
    step) exits or hangs, or says whether to poison the model now."""
    if not spec:
        return None
    parts = spec.split(":")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or parts[2] not in FAILURES:
        raise ThinwireError(f"--inject-failure takes RANK:STEP:HOW with HOW one of {', '.join(FAILURES)}, "
                            f"got {spec!r}")
    rank, step, how = int(parts[0]), int(parts[1]), parts[2]

    def fail(r: int, t: int) -> bool:
        if r == rank and t == step:
            if how == "exit":
                os._exit(17)
            if how == "hang":
                time.sleep(3600)
            return True
        return False

    return fail


FAILURES = ("exit", "hang", "nan")


def parse_params(items: list[str] | None, what: str) -> dict[str, Any]:
    """KEY=VALUE pairs; values are read as JSON when they parse (numbers, booleans), else as strings."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ThinwireError(f"{what} takes KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
