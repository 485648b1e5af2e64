"""1-bit Adam and its Adam baseline in the simulator: the compressor, both error feedbacks, the frozen
variance, the warm-up, DeepSpeed's first step, and bad input (one-line errors naming the fix)."""

import math
import sys

import array_api_compat.numpy as xp_np
import numpy as np
import pytest
from conformance import case, sim_run
from launch import method_log
from simulate import simulate
from thinwire.algorithms.comm import ThinwireError
from thinwire.algorithms.registry import get_method, make_config
from thinwire.simulators.simcomm import SimComm
from thinwire.workloads import deepspeed_backend
from thinwire.workloads.deepspeed_cpu import NumpyPacker

from thinwire.cli import main


def method(params: dict, d: int):
    cls = get_method("onebit-adam")
    return cls(make_config(cls, params), (("w", (1, d)),))


@pytest.mark.parametrize("d", [16, 13])
def test_one_rank_sends_scale_times_sign_with_sign_of_zero_plus_one(d):
    """C(z) = ||z|| / sqrt(d) sign(z) over the real coordinates (13 of them padded to 16); the server
    compresses C(z) again, which changes nothing; the worker keeps z - C(z)."""
    m = method({}, d)
    z = np.random.default_rng(0).normal(size=(1, d))
    z[0, 3] = 0.0
    comm = SimComm(1, xp_np)
    out = m.compressed_average(z, m.init_state(z, comm), comm)
    expected = np.linalg.norm(z) / math.sqrt(d) * np.where(z >= 0, 1.0, -1.0)
    np.testing.assert_allclose(out["m"], expected, rtol=1e-14)
    assert out["m"][0, 3] > 0
    np.testing.assert_allclose(out["error"], z - expected, rtol=1e-14)
    np.testing.assert_allclose(out["server_error"], 0.0, atol=1e-14)


def test_a_payload_is_packed_sign_bits_and_one_scale_per_chunk():
    m, comm = method({}, 50), SimComm(3, xp_np)
    z = np.random.default_rng(1).normal(size=(3, 50))
    m.compressed_average(z, m.init_state(z, comm), comm)
    (a2a, gather) = comm.log.records
    # d = 50 over 3 ranks: chunks of 24 coordinates = 3 bytes of signs, plus an 8-byte scale.
    assert (a2a.op, a2a.sent) == ("all_to_all", 3 * (3 + 8)) and (gather.op, gather.sent) == ("all_gather_shards", 3 + 8)


@pytest.mark.parametrize("workers", [2, 3])
def test_worker_and_server_error_feedback_lose_nothing(workers):
    """Each compression step: the averaged momentum every worker receives plus the new worker and
    server errors equals the exact average of the workers' momenta plus the old errors."""
    def server_errors(s):  # worker j serves chunk j; the chunks' concatenation covers the model
        return s["server_error"].reshape(-1)[:50]

    checked = []

    def check(t, _x, state, x, new, grad):
        if t >= 3:
            local = 0.9 * state["m"] + 0.1 * grad
            before = local.mean(0) + state["error"].mean(0) + server_errors(state)
            after = new["m"] + new["error"].mean(0) + server_errors(new)
            np.testing.assert_allclose(after, np.broadcast_to(before, after.shape), atol=1e-12)
            assert np.abs(new["error"]).max() > 0 and np.abs(new["server_error"]).max() > 0
            np.testing.assert_array_equal(x[0], x[-1])  # every worker applies the same update
            checked.append(t)

    simulate("onebit-adam", {"lr": 0.05, "freeze_step": 3, "zero_variance_mask": False}, workers=workers,
             steps=12, on_step=check)
    assert checked == list(range(3, 12))


def test_warm_up_is_adam_and_the_variance_freezes():
    warm = simulate("onebit-adam", {"lr": 0.05, "freeze_step": 30}, steps=20)
    adam = simulate("adam", {"lr": 0.05}, steps=20)
    np.testing.assert_array_equal(warm.x, adam.x)
    at_freeze = simulate("onebit-adam", {"lr": 0.05, "freeze_step": 5}, steps=5)
    later = simulate("onebit-adam", {"lr": 0.05, "freeze_step": 5}, steps=20)
    np.testing.assert_array_equal(later.state["v"], at_freeze.state["v"])
    assert not np.array_equal(later.state["m"], at_freeze.state["m"])


def test_zero_variance_mask_keeps_coordinates_without_gradient_still():
    """A coordinate with no gradient in warm-up has v = 0: 1-bit compression gives it +-scale, and
    scale / eps moves it enormously unless the mask holds its momentum at zero."""
    rng = np.random.default_rng(2)

    def oracle(x):
        g = rng.normal(size=x.shape)
        g[:, 0] = 0.0
        return np.zeros(x.shape[0]), g

    moved = {}
    for mask in (True, False):
        m, comm = method({"lr": 0.01, "freeze_step": 3, "zero_variance_mask": mask}, 16), SimComm(2, xp_np)
        x = np.zeros((2, 16))
        state = m.init_state(x, comm)
        for _ in range(6):
            x, state, _ = m.step(x, state, oracle, comm)
        moved[mask] = abs(x[0, 0])
    assert moved[True] == 0.0 and moved[False] > 1e3


def test_deepspeed_compat_first_step_only_initialises_and_pads_per_tensor():
    cls = get_method("onebit-adam")
    m = cls(make_config(cls, {"lr": 0.05, "freeze_step": 4, "deepspeed_compat": True}), (("a", (3, 7)), ("b", (5,))))
    comm = SimComm(3, xp_np)
    x = np.random.default_rng(3).normal(size=(3, 26))
    state = m.init_state(x, comm)
    new_x, state, _ = m.step(x, state, lambda y: (np.zeros(3), np.ones_like(y)), comm)
    np.testing.assert_array_equal(new_x, x)
    assert np.abs(state["m"]).max() == 0 and np.abs(state["error"]).max() == 0
    # 3 ranks: every tensor padded to a multiple of 3 lcm(3, 8) = 72 -> chunks of 24 coordinates.
    assert [b.padded for b in m.blocks(3)] == [72, 72]
    sent = comm.log.step_bytes(0)[0]
    assert sent == 26 * 8 + 2 * (72 // 8 + 8 + 24 // 8 + 8) == m.bits_per_parameter(64, 0) * 26 / 8


@pytest.mark.parametrize("name, params, message", [
    ("onebit-adam", {"beta1": 1.0}, "beta1 must be in [0, 1)"),
    ("onebit-adam", {"beta2": -0.1}, "beta2 must be in [0, 1)"),
    ("adam", {"beta2": 1.5}, "beta2 must be in [0, 1)"),
    ("adam", {"eps": 0}, "eps must be > 0"),
    ("onebit-adam", {"freeze_step": 0}, "freeze_step must be >= 1"),
])
def test_bad_parameters_are_named(name, params, message):
    with pytest.raises(ThinwireError, match=message.replace("[", r"\[").replace(")", r"\)")):
        make_config(get_method(name), params)


def run_cli(capsys, *args):
    code = main(list(args))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("freeze, steps", [(50, 50), (80, 50)])
def test_freeze_step_beyond_the_run_is_refused(capsys, tmp_path, freeze, steps):
    code, err = run_cli(capsys, "sim", "onebit-adam", "--workload", "logreg", "--steps", str(steps),
                        "--param", f"freeze_step={freeze}", "--out", str(tmp_path / "run"))
    assert code == 2 and f"freeze_step {freeze} leaves no compressed step in a run of {steps} steps" in err
    assert not (tmp_path / "run").exists()


def test_deepspeed_compat_counts_its_initialising_step(capsys, tmp_path):
    code, err = run_cli(capsys, "sim", "onebit-adam", "--workload", "logreg", "--steps", "2", "--param",
                        "freeze_step=1", "--param", "deepspeed_compat=true", "--out", str(tmp_path / "run"))
    assert code == 2 and "compression starts at step 2" in err


@pytest.mark.parametrize("args, message", [
    (["sgd"], "onebit-adam with --param deepspeed_compat=true"),
    (["onebit-adam"], "onebit-adam with --param deepspeed_compat=true"),
    (["onebit-adam", "--param", "deepspeed_compat=true", "--dtype", "float64"], "trains in float32"),
])
def test_deepspeed_backend_refuses_what_it_cannot_run(capsys, tmp_path, args, message):
    code, err = run_cli(capsys, "run", *args, "--workload", "digits-mlp", "--backend", "deepspeed",
                        "--out", str(tmp_path / "run"))
    assert code == 2 and message in err


def test_missing_deepspeed_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepspeed", None)
    with pytest.raises(ThinwireError, match=r"pip install '\.\[deepspeed\]'"):
        deepspeed_backend.import_deepspeed()


def test_deepspeed_without_one_bit_optimizers_names_the_version(monkeypatch):
    fake = type(sys)("deepspeed")
    fake.__version__ = "0.19.8"
    monkeypatch.setitem(sys.modules, "deepspeed", fake)
    monkeypatch.setattr(deepspeed_backend.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ThinwireError, match=r"0\.19\.8 has no 1-bit optimizers.*deepspeed==0\.19\.6"):
        deepspeed_backend.import_deepspeed()


def test_cpu_packer_is_msb_first_with_bit_one_for_non_negative():
    import torch

    x = torch.tensor([1.0, -2.0, 0.0, -0.0, 3.0, -1.0, -1.0, 2.0, -5.0])
    packed = NumpyPacker.packbits(x, x.numel(), 0)
    assert packed.tolist() == [0b10111001, 0b00000000]
    assert NumpyPacker.unpackbits(packed, 2, 0)[:9].tolist() == [1, -1, 1, 1, 1, -1, -1, 1, -1]


DENSE = 50 * 8  # the float64 gradient all-reduced in warm-up (freeze_step 5)


def test_default_mode_sends_dense_then_one_all_to_all_and_one_all_gather(tmp_path):
    calls = method_log(sim_run(case("onebit-adam"), tmp_path))
    dense, compressed = calls[calls["step"] < 5], calls[calls["step"] >= 5]
    assert (dense["op"] == "all_reduce").all() and (dense["sent"] == DENSE).all() and len(dense) == 5
    # d = 50 on 2 ranks: chunks of 32 coordinates = 4 bytes of sign bits, each with an 8-byte scale.
    assert list(compressed["op"]) == ["all_to_all", "all_gather_shards"] * 15
    assert list(compressed["sent"]) == [2 * (4 + 8), 4 + 8] * 15


def test_deepspeed_mode_sends_its_initialising_step_and_four_collectives_per_tensor(tmp_path):
    calls = method_log(sim_run(case("onebit-adam-deepspeed-compat"), tmp_path))
    # 50 coordinates padded to a multiple of 2 lcm(2, 8) = 16: 64, chunks of 32.
    per_tensor = [("all_to_all", 8), ("all_gather", 8), ("all_gather", 4), ("all_gather", 8)]
    assert list(zip(calls.loc[calls["step"] == 0, "op"], calls.loc[calls["step"] == 0, "sent"])) == \
        [("all_reduce", DENSE), *per_tensor]
    for t in range(1, 5):
        assert list(calls.loc[calls["step"] == t, "sent"]) == [DENSE]
    for t in range(5, 20):
        assert list(zip(calls.loc[calls["step"] == t, "op"], calls.loc[calls["step"] == t, "sent"])) == per_tensor
