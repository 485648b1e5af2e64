"""DSM-LS: distributed sign momentum with local steps (Yu et al., arXiv 2411.17866; ../shared/papers/dsm_ls.md),
as the official code's global Lion step (fastdt.py, `fastdt_use_lion`) runs it.

Local AdamW steps and the period are local_adamw.py's. At the end of each period of tau steps:
    x_bar = mean_i x_i                                  (fp32 all-reduce)
    Delta = (x_old - x_bar) / eta_k                     pseudo-gradient over the CURRENT local lr
    c     = beta1 m + (1 - beta1) Delta
    x_old = x_old (1 - lam gamma eta_k) - gamma eta_k S(c)
    m     = beta2 m + (1 - beta2) Delta                 (the momentum is updated after the sign)
    x_i   = x_old on every worker
S is the exact sign (sign(0) = 0) or, with `sign: randomized`, a random +-1 per coordinate with
P(+1) = (1 + clip(c / B, -1, 1)) / 2, so E S(c) = clip(c / B, -1, 1): the "continuous analog of the
sign in expectation" of the paper's analysis. The paper body (hence its exact definition) could not be
read: this randomized sign is a reconstruction [unverified]. Its uniforms come from one stream,
(seed, round), that every worker draws alike, so the global step stays the same on every worker.

Defaults: the code's (beta1 0.95, beta2 0.98, lam 0.2; the README example uses lam 0.1) and the
README's gamma 1.0 and tau 12. The sign is taken after communication: the bytes are local-adamw's.

    thinwire sim dsm-ls --workload text-gpt --workers 4 --steps 240 --param lr=3e-3 --param tau=12
    torchrun --standalone --nproc_per_node 2 -m thinwire run dsm-ls --workload text-gpt --param tau=4
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
from array_api_compat import device as device_of
from thinwire.algorithms.comm import Communicator
from thinwire.algorithms.local_adamw import LocalAdamWConfig, LocalSteps, check_unit
from thinwire.algorithms.registry import register

SIGNS = ("exact", "randomized")


@register
class DSMLS(LocalSteps):
    name = "dsm-ls"
    tiny: ClassVar[dict[str, Any]] = {**LocalSteps.tiny, "sign": "randomized", "sign_bound": 0.5, "lam": 0.1}

    @dataclasses.dataclass(frozen=True)
    class Config(LocalAdamWConfig):
        gamma: float = 1.0  # global lr, a factor on eta_k
        sign_beta1: float = 0.95  # interpolation of the signed direction c
        sign_beta2: float = 0.98  # momentum m of the pseudo-gradients
        lam: float = 0.2  # decoupled weight decay of the global step
        sign: str = "exact"  # exact | randomized
        sign_bound: float = 1.0  # B of the randomized sign
        seed: int = 0  # of the randomized sign's shared stream

        def __post_init__(self) -> None:
            super().__post_init__()
            check_unit("sign_beta1", self.sign_beta1)
            check_unit("sign_beta2", self.sign_beta2)
            if not self.gamma > 0:
                raise ValueError(f"gamma must be > 0 (global lr, a factor on the local lr), got {self.gamma}")
            if self.lam < 0:
                raise ValueError(f"lam must be >= 0 (weight decay of the global step), got {self.lam}")
            if self.sign not in SIGNS:
                raise ValueError(f"sign must be one of {', '.join(SIGNS)}, got {self.sign!r}")
            if not self.sign_bound > 0:
                raise ValueError(f"sign_bound must be > 0 (B of the randomized sign), got {self.sign_bound}")

    def init_outer(self, x: Any, comm: Communicator) -> dict[str, Any]:
        return {"x_old": x, "momentum": comm.xp.zeros_like(x)}

    def outer(self, x_bar: Any, outer: dict[str, Any], eta: float, step: int, comm: Communicator):
        c = self.config
        x_old, m = outer["x_old"], outer["momentum"]
        delta = (x_old - x_bar) / eta
        direction = c.sign_beta1 * m + (1 - c.sign_beta1) * delta
        signed = self.sign(direction, (step + 1) // c.tau - 1, comm)
        x_old = x_old * (1 - c.lam * c.gamma * eta) - c.gamma * eta * signed
        m = c.sign_beta2 * m + (1 - c.sign_beta2) * delta
        return x_old, {"x_old": x_old, "momentum": m}

    def sign(self, direction: Any, round_: int, comm: Communicator) -> Any:
        xp = comm.xp
        if self.config.sign == "exact":
            return xp.sign(direction)
        # One draw per coordinate, the same on every worker (broadcast over the simulator's worker axis).
        uniforms = np.random.default_rng([self.config.seed, round_]).random(direction.shape[-1])
        u = xp.asarray(uniforms, dtype=direction.dtype, device=device_of(direction))
        p_plus = (1 + xp.clip(direction / self.config.sign_bound, min=-1.0, max=1.0)) / 2
        return 2 * xp.astype(u < p_plus, direction.dtype) - 1
