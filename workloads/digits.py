"""digits-mlp and digits-cnn: small models on scikit-learn's handwritten digits (1797 8x8 images,
shipped with scikit-learn).

The model is a plain nn.Module; methods see its parameters as one flat vector, and the oracle maps
the vector back with torch.func.functional_call. In the simulator the same oracle is vmapped over the
workers' leading axis, so the simulator and real ranks compute the same gradients. `per_example_grads`
is vmap(grad) over the examples of a batch (CLARS needs per-example gradient norms); the oracle's
`per_example` serves them for the same batch a call would draw.

Splits: a seeded permutation gives the test digits (`test_fraction`, the eval data), then, with
`validation_fraction` > 0, the validation digits tuning chooses on (analysis/tuning.py), then the
training digits. With the default 0 there is no validation split and the training digits are exactly
those of earlier versions.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class DigitsConfig:
    hidden: int = 64
    batch_size: int = 32
    heterogeneity: float = 0.0  # 0: shards i.i.d.; 1: shards sorted by label
    test_fraction: float = 0.25
    validation_fraction: float = 0.0  # held back from the training digits for tuning (0: none)

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.batch_size < 1:
            raise ValueError("hidden and batch_size must be >= 1")
        if not 0 <= self.heterogeneity <= 1:
            raise ValueError(f"heterogeneity must be in [0, 1], got {self.heterogeneity}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if not 0 <= self.validation_fraction < 1 - self.test_fraction:
            raise ValueError(f"validation_fraction must be in [0, 1 - test_fraction), got {self.validation_fraction}")


@functools.cache
def _n_digits() -> int:
    from sklearn.datasets import load_digits

    return len(load_digits().target)


def shard_digits(world_size: int, config: DigitsConfig) -> int:
    """Training digits in each worker's shard: what test and validation leave, split evenly."""
    n = _n_digits()
    n_train = n - int(n * config.test_fraction) - int(n * config.validation_fraction)
    return n_train // world_size


def epochs_per_step(world_size: int, config: DigitsConfig) -> float:
    """Passes over the training digits one step draws (every worker draws batch_size of its shard): the
    row of step s is the model after (s + 1) * this epochs."""
    return config.batch_size / shard_digits(world_size, config)


class CNN(nn.Module):
    """Two 3x3 convolutions (16 and 32 channels), 2x2 max-pooling, a linear classifier: 4-D kernels
    for the methods that treat convolutions as DGC does."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                 nn.Linear(32 * 4 * 4, 10))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.net(a)


class MLP(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.net(a)


MODELS = {"mlp": MLP, "cnn": CNN}


class DigitsWorkload:
    prefers = "torch"

    def __init__(self, model: str, world_size: int, seed: int, config: DigitsConfig) -> None:
        self.kind = f"digits-{model}"
        from sklearn.datasets import load_digits

        self.world_size, self.seed, self.config = world_size, seed, config
        data = load_digits()
        a = (data.data / 16.0 - 0.5).astype(np.float64)
        y = data.target.astype(np.int64)
        rng = np.random.default_rng([seed, 0])
        order = rng.permutation(len(y))
        n_test = int(len(y) * config.test_fraction)
        n_val = int(len(y) * config.validation_fraction)
        test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
        self.test_features, self.test_labels = a[test], y[test]
        self.validation_features, self.validation_labels = a[val], y[val]
        self.validation_split = f"{n_val} digits held back from training" if n_val else ""
        self.validation_hint = " (set workload_params.validation_fraction, e.g. 0.1)"
        # Sort key mixes a random draw with the label: heterogeneity 1 gives label-sorted shards.
        key = (1 - config.heterogeneity) * rng.random(len(train)) + config.heterogeneity * y[train] / 10
        train = train[np.argsort(key, kind="stable")]
        per = len(train) // world_size
        assert per == shard_digits(world_size, config)  # the split epochs_per_step computes from the config
        self.epochs_per_step = epochs_per_step(world_size, config)
        if per < config.batch_size:
            raise ValueError(f"{world_size} workers leave {per} digits each, fewer than batch_size {config.batch_size}")
        shards = train[: per * world_size].reshape(world_size, per)
        self.features, self.labels = a[shards], y[shards]
        torch.manual_seed(seed)
        self.model = MODELS[model](config.hidden).double()
        self.shapes = [(name, p.shape) for name, p in self.model.named_parameters()]
        self.n_params = sum(math.prod(s) for _, s in self.shapes)
        self.layout = tuple((name, tuple(shape)) for name, shape in self.shapes)

    def x0(self) -> np.ndarray:
        return torch.cat([p.detach().reshape(-1) for p in self.model.parameters()]).numpy()

    def _params(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        out, start = {}, 0
        for name, shape in self.shapes:
            size = math.prod(shape)
            out[name] = flat[start:start + size].reshape(shape)
            start += size
        return out

    def _loss(self, flat: torch.Tensor, a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = torch.func.functional_call(self.model, self._params(flat), (a,))
        return nn.functional.cross_entropy(logits, y)

    def per_example_grads(self, flat: torch.Tensor, a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, n_params): the gradient of each example's loss; their mean is the batch gradient."""
        def one(f, ai, yi):
            return self._loss(f, ai[None], yi[None])

        return torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0))(flat, a, y)

    def oracle(self, xp: Any, rank: int | None, dtype: str, device: Any = None) -> DigitsOracle:
        return DigitsOracle(self, rank, getattr(torch, dtype), device)

    def evaluate(self, x_mean: np.ndarray) -> tuple[float, float]:
        return self._evaluate(x_mean, self.test_features, self.test_labels)

    def validation_loss(self, x_mean: np.ndarray) -> float:
        """Cross-entropy over the validation digits (NaN without a validation split)."""
        if not len(self.validation_labels):
            return math.nan
        return self._evaluate(x_mean, self.validation_features, self.validation_labels)[0]

    def _evaluate(self, x_mean: np.ndarray, features: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
        with torch.no_grad():
            flat = torch.as_tensor(x_mean, dtype=torch.float64)
            a = torch.as_tensor(features)
            logits = torch.func.functional_call(self.model, self._params(flat), (a,))
            y = torch.as_tensor(labels)
            loss = nn.functional.cross_entropy(logits, y).item()
            return loss, (logits.argmax(-1) == y).double().mean().item()


class DigitsOracle:
    def __init__(self, workload: DigitsWorkload, rank: int | None, dtype: torch.dtype, device: Any) -> None:
        self.w, self.rank = workload, rank
        rows = slice(None) if rank is None else rank
        self._features = torch.as_tensor(workload.features[rows], dtype=dtype, device=device)
        self._labels = torch.as_tensor(workload.labels[rows], device=device)
        self._rng = np.random.default_rng([workload.seed, 1])
        self._value_and_grad = torch.func.grad_and_value(self._loss)
        if rank is None:
            self._value_and_grad = torch.func.vmap(self._value_and_grad)

    def _loss(self, flat, a, y):
        return self.w._loss(flat, a, y)

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch, (W, B, ...) or (B, ...): every rank draws all workers' indices and keeps its own."""
        per, b = self.w.features.shape[1], self.w.config.batch_size
        idx = self._rng.integers(0, per, size=(self.w.world_size, b))
        if self.rank is None:
            pick = torch.as_tensor(idx, device=self._features.device)
            a = torch.gather(self._features, 1, pick[:, :, None].expand(-1, -1, self._features.shape[-1]))
            y = torch.gather(self._labels, 1, pick)
        else:
            pick = torch.as_tensor(idx[self.rank], device=self._features.device)
            a, y = self._features[pick], self._labels[pick]
        return a, y

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grad, loss = self._value_and_grad(x, *self._batch())
        return loss.detach(), grad.detach()

    def per_example(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Like a call, with per-example gradients: loss (W,) or (), gradients (W, B, d) or (B, d)."""
        a, y = self._batch()
        grads, loss = self.w.per_example_grads, self.w._loss
        if self.rank is None:
            grads, loss = torch.func.vmap(grads), torch.func.vmap(loss)
        with torch.no_grad():
            batch_loss = loss(x, a, y)
        return batch_loss, grads(x, a, y).detach()
