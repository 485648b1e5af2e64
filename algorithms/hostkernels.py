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
except ImportError:  # optional dependency: the array-API path serves
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
    """numpy's pairwise sum of at most 128 values: 8 accumulators, then the rest in order."""
    if n < 8:
        res = F0
        for i in range(start, start + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[start], a[start + 1], a[start + 2], a[start + 3]
    r4, r5, r6, r7 = a[start + 4], a[start + 5], a[start + 6], a[start + 7]
    i = start + 8
    stop = start + n - n % 8
    while i < stop:
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < start + n:
        res += a[i]
        i += 1
    return res


def pairwise_stack():
    """Scratch for `pairwise`: its recursion, unrolled onto an explicit stack (numba's on-disk cache
    mishandles recursive functions), one frame per level (start, n, stage, left sum, right sum)."""
    return np.zeros((64, 5), dtype=np.float64)


@_jit
def pairwise(a, start, n, stack):
    """numpy's pairwise sum of a[start:start + n] (float32 accumulators), in numpy's order: halves split
    at a multiple of 8 until at most 128 values remain, each summed by `_leaf`. `stack` from
    pairwise_stack() (float32 sums are stored exactly in its float64 slots)."""
    if n <= 128:
        return _leaf(a, start, n)
    stack[0, 0], stack[0, 1], stack[0, 2] = start, n, 0
    top = 1
    result = F0
    while top > 0:
        f = top - 1
        s0, m, stage = int(stack[f, 0]), int(stack[f, 1]), int(stack[f, 2])
        if m <= 128 or stage == 2:
            if m <= 128:
                v = _leaf(a, s0, m)
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


# ---------------------------------------------------------------------------------------------------
# packing (bits.pack's layout: code i at bits i*b .. i*b + b - 1 of the little-endian bit stream)

ABS = np.uint32(0x7FFFFFFF)
INF_BITS = np.uint32(0x7F800000)


def chunk_codes(size: int) -> np.ndarray:
    """A uint8 buffer for the codes of a run of whole buckets, 8k of them (so a run's codes are whole
    bytes) and about 4096 values: the kernels compute a run's codes, then pack them."""
    per = -(-max(1, 4096 // size) // 8) * 8
    return np.zeros(per * size, dtype=np.uint8)


@_jit
def pack_codes(codes, count, bits, out, byte0):
    """Pack codes[:count] (each < 2^bits) into out[byte0:], whole bytes; a last partial byte zero-filled."""
    o = byte0
    if bits == 8:
        for i in range(count):
            out[o + i] = codes[i]
        return
    if 8 % bits == 0:
        per = 8 // bits
        full = count // per
        for g in range(full):
            w = 0
            for j in range(per):
                w |= np.int64(codes[g * per + j]) << (j * bits)
            out[o + g] = w
        rest = count - full * per
        if rest:
            w = 0
            for j in range(rest):
                w |= np.int64(codes[full * per + j]) << (j * bits)
            out[o + full] = w
        return
    full = count // 8
    for g in range(full):
        w = 0
        for j in range(8):
            w |= np.int64(codes[8 * g + j]) << (j * bits)
        for j in range(bits):
            out[o + j] = (w >> (8 * j)) & 0xFF
        o += bits
    rest = count - full * 8
    if rest:
        w = 0
        for j in range(rest):
            w |= np.int64(codes[8 * full + j]) << (j * bits)
        for j in range((rest * bits + 7) // 8):
            out[o + j] = (w >> (8 * j)) & 0xFF


@_jit
def unpack_codes(buf, byte0, count, bits, codes):
    """Inverse of pack_codes: codes[:count] from buf[byte0:]."""
    o = byte0
    mask = (1 << bits) - 1
    if bits == 8:
        for i in range(count):
            codes[i] = buf[o + i]
        return
    if 8 % bits == 0:
        per = 8 // bits
        for i in range(count):
            codes[i] = (np.int64(buf[o + i // per]) >> ((i % per) * bits)) & mask
        return
    full = count // 8
    for g in range(full):
        w = 0
        for j in range(bits):
            w |= np.int64(buf[o + j]) << (8 * j)
        for j in range(8):
            codes[8 * g + j] = (w >> (j * bits)) & mask
        o += bits
    rest = count - full * 8
    if rest:
        w = 0
        for j in range((rest * bits + 7) // 8):
            w |= np.int64(buf[o + j]) << (8 * j)
        for j in range(rest):
            codes[8 * full + j] = (w >> (j * bits)) & mask


@_jit
def abs_max_bits(xi, start, m):
    """The largest |x| of x[start:start + m] as float32 bits (x viewed as uint32): integer order is |x|'s
    order, and bits >= INF_BITS mean a value that is not finite."""
    mx = np.uint32(0)
    for i in range(start, start + m):
        v = xi[i] & ABS
        mx = v if v > mx else mx
    return mx


# ---------------------------------------------------------------------------------------------------
# one-scale quantizers: QSGD, NUQSGD, TernGrad, SDP4Bit's symmetric Q_{k,G}

QSGD, NUQSGD, TERNGRAD, SYMMETRIC = 0, 1, 2, 3


@_jit
def one_scale_encode(x, xi, u, use_u, size, mode, levels, bits, tab_low, tab_width, floats, packed, buf, stack,
                     codes, cell):
    """Encode rows x (rows, n) float32 (xi: the same bits as uint32) in buckets of `size`: scales into
    floats (rows, nb), codes packed `bits` wide into packed (rows, ceil(n bits / 8)). buf: float32 scratch
    of `size` (its uint32 view not needed), codes: chunk_codes(size), cell: a float32 (1,) array and its
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
        xs, xis = x[r], xi[r]
        us = u[r] if use_u else u[0]
        for c0 in range(0, nb, per):
            c1 = min(nb, c0 + per)
            for b in range(c0, c1):
                start = b * size
                m = min(size, n - start)
                off = (b - c0) * size
                mx = abs_max_bits(xis, start, m)
                if mx >= INF_BITS:
                    return False
                ci[0] = mx
                big = cf[0]
                if mode == QSGD or mode == NUQSGD:
                    d = big if big > F0 else F1
                    for i in range(m):
                        t = abs(xs[start + i]) / d
                        buf[i] = t * t
                    for i in range(m, size):
                        buf[i] = F0
                    scale = big * np.float32(math.sqrt(pairwise(buf, 0, size, stack)))
                else:
                    scale = big
                floats[r, b] = scale
                ds = scale if scale > F0 else F1
                if mode == QSGD:
                    for i in range(m):
                        v = xs[start + i]
                        p = abs(v) / ds * flev
                        ip = int(p)
                        f = p - np.float32(ip)
                        uu = us[start + i] if use_u else HALF
                        c = ip + (1 if uu < f else 0)
                        c = c if c < top else top
                        codes[off + i] = c | ((1 if v < F0 else 0) << signpos)
                elif mode == NUQSGD:
                    for i in range(m):
                        v = xs[start + i]
                        p = abs(v) / ds
                        j = 0
                        for k in range(1, levels + 1):
                            j += 1 if p >= tab_low[k] else 0
                        w = tab_width[j]
                        f = (p - tab_low[j]) / (w if w > F0 else F1)
                        f = f if w > F0 else F0
                        uu = us[start + i] if use_u else HALF
                        c = j + (1 if uu < f else 0)
                        codes[off + i] = c | ((1 if v < F0 else 0) << signpos)
                elif mode == TERNGRAD:
                    for i in range(m):
                        v = xs[start + i]
                        p = abs(v) / ds
                        ip = int(p)
                        f = p - np.float32(ip)
                        uu = us[start + i] if use_u else HALF
                        c = ip + (1 if uu < f else 0)
                        c = c if c < 1 else 1
                        codes[off + i] = c << (1 if v < F0 else 0)
                else:
                    for i in range(m):
                        p = xs[start + i] / ds * flev + flev
                        ip = int(p)
                        f = p - np.float32(ip)
                        uu = us[start + i] if use_u else HALF
                        c = ip + (1 if uu < f else 0)
                        codes[off + i] = c if c < top else top
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
        o = out[r]
        for c0 in range(0, nb, per):
            c1 = min(nb, c0 + per)
            count = min(n, c1 * size) - c0 * size
            unpack_codes(packed[r], c0 * size * bits // 8, count, bits, codes)
            for b in range(c0, c1):
                start = b * size
                m = min(size, n - start)
                off = (b - c0) * size
                scale = scales[r, b]
                for i in range(m):
                    o[start + i] = scale * unit[codes[off + i]]


@_jit
def table_decode(packed, tables, size, bits, out, codes):
    """out (rows, n) = tables[row, bucket, code]. Returns False for a code beyond the table."""
    rows, n = out.shape
    nb, width = tables.shape[1], tables.shape[2]
    per = codes.shape[0] // size
    for r in range(rows):
        o = out[r]
        for c0 in range(0, nb, per):
            c1 = min(nb, c0 + per)
            count = min(n, c1 * size) - c0 * size
            unpack_codes(packed[r], c0 * size * bits // 8, count, bits, codes)
            for i in range(count):
                if codes[i] >= width:
                    return False
            for b in range(c0, c1):
                start = b * size
                m = min(size, n - start)
                off = (b - c0) * size
                tb = tables[r, b]
                for i in range(m):
                    o[start + i] = tb[codes[off + i]]
    return True


# ---------------------------------------------------------------------------------------------------
# BinGrad: 2-level Lloyd-Max per bucket


@_jit
def bingrad_encode(x, size, max_sweeps, floats, packed, lower, upper, stack):
    """Levels b1, b2 into floats (rows, nb, 2), 1-bit codes [x > (b1 + b2) / 2] into packed. Lloyd's
    iteration from tau = 0 as quantizers.BinGrad does it, sums pairwise over the zero-padded bucket.
    Returns False when a value is not finite."""
    rows, n = x.shape
    nb = floats.shape[1]
    two = np.float32(2.0)
    for r in range(rows):
        acc = 0
        nbits = 0
        o = 0
        for b in range(nb):
            start = b * size
            m = min(size, n - start)
            for i in range(m):
                if not abs(x[r, start + i]) < np.inf:
                    return False
            for i in range(m, size):
                lower[i] = F0
                upper[i] = F0
            t = F0
            b1 = F0
            b2 = F0
            for _ in range(max_sweeps):
                n1 = 0
                n2 = 0
                for i in range(m):
                    v = x[r, start + i]
                    if v > t:
                        upper[i] = v
                        lower[i] = F0
                        n2 += 1
                    else:
                        upper[i] = F0
                        lower[i] = v
                        n1 += 1
                f2 = np.float32(n2)
                f1 = np.float32(n1)
                m2 = pairwise(upper, 0, size, stack) / (f2 if f2 > F0 else F1)
                m1 = pairwise(lower, 0, size, stack) / (f1 if f1 > F0 else F1)
                b1 = m1 if n1 > 0 else m2
                b2 = m2 if n2 > 0 else m1
                new_t = (b1 + b2) / two
                if new_t == t:
                    break
                t = new_t
            floats[r, b, 0] = b1
            floats[r, b, 1] = b2
            tau = (b1 + b2) / two
            for i in range(m):
                if x[r, start + i] > tau:
                    acc |= 1 << nbits
                nbits += 1
                if nbits == 8:
                    packed[r, o] = acc
                    o += 1
                    acc = 0
                    nbits = 0
        if nbits > 0:
            packed[r, o] = acc
    return True


# ---------------------------------------------------------------------------------------------------
# ORQ: variance-optimal levels on the sorted bucket


@_jit
def _best_interior_level(g, m, left, right, current, above, stack):
    """quantizers._best_interior_level for one sorted bucket g (size values, the first m real, the rest
    +inf): the smallest g_j in [left, right] whose slope is >= 0, else current. The sum of the
    `above` side is pairwise over the whole bucket (zeros outside [left, right]), as numpy's."""
    size = g.shape[0]
    lo = 0
    while lo < m and not g[lo] >= left:
        lo += 1
    hi = lo
    while hi < m and g[hi] <= right:
        hi += 1
    if lo == hi:
        return current
    for i in range(size):
        above[i] = F0
    for i in range(lo, hi):
        above[i] = right - g[i]
    total = pairwise(above, 0, size, stack)
    cb = F0
    ca = F0
    for j in range(lo, hi):
        cb += g[j] - left
        ca += above[j]
        if cb - (total - ca) >= F0:
            return g[j]
    return current


@_jit
def orq_levels(g, counts, s, max_sweeps, levels, above, stack):
    """Levels (buckets, s + 1) of sorted buckets g (buckets, size), each with counts[b] real values
    first (the rest +inf): ORQ.solve_levels bucket by bucket. Returns a flag per bucket, True where a
    level came out zero (-0.0 or +0.0: np.min's choice between them is not the kernel's to make) or a
    value is not finite; the caller recomputes those buckets on the array-API path."""
    nbk, size = g.shape
    flags = np.zeros(nbk, dtype=np.bool_)
    for b in range(nbk):
        row = g[b]
        m = counts[b]
        lo = row[0]
        hi = row[m - 1]
        if not (abs(lo) < np.inf and abs(hi) < np.inf):
            flags[b] = True
            continue
        span = hi - lo
        for k in range(s + 1):
            if k == 0:
                levels[b, k] = lo
            elif k == s:
                levels[b, k] = hi
            else:
                levels[b, k] = lo + span * np.float32(k / s)
        if s > 1:
            for _ in range(max_sweeps):
                moved = False
                for k in range(1, s):
                    new = _best_interior_level(row, m, levels[b, k - 1], levels[b, k + 1], levels[b, k], above, stack)
                    if new != levels[b, k]:
                        moved = True
                    levels[b, k] = new
                if not moved:
                    break
        for k in range(s + 1):
            if levels[b, k] == F0:
                flags[b] = True
    return flags


@_jit
def orq_codes(x, u, use_u, size, table, packed, byte0):
    """ORQ's codes of rows x (rows, n) against the float32 level tables (rows, nb, s + 1), packed from
    byte `byte0` of each row of packed (n * bits a multiple of 8 unless this is the row's end)."""
    rows, n = x.shape
    width = table.shape[2]
    bits = 1
    while (1 << bits) < width:
        bits += 1
    for r in range(rows):
        acc = 0
        nbits = 0
        o = byte0
        for i in range(n):
            v = x[r, i]
            tb = table[r, i // size]
            k = 0
            for j in range(1, width - 1):
                if v >= tb[j]:
                    k += 1
            low = tb[k]
            w = tb[k + 1] - low
            f = (v - low) / w if w > F0 else F0
            uu = u[r, i] if use_u else HALF
            c = k + (1 if uu < f else 0)
            acc |= c << nbits
            nbits += bits
            while nbits >= 8:
                packed[r, o] = acc & 0xFF
                o += 1
                acc >>= 8
                nbits -= 8
        if nbits > 0:
            packed[r, o] = acc & 0xFF
