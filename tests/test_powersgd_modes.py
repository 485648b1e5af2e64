"""PowerSGD on real ranks: the simulator, gloo and MPI (2 ranks) follow the same trajectory, log the
same calls, and every step's bytes are the stated bits: the dense all-reduce of the first steps, then
the uncompressed tensors, the Ps and the Qs. Rank 2 with Gram-Schmidt and warm start; rank 4 with the
hook's QR, fresh draws of Q every step and weight decay."""

import pytest
from launch import assert_modes_agree, method_log, three_modes

COMMON = ["--workload", "digits-mlp", "--wparam", "hidden=16", "--steps", "20", "--dtype", "float64",
          "--eval-every", "1", "--quiet", "--seed", "3", "--param", "lr=0.2", "--param", "start_powersgd_iter=3"]
RUNS = {
    "rank2": ["--param", "rank=2"],
    "rank4-compat": ["--param", "rank=4", "--param", "ddp_compat=true", "--param", "warm_start=false",
                     "--param", "weight_decay=0.001"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("powersgd_modes")
    return {name: three_modes("powersgd", [*COMMON, *args], root / name) for name, args in RUNS.items()}


@pytest.mark.parametrize("name", list(RUNS))
def test_sim_gloo_and_mpi_agree(runs, name):
    assert_modes_agree(runs[name])


def test_three_all_reduces_after_the_dense_steps(runs):
    log = method_log(runs["rank2"]["sim"])
    assert (log.query("step < 3")["sent"] == 1210 * 8).all() and len(log.query("step < 3")) == 3
    # rank 2: the biases (26 values), the Ps (2 (16 + 10)), the Qs (2 (64 + 16)), in float64
    assert log.query("step == 3")["sent"].tolist() == [26 * 8, 52 * 8, 160 * 8]
    # rank 4: the 10 x 16 weight is sent whole with the biases; one matrix left
    assert method_log(runs["rank4-compat"]["sim"]).query("step == 3")["sent"].tolist() == [186 * 8, 64 * 8, 256 * 8]
