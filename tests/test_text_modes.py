"""The text workloads in the simulator (2 workers, in process), under torchrun/gloo and under mpiexec
(2 ranks), float64: the same trajectory, the same bytes, and those bytes are the stated bits.

Four launches: DGC on a tiny text-lstm (sparsified embedding and LSTM matrices, dense biases, a
warm-up that changes k) and dense momentum SGD on a tiny text-gpt.
"""

import pytest
from launch import assert_modes_agree, method_log, three_modes

TINY = {"text-lstm": ["--wparam", "width=8", "--wparam", "seq_len=8", "--wparam", "batch_size=2",
                      "--wparam", "eval_bytes=1024"],
        "text-gpt": ["--wparam", "width=16", "--wparam", "layers=1", "--wparam", "heads=2", "--wparam", "seq_len=8",
                     "--wparam", "batch_size=2", "--wparam", "eval_bytes=1024"]}
RUNS = {"dgc": ["--workload", "text-lstm", *TINY["text-lstm"], "--param", "lr=1.0", "--param", "density=0.05",
                "--param", "warmup_steps=4"],
        "sgd": ["--workload", "text-gpt", *TINY["text-gpt"], "--param", "lr=0.5", "--param", "momentum=0.9"]}
COMMON = ["--steps", "8", "--dtype", "float64", "--eval-every", "1", "--quiet", "--seed", "3"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("text-modes")
    return {method: three_modes(method, [*COMMON, *args], root / method) for method, args in RUNS.items()}


@pytest.mark.parametrize("method", list(RUNS))
def test_sim_gloo_and_mpi_agree(runs, method):
    assert_modes_agree(runs[method])


def test_dgc_sends_sparse_matrices_and_dense_biases(runs):
    sim = runs["dgc"]["sim"]
    calls = method_log(sim)
    assert set(calls["op"]) == {"all_gather", "all_reduce"}
    # After the warm-up: k = ceil(0.05 numel) of the embedding (256 x 8) and the four LSTM matrices
    # (32 x 8), as int32 index + float32 value; the 2 x 2 x 32 LSTM biases and the 256 decoder
    # biases as float64.
    last = calls[calls["step"] == 7].set_index("op")["sent"]
    assert last["all_gather"] == (103 + 4 * 13) * 8 and last["all_reduce"] == (4 * 32 + 256) * 8
    assert sim.meta["n_params"] == 256 * 8 + 4 * 32 * 8 + 4 * 32 + 256
    assert sim.meta["workload_provenance"]["corpus_sha256"] == runs["dgc"]["mpi"].meta["workload_provenance"]["corpus_sha256"]
