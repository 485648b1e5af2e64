"""Dense all-reduce SGD with heavy-ball momentum: the baseline every compressed method must beat.

Each step every worker all-reduces its full gradient (32 bits per parameter in float32), then takes
the same momentum step, so all workers hold the same model.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from thinwire.algorithms.comm import Communicator
from thinwire.algorithms.registry import MethodBase, Oracle, check_step, register


@register
class DenseSGD(MethodBase):
    name = "sgd"
    tiny: ClassVar[dict[str, Any]] = {"lr": 0.5}

    @dataclasses.dataclass(frozen=True)
    class Config:
        lr: float = 0.1
        momentum: float = 0.9  # heavy-ball beta
        weight_decay: float = 0.0

        def __post_init__(self) -> None:
            check_step(self.lr, self.momentum, self.weight_decay)

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        return {"momentum": comm.xp.zeros_like(x)}

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle, comm: Communicator):
        c = self.config
        loss, grad = oracle(x)
        grad = comm.all_reduce(grad, op="avg")
        if c.weight_decay:
            grad = grad + c.weight_decay * x
        m = c.momentum * state["momentum"] + grad
        return x - c.lr * m, {"momentum": m}, loss

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        return float(value_bits)
