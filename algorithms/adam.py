"""Dense all-reduce Adam / AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019): 1-bit Adam's baseline.

Every step every worker all-reduces its gradient (value bits per parameter), then takes the same step:
    m = b1 m + (1 - b1) g ;  v = b2 v + (1 - b2) g^2
    x = x - lr (m_hat / (sqrt(v_hat) + eps) + wd x)
m_hat = m / (1 - b1^t) and v_hat = v / (1 - b2^t) at step t = 1, 2, ... with `bias_correction` (the
default), else m and v. Weight decay is decoupled (AdamW, and DeepSpeed's OnebitAdam) by default; with
`decoupled_weight_decay: false` it is Adam's L2 term, g = g + wd x before the moments.
The moment and direction helpers are shared with 1-bit Adam, whose warm-up is this method.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from array_api_compat import array_namespace
from thinwire.algorithms.comm import Communicator
from thinwire.algorithms.registry import MethodBase, Oracle, check_step, register


def check_adam(lr: float, beta1: float, beta2: float, eps: float, weight_decay: float) -> None:
    """The checks every Adam-like config shares; a ValueError names the parameter."""
    check_step(lr, weight_decay=weight_decay)
    for name, beta in (("beta1", beta1), ("beta2", beta2)):
        if not 0 <= beta < 1:
            raise ValueError(f"{name} must be in [0, 1), got {beta}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")


def moments(m: Any, v: Any, g: Any, beta1: float, beta2: float) -> tuple[Any, Any]:
    return beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * (g * g)


def direction(m: Any, v: Any, eps: float, m_scale: float = 1.0, v_scale: float = 1.0) -> Any:
    """m_hat / (sqrt(v_hat) + eps) with m_hat = m * m_scale, v_hat = v * v_scale (bias corrections)."""
    return (m * m_scale) / (array_namespace(v).sqrt(v * v_scale) + eps)


def bias_corrections(beta1: float, beta2: float, t: int) -> tuple[float, float]:
    """(1 / (1 - b1^t), 1 / (1 - b2^t)) at step t >= 1."""
    return 1 / (1 - beta1 ** t), 1 / (1 - beta2 ** t)


@dataclasses.dataclass(frozen=True)
class AdamConfig:
    """The settings every Adam-like method here shares (Adam, 1-bit Adam, 0/1 Adam), checked once."""

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0  # decoupled (AdamW, and DeepSpeed's 1-bit optimizers)
    bias_correction: bool = True

    def __post_init__(self) -> None:
        check_adam(self.lr, self.beta1, self.beta2, self.eps, self.weight_decay)


@register
class Adam(MethodBase):
    name = "adam"
    tiny: ClassVar[dict[str, Any]] = {"lr": 0.1}

    @dataclasses.dataclass(frozen=True)
    class Config(AdamConfig):
        decoupled_weight_decay: bool = True  # AdamW; false: L2 added to the gradient (Adam)

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        zeros = comm.xp.zeros_like(x)
        return {"m": zeros, "v": zeros, "t": 0}

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle, comm: Communicator):
        c = self.config
        loss, grad = oracle(x)
        grad = comm.all_reduce(grad, op="avg")
        if c.weight_decay and not c.decoupled_weight_decay:
            grad = grad + c.weight_decay * x
        t = state["t"] + 1
        m, v = moments(state["m"], state["v"], grad, c.beta1, c.beta2)
        scales = bias_corrections(c.beta1, c.beta2, t) if c.bias_correction else (1.0, 1.0)
        update = direction(m, v, c.eps, *scales)
        if c.weight_decay and c.decoupled_weight_decay:
            update = update + c.weight_decay * x
        return x - c.lr * update, {"m": m, "v": v, "t": t}, loss

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        return float(value_bits)
