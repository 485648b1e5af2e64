"""The `deepspeed` backend: DeepSpeed's own OnebitAdam trains a thinwire workload, as real ranks.

    torchrun --standalone --nproc_per_node 2 -m thinwire run onebit-adam --backend deepspeed \
        --workload digits-mlp --param deepspeed_compat=true --param freeze_step=20 --steps 100

The reference for `onebit-adam` with `deepspeed_compat: true`: the same parameters, initial model and
batches, but DeepSpeed's engine and optimizer do the training (fp32, no ZeRO, no gradient clipping).
Bytes are counted where DeepSpeed hands a tensor to a collective of deepspeed.comm (the engine's
gradient all-reduce and the compressed backend's all-to-all and all-gathers), into the same CommLog
as thinwire's own runs; the loss average for logging goes around it. On the CPU the compressed backend
runs with the two adapters of workloads/deepspeed_cpu.py; on CUDA with DeepSpeed's nccl backend (cupy).
Needs `pip install '.[deepspeed]'` (deepspeed==0.19.6, the last release with the 1-bit optimizers).
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import functools
import importlib.util
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist
from thinwire.algorithms.comm import CollectiveError, CommLog, ThinwireError
from thinwire.workloads.registry import make_workload
from tqdm.auto import tqdm

from thinwire.runner import Trajectory, diverged

INSTALL = ("pip install '.[deepspeed]' (DS_BUILD_OPS=0, with torch==2.13.0 as a constraint so pip keeps "
           "this torch; see the README)")

# deepspeed.comm function -> (thinwire op, position and name of the tensor a rank hands in)
COUNTED = {
    "all_reduce": ("all_reduce", 0, "tensor"),
    "all_gather": ("all_gather", 1, "tensor"),
    "all_gather_into_tensor": ("all_gather", 1, "input_tensor"),
    "all_to_all_single": ("all_to_all", 1, "tensor"),
    "reduce_scatter_tensor": ("reduce_scatter", 1, "input_tensor"),
    "broadcast": ("broadcast", 0, "tensor"),
    "send": ("send", 0, "tensor"),
    "isend": ("send", 0, "tensor"),
}


def import_deepspeed() -> Any:
    """DeepSpeed with its 1-bit optimizers, or a ThinwireError that names the fix."""
    try:
        import deepspeed
    except ImportError as e:
        raise ThinwireError(f"the deepspeed backend needs DeepSpeed ({e}): {INSTALL}") from None
    if importlib.util.find_spec("deepspeed.runtime.fp16.onebit.adam") is None:
        raise ThinwireError(f"DeepSpeed {deepspeed.__version__} has no 1-bit optimizers (removed in 0.19.7): "
                            f"install deepspeed==0.19.6 with {INSTALL}")
    return deepspeed


@contextlib.contextmanager
def count_collectives(log: CommLog) -> Iterator[None]:
    """Record every tensor handed to a deepspeed.comm collective in `log`, while the context is open."""
    import deepspeed.comm as dcomm

    originals = {name: getattr(dcomm, name) for name in COUNTED}

    def counted(name: str) -> Any:
        op, index, key = COUNTED[name]
        call = originals[name]

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            tensor = kwargs[key] if key in kwargs else args[index]
            p = dcomm.get_world_size(group=kwargs.get("group"))
            sent = tensor.numel() * tensor.element_size()
            log.count(op, p, sent)
            return call(*args, **kwargs)

        return wrapper

    for name in COUNTED:
        setattr(dcomm, name, counted(name))
    try:
        yield
    finally:
        for name, call in originals.items():
            setattr(dcomm, name, call)


@contextlib.contextmanager
def groups_time_out(timeout: datetime.timedelta) -> Iterator[None]:
    """Every process group created meanwhile gets the run's collective timeout. DeepSpeed creates groups
    of its own (the compressed / nccl backends' world group that OnebitAdam's compressed all-reduce runs
    on, the engine's data-parallel groups) through deepspeed.comm's new_group(ranks), which passes no
    timeout, and torch.distributed.new_group then uses torch's default (30 min), not the one the default
    group was given: the peer of a stopped rank waited there until the run's time limit."""
    original = tdist.new_group

    @functools.wraps(original)
    def new_group(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is None and len(args) < 2:  # new_group(ranks=None, timeout=None, ...)
            kwargs["timeout"] = timeout
        return original(*args, **kwargs)

    tdist.new_group = new_group
    try:
        yield
    finally:
        tdist.new_group = original


def ds_config(config: Any, batch_size: int, on_cpu: bool) -> dict:
    """The DeepSpeed config of OnebitAdam with thinwire's parameters; DeepSpeed clips gradients at norm
    1.0 by default, thinwire's method does not."""
    return {
        "train_micro_batch_size_per_gpu": batch_size,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 0.0,
        "steps_per_print": 2 ** 31 - 1,
        "optimizer": {"type": "OneBitAdam", "params": {
            "lr": config.lr, "freeze_step": config.freeze_step, "betas": [config.beta1, config.beta2],
            "eps": config.eps, "weight_decay": config.weight_decay, "cuda_aware": False,
            "comm_backend_name": "compressed" if on_cpu else "nccl"}},
    }


def check_spec(spec: Any, config: Any) -> None:
    if spec.method != "onebit-adam" or not getattr(config, "deepspeed_compat", False):
        raise ThinwireError("the deepspeed backend runs DeepSpeed's OnebitAdam, i.e. onebit-adam with "
                            f"--param deepspeed_compat=true; got {spec.method} {spec.params}")
    if spec.dtype != "float32":
        raise ThinwireError(f"the deepspeed backend trains in float32 (DeepSpeed's fp32 engine), got {spec.dtype}")


def check_workload(spec: Any, workload: Any) -> None:
    if not all(hasattr(workload, a) for a in ("model", "features", "labels")):
        raise ThinwireError(f"the deepspeed backend trains a torch-module workload (digits-mlp, digits-cnn), "
                            f"got {spec.workload}")


def train_deepspeed(spec: Any, cls: type, config: Any, timeout_s: float, progress: bool,
                    busbw_mb: float | None = None, fail_at: Any = None) -> tuple:
    """Train under DeepSpeed; return (trajectory, comm log, method, workload, world size, rank, measured):
    `measured` is the all-reduce bus bandwidth of DeepSpeed's process group before training (busbw_mb MB;
    default 64 on GPUs, none on the CPU), as thinwire's own torch runs measure it."""
    check_spec(spec, config)
    deepspeed = import_deepspeed()
    from deepspeed.accelerator import get_accelerator
    from thinwire.workloads import deepspeed_cpu

    on_cpu = deepspeed_cpu.apply()
    if not on_cpu:  # this rank's GPU, before the model and batches are placed (init_distributed does not)
        get_accelerator().set_device(int(os.environ.get("LOCAL_RANK", "0")))
    timeout = datetime.timedelta(seconds=timeout_s)
    with groups_time_out(timeout):  # every group, DeepSpeed's own too, gets the run's timeout
        deepspeed.init_distributed(dist_backend="gloo" if on_cpu else "nccl", verbose=False, timeout=timeout)
        rank, world = tdist.get_rank(), tdist.get_world_size()
        measured: dict = {}
        try:
            if busbw_mb is None:
                busbw_mb = 0.0 if on_cpu else 64.0
            if busbw_mb > 0 and world > 1:
                from thinwire.workloads.torchcomm import measure_busbw

                measured = measure_busbw(torch.device(get_accelerator().current_device_name()), int(busbw_mb * 2**20))
            workload = make_workload(spec.workload, world, spec.seed, spec.workload_params)
            check_workload(spec, workload)
            method = cls(config, workload.layout)
            method.world_size = world  # stated bits for this many ranks (init_state is thinwire's own loop)
            device = torch.device(get_accelerator().current_device_name())
            model = copy.deepcopy(workload.model).float().to(device)
            try:
                engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(),
                                                  config=ds_config(config, workload.config.batch_size, on_cpu))
            except ModuleNotFoundError as e:
                if e.name != "cupy":
                    raise
                raise ThinwireError("DeepSpeed's 1-bit optimizers need cupy on CUDA: pip install cupy-cuda12x "
                                    "(the wheel matching your CUDA)") from None
            log = CommLog()
            with count_collectives(log):
                traj = _loop(engine, model, workload, method, spec, rank, world, device, log, progress, fail_at)
        except CollectiveError:
            raise  # peers may be dead or stopped: no teardown, the CLI leaves at once
        except RuntimeError as e:
            if not collective_failure(e):
                tdist.destroy_process_group()
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CollectiveError(f"DeepSpeed's training step failed on rank {rank} (a peer died or the "
                                  f"{timeout_s:g} s timeout expired): {first}") from None
        except BaseException:
            tdist.destroy_process_group()
            raise
        tdist.destroy_process_group()
    return traj, log, method, workload, world, rank, measured


def collective_failure(e: RuntimeError) -> bool:
    """Whether an error out of DeepSpeed's step is a failed collective (torch's DistBackendError, or the
    RuntimeError gloo's timeouts and broken connections arrive as), not a bug to show with its traceback."""
    return isinstance(e, tdist.DistBackendError) or "/gloo/" in str(e) or "NCCL" in str(e)


def _loop(engine, model, workload, method, spec, rank, world, device, log, progress, fail_at=None) -> Trajectory:
    traj = Trajectory()
    features = torch.as_tensor(workload.features[rank], dtype=torch.float32, device=device)
    labels = torch.as_tensor(workload.labels[rank], device=device)
    # The digits oracle's batch draw (workloads/digits.py): the same batches as thinwire's runs.
    rng = np.random.default_rng([spec.seed, 1])
    per, batch = workload.features.shape[1], workload.config.batch_size
    for t in tqdm(range(spec.steps), disable=not (progress and rank == 0), desc="deepspeed", unit="step"):
        log.step = t
        if fail_at is not None and fail_at(rank, t):  # --inject-failure ...:nan
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(math.nan)
        pick = torch.as_tensor(rng.integers(0, per, size=(world, batch))[rank], device=device)
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(engine(features[pick]), labels[pick])
        engine.backward(loss)
        engine.step()
        traj.wall.append((t, time.perf_counter() - start))
        mean = loss.detach().double().reshape(1)
        tdist.all_reduce(mean)  # for the log only: deepspeed.comm (and so the byte count) is not involved
        mean = mean.item() / world
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double().cpu().numpy()
        eval_loss = metric = math.nan
        if t % spec.eval_every == 0 or t == spec.steps - 1 or not math.isfinite(mean):
            eval_loss, metric = workload.evaluate(flat)
        sent, recv = log.step_bytes(t)
        traj.rows.append((t, mean, eval_loss, metric, sent, recv, method.bits_per_parameter(32, t)))
        traj.params = flat
        if not math.isfinite(mean):
            traj.status, traj.message = "diverged", diverged(mean, eval_loss, t)
            break
    return traj
