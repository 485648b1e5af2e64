"""Error-feedback SGD with top-k sparsification (Stich et al. 2018, "Sparsified SGD with memory";
Karimireddy et al. 2019, "Error feedback fixes SignSGD").

Per worker, with error e (the part of past updates not yet sent):
    p = e + lr * g            (g: local gradient, or local momentum when momentum > 0)
    send the k = round(density * d) largest |p| as int32 indices + values, packed in one buffer
    e = p - sent
    x = x - (sum over workers of the sent sparse vectors) / W
The payload is all-gathered (every worker's k differ in position), so each rank sends
k * (32 + value bits) bits per step, i.e. density * (32 + value bits) bits per parameter.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from thinwire.algorithms import inplace, wire
from thinwire.algorithms.comm import Communicator
from thinwire.algorithms.compress import ErrorFeedback, TopK
from thinwire.algorithms.registry import MethodBase, Oracle, check_density, check_step, register


@register
class TopKErrorFeedback(MethodBase):
    name = "topk-ef"
    tiny: ClassVar[dict[str, Any]] = {"lr": 0.5, "density": 0.1}

    @dataclasses.dataclass(frozen=True)
    class Config:
        lr: float = 0.1
        density: float = 0.01  # fraction of coordinates sent per step, k / d
        momentum: float = 0.0  # local heavy-ball momentum applied before error feedback

        def __post_init__(self) -> None:
            check_step(self.lr, self.momentum)
            check_density(self.density)

    def __init__(self, config: Config, layout) -> None:
        super().__init__(config, layout)
        self.compressor, self.memory = TopK(config.density), ErrorFeedback()

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        zeros = comm.xp.zeros_like(x)
        return {"error": zeros, "momentum": zeros}

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle, comm: Communicator):
        c = self.config
        d = x.shape[-1]
        loss, grad = oracle(x)
        if c.momentum:
            m = c.momentum * state["momentum"]
            m += grad
        else:
            m = grad
        # compress_with_memory(TopK, ErrorFeedback) step by step, the same operations into fresh arrays
        # (ErrorFeedback's p - C^-1(C(p)) is p with the sent entries v replaced by v - v).
        p = c.lr * m
        p += state["error"]  # p = e + lr m
        del grad  # its last use: the step's peak need not hold it next to the new model
        m = m if c.momentum else state["momentum"]
        idx = inplace.by_row_blocks(self.compressor.select, p)
        vals = wire.take_last(p, idx)
        payload = wire.pack([idx, vals])
        error = p
        inplace.put_last(error, idx, vals - vals)
        gathered = comm.all_gather(payload)
        # Every worker decodes the same gathered payloads: the sum is one row, divided once.
        update = inplace.shared_row(self.compressor.decompress_sum(gathered, d, x.dtype)) / gathered.shape[-2]
        return inplace.minus_update(x, update), {"error": error, "momentum": m}, loss

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        return self.compressor.payload_bytes(self.n_params, value_bits // 8) * 8 / self.n_params
