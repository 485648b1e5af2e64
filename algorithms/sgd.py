"""Dense all-reduce SGD with heavy-ball momentum: the baseline every compressed method must beat.

Each step every worker all-reduces its full gradient (32 bits per parameter in float32), then takes
the same momentum step, so all workers hold the same model.

Large batches (Goyal et al. 2017): the linear scaling rule is a choice of `lr` (k times the small-batch
lr for k times the batch); gradual warm-up (`warmup_steps`) raises the lr linearly from lr / warmup_steps
at the first step to lr at step warmup_steps - 1, then holds it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from thinwire.algorithms import inplace
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
        warmup_steps: int = 0  # gradual warm-up of the lr over this many steps (0: none)

        def __post_init__(self) -> None:
            check_step(self.lr, self.momentum, self.weight_decay)
            check_warmup(self.warmup_steps)

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        return {"momentum": comm.xp.zeros_like(x), "step": 0}

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle, comm: Communicator):
        c = self.config
        loss, grad = oracle(x)
        grad = comm.all_reduce(grad, op="avg")
        if c.weight_decay:
            decayed = c.weight_decay * x
            decayed += grad
            grad = decayed
        m = c.momentum * state["momentum"]
        m += grad  # m = beta m + g, written into the new momentum: no (W, d) temporary
        lr = c.lr * warmup_factor(state["step"], c.warmup_steps)
        return inplace.subtract_from(x, lr * m), {"momentum": m, "step": state["step"] + 1}, loss

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        return float(value_bits)


def check_warmup(warmup_steps: int) -> None:
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Gradual warm-up: the fraction of the lr used at `step` (0-based), (step + 1) / warmup_steps up to 1."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
