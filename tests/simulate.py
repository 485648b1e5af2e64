"""Run a registered method in the simulator on a small problem, keeping every gradient it asked for."""

from __future__ import annotations

from typing import Any, NamedTuple

import array_api_compat.numpy as xp_np
import numpy as np
from thinwire.algorithms.registry import get_method, make_config
from thinwire.simulators.problems import PROBLEMS, ProblemConfig
from thinwire.simulators.simcomm import SimComm


class Sim(NamedTuple):
    method: Any
    comm: SimComm
    x: Any  # (workers, dim) after the last step
    state: dict
    losses: np.ndarray  # (steps, workers)
    grads: list  # every gradient the oracle returned, in call order


def simulate(name: str, params: dict, *, workers: int = 3, steps: int = 20, dtype: str = "float64", xp: Any = xp_np,
             problem: str = "logreg", dim: int = 50, seed: int = 0, heterogeneity: float = 0.5,
             on_step: Any = None, device: Any = None) -> Sim:
    """`on_step(t, x, state, new_x, new_state, grad)`, if given, sees every step: the model and state
    before and after it and the last gradient it drew (for invariants that compare the two). `device`: a
    torch device for the model and the oracle's data (xp torch; tests/test_gpu.py runs it on CUDA)."""
    cls = get_method(name)
    prob = PROBLEMS[problem](workers, seed, ProblemConfig(dim=dim, heterogeneity=heterogeneity))
    method = cls(make_config(cls, params), prob.layout)
    comm, inner = SimComm(workers, xp), prob.oracle(xp, None, dtype, device)
    grads: list = []

    def oracle(x):
        loss, g = inner(x)
        grads.append(g)
        return loss, g

    # Zeroth-order methods query function values through the problem's own oracle (no gradients to keep).
    if hasattr(inner, "values"):
        oracle.n_samples, oracle.draw, oracle.values = inner.n_samples, inner.draw, inner.values

    kw = {} if device is None else {"device": device}
    x = xp.asarray(np.zeros((workers, dim), dtype=dtype), **kw)
    state = method.init_state(x, comm)
    losses = []
    for t in range(steps):
        comm.log.step = t
        new_x, new_state, loss = method.step(x, state, oracle, comm)
        if on_step is not None:
            on_step(t, x, state, new_x, new_state, grads[-1] if grads else None)
        x, state = new_x, new_state
        losses.append(np.asarray(loss))
    return Sim(method, comm, x, state, np.array(losses), grads)
