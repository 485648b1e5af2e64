"""What the DSM-LS family shares (../shared/papers/dsm_ls.md): local AdamW steps on every worker, its
learning-rate schedule, and a global step on the workers' average every tau steps; `local-adamw`.

The official code (github.com/shuhuayu/dist-sign-momentum: nanoGPT/train_fastdt.py, fairscale's
gossip/fastdt.py) runs, on each worker i, at step k = 0, 1, ...:
    x_i <- A.step(x_i, g_i(x_i), eta_k)         # local AdamW; its moments are per worker, never reset
    if (k + 1) % tau == 0:
        x_bar = mean_i x_i                       # fp32 all-reduce of the parameters
        x_old = outer(x_old, x_bar, eta_k)       # the method's global step; eta_k the CURRENT local lr
        x_i = x_old
A is nanoGPT's AdamW (betas 0.9 / 0.95, eps 1e-8, decoupled weight decay 0.1 on the tensors of 2 or
more dimensions only, gradient clipped to global norm 1.0, torch's bias corrections at the local step
count). `local-adamw` is the plain periodic average (outer = x_bar); SlowMo, DSM-LS and the global
AdamW step (slowmo.py, dsm_ls.py, local_adamw_global.py) divide x_old - x_bar by eta_k, so the
schedule is part of the method:
    eta_k = lr (k + 1) / warmup_steps                                    k < warmup_steps
    constant: lr;  cosine: min_lr + (lr - min_lr) (1 + cos(pi r)) / 2,  r = (k - warmup) / (decay - warmup)
    after decay_steps: min_lr (nanoGPT)
nanoGPT's warm-up is lr k / warmup (zero at step 0, where a tau = 1 outer step would divide by zero);
here it starts at lr / warmup_steps. A method never learns the run's length, so it cannot check that
decay_steps matches it: set decay_steps to the run's --steps (a longer run continues at min_lr, a
shorter one stops before the decay ends). `base: sgd` replaces AdamW by plain SGD (the local
optimizer of the paper's v2 rate analysis, used by claim S3's study).

Bits per parameter: value_bits at the steps that end a period (the parameters, all-reduced once),
0 between: on average value_bits / tau, against value_bits every step for dense AdamW.

    thinwire sim local-adamw --workload text-gpt --workers 4 --steps 240 --param lr=3e-3 --param tau=12
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np
from array_api_compat import device as device_of
from thinwire.algorithms.adam import bias_corrections, check_adam, direction, moments
from thinwire.algorithms.comm import Communicator
from thinwire.algorithms.registry import Layout, MethodBase, Oracle, is_period_end, register

SCHEDULES = ("constant", "cosine")
BASES = ("adamw", "sgd")


def check_unit(name: str, value: float) -> None:
    """A momentum-like coefficient of a global step; the error names the fix."""
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}: pick a value such as 0.9")


@dataclasses.dataclass(frozen=True)
class LocalAdamWConfig:
    """Local optimizer, its schedule and the period; defaults: the official nanoGPT scripts (constant
    schedule unless asked: a cosine needs the run's length)."""

    lr: float = 5e-4  # peak local lr (run_example.sh: 5e-4 decaying to 2.5e-5)
    tau: int = 12  # local steps per global step (run_example.sh)
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1  # decoupled; matrices and embeddings only, as nanoGPT
    grad_clip: float = 1.0  # global norm of each worker's gradient; 0 disables
    base: str = "adamw"  # adamw | sgd
    schedule: str = "constant"  # constant | cosine
    warmup_steps: int = 0  # linear warm-up
    decay_steps: int = 0  # cosine: the step where eta reaches min_lr; set it to the run's steps
    min_lr: float = 2.5e-5

    def __post_init__(self) -> None:
        check_adam(self.lr, self.beta1, self.beta2, self.eps, self.weight_decay)
        if not (isinstance(self.tau, int) and self.tau >= 1):
            raise ValueError(f"tau must be an integer >= 1 (local steps per global step), got {self.tau}: "
                             f"tau=1 takes the global step after every local step")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0 (0 disables clipping), got {self.grad_clip}")
        if self.base not in BASES:
            raise ValueError(f"base must be one of {', '.join(BASES)}, got {self.base!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.schedule == "cosine":
            if self.decay_steps <= self.warmup_steps:
                raise ValueError(f"schedule cosine needs decay_steps > warmup_steps ({self.warmup_steps}), got "
                                 f"{self.decay_steps}: set decay_steps to the run's number of steps")
            if not 0 < self.min_lr <= self.lr:
                raise ValueError(f"min_lr must be in (0, lr = {self.lr}], got {self.min_lr}: the global step "
                                 f"divides by the current lr, which ends at min_lr")


def local_lr(c: LocalAdamWConfig, step: int) -> float:
    """eta_k, the local lr of 0-based step k (see the module docstring)."""
    if step < c.warmup_steps:
        return c.lr * (step + 1) / c.warmup_steps
    if c.schedule == "constant":
        return c.lr
    if step >= c.decay_steps:
        return c.min_lr
    ratio = (step - c.warmup_steps) / (c.decay_steps - c.warmup_steps)
    return c.min_lr + 0.5 * (1 + math.cos(math.pi * ratio)) * (c.lr - c.min_lr)


def decay_mask(layout: Layout) -> np.ndarray:
    """1 on the parameters nanoGPT decays (tensors of 2 or more dimensions), 0 on biases and norms."""
    return np.concatenate([np.full(math.prod(shape), 1.0 if len(shape) >= 2 else 0.0) for _, shape in layout])


def clip_by_norm(g: Any, max_norm: float, xp: Any) -> Any:
    """torch.nn.utils.clip_grad_norm_ per worker: g * min(1, max_norm / (|g| + 1e-6))."""
    norm = xp.linalg.vector_norm(g, axis=-1, keepdims=True)
    return g * (max_norm / xp.clip(norm + 1e-6, min=max_norm))


class LocalSteps(MethodBase):
    """Local steps on every worker; at the end of each period, x_bar = all-reduced mean of the x_i and
    every worker continues from `outer(...)`. Subclasses define the global step."""

    tiny: ClassVar[dict[str, Any]] = {"lr": 0.2, "tau": 3, "schedule": "cosine", "warmup_steps": 3,
                                      "decay_steps": 40, "min_lr": 0.02}

    def __init__(self, config: Any, layout: Layout) -> None:
        super().__init__(config, layout)
        self.mask = decay_mask(layout)

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        zeros = comm.xp.zeros_like(x)
        return {"m": zeros, "v": zeros, "step": 0, "outer": self.init_outer(x, comm)}

    def init_outer(self, x: Any, comm: Communicator) -> dict[str, Any]:
        """State of the global step: x_old (x_0, fp32 in the code) plus the method's buffers."""
        return {"x_old": x}

    def outer(self, x_bar: Any, outer: dict[str, Any], eta: float, step: int, comm: Communicator):
        """(new x_old, new outer state) from the workers' average x_bar at the period's end."""
        raise NotImplementedError

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle, comm: Communicator):
        c, xp, k = self.config, comm.xp, state["step"]
        eta = local_lr(c, k)
        loss, g = oracle(x)
        if c.grad_clip:
            g = clip_by_norm(g, c.grad_clip, xp)
        decay = c.weight_decay * xp.asarray(self.mask, dtype=x.dtype, device=device_of(x)) if c.weight_decay else 0.0
        m, v = state["m"], state["v"]
        if c.base == "adamw":
            m, v = moments(m, v, g, c.beta1, c.beta2)
            g = direction(m, v, c.eps, *bias_corrections(c.beta1, c.beta2, k + 1))
        x = x - eta * (g + decay * x)
        outer = state["outer"]
        if is_period_end(k, c.tau):
            x_old, outer = self.outer(comm.all_reduce(x, op="avg"), outer, eta, k, comm)
            x = x_old
        return x, {"m": m, "v": v, "step": k + 1, "outer": outer}, loss

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        return float(value_bits) if is_period_end(step, self.config.tau) else 0.0


@register
class LocalAdamW(LocalSteps):
    """Local AdamW with periodic model averaging (the code with fastdt_lr 0 and local SGD averaging)."""

    name = "local-adamw"

    Config = LocalAdamWConfig

    def init_outer(self, x: Any, comm: Communicator) -> dict[str, Any]:
        return {}

    def outer(self, x_bar: Any, outer: dict[str, Any], eta: float, step: int, comm: Communicator):
        return x_bar, outer
