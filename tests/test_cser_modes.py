"""CSER and QSparse-local-SGD in the simulator (2 workers, in process), under torchrun/gloo and under
mpiexec (2 ranks): the same trajectory, the same bytes, and those bytes are the stated bits.

Four launches in all (two methods x two real backends). The splits put blocks inside the 1 x 50
weight and `layer` = 2 on C1, so some steps send nothing and the block sizes vary (10 or 25 values).
"""

import pytest
from launch import assert_modes_agree, method_log, three_modes

RUNS = {"cser": {"lr": 0.2, "R1": 10, "split1": "2x1x5", "R2": 2, "split2": "out", "H": 4, "seed": 5},
        "qsparse-local-sgd": {"lr": 0.2, "R": 5, "split": "out", "H": 2, "seed": 5}}
COMMON = ["--steps", "20", "--dtype", "float64", "--eval-every", "1", "--quiet", "--seed", "3",
          "--workload", "logreg", "--wparam", "dim=50"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cser-modes")
    return {method: three_modes(method, [*COMMON, *[a for k, v in params.items() for a in ("--param", f"{k}={v}")]],
                                root / method) for method, params in RUNS.items()}


@pytest.mark.parametrize("method", list(RUNS))
def test_sim_gloo_and_mpi_agree(runs, method):
    assert_modes_agree(runs[method])


@pytest.mark.parametrize("method", list(RUNS))
def test_bytes_are_block_values_only(runs, method):
    calls = method_log(runs[method]["sim"])
    assert set(calls["op"]) == {"all_reduce"} and (calls["sent"] % 8 == 0).all()
    per_step = calls.groupby("step")["sent"].sum().reindex(range(20), fill_value=0)
    # float64 block values, nothing else: a block of the 1 x 50 weight holds 10 (out = 5) or 25 (R2 = 2)
    assert set(calls["sent"] // 8) <= {10, 25}
    assert (per_step == 0).any() and (per_step > 0).any()  # steps without a block send nothing
