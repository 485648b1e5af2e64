"""LARS and CLARS on real ranks: the simulator, gloo and MPI (2 ranks, float64) follow the same
trajectory, log the same calls (CLARS: the gradient and one norm per weight tensor in one all-reduce),
and record the same per-layer learning rates (trace.csv)."""

import pandas as pd
import pytest
from launch import assert_modes_agree, method_log, three_modes

COMMON = ["--workload", "digits-mlp", "--wparam", "hidden=16", "--wparam", "batch_size=16", "--steps", "12",
          "--dtype", "float64", "--eval-every", "1", "--seed", "2", "--param", "lr=0.4", "--param", "trust=0.05"]
RUNS = {"lars": ["--param", "warmup_steps=4"], "clars": ["--param", "norms=per_example"]}
N_PARAMS = 64 * 16 + 16 + 16 * 10 + 10


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("lars_modes")


@pytest.fixture(scope="module")
def runs(root):
    return {name: three_modes(name, [*COMMON, *args], root / name) for name, args in RUNS.items()}


@pytest.mark.parametrize("name", list(RUNS))
def test_sim_gloo_and_mpi_agree(runs, name):
    assert_modes_agree(runs[name])


@pytest.mark.parametrize("name", list(RUNS))
def test_layer_lrs_agree_across_modes(runs, root, name):
    traces = {mode: pd.read_csv(root / name / mode / "trace.csv") for mode in runs[name]}
    sim = traces["sim"]
    assert set(sim["name"]) == {"lr:net.0.weight", "lr:net.2.weight"} and len(sim) == 2 * 12
    for mode in ("gloo", "mpi"):
        pd.testing.assert_frame_equal(traces[mode][["step", "name"]], sim[["step", "name"]])
        assert (traces[mode]["value"] - sim["value"]).abs().max() <= 1e-9


def test_clars_sends_one_extra_value_per_weight_tensor(runs):
    for name, extra in (("lars", 0), ("clars", 2)):
        log = method_log(runs[name]["gloo"])
        assert (log["op"] == "all_reduce").all() and (log["sent"] == 8 * (N_PARAMS + extra)).all()
    ratios = runs["clars"]["sim"].meta["diagnostics"]
    assert ratios["lr_ratio_to_lars_max"] <= 1 + 1e-12 and ratios["lr_ratio_to_lars_min"] < 1
