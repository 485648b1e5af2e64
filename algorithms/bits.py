"""Packing b-bit unsigned integer codes into bytes along the last axis, and back (numpy or torch).

n codes of b bits (1 <= b <= 8) become ceil(n * b / 8) uint8 bytes; the unused high bits of the
last byte are zero. Bit order: little-endian, code by code. Code i occupies bits i*b .. i*b + b - 1
of the little-endian bit stream, where bit j is bit (j % 8) of byte j // 8 and bit 0 is the least
significant bit of a byte; within a code, its least significant bit comes first. For b = 2, codes
[1, 2, 3, 0] pack into the single byte 0b00_11_10_01 = 0x39.

numpy arrays and CPU tensors go through numpy kernels: packbits/unpackbits (little bit order) for
b = 1, which is this layout exactly; when b divides 8, the 8 / b strided fields of each byte OR-ed
together (and shifted out again); other widths through one little-endian 64-bit word per 8 codes.
Other tensors (CUDA) use the array-API path: when b divides 8 each byte holds 8 / b whole codes and packing is a
shift-and-sum over groups; other widths (3, 5, 6, 7: e.g. QSGD's sign + level) go through the bit
stream. Tests check that both paths give the same bytes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_numpy_array, is_torch_array
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


def on_host(x: Any) -> bool:
    """Whether x is in host memory (a numpy array or a CPU tensor): the numpy kernels apply."""
    return is_numpy_array(x) or (is_torch_array(x) and x.device.type == "cpu")


def _as_numpy(x: Any) -> np.ndarray:
    return x.numpy() if is_torch_array(x) else x


def _like(out: np.ndarray, x: Any) -> Any:
    if is_torch_array(x):
        import torch

        return torch.from_numpy(out)
    return out


def pack(codes: Any, b: int) -> Any:
    """Pack integer codes in [0, 2**b) along the last axis: (..., n) -> (..., ceil(n*b/8)) uint8."""
    _check(b)
    if not on_host(codes):
        return pack_array_api(codes, b)
    if b == 1:  # packbits reads any nonzero code (bool included) as a 1 bit: no cast to uint8 first
        return _like(np.packbits(_as_numpy(codes), axis=-1, bitorder="little"), codes)
    c = np.ascontiguousarray(_as_numpy(codes), dtype=np.uint8)
    lead, n = c.shape[:-1], c.shape[-1]
    if 8 % b == 0:  # 8 / b whole codes per byte: OR the strided fields of each byte together
        groups = _pad_last(c, packed_bytes(n, b) * (8 // b)).reshape(lead + (-1, 8 // b))
        packed = groups[..., 0].copy()
        for i in range(1, 8 // b):
            packed |= groups[..., i] << np.uint8(i * b)
        return _like(packed, codes)
    # 8 codes of b bits are exactly b bytes: OR them into one little-endian 64-bit word per group,
    # then keep the word's first b bytes.
    groups = _pad_last(c, -(-n // 8) * 8).reshape(lead + (-1, 8))
    word = groups[..., 0].astype(np.uint64)
    for i in range(1, 8):
        word |= groups[..., i].astype(np.uint64) << np.uint64(i * b)
    packed = word.astype("<u8").view(np.uint8).reshape(lead + (-1, 8))[..., :b].reshape(lead + (-1,))
    return _like(np.ascontiguousarray(packed[..., :packed_bytes(n, b)]), codes)


def unpack(buf: Any, b: int, n: int) -> Any:
    """Inverse of `pack`: (..., ceil(n*b/8)) uint8 -> (..., n) uint8 codes."""
    _check(b)
    if buf.shape[-1] != packed_bytes(n, b):
        raise ValueError(f"{n} codes of {b} bits take {packed_bytes(n, b)} bytes, got {buf.shape[-1]}")
    if not on_host(buf):
        return unpack_array_api(buf, b, n)
    a = np.ascontiguousarray(_as_numpy(buf))
    if b == 1:
        return _like(np.unpackbits(a, axis=-1, count=n, bitorder="little"), buf)
    if 8 % b == 0:
        per, mask = 8 // b, np.uint8(2 ** b - 1)
        fields = np.empty(a.shape + (per,), dtype=np.uint8)
        for i in range(per):
            np.bitwise_and(a >> np.uint8(i * b), mask, out=fields[..., i])
        return _like(np.ascontiguousarray(fields.reshape(a.shape[:-1] + (-1,))[..., :n]), buf)
    lead, m = a.shape[:-1], -(-n // 8)
    words = np.zeros(lead + (m, 8), dtype=np.uint8)
    chunks = np.zeros(lead + (m * b,), dtype=np.uint8)
    chunks[..., :a.shape[-1]] = a
    words[..., :b] = chunks.reshape(lead + (m, b))
    word = words.view("<u8")[..., 0]
    mask = np.uint64(2 ** b - 1)
    codes = np.empty(lead + (m, 8), dtype=np.uint8)
    for i in range(8):
        codes[..., i] = (word >> np.uint64(i * b)) & mask
    return _like(np.ascontiguousarray(codes.reshape(lead + (-1,))[..., :n]), buf)


def pack_array_api(codes: Any, b: int) -> Any:
    """`pack` in array-API operations only (the path for tensors not on the host)."""
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


def unpack_array_api(buf: Any, b: int, n: int) -> Any:
    """`unpack` in array-API operations only."""
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
