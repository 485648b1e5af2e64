"""Packing b-bit unsigned integer codes into bytes along the last axis, and back (numpy or torch).

n codes of b bits (1 <= b <= 8) become ceil(n * b / 8) uint8 bytes; the unused high bits of the
last byte are zero. Bit order: little-endian, code by code. Code i occupies bits i*b .. i*b + b - 1
of the little-endian bit stream, where bit j is bit (j % 8) of byte j // 8 and bit 0 is the least
significant bit of a byte; within a code, its least significant bit comes first. For b = 2, codes
[1, 2, 3, 0] pack into the single byte 0b00_11_10_01 = 0x39.

When b divides 8 each byte holds 8 / b whole codes and packing is a shift-and-sum over groups;
other widths (3, 5, 6, 7: e.g. QSGD's sign + level) go through the bit stream.
"""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import array_namespace
from array_api_compat import device as device_of


def packed_bytes(n: int, b: int) -> int:
    """Bytes that n codes of b bits take: ceil(n * b / 8)."""
    return math.ceil(n * b / 8)


def _check(b: int) -> None:
    if not (isinstance(b, int) and 1 <= b <= 8):
        raise ValueError(f"code width must be an integer number of bits in 1..8, got {b!r}")


def _pad_last(x: Any, length: int) -> Any:
    xp = array_namespace(x)
    missing = length - x.shape[-1]
    if not missing:
        return x
    zeros = xp.zeros(x.shape[:-1] + (missing,), dtype=x.dtype, device=device_of(x))
    return xp.concat([x, zeros], axis=-1)


def _shifts(xp: Any, count: int, step: int, like: Any) -> Any:
    return xp.asarray([step * j for j in range(count)], dtype=xp.uint8, device=device_of(like))


def pack(codes: Any, b: int) -> Any:
    """Pack integer codes in [0, 2**b) along the last axis: (..., n) -> (..., ceil(n*b/8)) uint8."""
    _check(b)
    xp = array_namespace(codes)
    lead, n = tuple(codes.shape[:-1]), codes.shape[-1]
    codes = xp.astype(codes, xp.uint8)
    if 8 % b == 0:
        per = 8 // b
        groups = xp.reshape(_pad_last(codes, packed_bytes(n, b) * per), lead + (-1, per))
        fields = groups << _shifts(xp, per, b, codes)
    else:
        bits = (codes[..., None] >> _shifts(xp, b, 1, codes)) & 1
        stream = _pad_last(xp.reshape(bits, lead + (n * b,)), packed_bytes(n, b) * 8)
        fields = xp.reshape(stream, lead + (-1, 8)) << _shifts(xp, 8, 1, codes)
    # The fields of one byte are disjoint bits, so their sum is their bitwise or.
    return xp.astype(xp.sum(fields, axis=-1), xp.uint8)


def unpack(buf: Any, b: int, n: int) -> Any:
    """Inverse of `pack`: (..., ceil(n*b/8)) uint8 -> (..., n) uint8 codes."""
    _check(b)
    xp = array_namespace(buf)
    lead = tuple(buf.shape[:-1])
    if buf.shape[-1] != packed_bytes(n, b):
        raise ValueError(f"{n} codes of {b} bits take {packed_bytes(n, b)} bytes, got {buf.shape[-1]}")
    mask = 2 ** b - 1
    if 8 % b == 0:
        fields = (buf[..., None] >> _shifts(xp, 8 // b, b, buf)) & mask
        return xp.reshape(fields, lead + (-1,))[..., :n]
    stream = (buf[..., None] >> _shifts(xp, 8, 1, buf)) & 1
    bits = xp.reshape(xp.reshape(stream, lead + (-1,))[..., :n * b], lead + (n, b))
    return xp.astype(xp.sum(bits << _shifts(xp, b, 1, buf), axis=-1), xp.uint8)
