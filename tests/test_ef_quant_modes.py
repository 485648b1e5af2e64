"""ef-quant in the simulator, under torchrun/gloo and under mpiexec: the same trajectory, the same bytes.

One stochastic quantizer (QSGD: uniforms drawn per worker and step must match across modes) and one
deterministic (BinGrad: Lloyd's iteration must reach the same levels in numpy and torch). Four launches
in all; the simulator runs in this process.
"""

import json

import numpy as np
import pandas as pd
import pytest
from launch import mpiexec, torchrun

from thinwire.cli import main as thinwire_main

LOGREG = ["--workload", "logreg", "--wparam", "dim=50", "--wparam", "heterogeneity=0.5"]
COMMON = ["--steps", "20", "--dtype", "float64", "--eval-every", "1", "--quiet", "--seed", "3", *LOGREG,
          "--param", "lr=0.5", "--param", "bucket_size=16"]
# d = 50 in buckets of 16, 16, 16, 2: 4 buckets.
# qsgd, s = 2: 4 float32 norms + 50 codes of ceil(log2 3) + 1 = 3 bits -> 16 + 19 = 35 bytes.
# bingrad: 4 x 2 float32 levels + 50 codes of 1 bit -> 32 + 7 = 39 bytes.
RUNS = {"qsgd": (["--param", "quantizer=qsgd", "--param", "levels=2"], 35),
        "bingrad": (["--param", "quantizer=bingrad"], 39)}


def _read(d):
    return (pd.read_csv(d / "trajectory.csv"), pd.read_csv(d / "commlog.csv"), np.load(d / "params.npy"),
            json.loads((d / "meta.json").read_text()))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ef-quant-modes")
    out = {}
    for quantizer, (params, _) in RUNS.items():
        assert thinwire_main(["sim", "ef-quant", *COMMON, *params, "--workers", "2",
                              "--out", str(root / f"sim-{quantizer}")]) == 0
        gloo = torchrun(2, "run", "ef-quant", *COMMON, *params, "--backend", "torch", "--timeout", "30",
                        "--out", str(root / f"gloo-{quantizer}"), cwd=root)
        mpi = mpiexec(2, "run", "ef-quant", *COMMON, *params, "--backend", "mpi", "--timeout", "30",
                      "--out", str(root / f"mpi-{quantizer}"), cwd=root)
        for p in (gloo, mpi):
            assert p.returncode == 0, p.stderr[-2000:]
        out[quantizer] = {mode: _read(root / f"{mode}-{quantizer}") for mode in ("sim", "gloo", "mpi")}
    return out


@pytest.mark.parametrize("quantizer", list(RUNS))
def test_sim_gloo_and_mpi_follow_the_same_trajectory(runs, quantizer):
    sim_traj, _, sim_x, _ = runs[quantizer]["sim"]
    for backend in ("gloo", "mpi"):
        traj, _, x, meta = runs[quantizer][backend]
        assert meta["mode"] == "real" and meta["backend"] == backend and meta["world_size"] == 2
        assert len(traj) == 20
        assert np.abs(traj["loss"] - sim_traj["loss"]).max() <= 1e-6
        assert np.abs(traj["eval_loss"] - sim_traj["eval_loss"]).max() <= 1e-6
        assert np.abs(x - sim_x).max() <= 1e-6
    assert sim_traj["eval_loss"].iloc[-1] < sim_traj["eval_loss"].iloc[0]  # it trained


@pytest.mark.parametrize("quantizer", list(RUNS))
def test_bytes_are_the_payload_and_the_stated_bits_in_every_mode(runs, quantizer):
    logs = {mode: runs[quantizer][mode][1].query("category == 'method'").reset_index(drop=True)
            for mode in ("sim", "gloo", "mpi")}
    sim = logs["sim"]
    assert list(sim["op"].unique()) == ["all_gather"] and len(sim) == 20  # one payload per step
    assert (sim["sent"] == RUNS[quantizer][1]).all()
    assert (sim["recv"] == 2 * RUNS[quantizer][1]).all()
    stated = runs[quantizer]["sim"][0].set_index("step")["stated_bits"]
    assert (sim.set_index("step")["sent"] * 8 / 50 == stated).all()
    for backend in ("gloo", "mpi"):
        pd.testing.assert_frame_equal(logs[backend], sim)
        assert (runs[quantizer][backend][0]["stated_bits"] == stated.to_numpy()).all()
