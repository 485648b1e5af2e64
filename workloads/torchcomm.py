"""TorchComm: the Communicator over torch.distributed (gloo for CPU tensors, NCCL for CUDA tensors).

Every collective runs under the process group's timeout; a peer that dies or hangs surfaces as a
CollectiveError naming the operation, instead of a hang or a wall of C++ frames.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time
from collections.abc import Sequence
from typing import Any

import array_api_compat.torch as xp_torch
import numpy as np
import torch
import torch.distributed as dist
from thinwire.algorithms import wire
from thinwire.algorithms.comm import CollectiveError, CommLog, check_partition, check_reduce_op


@dataclasses.dataclass(frozen=True)
class TorchGroup:
    blocks: tuple[tuple[int, ...], ...]
    handle: Any  # this rank's process group

    @property
    def size(self) -> int:
        return len(self.blocks[0])


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def measure_busbw(device: torch.device, nbytes: int, iters: int = 5) -> dict[str, float]:
    """All-reduce bus bandwidth of the initialised process group, as nccl-tests defines it:
    busbw = (bytes / time) x 2 (p - 1) / p, from the median of `iters` timed all-reduces after one
    warm-up. A measurement of the machine for the run's fingerprint, not part of the run's CommLog."""
    p = dist.get_world_size()
    x = torch.ones(max(1, nbytes // 4), dtype=torch.float32, device=device)
    times = []
    try:
        for i in range(iters + 1):
            dist.barrier()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            dist.all_reduce(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i:
                times.append(time.perf_counter() - start)
    except (RuntimeError, dist.DistBackendError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CollectiveError(f"all-reduce bus bandwidth measurement failed: {first}") from None
    t = float(np.median(times))
    algbw = x.numel() * 4 / t
    return {"allreduce_bytes": x.numel() * 4, "allreduce_s": t,
            "allreduce_busbw_gbps": algbw * 2 * (p - 1) / max(p, 1) * 8 / 1e9}


class TorchComm:
    def __init__(self, device: torch.device, timeout_s: float) -> None:
        self.device = device
        self.timeout = datetime.timedelta(seconds=timeout_s)
        self.backend = backend_for(device)
        if not dist.is_initialized():
            if "RANK" in os.environ:
                dist.init_process_group(self.backend, timeout=self.timeout, device_id=device if device.type == "cuda" else None)
            else:  # a single process, not launched by torchrun
                dist.init_process_group(self.backend, store=dist.HashStore(), rank=0, world_size=1,
                                        timeout=self.timeout)
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.workers = (self.rank,)
        self.xp = xp_torch
        self.log = CommLog()

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def split(self, blocks: Sequence[Sequence[int]]) -> TorchGroup:
        blocks = check_partition(blocks, self.world_size)
        mine = None
        for block in blocks:  # every rank must create every group, in the same order
            handle = dist.new_group(list(block), timeout=self.timeout)
            if self.rank in block:
                mine = handle
        return TorchGroup(blocks, mine)

    @staticmethod
    def _pg(group: TorchGroup | None) -> Any:
        return None if group is None else group.handle

    def _size(self, group: TorchGroup | None) -> int:
        return self.world_size if group is None else group.size

    def _run(self, name: str, fn) -> None:
        start = time.perf_counter()
        try:
            fn()
        except (RuntimeError, dist.DistBackendError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CollectiveError(f"{name} failed on rank {self.rank} (a peer died or the "
                                  f"{self.timeout.total_seconds():g} s timeout expired): {first}") from None
        self.log.add_seconds(time.perf_counter() - start)

    def all_reduce(self, x: torch.Tensor, op: str = "sum", group: TorchGroup | None = None,
                   category: str = "method") -> torch.Tensor:
        check_reduce_op(op, x)
        self.log.count("all_reduce", self._size(group), wire.nbytes(x), category)
        out = x.detach().clone()
        if op == "bf16_sum":  # the words handed to the backend as the bfloat16 they are; it sums in bfloat16
            out = out.view(torch.bfloat16)
        red = dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM
        self._run("all_reduce", lambda: dist.all_reduce(out, op=red, group=self._pg(group)))
        if op == "bf16_sum":
            return out.view(torch.uint16)
        return out / self._size(group) if op == "avg" else out

    def all_gather(self, x: torch.Tensor, group: TorchGroup | None = None, sharded: bool = False) -> torch.Tensor:
        p = self._size(group)
        self.log.count("all_gather_shards" if sharded else "all_gather", p, wire.nbytes(x))
        x = x.contiguous()
        outs = [torch.empty_like(x) for _ in range(p)]
        self._run("all_gather", lambda: dist.all_gather(outs, x, group=self._pg(group)))
        return torch.stack(outs)

    def all_gather_v(self, x: torch.Tensor, lengths: Any,
                     group: TorchGroup | None = None) -> tuple[torch.Tensor, np.ndarray]:
        p, n = self._size(group), int(lengths)
        sizes = self.all_gather(torch.tensor([n], dtype=torch.int64, device=x.device), group).reshape(p).tolist()
        self.log.count("all_gather_v", p, n * wire.itemsize(x), lengths=[s * wire.itemsize(x) for s in sizes])
        out = torch.empty(sum(sizes), dtype=x.dtype, device=x.device)
        # gloo's all_gather needs equal sizes; an all-to-all with uneven splits hands every member this
        # rank's message and nothing more.
        send = x[:n].contiguous().repeat(p)
        self._run("all_gather_v", lambda: dist.all_to_all_single(
            out, send, output_split_sizes=sizes, input_split_sizes=[n] * p, group=self._pg(group)))
        return wire.pad_rows(torch.split(out, sizes)), np.asarray(sizes, dtype=np.int64)

    def reduce_scatter(self, x: torch.Tensor, group: TorchGroup | None = None) -> torch.Tensor:
        p, n = self._size(group), x.shape[-1]
        if n % p:
            raise ValueError(f"reduce_scatter needs the last axis ({n}) divisible by the group size {p}")
        self.log.count("reduce_scatter", p, wire.nbytes(x))
        chunks = [c.contiguous() for c in torch.chunk(x, p, dim=-1)]
        out = torch.empty_like(chunks[0])
        self._run("reduce_scatter", lambda: dist.reduce_scatter(out, chunks, group=self._pg(group)))
        return out

    def all_to_all(self, x: torch.Tensor, group: TorchGroup | None = None) -> torch.Tensor:
        p = self._size(group)
        if x.shape[0] != p:
            raise ValueError(f"all_to_all needs shape (group size {p}, ...), got {tuple(x.shape)}")
        self.log.count("all_to_all", p, wire.nbytes(x))
        x = x.contiguous()
        out = torch.empty_like(x)
        self._run("all_to_all", lambda: dist.all_to_all_single(out, x, group=self._pg(group)))
        return out

    def broadcast(self, x: torch.Tensor, src: int = 0, group: TorchGroup | None = None) -> torch.Tensor:
        self.log.count("broadcast", self._size(group), wire.nbytes(x))
        out = x.detach().clone().contiguous()
        root = src if group is None else group.blocks[[self.rank in b for b in group.blocks].index(True)][src]
        self._run("broadcast", lambda: dist.broadcast(out, src=root, group=self._pg(group)))
        return out

    def mean_over_workers(self, x: Any) -> float:
        t = torch.as_tensor(x, dtype=torch.float64, device=self.device).reshape(1)
        return self.all_reduce(t, op="avg", category="metrics").item()
