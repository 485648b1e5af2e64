"""QSparse-local-SGD with the shared block sparsifier: the CSER paper's baseline (../shared/papers/cser.md;
gluoncv/trainer/qsparse_local_sgd_trainer_v1.py).

Each period of H steps starts from the common model xhat; per worker, with error e:
    H local NAG steps (local momentum, never synchronised) move x_i away from xhat
    at the period's last step:  e_i <- e_i + x_i - xhat ;  x_i <- xhat
        on the shared GRBS block B: x[B] <- x[B] + mean_j e_j[B] ;  e_i[B] <- 0 ;  xhat <- x
Bits per parameter at step t: value_bits * |B_t| / d at period ends, else 0; in expectation
value_bits / (R * H). Default: the ImageNet script's overall-32 setting (layer 4, H 8).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from thinwire.algorithms.comm import Communicator
from thinwire.algorithms.local_nag import PeriodicBlockConfig, SharedBlocks, nag_step, send_error_block
from thinwire.algorithms.registry import Oracle, is_period_end, register


@register
class QSparseLocalSGD(SharedBlocks):
    name = "qsparse-local-sgd"
    tiny: ClassVar[dict[str, Any]] = {"lr": 0.2, "R": 5, "split": "out", "H": 2}

    @dataclasses.dataclass(frozen=True)
    class Config(PeriodicBlockConfig):
        R: int = 4  # GRBS ratio of the periodic error synchronisation
        H: int = 8  # local steps per period

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        zeros = comm.xp.zeros_like(x)
        return {"error": zeros, "momentum": zeros, "anchor": x, "step": 0}

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle, comm: Communicator):
        c, t = self.config, state["step"]
        loss, g = oracle(x)
        x, m = nag_step(x, state["momentum"], g, c.lr, c.momentum, c.weight_decay)
        error, anchor = state["error"], state["anchor"]
        if is_period_end(t, c.H):
            error, x = error + x - anchor, anchor
            x, error = send_error_block(x, error, self.sparsifier.indices(t), comm, sign=1)
            anchor = x
        return x, {"error": error, "momentum": m, "anchor": anchor, "step": t + 1}, loss

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        if not is_period_end(step, self.config.H):
            return 0.0
        return self.sparsifier.count(step) * value_bits / self.n_params
