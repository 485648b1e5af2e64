"""The `ddp` backend: PyTorch's own communication hooks train a thinwire workload, as real ranks.

    torchrun --standalone --nproc_per_node 2 -m thinwire run powersgd --backend ddp \
        --workload digits-mlp --param ddp_compat=true --param start_powersgd_iter=2 --steps 100
    torchrun --standalone --nproc_per_node 2 -m thinwire run bf16 --backend ddp --workload digits-mlp --steps 100

The reference for `powersgd` with `ddp_compat: true` and for `bf16`: the same parameters, initial model and
batches, but torch.nn.parallel.DistributedDataParallel (gloo) with the method's hook (HOOKS: torch.distributed.
algorithms.ddp_comm_hooks' powerSGD_hook, bf16_compress_hook) registered does the communication and
torch.optim.SGD the step. The whole model is one DDP bucket (bucket_cap_mb above its size; a run that DDP
splits into more buckets stops with an error), so powerSGD_hook compresses the same matrices thinwire does,
with one all-reduce each for the uncompressed tensors, the Ps and the Qs, and bf16_compress_hook sends one
bfloat16 buffer, as thinwire's bf16 does. Bytes are counted where a hook hands a tensor to
torch.distributed.all_reduce (the hooks and the default hook powerSGD_hook falls back to before
start_powersgd_iter call nothing else), into the same CommLog as thinwire's own runs; DDP's own start-up
broadcast and the loss average for logging go around it.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist
from thinwire.algorithms.comm import CommLog, ThinwireError
from thinwire.workloads.registry import make_workload
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import bf16_compress_hook
from torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook import PowerSGDState, powerSGD_hook
from tqdm.auto import tqdm

from thinwire.runner import Trajectory


@contextlib.contextmanager
def count_all_reduces(log: CommLog) -> Iterator[Any]:
    """Record every tensor handed to torch.distributed.all_reduce in `log` while the context is open;
    yields the uncounted all_reduce, for what the run does besides the method (the loss for the log)."""
    original = tdist.all_reduce

    def counted(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        log.count("all_reduce", tdist.get_world_size(group=kwargs.get("group")), tensor.numel() * tensor.element_size())
        return original(tensor, *args, **kwargs)

    tdist.all_reduce = counted
    try:
        yield original
    finally:
        tdist.all_reduce = original


def check_spec(spec: Any, config: Any) -> None:
    if spec.method not in HOOKS or (spec.method == "powersgd" and not getattr(config, "ddp_compat", False)):
        raise ThinwireError("the ddp backend runs PyTorch's powerSGD_hook (powersgd with --param ddp_compat=true) or "
                            f"bf16_compress_hook (bf16); got {spec.method} {spec.params}")


def check_workload(spec: Any, workload: Any) -> None:
    if not all(hasattr(workload, a) for a in ("model", "features", "labels")):
        raise ThinwireError(f"the ddp backend trains a torch-module workload (digits-mlp, digits-cnn), got {spec.workload}")


def powersgd_state(config: Any) -> Any:
    """The hook's state with thinwire's parameters."""
    return PowerSGDState(process_group=None, matrix_approximation_rank=config.rank,
                         start_powerSGD_iter=config.start_powersgd_iter,
                         min_compression_rate=config.min_compression_rate, use_error_feedback=config.error_feedback,
                         warm_start=config.warm_start, orthogonalization_epsilon=config.epsilon,
                         random_seed=config.seed)


def one_bucket_hook(model: torch.nn.Module, hook: Any) -> Any:
    """`hook` on the model in one bucket. For powerSGD_hook, the bucket must hold the model's matrices
    (tensors of >= 2 dims) in the reverse of the model's order (DDP's order after its rebuild at step 1 is
    the order gradients become ready), the order in which ddp_compat draws their Qs; where the vectors fall
    does not matter. A plain function: DDP reads the hook's name and refuses annotations other than its own
    types."""

    def matrices(params: Any) -> list[int]:
        return [id(p) for p in params if p.dim() >= 2]

    expected = matrices(reversed(list(model.parameters())))

    def one_bucket(state, bucket):
        if bucket.index() != 0:
            raise ThinwireError("DDP split the model into more than one bucket; the ddp backend needs it in one "
                                "(a model above DDP's first-bucket cap of 1 MiB)")
        if (isinstance(state, PowerSGDState) and state.iter >= state.start_powerSGD_iter
                and matrices(bucket.parameters()) != expected):
            raise ThinwireError("DDP's bucket does not hold the model's matrices in reverse order; thinwire's "
                                "ddp_compat draws their Qs in that order")
        return hook(state, bucket)

    return one_bucket


# method -> its reference hook under DDP, and the hook's state from the method's config (bf16_compress_hook's
# is the process group: None, the default one)
HOOKS = {"powersgd": powerSGD_hook, "bf16": bf16_compress_hook}
HOOK_STATES = {"powersgd": powersgd_state, "bf16": lambda config: None}


def train_ddp(spec: Any, cls: type, config: Any, timeout_s: float, progress: bool,
              busbw_mb: float | None = None, fail_at: Any = None) -> tuple:
    """Train under DDP with the method's hook; return (trajectory, comm log, method, workload, world size,
    rank, measured), as the deepspeed backend does (no bus bandwidth measured: gloo on the CPU)."""
    check_spec(spec, config)
    tdist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s))
    rank, world = tdist.get_rank(), tdist.get_world_size()
    try:
        workload = make_workload(spec.workload, world, spec.seed, spec.workload_params)
        check_workload(spec, workload)
        method = cls(config, workload.layout)
        dtype = getattr(torch, spec.dtype)
        model = copy.deepcopy(workload.model).to(dtype)
        size_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
        ddp = torch.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=2 * size_mb + 1)
        ddp.register_comm_hook(HOOK_STATES[spec.method](config), one_bucket_hook(model, HOOKS[spec.method]))
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
        log = CommLog()
        with count_all_reduces(log) as uncounted:
            traj = _loop(ddp, model, optimizer, workload, method, spec, rank, world, dtype, log, uncounted, progress,
                         fail_at)
    finally:
        tdist.destroy_process_group()
    return traj, log, method, workload, world, rank, {}


def _loop(ddp, model, optimizer, workload, method, spec, rank, world, dtype, log, all_reduce, progress,
          fail_at=None) -> Trajectory:
    traj = Trajectory()
    features = torch.as_tensor(workload.features[rank], dtype=dtype)
    labels = torch.as_tensor(workload.labels[rank])
    # The digits oracle's batch draw (workloads/digits.py): the same batches as thinwire's runs.
    rng = np.random.default_rng([spec.seed, 1])
    per, batch = workload.features.shape[1], workload.config.batch_size
    value_bits = np.dtype(spec.dtype).itemsize * 8
    for t in tqdm(range(spec.steps), disable=not (progress and rank == 0), desc="ddp", unit="step"):
        log.step = t
        if fail_at is not None and fail_at(rank, t):  # --inject-failure ...:nan
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(math.nan)
        pick = torch.as_tensor(rng.integers(0, per, size=(world, batch))[rank])
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(ddp(features[pick]), labels[pick])
        loss.backward()
        optimizer.step()
        traj.wall.append((t, time.perf_counter() - start))
        mean = loss.detach().double().reshape(1)
        all_reduce(mean)
        mean = mean.item() / world
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double().numpy()
        eval_loss = metric = math.nan
        if t % spec.eval_every == 0 or t == spec.steps - 1 or not math.isfinite(mean):
            eval_loss, metric = workload.evaluate(flat)
        sent, recv = log.step_bytes(t)
        traj.rows.append((t, mean, eval_loss, metric, sent, recv, method.bits_per_parameter(value_bits, t)))
        traj.params = flat
        if not math.isfinite(mean):
            traj.status, traj.message = "diverged", f"loss became {mean} at step {t}"
            break
    return traj
