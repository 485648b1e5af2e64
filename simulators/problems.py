"""Test problems, vectorised over workers: least squares and logistic regression (convex), and
logistic regression with a nonconvex regulariser (logreg-nc, for nonconvex rate checks).

All data is generated with numpy from the seed, for all W workers at once, so the simulator (all
workers) and a real rank (one worker's slice) see bit-identical data and minibatches. The
`heterogeneity` knob moves each worker's local optimum (least squares) or feature mean (logistic
regression) away from the others': 0 is i.i.d. data, 1 is strongly non-i.i.d.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class ProblemConfig:
    samples_per_worker: int = 256
    dim: int = 100
    batch_size: int = 16
    heterogeneity: float = 0.0
    noise: float = 0.1
    l2: float = 1e-3  # ridge term, keeps lsq and logreg strongly convex

    def __post_init__(self) -> None:
        for name in ("samples_per_worker", "dim", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size > self.samples_per_worker:
            raise ValueError(f"batch_size {self.batch_size} exceeds samples_per_worker {self.samples_per_worker}")
        if self.heterogeneity < 0 or self.noise < 0 or self.l2 < 0:
            raise ValueError("heterogeneity, noise and l2 must be >= 0")


class Problem:
    """Data of all workers; `oracle` serves all of them (simulator) or one rank (real run)."""

    kind: str

    def __init__(self, world_size: int, seed: int, config: ProblemConfig) -> None:
        self.world_size, self.seed, self.config = world_size, seed, config
        rng = np.random.default_rng([seed, 0])
        c = config
        self.features, self.targets = self._generate(rng, world_size, c)
        self.n_params = c.dim
        # A linear model with one output: its weight is a 1 x dim matrix.
        self.layout = (("weight", (1, c.dim)),)

    def x0(self) -> np.ndarray:
        return np.zeros(self.config.dim)

    def oracle(self, xp: Any, rank: int | None, dtype: str, device: Any = None) -> ProblemOracle:
        """rank=None: all workers (leading axis W); rank=r: worker r only (no worker axis)."""
        return ProblemOracle(self, xp, rank, dtype, device)

    def evaluate(self, x_mean: np.ndarray) -> tuple[float, float]:
        """(full objective over all workers' data, metric) at the workers' average model."""
        a = self.features.reshape(-1, self.config.dim)
        y = self.targets.reshape(-1)
        loss, _ = self.loss_grad(np, x_mean, a, y)
        return float(loss), self.metric(a @ x_mean, y)

    def _generate(self, rng, w, c):
        raise NotImplementedError

    def loss_grad(self, xp, x, a, y):
        raise NotImplementedError

    def metric(self, z, y) -> float:
        return math.nan


class LeastSquares(Problem):
    kind = "lsq"

    def _generate(self, rng, w, c):
        x_star = rng.standard_normal(c.dim) / math.sqrt(c.dim)
        local_star = x_star + c.heterogeneity * rng.standard_normal((w, c.dim)) / math.sqrt(c.dim)
        a = rng.standard_normal((w, c.samples_per_worker, c.dim))
        b = np.einsum("wnd,wd->wn", a, local_star) + c.noise * rng.standard_normal((w, c.samples_per_worker))
        return a, b

    def loss_grad(self, xp, x, a, y):
        # f(x) = mean_n (a_n x - y_n)^2 / 2 + l2 |x|^2 / 2, batched over any leading axes.
        r = xp.squeeze(a @ x[..., None], axis=-1) - y
        n = a.shape[-2]
        loss = xp.sum(r * r, axis=-1) / (2 * n) + self.config.l2 / 2 * xp.sum(x * x, axis=-1)
        grad = xp.squeeze(xp.matrix_transpose(a) @ r[..., None], axis=-1) / n + self.config.l2 * x
        return loss, grad


class LogisticRegression(Problem):
    kind = "logreg"

    def _generate(self, rng, w, c):
        x_star = rng.standard_normal(c.dim)
        shift = c.heterogeneity * rng.standard_normal((w, 1, c.dim))
        a = (rng.standard_normal((w, c.samples_per_worker, c.dim)) + shift) / math.sqrt(c.dim)
        logits = np.einsum("wnd,d->wn", a, x_star) + c.noise * rng.standard_normal((w, c.samples_per_worker))
        return a, np.where(logits >= 0, 1.0, -1.0)

    def loss_grad(self, xp, x, a, y):
        # f(x) = mean_n log(1 + exp(-y_n a_n x)) + l2 |x|^2 / 2, labels y in {-1, +1}.
        z = y * xp.squeeze(a @ x[..., None], axis=-1)
        n = a.shape[-2]
        loss = xp.sum(xp.logaddexp(xp.zeros_like(z), -z), axis=-1) / n + self.config.l2 / 2 * xp.sum(x * x, axis=-1)
        coef = -y * _sigmoid(xp, -z) / n
        grad = xp.squeeze(xp.matrix_transpose(a) @ coef[..., None], axis=-1) + self.config.l2 * x
        return loss, grad

    def metric(self, z, y) -> float:
        return float(np.mean(np.where(z >= 0, 1.0, -1.0) == y))


class NonconvexLogisticRegression(LogisticRegression):
    """Logistic regression plus 0.1 sum_j x_j^2 / (1 + x_j^2), the nonconvex regulariser of the
    variance-reduction literature (e.g. Wang et al. 2019, SpiderBoost): smooth, bounded below, and
    nonconvex wherever some |x_j| > 1 / sqrt(3), as most coordinates of the data's x_star ~ N(0, 1)."""

    kind = "logreg-nc"
    nonconvex = 0.1

    def loss_grad(self, xp, x, a, y):
        loss, grad = super().loss_grad(xp, x, a, y)
        s = 1 + x * x
        return loss + self.nonconvex * xp.sum(x * x / s, axis=-1), grad + self.nonconvex * 2 * x / (s * s)


def _sigmoid(xp, t):
    # exp of a non-positive number only: no overflow for large |t|.
    e = xp.exp(-xp.abs(t))
    return xp.where(t >= 0, 1 / (1 + e), e / (1 + e))


class ProblemOracle:
    """Minibatch gradients; one numpy generator draws every worker's batch so all modes agree."""

    def __init__(self, problem: Problem, xp: Any, rank: int | None, dtype: str, device: Any) -> None:
        self.problem, self.xp, self.rank = problem, xp, rank
        rows = slice(None) if rank is None else rank
        # Converted once: a per-step astype of every batch costs more than the gradient itself.
        self._features = problem.features[rows].astype(dtype)
        self._targets = problem.targets[rows].astype(dtype)
        self._rng = np.random.default_rng([problem.seed, 1])
        self._workers = np.arange(problem.world_size)[:, None]
        self._device = device

    def _asarray(self, a: np.ndarray) -> Any:
        kw = {"device": self._device} if self._device is not None else {}
        return self.xp.asarray(a, **kw)

    def __call__(self, x: Any) -> tuple[Any, Any]:
        c, w = self.problem.config, self.problem.world_size
        idx = self._rng.integers(0, c.samples_per_worker, size=(w, c.batch_size))
        if self.rank is None:
            # Plain fancy indexing; take_along_axis would build a (W, batch, d) index array first.
            a, y = self._features[self._workers, idx], self._targets[self._workers, idx]
        else:
            a, y = self._features[idx[self.rank]], self._targets[idx[self.rank]]
        return self.problem.loss_grad(self.xp, x, self._asarray(a), self._asarray(y))


PROBLEMS: dict[str, type[Problem]] = {p.kind: p for p in (LeastSquares, LogisticRegression,
                                                         NonconvexLogisticRegression)}
