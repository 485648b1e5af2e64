"""bf16 compression: PyTorch's bf16_compress_hook (torch.distributed.algorithms.ddp_comm_hooks.
default_hooks), the gradient all-reduced in bfloat16, 16 bits per parameter.

Per worker, each step, as the hook does to DDP's gradient bucket:
    w = bf16(g) / W          cast to bfloat16 (from float64 through float32, as torch's cast), then divided
                             by the world size in bfloat16 (computed in float32, rounded once)
    s = all-reduce(w)        summed in bfloat16 by the backend (op "bf16_sum": each partial sum rounded)
    x <- SGD with heavy-ball momentum (and weight decay) on s, cast back to the run's dtype, as torch.optim.SGD
No error feedback: what the rounding loses is lost, as in the hook. The payload is the bfloat16 words
themselves, uint16 on the wire (numpy has no bfloat16; algorithms/wire.py rounds to nearest even as
torch does), so every rank sends 2 bytes per parameter whatever the run's dtype.

On 2 ranks the sum is one rounded addition, bit for bit the same in the simulator, gloo and MPI and in DDP
with the hook (workloads/ddp_hooks.py). From 3 ranks on each backend adds in its own order and the sums
may differ in their last bit: the simulator adds in rank order, MPI (MPICH) did too on 3 ranks but not on 4,
gloo's ring did on neither (5-9% of near-tie words differed, tests/bf16_sum_script.py). Conformance is
therefore checked on 2 ranks only.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from thinwire.algorithms import wire
from thinwire.algorithms.comm import Communicator
from thinwire.algorithms.registry import MethodBase, Oracle, check_step, register

BF16_BITS = 16


@register
class BF16Compression(MethodBase):
    name = "bf16"
    tiny: ClassVar[dict[str, Any]] = {"lr": 0.5}

    @dataclasses.dataclass(frozen=True)
    class Config:
        lr: float = 0.1
        momentum: float = 0.9  # heavy-ball beta, on the aggregate (torch.optim.SGD's)
        weight_decay: float = 0.0

        def __post_init__(self) -> None:
            check_step(self.lr, self.momentum, self.weight_decay)

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        return {"momentum": comm.xp.zeros_like(x)}

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle, comm: Communicator):
        c = self.config
        loss, g = oracle(x)
        words = wire.bf16_divide(wire.to_bf16_words(g), comm.world_size)
        aggregate = wire.from_bf16_words(comm.all_reduce(words, op="bf16_sum"), x.dtype)
        if c.weight_decay:
            aggregate = aggregate + c.weight_decay * x
        m = c.momentum * state["momentum"] + aggregate
        return x - c.lr * m, {"momentum": m}, loss

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        return float(BF16_BITS)
