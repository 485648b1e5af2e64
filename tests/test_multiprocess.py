"""Real ranks: a dead or hung rank ends the job with an error, and leaves no partial results.

That real ranks follow the simulator, and that real runs are deterministic, is tests/test_conformance.py's.
"""

import pytest
from launch import mpiexec, torchrun


@pytest.mark.parametrize("launcher", ["gloo", "mpi"])
@pytest.mark.parametrize("how", ["exit", "hang"])
def test_a_dead_or_hung_rank_ends_the_job_with_an_error(tmp_path, launcher, how):
    args = ["run", "sgd", "--workload", "lsq", "--steps", "50", "--quiet", "--timeout", "4",
            "--inject-failure", f"1:3:{how}", "--out", str(tmp_path / "run")]
    launch = torchrun if launcher == "gloo" else mpiexec
    proc = launch(2, *args, "--backend", "torch" if launcher == "gloo" else "mpi", cwd=tmp_path, timeout=60)
    assert proc.returncode != 0
    if how == "hang":  # the surviving rank names the failure itself
        assert "thinwire: error:" in proc.stderr and "timed out" in proc.stderr.replace("Timed out", "timed out")
    assert not (tmp_path / "run").exists()  # no partial results
