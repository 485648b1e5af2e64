"""The compression vocabulary every compressing method speaks (GRACE's Compressor and Memory; Xu et al.,
"GRACE: A Compressed Communication Framework for Distributed Machine Learning", ICDCS 2021).

Compressor: what one worker puts on the wire for a vector, and how a receiver reads it back.
    compress(x, uniforms=None) -> payload     uint8 (..., payload_bytes(n, itemsize)), x (..., n)
    decompress(payload, n, dtype) -> x_hat    (..., n) in `dtype`
    payload_bytes(n, itemsize) -> int         bytes of the payload of n values of `itemsize` bytes each
    stochastic                                whether compress draws on the caller's uniforms
Sizes are always bytes; a method's stated bits are payload_bytes * 8. The quantizers
(algorithms/quantizers.py, sdp_quant.py) and top-k (here) are compressors; COMPRESSORS names them all.

Memory: what a worker keeps of past updates that were not sent (error feedback).
    compensate(error, update) -> p            the vector to compress this step
    update(p, payload, compressor) -> error   what of p the payload did not carry
With ErrorFeedback (Stich et al. 2018; Karimireddy et al. 2019) p = e + update and e = p - C^-1(C(p)),
so every step keeps the invariant p = e_new + C^-1(C(p)): nothing is lost, only delayed. NoMemory
sends the update itself and keeps nothing (plain compressed SGD). `compress_with_memory` is that step.

Uniforms for stochastic rounding come from numpy Generators seeded (seed, worker, *stream), so a
simulated worker and the real rank with the same id draw the same numbers (`worker_uniforms`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import numpy as np
from array_api_compat import device as device_of
from thinwire.algorithms import hostkernels, wire
from thinwire.algorithms.comm import Communicator
from thinwire.algorithms.quantizers import QUANTIZERS

TOPK = "topk"


class Compressor(Protocol):
    stochastic: ClassVar[bool]

    def compress(self, x: Any, uniforms: Any = None) -> Any: ...

    def decompress(self, payload: Any, n: int, dtype: Any) -> Any: ...

    def payload_bytes(self, n: int, itemsize: int) -> int: ...


class Memory(Protocol):
    def compensate(self, error: Any, update: Any) -> Any: ...

    def update(self, compensated: Any, payload: Any, compressor: Compressor) -> Any: ...


@dataclasses.dataclass(frozen=True)
class TopK:
    """Top-k sparsification: the k largest |x| (k the `density` share of n, at least 1, rounded to
    nearest or, as DGC's code does, up), sent as k int32 indices (ascending), then the k values in the
    caller's dtype, packed in one uint8 payload."""

    density: float
    round_up: bool = False
    stochastic: ClassVar[bool] = False

    def k(self, n: int) -> int:
        return max(1, math.ceil(self.density * n) if self.round_up else round(self.density * n))

    def select(self, x: Any) -> Any:
        """int32 indices (..., k), ascending, of the k largest-magnitude entries of x (..., n)."""
        return wire.top_k_indices(x, self.k(x.shape[-1]))

    def payload_bytes(self, n: int, itemsize: int) -> int:
        return self.k(n) * (4 + itemsize)

    def compress(self, x: Any, uniforms: Any = None) -> Any:
        idx = self.select(x)
        return wire.pack([idx, wire.take_last(x, idx)])

    def _entries(self, payload: Any, n: int, dtype: Any) -> tuple[Any, Any]:
        k = self.k(n)
        return tuple(wire.unpack(payload, [(wire.dtype_like(payload, "int32"), k), (dtype, k)]))

    def decompress(self, payload: Any, n: int, dtype: Any) -> Any:
        idx, vals = self._entries(payload, n, dtype)
        return wire.scatter_sum(idx[..., None, :], vals[..., None, :], n)

    def decompress_sum(self, gathered: Any, n: int, dtype: Any) -> Any:
        """The sum over axis -2 of gathered payloads (..., S, bytes), entries added in source order,
        without a dense vector per payload."""
        idx, vals = self._entries(gathered, n, dtype)
        return wire.scatter_sum(idx, vals, n)


def check_compressor(name: str) -> None:
    if name not in COMPRESSORS:
        raise ValueError(f"compressor must be {TOPK!r} or a quantizer ({', '.join(sorted(QUANTIZERS))}), "
                         f"got {name!r}")


def make_compressor(name: str, density: float = 0.01, levels: int = 4, bucket_size: int = 512) -> Compressor:
    """The compressor called `name`: top-k keeps `density`, a quantizer takes `levels` and `bucket_size`."""
    check_compressor(name)
    return COMPRESSORS[name](density, levels, bucket_size)


COMPRESSORS: dict[str, Callable[[float, int, int], Compressor]] = {
    TOPK: lambda density, levels, bucket_size: TopK(density),
    **{name: (lambda density, levels, bucket_size, q=q: q(levels, bucket_size)) for name, q in QUANTIZERS.items()},
}


class ErrorFeedback:
    """e <- p - C^-1(C(p)) with p = e + update: the memory of error-feedback SGD."""

    def compensate(self, error: Any, update: Any) -> Any:
        return error + update

    def update(self, compensated: Any, payload: Any, compressor: Compressor) -> Any:
        return compensated - compressor.decompress(payload, compensated.shape[-1], compensated.dtype)


class NoMemory:
    """Send the update itself; the error stays 0 (unbiased compressors without error feedback)."""

    def compensate(self, error: Any, update: Any) -> Any:
        return update

    def update(self, compensated: Any, payload: Any, compressor: Compressor) -> Any:
        return wire.namespace(compensated).zeros_like(compensated)


def compress_with_memory(compressor: Compressor, memory: Memory, error: Any, update: Any,
                         uniforms: Any = None) -> tuple[Any, Any]:
    """One worker's compressed step: (payload of C(compensate(error, update)), new error)."""
    p = memory.compensate(error, update)
    payload = compressor.compress(p, uniforms)
    return payload, memory.update(p, payload, compressor)


def worker_uniforms(like: Any, comm: Communicator, seed: int, *stream: int) -> Any:
    """Uniforms in [0, 1) shaped and typed like `like`, each worker's from a Generator seeded
    (seed, worker, *stream), so every mode draws the same numbers for the same worker."""
    per = math.prod(like.shape) // len(comm.workers)
    dtype = np.dtype(str(like.dtype).removeprefix("torch."))
    draws = np.empty((len(comm.workers), per), dtype=dtype)
    for i, w in enumerate(comm.workers):
        draw_uniforms(np.random.default_rng([seed, w, *stream]), per, dtype, out=draws[i])
    return comm.xp.asarray(draws.reshape(tuple(like.shape)), device=device_of(like))


_PCG64_MUL = 0x2360ED051FC65DA44385DF649FCCF645  # numpy's PCG64 multiplier (pcg64.h)
_U128 = (1 << 128) - 1
_U64 = (1 << 64) - 1
_SHORT_DRAW = 64  # below this, numpy's own call is as quick


def draw_uniforms(gen: np.random.Generator, n: int, dtype: Any = np.float32, out: np.ndarray | None = None) -> np.ndarray:
    """gen.random(n, dtype=dtype), leaving gen as that call would; into `out` (n contiguous values of
    dtype) when given, as Generator.random(out=...) does. float32 from numpy's default PCG64
    with numba installed: the compiled hostkernels.pcg64_uniforms, the same numbers a few times faster
    (numpy steps one dependent 128-bit multiplication per two values; the kernel overlaps four),
    starting from gen's state (a 32-bit half numpy holds back comes first) and writing the state
    back as numpy leaves it (the last output's high half kept, marked held when n of it are odd). Any other generator or dtype: numpy's call."""
    dtype = np.dtype(dtype)
    bitgen = gen.bit_generator
    if not (hostkernels.ENABLED and dtype == np.float32 and type(bitgen) is np.random.PCG64 and n >= _SHORT_DRAW):
        return gen.random(n, dtype=dtype) if out is None else gen.random(dtype=dtype, out=out)
    st = bitgen.state
    state, inc = st["state"]["state"], st["state"]["inc"]
    out = np.empty(n, dtype=np.float32) if out is None else out
    held, spare = st["has_uint32"], st["uinteger"]
    first = 0
    if held:  # numpy's next_uint32 hands out the half it kept before stepping
        out[0] = np.float32(spare >> 8) * np.float32(2.0 ** -24)
        first, held = 1, 0
    jump = pow(_PCG64_MUL, 4, 1 << 128)
    jadd = inc * (_PCG64_MUL ** 3 + _PCG64_MUL ** 2 + _PCG64_MUL + 1) & _U128
    hi, lo, half = hostkernels.pcg64_uniforms(*(np.uint64(v >> 64) if k == 0 else np.uint64(v & _U64)
                                                for v in (state, inc, jump, jadd) for k in (0, 1)),
                                              out[first:])
    if n > first:  # numpy keeps the last output's high half, handed out next if n - first is odd
        held, spare = (n - first) % 2, int(half)
    bitgen.state = {"bit_generator": "PCG64", "state": {"state": (int(hi) << 64) | int(lo), "inc": inc},
                    "has_uint32": held, "uinteger": spare}
    return out
