"""Real ranks: the simulator, gloo and MPI follow the same trajectory; a dead or hung rank ends the job.

Each launch costs a few seconds (torch import per rank), so these tests launch as few runs as they can.
"""


import json

import pytest
from launch import assert_modes_agree, launched, method_log, mpiexec, three_modes, torchrun

# d = 50 and density 0.1 give k = 5: the float64 values start at byte 20 of the payload, which
# exercises unaligned unpacking on every backend. DGC runs on the MLP (dense biases next to sparsified
# matrices) with its sampled threshold, fp16 values and a warm-up that changes k during the run.
LOGREG = ["--workload", "logreg", "--wparam", "dim=50", "--wparam", "heterogeneity=0.5"]
RUNS = {"sgd": [*LOGREG, "--param", "lr=0.5", "--param", "momentum=0.9"],
        "topk-ef": [*LOGREG, "--param", "lr=0.5", "--param", "density=0.1"],
        "dgc": ["--workload", "digits-mlp", "--wparam", "hidden=16", "--param", "lr=0.2", "--param", "density=0.02",
                "--param", "threshold=sampled", "--param", "wire=fp16-int32", "--param", "warmup_steps=8"]}
COMMON = ["--steps", "20", "--dtype", "float64", "--eval-every", "1", "--quiet", "--seed", "3"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every method in the simulator (2 workers), under torchrun/gloo and under mpiexec (2 ranks)."""
    root = tmp_path_factory.mktemp("modes")
    return {"root": root, **{method: three_modes(method, [*COMMON, *params], root / method)
                             for method, params in RUNS.items()}}


@pytest.mark.parametrize("method", list(RUNS))
def test_sim_gloo_and_mpi_agree(runs, method):
    assert_modes_agree(runs[method])


@pytest.mark.parametrize("method", list(RUNS))
def test_payload_sizes(runs, method):
    calls = method_log(runs[method]["sim"])
    if method == "dgc":  # sampled: sizes vary, lengths then messages are gathered; dense biases reduced
        assert set(calls["op"]) == {"all_gather", "all_gather_v", "all_reduce"}
    else:  # fp64 values and int32 indices
        assert (calls["sent"] == {"sgd": 50 * 8, "topk-ef": 5 * (4 + 8)}[method]).all()


def test_real_runs_are_deterministic_and_record_where_they_ran(runs):
    """Run again, with a bus-bandwidth measurement (the GPU default, asked for on gloo here) and a cluster
    name: the same results, and the fingerprint says where and how fast the all-reduce was."""
    root = runs["root"]
    again = launched("gloo", 2, ["topk-ef", *COMMON, *RUNS["topk-ef"], "--timeout", "30", "--busbw-mb", "1",
                                 "--cluster-name", "testbed", "--out", str(root / "again" / "gloo")], cwd=root)
    assert again.returncode == 0, again.stderr[-2000:]
    for name in ("trajectory.csv", "commlog.csv", "params.npy"):
        assert (root / "again" / "gloo" / name).read_bytes() == (root / "topk-ef" / "gloo" / name).read_bytes(), name
    first, second = (json.loads((root / d / "gloo" / "meta.json").read_text()) for d in ("topk-ef", "again"))
    assert first["env"]["cluster"].startswith("local:") and second["env"]["cluster"] == "testbed"
    assert float(second["env"]["allreduce_busbw_gbps"]) > 0 and "allreduce_busbw_gbps" not in first["env"]
    assert int(second["env"]["allreduce_bytes"]) == 2**20
    assert "gpu" not in second["env"]  # no GPU here: no GPU fingerprint
    drop = ("env",)
    assert {k: v for k, v in first.items() if k not in drop} == {k: v for k, v in second.items() if k not in drop}


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
