"""thinwire's onebit-adam with deepspeed_compat against DeepSpeed's own OnebitAdam (the deepspeed backend,
2 real ranks, gloo, with the CPU adapters): the same trajectory and the same bytes, call by call.

digits-mlp with 16 hidden units (1,210 parameters in 4 tensors, one of them padded), float32, 40 steps,
freeze_step 10. Tolerances: both runs are float32 and differ only in the order of float operations
(gloo's sum against the simulator's, torch.linalg.norm against vector_norm), a few ulps per step
(measured: 5e-7 on the loss, 3e-6 on the parameters); one sign bit decided differently would move a
parameter by about lr = 1e-3, ten times the parameter tolerance. One DeepSpeed launch (the first
ever also builds DeepSpeed's shared-memory comm op, about 2 minutes on 2 cores); thinwire's run is
simulated in this process.
"""

import importlib.util
import sys

import numpy as np
import pandas as pd
import pytest
from launch import ONE_THREAD, launched, method_log, read_run

from thinwire.cli import main

deepspeed = pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install '.[deepspeed]'): "
                                "no comparison with DeepSpeed's own OnebitAdam")
if importlib.util.find_spec("deepspeed.runtime.fp16.onebit.adam") is None:
    pytest.skip(f"DeepSpeed {deepspeed.__version__} has no OnebitAdam (removed in 0.19.7; pin 0.19.6)",
                allow_module_level=True)

pytestmark = pytest.mark.timeout(900)
FREEZE = 10
ARGS = ["onebit-adam", "--workload", "digits-mlp", "--wparam", "hidden=16", "--dtype", "float32", "--steps", "40",
        "--eval-every", "5", "--quiet", "--param", "lr=0.001", "--param", f"freeze_step={FREEZE}",
        "--param", "deepspeed_compat=true"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("onebit-deepspeed")
    # Started by DeepSpeed's own launcher, with the command the workflow uses (thinwire/launch.py).
    proc = launched("deepspeed", 2, [*ARGS, "--busbw-mb", "1", "--out", str(root / "deepspeed")], cwd=root,
                    timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert main(["sim", *ARGS, "--workers", "2", "--out", str(root / "thinwire")]) == 0
    return read_run(root / "deepspeed"), read_run(root / "thinwire")


def test_the_deepspeed_run_is_deepspeeds(runs):
    ds, _ = runs
    assert ds.meta["backend"] == "deepspeed" and ds.meta["mode"] == "real" and ds.meta["status"] == "ok"
    assert ds.meta["env"]["deepspeed"] == deepspeed.__version__
    # the fingerprint's all-reduce bus bandwidth, over DeepSpeed's process group (asked for on the CPU)
    assert float(ds.meta["env"]["allreduce_busbw_gbps"]) > 0 and int(ds.meta["env"]["allreduce_bytes"]) == 2**20
    assert len(ds.trajectory) == 40
    assert ds.meta["env"]["threads"] == ONE_THREAD  # DeepSpeed's launcher kept the launch command's threads


def test_same_trajectory(runs):
    ds, tw = runs
    loss_gap = np.abs(ds.trajectory["loss"] - tw.trajectory["loss"]).max()
    eval_gap = np.nanmax(np.abs(ds.trajectory["eval_loss"] - tw.trajectory["eval_loss"]))
    param_gap = np.abs(ds.params - tw.params).max()
    print(f"DeepSpeed vs thinwire: max |loss gap| {loss_gap:.3g}, eval {eval_gap:.3g}, params {param_gap:.3g}",
          file=sys.stderr)
    assert loss_gap <= 1e-5 and eval_gap <= 1e-5 and param_gap <= 1e-4
    assert ds.trajectory["eval_loss"].iloc[-1] < ds.trajectory["eval_loss"].iloc[0]  # it trained


def test_same_bytes_call_by_call(runs):
    ds, tw = runs
    pd.testing.assert_frame_equal(method_log(ds), method_log(tw))
    per_step = ds.trajectory.set_index("step")["bytes_sent"]
    assert (per_step * 8 / ds.meta["n_params"] == ds.trajectory.set_index("step")["stated_bits"]).all()
    dense, compressed = per_step.loc[1:FREEZE - 1], per_step.loc[FREEZE:]
    assert (dense == 1210 * 4).all() and compressed.nunique() == 1
    assert dense.iloc[0] / compressed.iloc[0] > 15  # what the compression stage is for


@pytest.fixture
def compressed(monkeypatch):
    """DeepSpeed's compressed backend module, restored after the test."""
    import deepspeed.runtime.comm.compressed as module

    for name in ("PackbitsBuilder", "dist"):
        monkeypatch.setattr(module, name, getattr(module, name))
    return module


def test_cpu_adapters_install_once(compressed):
    import deepspeed.comm
    from thinwire.workloads import deepspeed_cpu

    assert deepspeed_cpu.apply() and deepspeed_cpu.apply()  # the second call finds them installed
    assert isinstance(compressed.PackbitsBuilder().load(), deepspeed_cpu.NumpyPacker)
    assert compressed.dist.all_reduce is deepspeed.comm.all_reduce  # everything but all_gather unchanged


@pytest.mark.parametrize("change, message", [
    ({"version": "0.19.7"}, "version 0.19.7"),
    ({"dist": object()}, "no longer calls deepspeed.comm"),
])
def test_cpu_adapters_refuse_changed_internals(compressed, monkeypatch, change, message):
    from thinwire.algorithms.comm import ThinwireError
    from thinwire.workloads import deepspeed_cpu

    if "version" in change:
        monkeypatch.setattr(deepspeed, "__version__", change["version"])
    else:
        monkeypatch.setattr(compressed, "dist", change["dist"])
    with pytest.raises(ThinwireError, match=f"{message}.*deepspeed==0.19.6"):
        deepspeed_cpu.apply()
