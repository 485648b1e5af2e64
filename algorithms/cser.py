"""CSER: communication-efficient SGD with error reset (Xie et al., NeurIPS 2020; ../shared/papers/cser.md),
as the official code runs it (gluoncv/trainer/ersgd2_trainer_v2.py, scripts exp_*CSER.sh).

    each worker: local NAG step on its own model x_i with its own momentum (never synchronised)
    compressor = C2 (ratio R2) at the last step of every period of H steps, else C1 (ratio R1)
    x_i[B] <- mean_j x_j[B] on the block B the shared GRBS stream picks (block values all-reduced)
In residual form (ersgd2_trainer_v1.py) x_i = xhat - e_i, with e_i the local updates not yet
synchronised: averaging block B resets e_i[B] to 0, hence "error reset"; C2 is the periodic reset.

Bits per parameter at step t: value_bits * |B_t| / d, with B_t drawn at ratio R2 or R1; in expectation
value_bits * ((H-1)/R1 + 1/R2) / H, e.g. 32 * (15/64 + 1/4) / 16 = 0.97 (about 1/33 of SGD's) for the
defaults. Defaults: the ImageNet script's (R1, R2, H) = (64, 4, 16) (there split 32x1x2 and 4x1x1);
the default split puts each ratio on the layer axis, which every layout allows; pass split1/split2 =
in, out or LxIxO for blocks inside tensors (the CIFAR scripts put R1 and R2 on "in").

    thinwire sim cser --workload logreg --wparam dim=50 --param R1=10 --param split1=out --param R2=2 \
        --param split2=out --param H=5
    torchrun --standalone --nproc_per_node 2 -m thinwire run cser --workload digits-mlp --param lr=0.05
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from thinwire.algorithms import grbs
from thinwire.algorithms.local_nag import BlockModelAveraging, LocalNAGConfig, check_period
from thinwire.algorithms.registry import Layout, is_period_end, register


@register
class CSER(BlockModelAveraging):
    name = "cser"
    tiny: ClassVar[dict[str, Any]] = {"lr": 0.2, "R1": 10, "split1": "2x1x5", "R2": 2, "split2": "out", "H": 4}

    @dataclasses.dataclass(frozen=True)
    class Config(LocalNAGConfig):
        R1: int = 64  # ratio of the per-step compressor C1
        R2: int = 4  # ratio of the reset compressor C2
        H: int = 16  # reset period (the scripts set H = R1 / R2)
        split1: str = "layer"  # how R1 splits into GRBS (layer, in, out): layer | in | out | LxIxO
        split2: str = "layer"

        def __post_init__(self) -> None:
            super().__post_init__()
            grbs.parse_split(self.R1, self.split1, "R1")
            grbs.parse_split(self.R2, self.split2, "R2")
            check_period(self.H)

    def __init__(self, config: Config, layout: Layout) -> None:
        super().__init__(config, layout)
        c = config
        self.c1 = grbs.BlockSparsifier(layout, grbs.parse_split(c.R1, c.split1, "R1"), c.seed, "R1")
        self.c2 = grbs.BlockSparsifier(layout, grbs.parse_split(c.R2, c.split2, "R2"), c.seed, "R2")

    def sparsifier_at(self, step: int) -> grbs.BlockSparsifier:
        return self.c2 if is_period_end(step, self.config.H) else self.c1
