"""0/1 Adam (Lu, Li, Zhang, De Sa, He; the follow-up of 1-bit Adam, ../shared/papers/onebit_adam.md,
section "0/1 Adam"), with the variance and local-step policies of DeepSpeed 0.19.6's ZeroOneAdam
(runtime/fp16/onebit/zoadam.py, its parameters keep their names here).

Steps are counted s = 1, 2, ... (thinwire's step t is s = t + 1). Two phases:

Variance phase, s <= var_freeze_step. The variance is updated only at steps s with s % var_interval == 0;
var_interval starts at 1 and doubles after every var_update_scaler variance updates (so with the default
16: steps 1..16, then every 2nd step for 16 updates, then every 4th, ...).
    variance-update step: the gradient is all-reduced at full precision (DeepSpeed: the engine's
        backward all-reduce is enabled for exactly these steps); m and v are Adam's moments of it;
    any other step: the gradient is averaged by 1-bit Adam's compressed all-reduce (worker and server
        error feedback, onebit_adam.OnebitAdam.compressed_average); only m takes it, v stays.
    every step: x = x - lr (m_hat / (sqrt(v_hat) + eps) + wd x).
Local-step phase, s > var_freeze_step: v is frozen; no gradient is communicated. Every step is a local
Adam step with the local gradient g_i (m = b1 m + (1 - b1) g_i, x = x - lr u_s with
u_s = m / (sqrt(v) + eps) + wd x), accumulating a = sum_s lr u_s and L = sum_s lr since the last
synchronisation. At steps with s % local_interval == 0 the ranks synchronise:
    x = x + a (back to the last synchronised point);  w = a (sqrt(v) + eps)  (the lr-weighted sum of the
    momenta); w_bar = 1-bit compressed all-reduce of w;  m = w_bar / L;  x = x - w_bar / (sqrt(v) + eps).
local_interval starts at 1 and after every local_step_scaler steps of this phase doubles, up to
local_step_clipper. The error buffers are zeroed when the phase begins (they held gradient errors,
they now hold momentum-sum errors), as DeepSpeed does.

So the compressed all-reduce carries gradients on the variance phase's non-update steps and the
accumulated momentum at synchronisations; full precision only on variance-update steps. Per rank and
step: value bits per parameter on a variance-update step, (p + 1)(c + b) / d on a 1-bit step (as
1-bit Adam's compression stage: c = 8 ceil(d / 8p), b-bit scales), 0 on a local step without
synchronisation.

thinwire's choices (DeepSpeed differs):
- no initialising step: DeepSpeed's first optimizer call only allocates buffers and sends one compressed
  all-reduce, and it counts that call as step 1, so its schedule is ours shifted by one step;
- `bias_correction` (default true, DeepSpeed applies none): in the variance phase m_hat = m / (1 - b1^s)
  and v_hat = v / (1 - b2^k) after k variance updates; in the local-step phase v keeps its last
  correction and m is not corrected (1 - b1^s is within b1^var_freeze_step of 1 by then);
- the whole model is one flattened vector (1-bit Adam's default mode) instead of tensor by tensor;
- `zero_variance_mask` (default true; DeepSpeed's counterpart is the user-given exp_avg_mask): after a
  compressed all-reduce, coordinates whose variance is exactly 0 take 0 (1-bit compression cannot send
  a zero and m / eps would blow up there, see onebit_adam.py);
- the run ends wherever the schedule is: after the last synchronisation the ranks' models differ by
  their local steps, and each reports its own.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from thinwire.algorithms.adam import AdamConfig, bias_corrections, direction, moments
from thinwire.algorithms.comm import Communicator
from thinwire.algorithms.onebit_adam import OnebitAdam
from thinwire.algorithms.registry import MethodBase, Oracle, register

# What a step does, from the schedule alone.
DENSE, ONEBIT, LOCAL, SYNC = "dense", "onebit", "local", "sync"


@register
class ZeroOneAdam(MethodBase):
    name = "zero-one-adam"
    tiny: ClassVar[dict[str, Any]] = {"lr": 0.05, "var_freeze_step": 8, "var_update_scaler": 2,
                                      "local_step_scaler": 2, "local_step_clipper": 4}

    @dataclasses.dataclass(frozen=True)
    class Config(AdamConfig):
        var_freeze_step: int = 100000  # DeepSpeed's defaults from here on
        var_update_scaler: int = 16
        local_step_scaler: int = 32678
        local_step_clipper: int = 16
        zero_variance_mask: bool = True

        def __post_init__(self) -> None:
            super().__post_init__()
            for name in ("var_freeze_step", "var_update_scaler", "local_step_scaler", "local_step_clipper"):
                if getattr(self, name) < 1:
                    raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def __init__(self, config: Any, layout: Any) -> None:
        super().__init__(config, layout)
        # 1-bit Adam (default mode) lends its compressed all-reduce of the flattened vector: its error
        # buffers, the exchange and its stated bits; its own optimizer settings are not used.
        self.onebit = OnebitAdam(OnebitAdam.Config(), layout)
        # The schedule depends on the config only; it is extended lazily, step by step.
        self._plan: list[str] = []
        self._updates: list[int] = []  # variance updates taken up to and including each step
        self._intervals = {"var": 1, "var_count": 0, "local": 1, "local_count": 0}

    def plan(self, step: int) -> tuple[str, int]:
        """What step t (0-based) does, and the number of variance updates after it."""
        c = self.config
        while len(self._plan) <= step:
            s = len(self._plan) + 1
            iv, k = self._intervals, self._updates[-1] if self._updates else 0
            if s <= c.var_freeze_step:
                kind = DENSE if s % iv["var"] == 0 else ONEBIT
                if kind == DENSE:
                    k += 1
                    iv["var_count"] += 1
                    if iv["var_count"] == c.var_update_scaler:
                        iv["var_count"], iv["var"] = 0, iv["var"] * 2
            else:
                kind = SYNC if s % iv["local"] == 0 else LOCAL
                iv["local_count"] += 1
                if iv["local_count"] == c.local_step_scaler:
                    iv["local_count"], iv["local"] = 0, min(c.local_step_clipper, iv["local"] * 2)
            self._plan.append(kind)
            self._updates.append(k)
        return self._plan[step], self._updates[step]

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        state = self.onebit.init_state(x, comm)  # m, v, t and the error buffers of the compressed all-reduce
        zeros = comm.xp.zeros_like(x)
        return dict(state, acc=zeros, lrs=0.0)

    def _masked(self, y: Any, v: Any, xp: Any) -> Any:
        return y * xp.astype(v > 0, y.dtype) if self.config.zero_variance_mask else y

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle, comm: Communicator):
        c, t, xp = self.config, state["t"], comm.xp
        kind, updates = self.plan(t)
        loss, grad = oracle(x)
        new = dict(state, t=t + 1)
        if kind == DENSE:
            grad = comm.all_reduce(grad, op="avg")
            new["m"], new["v"] = moments(state["m"], state["v"], grad, c.beta1, c.beta2)
        elif kind == ONEBIT:
            out = self.onebit.compressed_average(grad, state, comm)
            new.update(error=out["error"], server_error=out["server_error"])
            new["m"] = c.beta1 * state["m"] + (1 - c.beta1) * self._masked(out["m"], state["v"], xp)
        if kind in (DENSE, ONEBIT):
            scales = (1.0, 1.0)
            if c.bias_correction:
                scales = (bias_corrections(c.beta1, c.beta2, t + 1)[0], bias_corrections(c.beta1, c.beta2, updates)[1])
            update = direction(new["m"], new["v"], c.eps, *scales)
            if c.weight_decay:
                update = update + c.weight_decay * x
            return x - c.lr * update, new, loss

        if t == c.var_freeze_step:  # the first local step: the errors now feed momentum sums
            new["error"], new["server_error"] = xp.zeros_like(state["error"]), xp.zeros_like(state["server_error"])
        v_scale = bias_corrections(c.beta1, c.beta2, updates)[1] if c.bias_correction else 1.0
        denom = xp.sqrt(state["v"] * v_scale) + c.eps
        new["m"] = c.beta1 * state["m"] + (1 - c.beta1) * grad
        update = new["m"] / denom
        if c.weight_decay:
            update = update + c.weight_decay * x
        acc, lrs = state["acc"] + c.lr * update, state["lrs"] + c.lr
        if kind == LOCAL:
            new.update(acc=acc, lrs=lrs)
            return x - c.lr * update, new, loss
        out = self.onebit.compressed_average(acc * denom, new, comm)
        summed = self._masked(out["m"], state["v"], xp)
        new.update(error=out["error"], server_error=out["server_error"], m=summed / lrs, acc=xp.zeros_like(x), lrs=0.0)
        # From the last synchronised point x + state["acc"], the averaged lr-weighted momentum sum.
        return x + state["acc"] - summed / denom, new, loss

    def diagnostics(self, state: dict[str, Any]) -> dict[str, float]:
        kinds = [self.plan(t)[0] for t in range(state["t"])]
        return {"variance_updates": float(self._updates[state["t"] - 1]) if state["t"] else 0.0,
                "communicating_steps": float(sum(k != LOCAL for k in kinds))}

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        kind, _ = self.plan(step)
        if kind == DENSE:
            return float(value_bits)
        if kind == LOCAL:
            return 0.0
        return self.onebit.bits_per_parameter(value_bits, self.onebit.config.freeze_step)  # a compressed step
