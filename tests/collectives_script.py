"""Run every collective on real ranks and save what each rank got; tests/test_collectives.py compares
the results with SimComm's. Launched as `torchrun ... collectives_script.py torch OUT` or
`mpiexec ... python collectives_script.py mpi OUT`."""

import sys
from pathlib import Path

import numpy as np


def inputs(rank: int, world: int) -> dict[str, np.ndarray]:
    """Distinct, exactly representable inputs per rank (so sums agree bit for bit in any order)."""
    base = np.arange(2 * world, dtype=np.float64) + 100 * rank
    return {"vec": base, "chunks": base.reshape(world, 2), "pair_chunks": base.reshape(2, world)}


def run_all(comm, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every collective, on the world and on groups {0, 2}, {1, 3}; in the simulator `arrays` are stacked."""
    x = {k: comm.xp.asarray(v) for k, v in arrays.items()}
    pairs = comm.split([[0, 2], [1, 3]])
    got = {
        "all_reduce": comm.all_reduce(x["vec"]),
        "all_reduce_avg": comm.all_reduce(x["vec"], op="avg"),
        "all_reduce_max": comm.all_reduce(x["vec"], op="max"),
        "all_gather": comm.all_gather(x["vec"]),
        "reduce_scatter": comm.reduce_scatter(x["vec"]),
        "all_to_all": comm.all_to_all(x["chunks"]),
        "broadcast": comm.broadcast(x["vec"], src=2),
        "group_all_reduce": comm.all_reduce(x["vec"], group=pairs),
        "group_all_gather": comm.all_gather(x["vec"], group=pairs),
        "group_reduce_scatter": comm.reduce_scatter(x["vec"], group=pairs),
        "group_all_to_all": comm.all_to_all(x["pair_chunks"], group=pairs),
        "group_broadcast": comm.broadcast(x["vec"], src=1, group=pairs),
    }
    out = {k: np.asarray(v) for k, v in got.items()}
    out["log_sent"] = np.array([r.sent for r in comm.log.records])
    out["log_recv"] = np.array([r.recv for r in comm.log.records])
    return out


def main() -> None:
    backend, out = sys.argv[1], Path(sys.argv[2])
    if backend == "mpi":
        from thinwire.workloads.mpicomm import MPIComm

        comm = MPIComm(timeout_s=30)
    else:
        import torch
        from thinwire.workloads.torchcomm import TorchComm

        comm = TorchComm(torch.device("cpu"), timeout_s=30)
    np.savez(out / f"rank{comm.rank}.npz", **run_all(comm, inputs(comm.rank, comm.world_size)))
    comm.close()


if __name__ == "__main__":
    main()
