"""Alpha-beta cost of each collective on a two-tier cluster, and bus bandwidth as nccl-tests defines it.

p ranks, n the bytes each rank hands to the collective (the CommLog's `sent`), alpha a link's latency
(s), beta its seconds per byte. One tier (all ranks inside one node, or one rank per node):

    all_reduce      ring   2(p-1) alpha + 2(p-1)/p n beta          Thakur, Rabenseifner, Gropp 2005
                    tree   2 ceil(log2 p) alpha + 2 n beta         double binary tree, pipelined, as NCCL
                                                                   (Sanders, Speck, Traeff 2009): each tree
                                                                   carries n/2 up (reduce) and down (bcast)
    reduce_scatter  ring   (p-1) alpha + (p-1)/p n beta            (n: the whole input, 1/p kept)
    all_gather      ring   (p-1) alpha + (p-1) n beta              (n: one rank's block)
    all_to_all      pairwise exchange   (p-1) alpha + (p-1)/p n beta
    broadcast       ring   (p-1) alpha + n beta                    pipelined chain, as NCCL
                    tree   ceil(log2 p) (alpha + n beta)           binomial tree

A group of p ranks that spans nodes (p > g, on a cluster of `nodes` nodes of g GPUs; inter bandwidth is
the node's, shared by its GPUs) has k of its ranks on each node it touches: k = 1 when p <= nodes (one
rank per node: SDP4Bit's inter-node level, Megatron's data-parallel groups across tensor-parallel
ranks), else k = g (whole nodes, packed: the whole world). The g / k groups of a node run at once, so
each gets k / g of the node's link (inter tier e' = bandwidth k / g):
  flat         the one-tier formula at the slower tier (smaller bandwidth, larger latency; normally
               e'): a ring (or NCCL's channels, one per NIC) crosses each node boundary once per step
               and every step waits for its slowest hop; all_to_all instead:
               (p-1) alpha_e + max(g (p-k)/p n beta_e, (k-1)/p n beta_i), since all g ranks of a node
               push their (p-k)/p n off-node through the node's link (with k = g: as if packed).
  hierarchical (cluster `hierarchical: true`, p a multiple of k; as Horovod's hierarchical all-reduce,
               Jia et al. 2018, "Highly Scalable Deep Learning Training System with Mixed-Precision"):
    all_reduce      RS_i(k, n) + AR_e'(p/k, n) + AG_i(k, n/k)  the k concurrent inter-node all-reduces
                                                              of n/k share the group's link share:
                                                              together one all-reduce of n over p/k nodes
    reduce_scatter  RS_i(k, n) + RS_e'(p/k, n)
A tier's `efficiency` (default 1) is the share of its line rate a collective achieves (NCCL's protocol
overhead, ~20% on NVLink per NCCL's maintainers); beta is 8 / (bandwidth x efficiency).
The algorithm (ring, tree, or auto: the cheaper of the two per call, as NCCL's tuner picks) is the
cluster's `algorithm`; it applies to all_reduce (and its inter-node stage) and broadcast; the other
collectives have one algorithm here. A variable-size all-gather is priced in perfmodel.py.

Bus bandwidth (nccl-tests doc/PERFORMANCE.md): busbw = S/t x factor, S the operation's size as
nccl-tests counts it (the whole array; for all_gather p blocks): all_reduce 2(p-1)/p, reduce_scatter,
all_gather, all_to_all (p-1)/p, broadcast and reduce 1. With no latency every ring formula above has
busbw equal to the link rate; the tree all-reduce (p-1)/p of it.

Every function takes numpy arrays (or scalars) for p and n, so a whole CommLog is priced at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from thinwire.algorithms.comm import ThinwireError

ALGORITHMS = ("ring", "tree", "auto")


@dataclass(frozen=True)
class Tier:
    bandwidth_gbps: float
    latency_us: float
    efficiency: float = 1.0  # achieved / line rate

    @property
    def alpha(self) -> float:
        return self.latency_us * 1e-6

    @property
    def beta(self) -> float:
        return 8 / (self.bandwidth_gbps * self.efficiency * 1e9)


class Network(Protocol):
    """What pricing needs of a cluster (perfmodel.Cluster is one)."""

    nodes: int
    gpus_per_node: int
    intra: Tier
    inter: Tier
    algorithm: str
    hierarchical: bool


def _log2(p):
    return np.ceil(np.log2(np.maximum(p, 1)))


def ring_all_reduce(p, n, t: Tier):
    return 2 * (p - 1) * t.alpha + 2 * (p - 1) / p * n * t.beta


def tree_all_reduce(p, n, t: Tier):
    return 2 * _log2(p) * t.alpha + 2 * n * t.beta


def reduce_scatter(p, n, t: Tier):
    return (p - 1) * t.alpha + (p - 1) / p * n * t.beta


def all_gather(p, n, t: Tier):
    return (p - 1) * (t.alpha + n * t.beta)


def all_to_all(p, n, t: Tier):
    return (p - 1) * t.alpha + (p - 1) / p * n * t.beta


def ring_broadcast(p, n, t: Tier):
    return (p - 1) * t.alpha + n * t.beta


def tree_broadcast(p, n, t: Tier):
    return _log2(p) * (t.alpha + n * t.beta)


def _pick(ring, tree, algorithm: str):
    def cost(p, n, t: Tier):
        if algorithm == "ring":
            return ring(p, n, t)
        if algorithm == "tree":
            return tree(p, n, t)
        return np.minimum(ring(p, n, t), tree(p, n, t))
    return cost


def one_tier(op: str, p, n, tier: Tier, algorithm: str = "ring"):
    """Seconds for `op` over p ranks on one tier; 0 for a single rank."""
    if algorithm not in ALGORITHMS:
        raise ThinwireError(f"collective algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    formulas = {"all_reduce": _pick(ring_all_reduce, tree_all_reduce, algorithm),
                "broadcast": _pick(ring_broadcast, tree_broadcast, algorithm),
                "reduce_scatter": reduce_scatter, "all_gather": all_gather, "all_to_all": all_to_all}
    if op not in formulas:
        raise ThinwireError(f"the performance model cannot price collective {op!r}")
    p = np.asarray(p, dtype=float)
    return np.where(p > 1, formulas[op](np.maximum(p, 1), np.asarray(n, dtype=float), tier), 0.0)


def on_cluster(op: str, p, n, net: Network):
    """Seconds for `op` over groups of p ranks on a two-tier cluster (flat or hierarchical; groups that
    span nodes spread evenly over them; see above)."""
    p, n = np.asarray(p, dtype=float), np.asarray(n, dtype=float)
    g = net.gpus_per_node
    inside = one_tier(op, p, n, net.intra, net.algorithm)
    k = np.where(p <= net.nodes, 1.0, g)  # the group's ranks per node, when it spans nodes
    # The node link is shared by its g / k concurrent groups.
    share = net.inter.bandwidth_gbps * k / g
    inter = Tier(share, net.inter.latency_us, net.inter.efficiency)
    # One GPU per node: there are no intra-node hops to wait for.
    intra_slower = net.intra.bandwidth_gbps * net.intra.efficiency < share * net.inter.efficiency
    slowest = Tier(np.where((g == 1) | ~intra_slower, share, net.intra.bandwidth_gbps),
                   max(net.intra.latency_us, net.inter.latency_us) if g > 1 else net.inter.latency_us,
                   np.where((g == 1) | ~intra_slower, net.inter.efficiency, net.intra.efficiency))
    flat = one_tier(op, p, n, slowest, net.algorithm)
    if op == "all_to_all":
        off_node = g * np.maximum(p - k, 0) / np.maximum(p, 1) * n * net.inter.beta
        on_node = (k - 1) / np.maximum(p, 1) * n * net.intra.beta
        flat = (p - 1) * net.inter.alpha + np.maximum(off_node, on_node)
    spans = p > g
    if net.hierarchical and op in ("all_reduce", "reduce_scatter") and g > 1:
        m = p / k
        intra = one_tier("reduce_scatter", k, n, net.intra)
        if op == "all_reduce":
            across = one_tier("all_reduce", m, n, inter, net.algorithm)
            intra = intra + one_tier("all_gather", k, n / k, net.intra)
        else:
            across = one_tier("reduce_scatter", m, n, inter)
        flat = np.where(np.isclose(p % k, 0), intra + across, flat)
    return np.where(spans, flat, inside)


BUSBW_FACTOR = {
    "all_reduce": lambda p: 2 * (p - 1) / p,
    "reduce_scatter": lambda p: (p - 1) / p,
    "all_gather": lambda p: (p - 1) / p,
    "all_to_all": lambda p: (p - 1) / p,
    "broadcast": lambda p: 1.0,
    "reduce": lambda p: 1.0,
}


def nccl_tests_size(op: str, p: int, n: float) -> float:
    """The size S nccl-tests reports for an op where each rank hands in n bytes: the whole array,
    which for all_gather is the p gathered blocks and for the others the per-rank buffer."""
    return p * n if op == "all_gather" else n


def bus_bandwidth(op: str, p: int, size_bytes: float, seconds: float) -> float:
    """nccl-tests' busbw in bytes/s: algbw = S/t times the op's correction factor."""
    if op not in BUSBW_FACTOR:
        raise ThinwireError(f"no bus bandwidth definition for {op!r}")
    return size_bytes / seconds * BUSBW_FACTOR[op](p)
