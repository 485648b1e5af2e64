"""TorchComm (gloo) and MPIComm on 4 real ranks give every rank what SimComm gives it, world and groups."""

import sys

import array_api_compat.numpy as xp
import numpy as np
import pytest
from collectives_script import inputs, run_all
from launch import BIN, ROOT, run
from thinwire.simulators.simcomm import SimComm

WORLD = 4
SCRIPT = ROOT / "tests" / "collectives_script.py"


@pytest.fixture(scope="module")
def simulated():
    """What SimComm gives the ranks, from the same per-rank inputs stacked along the worker axis."""
    per_rank = [inputs(r, WORLD) for r in range(WORLD)]
    return run_all(SimComm(WORLD, xp), {k: np.stack([p[k] for p in per_rank]) for k in per_rank[0]})


@pytest.mark.parametrize("backend", ["torch", "mpi"])
def test_real_collectives_match_the_simulator(tmp_path, simulated, backend):
    if backend == "torch":
        cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", str(WORLD), str(SCRIPT), "torch", str(tmp_path)]
    else:
        cmd = [str(BIN / "mpiexec"), "-n", str(WORLD), sys.executable, str(SCRIPT), "mpi", str(tmp_path)]
    proc = run(cmd, ROOT, timeout=120, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in range(WORLD):
        got = np.load(tmp_path / f"rank{rank}.npz")
        assert set(got.files) == set(simulated)
        for name in simulated:
            want = simulated[name] if name.startswith("log_") else simulated[name][rank]
            np.testing.assert_array_equal(got[name], want, err_msg=f"{backend} rank {rank} {name}")
