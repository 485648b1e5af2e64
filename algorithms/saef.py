"""Step-ahead error feedback (SAEF; Xu, Huo, Huang, "Step-Ahead Error Feedback for Distributed Training
with Compressed Gradient", arXiv 2008.05823, AAAI 2021), over top-k or any quantizer of
algorithms/quantizers.py.

[unverified] No code of the paper was found; the mechanism is reconstructed from the abstract's terms
(../shared/papers/saef_quant.md), not checked against the paper's algorithm box.

Local error feedback, per worker i with error e_i (the part of past updates not yet sent):
    p_i = e_i + lr * g_i            g_i: the local stochastic gradient at the point below
    send C(p_i)                     top-k (int32 indices + values) or a quantizer's uint8 payload
    e_i = p_i - C(p_i)
    x = x - mean over workers of C(p_j)          (the payloads are all-gathered)
The virtual model xtilde = x - mean_i e_i follows plain SGD exactly (xtilde <- xtilde - lr * mean_i g_i),
but g_i is taken at x, not at xtilde: the paper's "gradient mismatch". Two remedies, each a switch:
    step_ahead:          g_i is taken at x - e_i, each worker's local estimate of xtilde (one oracle
                         call per step, at a point that differs between workers)
    error_average_every: every p steps, after the update, e_i <- mean_j e_j by a full-precision
                         all-reduce of the d error values; right after it x - e_i = xtilde on every worker
With both off this is plain local EF (topk-ef / ef-quant without momentum, step for step).
The loss reported for a step is the local loss at the point where the gradient was taken.

Bits per parameter at step t: the compressed payload (top-k: density * (32 + value bits); quantizer:
payload_bytes(d) * 8 / d), plus value bits at the steps that average the errors, (t + 1) % p == 0.
Stochastic quantizers draw the same uniforms as ef-quant, seeded (seed, worker, step).

    thinwire sim saef --workload logreg --workers 8 --param density=0.01 --param step_ahead=true \
        --param error_average_every=10
    torchrun --standalone --nproc_per_node 2 -m thinwire run saef --workload digits-mlp \
        --param compressor=scaled-sign --param step_ahead=true
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from thinwire.algorithms.comm import Communicator
from thinwire.algorithms.compress import (
    TOPK,
    ErrorFeedback,
    check_compressor,
    compress_with_memory,
    make_compressor,
    worker_uniforms,
)
from thinwire.algorithms.registry import (
    MethodBase,
    Oracle,
    check_density,
    check_step,
    is_period_end,
    register,
)


@register
class StepAheadErrorFeedback(MethodBase):
    name = "saef"
    # 5 of 50 coordinates per step; errors averaged at steps 3, 7, 11, ...
    tiny: ClassVar[dict[str, Any]] = {"lr": 0.5, "compressor": TOPK, "density": 0.1, "step_ahead": True,
                                      "error_average_every": 4}

    @dataclasses.dataclass(frozen=True)
    class Config:
        lr: float = 0.1
        compressor: str = TOPK  # topk | scaled-sign | qsgd | terngrad | bingrad | orq
        density: float = 0.01  # top-k only: fraction of coordinates sent per step, k / d
        levels: int = 4  # quantizers only: s, as in ef-quant
        bucket_size: int = 512  # quantizers only: values sharing one scale (or one set of levels)
        step_ahead: bool = False  # take the gradient at x - e_i instead of x
        error_average_every: int = 0  # p: average the errors every p steps; 0 = never
        seed: int = 0  # of the stochastic rounding

        def __post_init__(self) -> None:
            check_step(self.lr)
            check_compressor(self.compressor)
            check_density(self.density)
            if self.error_average_every < 0:
                raise ValueError(f"error_average_every must be >= 0 (0 = never), got {self.error_average_every}")
            make_compressor(self.compressor, self.density, self.levels, self.bucket_size)

    def __init__(self, config: Config, layout) -> None:
        super().__init__(config, layout)
        self.compressor = make_compressor(config.compressor, config.density, config.levels, config.bucket_size)
        self.memory = ErrorFeedback()

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        return {"error": comm.xp.zeros_like(x), "step": 0}

    def averages_errors(self, step: int) -> bool:
        p = self.config.error_average_every
        return p > 0 and is_period_end(step, p)

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle, comm: Communicator):
        c, C, xp = self.config, self.compressor, comm.xp
        d, t, e = x.shape[-1], state["step"], state["error"]
        loss, grad = oracle(x - e if c.step_ahead else x)
        # ef-quant's draws (seed, worker, step): with both switches off, saef and ef-quant coincide.
        uniforms = worker_uniforms(x, comm, c.seed, t) if C.stochastic else None
        payload, error = compress_with_memory(C, self.memory, e, c.lr * grad, uniforms)
        gathered = comm.all_gather(payload)
        update = xp.mean(C.decompress(gathered, d, x.dtype), axis=-2)
        if self.averages_errors(t):
            error = comm.all_reduce(error, op="avg")
        return x - update, {"error": error, "step": t + 1}, loss

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        n = self.n_params
        sent = self.compressor.payload_bytes(n, value_bits // 8) * 8
        if self.averages_errors(step):
            sent += n * value_bits
        return sent / n
