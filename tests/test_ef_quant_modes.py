"""ef-quant in the simulator, under torchrun/gloo and under mpiexec: the same trajectory, the same bytes.

One stochastic quantizer (QSGD: uniforms drawn per worker and step must match across modes) and one
deterministic (BinGrad: Lloyd's iteration must reach the same levels in numpy and torch). Four launches
in all; the simulator runs in this process.
"""

import pytest
from launch import assert_modes_agree, method_log, three_modes

LOGREG = ["--workload", "logreg", "--wparam", "dim=50", "--wparam", "heterogeneity=0.5"]
COMMON = ["--steps", "20", "--dtype", "float64", "--eval-every", "1", "--quiet", "--seed", "3", *LOGREG,
          "--param", "lr=0.5", "--param", "bucket_size=16"]
# d = 50 in buckets of 16, 16, 16, 2: 4 buckets.
# qsgd, s = 2: 4 float32 norms + 50 codes of ceil(log2 3) + 1 = 3 bits -> 16 + 19 = 35 bytes.
# bingrad: 4 x 2 float32 levels + 50 codes of 1 bit -> 32 + 7 = 39 bytes.
RUNS = {"qsgd": (["--param", "quantizer=qsgd", "--param", "levels=2"], 35),
        "bingrad": (["--param", "quantizer=bingrad"], 39)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ef-quant-modes")
    return {q: three_modes("ef-quant", [*COMMON, *params], root / q) for q, (params, _) in RUNS.items()}


@pytest.mark.parametrize("quantizer", list(RUNS))
def test_sim_gloo_and_mpi_agree(runs, quantizer):
    assert_modes_agree(runs[quantizer])


@pytest.mark.parametrize("quantizer", list(RUNS))
def test_one_payload_of_the_formula_size_per_step(runs, quantizer):
    calls = method_log(runs[quantizer]["sim"])
    assert list(calls["op"].unique()) == ["all_gather"] and len(calls) == 20
    assert (calls["sent"] == RUNS[quantizer][1]).all() and (calls["recv"] == 2 * RUNS[quantizer][1]).all()
