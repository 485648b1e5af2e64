"""Real ranks: the simulator, gloo and MPI follow the same trajectory; a dead or hung rank ends the job.

Each launch costs a few seconds (torch import per rank), so these tests launch as few runs as they can.
"""

import json

import numpy as np
import pandas as pd
import pytest
from launch import mpiexec, thinwire, torchrun

# d = 50 and density 0.1 give k = 5: the float64 values start at byte 20 of the payload, which
# exercises unaligned unpacking on every backend. DGC runs on the MLP (dense biases next to sparsified
# matrices) with its sampled threshold, fp16 values and a warm-up that changes k during the run.
LOGREG = ["--workload", "logreg", "--wparam", "dim=50", "--wparam", "heterogeneity=0.5"]
RUNS = {"sgd": [*LOGREG, "--param", "lr=0.5", "--param", "momentum=0.9"],
        "topk-ef": [*LOGREG, "--param", "lr=0.5", "--param", "density=0.1"],
        "dgc": ["--workload", "digits-mlp", "--wparam", "hidden=16", "--param", "lr=0.2", "--param", "density=0.02",
                "--param", "threshold=sampled", "--param", "wire=fp16-int32", "--param", "warmup_steps=8"]}
COMMON = ["--steps", "20", "--dtype", "float64", "--eval-every", "1", "--quiet", "--seed", "3"]


def _read(d):
    return (pd.read_csv(d / "trajectory.csv"), pd.read_csv(d / "commlog.csv"), np.load(d / "params.npy"),
            json.loads((d / "meta.json").read_text()))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every method in the simulator (2 workers), under torchrun/gloo and under mpiexec (2 ranks)."""
    root = tmp_path_factory.mktemp("modes")
    out = {}
    for method, params in RUNS.items():
        sim = thinwire("sim", method, *COMMON, *params, "--workers", "2", "--out", str(root / f"sim-{method}"),
                       cwd=root)
        gloo = torchrun(2, "run", method, *COMMON, *params, "--backend", "torch", "--timeout", "30",
                        "--out", str(root / f"gloo-{method}"), cwd=root)
        mpi = mpiexec(2, "run", method, *COMMON, *params, "--backend", "mpi", "--timeout", "30",
                      "--out", str(root / f"mpi-{method}"), cwd=root)
        for p in (sim, gloo, mpi):
            assert p.returncode == 0, p.stderr[-2000:]
        out[method] = {mode: _read(root / f"{mode}-{method}") for mode in ("sim", "gloo", "mpi")}
    out["root"] = root
    return out


@pytest.mark.parametrize("method", list(RUNS))
def test_sim_gloo_and_mpi_follow_the_same_trajectory(runs, method):
    sim_traj, _, sim_x, _ = runs[method]["sim"]
    for backend in ("gloo", "mpi"):
        traj, _, x, meta = runs[method][backend]
        assert meta["mode"] == "real" and meta["backend"] == backend and meta["world_size"] == 2
        assert len(traj) == 20
        assert np.abs(traj["loss"] - sim_traj["loss"]).max() <= 1e-6
        assert np.abs(traj["eval_loss"] - sim_traj["eval_loss"]).max() <= 1e-6
        assert np.abs(x - sim_x).max() <= 1e-6
    assert sim_traj["eval_loss"].iloc[-1] < sim_traj["eval_loss"].iloc[0]  # it trained


@pytest.mark.parametrize("method", list(RUNS))
def test_bytes_equal_stated_bits_and_what_backends_were_handed(runs, method):
    # Real ranks also all-reduce their losses for logging: logged as "metrics", never method bytes.
    logs = {mode: runs[method][mode][1].query("category == 'method'").reset_index(drop=True)
            for mode in ("sim", "gloo", "mpi")}
    meta = runs[method]["sim"][3]
    method_calls = logs["sim"]
    per_step = method_calls.groupby("step")["sent"].sum()
    stated = runs[method]["sim"][0].set_index("step")["stated_bits"]
    assert (per_step * 8 / meta["n_params"] == stated).all()
    if method != "dgc":  # fp64 values and int32 indices; DGC's k changes with its warm-up
        assert (method_calls["sent"] == {"sgd": 50 * 8, "topk-ef": 5 * (4 + 8)}[method]).all()
    else:
        assert set(method_calls["op"]) == {"all_gather", "all_reduce"}  # sparse matrices, dense biases
    for backend in ("gloo", "mpi"):
        pd.testing.assert_frame_equal(logs[backend], logs["sim"])


def test_real_runs_are_deterministic(runs):
    root = runs["root"]
    again = torchrun(2, "run", "topk-ef", *COMMON, *RUNS["topk-ef"], "--backend", "torch", "--timeout", "30",
                     "--out", str(root / "again" / "gloo-topk-ef"), cwd=root)
    assert again.returncode == 0, again.stderr[-2000:]
    for name in ("trajectory.csv", "commlog.csv", "params.npy", "meta.json"):
        assert (root / "again" / "gloo-topk-ef" / name).read_bytes() == (root / "gloo-topk-ef" / name).read_bytes(), name


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
