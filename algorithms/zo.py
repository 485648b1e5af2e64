"""Zeroth-order building blocks: gradient estimators from function values, and proximal operators.

Huang et al. 2019 (Faster Gradient-Free Proximal Stochastic Methods, arXiv 1902.06158) and the
RSPGF baseline (Ghadimi, Lan, Zhang 2016) estimate grad f_i(x) from values of f_i only, with a
smoothing parameter mu:
- coord (CooSGE): sum_j [f_i(x + mu e_j) - f_i(x - mu e_j)] / (2 mu) e_j, 2d queries;
- sphere (RandSGE): (d / mu) [f_i(x + mu u) - f_i(x)] u, u uniform on the unit sphere, 2 queries;
- gauss (RSPGF): [f_i(x + mu u) - f_i(x)] / mu u, u ~ N(0, I), 2 queries.
Every estimate also yields f_i(x) (the loss the training loop logs): the random-direction estimators
query it anyway, the coordinate one queries it once more, so its count is 2d + 1 here.

A zeroth-order oracle (the capability the ZO methods require of a workload) has
    n_samples               the samples f_i of this worker's shard,
    draw(b)                 b distinct sample indices per worker, shape (W, b) simulated or (b,) real,
    values(points, idx)     f_i at points (..., b, k, d) for the samples idx (..., b): shape (..., b, k).
The same code serves the simulator (leading worker axis W) and one real rank.

psi (the nonsmooth part) is l1 |x|_1 + l2 / 2 |x|^2 (l2 = 0: the lasso penalty; both: elastic net).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import device as device_of
from thinwire.algorithms.comm import Communicator, ThinwireError

ESTIMATORS = ("coord", "sphere", "gauss")


def queries_per_sample(estimator: str, dim: int) -> int:
    """Function values one estimate of grad f_i (plus f_i(x)) costs."""
    return 2 * dim + 1 if estimator == "coord" else 2


def check_zo(mu: float, estimator: str, batch: int, l1: float, l2: float) -> None:
    """The checks every zeroth-order config shares; a ValueError names the parameter."""
    if not mu > 0:
        raise ValueError(f"mu must be > 0, got {mu}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if l1 < 0 or l2 < 0:
        raise ValueError(f"l1 and l2 must be >= 0, got {l1}, {l2}")


def require_values(oracle: Any, method: str, batch: int) -> int:
    """The oracle's samples per worker, or a clear error when it cannot serve a ZO method."""
    if not hasattr(oracle, "values"):
        raise ThinwireError(f"{method} needs function values (a zeroth-order oracle); this workload gives "
                            "only loss and gradient: use a simulator problem (e.g. sigmoid, sigmoid-bc)")
    if batch > oracle.n_samples:
        raise ThinwireError(f"{method}: batch {batch} is larger than the {oracle.n_samples} samples per worker")
    return oracle.n_samples


def directions(estimator: str, seed: int, step: int, purpose: int, shape: tuple[int, ...], like: Any,
               comm: Communicator) -> Any:
    """Random directions for (workers, *shape), drawn for all workers from (seed, step, purpose) so the
    simulator and every real rank use the same ones; a real rank keeps its own. None for coord."""
    if estimator == "coord":
        return None
    u = np.random.default_rng([seed, step, purpose]).standard_normal((comm.world_size, *shape))
    if estimator == "sphere":
        u /= np.linalg.norm(u, axis=-1, keepdims=True)
    if like.ndim == 1:  # one real rank: no worker axis
        u = u[comm.workers[0]]
    return comm.xp.asarray(u, dtype=like.dtype, device=device_of(like))


def estimate(xp: Any, oracle: Any, idx: Any, x: Any, estimator: str, mu: float, u: Any) -> tuple[Any, Any]:
    """Per-sample gradient estimates (..., b, d) at base points x (..., b or 1, d), and f_i(x) (..., b)."""
    d = x.shape[-1]
    base = x[..., None, :]
    if estimator == "coord":
        e = mu * xp.eye(d, dtype=x.dtype, device=device_of(x))
        fv = _values(xp, oracle, xp.concat([base + e, base - e, base], axis=-2), idx)
        return (fv[..., :d] - fv[..., d:2 * d]) / (2 * mu), fv[..., 2 * d]
    fv = _values(xp, oracle, xp.concat([base + mu * u[..., None, :], xp.broadcast_to(base, u[..., None, :].shape)], axis=-2), idx)
    scale = d / mu if estimator == "sphere" else 1 / mu
    return scale * (fv[..., 0] - fv[..., 1])[..., None] * u, fv[..., 1]


def _values(xp: Any, oracle: Any, points: Any, idx: Any) -> Any:
    fv = oracle.values(points, idx)
    if not bool(xp.all(xp.isfinite(fv))):
        raise ThinwireError("the zeroth-order oracle returned a non-finite function value "
                            "(the iterate or the smoothing parameter mu is out of range)")
    return fv


def prox(xp: Any, v: Any, eta: float, l1: float, l2: float) -> Any:
    """prox of eta psi: soft-threshold at eta l1, then shrink by 1 / (1 + eta l2) (elastic net)."""
    soft = xp.sign(v) * xp.clip(xp.abs(v) - eta * l1, min=0.0)
    return soft / (1 + eta * l2)


def gradient_mapping(xp: Any, x: Any, grad: Any, eta: float, l1: float, l2: float) -> Any:
    """G_eta(x) = (x - prox_{eta psi}(x - eta grad f(x))) / eta: zero exactly at stationary points of f + psi."""
    return (x - prox(xp, x - eta * grad, eta, l1, l2)) / eta


def all_samples(oracle: Any, like: Any) -> np.ndarray:
    """Every sample index of each worker's shard, shaped like a draw of n."""
    n = oracle.n_samples
    return np.broadcast_to(np.arange(n), (*like.shape[:-1], n))

