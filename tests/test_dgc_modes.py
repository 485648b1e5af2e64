"""DGC's variable-size messages on real ranks: with the sampled threshold and the paper's run-length
format, the simulator, gloo and MPI (2 ranks) follow the same trajectory, log the same calls, and
every step's bytes are the stated bits of what that step selected."""

import pytest
from launch import assert_modes_agree, method_log, three_modes

COMMON = ["--steps", "20", "--dtype", "float64", "--eval-every", "1", "--quiet", "--seed", "3"]
PAPER = ["--param", "wire=fp32-rl16"]
RUNS = {
    # Sampling really happens here (stride 9 over the 1,024-weight layer) and the warm-up changes k.
    "sampled": ["--workload", "digits-mlp", "--wparam", "hidden=16", "--param", "lr=0.2", "--param", "density=0.02",
                "--param", "threshold=sampled", "--param", "warmup_steps=8", *PAPER],
    # k = 3 of 140,000 weights: runs of 65535 coordinates and more are common, so escapes cross the wire.
    "escapes": ["--workload", "logreg", "--wparam", "dim=140000", "--wparam", "samples_per_worker=16",
                "--wparam", "batch_size=8", "--param", "lr=20", "--param", "density=2e-5", *PAPER],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dgc_modes")
    return {name: three_modes("dgc", [*COMMON, *args], root / name) for name, args in RUNS.items()}


@pytest.mark.parametrize("name", list(RUNS))
def test_sim_gloo_and_mpi_agree(runs, name):
    assert_modes_agree(runs[name])


def test_messages_are_the_selected_entries_and_escapes(runs):
    sampled = method_log(runs["sampled"]["sim"]).query("op == 'all_gather_v'")
    assert len(sampled) == 20 and sampled["sent"].nunique() > 1  # sizes follow the data and the warm-up
    escapes = method_log(runs["escapes"]["sim"]).query("op == 'all_gather_v'")
    assert (escapes["sent"] >= 4 + 3 * 6).all()  # count, then 3 entries of a float32 and a run length
    assert (escapes["sent"] > 4 + 3 * 6).any()  # and some steps needed escapes
