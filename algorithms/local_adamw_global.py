"""Local AdamW steps with a global AdamW step: the DSM-LS paper's "global AdamW" baseline, as its
official code runs it (fastdt.py, `fastdt_use_adamw`, without `fastdt_adamw_share_mom`).

Local AdamW steps and the period are local_adamw.py's. At the end of each period of tau steps, with
the pseudo-gradient Delta = (x_old - x_bar) / eta_k and AdamW moments kept by the global step:
    m = b1 m + (1 - b1) Delta ;  v = b2 v + (1 - b2) Delta^2
    x_old = x_old (1 - wd eta_k) - eta_k (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    x_i   = x_old on every worker
The step size is the current local lr itself: the code's global lr (fastdt_lr) only switches the
step on. Its bias corrections count local steps, not global ones: the code passes its 0-based step
counter k, which is 0 at a first global step with tau = 1 (a division by zero); here t = k + 1, one
step later. Defaults: the code's b1 0.9, b2 0.95, wd 0.1, eps 1e-8.

    thinwire sim local-adamw-global --workload text-gpt --workers 4 --steps 240 --param tau=12
"""

from __future__ import annotations

import dataclasses
from typing import Any

from thinwire.algorithms.adam import bias_corrections, direction, moments
from thinwire.algorithms.comm import Communicator
from thinwire.algorithms.local_adamw import LocalAdamWConfig, LocalSteps, check_unit
from thinwire.algorithms.registry import register


@register
class LocalAdamWGlobal(LocalSteps):
    name = "local-adamw-global"

    @dataclasses.dataclass(frozen=True)
    class Config(LocalAdamWConfig):
        outer_beta1: float = 0.9
        outer_beta2: float = 0.95
        outer_eps: float = 1e-8
        outer_weight_decay: float = 0.1

        def __post_init__(self) -> None:
            super().__post_init__()
            check_unit("outer_beta1", self.outer_beta1)
            check_unit("outer_beta2", self.outer_beta2)
            if not self.outer_eps > 0:
                raise ValueError(f"outer_eps must be > 0, got {self.outer_eps}")
            if self.outer_weight_decay < 0:
                raise ValueError(f"outer_weight_decay must be >= 0, got {self.outer_weight_decay}")

    def init_outer(self, x: Any, comm: Communicator) -> dict[str, Any]:
        zeros = comm.xp.zeros_like(x)
        return {"x_old": x, "m": zeros, "v": zeros}

    def outer(self, x_bar: Any, outer: dict[str, Any], eta: float, step: int, comm: Communicator):
        c = self.config
        x_old = outer["x_old"]
        m, v = moments(outer["m"], outer["v"], (x_old - x_bar) / eta, c.outer_beta1, c.outer_beta2)
        update = direction(m, v, c.outer_eps, *bias_corrections(c.outer_beta1, c.outer_beta2, step + 1))
        x_old = x_old * (1 - c.outer_weight_decay * eta) - eta * update
        return x_old, {"x_old": x_old, "m": m, "v": v}
