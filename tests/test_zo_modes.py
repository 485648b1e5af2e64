"""The zeroth-order proximal methods in the simulator, under torchrun/gloo and under mpiexec: the same
trajectory, the same bytes, and those bytes are the stated bits.

Random-direction estimators, so the per-worker directions (seed, step, worker) and each rank's draws
of its own shard must match across modes; ZO-ProxSVRG's snapshot steps all-reduce a second d-vector.
Two methods, two launches each; the simulators run in this process.
"""

import pandas as pd
import pytest
from launch import assert_modes_agree, method_log, three_modes

DIM = 20
SIGMOID = ["--workload", "sigmoid", "--wparam", f"dim={DIM}", "--wparam", "samples_per_worker=64",
           "--wparam", "l2=0", "--wparam", "heterogeneity=0.5"]
COMMON = ["--steps", "12", "--dtype", "float64", "--eval-every", "1", "--quiet", "--seed", "3", *SIGMOID]
RUNS = {
    "zo-proxsvrg": {"lr": 0.1, "estimator": "sphere", "batch": 8, "epoch": 5, "l1": 0.01, "l2": 0.01, "seed": 1},
    "zo-proxsaga": {"lr": 0.5, "estimator": "gauss", "batch": 8, "l1": 0.01, "seed": 1},
}
FULL_PASS_STEPS = {"zo-proxsvrg": [0, 5, 10], "zo-proxsaga": [0]}


@pytest.fixture(scope="module", params=sorted(RUNS))
def runs(request, tmp_path_factory):
    args = [*COMMON, *[a for k, v in RUNS[request.param].items() for a in ("--param", f"{k}={v}")]]
    root = tmp_path_factory.mktemp(request.param)
    return request.param, three_modes(request.param, args, root), root


def test_sim_gloo_and_mpi_agree(runs):
    assert_modes_agree(runs[1])


def test_one_d_vector_a_step_and_one_more_at_a_full_pass(runs):
    name, modes, _ = runs
    log = method_log(modes["sim"])
    assert set(log["op"]) == {"all_reduce"}
    assert (log["sent"] == DIM * 8).all() and (log["recv"] == DIM * 8).all()
    calls = log.groupby("step").size()
    assert list(calls[calls == 2].index) == FULL_PASS_STEPS[name] and set(calls) == {1, 2}
    assert len(calls) == 12


def test_queries_per_worker_are_traced_every_step(runs):
    """Each worker queries its own 64 samples at a full pass, and 2 x 8 samples at x and at the
    snapshot / table otherwise: 2 function values a sample with either random-direction estimator."""
    name, _, root = runs
    expected = [64 * 2 * (t in FULL_PASS_STEPS[name]) + 2 * 8 * 2 for t in range(12)]
    for mode in ("sim", "gloo", "mpi"):
        trace = pd.read_csv(root / mode / "trace.csv").query("name == 'queries'")
        assert list(trace["step"]) == list(range(12)) and list(trace["value"]) == expected, mode
