"""Deep Gradient Compression (Lin et al., ICLR 2018; ../shared/papers/dgc.md).

Per worker, on every parameter tensor with more than one dimension (biases and norms are sent dense,
as in the official code):
    g <- local gradient (+ weight decay), clipped to norm clip_norm * N^(-1/2)   (local clipping, optional)
    u <- m u + g ;  v <- v + u            momentum correction   (Nesterov: u <- m (u + g); v <- v + u + g)
    select the largest |v|: k = ceil(density_t * numel) per tensor, by exact top-k or by a threshold
        from a strided sample with the official code's adaptation rules
    all-gather the selected (index, value) pairs of all tensors, packed in one buffer
    v <- v * ~mask ;  u <- u * ~mask      (momentum factor masking)
    x <- x - lr * (sum over workers of the decoded sparse tensors) / N
Dense tensors: the gradient is all-reduced and a global momentum buffer M applies to it.
Without momentum correction (the ablation behind claim D9): v <- v + g, and the aggregated sparse
gradient joins the dense one in the global momentum buffer M <- m M + G.

Sparsity warm-up: the density follows the paper's schedule (0.25, 0.0625, 0.0156, 0.0039; "75% to
99.6% sparsity") or the official code's (10^(-e/2): 0.316, 0.1, 0.0316, 0.01, 0.0032) in equal stages
over `warmup_steps`, never below the final density.

The sampled threshold selects a variable number c <= k of entries; the message is padded to k entries
(index 0, value 0) so that every rank all-gathers the same size. The padding is really sent and
counted, so for `threshold: sampled` the bytes are an upper bound on the official code's variable-size
all-gather (by the padding fraction).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np
from array_api_compat import device as device_of
from thinwire.algorithms import wire
from thinwire.algorithms.comm import Communicator
from thinwire.algorithms.registry import MethodBase, Oracle, check_density, check_step, register, segments

# name -> (value dtype, index dtype) on the wire
WIRE_FORMATS = {"fp32-int32": ("float32", "int32"), "fp16-int32": ("float16", "int32"),
                "fp32-int64": ("float32", "int64")}
WARMUP = {"paper": [0.25 ** e for e in range(1, 5)], "code": [10 ** (-e / 2) for e in range(1, 6)], "none": []}


@register
class DeepGradientCompression(MethodBase):
    name = "dgc"
    tiny: ClassVar[dict[str, Any]] = {"lr": 0.5, "density": 0.1, "warmup_steps": 8, "momentum": 0.5}

    @dataclasses.dataclass(frozen=True)
    class Config:
        lr: float = 0.1
        momentum: float = 0.9
        nesterov: bool = False
        density: float = 0.001  # final fraction of each sparsified tensor sent per step (99.9% sparsity)
        warmup: str = "paper"  # paper | code | none
        warmup_steps: int = 0  # steps over which the warm-up stages run (0: no warm-up)
        threshold: str = "exact"  # exact top-k, or "sampled" (threshold from a strided sample)
        sample_ratio: float = 0.01  # fraction of a tensor sampled for its threshold
        momentum_correction: bool = True
        momentum_masking: bool = True
        clip_norm: float = 0.0  # local gradient clipping threshold before the N^(-1/2) scaling; 0: off
        weight_decay: float = 0.0
        wire: str = "fp32-int32"  # fp32-int32 (64 bits/entry), fp16-int32 (48), fp32-int64 (96, code default)
        seed: int = 0  # of the strided-sample offsets
        track_staleness: bool = False  # count sends per parameter after warm-up (claim D7); costs a copy per step

        def __post_init__(self) -> None:
            check_step(self.lr, self.momentum, self.weight_decay)
            check_density(self.density)
            if self.warmup not in WARMUP:
                raise ValueError(f"warmup must be one of {', '.join(WARMUP)}, got {self.warmup!r}")
            if self.warmup_steps < 0:
                raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
            if self.threshold not in ("exact", "sampled"):
                raise ValueError(f"threshold must be exact or sampled, got {self.threshold!r}")
            if not 0 < self.sample_ratio <= 1:
                raise ValueError(f"sample_ratio must be in (0, 1], got {self.sample_ratio}")
            if self.clip_norm < 0:
                raise ValueError(f"clip_norm must be >= 0, got {self.clip_norm}")
            if self.wire not in WIRE_FORMATS:
                raise ValueError(f"wire must be one of {', '.join(WIRE_FORMATS)}, got {self.wire!r}")

    def __init__(self, config: Config, layout) -> None:
        super().__init__(config, layout)
        segs = segments(layout)
        self.sparse = [s for s in segs if len(s.shape) > 1]
        self.dense = [s for s in segs if len(s.shape) <= 1]
        self.n_dense = sum(s.stop - s.start for s in self.dense)

    def density(self, step: int) -> float:
        c = self.config
        stages = WARMUP[c.warmup] if c.warmup_steps else []
        if step < c.warmup_steps and stages:
            return max(stages[step * len(stages) // c.warmup_steps], c.density)
        return c.density

    def k(self, numel: int, step: int) -> int:
        return math.ceil(self.density(step) * numel)

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        vdt, idt = WIRE_FORMATS[self.config.wire]
        entry_bits = 8 * (np.dtype(vdt).itemsize + np.dtype(idt).itemsize)
        sparse = sum(self.k(s.stop - s.start, step) for s in self.sparse) * entry_bits
        return (sparse + self.n_dense * value_bits) / self.n_params

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        xp = comm.xp
        zeros = xp.zeros_like(x)
        dense_idx = np.concatenate([np.arange(s.start, s.stop) for s in self.dense] or [np.zeros(0, int)])
        return {"u": zeros, "v": zeros, "global_momentum": zeros, "step": 0,
                "dense_idx": xp.asarray(dense_idx.astype(np.int32), device=device_of(x)),
                "rngs": [np.random.default_rng([self.config.seed, w]) for w in comm.workers],
                "send_counts": np.zeros((len(comm.workers), x.shape[-1]), dtype=np.int64)}

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle, comm: Communicator):
        c, xp = self.config, comm.xp
        t, d = state["step"], x.shape[-1]
        loss, g = oracle(x)
        if c.weight_decay:
            g = g + c.weight_decay * x
        if c.clip_norm:
            limit = c.clip_norm / math.sqrt(comm.world_size)
            norm = xp.sqrt(xp.sum(g * g, axis=-1, keepdims=True))
            g = g * xp.minimum(xp.ones_like(norm), limit / (norm + 1e-12))
        u, v, momentum = state["u"], state["v"], state["global_momentum"]
        if c.momentum_correction:
            u = c.momentum * (u + g) if c.nesterov else c.momentum * u + g
            v = v + u + g if c.nesterov else v + u
        else:
            v = v + g

        update = xp.zeros_like(x)
        if self.sparse:
            idx, valid = self._select(v, t, state["rngs"])
            vdt, idt = (wire.dtype_like(x, name) for name in WIRE_FORMATS[c.wire])
            vals = wire.astype(wire.take_last(v, idx) * valid, vdt)
            gathered = comm.all_gather(wire.pack([wire.astype(idx, idt), vals]))
            all_idx, all_vals = wire.unpack(gathered, [(idt, idx.shape[-1]), (vdt, idx.shape[-1])])
            update = wire.scatter_sum(all_idx, wire.astype(all_vals, x.dtype), d) / comm.world_size
            sent = wire.scatter_sum(idx[..., None, :], valid[..., None, :], d) > 0
            v = xp.where(sent, xp.zeros_like(v), v)
            if c.track_staleness and t >= c.warmup_steps:
                state["send_counts"] += np.asarray(sent.cpu() if hasattr(sent, "cpu") else sent).reshape(
                    state["send_counts"].shape)
            if c.momentum_masking:
                u = xp.where(sent, xp.zeros_like(u), u)
        dense_grad = xp.zeros_like(x)
        if self.dense:
            didx = xp.broadcast_to(state["dense_idx"], x.shape[:-1] + state["dense_idx"].shape)
            reduced = comm.all_reduce(wire.take_last(g, didx), op="avg")
            dense_grad = wire.scatter_sum(didx[..., None, :], reduced[..., None, :], d)
        if c.momentum_correction:
            momentum = c.momentum * momentum + dense_grad
            update = update + momentum
        else:
            momentum = c.momentum * momentum + update + dense_grad
            update = momentum
        new = {**state, "u": u, "v": v, "global_momentum": momentum, "step": t + 1}
        return x - c.lr * update, new, loss

    def diagnostics(self, state: dict[str, Any]) -> dict[str, float]:
        """With track_staleness: how many steps pass between updates of a sparsified parameter after
        warm-up (steps / sends, infinite when never sent), as the median over the first worker's
        parameters, and the fraction of them never sent."""
        steps = state["step"] - self.config.warmup_steps
        if not (self.config.track_staleness and self.sparse and steps > 0):
            return {}
        counts = np.concatenate([state["send_counts"][0, s.start:s.stop] for s in self.sparse])
        with np.errstate(divide="ignore"):
            interval = steps / counts
        return {"median_update_interval": float(np.median(interval)),
                "never_updated_fraction": float(np.mean(counts == 0)), "staleness_steps": float(steps)}

    def _select(self, v: Any, step: int, rngs: list) -> tuple[Any, Any]:
        """Indices (int32, padded to k per tensor) and a 0/1 validity mask of the entries to send."""
        xp = wire.namespace(v)
        parts, valid = [], []
        for s in self.sparse:
            k = self.k(s.stop - s.start, step)
            seg = v[..., s.start:s.stop]
            if self.config.threshold == "exact":
                parts.append(wire.top_k_indices(seg, k) + s.start)
                valid.append(xp.ones(seg.shape[:-1] + (k,), dtype=v.dtype, device=device_of(v)))
                continue
            rows = xp.reshape(seg, (-1, seg.shape[-1]))
            chosen = [self._sampled_row(xp.abs(rows[r]), k, step, rngs[r]) for r in range(rows.shape[0])]
            parts.append(xp.reshape(xp.stack([i for i, _ in chosen]), seg.shape[:-1] + (k,)) + s.start)
            valid.append(xp.astype(xp.reshape(xp.stack([m for _, m in chosen]), seg.shape[:-1] + (k,)), v.dtype))
        return xp.concat(parts, axis=-1), xp.concat(valid, axis=-1)

    def _sampled_row(self, importance: Any, k: int, step: int, rng: np.random.Generator) -> tuple[Any, Any]:
        """The official code's selection for one tensor of one worker: threshold from a strided sample,
        up to 10 adaptations (resample to exact top-k above 1.3k, lower the threshold below 0.8k),
        at most k entries. Returns (k int32 indices padded with 0, k booleans: which are real)."""
        xp = wire.namespace(importance)
        numel, density = importance.shape[0], self.density(step)
        wanted = max(math.ceil(numel * self.config.sample_ratio), math.ceil(2 / density))
        if numel <= wanted:
            stride = 1
        else:
            stride = math.ceil(numel / wanted / 32) * 32 + 1
            while stride > 1 and numel // stride < wanted:
                stride = max(1, stride - 8)
        start = int(rng.integers(stride)) if stride > 1 else 0
        samples = importance[start::stride]
        top = max(1, math.ceil(samples.shape[0] * density))
        threshold = xp.min(wire.take_last(samples, wire.top_k_indices(samples, top)))
        idx = xp.nonzero(importance >= threshold)[0]
        if stride > 1:
            for _ in range(10):
                if idx.shape[0] > k * 1.3:
                    idx = wire.take_last(idx, wire.top_k_indices(wire.take_last(importance, idx), k))
                    idx = xp.sort(idx)
                    break
                if idx.shape[0] >= 0.8 * k:
                    break
                threshold = threshold * 0.8
                idx = xp.nonzero(importance >= threshold)[0]
        idx = idx[:k]
        count = idx.shape[0]
        pad = xp.zeros((k - count,), dtype=idx.dtype, device=device_of(idx))
        mask = xp.arange(k, device=device_of(idx)) < count
        return xp.astype(xp.concat([idx, pad]), xp.int32), mask
