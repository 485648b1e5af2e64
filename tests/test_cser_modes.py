"""CSER and QSparse-local-SGD in the simulator (2 workers, in process), under torchrun/gloo and under
mpiexec (2 ranks): the same trajectory, the same bytes, and those bytes are the stated bits.

Four launches in all (two methods x two real backends). The splits put blocks inside the 1 x 50
weight and `layer` = 2 on C1, so some steps send nothing and the block sizes vary (10 or 25 values).
"""

import json

import numpy as np
import pandas as pd
import pytest
from launch import mpiexec, torchrun

from thinwire.execute import RunSpec, run_sim

WORKLOAD = {"dim": 50}
RUNS = {"cser": {"lr": 0.2, "R1": 10, "split1": "2x1x5", "R2": 2, "split2": "out", "H": 4, "seed": 5},
        "qsparse-local-sgd": {"lr": 0.2, "R": 5, "split": "out", "H": 2, "seed": 5}}
COMMON = ["--steps", "20", "--dtype", "float64", "--eval-every", "1", "--quiet", "--seed", "3",
          "--workload", "logreg", "--wparam", "dim=50"]


def _read(d):
    return (pd.read_csv(d / "trajectory.csv"), pd.read_csv(d / "commlog.csv"), np.load(d / "params.npy"),
            json.loads((d / "meta.json").read_text()))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cser-modes")
    out = {}
    for method, params in RUNS.items():
        spec = RunSpec(method, "logreg", steps=20, seed=3, dtype="float64", params=params,
                       workload_params=WORKLOAD, eval_every=1)
        run_sim(spec, 2, root / f"sim-{method}", progress=False)
        args = [a for k, v in params.items() for a in ("--param", f"{k}={v}")]
        gloo = torchrun(2, "run", method, *COMMON, *args, "--backend", "torch", "--timeout", "30",
                        "--out", str(root / f"gloo-{method}"), cwd=root)
        mpi = mpiexec(2, "run", method, *COMMON, *args, "--backend", "mpi", "--timeout", "30",
                      "--out", str(root / f"mpi-{method}"), cwd=root)
        for p in (gloo, mpi):
            assert p.returncode == 0, p.stderr[-2000:]
        out[method] = {mode: _read(root / f"{mode}-{method}") for mode in ("sim", "gloo", "mpi")}
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
def test_bytes_are_block_values_only_equal_across_modes_and_equal_the_stated_bits(runs, method):
    logs = {mode: runs[method][mode][1].query("category == 'method'").reset_index(drop=True)
            for mode in ("sim", "gloo", "mpi")}
    traj, _, _, meta = runs[method]["sim"]
    calls = logs["sim"]
    assert set(calls["op"]) == {"all_reduce"} and (calls["sent"] % 8 == 0).all()
    per_step = calls.groupby("step")["sent"].sum().reindex(range(20), fill_value=0)
    stated = traj.set_index("step")["stated_bits"]
    assert (per_step * 8 / meta["n_params"] == stated).all()
    # float64 block values, nothing else: a block of the 1 x 50 weight holds 10 (out = 5) or 25 (R2 = 2)
    assert set(calls["sent"] // 8) <= {10, 25}
    assert (per_step == 0).any() and (per_step > 0).any()  # steps without a block send nothing
    for backend in ("gloo", "mpi"):
        pd.testing.assert_frame_equal(logs[backend], logs["sim"])
