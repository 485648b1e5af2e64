"""EF-SGD with the shared block sparsifier: the CSER paper's baseline (../shared/papers/cser.md;
gluoncv/trainer/efsgd_trainer_v1.py with the EFSGDV1 optimizer, mxnet contrib/efsgd_pre-inl.h).

Per worker, with error e (updates computed but not yet applied), NAG momentum m and a separate NAG
momentum m_wd of the weight decay, which the code applies locally outside error feedback:
    m <- momentum * m + g ;  u = g + momentum * m
    m_wd <- momentum * m_wd + wd * x ;  x <- x - lr * (momentum * m_wd + wd * x)
    e <- e + lr * u
    on the shared GRBS block B: x[B] <- x[B] - mean_j e_j[B] ;  e[B] <- 0
Every worker applies the same update, so the models stay identical. Bits per parameter at step t:
value_bits * |B_t| / d; in expectation value_bits / R. Default: the ImageNet script's overall-32
setting (layer 32).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from thinwire.algorithms.comm import Communicator
from thinwire.algorithms.local_nag import BlockConfig, SharedBlocks, send_error_block
from thinwire.algorithms.registry import Oracle, register


@register
class EFSGDBlocks(SharedBlocks):
    name = "ef-sgd-blocks"
    tiny: ClassVar[dict[str, Any]] = {"lr": 0.2, "R": 5, "split": "out"}

    @dataclasses.dataclass(frozen=True)
    class Config(BlockConfig):
        R: int = 32  # GRBS ratio

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        zeros = comm.xp.zeros_like(x)
        return {"error": zeros, "momentum": zeros, "wd_momentum": zeros, "step": 0}

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle, comm: Communicator):
        c, t = self.config, state["step"]
        loss, g = oracle(x)
        m = c.momentum * state["momentum"] + g
        m_wd = state["wd_momentum"]
        if c.weight_decay:
            m_wd = c.momentum * m_wd + c.weight_decay * x
            x = x - c.lr * (c.momentum * m_wd + c.weight_decay * x)
        error = state["error"] + c.lr * (g + c.momentum * m)
        x, error = send_error_block(x, error, self.sparsifier.indices(t), comm, sign=-1)
        return x, {"error": error, "momentum": m, "wd_momentum": m_wd, "step": t + 1}, loss

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        return self.sparsifier.count(step) * value_bits / self.n_params
