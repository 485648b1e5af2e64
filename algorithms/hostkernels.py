"""Compiled host kernels (numba) for the quantizers of quantizers.py and sdp_quant.py: compress + pack
and unpack + decompress of numpy float32 arrays in one pass over each bucket, with no temporaries the
size of the input.

Optional: when numba does not import (or THINWIRE_NUMBA=0), `ENABLED` is False and the codecs take
their array-API path, which is also the path of every torch tensor (CPU or CUDA). The kernels give
the bytes of that path bit for bit (tests/test_codec_identity.py compares both with the frozen old
kernels), because they do the same float32 operations in the same order:

- a sum over a bucket is numpy's pairwise summation (`pairwise`: 8 accumulators over blocks of at
  most 128 values, halves split at multiples of 8) over the whole zero-padded bucket, as np.sum along
  the last axis of a (buckets, size) array computes it;
- max, counts, comparisons, floor and the per-value arithmetic do not depend on order;
- numpy's running sums (cumulative_sum) are sequential, as here.

Where numpy's result is not determined by values alone (np.min or np.sort choosing between -0.0 and
+0.0), or the input is not finite, a kernel reports the bucket (or call) and the caller recomputes it
on the array-API path.
"""

from __future__ import annotations

import math
import os

import numpy as np

try:
    if os.environ.get("THINWIRE_NUMBA", "1") == "0":
        raise ImportError("THINWIRE_NUMBA=0")
    import numba
except ImportError:  # not installed, or not for this numpy (numba says so by ImportError): the array-API path
    numba = None

ENABLED = numba is not None


def _jit(fn):
    """njit with numpy's float semantics (division by zero gives inf/nan, never raises)."""
    if numba is None:
        return fn
    return numba.njit(cache=True, nogil=True, error_model="numpy")(fn)


F0 = np.float32(0.0)
F1 = np.float32(1.0)
HALF = np.float32(0.5)


@_jit
def _leaf(a, start, n):
    """numpy's pairwise sum of at most 128 values a[start:start + n]: 8 accumulators over the whole
    groups of 8, combined as ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)), then the rest in order."""
    b = a[start:start + n]
    if n < 8:
        res = F0
        for i in range(n):
            res += b[i]
        return res
    r0, r1, r2, r3, r4, r5, r6, r7 = b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]
    full = n // 8
    for g in range(1, full):
        r0 += b[8 * g]
        r1 += b[8 * g + 1]
        r2 += b[8 * g + 2]
        r3 += b[8 * g + 3]
        r4 += b[8 * g + 4]
        r5 += b[8 * g + 5]
        r6 += b[8 * g + 6]
        r7 += b[8 * g + 7]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    rest = b[8 * full:]
    for i in range(rest.shape[0]):
        res += rest[i]
    return res


def pairwise_stack():
    """Scratch for `pairwise`: its recursion, unrolled onto an explicit stack (numba's on-disk cache
    mishandles recursive functions), one frame per level (start, n, stage, left sum, right sum)."""
    return np.zeros((64, 5), dtype=np.float64)


@_jit
def _leaf_or_zero(a, start, n, lo, hi):
    """`_leaf`, or +0.0 (exactly the sum of zeros) for a leaf wholly outside [lo, hi) when hi >= 0."""
    if hi >= 0 and (start >= hi or start + n <= lo):
        return F0
    return _leaf(a, start, n)


@_jit
def _pairwise_walk(a, start, n, stack, lo, hi):
    """`pairwise` of more than 128 values by an explicit stack (the recursion unrolled: numba's on-disk
    cache mishandles recursive functions)."""
    stack[0, 0], stack[0, 1], stack[0, 2] = start, n, 0
    top = 1
    result = F0
    while top > 0:
        f = top - 1
        s0, m, stage = int(stack[f, 0]), int(stack[f, 1]), int(stack[f, 2])
        if m <= 128 or stage == 2:
            if m <= 128:
                v = _leaf_or_zero(a, s0, m, lo, hi)
            else:
                v = np.float32(stack[f, 3]) + np.float32(stack[f, 4])
            top -= 1
            if top == 0:
                result = v
            else:
                p = top - 1
                stack[p, 3 if stack[p, 2] == 1 else 4] = v
            continue
        half = m // 2
        half -= half % 8
        if stage == 0:
            stack[f, 2] = 1
            stack[top, 0], stack[top, 1], stack[top, 2] = s0, half, 0
        else:
            stack[f, 2] = 2
            stack[top, 0], stack[top, 1], stack[top, 2] = s0 + half, m - half, 0
        top += 1
    return result


@_jit
def _pairwise_below(a, start, n, stack, lo, hi):
    """A node one level below the top of `pairwise`: its two halves summed directly (buckets up to
    about 512 values never reach the stack walk, whose bookkeeping cost as much as the leaves)."""
    if n <= 128:
        return _leaf_or_zero(a, start, n, lo, hi)
    half = n // 2
    half -= half % 8
    left = _leaf_or_zero(a, start, half, lo, hi) if half <= 128 else _pairwise_walk(a, start, half, stack, lo, hi)
    right = (_leaf_or_zero(a, start + half, n - half, lo, hi) if n - half <= 128
             else _pairwise_walk(a, start + half, n - half, stack, lo, hi))
    return left + right


@_jit
def pairwise(a, start, n, stack, lo=0, hi=-1):
    """numpy's pairwise sum of a[start:start + n] (float32 accumulators), in numpy's order: halves split
    at a multiple of 8 until at most 128 values remain, each summed by `_leaf`. `stack` from
    pairwise_stack() (float32 sums are stored exactly in its float64 slots). With hi >= 0, a holds zeros
    outside [lo, hi) at least up to 128 values either side: leaves wholly outside sum to +0.0 exactly and
    are not read. The top two levels of the recursion are plain calls (`_pairwise_below`), deeper ones
    the stack walk: the same additions in the same order either way."""
    if n <= 128:
        return _leaf_or_zero(a, start, n, lo, hi)
    half = n // 2
    half -= half % 8
    return _pairwise_below(a, start, half, stack, lo, hi) + _pairwise_below(a, start + half, n - half, stack, lo, hi)


# ---------------------------------------------------------------------------------------------------
# packing (bits.pack's layout: code i at bits i*b .. i*b + b - 1 of the little-endian bit stream)

ABS = np.uint32(0x7FFFFFFF)
MANTISSA = np.uint32(0x7FFFFF)
MANTISSA_UNIT = np.float32(2.0 ** -23)
INF_BITS = np.uint32(0x7F800000)


def chunk_codes(size: int) -> np.ndarray:
    """A uint8 buffer for the codes of a run of whole buckets, 8k of them (so a run's codes are whole
    bytes) and about 4096 values: the kernels compute a run's codes, then pack them."""
    per = -(-max(1, 4096 // size) // 8) * 8
    return np.zeros(per * size, dtype=np.uint8)


@_jit
def pack_codes(codes, count, bits, out, byte0):
    """Pack codes[:count] (each < 2^bits) into out[byte0:], whole bytes; a last partial byte zero-filled."""
    c = codes[:count]
    o = out[byte0:byte0 + (count * bits + 7) // 8]
    if bits == 8:
        for i in range(count):
            o[i] = c[i]
        return
    if 8 % bits == 0:
        per = 8 // bits
        full = count // per
        for g in range(full):
            w = np.uint32(0)
            for j in range(per):
                w |= np.uint32(c[g * per + j]) << np.uint32(j * bits)
            o[g] = w
        rest = count - full * per
        if rest:
            w = np.uint32(0)
            for j in range(rest):
                w |= np.uint32(c[full * per + j]) << np.uint32(j * bits)
            o[full] = w
        return
    full = count // 8
    for g in range(full):
        w = np.uint64(0)
        for j in range(8):
            w |= np.uint64(c[8 * g + j]) << np.uint64(j * bits)
        for j in range(bits):
            o[g * bits + j] = (w >> np.uint64(8 * j)) & np.uint64(0xFF)
    rest = count - full * 8
    if rest:
        w = np.uint64(0)
        for j in range(rest):
            w |= np.uint64(c[8 * full + j]) << np.uint64(j * bits)
        for j in range((rest * bits + 7) // 8):
            o[full * bits + j] = (w >> np.uint64(8 * j)) & np.uint64(0xFF)


@_jit
def unpack_codes(buf, byte0, count, bits, codes):
    """Inverse of pack_codes: codes[:count] from buf[byte0:]."""
    c = codes[:count]
    o = buf[byte0:byte0 + (count * bits + 7) // 8]
    if bits == 8:
        for i in range(count):
            c[i] = o[i]
        return
    if 8 % bits == 0:
        per = 8 // bits
        mask = np.uint8((1 << bits) - 1)
        full = count // per
        for g in range(full):
            byte = o[g]
            for j in range(per):
                c[g * per + j] = (byte >> np.uint8(j * bits)) & mask
        for j in range(count - full * per):
            c[full * per + j] = (o[full] >> np.uint8(j * bits)) & mask
        return
    mask64 = np.uint64((1 << bits) - 1)
    full = count // 8
    for g in range(full):
        w = np.uint64(0)
        for j in range(bits):
            w |= np.uint64(o[g * bits + j]) << np.uint64(8 * j)
        for j in range(8):
            c[8 * g + j] = (w >> np.uint64(j * bits)) & mask64
    rest = count - full * 8
    if rest:
        w = np.uint64(0)
        for j in range((rest * bits + 7) // 8):
            w |= np.uint64(o[full * bits + j]) << np.uint64(8 * j)
        for j in range(rest):
            c[8 * full + j] = (w >> np.uint64(j * bits)) & mask64


@_jit
def abs_max_bits(xi):
    """The largest |x| of x as float32 bits (x viewed as uint32): integer order is |x|'s order, and
    bits >= INF_BITS mean a value that is not finite."""
    mx = np.uint32(0)
    for i in range(xi.shape[0]):
        mx = max(mx, xi[i] & ABS)
    return mx


# ---------------------------------------------------------------------------------------------------
# one-scale quantizers: QSGD, NUQSGD, TernGrad, SDP4Bit's symmetric Q_{k,G}

QSGD, NUQSGD, TERNGRAD, SYMMETRIC = 0, 1, 2, 3


@_jit
def _one_scale_codes(mode, xs, us, use_u, ds, flev, top, levels, signpos, cv, buf):
    """The codes cv of one bucket xs against its scale's divisor ds (uniforms us, or 1/2 each)."""
    if mode == QSGD:
        for i in range(xs.shape[0]):
            v = xs[i]
            p = abs(v) / ds * flev
            ip = int(p)
            f = p - np.float32(ip)
            uu = us[i] if use_u else HALF
            c = ip + (1 if uu < f else 0)
            c = min(top, c)
            cv[i] = c | ((1 if v < F0 else 0) << signpos)
    elif mode == NUQSGD:
        # p = |x| / norm <= 1. j = #{k in 1..s: p >= 2^(k - s)} = clip(e + s, 0, s), e = floor(log2 p) =
        # p's exponent field less 127 (a zero or subnormal p: field 0, so j = 0, as the comparisons give
        # for s <= 127). frac = (p - l_j) / (l_{j+1} - l_j), each step exact: for 0 < j < s it is p's
        # mantissa (p / 2^(j - s) is 1.mantissa), for j = 0 it is p * 2^(s - 1), and for j = s (p = 1)
        # the mantissa is 0 as the width-0 rule gives. So the same frac as the table path, without tables.
        ps, pi = buf
        up = np.float32(2.0 ** (levels - 1))
        for i in range(xs.shape[0]):
            ps[i] = abs(xs[i]) / ds
        for i in range(xs.shape[0]):
            v = xs[i]
            bits_p = pi[i]
            j = np.int32(bits_p >> np.uint32(23)) - np.int32(127 - levels)
            j = min(max(j, np.int32(0)), np.int32(levels))
            f = np.float32(bits_p & MANTISSA) * MANTISSA_UNIT if j > 0 else ps[i] * up
            uu = us[i] if use_u else HALF
            c = j + (1 if uu < f else 0)
            cv[i] = c | ((1 if v < F0 else 0) << signpos)
    elif mode == TERNGRAD:
        for i in range(xs.shape[0]):
            v = xs[i]
            p = abs(v) / ds
            ip = int(p)
            f = p - np.float32(ip)
            uu = us[i] if use_u else HALF
            c = ip + (1 if uu < f else 0)
            c = min(1, c)
            cv[i] = c << (1 if v < F0 else 0)
    else:
        for i in range(xs.shape[0]):
            p = xs[i] / ds * flev + flev
            ip = int(p)
            f = p - np.float32(ip)
            uu = us[i] if use_u else HALF
            c = ip + (1 if uu < f else 0)
            cv[i] = min(top, c)


@_jit
def one_scale_encode(x, xi, u, use_u, size, mode, levels, bits, floats, packed, buf, stack,
                     codes, cell, bufi):
    """Encode rows x (rows, n) float32 (xi: the same bits as uint32) in buckets of `size`: scales into
    floats (rows, nb), codes packed `bits` wide into packed (rows, ceil(n bits / 8)). buf: float32 scratch
    of `size` and bufi its uint32 view, codes: chunk_codes(size), cell: a float32 (1,) array and its
    uint32 view. Returns False when a bucket holds a value that is not finite (the caller then takes the
    array-API path)."""
    rows, n = x.shape
    nb = floats.shape[1]
    flev = np.float32(levels)
    top = 1 if mode == TERNGRAD else (2 * levels if mode == SYMMETRIC else levels)
    signpos = bits - 1
    per = codes.shape[0] // size
    cf, ci = cell
    for r in range(rows):
        for c0 in range(0, nb, per):
            c1 = min(nb, c0 + per)
            for b in range(c0, c1):
                start = b * size
                m = min(size, n - start)
                xs = x[r, start:start + m]
                mx = abs_max_bits(xi[r, start:start + m])
                if mx >= INF_BITS:
                    return False
                ci[0] = mx
                big = cf[0]
                if mode == QSGD or mode == NUQSGD:
                    d = big if big > F0 else F1
                    for i in range(m):
                        t = abs(xs[i]) / d
                        buf[i] = t * t
                    for i in range(m, size):
                        buf[i] = F0
                    scale = big * np.float32(math.sqrt(pairwise(buf, 0, size, stack)))
                else:
                    scale = big
                floats[r, b] = scale
                ds = scale if scale > F0 else F1
                off = (b - c0) * size
                us = u[r, start:start + m] if use_u else u[0, :0]
                _one_scale_codes(mode, xs, us, use_u, ds, flev, top, levels, signpos, codes[off:off + m],
                                 (buf[:m], bufi[:m]))
            count = min(n, c1 * size) - c0 * size
            pack_codes(codes, count, bits, packed[r], c0 * size * bits // 8)
    return True


@_jit
def scale_decode(packed, scales, unit, size, bits, out, codes):
    """out (rows, n) = scale of the value's bucket * unit[code], codes unpacked from packed (rows, bytes)
    a run of buckets at a time into codes (chunk_codes(size))."""
    rows, n = out.shape
    nb = scales.shape[1]
    per = codes.shape[0] // size
    for r in range(rows):
        for c0 in range(0, nb, per):
            c1 = min(nb, c0 + per)
            count = min(n, c1 * size) - c0 * size
            unpack_codes(packed[r], c0 * size * bits // 8, count, bits, codes)
            for b in range(c0, c1):
                start = b * size
                m = min(size, n - start)
                o = out[r, start:start + m]
                cv = codes[(b - c0) * size:(b - c0) * size + m]
                scale = scales[r, b]
                for i in range(m):
                    o[i] = scale * unit[cv[i]]


@_jit
def table_decode(packed, tables, size, bits, out, codes):
    """out (rows, n) = tables[row, bucket, code]. Returns False for a code beyond the table."""
    rows, n = out.shape
    nb, width = tables.shape[1], tables.shape[2]
    per = codes.shape[0] // size
    for r in range(rows):
        for c0 in range(0, nb, per):
            c1 = min(nb, c0 + per)
            count = min(n, c1 * size) - c0 * size
            unpack_codes(packed[r], c0 * size * bits // 8, count, bits, codes)
            top = np.uint8(0)
            for i in range(count):
                top = max(top, codes[i])
            if top >= width:
                return False
            for b in range(c0, c1):
                start = b * size
                m = min(size, n - start)
                o = out[r, start:start + m]
                cv = codes[(b - c0) * size:(b - c0) * size + m]
                tb = tables[r, b]
                for i in range(m):
                    o[i] = tb[cv[i]]
    return True


# ---------------------------------------------------------------------------------------------------
# BinGrad: 2-level Lloyd-Max per bucket


@_jit
def bingrad_encode(x, xi, size, max_sweeps, floats, packed, lower, upper, stack, codes):
    """Levels b1, b2 into floats (rows, nb, 2), 1-bit codes [x > (b1 + b2) / 2] into packed. Lloyd's
    iteration from tau = 0 as quantizers.BinGrad does it, sums pairwise over the zero-padded bucket.
    Returns False when a value is not finite."""
    rows, n = x.shape
    nb = floats.shape[1]
    two = np.float32(2.0)
    per = codes.shape[0] // size
    for r in range(rows):
        for c0 in range(0, nb, per):
            c1 = min(nb, c0 + per)
            for b in range(c0, c1):
                start = b * size
                m = min(size, n - start)
                xs = x[r, start:start + m]
                if abs_max_bits(xi[r, start:start + m]) >= INF_BITS:
                    return False
                for i in range(m, size):
                    lower[i] = F0
                    upper[i] = F0
                lo, up = lower[:m], upper[:m]
                t = F0
                b1 = F0
                b2 = F0
                for _ in range(max_sweeps):
                    n2 = 0
                    for i in range(m):
                        v = xs[i]
                        above = v > t
                        up[i] = v if above else F0
                        lo[i] = F0 if above else v
                        n2 += 1 if above else 0
                    n1 = m - n2
                    f2 = np.float32(n2)
                    f1 = np.float32(n1)
                    m2 = pairwise(upper, 0, size, stack) / (f2 if n2 > 0 else F1)
                    m1 = pairwise(lower, 0, size, stack) / (f1 if n1 > 0 else F1)
                    b1 = m1 if n1 > 0 else m2
                    b2 = m2 if n2 > 0 else m1
                    new_t = (b1 + b2) / two
                    if new_t == t:
                        break
                    t = new_t
                floats[r, b, 0] = b1
                floats[r, b, 1] = b2
                tau = (b1 + b2) / two
                cv = codes[(b - c0) * size:(b - c0) * size + m]
                for i in range(m):
                    cv[i] = 1 if xs[i] > tau else 0
            count = min(n, c1 * size) - c0 * size
            pack_codes(codes, count, 1, packed[r], c0 * size // 8)
    return True


# ---------------------------------------------------------------------------------------------------
# ORQ: variance-optimal levels on the sorted bucket


@_jit
def _first_at_least(g, m, v):
    """The first index j < m with g[j] >= v (g ascending), else m: a binary search whose steps select
    rather than branch (fixed step count, no mispredicted jumps)."""
    if m == 0:
        return 0
    base, n = 0, m
    while n > 1:
        half = n // 2
        base = base + half if g[base + half - 1] < v else base
        n -= half
    return base + (1 if g[base] < v else 0)


@_jit
def _first_above(g, lo, m, v):
    """The first index j in [lo, m) with g[j] > v (g ascending), else m."""
    if m <= lo:
        return lo
    base, n = lo, m - lo
    while n > 1:
        half = n // 2
        base = base + half if g[base + half - 1] <= v else base
        n -= half
    return base + (1 if g[base] <= v else 0)


@_jit
def _first_at_least_from(g, i):
    """The first index j with g[j] >= g[i] (g ascending): i, or earlier where values equal g[i] precede
    it. What _first_at_least(g, m, g[i]) returns, found by stepping back over ties instead of a binary
    search (a level placed at a data point knows its index)."""
    v = g[i]
    while i > 0 and g[i - 1] >= v:
        i -= 1
    return i


@_jit
def _first_above_from(g, i, lo, m):
    """_first_above(g, lo, m, g[i]) for i < m, by stepping forward over the values equal to g[i]: the
    first index j > i with g[j] > g[i], else m; lo where that lies before lo (as the binary search
    starting at lo answers)."""
    v = g[i]
    j = i + 1
    while j < m and g[j] <= v:
        j += 1
    return max(j, lo)


@_jit
def _best_interior_level(g, lo, hi, left, right, above, stack):
    """quantizers._best_interior_level for one sorted bucket g whose values in [left, right] are
    g[lo:hi] (lo < hi): the index of the smallest g_j there whose slope is >= 0, else -1 (the level
    stays). The sum of the `above` side is pairwise over the whole bucket with zeros outside
    [left, right], as numpy's; the running sums are sequential, as numpy's cumulative_sum (its leading
    zeros add nothing: +0.0 + v is v), and stop at the index returned: later ones decide nothing.

    `above` (size values, all +0.0 on entry and again on return) holds right - g_j on [lo, hi) while
    the search runs: `pairwise` sums that zero-padded buffer as numpy does, with its vectorisable
    leaves over the whole groups of 8 (an earlier version tested [lo, hi) per value inside the leaf,
    which cost more than the rest of the search), and the scan reads its terms back."""
    gs, ab = g[lo:hi], above[lo:hi]  # slices indexed from 0: numba then drops its negative-index checks
    for i in range(hi - lo):
        ab[i] = right - gs[i]
    total = pairwise(above, 0, g.shape[0], stack, lo, hi)
    best = -1
    cb = F0
    ca = F0
    for j in range(hi - lo):
        cb += gs[j] - left
        ca += ab[j]
        if cb - (total - ca) >= F0:
            best = lo + j
            break
    for i in range(hi - lo):
        ab[i] = F0
    return best


@_jit
def orq_levels(g, counts, s, max_sweeps, levels, stack):
    """Levels (buckets, s + 1) of sorted buckets g (buckets, size), each with counts[b] real values
    first (the rest +inf): ORQ.solve_levels bucket by bucket. Returns a flag per bucket, True where a
    level came out zero (-0.0 or +0.0: np.min's choice between them is not the kernel's to make) or a
    value is not finite; the caller recomputes those buckets on the array-API path.

    Each level remembers the index of the data point it sits on (`at`; -1 while it is still at its
    uniform start), so the search of its neighbour finds where [left, right] begins and ends by stepping
    over ties from there rather than by two binary searches."""
    nbk = g.shape[0]
    flags = np.zeros(nbk, dtype=np.bool_)
    stale = np.empty(s + 1, dtype=np.bool_)
    at = np.empty(s + 1, dtype=np.int64)
    above = np.zeros(g.shape[1], dtype=np.float32)
    for b in range(nbk):
        row = g[b]
        m = counts[b]
        lo = row[0]
        hi = row[m - 1]
        if not (abs(lo) < np.inf and abs(hi) < np.inf):
            flags[b] = True
            continue
        span = hi - lo
        lv = levels[b]
        lv[0] = lo
        lv[s] = hi
        for k in range(1, s):
            lv[k] = lo + span * np.float32(k / s)
        if s > 1:
            # A level is a function of its two neighbours alone (and of itself only where no data lies
            # between them, when it stays): one whose neighbours did not move since it was last placed
            # would be placed where it is, so it is not searched again.
            for k in range(s + 1):
                stale[k] = True
                at[k] = -1
            at[0], at[s] = 0, m - 1
            for _ in range(max_sweeps):
                moved = False
                for k in range(1, s):
                    if not stale[k]:
                        continue
                    left, right = lv[k - 1], lv[k + 1]
                    i0 = _first_at_least(row, m, left) if at[k - 1] < 0 else _first_at_least_from(row, at[k - 1])
                    i1 = _first_above(row, i0, m, right) if at[k + 1] < 0 else _first_above_from(row, at[k + 1], i0, m)
                    j = _best_interior_level(row, i0, i1, left, right, above, stack) if i0 < i1 else -1
                    stale[k] = False
                    if j >= 0 and row[j] != lv[k]:
                        moved = True
                        stale[k - 1] = True
                        stale[k + 1] = True
                    if j >= 0:
                        lv[k] = row[j]
                        at[k] = j
                if not moved:
                    break
        for k in range(s + 1):
            if lv[k] == F0:
                flags[b] = True
    return flags


@_jit
def _orq_codes8(xs, us, use_u, t8, l8, cv):
    """ORQ's codes cv of one bucket xs with at most 8 levels l8 (interior thresholds t8[1..6], unused
    ones +inf). A level's index k counts the thresholds at or below the value, as before; its two
    levels are picked by comparing k with each index (selects, not a table lookup), so the loop
    vectorises: the same values of low and width, the same float32 arithmetic, the same codes."""
    i1, i2, i3, i4, i5, i6 = t8[1], t8[2], t8[3], t8[4], t8[5], t8[6]
    l0, l1, l2, l3, l4, l5, l6, l7 = l8[0], l8[1], l8[2], l8[3], l8[4], l8[5], l8[6], l8[7]
    for i in range(xs.shape[0]):
        v = xs[i]
        k = ((1 if v >= i1 else 0) + (1 if v >= i2 else 0) + (1 if v >= i3 else 0)
             + (1 if v >= i4 else 0) + (1 if v >= i5 else 0) + (1 if v >= i6 else 0))
        low = l0
        low = l1 if k == 1 else low
        low = l2 if k == 2 else low
        low = l3 if k == 3 else low
        low = l4 if k == 4 else low
        low = l5 if k == 5 else low
        low = l6 if k == 6 else low
        high = l1
        high = l2 if k == 1 else high
        high = l3 if k == 2 else high
        high = l4 if k == 3 else high
        high = l5 if k == 4 else high
        high = l6 if k == 5 else high
        high = l7 if k == 6 else high
        w = high - low
        f = (v - low) / (w if w > F0 else F1)
        f = f if w > F0 else F0
        uu = us[i] if use_u else HALF
        cv[i] = k + (1 if uu < f else 0)


@_jit
def orq_codes(x, u, use_u, size, table, packed, byte0, bits, codes):
    """ORQ's codes of rows x (rows, n) against the float32 level tables (rows, nb, s + 1), packed from
    byte `byte0` of each row of packed (whole bytes unless this run ends the row)."""
    rows, n = x.shape
    nb, width = table.shape[1], table.shape[2]
    per = codes.shape[0] // size
    t8, l8 = np.empty(8, dtype=np.float32), np.empty(8, dtype=np.float32)
    for r in range(rows):
        for c0 in range(0, nb, per):
            c1 = min(nb, c0 + per)
            for b in range(c0, c1):
                start = b * size
                m = min(size, n - start)
                xs = x[r, start:start + m]
                us = u[r, start:start + m] if use_u else u[0, :0]
                tb = table[r, b]
                cv = codes[(b - c0) * size:(b - c0) * size + m]
                if width <= 8:  # s <= 7: six interior slots, those past s - 1 at +inf (never reached)
                    for j in range(8):
                        t8[j] = tb[j] if j < width - 1 else np.inf
                        l8[j] = tb[j] if j < width else F0
                    _orq_codes8(xs, us, use_u, t8, l8, cv)
                    continue
                for i in range(m):
                    v = xs[i]
                    k = 0
                    for j in range(1, width - 1):
                        k += 1 if v >= tb[j] else 0
                    low = tb[k]
                    w = tb[k + 1] - low
                    f = (v - low) / (w if w > F0 else F1)
                    f = f if w > F0 else F0
                    uu = us[i] if use_u else HALF
                    cv[i] = k + (1 if uu < f else 0)
            count = min(n, c1 * size) - c0 * size
            pack_codes(codes, count, bits, packed[r], byte0 + c0 * size * bits // 8)


# ---------------------------------------------------------------------------------------------------
# SDP4Bit's block Hadamard transform


@_jit
def _hadamard8(xs, y):
    """The passes h = 1, 2, 4 of the butterfly on every 8 consecutive values of xs, into y."""
    for g in range(xs.shape[0] // 8):
        a0, a1, a2, a3 = xs[8 * g], xs[8 * g + 1], xs[8 * g + 2], xs[8 * g + 3]
        a4, a5, a6, a7 = xs[8 * g + 4], xs[8 * g + 5], xs[8 * g + 6], xs[8 * g + 7]
        b0, b1, b2, b3 = a0 + a1, a0 - a1, a2 + a3, a2 - a3
        b4, b5, b6, b7 = a4 + a5, a4 - a5, a6 + a7, a6 - a7
        c0, c1, c2, c3 = b0 + b2, b1 + b3, b0 - b2, b1 - b3
        c4, c5, c6, c7 = b4 + b6, b5 + b7, b4 - b6, b5 - b7
        y[8 * g], y[8 * g + 1], y[8 * g + 2], y[8 * g + 3] = c0 + c4, c1 + c5, c2 + c6, c3 + c7
        y[8 * g + 4], y[8 * g + 5], y[8 * g + 6], y[8 * g + 7] = c0 - c4, c1 - c5, c2 - c6, c3 - c7


@_jit
def _hadamard32_tail(ys, scale, os):
    """The passes h = 8 and 16 of blocks of 32 (after _hadamard8's h = 1, 2, 4 into ys), at once and
    times scale into os: from the quarters q0..q3 of a block, (q0 + q1, q0 - q1, q2 + q3, q2 - q3),
    then the sums and differences of its halves. The same operations on the same values as the pass
    by pass loop, each value read once for both; with the quarter offsets constant the loop
    compiles to whole-vector operations (the general loop, offsets in a variable, does not)."""
    for b0 in range(0, ys.shape[0], 32):
        for j in range(8):
            a = ys[b0 + j]
            c = ys[b0 + 8 + j]
            e = ys[b0 + 16 + j]
            f = ys[b0 + 24 + j]
            s01 = a + c
            d01 = a - c
            s23 = e + f
            d23 = e - f
            os[b0 + j] = (s01 + s23) * scale
            os[b0 + 8 + j] = (d01 + d23) * scale
            os[b0 + 16 + j] = (s01 - s23) * scale
            os[b0 + 24 + j] = (d01 - d23) * scale


@_jit
def hadamard_blocks(x, block, scale, out):
    """sdp_quant.hadamard's butterfly on every `block` consecutive values of the flat x into out: passes
    h = 1, 2, 4, .. of (a + b, a - b) on the pairs h apart, then times `scale` (1 / sqrt(block) in x's
    dtype): the same operations on each value as the numpy path, so the same values. A run of about
    4096 values at a time: the passes h = 1, 2, 4 on every 8 values into a scratch, the later passes
    8 pairs at a time, the last one written out times scale (block 32, SDP4Bit's: the last two at
    once, `_hadamard32_tail`)."""
    n = x.shape[0]
    if block < 8:
        y = np.empty(block, dtype=x.dtype)
        for b in range(n // block):
            xs = x[b * block:(b + 1) * block]
            os = out[b * block:(b + 1) * block]
            for i in range(block):
                y[i] = xs[i]
            h = 1
            while h < block:
                for i in range(0, block, 2 * h):
                    for j in range(h):
                        a = y[i + j]
                        c = y[i + h + j]
                        y[i + j] = a + c
                        y[i + h + j] = a - c
                h *= 2
            for i in range(block):
                os[i] = y[i] * scale
        return
    run = max(1, 4096 // block) * block
    y = np.empty(run, dtype=x.dtype)
    for r0 in range(0, n, run):
        r1 = min(n, r0 + run)
        ys = y[:r1 - r0]
        _hadamard8(x[r0:r1], ys)
        if block == 8:
            os = out[r0:r1]
            for i in range(r1 - r0):
                os[i] = ys[i] * scale
            continue
        if block == 32:
            _hadamard32_tail(ys, scale, out[r0:r1])
            continue
        for b0 in range(0, r1 - r0, block):
            v = ys[b0:b0 + block]
            h = 8
            while 2 * h < block:
                for i in range(0, block, 2 * h):
                    for jj in range(0, h, 8):
                        lo = v[i + jj:i + jj + 8]
                        hi = v[i + jj + h:i + jj + h + 8]
                        for j in range(8):
                            a = lo[j]
                            c = hi[j]
                            lo[j] = a + c
                            hi[j] = a - c
                h *= 2
            os = out[r0 + b0:r0 + b0 + block]
            lo, hi = v[:h], v[h:]
            olo, ohi = os[:h], os[h:]
            for j in range(h):
                a = lo[j]
                c = hi[j]
                olo[j] = (a + c) * scale
                ohi[j] = (a - c) * scale


# ---------------------------------------------------------------------------------------------------
# top-k selection: the k largest |x|


@_jit
def candidates_at_least(xi, bound, idx, vals):
    """Indices (ascending) and |x| bits of the values of x (viewed as uint32 xi) with |x| bits >= bound,
    into idx and vals; returns their count, or -1 when more than idx holds."""
    c = 0
    cap = idx.shape[0]
    for i in range(xi.shape[0]):
        v = xi[i] & ABS
        if v >= bound:
            if c == cap:
                return -1
            idx[c] = i
            vals[c] = v
            c += 1
    return c


# ---------------------------------------------------------------------------------------------------
# uniforms: numpy's Generator(PCG64).random(n, dtype=float32), the same numbers, a few times faster

U64_LOW32 = np.uint64(0xFFFFFFFF)
PCG64_MUL_HI = np.uint64(2549297995355413924)  # numpy's PCG64 multiplier, 128 bits (pcg64.h)
PCG64_MUL_LO = np.uint64(4865540595714422341)
FLOAT24_UNIT = np.float32(1.0 / 16777216.0)


@_jit
def _mulhi64(a, b):
    """The high 64 bits of the 128-bit product a * b (uint64), from four 32-bit products."""
    a0, a1 = a & U64_LOW32, a >> np.uint64(32)
    b0, b1 = b & U64_LOW32, b >> np.uint64(32)
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> np.uint64(32)) + (p01 & U64_LOW32) + (p10 & U64_LOW32)
    return p11 + (p01 >> np.uint64(32)) + (p10 >> np.uint64(32)) + (mid >> np.uint64(32))


@_jit
def _lcg128(hi, lo, mul_hi, mul_lo, add_hi, add_lo):
    """(hi, lo) * (mul_hi, mul_lo) + (add_hi, add_lo) modulo 2^128, each 128-bit number as two uint64."""
    plo = lo * mul_lo
    phi = _mulhi64(lo, mul_lo) + lo * mul_hi + hi * mul_lo
    rlo = plo + add_lo
    return phi + add_hi + (np.uint64(1) if rlo < plo else np.uint64(0)), rlo


@_jit
def _xsl_rr(hi, lo):
    """PCG's XSL-RR output of a 128-bit state: hi ^ lo rotated right by the state's top 6 bits."""
    x = hi ^ lo
    r = hi >> np.uint64(58)
    return (x >> r) | (x << ((np.uint64(64) - r) & np.uint64(63)))


@_jit
def _two_floats(v, out, i):
    """numpy's next_float from the two 32-bit halves of one 64-bit output, low half first (PCG64's
    next_uint32 returns the low half and keeps the high one for the next call): (u >> 8) * 2^-24."""
    out[i] = np.float32((v & U64_LOW32) >> np.uint64(8)) * FLOAT24_UNIT
    out[i + 1] = np.float32(v >> np.uint64(40)) * FLOAT24_UNIT


@_jit
def pcg64_uniforms(hi, lo, inc_hi, inc_lo, jump_hi, jump_lo, jadd_hi, jadd_lo, out):
    """Fill out with the float32 uniforms numpy's PCG64 Generator draws from state (hi, lo) and
    increment (inc_hi, inc_lo), no 32-bit half held: one 64-bit output per two values. Returns the
    state after the last output used and the high half of that output (numpy keeps it as its held
    half, to hand out next when len(out) is odd; 0 when no output was used).

    numpy's loop steps the 128-bit LCG once per output, a chain of dependent multiplications; here four
    lanes hold four consecutive states and each jumps four steps at a time (state * jump + jadd, with
    jump = M^4 and jadd = inc (M^3 + M^2 + M + 1) modulo 2^128, from the caller), so the four chains
    overlap. Integer arithmetic throughout: the outputs, and so the values, are exactly numpy's."""
    n = out.shape[0]
    pairs = n // 2
    h0, l0 = _lcg128(hi, lo, PCG64_MUL_HI, PCG64_MUL_LO, inc_hi, inc_lo)
    h1, l1 = _lcg128(h0, l0, PCG64_MUL_HI, PCG64_MUL_LO, inc_hi, inc_lo)
    h2, l2 = _lcg128(h1, l1, PCG64_MUL_HI, PCG64_MUL_LO, inc_hi, inc_lo)
    h3, l3 = _lcg128(h2, l2, PCG64_MUL_HI, PCG64_MUL_LO, inc_hi, inc_lo)
    done = 0  # 64-bit outputs used so far; (hi, lo) the state that gave the last
    for q in range(pairs // 4):
        o = out[8 * q:8 * q + 8]
        _two_floats(_xsl_rr(h0, l0), o, 0)
        _two_floats(_xsl_rr(h1, l1), o, 2)
        _two_floats(_xsl_rr(h2, l2), o, 4)
        _two_floats(_xsl_rr(h3, l3), o, 6)
        hi, lo = h3, l3
        h0, l0 = _lcg128(h0, l0, jump_hi, jump_lo, jadd_hi, jadd_lo)
        h1, l1 = _lcg128(h1, l1, jump_hi, jump_lo, jadd_hi, jadd_lo)
        h2, l2 = _lcg128(h2, l2, jump_hi, jump_lo, jadd_hi, jadd_lo)
        h3, l3 = _lcg128(h3, l3, jump_hi, jump_lo, jadd_hi, jadd_lo)
        done += 4
    while 2 * done < n:  # the last pairs, and a last odd value, one step at a time
        hi, lo = _lcg128(hi, lo, PCG64_MUL_HI, PCG64_MUL_LO, inc_hi, inc_lo)
        v = _xsl_rr(hi, lo)
        if 2 * done + 1 < n:
            _two_floats(v, out, 2 * done)
        else:
            out[2 * done] = np.float32((v & U64_LOW32) >> np.uint64(8)) * FLOAT24_UNIT
        done += 1
    return hi, lo, (_xsl_rr(hi, lo) >> np.uint64(32)) if done > 0 else np.uint64(0)
