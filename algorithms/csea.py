"""CSEA: block model averaging every step (../shared/papers/cser.md; gluoncv/trainer/ersgd_trainer_v2.py).

    each worker: local NAG step (momentum never synchronised)
    every step: x_i[B] <- mean_j x_j[B] on the shared GRBS block at ratio R
Bits per parameter at step t: value_bits * |B_t| / d; in expectation value_bits / R. Default: the
ImageNet script's overall-32 setting (layer 32).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from thinwire.algorithms import grbs
from thinwire.algorithms.local_nag import BlockConfig, BlockModelAveraging, SharedBlocks
from thinwire.algorithms.registry import register


@register
class CSEA(SharedBlocks, BlockModelAveraging):
    name = "csea"
    tiny: ClassVar[dict[str, Any]] = {"lr": 0.2, "R": 5, "split": "out"}

    @dataclasses.dataclass(frozen=True)
    class Config(BlockConfig):
        R: int = 32  # GRBS ratio

    def sparsifier_at(self, step: int) -> grbs.BlockSparsifier:
        return self.sparsifier
