"""saef with step ahead and error averaging in the simulator, under torchrun/gloo and under mpiexec: the
same trajectory, the same bytes, and those bytes are the stated bits.

QSGD as the compressor, so the per-worker uniforms (seed, worker, step) must match across modes; every
rank takes its gradient at its own x - e_i, and the errors are all-reduced every 4 steps. Two launches
in all; the simulator runs in this process.
"""

import json

import numpy as np
import pandas as pd
import pytest
from launch import mpiexec, torchrun

from thinwire.cli import main as thinwire_main

LOGREG = ["--workload", "logreg", "--wparam", "dim=50", "--wparam", "heterogeneity=0.5"]
PARAMS = {"lr": 0.5, "compressor": "qsgd", "levels": 2, "bucket_size": 16, "step_ahead": "true",
          "error_average_every": 4, "seed": 1}
COMMON = ["--steps", "20", "--dtype", "float64", "--eval-every", "1", "--quiet", "--seed", "3", *LOGREG,
          *[a for k, v in PARAMS.items() for a in ("--param", f"{k}={v}")]]
# qsgd, s = 2, d = 50 in buckets of 16, 16, 16, 2: 4 float32 norms + 50 codes of 3 bits -> 16 + 19 bytes.
PAYLOAD = 35
ERRORS = 50 * 8  # the float64 errors, all-reduced at steps 3, 7, 11, 15, 19
AVERAGING_STEPS = [3, 7, 11, 15, 19]


def _read(d):
    return (pd.read_csv(d / "trajectory.csv"), pd.read_csv(d / "commlog.csv"), np.load(d / "params.npy"),
            json.loads((d / "meta.json").read_text()))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("saef-modes")
    assert thinwire_main(["sim", "saef", *COMMON, "--workers", "2", "--out", str(root / "sim")]) == 0
    gloo = torchrun(2, "run", "saef", *COMMON, "--backend", "torch", "--timeout", "30",
                    "--out", str(root / "gloo"), cwd=root)
    mpi = mpiexec(2, "run", "saef", *COMMON, "--backend", "mpi", "--timeout", "30",
                  "--out", str(root / "mpi"), cwd=root)
    for p in (gloo, mpi):
        assert p.returncode == 0, p.stderr[-2000:]
    return {mode: _read(root / mode) for mode in ("sim", "gloo", "mpi")}


def test_sim_gloo_and_mpi_follow_the_same_trajectory(runs):
    sim_traj, _, sim_x, _ = runs["sim"]
    for backend in ("gloo", "mpi"):
        traj, _, x, meta = runs[backend]
        assert meta["mode"] == "real" and meta["backend"] == backend and meta["world_size"] == 2
        assert len(traj) == 20
        assert np.abs(traj["loss"] - sim_traj["loss"]).max() <= 1e-6
        assert np.abs(traj["eval_loss"] - sim_traj["eval_loss"]).max() <= 1e-6
        assert np.abs(x - sim_x).max() <= 1e-6
    assert sim_traj["eval_loss"].iloc[-1] < sim_traj["eval_loss"].iloc[0]  # it trained


def test_bytes_are_the_payload_plus_the_error_average_and_the_stated_bits_in_every_mode(runs):
    logs = {mode: runs[mode][1].query("category == 'method'").reset_index(drop=True)
            for mode in ("sim", "gloo", "mpi")}
    sim = logs["sim"]
    gathers, reduces = sim[sim["op"] == "all_gather"], sim[sim["op"] == "all_reduce"]
    assert set(sim["op"]) == {"all_gather", "all_reduce"}
    assert list(gathers["step"]) == list(range(20))
    assert (gathers["sent"] == PAYLOAD).all() and (gathers["recv"] == 2 * PAYLOAD).all()
    assert list(reduces["step"]) == AVERAGING_STEPS
    assert (reduces["sent"] == ERRORS).all() and (reduces["recv"] == ERRORS).all()
    per_step = sim.groupby("step")["sent"].sum()
    stated = runs["sim"][0].set_index("step")["stated_bits"]
    assert (per_step * 8 / 50 == stated).all()
    assert stated[3] == (PAYLOAD + ERRORS) * 8 / 50 and stated[4] == PAYLOAD * 8 / 50
    for backend in ("gloo", "mpi"):
        pd.testing.assert_frame_equal(logs[backend], sim)
        assert (runs[backend][0]["stated_bits"] == stated.to_numpy()).all()
