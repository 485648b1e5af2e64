"""Test problems, vectorised over workers: least squares and logistic regression (convex),
logistic regression with a nonconvex regulariser (logreg-nc, for nonconvex rate checks), the nonconvex
sigmoid loss on synthetic data (sigmoid) or scikit-learn's breast cancer (sigmoid-bc), and SDP4Bit's
two-parameter counterexample for quantized weights (sdp4bit-counterexample). The data problems also
serve single samples' function values (the zeroth-order oracle of algorithms/zo.py).

All data is generated with numpy from the seed, for all W workers at once, so the simulator (all
workers) and a real rank (one worker's slice) see bit-identical data and minibatches. The
`heterogeneity` knob moves each worker's local optimum (least squares) or feature mean (logistic
regression) away from the others': 0 is i.i.d. data, 1 is strongly non-i.i.d.

Validation split (for tuning, analysis/tuning.py): the synthetic problems draw a fresh set of as many
samples per worker from the same distribution (the same optimum and worker shifts) with a separate
stream, (seed, 0, 1), so the training data, its batches and the eval objective (the full training
objective) are exactly those of a run without it; the breast cancer data holds back the samples the
workers do not get. `validation_loss` is the objective over it at the average model.
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
        self._truth = self._population(rng, world_size, c)
        self.features, self.targets = self._samples(rng, self._truth, world_size, c)
        self._validation: tuple[np.ndarray, np.ndarray] | None = None
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

    @property
    def validation_split(self) -> str:
        """What the validation loss is computed on ("" when the problem has no validation split)."""
        return f"a fresh draw of {self.world_size * self.config.samples_per_worker} samples, stream (seed, 0, 1)"

    def validation_loss(self, x_mean: np.ndarray) -> float:
        """The objective over the validation split at the workers' average model (module docstring)."""
        if self._validation is None:  # drawn on first use: a run computes it once, at its end
            rng = np.random.default_rng([self.seed, 0, 1])
            self._validation = self._samples(rng, self._truth, self.world_size, self.config)
        a, y = self._validation
        loss, _ = self.loss_grad(np, x_mean, a.reshape(-1, a.shape[-1]), y.reshape(-1))
        return float(loss)

    def _population(self, rng, w, c):
        """What all samples share (the optimum, each worker's shift), drawn first from `rng`."""
        raise NotImplementedError

    def _samples(self, rng, truth, w, c):
        """samples_per_worker samples of each of the w workers: (features, targets)."""
        raise NotImplementedError

    def loss_grad(self, xp, x, a, y):
        raise NotImplementedError

    def metric(self, z, y) -> float:
        return math.nan

    def sample_losses(self, xp, points, a, y):
        """f_i at points (..., b, k, d) for the samples a (..., b, d), y (..., b): shape (..., b, k), the
        loss of loss_grad per sample (what a zeroth-order method may query)."""
        z = xp.sum(points * a[..., None, :], axis=-1)
        return self.sample_loss(xp, z, y[..., None]) + self.regulariser(xp, points)

    def sample_loss(self, xp, z, y):
        raise NotImplementedError

    def regulariser(self, xp, x):
        return self.config.l2 / 2 * xp.sum(x * x, axis=-1)


class LeastSquares(Problem):
    kind = "lsq"

    def _population(self, rng, w, c):
        x_star = rng.standard_normal(c.dim) / math.sqrt(c.dim)
        return x_star + c.heterogeneity * rng.standard_normal((w, c.dim)) / math.sqrt(c.dim)

    def _samples(self, rng, local_star, w, c):
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

    def sample_loss(self, xp, z, y):
        return (z - y) ** 2 / 2


class LogisticRegression(Problem):
    kind = "logreg"

    def _population(self, rng, w, c):
        x_star = rng.standard_normal(c.dim)
        return x_star, c.heterogeneity * rng.standard_normal((w, 1, c.dim))

    def _samples(self, rng, truth, w, c):
        x_star, shift = truth
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

    def sample_loss(self, xp, z, y):
        return xp.logaddexp(xp.zeros_like(z), -y * z)


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

    def regulariser(self, xp, x):
        return super().regulariser(xp, x) + self.nonconvex * xp.sum(x * x / (1 + x * x), axis=-1)


class Sigmoid(LogisticRegression):
    """The nonconvex sigmoid loss of the zeroth-order papers (Huang et al. 2019): f_i(x) = 1 / (1 +
    exp(y_i a_i x)) (+ the l2 ridge; set l2=0 for the paper's problem, whose penalty the method's prox
    applies). Bounded, smooth, nonconvex; logreg's data with features a_i ~ N(0, I)."""

    kind = "sigmoid"

    def _samples(self, rng, truth, w, c):
        # The paper's a_i ~ N(0, I), not logreg's N(0, I / d): labels keep their signs.
        a, y = super()._samples(rng, truth, w, c)
        return a * math.sqrt(c.dim), y

    def loss_grad(self, xp, x, a, y):
        z = y * xp.squeeze(a @ x[..., None], axis=-1)
        n = a.shape[-2]
        s = _sigmoid(xp, -z)
        loss = xp.sum(s, axis=-1) / n + self.config.l2 / 2 * xp.sum(x * x, axis=-1)
        coef = -y * s * (1 - s) / n  # d/dz sigmoid(-z) = -s (1 - s)
        grad = xp.squeeze(xp.matrix_transpose(a) @ coef[..., None], axis=-1) + self.config.l2 * x
        return loss, grad

    def sample_loss(self, xp, z, y):
        return _sigmoid(xp, -y * z)


class BreastCancerSigmoid(Sigmoid):
    """The sigmoid loss on scikit-learn's breast cancer data (569 samples, 30 standardised features,
    labels +-1), shuffled by the seed and dealt to the workers in equal shards; `dim` is ignored (30)
    and samples_per_worker x workers must not exceed 569. heterogeneity and noise do not apply."""

    kind = "sigmoid-bc"

    def __init__(self, world_size: int, seed: int, config: ProblemConfig) -> None:
        super().__init__(world_size, seed, dataclasses.replace(config, dim=30))

    def _population(self, rng, w, c):
        from sklearn.datasets import load_breast_cancer

        a, y = load_breast_cancer(return_X_y=True)
        if w * c.samples_per_worker > len(y):
            raise ValueError(f"samples_per_worker {c.samples_per_worker} x {w} workers exceeds the {len(y)} samples")
        return (a - a.mean(0)) / a.std(0), np.where(y == 1, 1.0, -1.0), rng.permutation(len(y))

    def _samples(self, rng, truth, w, c):
        a, y, order = truth
        keep = order[:w * c.samples_per_worker]
        return a[keep].reshape(w, c.samples_per_worker, c.dim), y[keep].reshape(w, c.samples_per_worker)

    @property
    def validation_split(self) -> str:
        held = len(self._truth[2]) - self.world_size * self.config.samples_per_worker
        return f"the {held} samples the workers do not get" if held else ""

    def validation_loss(self, x_mean: np.ndarray) -> float:
        a, y, order = self._truth
        held = order[self.world_size * self.config.samples_per_worker:]
        if not len(held):
            return math.nan
        loss, _ = self.loss_grad(np, x_mean, a[held], y[held])
        return float(loss)


class TernaryCounterexample(Problem):
    """SDP4Bit's counterexample (Sec. 4.1, claim P8): f(w) = |w|^2 on w in R^2 from w0 = (1, -1), with the
    stochastic gradient (4 w1, 0) or (0, 4 w2), each with probability 1/2 (its mean is grad f = 2 w).
    Every worker flips its own coin, all drawn from (seed, 1); `dim` and the data knobs do not apply."""

    kind = "sdp4bit-counterexample"

    def __init__(self, world_size: int, seed: int, config: ProblemConfig) -> None:
        self.world_size, self.seed, self.config = world_size, seed, config
        self.n_params = 2
        self.layout = (("weight", (1, 2)),)

    def x0(self) -> np.ndarray:
        return np.array([1.0, -1.0])

    def oracle(self, xp: Any, rank: int | None, dtype: str, device: Any = None) -> Any:
        rng = np.random.default_rng([self.seed, 1])
        kw = {"device": device} if device is not None else {}

        def oracle(x: Any) -> tuple[Any, Any]:
            coins = rng.integers(0, 2, size=self.world_size)
            pick = np.stack([coins == 0, coins == 1], axis=-1).astype(dtype)
            return xp.sum(x * x, axis=-1), 4 * x * xp.asarray(pick if rank is None else pick[rank], **kw)

        return oracle

    def evaluate(self, x_mean: np.ndarray) -> tuple[float, float]:
        return float(np.sum(x_mean * x_mean)), math.nan

    validation_split = ""  # no data: nothing to hold back

    def validation_loss(self, x_mean: np.ndarray) -> float:
        return math.nan


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

    # The zeroth-order capability (algorithms/zo.py): function values of single samples.
    @property
    def n_samples(self) -> int:
        return self.problem.config.samples_per_worker

    def draw(self, b: int) -> np.ndarray:
        """b distinct samples per worker, from the generator of the minibatches."""
        w, n = self.problem.world_size, self.n_samples
        idx = np.argsort(self._rng.random((w, n)), axis=-1)[:, :b]
        return idx if self.rank is None else idx[self.rank]

    def values(self, points: Any, idx: np.ndarray) -> Any:
        if self.rank is None:
            a, y = self._features[self._workers, idx], self._targets[self._workers, idx]
        else:
            a, y = self._features[idx], self._targets[idx]
        return self.problem.sample_losses(self.xp, points, self._asarray(a), self._asarray(y))


PROBLEMS: dict[str, type[Problem]] = {p.kind: p for p in (LeastSquares, LogisticRegression,
                                                         NonconvexLogisticRegression, Sigmoid, BreastCancerSigmoid,
                                                         TernaryCounterexample)}
