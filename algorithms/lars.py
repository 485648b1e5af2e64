"""LARS (You, Gitman, Ginsburg 2017) and CLARS (Huo, Gu, Huang 2020; ../shared/papers/clars.md).

Both are momentum SGD with a learning rate per layer. For every weight tensor l (more than one
dimension: matrices, convolution kernels):
    trust_l = eta * ||w_l|| / (D_l + beta * ||w_l||)     (1 when ||w_l|| or D_l is 0)
    v_l <- m v_l + gamma_t * trust_l * (g_l + weight_decay * w_l) ;   w_l <- w_l - v_l
where g is the all-reduced mini-batch gradient, gamma_t the global lr after gradual warm-up (linear over
`warmup_steps`, as sgd's) and eta the trust coefficient (You et al.'s "LARS coefficient", 0.001).
LARS: D_l = ||g_l||, the norm of the mean gradient. CLARS: D_l = the mean of the per-example gradient
norms of the layer, (1/B) sum_i ||grad_l f_i(w)|| over the global batch (`norms: per_example`, needs an
oracle with per-example gradients), or of the per-worker micro-batch gradient norms (`norms:
per_worker`). The mean of norms is at least the norm of the mean, so CLARS' per-layer lr never exceeds
LARS' at the same point: a warm-up that adapts to how much the examples disagree.

Convention for the other tensors (biases, norm-layer gains: at most one dimension), as in You et al.'s
and the common LARS implementations: no trust ratio and no weight decay, plain momentum SGD at gamma_t.
beta is the denominator's weight-decay term; You et al. set it to their weight decay.

Wire: LARS all-reduces the gradient (value_bits per parameter). CLARS all-reduces, in the same buffer,
one more value per weight tensor: this worker's mean per-example (or its own) gradient norm, whose
average over workers is the global mean (every worker has the same batch size).

    thinwire sim clars --workload digits-mlp --workers 4 --wparam batch_size=256 --param lr=0.4 --param trust=0.03
    torchrun --standalone --nproc_per_node 2 -m thinwire run lars --workload digits-mlp --param warmup_steps=5
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
from thinwire.algorithms.comm import Communicator, ThinwireError
from thinwire.algorithms.registry import MethodBase, Oracle, check_step, register, segments
from thinwire.algorithms.sgd import check_warmup, warmup_factor

NORMS = ("per_example", "per_worker")


def trust_ratio(xp: Any, w_norm: Any, denominator: Any, trust: float, beta: float) -> Any:
    """eta ||w|| / (D + beta ||w||) elementwise, 1 where ||w|| or D is 0 (a zero layer still moves)."""
    ok = (w_norm > 0) & (denominator > 0)
    safe = xp.where(ok, denominator + beta * w_norm, xp.ones_like(w_norm))
    return xp.where(ok, trust * w_norm / safe, xp.ones_like(w_norm))


def _norm(xp: Any, v: Any) -> Any:
    return xp.sqrt(xp.sum(v * v, axis=-1))


def _host(a: Any) -> np.ndarray:
    return np.asarray(a.detach().cpu() if hasattr(a, "detach") else a)


@register
class LARS(MethodBase):
    name = "lars"
    tiny: ClassVar[dict[str, Any]] = {"lr": 2.0, "trust": 0.1, "momentum": 0.5, "warmup_steps": 5}

    @dataclasses.dataclass(frozen=True)
    class Config:
        lr: float = 1.0  # gamma: the global lr, after warm-up
        trust: float = 0.001  # eta, You et al.'s LARS coefficient
        momentum: float = 0.9
        weight_decay: float = 0.0
        beta: float = 0.0  # weight-decay term of the trust ratio's denominator
        warmup_steps: int = 0  # gradual (linear) warm-up of gamma over this many steps (0: none)

        def __post_init__(self) -> None:
            check_step(self.lr, self.momentum, self.weight_decay)
            check_warmup(self.warmup_steps)
            if not self.trust > 0:
                raise ValueError(f"trust must be > 0, got {self.trust}")
            if self.beta < 0:
                raise ValueError(f"beta must be >= 0, got {self.beta}")

    def __init__(self, config: Any, layout) -> None:
        super().__init__(config, layout)
        self.segments = segments(layout)
        self.weights = [s for s in self.segments if len(s.shape) > 1]  # the tensors with a trust ratio
        if not self.weights:
            raise ThinwireError(f"{self.name} needs a weight tensor (more than one dimension); the layout has "
                                f"only {', '.join(name for name, _ in layout)}")

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        return float(value_bits)

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        return {"momentum": comm.xp.zeros_like(x), "step": 0, "layer_lr": np.zeros(len(self.weights))}

    def gradient_and_denominators(self, x: Any, oracle: Oracle, comm: Communicator) -> tuple[Any, Any, Any]:
        """(loss, all-reduced gradient, D per weight tensor (..., layers))."""
        loss, g = oracle(x)
        g = comm.all_reduce(g, op="avg")
        return loss, g, self.layer_norms(comm.xp, g)

    def layer_norms(self, xp: Any, v: Any) -> Any:
        return xp.stack([_norm(xp, v[..., s.start:s.stop]) for s in self.weights], axis=-1)

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle, comm: Communicator):
        c, xp = self.config, comm.xp
        loss, g, denominators = self.gradient_and_denominators(x, oracle, comm)
        gamma = c.lr * warmup_factor(state["step"], c.warmup_steps)
        w_norms = self.layer_norms(xp, x)
        trust = trust_ratio(xp, w_norms, denominators, c.trust, c.beta)
        layer_lr = gamma * trust
        parts, i = [], 0
        for s in self.segments:
            gs = g[..., s.start:s.stop]
            if len(s.shape) > 1:
                if c.weight_decay:
                    gs = gs + c.weight_decay * x[..., s.start:s.stop]
                parts.append(layer_lr[..., i:i + 1] * gs)
                i += 1
            else:
                parts.append(gamma * gs)
        m = c.momentum * state["momentum"] + xp.concat(parts, axis=-1)
        new = {**state, "momentum": m, "step": state["step"] + 1,
               "layer_lr": _host(layer_lr).reshape(-1, len(self.weights))[0]}
        self.after_step(new, xp, g, w_norms, trust)
        return x - m, new, loss

    def after_step(self, state: dict[str, Any], xp: Any, g: Any, w_norms: Any, trust: Any) -> None:
        """Hook for what a variant measures about the step just taken."""

    def trace(self, state: dict[str, Any]) -> dict[str, float]:
        """The lr each weight tensor got at the step just taken (global lr x trust ratio)."""
        return {f"lr:{s.name}": float(v) for s, v in zip(self.weights, state["layer_lr"])}


@register
class CLARS(LARS):
    name = "clars"
    tiny: ClassVar[dict[str, Any]] = {"lr": 2.0, "trust": 0.1, "momentum": 0.5, "norms": "per_worker"}

    @dataclasses.dataclass(frozen=True)
    class Config(LARS.Config):
        norms: str = "per_example"  # per_example | per_worker: whose gradient norms D_l averages

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.norms not in NORMS:
                raise ValueError(f"norms must be one of {', '.join(NORMS)}, got {self.norms!r}")

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        return value_bits * (self.n_params + len(self.weights)) / self.n_params

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        return {**super().init_state(x, comm), "ratio_max": -np.inf, "ratio_min": np.inf}

    def gradient_and_denominators(self, x: Any, oracle: Oracle, comm: Communicator) -> tuple[Any, Any, Any]:
        xp, d = comm.xp, self.n_params
        if self.config.norms == "per_example":
            per_example = getattr(oracle, "per_example", None)
            if per_example is None:
                from thinwire.workloads.registry import per_example_workloads

                raise ThinwireError(f"clars with norms=per_example needs per-example gradients, which this "
                                    f"workload's oracle does not give; workloads that do: "
                                    f"{', '.join(per_example_workloads())} (or use norms=per_worker)")
            loss, grads = per_example(x)
            g = xp.mean(grads, axis=-2)
            norms = xp.stack([xp.mean(_norm(xp, grads[..., s.start:s.stop]), axis=-1) for s in self.weights],
                             axis=-1)
        else:
            loss, g = oracle(x)
            norms = self.layer_norms(xp, g)
        reduced = comm.all_reduce(xp.concat([g, norms], axis=-1), op="avg")
        return loss, reduced[..., :d], reduced[..., d:]

    def after_step(self, state: dict[str, Any], xp: Any, g: Any, w_norms: Any, trust: Any) -> None:
        """The invariant: this step's trust ratios over the ones LARS would take at the same point."""
        c = self.config
        lars = trust_ratio(xp, w_norms, self.layer_norms(xp, g), c.trust, c.beta)
        ratio = _host(trust / lars)
        state["ratio_max"] = max(state["ratio_max"], float(ratio.max()))
        state["ratio_min"] = min(state["ratio_min"], float(ratio.min()))

    def diagnostics(self, state: dict[str, Any]) -> dict[str, float]:
        """Over all steps and weight tensors, the largest and smallest ratio of CLARS' lr to the lr
        LARS would use at the same point (same weights, gradient and beta): at most 1 if the rule holds."""
        if state["step"] == 0:
            return {}
        return {"lr_ratio_to_lars_max": state["ratio_max"], "lr_ratio_to_lars_min": state["ratio_min"]}
