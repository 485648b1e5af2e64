"""saef with step ahead and error averaging in the simulator, under torchrun/gloo and under mpiexec: the
same trajectory, the same bytes, and those bytes are the stated bits.

QSGD as the compressor, so the per-worker uniforms (seed, worker, step) must match across modes; every
rank takes its gradient at its own x - e_i, and the errors are all-reduced every 4 steps. Two launches
in all; the simulator runs in this process.
"""

import pytest
from launch import assert_modes_agree, method_log, three_modes

LOGREG = ["--workload", "logreg", "--wparam", "dim=50", "--wparam", "heterogeneity=0.5"]
PARAMS = {"lr": 0.5, "compressor": "qsgd", "levels": 2, "bucket_size": 16, "step_ahead": "true",
          "error_average_every": 4, "seed": 1}
COMMON = ["--steps", "20", "--dtype", "float64", "--eval-every", "1", "--quiet", "--seed", "3", *LOGREG,
          *[a for k, v in PARAMS.items() for a in ("--param", f"{k}={v}")]]
# qsgd, s = 2, d = 50 in buckets of 16, 16, 16, 2: 4 float32 norms + 50 codes of 3 bits -> 16 + 19 bytes.
PAYLOAD = 35
ERRORS = 50 * 8  # the float64 errors, all-reduced at steps 3, 7, 11, 15, 19
AVERAGING_STEPS = [3, 7, 11, 15, 19]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return three_modes("saef", COMMON, tmp_path_factory.mktemp("saef-modes"))


def test_sim_gloo_and_mpi_agree(runs):
    assert_modes_agree(runs)


def test_bytes_are_the_payload_plus_the_error_average(runs):
    sim = method_log(runs["sim"])
    gathers, reduces = sim[sim["op"] == "all_gather"], sim[sim["op"] == "all_reduce"]
    assert set(sim["op"]) == {"all_gather", "all_reduce"}
    assert list(gathers["step"]) == list(range(20))
    assert (gathers["sent"] == PAYLOAD).all() and (gathers["recv"] == 2 * PAYLOAD).all()
    assert list(reduces["step"]) == AVERAGING_STEPS
    assert (reduces["sent"] == ERRORS).all() and (reduces["recv"] == ERRORS).all()
    stated = runs["sim"].trajectory.set_index("step")["stated_bits"]
    assert stated[3] == (PAYLOAD + ERRORS) * 8 / 50 and stated[4] == PAYLOAD * 8 / 50
