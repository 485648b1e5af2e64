"""Packing payloads into bytes, and the few array operations the array API standard lacks.

Compressed payloads travel as uint8 buffers whose length is exactly the method's bits on the wire:
e.g. top-k sends k int32 indices followed by k values. Everything works on the last axis, so a
leading worker axis (simulator) or none (real run) are both fine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_torch_array
from array_api_compat import device as device_of
from thinwire.algorithms import hostkernels


def _torch():
    import torch

    return torch


def namespace(x: Any) -> Any:
    """The array-API namespace of x (numpy or torch, through array-api-compat)."""
    return array_namespace(x)


def itemsize(x: Any) -> int:
    return x.element_size() if is_torch_array(x) else x.dtype.itemsize


def nbytes(x: Any) -> int:
    return math.prod(x.shape) * itemsize(x)


def to_bytes(x: Any) -> Any:
    """View the last axis of `x` as bytes: shape (..., n) of itemsize s becomes (..., n * s) uint8."""
    if is_torch_array(x):
        if x.numel() == 0:  # torch will not view an empty tensor whose stride is 0 as bytes
            return _torch().empty(x.shape[:-1] + (0,), dtype=_torch().uint8, device=x.device)
        return x.contiguous().view(_torch().uint8)
    return np.ascontiguousarray(x).view(np.uint8)


def broadcast_axes(x: Any) -> tuple[int, ...]:
    """The leading axes (all but the last) along which x repeats one row without copies (stride 0): a
    simulated collective's result, where every worker of a group received the same bytes."""
    strides = x.stride() if is_torch_array(x) else x.strides
    return tuple(i for i in range(x.ndim - 1) if strides[i] == 0 and x.shape[i] > 1)


def _once(x: Any) -> tuple[Any, tuple[int, ...]] | None:
    """(x with its broadcast axes cut to length 1, x's leading shape), or None when it has none."""
    axes = broadcast_axes(x)
    if not axes:
        return None
    return x[tuple(slice(0, 1) if i in axes else slice(None) for i in range(x.ndim))], tuple(x.shape[:-1])


def _broadcast_to(x: Any, shape: tuple[int, ...]) -> Any:
    return x.expand(shape) if is_torch_array(x) else np.broadcast_to(x, shape)


def from_bytes(buf: Any, dtype: Any) -> Any:
    """Inverse of to_bytes for a uint8 buffer; `dtype` is a numpy dtype or a torch dtype. Rows repeated
    by broadcasting are converted once and stay a broadcast (W copies of a gathered payload are not
    materialised)."""
    once = _once(buf)
    if once is not None:
        core, lead = once
        out = from_bytes(core, dtype)
        return _broadcast_to(out, lead + tuple(out.shape[-1:]))
    if is_torch_array(buf):
        size = dtype.itemsize
        if buf.storage_offset() % size or any(s % size for s in buf.stride()[:-1]) or buf.stride()[-1] != 1:
            # A slice of a packed payload: copy into fresh, aligned, row-major storage.
            buf = _torch().empty(buf.shape, dtype=buf.dtype, device=buf.device).copy_(buf)
        return buf.view(dtype)
    return np.ascontiguousarray(buf).view(dtype)


def pack(parts: Sequence[Any]) -> Any:
    """Concatenate the byte views of `parts` along the last axis into one uint8 payload."""
    views = [to_bytes(p) for p in parts]
    if is_torch_array(views[0]):
        return _torch().cat(views, dim=-1)
    return np.concatenate(views, axis=-1)


def unpack(buf: Any, layout: Sequence[tuple[Any, int]]) -> list[Any]:
    """Split a payload made by `pack`; `layout` lists (dtype, count) of each part in order."""
    out, start = [], 0
    for dtype, count in layout:
        size = count * dtype.itemsize
        out.append(from_bytes(buf[..., start:start + size], dtype))
        start += size
    if start != buf.shape[-1]:
        raise ValueError(f"payload of {buf.shape[-1]} bytes does not match layout of {start} bytes")
    return out


def pad_last(x: Any, length: int) -> Any:
    """x zero-padded along its last axis to `length` (x itself when it is that long already)."""
    xp = namespace(x)
    missing = length - x.shape[-1]
    if not missing:
        return x
    return xp.concat([x, xp.zeros(x.shape[:-1] + (missing,), dtype=x.dtype, device=device_of(x))], axis=-1)


def pad_rows(rows: Sequence[Any]) -> Any:
    """Stack 1-D arrays of different lengths into one (len(rows), longest) array, zero after each row's end."""
    width = max((r.shape[0] for r in rows), default=0)
    if is_torch_array(rows[0]):
        torch = _torch()
        out = torch.zeros((len(rows), width), dtype=rows[0].dtype, device=rows[0].device)
    else:
        out = np.zeros((len(rows), width), dtype=rows[0].dtype)
    for i, r in enumerate(rows):
        out[i, :r.shape[0]] = r
    return out


def dtype_like(x: Any, name: str) -> Any:
    """The dtype called `name` ("int32", "float16", ...) in x's library."""
    return getattr(_torch(), name) if is_torch_array(x) else np.dtype(name)


def astype(x: Any, dtype: Any) -> Any:
    """x in `dtype` (x itself when it has it); rows repeated by broadcasting are converted once."""
    once = _once(x) if x.ndim > 1 else None
    if once is not None:
        core, lead = once
        return _broadcast_to(astype(core, dtype), lead + tuple(x.shape[-1:]))
    return x.to(dtype) if is_torch_array(x) else x.astype(dtype, copy=False)


def top_k_indices(x: Any, k: int) -> Any:
    """Indices (int32, ascending) of the k largest-magnitude entries along the last axis."""
    if is_torch_array(x):
        torch = _torch()
        idx = torch.topk(x.abs(), k, dim=-1, sorted=False).indices
        return torch.sort(idx, dim=-1).values.to(torch.int32)
    if hostkernels.ENABLED and type(x) is np.ndarray and x.dtype == np.float32 and x.ndim == 1 and 0 < k < x.shape[0]:
        idx = _top_k_host(x, k)
        if idx is not None:
            return idx
    a = np.abs(x)
    idx = np.argpartition(a, a.shape[-1] - k, axis=-1)[..., a.shape[-1] - k:]
    return np.sort(idx, axis=-1).astype(np.int32)


TOPK_SAMPLE = 16384  # values sampled (strided) to bound the k-th largest |x| from below


def _top_k_host(x: np.ndarray, k: int) -> np.ndarray | None:
    """top_k_indices of a float32 vector in about one pass: a strided sample bounds the k-th largest |x|
    from below, one compiled pass collects the (few) values at or above the bound with their indices,
    in ascending order, and the k-th largest among them is found by np.partition. The k largest are a set
    only when the k-th largest is above the (k+1)-th: where they tie, or the bound lets through fewer than
    k or too many values, or the values are not all finite, None (argpartition then chooses, as before)."""
    n = x.shape[0]
    bits = x.view(np.uint32)
    sample = np.abs(x[::max(1, n // TOPK_SAMPLE)])
    # expected sample count above the k-th largest: k s / n; take the bound where ~3x that (and 8 more) lie
    above = min(sample.shape[0], int(3 * k * sample.shape[0] / n) + 8)
    bound = np.partition(sample, sample.shape[0] - above)[sample.shape[0] - above]
    cap = min(n, 8 * k + 4096)
    idx, vals = np.empty(cap, dtype=np.int32), np.empty(cap, dtype=np.uint32)
    count = hostkernels.candidates_at_least(bits, np.float32(bound).view(np.uint32), idx, vals)
    if count < k:
        return None
    vals = vals[:count]
    kth = np.partition(vals, count - k)[count - k]
    if kth >= hostkernels.INF_BITS:
        return None
    keep = vals >= kth
    if np.count_nonzero(keep) != k:  # a tie at the k-th largest: the set is argpartition's to choose
        return None
    return idx[:count][keep]


def take_last(x: Any, idx: Any) -> Any:
    """x[..., idx] row by row: gather along the last axis."""
    if is_torch_array(x):
        return _torch().gather(x, -1, idx.long())
    return np.take_along_axis(x, idx.astype(np.intp), axis=-1)


def lookup(table: Any, idx: Any) -> Any:
    """table[idx]: a 1-D table read at integer indices of any shape and integer dtype."""
    if is_torch_array(idx):
        return table[idx.long()]
    return table[idx]


def scatter_sum(idx: Any, values: Any, d: int) -> Any:
    """Dense (..., d) arrays from sparse (..., S, k) index/value sets, summed over the S axis.

    Contributions to one coordinate are added in source order, so every library gives the same sum.
    Where idx and values repeat the same sets along a leading axis (broadcast, as every worker of a
    simulated group receives the same gathered payloads), each distinct sum is computed once.
    """
    shared = (set(broadcast_axes(idx[..., 0])) & set(broadcast_axes(values[..., 0]))
              if idx.ndim > 2 and idx.shape[-1] else set())  # k = 0: nothing sent, nothing shared
    if shared:
        cut = tuple(slice(0, 1) if i in shared else slice(None) for i in range(idx.ndim))
        once = scatter_sum(idx[cut], values[cut], d)
        return _broadcast_to(once, tuple(idx.shape[:-2]) + (d,))
    lead = tuple(idx.shape[:-2])
    rows = math.prod(lead)
    if is_torch_array(values):
        torch = _torch()
        out = torch.zeros((rows, d), dtype=values.dtype, device=values.device)
        out.scatter_add_(1, idx.reshape(rows, -1).long(), values.reshape(rows, -1))
        return out.reshape(lead + (d,))
    if idx.shape[-2] == 1 and values.dtype.kind == "f":
        out = _scatter_once(idx.reshape(rows, -1), values.reshape(rows, -1), d)
        if out is not None:
            return out.reshape(lead + (d,))
    flat = (np.arange(rows)[:, None] * d + idx.reshape(rows, -1)).ravel()
    out = np.bincount(flat, weights=values.reshape(-1), minlength=rows * d)
    return out.astype(values.dtype, copy=False).reshape(lead + (d,))


def _scatter_once(idx: np.ndarray, values: np.ndarray, d: int) -> np.ndarray | None:
    """scatter_sum of one set per row (rows, k) whose indices rise strictly within [0, d): every
    coordinate gets at most one value, which bincount would add to 0.0, so the values are written
    (plus 0.0, which turns -0.0 into the +0.0 that sum gives) into zeros: no float64 array of d per row.
    None for any other set (repeated, unordered or out-of-range indices): bincount then decides."""
    if idx.shape[1] and not (idx[:, 0].min() >= 0 and idx[:, -1].max() < d and np.all(idx[:, 1:] > idx[:, :-1])):
        return None
    out = np.zeros((idx.shape[0], d), dtype=values.dtype)
    np.put_along_axis(out, idx.astype(np.intp), values + values.dtype.type(0), axis=-1)
    return out


# bfloat16 as uint16 words (numpy has no bf16): the top half of a float32, rounded to nearest, ties to even,
# as torch's own casts and bf16 arithmetic round. torch arrays go through torch's bfloat16 itself.
BF16_NAN = 0x7FC0  # the NaN torch's scalar rounding gives (its vectorised casts give 0xFFFF: NaN all the same)


def _round_words(f32: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(f32, dtype=np.float32).view(np.uint32)
    words = ((bits + (((bits >> 16) & 1) + 0x7FFF)) >> 16).astype(np.uint16)
    return np.where(np.isnan(f32), np.uint16(BF16_NAN), words)


def _widen(words: np.ndarray) -> np.ndarray:
    return (np.ascontiguousarray(words, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def to_bf16_words(x: Any) -> Any:
    """x rounded to bfloat16, as uint16 words; a float64 x is rounded to float32 first, as torch's cast
    from float64 does (so twice)."""
    if is_torch_array(x):
        torch = _torch()
        return x.to(torch.float32).to(torch.bfloat16).view(torch.uint16)
    with np.errstate(over="ignore"):  # beyond float32's range: inf, as torch's cast
        return _round_words(np.asarray(x, dtype=np.float32))


def from_bf16_words(words: Any, dtype: Any) -> Any:
    """The values of bfloat16 words, exactly, in `dtype` (a float dtype of the words' library)."""
    if is_torch_array(words):
        return words.view(_torch().bfloat16).to(dtype)
    with np.errstate(invalid="ignore"):  # signalling NaNs stay NaN
        return _widen(words).astype(dtype)


def bf16_divide(words: Any, divisor: float) -> Any:
    """words / divisor in bfloat16 (computed in float32, rounded once), as torch's bf16 `div_` does."""
    if is_torch_array(words):
        torch = _torch()
        return words.view(torch.bfloat16).div(divisor).view(torch.uint16)
    return _round_words(_widen(words) / np.float32(divisor))


def bf16_add(a: Any, b: Any) -> Any:
    """a + b of bfloat16 words in bfloat16 (the float32 sum rounded once), as torch's bf16 `+` does."""
    if is_torch_array(a):
        torch = _torch()
        return (a.view(torch.bfloat16) + b.view(torch.bfloat16)).view(torch.uint16)
    with np.errstate(invalid="ignore", over="ignore"):  # overflow is inf, inf - inf NaN, as in torch
        return _round_words(_widen(a) + _widen(b))


def bf16_sum(rows: Any) -> Any:
    """The bfloat16 sum of the words along axis 0, added in row order, each partial sum rounded."""
    total = rows[0]
    for row in rows[1:]:
        total = bf16_add(total, row)
    return total
