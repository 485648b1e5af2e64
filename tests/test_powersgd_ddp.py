"""thinwire's powersgd with ddp_compat against PyTorch's own powerSGD_hook in DistributedDataParallel
(the ddp backend, 2 real ranks, gloo, CPU): the same trajectory and the same bytes, call by call.

digits-mlp with 16 hidden units (1,210 parameters: two matrices, two biases), float64, 30 steps, the
first 3 dense. Rank 2 (Gram-Schmidt, warm start, momentum) and rank 4 (the hook's QR, the 10 x 16 weight
sent whole, a fresh Q every step, weight decay). Tolerance 1e-10 on losses and parameters: both sides
are float64 and take no discrete decision, so they differ only in the order of float operations (DDP's
autograd through the module against functional_call, gloo's sum against the simulator's), a few ulps
per step; a wrong Q, orthogonalisation or error would move the loss by far more (1e-3 after one step).
Measured before this test was written, on rank 2: 9e-16 on the loss, 1.5e-15 on the parameters.
digits-cnn (8 steps) checks that 4-D kernels become (shape[0], rest) matrices as in the hook.
thinwire's runs are simulated in this process.
"""

import sys

import numpy as np
import pandas as pd
import pytest
from launch import method_log, read_run, torchrun

from thinwire.cli import main

pytestmark = pytest.mark.timeout(600)
COMMON = ["powersgd", "--workload", "digits-mlp", "--wparam", "hidden=16", "--dtype", "float64", "--steps", "30",
          "--eval-every", "5", "--quiet", "--param", "lr=0.2", "--param", "start_powersgd_iter=3",
          "--param", "ddp_compat=true"]
RUNS = {"rank2": ["--param", "rank=2"],
        "rank4": ["--param", "rank=4", "--param", "warm_start=false", "--param", "weight_decay=0.001"]}
TOL = 1e-10


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("powersgd-ddp")
    out = {}
    for name, args in RUNS.items():
        proc = torchrun(2, "run", *COMMON, *args, "--backend", "ddp", "--timeout", "60",
                        "--out", str(root / f"{name}-ddp"), cwd=root, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert main(["sim", *COMMON, *args, "--workers", "2", "--out", str(root / f"{name}-thinwire")]) == 0
        out[name] = read_run(root / f"{name}-ddp"), read_run(root / f"{name}-thinwire")
    return out


@pytest.mark.parametrize("name", list(RUNS))
def test_the_ddp_run_is_ddps(runs, name):
    ddp, _ = runs[name]
    assert ddp.meta["backend"] == "ddp" and ddp.meta["mode"] == "real" and ddp.meta["status"] == "ok"
    assert ddp.meta["world_size"] == 2 and len(ddp.trajectory) == 30


@pytest.mark.parametrize("name", list(RUNS))
def test_same_trajectory(runs, name):
    ddp, tw = runs[name]
    loss_gap = np.abs(ddp.trajectory["loss"] - tw.trajectory["loss"]).max()
    eval_gap = np.nanmax(np.abs(ddp.trajectory["eval_loss"] - tw.trajectory["eval_loss"]))
    param_gap = np.abs(ddp.params - tw.params).max()
    print(f"{name}: hook vs thinwire: max |loss gap| {loss_gap:.3g}, eval {eval_gap:.3g}, params {param_gap:.3g}",
          file=sys.stderr)
    assert loss_gap <= TOL and eval_gap <= TOL and param_gap <= TOL
    assert ddp.trajectory["eval_loss"].iloc[-1] < ddp.trajectory["eval_loss"].iloc[0]  # it trained


@pytest.mark.parametrize("name", list(RUNS))
def test_same_bytes_call_by_call(runs, name):
    ddp, tw = runs[name]
    pd.testing.assert_frame_equal(method_log(ddp), method_log(tw))
    steps = ddp.trajectory.set_index("step")
    assert (steps["bytes_sent"] * 8 / ddp.meta["n_params"] == steps["stated_bits"]).all()
    dense, compressed = steps["bytes_sent"].loc[:2], steps["bytes_sent"].loc[3:]
    assert (dense == 1210 * 8).all() and compressed.nunique() == 1 and dense.iloc[0] / compressed.iloc[0] > 2


def test_the_backend_refuses_other_methods(tmp_path):
    proc = torchrun(1, "run", "sgd", "--workload", "digits-mlp", "--backend", "ddp", "--steps", "1",
                    "--out", str(tmp_path / "x"), cwd=tmp_path, timeout=120)
    assert proc.returncode != 0 and "powersgd with --param ddp_compat=true" in proc.stderr


def test_conv_kernels_are_matrices_as_the_hook_sees_them(tmp_path):
    """digits-cnn: 4-D kernels (16, 1, 3, 3) and (32, 16, 3, 3) compressed as (shape[0], rest), 8 steps."""
    args = ["powersgd", "--workload", "digits-cnn", "--dtype", "float64", "--steps", "8", "--quiet",
            "--param", "lr=0.1", "--param", "rank=2", "--param", "start_powersgd_iter=2", "--param", "ddp_compat=true"]
    proc = torchrun(2, "run", *args, "--backend", "ddp", "--timeout", "60", "--out", str(tmp_path / "ddp"),
                    cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert main(["sim", *args, "--workers", "2", "--out", str(tmp_path / "thinwire")]) == 0
    ddp, tw = read_run(tmp_path / "ddp"), read_run(tmp_path / "thinwire")
    assert np.abs(ddp.trajectory["loss"] - tw.trajectory["loss"]).max() <= TOL
    assert np.abs(ddp.params - tw.params).max() <= TOL
    pd.testing.assert_frame_equal(method_log(ddp), method_log(tw))
    # after the dense steps: 58 bias values, then P and Q of the three matrices at rank 2
    assert method_log(tw).query("step == 2")["sent"].tolist() == [58 * 8, 2 * (16 + 32 + 10) * 8,
                                                                  2 * (9 + 144 + 512) * 8]
