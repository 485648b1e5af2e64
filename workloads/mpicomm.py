"""MPIComm: the Communicator over mpi4py.

MPI collectives have no timeout of their own, so each is started non-blocking and polled until a
deadline; past it the rank raises a CollectiveError (and the launcher takes the job down). Arrays
may be numpy or CPU torch tensors: torch tensors are handed to MPI as zero-copy numpy views.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import array_api_compat.numpy as xp_numpy
import numpy as np
from array_api_compat import is_torch_array
from thinwire.algorithms import wire
from thinwire.algorithms.comm import CollectiveError, CommLog, check_partition, check_reduce_op


@dataclasses.dataclass(frozen=True)
class MPIGroup:
    blocks: tuple[tuple[int, ...], ...]
    handle: Any  # this rank's sub-communicator

    @property
    def size(self) -> int:
        return len(self.blocks[0])


class MPIComm:
    def __init__(self, timeout_s: float, xp: Any = xp_numpy) -> None:
        from mpi4py import MPI

        self.MPI = MPI
        self.world = MPI.COMM_WORLD
        self.rank = self.world.Get_rank()
        self.world_size = self.world.Get_size()
        self.workers = (self.rank,)
        self.timeout = timeout_s
        self.xp = xp
        self.log = CommLog()
        self._bf16_op: Any = None

    def close(self) -> None:
        if self._bf16_op is not None:
            self._bf16_op.Free()
            self._bf16_op = None

    def abort(self, code: int = 1) -> None:
        self.world.Abort(code)

    def split(self, blocks: Sequence[Sequence[int]]) -> MPIGroup:
        blocks = check_partition(blocks, self.world_size)
        color = next(i for i, b in enumerate(blocks) if self.rank in b)
        key = blocks[color].index(self.rank)
        return MPIGroup(blocks, self.world.Split(color, key))

    def _comm(self, group: MPIGroup | None) -> Any:
        return self.world if group is None else group.handle

    def _wait(self, name: str, request: Any) -> None:
        start = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        spins = 0
        while not request.Test():
            if time.monotonic() > deadline:
                raise CollectiveError(f"{name} on rank {self.rank} timed out after {self.timeout:g} s "
                                      "(a peer died or hangs)")
            spins += 1
            if spins > 1000:  # spin briefly for latency, then stop burning the core a peer may need
                time.sleep(1e-4)
        self.log.add_seconds(time.perf_counter() - start)

    @staticmethod
    def _np(x: Any) -> np.ndarray:
        return np.ascontiguousarray(x.detach().numpy() if is_torch_array(x) else x)

    @staticmethod
    def _like(out: np.ndarray, x: Any) -> Any:
        if is_torch_array(x):
            import torch

            return torch.from_numpy(out)
        return out

    def all_reduce(self, x: Any, op: str = "sum", group: MPIGroup | None = None,
                   category: str = "method") -> Any:
        check_reduce_op(op, x)
        comm = self._comm(group)
        self.log.count("all_reduce", comm.Get_size(), wire.nbytes(x), category)
        send = self._np(x)
        out = np.empty_like(send)
        mpi_op = self._bf16_sum() if op == "bf16_sum" else self.MPI.MAX if op == "max" else self.MPI.SUM
        self._wait("all_reduce", comm.Iallreduce(send, out, op=mpi_op))
        if op == "avg":
            out = out / comm.Get_size()
        return self._like(out, x)

    def _bf16_sum(self) -> Any:
        """MPI's user-defined op that adds uint16 words as bfloat16 (MPI has no bfloat16 type): the same
        rounding as gloo's, and the same sum on 2 ranks; from 3 on, MPI's and gloo's orders of adding differ."""
        if self._bf16_op is None:
            def add(inbuf: Any, inoutbuf: Any, datatype: Any) -> None:
                a, b = (np.frombuffer(buf, dtype=np.uint16) for buf in (inbuf, inoutbuf))
                b[:] = wire.bf16_add(a, b)

            self._bf16_op = self.MPI.Op.Create(add, commute=True)
        return self._bf16_op

    def all_gather(self, x: Any, group: MPIGroup | None = None, sharded: bool = False) -> Any:
        comm = self._comm(group)
        p = comm.Get_size()
        self.log.count("all_gather_shards" if sharded else "all_gather", p, wire.nbytes(x))
        send = self._np(x)
        out = np.empty((p,) + send.shape, dtype=send.dtype)
        self._wait("all_gather", comm.Iallgather(send, out))
        return self._like(out, x)

    def all_gather_v(self, x: Any, lengths: Any, group: MPIGroup | None = None) -> tuple[Any, np.ndarray]:
        comm = self._comm(group)
        p, n = comm.Get_size(), int(lengths)
        sizes = self.all_gather(np.array([n], dtype=np.int64), group).reshape(p)
        self.log.count("all_gather_v", p, n * wire.itemsize(x), lengths=[int(s) * wire.itemsize(x) for s in sizes])
        send = np.ascontiguousarray(self._np(x)[:n])
        out = np.empty(int(sizes.sum()), dtype=send.dtype)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self._wait("all_gather_v", comm.Iallgatherv(send, [out, (sizes.tolist(), offsets.tolist())]))
        return self._like(wire.pad_rows(np.split(out, offsets[1:])), x), sizes

    def reduce_scatter(self, x: Any, group: MPIGroup | None = None) -> Any:
        comm = self._comm(group)
        p, n = comm.Get_size(), x.shape[-1]
        if n % p:
            raise ValueError(f"reduce_scatter needs the last axis ({n}) divisible by the group size {p}")
        self.log.count("reduce_scatter", p, wire.nbytes(x))
        send = self._np(x)
        out = np.empty(send.shape[:-1] + (n // p,), dtype=send.dtype)
        # MPI scatters contiguous blocks, so bring the chunk axis to the front first.
        blocks = np.ascontiguousarray(np.moveaxis(send.reshape(send.shape[:-1] + (p, n // p)), -2, 0))
        self._wait("reduce_scatter", comm.Ireduce_scatter_block(blocks, out, op=self.MPI.SUM))
        return self._like(out, x)

    def all_to_all(self, x: Any, group: MPIGroup | None = None) -> Any:
        comm = self._comm(group)
        p = comm.Get_size()
        if x.shape[0] != p:
            raise ValueError(f"all_to_all needs shape (group size {p}, ...), got {tuple(x.shape)}")
        self.log.count("all_to_all", p, wire.nbytes(x))
        send = self._np(x)
        out = np.empty_like(send)
        self._wait("all_to_all", comm.Ialltoall(send, out))
        return self._like(out, x)

    def broadcast(self, x: Any, src: int = 0, group: MPIGroup | None = None) -> Any:
        comm = self._comm(group)
        self.log.count("broadcast", comm.Get_size(), wire.nbytes(x))
        out = self._np(x).copy()
        self._wait("broadcast", comm.Ibcast(out, root=src))
        return self._like(out, x)

    def mean_over_workers(self, x: Any) -> float:
        t = np.asarray(float(x.item() if hasattr(x, "item") else x)).reshape(1)
        return float(self.all_reduce(t, op="avg", category="metrics")[0])
