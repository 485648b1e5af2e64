"""SimComm: W workers in one process, the leading axis of every array; collectives act along it.

Byte counts are those one real rank would hand to / get from the collective, so a simulated run
logs exactly what the same method logs under gloo or MPI.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as device_of
from thinwire.algorithms import wire
from thinwire.algorithms.comm import CommLog, check_partition, check_reduce_op


@dataclasses.dataclass(frozen=True)
class SimGroup:
    blocks: tuple[tuple[int, ...], ...]

    @property
    def size(self) -> int:
        return len(self.blocks[0])


class SimComm:
    def __init__(self, world_size: int, xp: Any) -> None:
        self.world_size = world_size
        self.workers = tuple(range(world_size))
        self.xp = xp
        self.log = CommLog()
        self._world = SimGroup((tuple(range(world_size)),))

    def split(self, blocks: Sequence[Sequence[int]]) -> SimGroup:
        return SimGroup(check_partition(blocks, self.world_size))

    def _per_block(self, x: Any, group: SimGroup | None, fn) -> Any:
        """Apply fn(block rows) -> rows for each block and reassemble in rank order."""
        group = group or self._world
        if len(group.blocks) == 1:
            return fn(x)
        xp, dev = self.xp, device_of(x)
        # Each block's rows, joined in block order, then put back in rank order with one gather.
        order = np.concatenate([np.asarray(b) for b in group.blocks])
        joined = xp.concat([fn(xp.take(x, xp.asarray(block, device=dev), axis=0)) for block in group.blocks], axis=0)
        return xp.take(joined, xp.asarray(np.argsort(order), device=dev), axis=0)

    def _check(self, x: Any) -> None:
        if x.shape[0] != self.world_size:
            raise ValueError(f"simulated arrays need the {self.world_size} workers as axis 0, got {x.shape}")

    def all_reduce(self, x: Any, op: str = "sum", group: SimGroup | None = None,
                   category: str = "method") -> Any:
        self._check(x)
        check_reduce_op(op, x)
        xp, p = self.xp, (group or self._world).size
        self.log.count("all_reduce", p, wire.nbytes(x[0]), category)

        def reduce(rows):
            if op == "max":
                total = xp.max(rows, axis=0)
            elif op == "bf16_sum":  # in rank order; gloo's ring adds in another order from 3 ranks on
                total = wire.bf16_sum(rows)
            else:
                total = xp.sum(rows, axis=0)
                if op == "avg":
                    total = total / rows.shape[0]
            return xp.broadcast_to(total[None], rows.shape)

        return self._per_block(x, group, reduce)

    def all_gather(self, x: Any, group: SimGroup | None = None, sharded: bool = False) -> Any:
        self._check(x)
        p = (group or self._world).size
        self.log.count("all_gather_shards" if sharded else "all_gather", p, wire.nbytes(x[0]))
        return self._per_block(x, group, lambda rows: self.xp.broadcast_to(rows[None], (rows.shape[0],) + rows.shape))

    def all_gather_v(self, x: Any, lengths: Any, group: SimGroup | None = None) -> tuple[Any, np.ndarray]:
        """Messages of different lengths: x (W, n) padded rows, lengths (W,). Each worker gets its
        group's rows, zeroed past their lengths, and their lengths: (W, p, n) and (W, p). The log holds
        the first worker's bytes, as rank 0's log in a real run (the ranks' messages differ in size)."""
        self._check(x)
        xp, group = self.xp, group or self._world
        lengths = np.asarray(lengths, dtype=np.int64).reshape(self.world_size)
        block0 = next(b for b in group.blocks if 0 in b)
        item = wire.itemsize(x)
        self.log.count("all_gather", group.size, 8)  # the lengths themselves
        self.log.count("all_gather_v", group.size, int(lengths[0]) * item,
                       lengths=[int(n) * item for n in lengths[list(block0)]])
        inside = xp.asarray(np.arange(x.shape[-1])[None, :] < lengths[:, None], device=device_of(x))
        x = xp.where(inside, x, xp.zeros_like(x))
        gathered = self._per_block(x, group,
                                   lambda rows: xp.broadcast_to(rows[None], (rows.shape[0],) + rows.shape))
        block_of = {r: b for b in group.blocks for r in b}
        return gathered, np.stack([lengths[list(block_of[w])] for w in self.workers])

    def reduce_scatter(self, x: Any, group: SimGroup | None = None) -> Any:
        self._check(x)
        xp, p = self.xp, (group or self._world).size
        n = x.shape[-1]
        if n % p:
            raise ValueError(f"reduce_scatter needs the last axis ({n}) divisible by the group size {p}")
        self.log.count("reduce_scatter", p, wire.nbytes(x[0]))

        def scatter(rows):
            total = xp.sum(rows, axis=0)
            chunks = xp.reshape(total, total.shape[:-1] + (p, n // p))
            return xp.moveaxis(chunks, -2, 0)

        return self._per_block(x, group, scatter)

    def all_to_all(self, x: Any, group: SimGroup | None = None) -> Any:
        self._check(x)
        p = (group or self._world).size
        if x.shape[1] != p:
            raise ValueError(f"all_to_all needs per-worker shape (group size {p}, ...), got {x.shape[1:]}")
        self.log.count("all_to_all", p, wire.nbytes(x[0]))
        return self._per_block(x, group, lambda rows: self.xp.permute_dims(rows, (1, 0) + tuple(range(2, rows.ndim))))

    def broadcast(self, x: Any, src: int = 0, group: SimGroup | None = None) -> Any:
        self._check(x)
        self.log.count("broadcast", (group or self._world).size, wire.nbytes(x[0]))
        return self._per_block(x, group, lambda rows: self.xp.broadcast_to(rows[src][None], rows.shape))

    def mean_over_workers(self, x: Any) -> float:
        # The workers' losses are already in this process: nothing crosses a wire, nothing is logged.
        return float(array_namespace(x).mean(x))
