"""The codec kernels as they were before the speed work of issue 15, frozen: tests/test_codec_identity.py
checks that today's kernels (algorithms/quantizers.py, sdp_quant.py) give bit-identical payloads and
decodings on random inputs. Do not change this file when a kernel changes; it is the old behaviour.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

from array_api_compat import device as device_of
from thinwire.algorithms import bits, wire

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


def stochastic_round(pos: Any, u: Any) -> Any:
    """floor(pos) + [u < frac(pos)]: pos rounded up with probability frac(pos), as integers."""
    xp = wire.namespace(pos)
    low = xp.floor(pos)
    return xp.astype(low, xp.int64) + xp.astype(u < pos - low, xp.int64)


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

    def compress(self, x: Any, uniforms: Any = None) -> Any:
        """The uint8 payload of x (..., n); `uniforms` (same shape, in [0, 1)) drive stochastic rounding."""
        xp = wire.namespace(x)
        lead, n = tuple(x.shape[:-1]), x.shape[-1]
        nb, size = self._shape(n)
        mask = xp.reshape(xp.arange(nb * size, device=device_of(x)) < n, (nb, size))
        xb = xp.reshape(wire.pad_last(x, nb * size), lead + (nb, size))
        if uniforms is None:
            ub = xp.full_like(xb, 0.5)
        else:
            ub = xp.reshape(wire.pad_last(wire.astype(uniforms, x.dtype), nb * size), lead + (nb, size))
        floats, codes = self._encode(xb, mask, ub)
        codes = xp.reshape(codes, lead + (nb * size,))[..., :n]
        floats = wire.astype(xp.reshape(floats, lead + (nb * self.floats,)), wire.dtype_like(x, "float32"))
        return wire.pack([floats, bits.pack(codes, self.bits)])

    def decompress(self, payload: Any, n: int, dtype: Any) -> Any:
        """x_hat (..., n) in `dtype` from payloads (..., payload_bytes(n))."""
        xp = wire.namespace(payload)
        lead = tuple(payload.shape[:-1])
        nb, size = self._shape(n)
        floats, packed = wire.unpack(payload, [(wire.dtype_like(payload, "float32"), nb * self.floats),
                                               (wire.dtype_like(payload, "uint8"), bits.packed_bytes(n, self.bits))])
        levels = wire.astype(xp.reshape(floats, lead + (nb, self.floats)), dtype)
        codes = xp.reshape(wire.pad_last(bits.unpack(packed, self.bits, n), nb * size), lead + (nb, size))
        return xp.reshape(self._decode(levels, codes), lead + (nb * size,))[..., :n]

    def _encode(self, xb: Any, mask: Any, u: Any) -> tuple[Any, Any]:
        """Buckets (..., nb, size), zero-padded, with their validity mask (nb, size) and uniforms ->
        (floats (..., nb, floats) already float32-representable, integer codes (..., nb, size))."""
        raise NotImplementedError

    def _decode(self, floats: Any, codes: Any) -> Any:
        raise NotImplementedError


def _count(xb: Any, mask: Any) -> Any:
    """Real values per bucket, (nb, 1) in xb's dtype."""
    xp = wire.namespace(xb)
    return xp.sum(xp.astype(mask, xb.dtype), axis=-1, keepdims=True)


class ScaledSign(Quantizer):
    """sign(x) * mean|x| per bucket: the compressor of EF-SignSGD. 1 bit per value (0 counts as +)."""

    name, unbiased, stochastic = "scaled-sign", False, False
    bits = 1  # type: ignore[assignment]
    floats = 1  # type: ignore[assignment]

    def _encode(self, xb, mask, u):
        xp = wire.namespace(xb)
        scale = to_float32(xp.sum(xp.abs(xb), axis=-1, keepdims=True) / _count(xb, mask))
        return scale, xb >= 0

    def _decode(self, floats, codes):
        return floats * (2 * wire.astype(codes, floats.dtype) - 1)


class QSGD(Quantizer):
    """QSGD (Alistarh et al. 2017): x_i = norm * sign(x_i) * l_i / s, l_i in 0..s drawn by stochastic
    rounding of s |x_i| / norm, with norm the bucket's l2 norm. Code: the level in the low
    ceil(log2(s+1)) bits, the sign (1 = negative) in the top bit. (The paper's Elias coding of the
    levels is not used: every code has the same width.)"""

    name, unbiased, stochastic = "qsgd", True, True

    @property
    def bits(self) -> int:
        return self.levels.bit_length() + 1  # ceil(log2(s + 1)) + 1

    floats = 1  # type: ignore[assignment]

    @staticmethod
    def _norm(xb: Any) -> Any:
        """Each bucket's l2 norm, rounded up to float32: so norm >= max|x| and |x| / norm <= 1."""
        xp = wire.namespace(xb)
        # Scaled by max|x| so squares neither underflow nor overflow.
        big = xp.max(xp.abs(xb), axis=-1, keepdims=True)
        return to_float32(big * xp.sqrt(xp.sum((xb / safe_divisor(big)) ** 2, axis=-1, keepdims=True)), +1)

    def _encode(self, xb, mask, u):
        xp = wire.namespace(xb)
        norm = self._norm(xb)
        level = xp.clip(stochastic_round(xp.abs(xb) / safe_divisor(norm) * self.levels, u), 0, self.levels)
        return norm, level + xp.astype(xb < 0, xp.int64) * 2 ** (self.bits - 1)

    def _decode(self, floats, codes):
        level = wire.astype(codes & (2 ** (self.bits - 1) - 1), floats.dtype)
        sign = 1 - 2 * wire.astype(codes >> (self.bits - 1), floats.dtype)
        return floats * (level / self.levels) * sign


class NUQSGD(QSGD):
    """NUQSGD (Ramezani-Kebrya et al. 2021): QSGD with exponentially spaced levels. |x_i| / norm is
    rounded stochastically between its two neighbours among l_0 = 0, l_j = 2^(j - s) (j = 1..s), i.e.
    0, 2^-(s-1), ..., 1/2, 1, so small values, the bulk of a gradient bucket, get finer levels. Same
    code as QSGD (level index j in the low bits, sign in the top bit) and the same width at equal s.
    `levels` counts the nonzero levels, as QSGD's s does (the NUQSGD paper writes its levels as
    0, 2^-s', ..., 1/2, 1, so s' = s - 1 [notation not checked against the paper]). With s = 1 the
    levels are {0, 1}: NUQSGD and QSGD coincide at 2 code bits."""

    name, unbiased, stochastic = "nuqsgd", True, True

    def _level(self, j: Any, dtype: Any) -> Any:
        """l_j for integer level indices j (0 for j = 0): exact powers of two."""
        xp = wire.namespace(j)
        power = xp.astype(j - self.levels, dtype)
        return xp.where(j > 0, 2.0 ** power, xp.zeros_like(power))

    def _encode(self, xb, mask, u):
        xp = wire.namespace(xb)
        norm = self._norm(xb)
        r = xp.abs(xb) / safe_divisor(norm)
        # j: index of the highest level <= r, by comparison rather than log2 (exact at the levels).
        j = xp.zeros(xb.shape, dtype=xp.int64, device=device_of(xb))
        for k in range(1, self.levels + 1):
            j = j + xp.astype(r >= 2.0 ** (k - self.levels), xp.int64)
        low = self._level(j, xb.dtype)
        top = xp.clip(j + 1, 0, self.levels)
        width = self._level(top, xb.dtype) - low
        frac = xp.where(width > 0, (r - low) / safe_divisor(width), xp.zeros_like(r))
        level = j + xp.astype(u < frac, xp.int64)
        return norm, level + xp.astype(xb < 0, xp.int64) * 2 ** (self.bits - 1)

    def _decode(self, floats, codes):
        xp = wire.namespace(codes)
        j = xp.astype(codes & (2 ** (self.bits - 1) - 1), xp.int64)
        sign = 1 - 2 * wire.astype(codes >> (self.bits - 1), floats.dtype)
        return floats * self._level(j, floats.dtype) * sign


class TernGrad(Quantizer):
    """TernGrad (Wen et al. 2017): x_i = max|x| * sign(x_i) * b_i, b_i ~ Bernoulli(|x_i| / max|x|).
    Codes 0, 1, 2 stand for 0, +max, -max."""

    name, unbiased, stochastic = "terngrad", True, True
    bits = 2  # type: ignore[assignment]
    floats = 1  # type: ignore[assignment]

    def _encode(self, xb, mask, u):
        xp = wire.namespace(xb)
        scale = to_float32(xp.max(xp.abs(xb), axis=-1, keepdims=True), +1)
        kept = xp.clip(stochastic_round(xp.abs(xb) / safe_divisor(scale), u), 0, 1)
        return scale, kept * (1 + xp.astype(xb < 0, xp.int64))

    def _decode(self, floats, codes):
        xp = wire.namespace(codes)
        c = wire.astype(codes, floats.dtype)
        return floats * xp.where(codes == 2, -xp.ones_like(c), c)


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
        zero = xp.zeros_like(xb)
        tau = xp.zeros_like(xb[..., :1])
        for _ in range(MAX_SWEEPS):
            upper = (xb > tau) & mask
            lower = (xb <= tau) & mask
            n2 = xp.sum(xp.astype(upper, xb.dtype), axis=-1, keepdims=True)
            n1 = xp.sum(xp.astype(lower, xb.dtype), axis=-1, keepdims=True)
            m2 = xp.sum(xp.where(upper, xb, zero), axis=-1, keepdims=True) / safe_divisor(n2)
            m1 = xp.sum(xp.where(lower, xb, zero), axis=-1, keepdims=True) / safe_divisor(n1)
            b1 = xp.where(n1 > 0, m1, m2)  # an empty side takes the other's mean: one level for all
            b2 = xp.where(n2 > 0, m2, m1)
            new_tau = (b1 + b2) / 2
            done = bool(xp.all(new_tau == tau))
            tau = new_tau
            if done:
                break
        b1, b2 = to_float32(b1), to_float32(b2)
        return xp.concat([b1, b2], axis=-1), xb > (b1 + b2) / 2

    def _decode(self, floats, codes):
        xp = wire.namespace(codes)
        return xp.where(codes == 1, floats[..., 1:2], floats[..., 0:1])


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
        levels = [lo] + [lo + (hi - lo) * (k / s) for k in range(1, s)] + [hi]
        g = xp.sort(xp.where(mask, xb, inf), axis=-1)  # padding sorts last, outside every [b_{k-1}, b_{k+1}]
        for _ in range(MAX_SWEEPS if s > 1 else 0):
            moved = xp.zeros_like(lo) > 0
            for k in range(1, s):
                new = _best_interior_level(g, levels[k - 1], levels[k + 1], levels[k])
                moved = moved | (new != levels[k])
                levels[k] = new
            if not bool(xp.any(moved)):
                break
        return levels

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


def _best_interior_level(g: Any, left: Any, right: Any, current: Any) -> Any:
    """argmin over b in [left, right] of the rounding variance of the sorted values g (..., nb, size):
    the smallest data point where the slope sigma turns >= 0; `current` where no data lies between."""
    xp = wire.namespace(g)
    zero = xp.zeros_like(g)
    between = (g >= left) & (g <= right)
    below = xp.where(between, g - left, zero)
    above = xp.where(between, right - g, zero)
    # sigma on (g_j, g_{j+1}): the left side counts x <= g_j, the right side x > g_j.
    slope = xp.cumulative_sum(below, axis=-1) - (xp.sum(above, axis=-1, keepdims=True)
                                                 - xp.cumulative_sum(above, axis=-1))
    best = xp.min(xp.where(between & (slope >= 0), g, xp.full_like(g, math.inf)), axis=-1, keepdims=True)
    return xp.where(best < math.inf, best, current)


QUANTIZERS: dict[str, Callable[..., Quantizer]] = {
    cls.name: cls for cls in (ScaledSign, QSGD, NUQSGD, TernGrad, BinGrad, ORQ)}


def make_quantizer(name: str, levels: int = 4, bucket_size: int = 512) -> Quantizer:
    if name not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {name!r}; known quantizers: {', '.join(sorted(QUANTIZERS))}")
    return QUANTIZERS[name](levels, bucket_size)


def check_bits(k: int, name: str) -> None:
    if not (isinstance(k, int) and 2 <= k <= 8):
        raise ValueError(f"{name} must be an integer in 2..8, got {k!r}")


@dataclasses.dataclass(frozen=True)
class SymmetricQuantizer(Quantizer):
    """Q_{k,G}: `levels` = L = 2^(k-1) - 1 per sign, `bucket_size` = G. Build it with `symmetric(k, G)`."""

    name, unbiased, stochastic = "symmetric", True, True

    @property
    def bits(self) -> int:
        return (2 * self.levels).bit_length()

    floats = 1  # type: ignore[assignment]

    def _encode(self, xb, mask, u):
        xp = wire.namespace(xb)
        scale = to_float32(xp.max(xp.abs(xb), axis=-1, keepdims=True), +1)
        pos = xb / safe_divisor(scale) * self.levels + self.levels
        return scale, xp.clip(stochastic_round(pos, u), 0, 2 * self.levels)

    def _decode(self, floats, codes):
        return floats * ((wire.astype(codes, floats.dtype) - self.levels) / self.levels)


def symmetric(k: int, group: int) -> SymmetricQuantizer:
    check_bits(k, "bits")
    return SymmetricQuantizer(levels=2 ** (k - 1) - 1, bucket_size=group)


def check_hadamard_block(block: int) -> None:
    if block < 1 or block & (block - 1):
        raise ValueError(f"hadamard_block must be a power of two, got {block}")


def hadamard(x: Any, block: int) -> Any:
    """H applied to every `block` consecutive values of the last axis (its length a multiple of block)."""
    xp = wire.namespace(x)
    lead, n = tuple(x.shape[:-1]), x.shape[-1]
    if n % block:
        raise ValueError(f"the Hadamard transform needs a multiple of {block} values, got {n}")
    y = xp.reshape(x, lead + (n // block, block))
    h = 1
    while h < block:
        pairs = xp.reshape(y, lead + (n // block, block // (2 * h), 2, h))
        a, b = pairs[..., 0, :], pairs[..., 1, :]
        y = xp.reshape(xp.stack([a + b, a - b], axis=-2), lead + (n // block, block))
        h *= 2
    return xp.reshape(y, lead + (n,)) * (1 / math.sqrt(block))



# Added (not a frozen kernel of issue 15's quantizers): wire.scatter_sum's numpy path before single
# sets were written directly, for tests/test_codec_identity.py.
def scatter_sum_numpy(idx, values, d):
    import numpy as np

    lead = tuple(idx.shape[:-2])
    rows = math.prod(lead)
    flat = (np.arange(rows)[:, None] * d + idx.reshape(rows, -1)).ravel()
    out = np.bincount(flat, weights=values.reshape(-1), minlength=rows * d)
    return out.astype(values.dtype, copy=False).reshape(lead + (d,))
