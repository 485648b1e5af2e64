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

Wire formats (algorithms/sparse_codec.py): fp32-int32, fp16-int32 (48 bits per entry), fp32-int64
(96, the official code's default), and the paper's fp32-rl16: a 32-bit value and a 16-bit run length
(coordinates skipped since the previous entry) per entry, 48 bits, after a 32-bit entry count. A run
of 65535 or more is sent as escapes first: a bare run length 0xFFFF, no value, meaning "skip 65535";
each escape costs 16 bits and is counted. Exact top-k with an index format sends exactly k entries per
tensor and all-gathers equal sizes. The sampled threshold selects c <= k entries per tensor and the
run-length format varies with its escapes, so those messages go through the variable-size all-gather
(Communicator.all_gather_v): only the entries that pass are sent, after an all-gather of the lengths
(64 bits). Their stated bits are the format's formula applied to what the step selected.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np
from array_api_compat import device as device_of
from thinwire.algorithms import inplace, sparse_codec, wire
from thinwire.algorithms.comm import Communicator
from thinwire.algorithms.compress import TopK
from thinwire.algorithms.registry import MethodBase, Oracle, check_density, check_step, register, segments

LENGTH_BITS = 64  # what a variable-size all-gather exchanges first: the message length, int64
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
        # fp32-int32 (64 bits/entry), fp16-int32 (48), fp32-int64 (96, code default), fp32-rl16 (paper, 48)
        wire: str = "fp32-int32"
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
            if self.wire not in sparse_codec.FORMATS:
                raise ValueError(f"wire must be one of {', '.join(sparse_codec.FORMATS)}, got {self.wire!r}")

    def __init__(self, config: Config, layout) -> None:
        super().__init__(config, layout)
        segs = segments(layout)
        self.sparse = [s for s in segs if len(s.shape) > 1]
        self.dense = [s for s in segs if len(s.shape) <= 1]
        self.n_dense = sum(s.stop - s.start for s in self.dense)
        # Messages whose size depends on the data need the variable-size all-gather.
        self.variable = config.threshold == "sampled" or sparse_codec.FORMATS[config.wire][1] == "rl16"

    def density(self, step: int) -> float:
        c = self.config
        stages = WARMUP[c.warmup] if c.warmup_steps else []
        if step < c.warmup_steps and stages:
            return max(stages[step * len(stages) // c.warmup_steps], c.density)
        return c.density

    def top_k(self, step: int) -> TopK:
        """This step's selection per tensor: k = ceil(density_t * numel), as the official code rounds."""
        return TopK(self.density(step), round_up=True)

    def k(self, numel: int, step: int) -> int:
        return self.top_k(step).k(numel)

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        """k entries of every sparsified tensor, no escapes: exact for exact top-k with an index format,
        the nominal size otherwise (stated_bits gives a step's own)."""
        entries = sum(self.k(s.stop - s.start, step) for s in self.sparse)
        return self._bits(sparse_codec.size_bits(self.config.wire, entries), value_bits)

    def stated_bits(self, value_bits: int, step: int, state: dict[str, Any]) -> float:
        if not self.variable:
            return self.bits_per_parameter(value_bits, step)
        # This rank's message; in the simulator the first worker's, whose bytes SimComm logs.
        return self._bits(int(state["message_bits"][0]), value_bits)

    def _bits(self, message_bits: int, value_bits: int) -> float:
        """Per parameter: the sparse message and its length, if any tensor is sparsified; the dense tensors."""
        sparse = message_bits + (LENGTH_BITS if self.variable else 0) if self.sparse else 0
        return (sparse + self.n_dense * value_bits) / self.n_params

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        xp = comm.xp
        zeros = xp.zeros_like(x)
        dense_idx = np.concatenate([np.arange(s.start, s.stop) for s in self.dense] or [np.zeros(0, int)])
        return {"u": zeros, "v": zeros, "global_momentum": zeros, "step": 0,
                "dense_idx": xp.asarray(dense_idx.astype(np.int32), device=device_of(x)),
                "rngs": [np.random.default_rng([self.config.seed, w]) for w in comm.workers],
                "send_counts": np.zeros((len(comm.workers), x.shape[-1]), dtype=np.int64),
                "message_bits": np.zeros(len(comm.workers), dtype=np.int64)}

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle, comm: Communicator):
        # Every (W, d) array below is written once, into a fresh array (algorithms/inplace.py): the same
        # operations in the same order as the formulas in the module docstring, without temporaries.
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
            if c.nesterov:  # u = m (u + g); v = v + u + g
                u = u + g
                u *= c.momentum
                v = v + u
                v += g
            else:  # u = m u + g; v = v + u
                u = c.momentum * u
                u += g
                v = v + u
        else:
            v = v + g
        if not self.dense:
            del g  # its last use: the step's peak need not hold it next to the new model

        update = None  # the sum of the workers' sparse tensors / N, one row when every worker has it; None: 0
        message_bits = state["message_bits"]
        if self.sparse:
            selected = self._select(v, t, state["rngs"])
            exchange = self._exchange_variable if self.variable else self._exchange_fixed
            update = inplace.shared_row(exchange(v, selected, comm)) / comm.world_size
            message_bits = self._message_bits(selected)
            # Momentum factor masking: v and u are this step's own arrays, cleared where sent.
            flat_v = xp.reshape(v, (-1, d))
            if c.track_staleness and t >= c.warmup_steps:
                self._count_sends(state["send_counts"], selected, d)
            if c.momentum_masking and u is state["u"]:  # without momentum correction u is the old state
                u = xp.asarray(u, copy=True)
            flat_u = xp.reshape(u, (-1, d)) if c.momentum_masking else None
            if isinstance(selected, list):
                for r, idx in enumerate(selected):
                    inplace.zero_at(flat_v[r], idx)
                    if flat_u is not None:
                        inplace.zero_at(flat_u[r], idx)
            else:
                inplace.zero_at(flat_v, selected)
                if flat_u is not None:
                    inplace.zero_at(flat_u, selected)
        dense_grad = None  # None: 0
        if self.dense:
            didx = xp.broadcast_to(state["dense_idx"], x.shape[:-1] + state["dense_idx"].shape)
            reduced = comm.all_reduce(wire.take_last(g, didx), op="avg")
            dense_grad = inplace.shared_row(wire.scatter_sum(didx[..., None, :], reduced[..., None, :], d))
            del g
        if c.momentum_correction:
            # M = m M + dense gradient. Without dense tensors M stays +0 from init_state on (m * 0 + 0),
            # and adding it to the update is adding 0.0.
            if self.dense:
                momentum = c.momentum * momentum
                momentum += dense_grad
            update = (update if update is not None else xp.zeros_like(x)) + (momentum if self.dense else 0.0)
            update *= c.lr  # this step's own array: lr * update in place
        else:  # M = m M + sparse update + dense gradient
            momentum = c.momentum * momentum
            momentum += update if update is not None else 0.0
            momentum += dense_grad if dense_grad is not None else 0.0
            update = c.lr * momentum
        new = {**state, "u": u, "v": v, "global_momentum": momentum, "step": t + 1, "message_bits": message_bits}
        return inplace.minus_update(x, update, scratch=True), new, loss

    def _message_bits(self, selected: Any) -> np.ndarray:
        """Each worker's message bits; exact top-k with an index format sends the same size from every worker."""
        fmt = self.config.wire
        if not isinstance(selected, list) and sparse_codec.FORMATS[fmt][1] != "rl16":
            return np.full(selected.shape[0], sparse_codec.message_bits(selected[0], fmt), dtype=np.int64)
        return np.array([sparse_codec.message_bits(r, fmt) for r in selected], dtype=np.int64)

    @staticmethod
    def _count_sends(counts: np.ndarray, selected: Any, d: int) -> None:
        """counts[r, i] += 1 for every entry i worker r sent (claim D7's staleness), in place."""
        rows = selected if isinstance(selected, list) else list(selected)
        flat = counts.reshape(-1, d)
        for r, idx in enumerate(rows):
            flat[r, np.asarray(idx.cpu() if hasattr(idx, "cpu") else idx)] += 1

    def _exchange_fixed(self, v: Any, idx: Any, comm: Communicator) -> Any:
        """Exactly k entries per tensor on every rank: one equal-size all-gather of indices and values.
        Returns the sum over workers of their sparse tensors."""
        xp = comm.xp
        vdt, idt = (wire.dtype_like(v, name) for name in sparse_codec.FORMATS[self.config.wire])
        idx = xp.reshape(idx, v.shape[:-1] + (-1,))
        k = idx.shape[-1]
        gathered = comm.all_gather(wire.pack([wire.astype(idx, idt), wire.astype(wire.take_last(v, idx), vdt)]))
        all_idx, all_vals = wire.unpack(gathered, [(idt, k), (vdt, k)])
        return wire.scatter_sum(all_idx, wire.astype(all_vals, v.dtype), v.shape[-1])

    def _exchange_variable(self, v: Any, selected: Any, comm: Communicator) -> Any:
        """Each rank's own message (its selected entries, in the wire format) through the variable-size
        all-gather; decoded on receipt, added in source order. Returns the sum over workers."""
        xp, fmt, d = comm.xp, self.config.wire, v.shape[-1]
        rows = selected if isinstance(selected, list) else [selected[r] for r in range(selected.shape[0])]
        flat = xp.reshape(v, (-1, d))
        messages = [sparse_codec.encode(idx, xp.take(flat[r], idx), fmt) for r, idx in enumerate(rows)]
        buf = wire.pad_rows(messages)
        lengths = np.array([m.shape[0] for m in messages], dtype=np.int64).reshape(v.shape[:-1])
        gathered, got = comm.all_gather_v(xp.reshape(buf, v.shape[:-1] + buf.shape[-1:]), lengths)
        p = got.shape[-1]
        gathered, got = xp.reshape(gathered, (-1, p, gathered.shape[-1])), got.reshape(-1, p)
        # Workers that received the same bytes (in the simulator, every worker of the group) decode them once.
        same = 0 in wire.broadcast_axes(gathered) and bool((got == got[:1]).all())
        sums = []
        for r in range(1 if same else gathered.shape[0]):
            parts = [sparse_codec.decode(gathered[r, j, :got[r, j]], fmt) for j in range(p)]
            idx = xp.concat([i for i, _ in parts])
            vals = wire.astype(xp.concat([val for _, val in parts]), v.dtype)
            sums.append(wire.scatter_sum(idx[None, :], vals[None, :], d))
        if same:
            return xp.reshape(xp.broadcast_to(sums[0], (gathered.shape[0], d)), v.shape)
        return xp.reshape(xp.stack(sums), v.shape)

    def diagnostics(self, state: dict[str, Any]) -> dict[str, float]:
        """With track_staleness: how many steps pass between updates of a sparsified parameter after
        warm-up (steps / sends, infinite when never sent), as the median over the first worker's
        parameters, the fraction of them never sent, and their distribution: the share of parameters
        whose interval lies in [b, 2b), as update_interval_share_<b> for b = 1, 2, 4, ... (the last
        bin holds the parameters sent once)."""
        steps = state["step"] - self.config.warmup_steps
        if not (self.config.track_staleness and self.sparse and steps > 0):
            return {}
        counts = np.concatenate([state["send_counts"][0, s.start:s.stop] for s in self.sparse])
        with np.errstate(divide="ignore"):
            interval = steps / counts
        edges = 2 ** np.arange(int(math.log2(steps)) + 2)
        shares, _ = np.histogram(interval[counts > 0], bins=edges)
        histogram = {f"update_interval_share_{lo}": n / counts.size
                     for lo, n in zip(edges[:-1].tolist(), shares.tolist())}
        return {"median_update_interval": float(np.median(interval)),
                "never_updated_fraction": float(np.mean(counts == 0)), "staleness_steps": float(steps), **histogram}

    def _select(self, v: Any, step: int, rngs: list) -> Any:
        """Per worker this process holds (the rows of v), the ascending int64 indices of the entries to
        send: exact top-k, one (rows, K) array (K the sum of the tensors' k); the sampled threshold, a
        list of each row's indices."""
        xp = wire.namespace(v)
        rows = xp.reshape(v, (-1, v.shape[-1]))
        if self.config.threshold == "exact":
            top_k = self.top_k(step)
            idx = xp.concat([inplace.by_row_blocks(top_k.select, rows[:, s.start:s.stop]) + s.start
                             for s in self.sparse], axis=-1)
            return xp.astype(idx, xp.int64)
        return [xp.concat([sampled_threshold_indices(xp.abs(rows[r, s.start:s.stop]), self.k(s.stop - s.start, step),
                                                     self.density(step), self.config.sample_ratio, rngs[r]) + s.start
                           for s in self.sparse])
                for r in range(rows.shape[0])]


def sampled_threshold_indices(importance: Any, k: int, density: float, sample_ratio: float,
                              rng: np.random.Generator) -> Any:
    """DGC's official selection for one tensor of one worker (importance = |v|, k its budget at `density`):
    threshold from a strided sample of `sample_ratio` of it, up to 10 adaptations (resample to exact top-k above 1.3k, lower the threshold below 0.8k),
    at most k entries. Returns their ascending int64 indices."""
    xp = wire.namespace(importance)
    numel = importance.shape[0]
    wanted = max(math.ceil(numel * sample_ratio), math.ceil(2 / density))
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
    return xp.astype(idx[:k], xp.int64)
