"""SDP4Bit's compressors (../shared/papers/sdp4bit.md): the group-wise symmetric k-bit quantizer Q_{k,G}
and the block Hadamard transform that smooths gradients before it.

Q_{k,G}: per group of G consecutive values one float32 scale s = max|x| (rounded up to float32), and
per value the integer x_int = round(x / s * L) in -L..L with L = 2^(k-1) - 1 (+-7 at 4 bits, +-127 at 8
bits), sent as the k-bit code x_int + L, packed by bits.pack (two 4-bit codes per byte). Rounding is
to nearest (the paper's round()) or stochastic (its code's unbiased rounding) with uniforms the caller
draws. A payload of n values is 4 ceil(n / G) + ceil(n k / 8) bytes: k + 32 / G bits per value.

H: the orthonormal Walsh-Hadamard transform of every block of `block` (a power of two) consecutive
values, by the fast butterfly (log2(block) passes of sums and differences) in array-API operations, so
numpy and torch run the same code. H is symmetric and orthonormal, so it is its own inverse.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from array_api_compat import is_torch_array
from thinwire.algorithms import bits, hostkernels, quantizers, wire
from thinwire.algorithms.quantizers import Quantizer, max_abs, safe_divisor, stochastic_codes, to_float32


def check_bits(k: int, name: str) -> None:
    if not (isinstance(k, int) and 2 <= k <= 8):
        raise ValueError(f"{name} must be an integer in 2..8, got {k!r}")


@dataclasses.dataclass(frozen=True)
class SymmetricQuantizer(Quantizer):
    """Q_{k,G}: `levels` = L = 2^(k-1) - 1 per sign, `bucket_size` = G. Build it with `symmetric(k, G)`."""

    name, unbiased, stochastic = "symmetric", True, True
    host_mode = hostkernels.SYMMETRIC

    @property
    def bits(self) -> int:
        return (2 * self.levels).bit_length()

    floats = 1  # type: ignore[assignment]

    def _encode(self, xb, mask, u):
        scale = to_float32(max_abs(xb), +1)
        pos = xb / safe_divisor(scale)
        pos *= self.levels
        pos += self.levels
        return scale, stochastic_codes(pos, u, 2 * self.levels)

    def _unit_values(self, like):
        return (wire.astype(self._all_codes(like), like.dtype) - self.levels) / self.levels


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
    if bits.on_host(x):
        out = _hadamard_host(np.ascontiguousarray(x.numpy() if is_torch_array(x) else x), block)
        return xp.asarray(out) if is_torch_array(x) else out
    y = xp.reshape(x, lead + (n // block, block))
    h = 1
    while h < block:
        pairs = xp.reshape(y, lead + (n // block, block // (2 * h), 2, h))
        a, b = pairs[..., 0, :], pairs[..., 1, :]
        y = xp.reshape(xp.stack([a + b, a - b], axis=-2), lead + (n // block, block))
        h *= 2
    return xp.reshape(y, lead + (n,)) * (1 / math.sqrt(block))


def _hadamard_host(x: np.ndarray, block: int) -> np.ndarray:
    """The same butterfly in numpy, a cache-sized run of blocks at a time, transposed so that each pass
    adds and subtracts whole contiguous rows (one per position in the block) straight into the other of
    two buffers: the same additions in the same order, so the same values. With numba, the compiled
    hostkernels.hadamard_blocks does the same operations block by block."""
    out = np.empty_like(x)
    if hostkernels.ENABLED and x.dtype in (np.float32, np.float64):
        hostkernels.hadamard_blocks(x.reshape(-1), block, x.dtype.type(1 / math.sqrt(block)), out.reshape(-1))
        return out
    rows, flat = x.reshape(-1, block), out.reshape(-1, block)
    per = max(1, quantizers.BLOCK_VALUES // block)
    for start in range(0, rows.shape[0], per):
        y = rows[start:start + per].T.copy()  # (block, blocks of this run); a copy: the input stays as it is
        z = np.empty_like(y)
        h = 1
        while h < block:
            pairs, into = y.reshape(block // (2 * h), 2, h, -1), z.reshape(block // (2 * h), 2, h, -1)
            np.add(pairs[:, 0], pairs[:, 1], out=into[:, 0])
            np.subtract(pairs[:, 0], pairs[:, 1], out=into[:, 1])
            y, z = z, y
            h *= 2
        np.multiply(y.T, 1 / math.sqrt(block), out=flat[start:start + per])
    return out
