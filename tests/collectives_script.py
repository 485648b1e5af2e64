"""Run every collective on real ranks and save what each rank got; tests/test_collectives.py compares
the results with SimComm's. Launched as `torchrun ... collectives_script.py torch OUT` or
`mpiexec ... python collectives_script.py mpi OUT`."""

import sys
from pathlib import Path

import numpy as np

WIDTH = 8  # longest variable-size message, in bytes


def message_length(rank: int) -> int:
    """Ranks 0..3 send 1, 4, 2 and 0 bytes to the variable-size all-gather (a rank may send nothing)."""
    return (3 * rank + 1) % 5


def inputs(rank: int, world: int) -> dict[str, np.ndarray]:
    """Distinct, exactly representable inputs per rank (so sums agree bit for bit in any order)."""
    base = np.arange(2 * world, dtype=np.float64) + 100 * rank
    message = np.zeros(WIDTH, dtype=np.uint8)
    message[:message_length(rank)] = np.arange(message_length(rank)) + 10 * rank + 1
    message[message_length(rank):] = 255  # padding the collective must neither send nor return
    return {"vec": base, "chunks": base.reshape(world, 2), "pair_chunks": base.reshape(2, world),
            "message": message, "message_length": np.array(message_length(rank))}


def _fixed_width(gathered) -> np.ndarray:
    """Pad gathered messages to WIDTH: backends may pad to their longest message, the simulator to its buffer."""
    g = np.asarray(gathered)
    return np.pad(g, [(0, 0)] * (g.ndim - 1) + [(0, WIDTH - g.shape[-1])])


def run_all(comm, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every collective, on the world and on groups {0, 2}, {1, 3}; in the simulator `arrays` are stacked."""
    x = {k: comm.xp.asarray(v) for k, v in arrays.items()}
    pairs = comm.split([[0, 2], [1, 3]])
    gathered_v, lengths_v = comm.all_gather_v(x["message"], arrays["message_length"])
    group_gathered_v, group_lengths_v = comm.all_gather_v(x["message"], arrays["message_length"], group=pairs)
    got = {
        "all_reduce": comm.all_reduce(x["vec"]),
        "all_reduce_avg": comm.all_reduce(x["vec"], op="avg"),
        "all_reduce_max": comm.all_reduce(x["vec"], op="max"),
        "all_gather": comm.all_gather(x["vec"]),
        "all_gather_v": _fixed_width(gathered_v),
        "all_gather_v_lengths": lengths_v,
        "reduce_scatter": comm.reduce_scatter(x["vec"]),
        "all_to_all": comm.all_to_all(x["chunks"]),
        "broadcast": comm.broadcast(x["vec"], src=2),
        "group_all_reduce": comm.all_reduce(x["vec"], group=pairs),
        "group_all_gather": comm.all_gather(x["vec"], group=pairs),
        "group_all_gather_v": _fixed_width(group_gathered_v),
        "group_all_gather_v_lengths": group_lengths_v,
        "group_reduce_scatter": comm.reduce_scatter(x["vec"], group=pairs),
        "group_all_to_all": comm.all_to_all(x["pair_chunks"], group=pairs),
        "group_broadcast": comm.broadcast(x["vec"], src=1, group=pairs),
    }
    out = {k: np.asarray(v) for k, v in got.items()}
    out["log_op"] = np.array([r.op for r in comm.log.records])
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
