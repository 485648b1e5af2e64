"""The Communicator protocol every method is written against, and the CommLog every call is recorded in.

A method is SPMD code for one worker. In the simulator one "worker" call acts for all W workers at
once: every array carries the workers as its leading axis. In a real run the arrays have no worker
axis. The collectives are written so the same method code works in both: a collective that adds an
axis (all_gather) inserts it right after the worker axis, i.e. at position -(x.ndim) of the per-worker
shape.

Bytes are counted where a buffer is handed to a collective: `sent` is the size of the buffer a rank
hands in, `recv` the size of the buffer it gets back, by one rule for every communicator
(`collective_bytes`, recorded by `CommLog.count`). How many bytes cross each link for a given
collective algorithm is the performance model's business (simulators/perfmodel.py, linkvolume.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable


class ThinwireError(Exception):
    """An error a user can act on: bad input, an impossible parameter, a peer that died or timed out."""


class CollectiveError(ThinwireError):
    """A collective failed: a peer died, the network broke, or the timeout expired."""


# all_reduce's ops: "bf16_sum" adds bfloat16 values carried as uint16 words (numpy has no bfloat16), in
# bfloat16 arithmetic (each partial sum rounded to nearest even), as gloo and NCCL sum torch.bfloat16.
REDUCE_OPS = ("sum", "avg", "max", "bf16_sum")


def check_reduce_op(op: str, x: Any) -> None:
    """A ValueError unless `op` is an all_reduce op and x's dtype suits it (bf16_sum: uint16 words)."""
    if op not in REDUCE_OPS:
        raise ValueError(f"all_reduce op must be one of {', '.join(REDUCE_OPS)}, got {op!r}")
    if op == "bf16_sum" and "uint16" not in str(x.dtype):
        raise ValueError(f"all_reduce op bf16_sum takes bfloat16 words as uint16, got {x.dtype}")


@dataclasses.dataclass(frozen=True)
class CommRecord:
    step: int
    op: str
    group_size: int
    sent: int  # bytes this rank handed to the collective
    recv: int  # bytes this rank got back
    category: str  # "method": the method's traffic; "metrics": logging only, never counted as method bytes


# op -> bytes a rank gets back, from the group size p and the bytes it handed in
RECEIVED: dict[str, Callable[[int, int], int]] = {
    "all_reduce": lambda p, sent: sent,
    "all_gather": lambda p, sent: p * sent,
    "all_gather_shards": lambda p, sent: p * sent,
    "reduce_scatter": lambda p, sent: sent // p,
    "all_to_all": lambda p, sent: sent,
    "broadcast": lambda p, sent: sent,
    "send": lambda p, sent: sent,
}


def collective_bytes(op: str, group_size: int, sent: int, lengths: Sequence[int] | None = None) -> tuple[int, int]:
    """(sent, recv) bytes of one rank's call of `op` over `group_size` ranks, `sent` bytes handed in.
    all_gather_v takes every member's message bytes instead (`lengths`, this rank's among them): a rank
    gets all of them back."""
    if op == "all_gather_v":
        if lengths is None:
            raise ValueError("all_gather_v needs every member's message bytes (lengths)")
        return int(sent), int(sum(int(n) for n in lengths))
    if op not in RECEIVED:
        raise ValueError(f"no byte-counting rule for collective {op!r}; known: {', '.join(RECEIVED)}, all_gather_v")
    return int(sent), int(RECEIVED[op](int(group_size), int(sent)))


class CommLog:
    """Every collective call, in call order. `step` is set by the training loop before each step."""

    COLUMNS = ("step", "op", "group_size", "sent", "recv", "category")

    def __init__(self) -> None:
        self.records: list[CommRecord] = []
        self.step = 0
        self.seconds: dict[int, float] = {}  # measured seconds inside "method" collectives, per step

    def add_seconds(self, seconds: float) -> None:
        """Charge the wall time of the collective just recorded to its step (method traffic only)."""
        if self.records and self.records[-1].category == "method":
            self.seconds[self.step] = self.seconds.get(self.step, 0.0) + seconds

    def record(self, op: str, group_size: int, sent: int, recv: int, category: str = "method") -> None:
        self.records.append(CommRecord(self.step, op, int(group_size), int(sent), int(recv), category))

    def count(self, op: str, group_size: int, sent: int, category: str = "method",
              lengths: Sequence[int] | None = None) -> None:
        """Record a call of `op` with the bytes `collective_bytes` gives; every communicator logs this way."""
        self.record(op, group_size, *collective_bytes(op, group_size, sent, lengths), category)

    def step_bytes(self, step: int, category: str = "method") -> tuple[int, int]:
        """(sent, recv) bytes of one step's calls in one category."""
        sent = recv = 0
        for r in reversed(self.records):
            if r.step < step:
                break
            if r.step == step and r.category == category:
                sent += r.sent
                recv += r.recv
        return sent, recv

    def rows(self) -> list[tuple]:
        return [dataclasses.astuple(r) for r in self.records]


class Group(Protocol):
    """A partition of the ranks into blocks; a collective on a group acts within each rank's block."""

    blocks: tuple[tuple[int, ...], ...]

    @property
    def size(self) -> int: ...


def check_partition(blocks: Sequence[Sequence[int]], world_size: int) -> tuple[tuple[int, ...], ...]:
    """Validate that `blocks` partitions range(world_size) into equal-sized blocks."""
    blocks = tuple(tuple(int(r) for r in b) for b in blocks)
    flat = sorted(r for b in blocks for r in b)
    if flat != list(range(world_size)):
        raise ThinwireError(f"process groups {blocks} do not partition ranks 0..{world_size - 1}")
    if len({len(b) for b in blocks}) != 1:
        raise ThinwireError(f"process groups {blocks} are not all the same size")
    return blocks


@runtime_checkable
class Communicator(Protocol):
    """Collectives the methods need. `x` is one worker's array (with a leading worker axis in the simulator)."""

    world_size: int
    workers: tuple[int, ...]  # the ranks whose state this process holds: all of them in the simulator
    log: CommLog
    xp: Any

    def all_reduce(self, x: Any, op: str = "sum", group: Group | None = None,
                   category: str = "method") -> Any:
        """Reduce over the group with `op` (REDUCE_OPS); every member gets the result."""

    def all_gather(self, x: Any, group: Group | None = None, sharded: bool = False) -> Any:
        """Stack every group member's `x`: per-worker shape (n...) becomes (group size, n...).
        `sharded`: x is this rank's 1/p share of one vector (1-bit Adam's server chunk, a ZeRO weight
        shard), so on p' ranks each share would be p/p' as large; logged as op "all_gather_shards" so
        the performance model can replay it on another world size. Otherwise (top-k entries, scales)
        each rank's payload does not depend on p."""

    def all_gather_v(self, x: Any, lengths: Any, group: Group | None = None) -> tuple[Any, Any]:
        """All-gather messages of different lengths. Per worker, `x` is a 1-D buffer whose first
        `lengths` items are the message (the rest is padding, never sent), `lengths` one host integer
        (an array over the worker axis in the simulator). Returns (gathered, lengths): per worker,
        gathered (group size, m) holds member j's message in the first lengths[j] items of row j, zero
        after; lengths (group size,) as a numpy int64 array. Only the real lengths cross the wire, after
        an all-gather of the lengths themselves (8 bytes per rank, logged as the all_gather it is).
        Where the simulator must log one rank's bytes, it logs the first worker's: what rank 0 logs."""

    def reduce_scatter(self, x: Any, group: Group | None = None) -> Any:
        """Sum over the group, then keep this rank's 1/p chunk of the last axis."""

    def all_to_all(self, x: Any, group: Group | None = None) -> Any:
        """Per-worker shape (p, m...): chunk j goes to group member j; chunk j of the result came from j."""

    def broadcast(self, x: Any, src: int = 0, group: Group | None = None) -> Any: ...

    def split(self, blocks: Sequence[Sequence[int]]) -> Group: ...

    def mean_over_workers(self, x: Any) -> float:
        """Mean of a per-worker scalar over all workers, as a Python float (a "metrics" call)."""
