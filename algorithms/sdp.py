"""Sharded data parallelism (Megatron distributed optimizer / ZeRO style) with SDP4Bit's 4-bit
communication and its baselines (Jia et al., NeurIPS 2024; ../shared/papers/sdp4bit.md).

Each of P = N M ranks (N per node, `ranks_per_node`; M nodes) owns 1/P of the fp32 master weights
w_main and of the AdamW moments. The flat parameter vector (d values) is zero-padded to D, a multiple of
P (of 32 P with the Hadamard transform), and rank r owns shard r: values [r c, (r + 1) c), c = D / P.
Per step:
    g = oracle(w_model)                                   every rank, the full gradient
    g_main[r] = (sum over ranks of g)[shard r] / P        the gradient path, `grads`
    w_main[r] = AdamW(g_main[r], w_main[r])               (or SGD: the paper's counterexample, P8)
    w_model   = all-gather of the shards                  the weight path, `weights`
Gradient paths (`grads`):
- full: one reduce-scatter in the value dtype (the uncompressed baseline);
- tlq: two-level: an intra-node all-to-all of Q_{8,128}(g) (chunk l to local rank l; chunk l holds the
  shards of the ranks with local rank l on every node), the dequantized sum, then an inter-node
  all-to-all of Q_{4,128} of it among the ranks with the same local rank; the sum is this rank's shard;
- tlq-hs: tlq on H(g), H the block Hadamard transform (32); H^-1 = H after the final sum (H is linear);
- ulq: tlq with 4 bits at both levels.
A level with one rank (N = 1 or M = 1) sends nothing and quantizes nothing.
Weight paths (`weights`): full: all-gather of the shard in the value dtype; qw: of Q_{4,2048}(w_main)
(ZeRO++'s qwZ at 4 bits); qwd: of Q_{4,2048}(w_main - w_model) added to w_model (the implicit error
feedback: the residual stays in w_main - w_model). `master_weights: false` makes the owner keep the
gathered (quantized) weights as its w_main: the iteration w = Q(w - lr g) of the paper's Sec. 4.1.
Stochastic rounding draws uniforms from (seed, rank, step, level), the same in every mode.
Not reproduced: gradient clipping (clip 1.0 in the paper), bf16 weights on the wire (the baseline
all-gathers in the value dtype, so its weight bits are 32 in an fp32 run, 16 in the paper).

    thinwire sim sdp --workload text-gpt --workers 4 --param ranks_per_node=2 --param weights=qwd --param grads=tlq-hs
    torchrun --standalone --nproc_per_node 4 -m thinwire run sdp --workload text-gpt --param ranks_per_node=2
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

from thinwire.algorithms import wire
from thinwire.algorithms.adam import bias_corrections, check_adam, direction, moments
from thinwire.algorithms.comm import Communicator, ThinwireError
from thinwire.algorithms.compress import worker_uniforms
from thinwire.algorithms.registry import MethodBase, Oracle, register
from thinwire.algorithms.sdp_quant import check_bits, check_hadamard_block, hadamard, symmetric

WEIGHTS = ("full", "qw", "qwd")
GRADS = ("full", "tlq", "tlq-hs", "ulq")


@register
class ShardedDP(MethodBase):
    name = "sdp"
    # 50 parameters on 3 ranks: qWD and TLq-HS with groups small enough to have several per shard.
    tiny: ClassVar[dict[str, Any]] = {"lr": 0.05, "weights": "qwd", "grads": "tlq-hs", "weight_group": 16,
                                      "grad_group": 32}

    @dataclasses.dataclass(frozen=True)
    class Config:
        lr: float = 6e-4  # the paper's 125M setting; AdamW (0.9, 0.95), weight decay 0.1
        beta1: float = 0.9
        beta2: float = 0.95
        eps: float = 1e-8
        weight_decay: float = 0.1  # decoupled
        weights: str = "full"  # full | qw | qwd
        grads: str = "full"  # full | tlq | tlq-hs | ulq
        ranks_per_node: int = 0  # N; 0: every rank on one node
        weight_bits: int = 4
        weight_group: int = 2048
        intra_bits: int = 8  # tlq, tlq-hs; ulq sends inter_bits at both levels
        inter_bits: int = 4
        grad_group: int = 128
        hadamard_block: int = 32
        rounding: str = "stochastic"  # stochastic (the code's) | nearest (the paper's round())
        optimizer: str = "adamw"  # adamw | sgd (plain SGD: the counterexample of Sec. 4.1)
        master_weights: bool = True  # false: the owner keeps the gathered weights (see the docstring)
        seed: int = 0  # of the stochastic rounding

        def __post_init__(self) -> None:
            check_adam(self.lr, self.beta1, self.beta2, self.eps, self.weight_decay)
            for name, allowed in (("weights", WEIGHTS), ("grads", GRADS), ("rounding", ("stochastic", "nearest")),
                                  ("optimizer", ("adamw", "sgd"))):
                if getattr(self, name) not in allowed:
                    raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
            for name in ("weight_bits", "intra_bits", "inter_bits"):
                check_bits(getattr(self, name), name)
            for name in ("weight_group", "grad_group"):
                if getattr(self, name) < 1:
                    raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
            if self.ranks_per_node < 0:
                raise ValueError(f"ranks_per_node must be >= 0 (0: one node), got {self.ranks_per_node}")
            check_hadamard_block(self.hadamard_block)
            if self.grads == "tlq-hs" and self.grad_group % self.hadamard_block:
                raise ValueError(f"grad_group {self.grad_group} must be a multiple of hadamard_block "
                                 f"{self.hadamard_block}")

        def check_world(self, world_size: int) -> None:
            """The ranks fill whole nodes; checked when a run is planned (thinwire.config.plan) and at start."""
            if world_size % (self.ranks_per_node or world_size):
                raise ValueError(f"world size {world_size} is not divisible into nodes of "
                                 f"ranks_per_node={self.ranks_per_node}")

    def __init__(self, config: Config, layout: Any) -> None:
        super().__init__(config, layout)
        c = config
        self.weight_q = symmetric(c.weight_bits, c.weight_group)
        self.intra_q = symmetric(c.inter_bits if c.grads == "ulq" else c.intra_bits, c.grad_group)
        self.inter_q = symmetric(c.inter_bits, c.grad_group)
        self.topology: tuple[int, int] | None = None  # (N, M), set by init_state

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        p = comm.world_size
        n = self.config.ranks_per_node or p
        if p % n:
            raise ThinwireError(f"sdp: world size {p} is not divisible into nodes of ranks_per_node={n}")
        m = p // n
        self.topology = (n, m)
        align = p * (self.config.hadamard_block if self.config.grads == "tlq-hs" else 1)
        self.padded = math.ceil(self.n_params / align) * align
        self.shard = self.padded // p
        if self.config.grads != "full":
            self.intra = comm.split([[j * n + i for i in range(n)] for j in range(m)]) if n > 1 else None
            self.inter = comm.split([[j * n + i for j in range(m)] for i in range(n)]) if m > 1 else None
        main = self._own(wire.pad_last(x, self.padded), comm)
        zeros = comm.xp.zeros_like(main)
        return {"main": main, "m": zeros, "v": zeros, "t": 0}

    def _own(self, full: Any, comm: Communicator) -> Any:
        """This process's shards of full (lead..., D): shard r for each worker r it holds."""
        xp, lead = comm.xp, tuple(full.shape[:-1])
        rows = xp.reshape(full, (len(comm.workers), comm.world_size, self.shard))
        mine = xp.stack([rows[i, w, :] for i, w in enumerate(comm.workers)])
        return xp.reshape(mine, lead + (self.shard,))

    def _uniforms(self, like: Any, step: int, level: int, comm: Communicator) -> Any:
        """Uniforms in [0, 1) shaped like `like`, per worker from (seed, worker, step, level); None when
        rounding to nearest."""
        if self.config.rounding == "nearest":
            return None
        return worker_uniforms(like, comm, self.config.seed, step, level)

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle, comm: Communicator):
        c, t = self.config, state["t"]
        loss, grad = oracle(x)
        g = self._gradient_shard(wire.pad_last(grad, self.padded), t, comm) / comm.world_size
        main, new = state["main"], {"t": t + 1, "m": state["m"], "v": state["v"]}
        if c.optimizer == "sgd":
            main = main - c.lr * g
        else:
            new["m"], new["v"] = moments(state["m"], state["v"], g, c.beta1, c.beta2)
            update = direction(new["m"], new["v"], c.eps, *bias_corrections(c.beta1, c.beta2, t + 1))
            main = main - c.lr * (update + c.weight_decay * main)
        x, new["main"] = self._gather_weights(main, x, t, comm)
        return x, new, loss

    def _gradient_shard(self, g: Any, t: int, comm: Communicator) -> Any:
        """(lead..., D) local gradients -> (lead..., c): the sum over all ranks of this rank's shard."""
        c = self.config
        if c.grads == "full":
            return comm.reduce_scatter(g)
        xp, lead, (n, m) = comm.xp, tuple(g.shape[:-1]), self.topology
        k = len(lead)
        if c.grads == "tlq-hs":
            g = hadamard(g, c.hadamard_block)
        # (M, N, c) -> (N, M c): row l holds the shards j N + l of every node j, for local rank l.
        rows = xp.reshape(g, lead + (m, n, self.shard))
        rows = xp.reshape(xp.permute_dims(rows, tuple(range(k)) + (k + 1, k, k + 2)), lead + (n, m * self.shard))
        if n > 1:
            payload = self.intra_q.compress(rows, self._uniforms(rows, t, 0, comm))
            received = comm.all_to_all(payload, group=self.intra)
            node_sum = xp.sum(self.intra_q.decompress(received, m * self.shard, g.dtype), axis=-2)
        else:
            node_sum = rows[..., 0, :]
        chunks = xp.reshape(node_sum, lead + (m, self.shard))
        if m > 1:
            payload = self.inter_q.compress(chunks, self._uniforms(chunks, t, 1, comm))
            received = comm.all_to_all(payload, group=self.inter)
            total = xp.sum(self.inter_q.decompress(received, self.shard, g.dtype), axis=-2)
        else:
            total = chunks[..., 0, :]
        return hadamard(total, c.hadamard_block) if c.grads == "tlq-hs" else total

    def _gather_weights(self, main: Any, x: Any, t: int, comm: Communicator) -> tuple[Any, Any]:
        """The new model weights (lead..., d) from every rank's updated shard, and the new w_main."""
        c, xp, lead = self.config, comm.xp, tuple(x.shape[:-1])
        if c.weights == "full":
            gathered = comm.all_gather(main, sharded=True)
            return xp.reshape(gathered, lead + (self.padded,))[..., :self.n_params], main
        sent = main if c.weights == "qw" else main - self._own(wire.pad_last(x, self.padded), comm)
        payload = self.weight_q.compress(sent, self._uniforms(sent, t, 2, comm))
        gathered = self.weight_q.decompress(comm.all_gather(payload, sharded=True), self.shard, x.dtype)
        values = xp.reshape(gathered, lead + (self.padded,))[..., :self.n_params]
        model = values if c.weights == "qw" else x + values
        return model, (main if c.master_weights else self._own(wire.pad_last(model, self.padded), comm))

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        if self.topology is None:
            raise RuntimeError("bits_per_parameter needs the topology: call init_state first")
        c, (n, m) = self.config, self.topology
        if c.grads == "full":
            grad_bytes = self.padded * value_bits / 8
        else:
            grad_bytes = ((n * self.intra_q.payload_bytes(m * self.shard) if n > 1 else 0)
                          + (m * self.inter_q.payload_bytes(self.shard) if m > 1 else 0))
        weight_bytes = (self.shard * value_bits / 8 if c.weights == "full"
                        else self.weight_q.payload_bytes(self.shard))
        return (grad_bytes + weight_bytes) * 8 / self.n_params
