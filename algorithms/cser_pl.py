"""CSER-PL: partial local SGD (../shared/papers/cser.md; gluoncv/trainer/partial_local_sgd_trainer_v1.py).

    each worker: local NAG step (momentum never synchronised)
    at the last step of every period of H steps: x_i[B] <- mean_j x_j[B] on the shared GRBS block at ratio R
Nothing is sent between. Bits per parameter at step t: value_bits * |B_t| / d at period ends, else 0;
in expectation value_bits / (R * H). Defaults: the ImageNet script's overall-32 setting (layer 8, H 4).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from thinwire.algorithms import grbs
from thinwire.algorithms.local_nag import BlockModelAveraging, PeriodicBlockConfig, SharedBlocks
from thinwire.algorithms.registry import is_period_end, register


@register
class CSERPL(SharedBlocks, BlockModelAveraging):
    name = "cser-pl"
    tiny: ClassVar[dict[str, Any]] = {"lr": 0.2, "R": 5, "split": "out", "H": 2}

    @dataclasses.dataclass(frozen=True)
    class Config(PeriodicBlockConfig):
        R: int = 8  # GRBS ratio of the periodic block averaging
        H: int = 4  # local steps per period

    def sparsifier_at(self, step: int) -> grbs.BlockSparsifier | None:
        return self.sparsifier if is_period_end(step, self.config.H) else None
