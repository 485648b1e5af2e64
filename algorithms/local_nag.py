"""What the CSER family shares: the official code's local NAG step, its config, and block model averaging.

Every method of the CSER code (../shared/papers/cser.md) takes a local Nesterov step on each worker with
a momentum buffer that is never synchronised; the local optimizer is MXNet's `nag_mom_update`:
    m <- momentum * m + g + wd * x
    x <- x - lr * (momentum * m + g)
CSER, CSER-PL and CSEA then differ only in when, and at which GRBS ratio, the workers replace the
chosen block of their local models by its average over workers (`BlockModelAveraging`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from thinwire.algorithms import grbs
from thinwire.algorithms.comm import Communicator
from thinwire.algorithms.registry import Layout, MethodBase, Oracle, check_step


def nag_step(x: Any, m: Any, g: Any, lr: float, momentum: float, weight_decay: float) -> tuple[Any, Any]:
    """One MXNet NAG step: (new x, new momentum buffer)."""
    m = momentum * m + g + weight_decay * x if weight_decay else momentum * m + g
    return x - lr * (momentum * m + g), m


@dataclasses.dataclass(frozen=True)
class LocalNAGConfig:
    """Optimizer settings of the paper's scripts (CIFAR-100: NAG 0.9, wd 5e-4; lr swept 0.05..1.0)."""

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0  # of the shared block stream: every worker must use the same

    def __post_init__(self) -> None:
        check_step(self.lr, self.momentum, self.weight_decay)


@dataclasses.dataclass(frozen=True)
class BlockConfig(LocalNAGConfig):
    """Local NAG that synchronises shared GRBS blocks at one ratio R (methods redeclare R's default)."""

    R: int = 32  # GRBS ratio
    split: str = "layer"  # how R splits into GRBS (layer, in, out): layer | in | out | LxIxO

    def __post_init__(self) -> None:
        super().__post_init__()
        grbs.parse_split(self.R, self.split, "R")

    def sparsifier(self, layout: Layout) -> grbs.BlockSparsifier:
        return grbs.BlockSparsifier(layout, grbs.parse_split(self.R, self.split, "R"), self.seed, "R")


@dataclasses.dataclass(frozen=True)
class PeriodicBlockConfig(BlockConfig):
    """BlockConfig for methods that synchronise once every H local steps."""

    H: int = 4  # local steps per period

    def __post_init__(self) -> None:
        super().__post_init__()
        check_period(self.H)


def check_period(H: int) -> None:
    if H < 1:
        raise ValueError(f"H must be an integer >= 1, got {H}")


class SharedBlocks(MethodBase):
    """A method with one shared GRBS block sparsifier, built from its BlockConfig."""

    def __init__(self, config: BlockConfig, layout: Layout) -> None:
        super().__init__(config, layout)
        self.sparsifier = config.sparsifier(layout)


def send_error_block(x: Any, error: Any, idx: Any, comm: Communicator, sign: float) -> tuple[Any, Any]:
    """Error feedback on a shared block B: x[B] <- x[B] + sign * mean_j e_j[B] and e[B] <- 0, by one
    all-reduce of the block (nothing sent, nothing changed, when B is empty)."""
    mean = grbs.average(error, idx, comm)
    if mean is None:
        return x, error
    return grbs.scatter(x, idx, grbs.gather(x, idx) + sign * mean), grbs.scatter(error, idx, 0 * mean)


class BlockModelAveraging(MethodBase):
    """Local NAG steps; at the steps `sparsifier_at` names, x_i[B] <- mean_j x_j[B] on the shared block B.

    Subclasses define `sparsifier_at(step)`: the GRBS that picks this step's block, or None (a purely
    local step: nothing sent)."""

    def sparsifier_at(self, step: int) -> grbs.BlockSparsifier | None:
        raise NotImplementedError

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        return {"momentum": comm.xp.zeros_like(x), "step": 0}

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle, comm: Communicator):
        c, t = self.config, state["step"]
        loss, g = oracle(x)
        x, m = nag_step(x, state["momentum"], g, c.lr, c.momentum, c.weight_decay)
        sparsifier = self.sparsifier_at(t)
        if sparsifier is not None:
            idx = sparsifier.indices(t)
            mean = grbs.average(x, idx, comm)
            if mean is not None:
                x = grbs.scatter(x, idx, mean)
        return x, {"momentum": m, "step": t + 1}, loss

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        sparsifier = self.sparsifier_at(step)
        count = sparsifier.count(step) if sparsifier is not None else 0
        return count * value_bits / self.n_params
