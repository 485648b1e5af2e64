"""SlowMo with local AdamW steps (Wang et al., ICLR 2020), the DSM-LS paper's main baseline, as its
official code runs it (fastdt.py, plain global momentum: no clipping, no sign; run_example.sh).

Local AdamW steps and the period are local_adamw.py's. At the end of each period of tau steps:
    x_bar = mean_i x_i                                   (fp32 all-reduce)
    m     = beta m + (x_old - x_bar) / eta_k             slow momentum of the pseudo-gradient
    x_old = x_old (1 - lam gamma eta_k) - gamma eta_k m
    x_i   = x_old on every worker
With beta = 0 and gamma = 1 (and lam = 0) this is local-adamw's plain average, up to rounding.
Defaults: the example script's beta 0.2, gamma 1.0 (fastdt_lr), tau 12; lam 0 (fastdt_weight_decay).
Same memory as DSM-LS (x_old and one momentum buffer); same bytes as local-adamw.

    thinwire sim slowmo --workload text-gpt --workers 4 --steps 240 --param lr=3e-3 --param tau=12
"""

from __future__ import annotations

import dataclasses
from typing import Any

from thinwire.algorithms.comm import Communicator
from thinwire.algorithms.local_adamw import LocalAdamWConfig, LocalSteps, check_unit
from thinwire.algorithms.registry import register


@register
class SlowMo(LocalSteps):
    name = "slowmo"

    @dataclasses.dataclass(frozen=True)
    class Config(LocalAdamWConfig):
        slow_momentum: float = 0.2  # beta
        gamma: float = 1.0  # slow lr, a factor on eta_k
        lam: float = 0.0  # decoupled weight decay of the global step

        def __post_init__(self) -> None:
            super().__post_init__()
            check_unit("slow_momentum", self.slow_momentum)
            if not self.gamma > 0:
                raise ValueError(f"gamma must be > 0 (slow lr, a factor on the local lr), got {self.gamma}")
            if self.lam < 0:
                raise ValueError(f"lam must be >= 0 (weight decay of the global step), got {self.lam}")

    def init_outer(self, x: Any, comm: Communicator) -> dict[str, Any]:
        return {"x_old": x, "momentum": comm.xp.zeros_like(x)}

    def outer(self, x_bar: Any, outer: dict[str, Any], eta: float, step: int, comm: Communicator):
        c = self.config
        x_old = outer["x_old"]
        m = c.slow_momentum * outer["momentum"] + (x_old - x_bar) / eta
        x_old = x_old * (1 - c.lam * c.gamma * eta) - c.gamma * eta * m
        return x_old, {"x_old": x_old, "momentum": m}
