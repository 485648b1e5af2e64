"""1-bit Adam (Tang et al., ICML 2021; ../shared/papers/onebit_adam.md), with a mode that matches
DeepSpeed 0.19.6's OnebitAdam detail by detail.

Warm-up, steps t < freeze_step: Adam with a full-precision gradient all-reduce (algorithms/adam.py).
Compression stage, t >= freeze_step: the variance v stays frozen at its last warm-up value and the
gradient is no longer all-reduced; the momentum is, at 1 bit, with error feedback on both sides:
    worker i:  m_i = b1 m + (1 - b1) g_i ;  z_i = m_i + e_i ;  e_i = z_i - C(z_i)     worker error
               all-to-all: chunk j of C(z_i) (packed sign bits and its scale) goes to rank j
    server j:  zbar = mean_i C(z_i)[chunk j] + ebar_j ;  ebar_j = zbar - C(zbar)      server error
               all-gather of C(zbar) (packed sign bits and its scale)
    every rank: m = the gathered chunks ;  x = x - lr (m_hat / (sqrt(v_hat) + eps) + wd x)
C(z) = (||z||_2 / sqrt(n)) sign(z) over the n coordinates z is scaled over; sign(0) = +1.

thinwire's default choices:
- bias correction (`bias_correction`, default true): Adam's during warm-up; afterwards the frozen v is
  corrected as at its last update, by 1 / (1 - b2^freeze_step), and m by 1 / (1 - b1^t);
- the first step is an ordinary Adam step;
- the model is one flattened vector of d parameters, zero-padded to p chunks of c = 8 ceil(d / 8p)
  coordinates (whole bytes of sign bits). Each chunk has its own worker scale, sent with its sign bits;
  the padding is excluded from the scales and carries no error;
- `zero_variance_mask` (default true): coordinates whose frozen variance is exactly 0 (no gradient in
  all of warm-up: a dead ReLU unit, an unused embedding row) keep a zero momentum. 1-bit compression
  cannot send a zero, so without the mask they move by lr scale / eps per step (digits-mlp: one dead
  unit, 75 weights, and the loss explodes). DeepSpeed's counterpart is the user-given `exp_avg_mask`.
Per rank and compression step: an all-to-all of p x (c/8 bytes + a scale) and an all-gather of
c/8 bytes + a scale, i.e. (p + 1)(c + b) bits for d parameters with b-bit values, against b d for the
dense all-reduce of the warm-up.

`deepspeed_compat: true` is DeepSpeed 0.19.6's OnebitAdam (runtime/fp16/onebit/adam.py) with its
compressed all-reduce (runtime/comm/compressed.py) as DeepSpeed runs them in fp32:
- no bias correction anywhere, no momentum mask (`bias_correction`, `zero_variance_mask` are ignored);
- the first step only initialises: the engine still all-reduces the gradient, the optimizer runs one
  compressed all-reduce of the zero momentum, and the model does not move. Warm-up Adam runs at steps
  1 .. max(freeze_step, 2) - 1 (DeepSpeed counts the initialising step and checks for the freeze only
  after warm-up steps);
- compression works per parameter tensor: the flattened tensor is zero-padded to a multiple of
  p lcm(p, 8); one worker scale covers the padded tensor (the padding's error is kept, as DeepSpeed's),
  one server scale each chunk; four collectives per tensor: all-to-all of the sign bits, all-gather of
  the worker scale, all-gather of the server's sign bits, all-gather of the server scale;
- a rank alone (p = 1) compresses nothing and sends nothing in the compression stage.
The momentum becomes the compressed average in both modes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

import numpy as np
from array_api_compat import device as device_of
from array_api_compat import is_torch_array
from thinwire.algorithms import bits, wire
from thinwire.algorithms.adam import AdamConfig, bias_corrections, direction, moments
from thinwire.algorithms.comm import Communicator
from thinwire.algorithms.registry import MethodBase, Oracle, register, segments


class Block(NamedTuple):
    """One compressed unit of the flat vector: coordinates [start, stop), padded to `ranks` chunks of
    `chunk` coordinates each."""

    start: int
    stop: int
    chunk: int
    ranks: int

    @property
    def padded(self) -> int:
        return self.chunk * self.ranks




def _pack_signs(z: Any) -> Any:
    """Sign bits of z along the last axis, bit 1 for z >= 0 (sign(0) = +1), packed 8 to a byte."""
    return bits.pack(z >= 0, 1)  # a bool is its bit: no cast to uint8 on the host


def _native(x: Any) -> Any:
    """numpy or torch itself, for their ufunc-style `out=` (the array API has none)."""
    if is_torch_array(x):
        import torch

        return torch
    return np


def _scaled_signs(z: Any, scales: Any, out: Any) -> Any:
    """scales * sign(z) into `out`, sign(0) = sign(-0.0) = +1, for scales >= +0: copysign(scales,
    z + 0.0), two passes. Bit for bit scales * (+-1.0) as before issue 15 (z + 0.0 turns -0.0 into
    +0.0 and leaves every other value as is; scales * (+-1.0) is exactly +-scales) for every z and
    scale that is not NaN."""
    ns = _native(z)
    ns.add(z, 0.0, out=out)
    return ns.copysign(scales, out, out=out)


def _unpack_scaled(buf: Any, n: int, scales: Any, out: Any) -> Any:
    """scales * the +-1 signs packed in buf (n of them along the last axis), into `out`: the unpacked
    0/1 bits shifted to -+0.5 give copysign the sign."""
    ns = _native(out)
    ns.subtract(bits.unpack(buf, 1, n), 0.5, out=out)
    return ns.copysign(scales, out, out=out)


@register
class OnebitAdam(MethodBase):
    name = "onebit-adam"
    tiny: ClassVar[dict[str, Any]] = {"lr": 0.05, "freeze_step": 5}

    @dataclasses.dataclass(frozen=True)
    class Config(AdamConfig):  # bias_correction: default mode only (DeepSpeed applies none)
        freeze_step: int = 20  # T_w, warm-up steps; the paper recommends 15-25% of the run
        # Default mode only: no momentum where the frozen variance is exactly 0 (see the docstring).
        zero_variance_mask: bool = True
        deepspeed_compat: bool = False  # match DeepSpeed 0.19.6's OnebitAdam detail by detail

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.freeze_step < 1:
                raise ValueError(f"freeze_step must be >= 1 (the frozen variance comes from the warm-up), "
                                 f"got {self.freeze_step}")

        @property
        def first_compressed_step(self) -> int:
            return max(self.freeze_step, 2) if self.deepspeed_compat else self.freeze_step

        def check_run(self, steps: int) -> None:
            if self.first_compressed_step >= steps:
                raise ValueError(f"freeze_step {self.freeze_step} leaves no compressed step in a run of {steps} "
                                 f"steps (compression starts at step {self.first_compressed_step}); lower "
                                 f"freeze_step (the paper: 15-25% of the run) or run more steps")

    def __init__(self, config: Any, layout: Any) -> None:
        super().__init__(config, layout)
        self.world_size: int | None = None  # set by init_state: chunk sizes depend on it

    def blocks(self, p: int) -> list[Block]:
        """The compressed units for p ranks: the whole vector, or (DeepSpeed) each parameter tensor."""
        if not self.config.deepspeed_compat:
            return [Block(0, self.n_params, 8 * math.ceil(self.n_params / (8 * p)), p)]
        unit = p * (p * 8 // math.gcd(p, 8))
        return [Block(s.start, s.stop, math.ceil((s.stop - s.start) / unit) * unit // p, p)
                for s in segments(self.layout)]

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        xp, p = comm.xp, comm.world_size
        self.world_size = p
        lead = x.shape[:-1]
        blocks = self.blocks(p)
        # Default mode keeps worker errors on the real coordinates only; DeepSpeed's cover its padding.
        worker = self.n_params if not self.config.deepspeed_compat else sum(b.padded for b in blocks)
        zeros = xp.zeros_like(x)
        return {"m": zeros, "v": zeros, "t": 0,
                "error": xp.zeros(lead + (worker,), dtype=x.dtype, device=device_of(x)),
                "server_error": xp.zeros(lead + (sum(b.chunk for b in blocks),), dtype=x.dtype,
                                         device=device_of(x))}

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle, comm: Communicator):
        c, t = self.config, state["t"]
        loss, grad = oracle(x)
        new = dict(state, t=t + 1)
        if c.deepspeed_compat and t == 0:
            # DeepSpeed's initialising step: its engine all-reduces the gradient and its optimizer
            # compresses the zero momentum (sending the bytes), then returns without an update.
            comm.all_reduce(grad, op="avg")
            if comm.world_size > 1:
                new.update(self._compat_average(state["m"], state, comm))
            return x, new, loss
        if t < c.first_compressed_step:
            grad = comm.all_reduce(grad, op="avg")
            new["m"], new["v"] = moments(state["m"], state["v"], grad, c.beta1, c.beta2)
        else:
            m = c.beta1 * state["m"] + (1 - c.beta1) * grad
            if c.deepspeed_compat:
                new.update(self._compat_average(m, state, comm) if comm.world_size > 1 else {"m": m})
            else:
                new.update(self.compressed_average(m, state, comm))
                if c.zero_variance_mask:
                    new["m"] = new["m"] * comm.xp.astype(state["v"] > 0, m.dtype)
        update = direction(new["m"], new["v"], c.eps, *self._corrections(t + 1))
        if c.weight_decay:
            update = update + c.weight_decay * x
        return x - c.lr * update, new, loss

    def _corrections(self, t: int) -> tuple[float, float]:
        """Bias corrections of m and v at step t >= 1 (v's stops changing when it freezes)."""
        c = self.config
        if c.deepspeed_compat or not c.bias_correction:
            return 1.0, 1.0
        m_scale, _ = bias_corrections(c.beta1, c.beta2, t)
        _, v_scale = bias_corrections(c.beta1, c.beta2, min(t, c.freeze_step))
        return m_scale, v_scale

    def compressed_average(self, m: Any, state: dict[str, Any], comm: Communicator) -> dict[str, Any]:
        """The compressed average of the workers' momenta m, thinwire's default mode (see the docstring)."""
        xp, p, d = comm.xp, comm.world_size, m.shape[-1]
        (block,) = self.blocks(p)
        n, lead = block.chunk, m.shape[:-1]
        # Real coordinates per chunk, for every chunk (worker side) and for the chunks this process serves.
        real = np.clip(d - n * np.arange(p), 0, n)
        counts = xp.asarray(np.maximum(real, 1)[:, None].astype(np.float64), dtype=m.dtype, device=device_of(m))
        served = np.asarray([real[r] for r in comm.workers])
        padded = bool((served < n).any())  # some chunk this process serves has padding
        mask = xp.reshape(xp.asarray((np.arange(n) < served[:, None]).astype(np.float64), dtype=m.dtype,
                                     device=device_of(m)), lead + (n,)) if padded else None
        served_counts = xp.reshape(xp.asarray(np.maximum(served, 1).astype(np.float64), dtype=m.dtype,
                                              device=device_of(m)), lead + (1,))

        # Fresh arrays only for what is returned (error, server_error, m); one scratch array of the padded
        # length serves every temporary in turn (on a CPU, allocating is page faults: slower than a pass).
        ns = _native(m)
        error = m + state["error"]  # z, becomes the worker error in place
        chunks = xp.reshape(wire.pad_last(error, block.padded), lead + (p, n))
        work = xp.reshape(xp.empty(lead + (block.padded,), dtype=m.dtype, device=device_of(m)), lead + (p, n))
        scales = xp.sqrt(xp.sum(ns.multiply(chunks, chunks, out=work), axis=-1, keepdims=True) / counts)
        signs = _pack_signs(chunks)
        compressed = xp.reshape(_scaled_signs(chunks, scales, out=work), lead + (block.padded,))[..., :d]
        ns.subtract(error, compressed, out=error)  # z - C(z)
        received = comm.all_to_all(wire.pack([signs, scales]))
        del chunks, compressed
        zbar = xp.mean(self._decode(received, n, m.dtype, out=work), axis=-2)
        ns.add(zbar, state["server_error"], out=zbar)
        if padded:  # elsewhere the mask is 1.0, and x * 1.0 is x
            ns.multiply(zbar, mask, out=zbar)
        part = work[..., 0, :]
        server_scale = xp.sqrt(xp.sum(ns.multiply(zbar, zbar, out=part), axis=-1, keepdims=True) / served_counts)
        signs = _pack_signs(zbar)
        compressed = _scaled_signs(zbar, server_scale, out=part)
        if padded:
            ns.multiply(compressed, mask, out=compressed)
        server_error = ns.subtract(zbar, compressed, out=zbar)
        gathered = comm.all_gather(wire.pack([signs, server_scale]), sharded=True)
        average = xp.empty(lead + (p, n), dtype=m.dtype, device=device_of(m))
        average = xp.reshape(self._decode(gathered, n, m.dtype, out=average), lead + (block.padded,))[..., :d]
        return {"m": average, "error": error, "server_error": server_error}

    def _compat_average(self, m: Any, state: dict[str, Any], comm: Communicator) -> dict[str, Any]:
        """DeepSpeed 0.19.6's CompressedBackend.compressed_allreduce, tensor by tensor."""
        xp, p = comm.xp, comm.world_size
        lead = m.shape[:-1]
        out, errors, server_errors = [], [], []
        w = s = 0
        ns = _native(m)
        for block in self.blocks(p):
            n = block.chunk
            # buf becomes the worker error in place, served the server error; `work` holds the temporaries.
            buf = wire.pad_last(m[..., block.start:block.stop], block.padded) + state["error"][..., w:w + block.padded]
            work = xp.empty(lead + (p, n), dtype=m.dtype, device=device_of(m))
            flat = xp.reshape(work, lead + (block.padded,))
            scale = xp.linalg.vector_norm(buf, axis=-1, keepdims=True) / math.sqrt(block.padded)
            signs = _pack_signs(xp.reshape(buf, lead + (p, n)))
            errors.append(ns.subtract(buf, _scaled_signs(buf, scale, out=flat), out=buf))
            received = comm.all_to_all(signs)
            scales = comm.all_gather(scale)
            # (+-1.0) * (scale / p) is exactly +-(scale / p)
            served = xp.sum(_unpack_scaled(received, n, scales * (1 / p), out=work), axis=-2)
            ns.add(served, state["server_error"][..., s:s + n], out=served)
            server_scale = xp.linalg.vector_norm(served, axis=-1, keepdims=True) / math.sqrt(n)
            signs = _pack_signs(served)
            server_errors.append(ns.subtract(served, _scaled_signs(served, server_scale, out=work[..., 0, :]),
                                             out=served))
            signs = comm.all_gather(signs)
            server_scales = comm.all_gather(server_scale)
            chunks = _unpack_scaled(signs, n, server_scales, out=xp.empty(lead + (p, n), dtype=m.dtype,
                                                                             device=device_of(m)))
            out.append(xp.reshape(chunks, lead + (block.padded,))[..., :block.stop - block.start])
            w, s = w + block.padded, s + n
        if len(out) == 1:  # one tensor: no concatenation (a copy)
            return {"m": out[0], "error": errors[0], "server_error": server_errors[0]}
        return {"m": xp.concat(out, axis=-1), "error": xp.concat(errors, axis=-1),
                "server_error": xp.concat(server_errors, axis=-1)}

    @staticmethod
    def _decode(buf: Any, n: int, dtype: Any, out: Any) -> Any:
        """(..., p, n/8 bytes of signs + one scale) -> (..., p, n) values scale * sign, into `out`."""
        signs, scales = wire.unpack(buf, [(wire.dtype_like(buf, "uint8"), n // 8), (dtype, 1)])
        return _unpack_scaled(signs, n, scales, out=out)

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        c, p = self.config, self.world_size
        if p is None:
            raise RuntimeError("bits_per_parameter needs the number of ranks: call init_state first")
        dense = value_bits * self.n_params
        if c.deepspeed_compat:
            # Per tensor: the sign bits of the padded tensor and of a chunk, and two scales.
            compressed = sum(b.padded + b.chunk + 2 * value_bits for b in self.blocks(p)) if p > 1 else 0
        else:
            (b,) = self.blocks(p)
            compressed = (p + 1) * (b.chunk + value_bits)
        if step < c.first_compressed_step:
            return (dense + (compressed if c.deepspeed_compat and step == 0 else 0)) / self.n_params
        return compressed / self.n_params
