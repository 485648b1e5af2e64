"""Link volume: the bytes one rank puts on its busiest link in one collective, under the ring
algorithms the performance model prices (simulators/collectives.py; Thakur, Rabenseifner, Gropp 2005).

p ranks, n the bytes each rank hands in (the CommLog's `sent`):
    all_reduce      2(p-1)/p n      reduce-scatter, then all-gather, of n/p chunks
    reduce_scatter  (p-1)/p n
    all_gather      (p-1) n         (n: one rank's block)
    all_to_all      (p-1)/p n       pairwise exchange
    broadcast       n               pipelined chain
and 0 for a single rank. This is the n beta term of each formula in collectives.py: the volume the
papers compare, where `sent` is what a rank hands in. Every function takes numpy arrays for p and n.
"""

from __future__ import annotations

import numpy as np
from thinwire.algorithms.comm import ThinwireError

LINK_VOLUME = {
    "all_reduce": lambda p, n: 2 * (p - 1) / p * n,
    "reduce_scatter": lambda p, n: (p - 1) / p * n,
    "all_gather": lambda p, n: (p - 1) * n,
    "all_to_all": lambda p, n: (p - 1) / p * n,
    "broadcast": lambda p, n: n,
}


def link_volume(op: str, p, n):
    """Bytes on the busiest link for `op` over p ranks, n bytes handed in per rank; 0 for one rank."""
    if op not in LINK_VOLUME:
        raise ThinwireError(f"no link volume for collective {op!r}; known: {', '.join(LINK_VOLUME)}")
    p = np.asarray(p, dtype=float)
    return np.where(p > 1, LINK_VOLUME[op](np.maximum(p, 1), np.asarray(n, dtype=float)), 0.0)

