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
def pairwise(a, start, n):
    """numpy's pairwise sum of a[start:start + n] (float32 accumulators), in numpy's order."""
    if n < 8:
        res = F0
        for i in range(start, start + n):
            res += a[i]
        return res
    if n <= 128:
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
    n2 = n // 2
    n2 -= n2 % 8
    return pairwise(a, start, n2) + pairwise(a, start + n2, n - n2)


# ---------------------------------------------------------------------------------------------------
# one-scale quantizers: QSGD, NUQSGD, TernGrad, SDP4Bit's symmetric Q_{k,G}

QSGD, NUQSGD, TERNGRAD, SYMMETRIC = 0, 1, 2, 3


@_jit
def one_scale_encode(x, u, use_u, size, mode, levels, bits, tab_low, tab_width, floats, packed, buf):
    """Encode rows x (rows, n) float32 in buckets of `size`: scales into floats (rows, nb), codes packed
    little-endian `bits` wide into packed (rows, ceil(n bits / 8)). Returns False when a bucket holds a
    value that is not finite (the caller then takes the array-API path)."""
    rows, n = x.shape
    nb = floats.shape[1]
    flev = np.float32(levels)
    top = levels if mode != SYMMETRIC else 2 * levels
    if mode == TERNGRAD:
        top = 1
    signpos = bits - 1
    for r in range(rows):
        acc = 0
        nbits = 0
        o = 0
        for b in range(nb):
            start = b * size
            m = min(size, n - start)
            big = F0
            finite = True
            for i in range(m):
                a = abs(x[r, start + i])
                if not a < np.inf:
                    finite = False
                if a > big:
                    big = a
            if not finite:
                return False
            if mode == QSGD or mode == NUQSGD:
                d = big if big > F0 else F1
                for i in range(m):
                    s = abs(x[r, start + i]) / d
                    buf[i] = s * s
                for i in range(m, size):
                    buf[i] = F0
                scale = big * np.float32(math.sqrt(pairwise(buf, 0, size)))
            else:
                scale = big
            floats[r, b] = scale
            ds = scale if scale > F0 else F1
            for i in range(m):
                v = x[r, start + i]
                uu = u[r, start + i] if use_u else HALF
                if mode == NUQSGD:
                    p = abs(v) / ds
                    j = 0
                    for k in range(1, levels + 1):
                        if p >= tab_low[k]:
                            j += 1
                    w = tab_width[j]
                    f = (p - tab_low[j]) / w if w > F0 else F0
                    c = j + (1 if uu < f else 0)
                else:
                    if mode == QSGD:
                        p = abs(v) / ds * flev
                    elif mode == TERNGRAD:
                        p = abs(v) / ds
                    else:
                        p = v / ds * flev + flev
                    fl = math.floor(p)
                    f = p - np.float32(fl)
                    c = fl + (1 if uu < f else 0)
                    c = 0 if c < 0 else (top if c > top else c)
                if mode == QSGD or mode == NUQSGD:
                    if v < F0:
                        c |= 1 << signpos
                elif mode == TERNGRAD:
                    if v < F0:
                        c <<= 1
                acc |= c << nbits
                nbits += bits
                while nbits >= 8:
                    packed[r, o] = acc & 0xFF
                    o += 1
                    acc >>= 8
                    nbits -= 8
        if nbits > 0:
            packed[r, o] = acc & 0xFF
    return True


@_jit
def scale_decode(packed, scales, unit, size, bits, out):
    """out (rows, n) = scale of the value's bucket * unit[code], codes read from packed (rows, bytes)."""
    rows, n = out.shape
    mask = (1 << bits) - 1
    for r in range(rows):
        acc = 0
        nbits = 0
        o = 0
        for i in range(n):
            if nbits < bits:
                acc |= np.int64(packed[r, o]) << nbits
                o += 1
                nbits += 8
            c = acc & mask
            acc >>= bits
            nbits -= bits
            out[r, i] = scales[r, i // size] * unit[c]


@_jit
def table_decode(packed, tables, size, bits, out):
    """out (rows, n) = tables[row, bucket, code]. Returns False for a code beyond the table."""
    rows, n = out.shape
    width = tables.shape[2]
    mask = (1 << bits) - 1
    for r in range(rows):
        acc = 0
        nbits = 0
        o = 0
        for i in range(n):
            if nbits < bits:
                acc |= np.int64(packed[r, o]) << nbits
                o += 1
                nbits += 8
            c = acc & mask
            acc >>= bits
            nbits -= bits
            if c >= width:
                return False
            out[r, i] = tables[r, i // size, c]
    return True


# ---------------------------------------------------------------------------------------------------
# BinGrad: 2-level Lloyd-Max per bucket


@_jit
def bingrad_encode(x, size, max_sweeps, floats, packed, lower, upper):
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
                m2 = pairwise(upper, 0, size) / (f2 if f2 > F0 else F1)
                m1 = pairwise(lower, 0, size) / (f1 if f1 > F0 else F1)
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
def _best_interior_level(g, m, left, right, current, above):
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
    total = pairwise(above, 0, size)
    cb = F0
    ca = F0
    for j in range(lo, hi):
        cb += g[j] - left
        ca += above[j]
        if cb - (total - ca) >= F0:
            return g[j]
    return current


@_jit
def orq_levels(g, counts, s, max_sweeps, levels, above):
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
                    new = _best_interior_level(row, m, levels[b, k - 1], levels[b, k + 1], levels[b, k], above)
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
