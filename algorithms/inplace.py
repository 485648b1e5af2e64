"""Array steps that keep a simulated step's memory near what it must hold, without changing a single bit.

A simulated step works on (W, d) arrays, so every temporary the expression `x - lr * m` builds is W
models large. These helpers do the same IEEE operations in the same order, but into arrays the step has
just made (never the caller's x, state or gradient, which tests and the training loop still hold):

  shared_row(a)       a collective's result that repeats one row for every worker (a broadcast view):
                      that row, shaped to broadcast back, so per-worker arithmetic on it is done once.
  minus_update(x, u)  x - u for an update u that may be one shared row, laid out as before.
  subtract_from(x, t) t <- x - t, in place (one pass, no new array).
  put_last(a, idx, v) a[..., idx] <- v along the last axis, in place; zero_at(a, idx) puts +0.0 there.
  by_row_blocks(fn, a) a row-wise fn (top-k selection) over blocks of a's rows, so that its temporaries
                      (|x|, int64 argpartition indices) are about BLOCK_ELEMENTS large, not (W, d).
"""

from __future__ import annotations

from typing import Any

from array_api_compat import is_torch_array
from thinwire.algorithms import wire

BLOCK_ELEMENTS = 1 << 20  # 4 MB of float32 per block: top-k's temporaries then stay under ~16 MB


def shared_row(a: Any) -> Any:
    """`a` with its broadcast leading axes (stride 0: every worker got the same row) cut to length 1."""
    axes = wire.broadcast_axes(a)
    if not axes:
        return a
    return a[tuple(slice(0, 1) if i in axes else slice(None) for i in range(a.ndim))]


def minus_update(x: Any, update: Any, scratch: bool = False) -> Any:
    """x - update for a model x and an update that may be one shared row: laid out as `x - (a full
    update)` lays it out (numpy: row-major; torch: like x), so what reads the model next (the oracle's
    reductions, the workers' mean) adds in the same order as before. `scratch`: update is the step's
    own full array, which may hold the result when it has that layout."""
    if is_torch_array(x):
        if scratch and update.shape == x.shape and update.stride() == x.stride():
            return subtract_from(x, update)
        return x - update
    import numpy as np

    if scratch and update.shape == x.shape and update.flags.c_contiguous:
        return subtract_from(x, update)
    return np.subtract(x, update, out=np.empty(np.broadcast_shapes(x.shape, update.shape), dtype=x.dtype))


def subtract_from(x: Any, t: Any) -> Any:
    """x - t written into t (t must be a fresh array of the result's shape and dtype)."""
    if is_torch_array(t):
        import torch

        return torch.sub(x, t, out=t)
    import numpy as np

    return np.subtract(x, t, out=t)


def put_last(a: Any, idx: Any, values: Any) -> Any:
    """a[r, idx[r, j]] = values[r, j] for every leading row r, in place; idx (..., k) indexes a's last axis."""
    if is_torch_array(a):
        return a.scatter_(-1, idx.long(), values)
    import numpy as np

    np.put_along_axis(a, idx.astype(np.intp, copy=False), values, axis=-1)
    return a


def zero_at(a: Any, idx: Any) -> Any:
    """a[r, idx[r, j]] = +0.0 for every leading row r, in place: what `where(sent, 0, a)` gives."""
    if is_torch_array(a):
        return a.scatter_(-1, idx.long(), 0.0)
    import numpy as np

    np.put_along_axis(a, idx.astype(np.intp, copy=False), 0, axis=-1)
    return a


def row_blocks(rows: int, width: int) -> list[slice]:
    """Consecutive slices of `rows` rows of `width` elements, each about BLOCK_ELEMENTS (at least one row)."""
    per = max(1, BLOCK_ELEMENTS // max(1, width))
    return [slice(i, min(rows, i + per)) for i in range(0, rows, per)] or [slice(0, 0)]


def by_row_blocks(fn: Any, a: Any) -> Any:
    """fn(a) for a row-wise fn (..., n) -> (..., m), applied to blocks of a's rows and joined: the same
    rows out, with fn's temporaries a block large."""
    width = a.shape[-1]
    rows = a.shape[0] if a.ndim == 2 else 1
    if a.ndim != 2 or rows * width <= BLOCK_ELEMENTS:
        return fn(a)
    return wire.namespace(a).concat([fn(a[s]) for s in row_blocks(rows, width)], axis=0)
