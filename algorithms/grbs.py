"""The globally randomized block sparsifier (GRBS) of CSER (Xie et al., NeurIPS 2020; ../shared/papers/cser.md).

Compressor only: which coordinates to synchronise this step. Per parameter tensor of the layout, as in
the official code (gluoncv/trainer/*_trainer_v*.py):
    with probability 1/layer the tensor takes part;
    along dim 0 a contiguous block of k0 = max(1, round(n0 / in)) rows starting at k0 * U{0..ceil(n0/k0)-1};
    for tensors of rank >= 2 likewise along dim 1 with `out` (all trailing dims are kept whole).
Vectors (biases, norms) have no dim 1, so the official code sends them at ratio layer * in: so do we.
The random numbers come from a stream seeded by (seed, step, tensor), which every worker derives the
same way, so all workers pick the same block: the block's values are all-reduced and no index is sent.
Expected fraction 1/R with R = layer * in * out when the ratios divide the tensor's dims.

A ratio split is written "layer", "in" or "out" (the whole ratio on that axis) or "LxIxO" (e.g.
"32x1x2", the ImageNet scripts' split of R1 = 64).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from array_api_compat import device as device_of
from thinwire.algorithms import wire
from thinwire.algorithms.comm import Communicator, ThinwireError
from thinwire.algorithms.registry import Layout, segments


class Split(NamedTuple):
    """How a compression ratio R = layer * in_ * out is spread over the three axes of GRBS."""

    layer: int
    in_: int
    out: int

    @property
    def ratio(self) -> int:
        return self.layer * self.in_ * self.out


def parse_split(ratio: int, spec: str, name: str) -> Split:
    """The split `spec` of `ratio`; ValueError naming the parameter `name` if it does not multiply to it."""
    if ratio < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {ratio}")
    axes = {"layer": Split(ratio, 1, 1), "in": Split(1, ratio, 1), "out": Split(1, 1, ratio)}
    if spec in axes:
        return axes[spec]
    parts = spec.split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise ValueError(f"split of {name} must be layer, in, out or LxIxO with integers >= 1 (e.g. 32x1x2), "
                         f"got {spec!r}")
    split = Split(*(int(p) for p in parts))
    if split.ratio != ratio:
        raise ValueError(f"split {spec!r} multiplies to {split.ratio}, not {name}={ratio}")
    return split


class Block(NamedTuple):
    """One tensor's chosen block: rows [r0, r1) of dim 0 and, for rank >= 2, columns [c0, c1) of dim 1."""

    tensor: int
    rows: tuple[int, int]
    cols: tuple[int, int] | None


class BlockSparsifier:
    """GRBS over a layout at one ratio split. Every query is a pure function of (seed, step)."""

    def __init__(self, layout: Layout, split: Split, seed: int, name: str = "ratio") -> None:
        self.split, self.seed = split, seed
        self.segments = segments(layout)
        self.n_params = sum(s.stop - s.start for s in self.segments)
        for s in self.segments:
            dims = s.shape or (1,)
            if split.in_ > dims[0]:
                raise ThinwireError(f"{name}: in={split.in_} exceeds dim 0 ({dims[0]}) of tensor {s.name!r} "
                                    f"{s.shape}; put the ratio on another axis (layer, out or LxIxO)")
            if len(dims) >= 2 and split.out > dims[1]:
                raise ThinwireError(f"{name}: out={split.out} exceeds dim 1 ({dims[1]}) of tensor {s.name!r} "
                                    f"{s.shape}; put the ratio on another axis (layer, in or LxIxO)")

    def blocks(self, step: int) -> list[Block]:
        """The blocks of the tensors that take part at `step`, in layout order."""
        out = []
        for i, s in enumerate(self.segments):
            rng = np.random.default_rng([self.seed, step, i])
            if rng.random() >= 1 / self.split.layer:
                continue
            dims = s.shape or (1,)
            rows = _draw(rng, dims[0], self.split.in_)
            cols = _draw(rng, dims[1], self.split.out) if len(dims) >= 2 else None
            out.append(Block(i, rows, cols))
        return out

    def _size(self, b: Block) -> int:
        shape = self.segments[b.tensor].shape or (1,)
        cols = b.cols[1] - b.cols[0] if b.cols else 1
        return (b.rows[1] - b.rows[0]) * cols * math.prod(shape[2:])

    def count(self, step: int) -> int:
        """How many coordinates are synchronised at `step`."""
        return sum(self._size(b) for b in self.blocks(step))

    def indices(self, step: int) -> np.ndarray:
        """Flat indices (int64, ascending) of the coordinates synchronised at `step`."""
        parts = [np.zeros(0, np.int64)]
        for b in self.blocks(step):
            s = self.segments[b.tensor]
            dims = s.shape or (1,)
            rows = np.arange(*b.rows)
            if b.cols is None:
                parts.append(s.start + rows)
                continue
            inner = math.prod(dims[2:])
            cells = rows[:, None] * dims[1] + np.arange(*b.cols)[None, :]
            parts.append(s.start + (cells[..., None] * inner + np.arange(inner)).ravel())
        return np.concatenate(parts)

    def mask(self, step: int) -> np.ndarray:
        """Dense 0/1 (bool) mask over all parameters of the coordinates synchronised at `step`."""
        m = np.zeros(self.n_params, bool)
        m[self.indices(step)] = True
        return m


def _draw(rng: np.random.Generator, n: int, ratio: int) -> tuple[int, int]:
    k = max(1, round(n / ratio))
    start = k * int(rng.integers(math.ceil(n / k)))
    return start, min(start + k, n)


def gather(x: Any, idx: np.ndarray) -> Any:
    """The chosen coordinates of x (last axis) as one contiguous buffer: what goes on the wire."""
    xp = wire.namespace(x)
    return xp.take(x, xp.asarray(idx, device=device_of(x)), axis=-1)


def scatter(x: Any, idx: np.ndarray, values: Any) -> Any:
    """A copy of x with the coordinates `idx` of the last axis replaced by `values` (inverse of gather)."""
    xp = wire.namespace(x)
    out = xp.asarray(x, copy=True)
    out[..., xp.asarray(idx, device=device_of(x))] = values
    return out


def average(x: Any, idx: np.ndarray, comm: Communicator) -> Any | None:
    """mean over workers of x[..., idx]: one all-reduce of the block values only (no indices: every
    worker knows them). None, and nothing sent, when no coordinate is chosen."""
    if idx.size == 0:
        return None
    return comm.all_reduce(gather(x, idx), op="avg")
