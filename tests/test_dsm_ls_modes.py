"""dsm-ls (randomized sign) and slowmo in the simulator, under torchrun/gloo and under mpiexec: the same
trajectory, the same bytes, and those bytes are the stated bits.

Local AdamW with clipping, a warm-up then a cosine (so every global step divides by a different lr),
tau 4 on 2 ranks, float64: the parameters are all-reduced at steps 3, 7, 11, 15, 19 and nothing is
sent between. The randomized sign's uniforms must come out the same on every rank. Four launches in
all; the simulators run in this process.
"""

import pytest
from launch import assert_modes_agree, method_log, three_modes

LOGREG = ["--workload", "logreg", "--wparam", "dim=50", "--wparam", "heterogeneity=0.5"]
SCHEDULE = {"lr": 0.05, "tau": 4, "schedule": "cosine", "warmup_steps": 4, "decay_steps": 20, "min_lr": 0.005}
RUNS = {"dsm-ls": {**SCHEDULE, "sign": "randomized", "sign_bound": 2.0, "seed": 1},
        "slowmo": {**SCHEDULE, "slow_momentum": 0.5}}
COMMON = ["--steps", "20", "--dtype", "float64", "--eval-every", "1", "--quiet", "--seed", "3", *LOGREG]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dsm-ls-modes")
    return {method: three_modes(method, [*COMMON, *[a for k, v in params.items() for a in ("--param", f"{k}={v}")]],
                                root / method)
            for method, params in RUNS.items()}


@pytest.mark.parametrize("method", list(RUNS))
def test_sim_gloo_and_mpi_agree(runs, method):
    assert_modes_agree(runs[method])


@pytest.mark.parametrize("method", list(RUNS))
def test_one_parameter_all_reduce_per_period(runs, method):
    calls = method_log(runs[method]["sim"])
    assert list(calls["op"]) == ["all_reduce"] * 5
    assert list(calls["step"]) == [3, 7, 11, 15, 19]
    assert (calls["sent"] == 50 * 8).all() and (calls["recv"] == 50 * 8).all()
