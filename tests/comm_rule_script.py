"""Make every kind of collective call through one communicator, under a byte-counting rule the test
replaced, and save what the CommLog recorded; tests/test_comm_rule.py checks the records against the
rule. Launched as `torchrun --nproc_per_node 2 comm_rule_script.py torch OUT` or
`mpiexec -n 2 python comm_rule_script.py mpi OUT`."""

import json
import sys
from pathlib import Path

import numpy as np
from thinwire.algorithms import comm as comm_module

# A rule no communicator could compute by itself: it must ask collective_bytes to get these numbers.
MARKED = {op: (lambda p, sent, i=i: 1000 * (i + 1) + 10 * p + sent) for i, op in enumerate(comm_module.RECEIVED)}


def message_length(rank: int) -> int:
    return 3 + 2 * rank


def calls(comm, ranks: list[int], stacked: bool) -> None:
    """One call of each collective by `ranks` (the simulator's workers, stacked along axis 0, or one rank)."""
    xp, p = comm.xp, comm.world_size

    def per_rank(make):
        return xp.asarray(np.stack([make(r) for r in ranks]) if stacked else make(ranks[0]))

    vec = per_rank(lambda r: np.arange(4 * p, dtype=np.float32) + r)
    comm.all_reduce(vec)
    comm.all_reduce(vec, op="avg", category="metrics")
    comm.all_gather(vec)
    comm.all_gather(vec, sharded=True)
    comm.reduce_scatter(vec)
    comm.all_to_all(per_rank(lambda r: np.arange(2 * p, dtype=np.float64).reshape(p, 2) + r))
    comm.broadcast(vec, src=0)
    message = per_rank(lambda r: np.full(8, r + 1, dtype=np.uint8))
    lengths = np.array([message_length(r) for r in ranks])
    comm.all_gather_v(message, lengths if stacked else int(lengths[0]))


def records(log) -> list:
    return [[r.op, r.group_size, r.sent, r.recv, r.category] for r in log.records]


def main() -> None:
    backend, out = sys.argv[1], Path(sys.argv[2])
    comm_module.RECEIVED.update(MARKED)
    if backend == "mpi":
        from thinwire.workloads.mpicomm import MPIComm

        comm = MPIComm(timeout_s=30)
    else:
        import torch
        from thinwire.workloads.torchcomm import TorchComm

        comm = TorchComm(torch.device("cpu"), timeout_s=30)
    calls(comm, [comm.rank], stacked=False)
    (out / f"rank{comm.rank}.json").write_text(json.dumps(records(comm.log)))
    comm.close()


if __name__ == "__main__":
    main()
