"""Gradient quantizers (compressors in the sense of algorithms/compress.py), bucketed along the last axis.

A vector of n values is cut into ceil(n / bucket_size) buckets of bucket_size consecutive values;
the last bucket is short when bucket_size does not divide n (its statistics use its own values only,
and nothing is padded on the wire). Each bucket sends a few float32 numbers (scale or levels) and
every value sends a b-bit code, so a payload is exactly

    payload_bytes(n) = 4 * floats_per_bucket * ceil(n / bucket_size) + ceil(n * b / 8)

bytes: the float32 numbers of all buckets first, then the codes packed by `bits.pack`.

| name        | per value b (bits)        | floats per bucket | levels of a bucket                | unbiased |
|-------------|---------------------------|-------------------|-----------------------------------|----------|
| scaled-sign | 1                         | 1: mean abs       | +-mean|x|                         | no       |
| qsgd        | ceil(log2(s+1)) + 1       | 1: l2 norm        | +-norm * l / s, l = 0..s          | yes      |
| nuqsgd      | ceil(log2(s+1)) + 1       | 1: l2 norm        | +-norm * {0, 2^-(s-1), .., 1/2, 1} | yes     |
| terngrad    | 2                         | 1: max abs        | {-max, 0, +max}                   | yes      |
| bingrad     | 1                         | 2: b1 <= b2       | 2-level Lloyd-Max                 | no       |
| orq         | ceil(log2(s+1))           | s + 1: b_0..b_s   | variance-optimal, b_0 = min, b_s = max | yes |

Stochastic quantizers round x between its two neighbouring levels lo <= x <= hi, to hi with
probability (x - lo) / (hi - lo): code = lower + [u < (x - lo) / (hi - lo)] for a uniform u in [0, 1)
that the caller draws (so simulator and real ranks can draw the same numbers). Without uniforms
(u = None) they round to the nearest level: deterministic and biased. Every float sent is rounded
to float32 before the codes are chosen, and the codes are chosen against the rounded numbers;
scales and outer levels are rounded outward, so every value still lies between its two levels and
the rounding stays unbiased (up to the float resolution of the probability itself: a value within
1e-16 of the level spacing below hi is always rounded up).

References: scaled sign as in EF-SignSGD (Karimireddy et al. 2019); QSGD (Alistarh et al. 2017);
NUQSGD (Ramezani-Kebrya et al., JMLR 2021, arXiv 1908.06077);
TernGrad (Wen et al. 2017; its gradient clipping and layer-wise sharing of the scale are not
reproduced here); BinGrad and ORQ (Xu, Huo, Huang, arXiv 2002.11082; see the classes).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from array_api_compat import device as device_of
from array_api_compat import is_numpy_array
from thinwire.algorithms import bits, hostkernels, wire

BLOCK_VALUES = 1 << 16  # values a host codec works through at a time (a few of its temporaries fit in L2)
MAX_SWEEPS = 100  # cap on BinGrad's Lloyd iterations and ORQ's coordinate-descent sweeps


def to_float32(v: Any, direction: int = 0) -> Any:
    """v rounded to a float32 value, returned in v's dtype: to nearest (0), up (+1) or down (-1)."""
    xp = wire.namespace(v)
    r = wire.astype(v, wire.dtype_like(v, "float32"))
    if direction:
        back = wire.astype(r, v.dtype)
        towards = xp.full_like(r, direction * math.inf)
        r = xp.where(back * direction < v * direction, xp.nextafter(r, towards), r)
    return wire.astype(r, v.dtype)


def stochastic_codes(pos: Any, u: Any, top: int) -> Any:
    """clip(floor(pos) + [u < frac(pos)], 0, top) as uint8: pos rounded up with probability frac(pos).
    Overwrites pos (a temporary of the caller's): the integers stay in pos's float dtype, exact, until
    the one cast to uint8."""
    xp = wire.namespace(pos)
    low = xp.floor(pos)
    pos -= low
    low += xp.astype(u < pos, low.dtype)
    return xp.astype(xp.clip(low, 0, top), xp.uint8)


def max_abs(xb: Any) -> Any:
    """max |x| per bucket (..., nb, 1), as max(max x, -min x): no |x| temporary. (+ 0 turns an all-zero
    bucket's -0 into the +0 that max |x| gives.)"""
    xp = wire.namespace(xb)
    return xp.maximum(xp.max(xb, axis=-1, keepdims=True), -xp.min(xb, axis=-1, keepdims=True)) + 0.0


def sign_bit(xb: Any, position: int) -> Any:
    """[x < 0] << position, as uint8."""
    xp = wire.namespace(xb)
    return xp.astype(xb < 0, xp.uint8) << position


def safe_divisor(v: Any) -> Any:
    """v, with zeros replaced by ones (for dividing by a scale that may be zero)."""
    xp = wire.namespace(v)
    return xp.where(v > 0, v, xp.ones_like(v))


@dataclasses.dataclass(frozen=True)
class Quantizer:
    """A bucketed quantizer. Subclasses give the code width, floats per bucket, _encode and _decode."""

    levels: int = 4  # s: the number of levels (QSGD: per sign; ORQ: s + 1 levels in all)
    bucket_size: int = 512

    name: ClassVar[str]
    unbiased: ClassVar[bool]
    stochastic: ClassVar[bool]  # draws on the caller's uniforms
    host_mode: ClassVar[int | None] = None  # hostkernels.one_scale_encode's mode, for one-scale quantizers

    def __post_init__(self) -> None:
        if self.levels < 1:
            raise ValueError(f"levels (s) must be >= 1, got {self.levels}")
        if self.bucket_size < 1:
            raise ValueError(f"bucket_size must be >= 1, got {self.bucket_size}")
        if self.bits > 8:
            raise ValueError(f"{self.name} with s = {self.levels} needs {self.bits} bits per code; at most 8 fit")

    @property
    def bits(self) -> int:
        raise NotImplementedError

    @property
    def floats(self) -> int:
        """float32 numbers sent per bucket."""
        raise NotImplementedError

    def payload_bytes(self, n: int, itemsize: int | None = None) -> int:
        """Bytes of the payload of n values; float32 numbers and codes whatever the values' `itemsize`."""
        return 4 * self.floats * math.ceil(n / self.bucket_size) + bits.packed_bytes(n, self.bits)

    def _shape(self, n: int) -> tuple[int, int]:
        """(buckets, values per full bucket) of an n-vector."""
        size = max(1, min(self.bucket_size, n))
        return math.ceil(n / size), size

    def _blocks(self, x: Any, n: int) -> list[tuple[int, int]]:
        """[start, stop) value ranges of the last axis, whole buckets each, that the codec works through one
        at a time: for numpy about BLOCK_VALUES values (over all leading rows), so the temporaries of
        its several passes stay in cache; for torch (CPU or GPU) one block, as torch's per-call cost and
        indexing make small blocks slow (ORQ 20x slower in blocks on a CPU). Every kernel works bucket by
        bucket, so blocks change the work's order, not its result. A block's code count is a multiple
        of 8, so its packed codes are whole bytes and the blocks' bytes concatenate to the payload's."""
        nb, size = self._shape(n)
        rows = max(1, math.prod(x.shape[:-1]))
        per = nb if not is_numpy_array(x) else -(-max(1, BLOCK_VALUES // (rows * size)) // 8) * 8
        return [(start * size, min(n, (start + per) * size)) for start in range(0, nb, per)]

    def compress(self, x: Any, uniforms: Any = None) -> Any:
        """The uint8 payload of x (..., n); `uniforms` (same shape, in [0, 1)) drive stochastic rounding."""
        if _host_kernel_applies(x, uniforms):
            rows = np.ascontiguousarray(x).reshape(-1, x.shape[-1])
            u = None if uniforms is None else np.ascontiguousarray(uniforms, dtype=np.float32).reshape(rows.shape)
            payload = self._host_compress(rows, u)
            if payload is not None:
                return payload.reshape(tuple(x.shape[:-1]) + (payload.shape[-1],))
        xp = wire.namespace(x)
        lead, n = tuple(x.shape[:-1]), x.shape[-1]
        size = self._shape(n)[1]
        if uniforms is not None:
            uniforms = wire.astype(uniforms, x.dtype)
        floats, packed = [], []
        for start, stop in self._blocks(x, n):
            nb = -(-(stop - start) // size)
            xb = xp.reshape(wire.pad_last(x[..., start:stop], nb * size), lead + (nb, size))
            mask = _valid(nb, size, stop - start, x)
            if uniforms is None:
                ub = xp.full_like(xb, 0.5)
            else:
                ub = xp.reshape(wire.pad_last(uniforms[..., start:stop], nb * size), lead + (nb, size))
            f, codes = self._encode(xb, mask, ub)
            floats.append(wire.astype(xp.reshape(f, lead + (nb * self.floats,)), wire.dtype_like(x, "float32")))
            packed.append(bits.pack(xp.reshape(codes, lead + (nb * size,))[..., :stop - start], self.bits))
        return wire.pack(floats + packed)

    def decompress(self, payload: Any, n: int, dtype: Any) -> Any:
        """x_hat (..., n) in `dtype` from payloads (..., payload_bytes(n))."""
        if (hostkernels.ENABLED and type(payload) is np.ndarray and n > 0 and isinstance(dtype, (np.dtype, type))
                and np.dtype(dtype) in (np.float32, np.float64) and payload.shape[-1] == self.payload_bytes(n)):
            return self._host_decompress(payload, n, np.dtype(dtype))
        xp = wire.namespace(payload)
        lead = tuple(payload.shape[:-1])
        nb, size = self._shape(n)
        floats, packed = wire.unpack(payload, [(wire.dtype_like(payload, "float32"), nb * self.floats),
                                               (wire.dtype_like(payload, "uint8"), bits.packed_bytes(n, self.bits))])
        levels = wire.astype(xp.reshape(floats, lead + (nb, self.floats)), dtype)
        blocks = self._blocks(payload, n)
        out = None if len(blocks) == 1 else xp.empty(lead + (n,), dtype=dtype, device=device_of(payload))
        for start, stop in blocks:
            b0, b1 = start // size, -(-stop // size)
            codes = bits.unpack(packed[..., start * self.bits // 8:bits.packed_bytes(stop, self.bits)], self.bits,
                                stop - start)
            codes = xp.reshape(wire.pad_last(codes, (b1 - b0) * size), lead + (b1 - b0, size))
            x_hat = xp.reshape(self._decode(levels[..., b0:b1, :], codes), lead + ((b1 - b0) * size,))
            if out is None:
                return x_hat[..., :n]
            out[..., start:stop] = x_hat[..., :stop - start]
        return out

    def _host_compress(self, rows: np.ndarray, u: np.ndarray | None) -> np.ndarray | None:
        """The payloads (R, payload_bytes(n)) of float32 rows (R, n) by the compiled host kernels, or None
        where they do not apply (the array-API path then computes them). One-scale quantizers here."""
        if self.host_mode is None:
            return None
        nb, size = self._shape(rows.shape[1])
        out, floats, packed = _host_payload(rows.shape, nb, 1, self.payload_bytes(rows.shape[1]))
        cell, buf = np.zeros(1, dtype=np.float32), np.empty(size, dtype=np.float32)
        ok = hostkernels.one_scale_encode(rows, rows.view(np.uint32), rows if u is None else u, u is not None, size,
                                          self.host_mode, self.levels, self.bits, floats[..., 0], packed, buf,
                                          hostkernels.pairwise_stack(), hostkernels.chunk_codes(size),
                                          (cell, cell.view(np.uint32)), buf.view(np.uint32))
        return _host_finish(out, floats) if ok else None

    def _host_decompress(self, payload: np.ndarray, n: int, dtype: np.dtype) -> np.ndarray:
        """`decompress` of a numpy payload by the compiled host kernels: each value read from its
        bucket's floats and its code in one pass."""
        nb, size = self._shape(n)
        flat = np.ascontiguousarray(payload).reshape(-1, payload.shape[-1])
        head = 4 * nb * self.floats
        floats = np.ascontiguousarray(flat[:, :head]).view(np.float32).reshape(-1, nb, self.floats)
        floats = floats.astype(dtype, copy=False)
        out = np.empty((flat.shape[0], n), dtype=dtype)
        if type(self)._decode is Quantizer._decode:  # one scale per bucket times a per-code unit value
            hostkernels.scale_decode(flat[:, head:], floats[..., 0], self._unit_values(floats), size, self.bits, out,
                                     hostkernels.chunk_codes(size))
        elif not hostkernels.table_decode(flat[:, head:], floats, size, self.bits, out, hostkernels.chunk_codes(size)):
            raise IndexError(f"a {self.name} code beyond its bucket's {self.floats} levels")
        return out.reshape(tuple(payload.shape[:-1]) + (n,))

    def _encode(self, xb: Any, mask: Any, u: Any) -> tuple[Any, Any]:
        """Buckets (..., nb, size), zero-padded, with their validity mask (nb, size) and uniforms ->
        (floats (..., nb, floats) already float32-representable, integer codes (..., nb, size))."""
        raise NotImplementedError

    def _decode(self, floats: Any, codes: Any) -> Any:
        """x_hat of buckets (..., nb, size) from their floats (..., nb, floats) and codes: by default a
        one-scale quantizer's floats * (the value of the code for a unit scale), read from a table."""
        return floats * wire.lookup(self._unit_values(floats), codes)

    def _unit_values(self, like: Any) -> Any:
        """The value of each code 0 .. 2^b - 1 for a unit scale, in like's dtype (one-scale quantizers)."""
        raise NotImplementedError

    def _all_codes(self, like: Any) -> Any:
        """Every code 0 .. 2^b - 1 (uint8), on like's device: what `_unit_values` evaluates."""
        xp = wire.namespace(like)
        return xp.arange(2 ** self.bits, dtype=xp.uint8, device=device_of(like))


def _host_kernel_applies(x: Any, uniforms: Any) -> bool:
    """Whether the compiled host kernels take this call: numba present, x a float32 numpy array with
    values, uniforms (if any) numpy too. Everything else (torch tensors, CPU or CUDA, other dtypes)
    takes the array-API path."""
    return (hostkernels.ENABLED and type(x) is np.ndarray and x.dtype == np.float32 and x.ndim >= 1
            and x.shape[-1] > 0 and x.size > 0 and (uniforms is None or type(uniforms) is np.ndarray))


def _host_payload(shape: tuple[int, int], nb: int, floats: int, nbytes: int):
    """(payload (R, nbytes) uint8, a float32 scratch (R, nb, floats) for its head, its packed codes (R, rest))
    for the host kernels to write into; `_host_finish` copies the head in (a payload row need not start
    4-aligned, so the kernels do not write floats into it)."""
    out = np.empty((shape[0], nbytes), dtype=np.uint8)
    return out, np.empty((shape[0], nb, floats), dtype=np.float32), out[:, 4 * nb * floats:]


def _host_finish(out: np.ndarray, head: np.ndarray) -> np.ndarray:
    out[:, :head[0].size * 4] = head.reshape(out.shape[0], -1).view(np.uint8)
    return out


def _valid(nb: int, size: int, n: int, like: Any) -> Any:
    """The validity mask (nb, size) of n values cut into nb buckets of `size`: only the last bucket can
    be short, so only its row is compared."""
    xp = wire.namespace(like)
    last = xp.arange(size, device=device_of(like)) < n - (nb - 1) * size
    return xp.concat([xp.ones((nb - 1, size), dtype=xp.bool, device=device_of(like)), last[None, :]], axis=0)


def _count(xb: Any, mask: Any) -> Any:
    """Real values per bucket, (nb, 1) in xb's dtype: full buckets, then the last one's count."""
    xp = wire.namespace(xb)
    full = xp.full((mask.shape[0] - 1, 1), mask.shape[1], dtype=xb.dtype, device=device_of(xb))
    return xp.concat([full, xp.sum(xp.astype(mask[-1:], xb.dtype), axis=-1, keepdims=True)], axis=0)


class ScaledSign(Quantizer):
    """sign(x) * mean|x| per bucket: the compressor of EF-SignSGD. 1 bit per value (0 counts as +)."""

    name, unbiased, stochastic = "scaled-sign", False, False
    bits = 1  # type: ignore[assignment]
    floats = 1  # type: ignore[assignment]

    def _encode(self, xb, mask, u):
        xp = wire.namespace(xb)
        scale = to_float32(xp.sum(xp.abs(xb), axis=-1, keepdims=True) / _count(xb, mask))
        return scale, xb >= 0

    def _unit_values(self, like):
        return 2 * wire.astype(self._all_codes(like), like.dtype) - 1


class QSGD(Quantizer):
    """QSGD (Alistarh et al. 2017): x_i = norm * sign(x_i) * l_i / s, l_i in 0..s drawn by stochastic
    rounding of s |x_i| / norm, with norm the bucket's l2 norm. Code: the level in the low
    ceil(log2(s+1)) bits, the sign (1 = negative) in the top bit. (The paper's Elias coding of the
    levels is not used: every code has the same width.)"""

    name, unbiased, stochastic = "qsgd", True, True
    host_mode = hostkernels.QSGD

    @property
    def bits(self) -> int:
        return self.levels.bit_length() + 1  # ceil(log2(s + 1)) + 1

    floats = 1  # type: ignore[assignment]

    @staticmethod
    def _norm(magnitude: Any) -> Any:
        """Each bucket's l2 norm from |x| (..., nb, size), rounded up to float32: so norm >= max|x| and
        |x| / norm <= 1."""
        xp = wire.namespace(magnitude)
        # Scaled by max|x| so squares neither underflow nor overflow.
        big = xp.max(magnitude, axis=-1, keepdims=True)
        scaled = magnitude / safe_divisor(big)
        scaled *= scaled
        return to_float32(big * xp.sqrt(xp.sum(scaled, axis=-1, keepdims=True)), +1)

    def _encode(self, xb, mask, u):
        xp = wire.namespace(xb)
        pos = xp.abs(xb)
        norm = self._norm(pos)
        pos /= safe_divisor(norm)
        pos *= self.levels
        return norm, stochastic_codes(pos, u, self.levels) | sign_bit(xb, self.bits - 1)

    def _unit_values(self, like):
        codes = self._all_codes(like)
        level = wire.astype(codes & (2 ** (self.bits - 1) - 1), like.dtype)
        sign = 1 - 2 * wire.astype(codes >> (self.bits - 1), like.dtype)
        return (level / self.levels) * sign


class NUQSGD(QSGD):
    """NUQSGD (Ramezani-Kebrya et al. 2021): QSGD with exponentially spaced levels. |x_i| / norm is
    rounded stochastically between its two neighbours among l_0 = 0, l_j = 2^(j - s) (j = 1..s), i.e.
    0, 2^-(s-1), ..., 1/2, 1, so small values, the bulk of a gradient bucket, get finer levels. Same
    code as QSGD (level index j in the low bits, sign in the top bit) and the same width at equal s.
    `levels` counts the nonzero levels, as QSGD's s does (the NUQSGD paper writes its levels as
    0, 2^-s', ..., 1/2, 1, so s' = s - 1 [notation not checked against the paper]). With s = 1 the
    levels are {0, 1}: NUQSGD and QSGD coincide at 2 code bits."""

    name, unbiased, stochastic = "nuqsgd", True, True
    host_mode = hostkernels.NUQSGD

    def _level(self, j: Any, dtype: Any) -> Any:
        """l_j for integer level indices j (0 for j = 0): exact powers of two."""
        xp = wire.namespace(j)
        power = xp.astype(j - self.levels, dtype)
        return xp.where(j > 0, 2.0 ** power, xp.zeros_like(power))

    def _tables(self, like: Any) -> tuple[Any, Any]:
        """l_j and l_{min(j+1, s)} - l_j for j = 0..s, in like's dtype: read by index instead of computed
        per value (the same numbers: each entry is computed by the same operations)."""
        xp = wire.namespace(like)
        j = xp.arange(self.levels + 1, device=device_of(like))
        low = self._level(j, like.dtype)
        return low, self._level(xp.clip(j + 1, 0, self.levels), like.dtype) - low

    def _encode(self, xb, mask, u):
        xp = wire.namespace(xb)
        r = xp.abs(xb)
        norm = self._norm(r)
        r /= safe_divisor(norm)
        # j: index of the highest level <= r, by comparison rather than log2 (exact at the levels).
        j = xp.zeros(xb.shape, dtype=xp.uint8, device=device_of(xb))
        for k in range(1, self.levels + 1):
            j += xp.astype(r >= 2.0 ** (k - self.levels), xp.uint8)
        low, width = self._tables(xb)
        low, width = wire.lookup(low, j), wire.lookup(width, j)
        frac = xp.where(width > 0, (r - low) / safe_divisor(width), xp.zeros_like(r))
        level = j + xp.astype(u < frac, xp.uint8)
        return norm, level | sign_bit(xb, self.bits - 1)

    def _unit_values(self, like):
        codes = self._all_codes(like)
        sign = 1 - 2 * wire.astype(codes >> (self.bits - 1), like.dtype)
        j = wire.astype(codes & (2 ** (self.bits - 1) - 1), wire.dtype_like(like, "int64"))
        return self._level(j, like.dtype) * sign


class TernGrad(Quantizer):
    """TernGrad (Wen et al. 2017): x_i = max|x| * sign(x_i) * b_i, b_i ~ Bernoulli(|x_i| / max|x|).
    Codes 0, 1, 2 stand for 0, +max, -max."""

    name, unbiased, stochastic = "terngrad", True, True
    host_mode = hostkernels.TERNGRAD
    bits = 2  # type: ignore[assignment]
    floats = 1  # type: ignore[assignment]

    def _encode(self, xb, mask, u):
        xp = wire.namespace(xb)
        pos = xp.abs(xb)
        scale = to_float32(xp.max(pos, axis=-1, keepdims=True), +1)
        pos /= safe_divisor(scale)
        kept = stochastic_codes(pos, u, 1)
        return scale, kept << sign_bit(xb, 0)  # 0, 1 = +max, 2 = -max

    def _unit_values(self, like):
        xp = wire.namespace(like)
        codes = self._all_codes(like)
        c = wire.astype(codes, like.dtype)
        return xp.where(codes == 2, -xp.ones_like(c), c)


class BinGrad(Quantizer):
    """BinGrad (Xu, Huo, Huang, arXiv 2002.11082): two levels b1 <= b2 per bucket minimising the squared
    error, i.e. the 2-level Lloyd-Max condition b1 = mean{x <= tau}, b2 = mean{x > tau},
    tau = (b1 + b2) / 2 [unverified: derived in papers/saef_quant.md from the abstract's setting, not
    checked against the paper]. Solved by Lloyd's iteration (1-D 2-means) started from tau = 0 until
    the partition stops changing (at most MAX_SWEEPS iterations). The first iteration gives the levels
    mean{x <= 0}, mean{x > 0}, already no worse than scaled sign's +-mean|x| on the same partition,
    and no iteration increases the error: so BinGrad's squared error is never above scaled sign's
    (up to the float32 rounding of the levels). Code 1 = b2. Biased, deterministic."""

    name, unbiased, stochastic = "bingrad", False, False
    bits = 1  # type: ignore[assignment]
    floats = 2  # type: ignore[assignment]

    def _encode(self, xb, mask, u):
        xp = wire.namespace(xb)
        rows = xp.reshape(xb, (-1, xb.shape[-1]))
        valid = xp.reshape(xp.broadcast_to(mask, xb.shape), rows.shape)
        tau = xp.zeros_like(rows[:, :1])
        b1, b2 = xp.zeros_like(tau), xp.zeros_like(tau)
        # A bucket whose threshold did not move is at its fixed point: later iterations would repeat its
        # arithmetic exactly, so only the buckets still moving are iterated (same result, less work).
        active = xp.arange(rows.shape[0], device=device_of(xb))
        x, ok, t = rows, (None if bool(xp.all(mask)) else valid), tau
        for _ in range(MAX_SWEEPS):
            upper, lower = x > t, x <= t
            if ok is not None:
                upper, lower = upper & ok, lower & ok
            n2 = xp.astype(xp.count_nonzero(upper, axis=-1, keepdims=True), x.dtype)
            n1 = xp.astype(xp.count_nonzero(lower, axis=-1, keepdims=True), x.dtype)
            m2 = xp.sum(xp.where(upper, x, 0.0), axis=-1, keepdims=True) / safe_divisor(n2)
            m1 = xp.sum(xp.where(lower, x, 0.0), axis=-1, keepdims=True) / safe_divisor(n1)
            new_b1 = xp.where(n1 > 0, m1, m2)  # an empty side takes the other's mean: one level for all
            new_b2 = xp.where(n2 > 0, m2, m1)
            new_tau = (new_b1 + new_b2) / 2
            moving = xp.nonzero(new_tau[:, 0] != t[:, 0])[0]
            b1[active], b2[active], tau[active] = new_b1, new_b2, new_tau
            if moving.shape[0] == 0:
                break
            active, x, t = active[moving], x[moving], new_tau[moving]
            ok = None if ok is None else ok[moving]
        shape = tuple(xb.shape[:-1]) + (1,)
        b1, b2 = xp.reshape(b1, shape), xp.reshape(b2, shape)
        b1, b2 = to_float32(b1), to_float32(b2)
        return xp.concat([b1, b2], axis=-1), xb > (b1 + b2) / 2

    def _decode(self, floats, codes):
        xp = wire.namespace(codes)
        return xp.where(codes == 1, floats[..., 1:2], floats[..., 0:1])

    def _host_compress(self, rows, u):
        nb, size = self._shape(rows.shape[1])
        out, floats, packed = _host_payload(rows.shape, nb, 2, self.payload_bytes(rows.shape[1]))
        scratch = np.empty((2, size), dtype=np.float32)
        ok = hostkernels.bingrad_encode(rows, rows.view(np.uint32), size, MAX_SWEEPS, floats, packed, scratch[0],
                                        scratch[1], hostkernels.pairwise_stack(), hostkernels.chunk_codes(size))
        return _host_finish(out, floats) if ok else None


class ORQ(Quantizer):
    """ORQ (Xu, Huo, Huang, arXiv 2002.11082): s + 1 levels b_0 <= ... <= b_s per bucket, stochastic
    rounding between neighbours (unbiased), levels chosen to minimise the rounding variance
    V = sum_i (b_{k+1} - x_i)(x_i - b_k) [x_i in [b_k, b_{k+1}]]. Outer levels are the bucket's min and
    max; an interior level is optimal when
        sum_{x in [b_{k-1}, b_k]} (x - b_{k-1}) = sum_{x in [b_k, b_{k+1}]} (b_{k+1} - x)
    [unverified: condition derived in papers/saef_quant.md, not checked against the paper].

    Solver (exact coordinate descent). With its neighbours fixed, V as a function of b_k is convex and
    piecewise linear between data points, with slope
        sigma(b) = sum_{b_{k-1} <= x <= b} (x - b_{k-1}) - sum_{b < x <= b_{k+1}} (b_{k+1} - x)
    (the two sides of the condition above). So its minimiser is the smallest data point x_j in
    [b_{k-1}, b_{k+1}] with sigma(x_j) >= 0; on the bucket sorted once, sigma at every data point is two
    cumulative sums. Gauss-Seidel sweeps over k = 1..s-1 move each level to that point, until a sweep
    moves nothing (at most MAX_SWEEPS sweeps). Levels start uniform on [min, max]; no move increases
    V, so ORQ's variance is never above that of uniform levels on [min, max]. The result is a fixed
    point of the condition in its discrete form (sigma changes sign at each interior level), a local
    minimum of V that need not be global."""

    name, unbiased, stochastic = "orq", True, True

    @property
    def bits(self) -> int:
        return self.levels.bit_length()  # ceil(log2(s + 1))

    @property
    def floats(self) -> int:
        return self.levels + 1

    def solve_levels(self, xb: Any, mask: Any) -> list[Any]:
        """The s + 1 levels of each bucket, each (..., nb, 1), before float32 rounding."""
        xp = wire.namespace(xb)
        inf = xp.full_like(xb, math.inf)
        lo = xp.min(xp.where(mask, xb, inf), axis=-1, keepdims=True)
        hi = xp.max(xp.where(mask, xb, -inf), axis=-1, keepdims=True)
        s = self.levels
        shape = tuple(lo.shape)
        levels = [xp.reshape(b, (-1, 1)) for b in [lo] + [lo + (hi - lo) * (k / s) for k in range(1, s)] + [hi]]
        # padding sorts last, outside every [b_{k-1}, b_{k+1}]
        g = xp.reshape(xp.sort(xp.where(mask, xb, inf), axis=-1), (-1, xb.shape[-1]))
        # A bucket whose sweep moved no level is at its fixed point: later sweeps would repeat its
        # arithmetic exactly, so only the buckets still moving are swept (same levels, less work).
        active = xp.arange(g.shape[0], device=device_of(xb))
        sweep = list(levels)
        for _ in range(MAX_SWEEPS if s > 1 else 0):
            moved = xp.zeros_like(sweep[0]) > 0
            for k in range(1, s):
                new = _best_interior_level(g, sweep[k - 1], sweep[k + 1], sweep[k])
                moved = moved | (new != sweep[k])
                sweep[k] = new
                levels[k][active] = new
            moving = xp.nonzero(moved[:, 0])[0]
            if moving.shape[0] == 0:
                break
            active, g, sweep = active[moving], g[moving], [b[moving] for b in sweep]
        return [xp.reshape(b, shape) for b in levels]

    def _encode(self, xb, mask, u):
        xp = wire.namespace(xb)
        levels = self.solve_levels(xb, mask)
        rounded = [to_float32(levels[0], -1)] + [to_float32(b) for b in levels[1:-1]] + [to_float32(levels[-1], +1)]
        table = xp.concat(rounded, axis=-1)
        k = xp.zeros(xb.shape, dtype=xp.int64, device=device_of(xb))
        for b in rounded[1:-1]:
            k = k + xp.astype(xb >= b, xp.int64)
        low, high = wire.take_last(table, k), wire.take_last(table, k + 1)
        width = high - low
        frac = xp.where(width > 0, (xb - low) / safe_divisor(width), xp.zeros_like(xb))
        return table, k + xp.astype(u < frac, xp.int64)

    def _decode(self, floats, codes):
        return wire.take_last(floats, codes)

    def _host_compress(self, rows, u):
        """Bucket runs of about BLOCK_VALUES values: sorted by numpy (padding +inf), levels by the compiled
        solver (buckets it flags re-solved by `solve_levels`), then codes packed while the run is in cache."""
        n = rows.shape[1]
        nb, size = self._shape(n)
        s = self.levels
        out, table, packed = _host_payload(rows.shape, nb, s + 1, self.payload_bytes(n))
        per = -(-max(1, BLOCK_VALUES // (rows.shape[0] * size)) // 8) * 8  # buckets per run: whole bytes of codes
        stack = hostkernels.pairwise_stack()
        codes = hostkernels.chunk_codes(size)
        for b0 in range(0, nb, per):
            b1 = min(nb, b0 + per)
            start, stop = b0 * size, min(n, b1 * size)
            run = np.full((rows.shape[0], (b1 - b0) * size), np.inf, dtype=np.float32)
            run[:, :stop - start] = rows[:, start:stop]
            g = np.sort(run.reshape(-1, size), axis=-1)
            counts = np.full((rows.shape[0], b1 - b0), size, dtype=np.int64)
            counts[:, -1] = stop - (b1 - 1) * size
            counts = counts.reshape(-1)
            levels = np.empty((g.shape[0], s + 1), dtype=np.float32)
            flags = hostkernels.orq_levels(g, counts, s, MAX_SWEEPS, levels, stack)
            if flags.any():
                redo = np.nonzero(flags)[0]
                xb = run.reshape(-1, size)[redo]
                mask = np.arange(size) < counts[redo][:, None]
                levels[redo] = np.concatenate(self.solve_levels(np.where(mask, xb, 0), mask), axis=-1)
                if not np.isfinite(levels[redo]).all():
                    return None
            table[:, b0:b1] = levels.reshape(rows.shape[0], b1 - b0, s + 1)
            hostkernels.orq_codes(rows[:, start:stop], rows if u is None else u[:, start:stop], u is not None, size,
                                  table[:, b0:b1], packed, start * self.bits // 8, self.bits, codes)
        return _host_finish(out, table)


def _best_interior_level(g: Any, left: Any, right: Any, current: Any) -> Any:
    """argmin over b in [left, right] of the rounding variance of the sorted values g (..., nb, size):
    the smallest data point where the slope sigma turns >= 0; `current` where no data lies between."""
    xp = wire.namespace(g)
    between = (g >= left) & (g <= right)
    below = xp.where(between, g - left, 0.0)
    above = xp.where(between, right - g, 0.0)
    # sigma on (g_j, g_{j+1}): the left side counts x <= g_j, the right side x > g_j.
    slope = xp.cumulative_sum(below, axis=-1) - (xp.sum(above, axis=-1, keepdims=True)
                                                 - xp.cumulative_sum(above, axis=-1))
    best = xp.min(xp.where(between & (slope >= 0), g, math.inf), axis=-1, keepdims=True)
    return xp.where(best < math.inf, best, current)


QUANTIZERS: dict[str, Callable[..., Quantizer]] = {
    cls.name: cls for cls in (ScaledSign, QSGD, NUQSGD, TernGrad, BinGrad, ORQ)}


def make_quantizer(name: str, levels: int = 4, bucket_size: int = 512) -> Quantizer:
    if name not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {name!r}; known quantizers: {', '.join(sorted(QUANTIZERS))}")
    return QUANTIZERS[name](levels, bucket_size)
