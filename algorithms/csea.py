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
from thinwire.algorithms.local_nag import BlockModelAveraging, LocalNAGConfig
from thinwire.algorithms.registry import Layout, register


@register
class CSEA(BlockModelAveraging):
    name = "csea"
    tiny: ClassVar[dict[str, Any]] = {"lr": 0.2, "R": 5, "split": "out"}

    @dataclasses.dataclass(frozen=True)
    class Config(LocalNAGConfig):
        R: int = 32  # GRBS ratio
        split: str = "layer"  # layer | in | out | LxIxO

        def __post_init__(self) -> None:
            super().__post_init__()
            grbs.parse_split(self.R, self.split, "R")

    def __init__(self, config: Config, layout: Layout) -> None:
        super().__init__(config, layout)
        self.sparsifier = grbs.BlockSparsifier(layout, grbs.parse_split(config.R, config.split, "R"),
                                               config.seed, "R")

    def sparsifier_at(self, step: int) -> grbs.BlockSparsifier:
        return self.sparsifier
