"""zero-one-adam in the simulator, under torchrun/gloo and under mpiexec (2 ranks, float64): the same
trajectory, the same bytes call by call, and those bytes are the stated bits, through all four kinds of
step (dense variance update, 1-bit gradient, local step, synchronisation). Two launches; the simulator
runs in this process."""

import pytest
from launch import assert_modes_agree, method_log, three_modes

PARAMS = {"lr": 0.05, "var_freeze_step": 8, "var_update_scaler": 2, "local_step_scaler": 2, "local_step_clipper": 4}
ARGS = ["--steps", "24", "--dtype", "float64", "--eval-every", "1", "--quiet", "--seed", "3", "--workload", "logreg",
        "--wparam", "dim=50", "--wparam", "heterogeneity=0.5",
        *[a for k, v in PARAMS.items() for a in ("--param", f"{k}={v}")]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return three_modes("zero-one-adam", ARGS, tmp_path_factory.mktemp("zero-one-adam-modes"))


def test_sim_gloo_and_mpi_agree(runs):
    assert_modes_agree(runs)


def test_the_schedule_is_on_the_wire(runs):
    """Steps s = t + 1 (see test_zero_one_adam.test_schedule_by_hand): dense at s = 1, 2, 4, 6, 8; 1-bit
    gradients at 3, 5, 7; then synchronisations at 9, 10, 12, 16, 20, 24 and silence in between."""
    calls = method_log(runs["sim"])
    per_step = calls.groupby("step")["op"].apply(tuple).to_dict()
    onebit = ("all_to_all", "all_gather_shards")
    assert {s + 1 for s, ops in per_step.items() if ops == ("all_reduce",)} == {1, 2, 4, 6, 8}
    assert {s + 1 for s, ops in per_step.items() if ops == onebit} == {3, 5, 7, 9, 10, 12, 16, 20, 24}
    assert len(per_step) == 14
