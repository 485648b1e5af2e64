"""bf16 compression (algorithms/bf16.py) against PyTorch: the uint16-word arithmetic of algorithms/wire.py
against torch's own bfloat16 casts and sums; the bf16_sum all-reduce on real ranks (gloo, MPI) against the
simulator's, bit for bit on 2 ranks; and thinwire's bf16 against DistributedDataParallel with PyTorch's
bf16_compress_hook (the ddp backend, 2 gloo ranks): the same trajectory and the same bytes, call by call.

The hook reference runs digits-mlp (16 hidden units, 1,210 parameters) in float64 for 30 steps: the hook
rounds every gradient to bfloat16 whatever the model's dtype, and in float64 the two sides' gradients
differ only by the order of float operations (a few float64 ulps, 1e-16), far below float32's and bfloat16's
rounding steps, so both round to the same words and the trajectories agree to float64 rounding. (In float32
those few float32 ulps would flip a bfloat16 rounding now and then, and the match would be to bfloat16's
ulp, not to a tolerance that could catch a wrong cast.) Tolerance 1e-10, against a gap of 1e-3 and more
between the hook and dense all-reduce SGD on the same run (checked below: the rounding is visible).
"""

import sys

import numpy as np
import pandas as pd
import pytest
import torch
from bf16_sum_script import words
from launch import BIN, ROOT, method_log, read_run, run, torchrun
from thinwire.algorithms import wire
from thinwire.simulators.simcomm import SimComm

from thinwire.cli import main
from thinwire.launch import thread_env

pytestmark = pytest.mark.timeout(600)
TOL = 1e-10


def special_values() -> np.ndarray:
    """float64 values that exercise every rounding case: ties to even both ways, a tie only after the
    cast to float32 (double rounding, as torch's cast does), subnormals, overflow to inf, inf, NaN."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(100_000) * np.exp(rng.uniform(-95, 90, 100_000))
    x[:9] = [1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-30, -(1 + 2**-8 + 2**-20), 1e-40, 3.4e38, np.inf, -np.inf,
             np.nan]
    return x


def torch_words(t: torch.Tensor) -> np.ndarray:
    return t.view(torch.int16).numpy().view(np.uint16)


def test_numpy_words_round_as_torch_casts_divides_and_adds():
    x = special_values()
    ours = wire.to_bf16_words(x)
    theirs = torch.from_numpy(x).to(torch.bfloat16)
    nan = np.isnan(x)  # torch's NaN word depends on its code path (0x7FC0 or 0xFFFF); NaN either way
    assert ours.dtype == np.uint16 and (ours == torch_words(theirs))[~nan].all()
    assert (ours[:4] == [0x3F80, 0x3F82, 0x3F80, 0xBF81]).all()  # even, even, double rounding, up
    assert (wire.to_bf16_words(torch.from_numpy(x)).numpy() == ours)[~nan].all()
    for w in (2, 3, 4, 7):
        assert (wire.bf16_divide(ours, w) == torch_words(theirs.clone().div_(w)))[~nan].all(), w
    other = wire.to_bf16_words(x[::-1].copy())
    added = theirs + torch.from_numpy(x[::-1].copy()).to(torch.bfloat16)
    assert (wire.bf16_add(ours, other) == torch_words(added))[~torch.isnan(added).numpy()].all()
    back = wire.from_bf16_words(ours, np.float64)
    assert np.array_equal(back, theirs.to(torch.float64).numpy(), equal_nan=True)


@pytest.mark.parametrize("backend", ["torch", "mpi"])
def test_real_bf16_sum_is_the_simulators_on_two_ranks(tmp_path, backend):
    sim = SimComm(2, np).all_reduce(np.stack([words(0), words(1)]), op="bf16_sum")
    assert sim.dtype == np.uint16 and sim.shape == (2, words(0).size)
    launcher = ([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2"] if backend == "torch"
                else [str(BIN / "mpiexec"), "-n", "2", sys.executable])
    proc = run([*launcher, str(ROOT / "tests" / "bf16_sum_script.py"), backend, str(tmp_path)], tmp_path,
               env=thread_env(1))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in range(2):
        assert np.array_equal(np.load(tmp_path / f"{backend}-{rank}.npy"), sim[rank])
    pairwise = wire.bf16_add(words(0), words(1))
    rounded = (pairwise != wire.to_bf16_words(wire.from_bf16_words(words(0), np.float64)
                                              + wire.from_bf16_words(words(1), np.float64)))
    assert not rounded.any()  # one rounding of the exact sum: the float32 sum of two bf16 is exact here


def test_bf16_sum_takes_only_words():
    with pytest.raises(ValueError, match="uint16"):
        SimComm(2, np).all_reduce(np.zeros((2, 3)), op="bf16_sum")
    with pytest.raises(ValueError, match="op must be one of"):
        SimComm(2, np).all_reduce(np.zeros((2, 3)), op="mean")


COMMON = ["--workload", "digits-mlp", "--wparam", "hidden=16", "--dtype", "float64", "--steps", "30",
          "--eval-every", "5", "--quiet", "--param", "lr=0.2", "--param", "weight_decay=0.001"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bf16-ddp")
    proc = torchrun(2, "run", "bf16", *COMMON, "--backend", "ddp", "--timeout", "60", "--out", str(root / "ddp"),
                    cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for method in ("bf16", "sgd"):
        assert main(["sim", method, *COMMON, "--workers", "2", "--out", str(root / method)]) == 0
    return read_run(root / "ddp"), read_run(root / "bf16"), read_run(root / "sgd")


def test_bf16_follows_the_ddp_hook(runs):
    ddp, tw, dense = runs
    assert ddp.meta["backend"] == "ddp" and ddp.meta["status"] == "ok" and len(ddp.trajectory) == 30
    gaps = {"loss": np.abs(ddp.trajectory["loss"] - tw.trajectory["loss"]).max(),
            "eval": np.nanmax(np.abs(ddp.trajectory["eval_loss"] - tw.trajectory["eval_loss"])),
            "params": np.abs(ddp.params - tw.params).max()}
    dense_gap = np.abs(ddp.params - dense.params).max()
    print(f"bf16 hook vs thinwire: {gaps}; vs dense SGD: params {dense_gap:.3g}", file=sys.stderr)
    assert max(gaps.values()) <= TOL
    assert dense_gap > 1e3 * TOL  # the hook's rounding moved the model: the match above is not SGD's
    assert ddp.trajectory["eval_loss"].iloc[-1] < ddp.trajectory["eval_loss"].iloc[0]


def test_bf16_sends_the_hooks_bytes(runs):
    ddp, tw, _ = runs
    pd.testing.assert_frame_equal(method_log(ddp), method_log(tw))
    log = method_log(ddp)
    assert (log["sent"] == 1210 * 2).all() and len(log) == 30  # one bfloat16 buffer of the model per step
    assert (tw.trajectory["stated_bits"] == 16).all()
    assert (ddp.trajectory["bytes_sent"] * 8 / ddp.meta["n_params"] == ddp.trajectory["stated_bits"]).all()
