"""Sparse messages on the wire: the (index, value) pairs one worker sends, packed into one byte buffer.

Formats by name; a message holds c entries, indices ascending (positions in the flat parameter vector):
    fp32-int32, fp16-int32, fp32-int64   c indices, then c values: 64, 48 or 96 bits per entry (DGC's
                                         official code sends fp32-int64 by default). The entry count is
                                         the message length over the entry size, so there is no header.
    fp32-rl16                            the DGC paper's count, "32-bit value + 16-bit run length":
        [c: uint32] [c values: float32] [m run lengths: uint16]
        An entry's run length is how many coordinates were skipped since the previous entry (the
        first entry counts from coordinate 0). A run of 65535 or more does not fit in 16 bits: the
        escape 0xFFFF is a run length with no value and means "skip 65535 coordinates"; as many escapes
        as needed precede the entry, whose own run length is then the remainder (< 65535). So
        m = c + escapes, and a message is 32 + 48 c + 16 escapes bits.

`encode` and `decode` take 1-D numpy arrays or torch tensors; `message_bits` is the size a method
states, computed from the indices alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import device as device_of
from thinwire.algorithms import wire

# name -> (value dtype, index dtype, or "rl16" for 16-bit run lengths)
FORMATS = {"fp32-int32": ("float32", "int32"), "fp16-int32": ("float16", "int32"),
           "fp32-int64": ("float32", "int64"), "fp32-rl16": ("float32", "rl16")}
ESCAPE = 0xFFFF
HEADER_BITS = 32


def run_lengths(idx: Any) -> tuple[Any, Any]:
    """(escapes, run length) per entry of ascending indices: the gap since the previous entry is
    escapes * 65535 + run length."""
    xp = wire.namespace(idx)
    idx = xp.astype(idx, xp.int64)
    previous = xp.concat([xp.asarray([-1], dtype=xp.int64, device=device_of(idx)), idx[:-1]])
    gaps = idx - previous - 1
    return gaps // ESCAPE, gaps % ESCAPE


def size_bits(fmt: str, entries: int, escapes: int = 0) -> int:
    """Bits of a message of `entries` entries (and, for run lengths, `escapes` escapes)."""
    value, index = FORMATS[fmt]
    if index != "rl16":
        return 8 * entries * (np.dtype(value).itemsize + np.dtype(index).itemsize)
    return HEADER_BITS + 48 * entries + 16 * escapes


def message_bits(idx: Any, fmt: str) -> int:
    """Bits of the message that carries these ascending indices in format `fmt`."""
    if FORMATS[fmt][1] != "rl16":
        return size_bits(fmt, idx.shape[0])
    escapes, _ = run_lengths(idx)
    return size_bits(fmt, idx.shape[0], int(wire.namespace(idx).sum(escapes)))


def encode(idx: Any, values: Any, fmt: str) -> Any:
    """The uint8 message for entries at ascending `idx` with `values`."""
    value, index = FORMATS[fmt]
    values = wire.astype(values, wire.dtype_like(values, value))
    if index != "rl16":
        return wire.pack([wire.astype(idx, wire.dtype_like(idx, index)), values])
    xp, dev = wire.namespace(idx), device_of(idx)
    escapes, runs = run_lengths(idx)
    c = idx.shape[0]
    # Entry i's run length sits after its own escapes and everything before it.
    slots = xp.arange(c, dtype=xp.int64, device=dev) + xp.cumulative_sum(escapes)
    tokens = xp.full((c + int(xp.sum(escapes)),), ESCAPE, dtype=xp.int64, device=dev)
    tokens[slots] = runs
    header = xp.asarray([c], dtype=wire.dtype_like(idx, "uint32"), device=dev)
    return wire.pack([header, values, wire.astype(tokens, wire.dtype_like(idx, "uint16"))])


def decode(buf: Any, fmt: str) -> tuple[Any, Any]:
    """(int64 indices, values) from a message made by `encode`."""
    value, index = FORMATS[fmt]
    vdt = wire.dtype_like(buf, value)
    if index != "rl16":
        idt = wire.dtype_like(buf, index)
        c = buf.shape[-1] // (np.dtype(value).itemsize + np.dtype(index).itemsize)
        idx, values = wire.unpack(buf, [(idt, c), (vdt, c)])
        return wire.astype(idx, wire.dtype_like(buf, "int64")), values
    xp = wire.namespace(buf)
    c = int(wire.from_bytes(buf[:4], wire.dtype_like(buf, "uint32"))[0])
    values = wire.from_bytes(buf[4:4 + 4 * c], vdt)
    tokens = xp.astype(wire.from_bytes(buf[4 + 4 * c:], wire.dtype_like(buf, "uint16")), xp.int64)
    escape = tokens == ESCAPE
    position = xp.cumulative_sum(xp.where(escape, tokens, tokens + 1)) - 1
    idx = position[~escape]
    if idx.shape[0] != c:
        raise ValueError(f"corrupt {fmt} message: header says {c} entries, run lengths give {idx.shape[0]}")
    return idx, values
