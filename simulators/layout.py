"""How a paper's run lays a GPT over the GPUs (Megatron-LM's arguments), and what that costs besides the
data-parallel collectives the method's code logged.

A `Layout` is data, read from a model setup: tensor-parallel size t, pipeline-parallel size pp, micro-batch
b, global batch B (sequences per step; 0: one micro-batch per data-parallel rank, the SDP4Bit speed
scripts' "accumulation step 1"), sequence length s, layers l, hidden size h, vocabulary V, and the bits
per value the paper's uncompressed collectives send (`dense_bits`, e.g. Megatron's distributed optimizer
all-gathers bf16 weights: all_gather 16). On a cluster of W GPUs, g per node:

    data-parallel ranks    d = W / (t pp); accumulation m = B / (b d); ranks ordered tensor-parallel
                           first, then data-parallel (Megatron's default), so a data-parallel group has
                           k = max(1, g / t) ranks per node, and every GPU runs its own group's collective
                           on its 1/(t pp) of the parameters, the node's link shared by all g GPUs
    parameters             12 l h^2 (1 + 13/(12 h) + (V' + s)/(12 l h))          Narayanan et al. 2021
    model FLOPs per step   72 B s l h^2 (1 + s/(6 h) + V'/(12 l h)): the formula the SDP4Bit fork's
                           Megatron logs TFLOP/s with (megatron/training.py num_floating_point_operations)
    hardware FLOPs         + 4 B s^2 l h: selective recomputation re-runs the attention scores and
                           their product with the values (Korthikanti et al. 2022)
    compute seconds        hardware FLOPs / W / the cluster's sustained rate, times 1 + (pp-1)/m: the
                           1F1B schedule's pipeline bubble (Narayanan et al. 2021, Sec. 2.2)
    tensor parallel        per micro-batch and layer 4 all-reduces (2 forward, 2 backward; no sequence
                           parallelism in the scripts) of b s h activation_bytes over t GPUs of a node,
                           on the step's critical path (the scripts pass
                           --no-async-tensor-model-parallel-allreduce)
    pipeline parallel      2 (m + pp - 2) sends on the 1F1B critical path (pp > 1), each b s h
                           activation_bytes / t (Megatron scatters them over the tensor-parallel ranks),
                           between nodes when a stage fills whole nodes, all g GPUs of a node sending at once
V' is V padded to a multiple of 128 t, as Megatron pads it. Nothing here overlaps the data-parallel
collectives with compute: the speed scripts set neither --overlap-grad-reduce nor --overlap-param-gather.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from thinwire.algorithms.comm import ThinwireError
from thinwire.simulators.collectives import Network, Tier, on_cluster

LAYOUT_KEYS = {"tp", "pp", "micro_batch", "global_batch", "seq_len", "layers", "hidden", "vocab",
               "activation_bytes", "dense_bits"}


@dataclass(frozen=True)
class Layout:
    layers: int
    hidden: int
    tp: int = 1
    pp: int = 1
    micro_batch: int = 1
    global_batch: int = 0  # sequences per step; 0: one micro-batch per data-parallel rank
    seq_len: int = 2048
    vocab: int = 50257  # GPT-2 BPE
    activation_bytes: int = 2  # bf16
    dense_bits: dict[str, int] = field(default_factory=dict, hash=False)

    @classmethod
    def from_dict(cls, d: dict) -> Layout:
        unknown = sorted(set(d) - LAYOUT_KEYS)
        if unknown:
            raise ThinwireError(f"layout has unknown keys {unknown}")
        return cls(**d)

    def data_parallel(self, world: int) -> int:
        if world % (self.tp * self.pp):
            raise ThinwireError(f"{world} GPUs do not split into tensor parallel {self.tp} x pipeline {self.pp}")
        return world // (self.tp * self.pp)

    def sequences(self, world: int) -> int:
        return self.global_batch or self.micro_batch * self.data_parallel(world)

    def accumulation(self, world: int) -> int:
        """m: micro-batches per data-parallel rank and step."""
        return max(1, self.sequences(world) // (self.micro_batch * self.data_parallel(world)))

    @property
    def padded_vocab(self) -> int:
        multiple = 128 * self.tp
        return math.ceil(self.vocab / multiple) * multiple

    @property
    def params(self) -> float:
        l, h, s = self.layers, self.hidden, self.seq_len
        return 12 * l * h**2 * (1 + 13 / (12 * h) + (self.padded_vocab + s) / (12 * l * h))

    def model_flops(self, world: int) -> float:
        l, h, s = self.layers, self.hidden, self.seq_len
        return 72 * self.sequences(world) * s * l * h**2 * (1 + s / (6 * h) + self.padded_vocab / (12 * l * h))

    def hardware_flops(self, world: int) -> float:
        return self.model_flops(world) + 4 * self.sequences(world) * self.seq_len**2 * self.layers * self.hidden

    def bubble(self, world: int) -> float:
        """(pp - 1) / m: the 1F1B pipeline bubble over the ideal compute time."""
        return (self.pp - 1) / self.accumulation(world)

    def compute_seconds(self, world: int, tflops: float) -> float:
        return self.hardware_flops(world) / world / (tflops * 1e12) * (1 + self.bubble(world))

    def activation(self) -> float:
        """Bytes of one micro-batch's activations b s h."""
        return self.micro_batch * self.seq_len * self.hidden * self.activation_bytes

    def tensor_parallel_seconds(self, net: Network) -> float:
        if self.tp > net.gpus_per_node:
            raise ThinwireError(f"tensor parallel {self.tp} spans nodes of {net.gpus_per_node} GPUs")
        world = net.nodes * net.gpus_per_node
        calls = 4 * self.accumulation(world) * self.layers / self.pp
        return calls * float(on_cluster("all_reduce", self.tp, self.activation(), net))

    def pipeline_seconds(self, net: Network) -> float:
        if self.pp == 1:
            return 0.0
        g, world = net.gpus_per_node, net.nodes * net.gpus_per_node
        message = self.activation() / self.tp
        stage = world // self.pp
        if stage >= g:  # stages fill whole nodes: the boundary is a node link, shared by the node's g GPUs
            one = net.inter.alpha + g * message * net.inter.beta
        else:
            one = net.intra.alpha + message * net.intra.beta
        return 2 * (self.accumulation(world) + self.pp - 2) * one

    def data_parallel_view(self, cluster):
        """The cluster as one data-parallel group sees it: d ranks, k = max(1, g / t) per node, each node's
        link shared by its g GPUs (so k / g of it for this group's k ranks)."""
        g = cluster.gpus_per_node
        world = cluster.world_size
        d = self.data_parallel(world)
        k = max(1, g // self.tp)
        if d % k:
            raise ThinwireError(f"{d} data-parallel ranks do not fill nodes of {k}")
        inter = cluster.inter
        return replace(cluster, nodes=d // k, gpus_per_node=k,
                       inter=Tier(inter.bandwidth_gbps * k / g, inter.latency_us, inter.efficiency))
