"""Error-feedback SGD with a gradient quantizer (algorithms/quantizers.py): scaled sign, QSGD, NUQSGD,
TernGrad, BinGrad or ORQ. The same error feedback as topk-ef (Karimireddy et al. 2019), with a quantizer
as C.

Per worker, with error e (the part of past updates not yet sent):
    p = e + lr * g            (g: local gradient, or local momentum when momentum > 0)
    payload = Q(p)            (uint8: float32 scales or levels per bucket, then b-bit codes)
    e = p - Q^-1(payload)
    x = x - mean over workers of Q^-1(all-gathered payloads)
Without error feedback (error_feedback: false, unbiased quantizers only) p = lr * g and e stays 0:
plain quantized SGD, as in the QSGD and TernGrad papers.

Stochastic quantizers round with uniforms drawn by numpy Generators seeded (seed, worker, step), so a
simulated worker and the real rank with the same id draw the same numbers (compress.worker_uniforms).

Every rank all-gathers one payload of payload_bytes(d) bytes per step, so it sends
payload_bytes(d) * 8 / d bits per parameter, whatever the value dtype.

    thinwire sim ef-quant --workload logreg --workers 4 --param quantizer=orq --param levels=3
    torchrun --standalone --nproc_per_node 2 -m thinwire run ef-quant --workload digits-mlp --param quantizer=bingrad
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from thinwire.algorithms.comm import Communicator
from thinwire.algorithms.compress import ErrorFeedback, NoMemory, compress_with_memory, worker_uniforms
from thinwire.algorithms.quantizers import QUANTIZERS, Quantizer, make_quantizer
from thinwire.algorithms.registry import MethodBase, Oracle, check_step, register


@register
class ErrorFeedbackQuantized(MethodBase):
    name = "ef-quant"
    # d = 50 in buckets of 16 (the last one short); QSGD with s = 2 sends 3-bit codes.
    tiny: ClassVar[dict[str, Any]] = {"lr": 0.5, "quantizer": "qsgd", "levels": 2, "bucket_size": 16}

    @dataclasses.dataclass(frozen=True)
    class Config:
        lr: float = 0.1
        quantizer: str = "qsgd"  # scaled-sign | qsgd | nuqsgd | terngrad | bingrad | orq
        levels: int = 4  # s: (NU)QSGD's nonzero levels per sign, ORQ's s + 1 levels; unused by the others
        bucket_size: int = 512  # values sharing one scale (or one set of levels)
        momentum: float = 0.0  # local heavy-ball momentum applied before error feedback
        error_feedback: bool = True
        seed: int = 0  # of the stochastic rounding

        def __post_init__(self) -> None:
            check_step(self.lr, self.momentum)
            quantizer = make_quantizer(self.quantizer, self.levels, self.bucket_size)
            if not self.error_feedback and not quantizer.unbiased:
                unbiased = ", ".join(n for n, q in sorted(QUANTIZERS.items()) if q.unbiased)
                raise ValueError(f"error_feedback: false needs an unbiased quantizer ({unbiased}); "
                                 f"{self.quantizer} is biased")

    def __init__(self, config: Config, layout) -> None:
        super().__init__(config, layout)
        self.quantizer: Quantizer = make_quantizer(config.quantizer, config.levels, config.bucket_size)
        self.memory = ErrorFeedback() if config.error_feedback else NoMemory()

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        zeros = comm.xp.zeros_like(x)
        return {"error": zeros, "momentum": zeros, "step": 0}

    def uniforms(self, x: Any, step: int, comm: Communicator) -> Any:
        """Uniforms in [0, 1) in x's dtype, one per coordinate, drawn per worker from (seed, worker, step)."""
        return worker_uniforms(x, comm, self.config.seed, step)

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle, comm: Communicator):
        c, q, xp = self.config, self.quantizer, comm.xp
        d, t = x.shape[-1], state["step"]
        loss, grad = oracle(x)
        m = c.momentum * state["momentum"] + grad if c.momentum else grad
        uniforms = self.uniforms(x, t, comm) if q.stochastic else None
        payload, error = compress_with_memory(q, self.memory, state["error"], c.lr * m, uniforms)
        gathered = comm.all_gather(payload)
        update = xp.mean(q.decompress(gathered, d, x.dtype), axis=-2)
        new = {"error": error, "momentum": m if c.momentum else state["momentum"], "step": t + 1}
        return x - update, new, loss

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        return self.quantizer.payload_bytes(self.n_params, value_bits // 8) * 8 / self.n_params
