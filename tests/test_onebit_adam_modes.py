"""onebit-adam in the simulator, under torchrun/gloo and under mpiexec: the same trajectory, the same
bytes, call by call, and those bytes are the stated bits, in both modes (thinwire's default and
deepspeed_compat). Four launches in all; the simulators run in this process.
"""

import pytest
from launch import assert_modes_agree, method_log, three_modes

LOGREG = ["--workload", "logreg", "--wparam", "dim=50", "--wparam", "heterogeneity=0.5"]
COMMON = ["--steps", "20", "--dtype", "float64", "--eval-every", "1", "--quiet", "--seed", "3", *LOGREG,
          "--param", "lr=0.05", "--param", "freeze_step=5"]
MODES = {"default": [], "deepspeed": ["--param", "deepspeed_compat=true"]}
DENSE = 50 * 8  # the float64 gradient all-reduced in warm-up


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("onebit-adam-modes")
    return {mode: three_modes("onebit-adam", [*COMMON, *extra], root / mode) for mode, extra in MODES.items()}


@pytest.mark.parametrize("mode", list(MODES))
def test_sim_gloo_and_mpi_agree(runs, mode):
    assert_modes_agree(runs[mode])


def test_default_mode_sends_dense_then_one_all_to_all_and_one_all_gather(runs):
    calls = method_log(runs["default"]["sim"])
    dense, compressed = calls[calls["step"] < 5], calls[calls["step"] >= 5]
    assert (dense["op"] == "all_reduce").all() and (dense["sent"] == DENSE).all() and len(dense) == 5
    # d = 50 on 2 ranks: chunks of 32 coordinates = 4 bytes of sign bits, each with an 8-byte scale.
    assert list(compressed["op"]) == ["all_to_all", "all_gather_shards"] * 15
    assert list(compressed["sent"]) == [2 * (4 + 8), 4 + 8] * 15


def test_deepspeed_mode_sends_its_initialising_step_and_four_collectives_per_tensor(runs):
    calls = method_log(runs["deepspeed"]["sim"])
    # 50 coordinates padded to a multiple of 2 lcm(2, 8) = 16: 64, chunks of 32.
    per_tensor = [("all_to_all", 8), ("all_gather", 8), ("all_gather", 4), ("all_gather", 8)]
    assert list(zip(calls.loc[calls["step"] == 0, "op"], calls.loc[calls["step"] == 0, "sent"])) == \
        [("all_reduce", DENSE), *per_tensor]
    for t in range(1, 5):
        assert list(calls.loc[calls["step"] == t, "sent"]) == [DENSE]
    for t in range(5, 20):
        assert list(zip(calls.loc[calls["step"] == t, "op"], calls.loc[calls["step"] == t, "sent"])) == per_tensor
