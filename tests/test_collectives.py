"""TorchComm (gloo) and MPIComm on 4 real ranks give every rank what SimComm gives it, world and groups."""

import sys

import array_api_compat.numpy as xp
import numpy as np
import pytest
from collectives_script import inputs, message_length, run_all
from launch import BIN, ROOT, run
from thinwire.simulators.simcomm import SimComm

from thinwire.launch import thread_env

WORLD = 4
SCRIPT = ROOT / "tests" / "collectives_script.py"
PAIRS = [[0, 2], [1, 3]]


@pytest.fixture(scope="module")
def simulated():
    """What SimComm gives the ranks, from the same per-rank inputs stacked along the worker axis."""
    per_rank = [inputs(r, WORLD) for r in range(WORLD)]
    return run_all(SimComm(WORLD, xp), {k: np.stack([p[k] for p in per_rank]) for k in per_rank[0]})


def expected_log(simulated, rank: int) -> dict[str, np.ndarray]:
    """The simulator logs rank 0's bytes; another rank logs the same calls, with its own message
    length sent by the variable-size all-gathers (world, then pairs) and its group's total received."""
    sent, recv = simulated["log_sent"].copy(), simulated["log_recv"].copy()
    calls = np.flatnonzero(simulated["log_op"] == "all_gather_v")
    group = next(b for b in PAIRS if rank in b)
    for call, members in zip(calls, (range(WORLD), group)):
        sent[call], recv[call] = message_length(rank), sum(message_length(r) for r in members)
    return {"log_op": simulated["log_op"], "log_sent": sent, "log_recv": recv}


def test_simulated_variable_all_gather_sends_only_the_real_lengths(simulated):
    ops = list(simulated["log_op"])
    world, pairs = ops.index("all_gather_v"), len(ops) - 1 - ops[::-1].index("all_gather_v")
    assert ops[world - 1] == "all_gather" and simulated["log_sent"][world - 1] == 8  # the lengths, int64
    assert (simulated["log_sent"][world], simulated["log_recv"][world]) == (1, 1 + 4 + 2 + 0)
    assert (simulated["log_sent"][pairs], simulated["log_recv"][pairs]) == (1, 1 + 2)
    np.testing.assert_array_equal(simulated["all_gather_v"][3, 1], [11, 12, 13, 14, 0, 0, 0, 0])
    np.testing.assert_array_equal(simulated["group_all_gather_v_lengths"][1], [4, 0])


@pytest.mark.parametrize("backend", ["torch", "mpi"])
def test_real_collectives_match_the_simulator(tmp_path, simulated, backend):
    if backend == "torch":
        cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", str(WORLD), str(SCRIPT), "torch", str(tmp_path)]
    else:
        cmd = [str(BIN / "mpiexec"), "-n", str(WORLD), sys.executable, str(SCRIPT), "mpi", str(tmp_path)]
    proc = run(cmd, ROOT, timeout=120, env=thread_env(1))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in range(WORLD):
        got = np.load(tmp_path / f"rank{rank}.npz")
        assert set(got.files) == set(simulated)
        logs = expected_log(simulated, rank)
        for name in simulated:
            want = logs[name] if name.startswith("log_") else simulated[name][rank]
            np.testing.assert_array_equal(got[name], want, err_msg=f"{backend} rank {rank} {name}")
