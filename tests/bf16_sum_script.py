"""All-reduce bfloat16 words (op bf16_sum) on real ranks and save what this rank got; tests/test_bf16.py
compares it with SimComm's, bit for bit. Launched as `torchrun ... bf16_sum_script.py torch OUT` or
`mpiexec ... python bf16_sum_script.py mpi OUT`."""

import sys
from pathlib import Path

import numpy as np

N = 4096


def words(rank: int) -> np.ndarray:
    """Rank r's words: bfloat16 values whose pairwise sums often fall on a tie (the last bit decides),
    spanning exponents from subnormal to near overflow, with a few infinities and NaNs."""
    rng = np.random.default_rng([7, rank])
    w = rng.integers(0, 2**16, N, dtype=np.uint32).astype(np.uint16)
    w[: N // 4] = (0x3F80 + rng.integers(0, 128, N // 4)).astype(np.uint16)  # [1, 2): sums need rounding
    return w


def main(backend: str, out: Path) -> None:
    if backend == "torch":
        import torch
        from thinwire.workloads.torchcomm import TorchComm

        comm = TorchComm(torch.device("cpu"), 30)
        got = comm.all_reduce(torch.from_numpy(words(comm.rank)), op="bf16_sum").numpy()
    else:
        from thinwire.workloads.mpicomm import MPIComm

        comm = MPIComm(30)
        got = comm.all_reduce(words(comm.rank), op="bf16_sum")
    assert got.dtype == np.uint16 and comm.log.records[-1].sent == 2 * N
    np.save(out / f"{backend}-{comm.rank}.npy", got)
    comm.close()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
