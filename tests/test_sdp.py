"""Sharded data parallelism with SDP4Bit's compression (algorithms/sdp.py, algorithms/sdp_quant.py):
the quantizer and Hadamard transform, equivalence of uncompressed sharding with dense AdamW, the bytes
of every variant against the stated formula, bad input, and the paper's counterexample (P8)."""

import math

import array_api_compat.numpy as xp_np
import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from conformance import Case, case, params, run_batch, sim_run
from launch import assert_same_run, method_log, read_run
from simulate import simulate
from thinwire.algorithms.comm import CommLog, ThinwireError
from thinwire.algorithms.registry import get_method, make_config
from thinwire.algorithms.sdp_quant import hadamard, symmetric
from thinwire.simulators.problems import PROBLEMS, ProblemConfig
from thinwire.simulators.simcomm import SimComm

ADAMW = {"lr": 0.05, "beta1": 0.9, "beta2": 0.95, "weight_decay": 0.1}


@pytest.mark.parametrize("k,group", [(4, 2048), (8, 128), (2, 7), (4, 128)])
def test_quantizer_payload_levels_and_rounding_error(k, group):
    q, n = symmetric(k, group), 5000
    x = np.random.default_rng(0).standard_normal((3, n))
    payload = q.compress(x)
    assert payload.shape == (3, 4 * math.ceil(n / group) + math.ceil(n * k / 8))
    xh = q.decompress(payload, n, x.dtype)
    levels = 2 ** (k - 1) - 1
    scale = np.concatenate([np.repeat(np.abs(b).max(axis=-1, keepdims=True), b.shape[-1], axis=-1)
                            for b in np.array_split(x, np.arange(group, n, group), axis=-1)], axis=-1)
    np.testing.assert_allclose(np.round(xh / scale * levels), xh / scale * levels, atol=1e-5)  # on the grid
    assert (np.abs(xh - x) <= scale / (2 * levels) * (1 + 1e-6)).all()  # round to nearest


def test_four_bit_codes_are_two_per_byte():
    q = symmetric(4, 4)
    payload = q.compress(np.array([1.0, -1.0, 0.0, 0.5]))
    # scale 1 (float32), then codes x_int + 7 = 14, 0, 7, 11 (0.5 * 7 = 3.5 rounds half down to 3 -> 10).
    assert payload[4:].tolist() == [14 | 0 << 4, 7 | 10 << 4]


def test_stochastic_rounding_is_unbiased():
    q = symmetric(4, 16)
    x = np.random.default_rng(1).standard_normal(16)
    u = np.random.default_rng(2).random((20000, 16))
    mean = q.decompress(q.compress(np.broadcast_to(x, u.shape), u), 16, x.dtype).mean(axis=0)
    step = np.abs(x).max() / 7
    assert np.abs(mean - x).max() < 5 * step / math.sqrt(4 * 20000)


def test_hadamard_is_the_orthonormal_block_transform_and_its_own_inverse():
    x = np.random.default_rng(3).standard_normal((2, 96))
    h = hadamard(x, 32)
    expected = (x.reshape(2, 3, 32) @ scipy.linalg.hadamard(32).T / math.sqrt(32)).reshape(2, 96)
    np.testing.assert_allclose(h, expected, atol=1e-12)
    np.testing.assert_allclose(hadamard(h, 32), x, atol=1e-12)


@pytest.mark.parametrize("workers,ranks_per_node", [(3, 0), (4, 2)])
def test_uncompressed_sharded_adamw_is_dense_adamw(workers, ranks_per_node):
    dense = simulate("adam", ADAMW, workers=workers, steps=30)
    sharded = simulate("sdp", {**ADAMW, "ranks_per_node": ranks_per_node}, workers=workers, steps=30)
    np.testing.assert_allclose(sharded.x, dense.x, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sharded.losses, dense.losses, rtol=1e-12)
    ops = pd.DataFrame(sharded.comm.log.rows(), columns=CommLog.COLUMNS)["op"]
    assert ops.tolist() == ["reduce_scatter", "all_gather_shards"] * 30


def _one_step_log(params: dict, workers: int = 4, dim: int = 4 * 4096) -> pd.DataFrame:
    cls = get_method("sdp")
    prob = PROBLEMS["lsq"](workers, 0, ProblemConfig(dim=dim, samples_per_worker=16, batch_size=4))
    method = cls(make_config(cls, params), prob.layout)
    comm = SimComm(workers, xp_np)
    x = np.zeros((workers, dim))
    state = method.init_state(x, comm)
    method.step(x, state, prob.oracle(xp_np, None, "float64"), comm)
    log = pd.DataFrame(comm.log.rows(), columns=CommLog.COLUMNS)
    assert log["sent"].sum() * 8 / dim == method.bits_per_parameter(64, 0)
    return log


@pytest.mark.parametrize("grads", ["tlq", "tlq-hs", "ulq"])
@pytest.mark.parametrize("weights", ["qw", "qwd"])
def test_bytes_per_rank_are_the_stated_bits(weights, grads):
    """2 nodes x 2 ranks, d = 16384, shards of 4096: weights 4 + 32/2048 bits, gradients 8 + 32/128
    (4 + 32/128 for ULq) on the whole tensor intra-node and 4 + 32/128 on 1/N of it inter-node."""
    d = 4 * 4096
    log = _one_step_log({"weights": weights, "grads": grads, "ranks_per_node": 2})
    assert log["op"].tolist() == ["all_to_all", "all_to_all", "all_gather_shards"]
    assert log["group_size"].tolist() == [2, 2, 4]
    intra, inter, weight = log["sent"] * 8
    assert intra / d == (4.25 if grads == "ulq" else 8.25)
    assert inter / (d // 2) == 4.25
    assert weight / (d // 4) == 4.015625


def test_uncompressed_bytes_are_the_value_width():
    log = _one_step_log({"ranks_per_node": 2})
    assert log["op"].tolist() == ["reduce_scatter", "all_gather_shards"]
    assert log["sent"].tolist() == [4 * 4096 * 8, 4096 * 8]


@pytest.mark.parametrize("params,message", [
    ({"ranks_per_node": 3}, "not divisible into nodes of ranks_per_node=3"),
    ({"grads": "tlq-hs", "grad_group": 48}, "grad_group 48 must be a multiple of hadamard_block 32"),
    ({"weight_bits": 9}, "weight_bits must be an integer in 2..8"),
    ({"intra_bits": 1}, "intra_bits must be an integer in 2..8"),
    ({"hadamard_block": 24}, "hadamard_block must be a power of two"),
    ({"weights": "q4"}, "weights must be one of full, qw, qwd"),
])
def test_bad_input_is_refused_before_training(params, message):
    with pytest.raises(ThinwireError, match=message):
        simulate("sdp", params, workers=4, steps=1)


def _counterexample(params: dict) -> np.ndarray:
    """f(w) = |w|^2 from (1, -1), SGD at lr 0.1 < 0.125, the nearest ternary quantizer q(w) =
    round(w / s) s, s = max|w| (2 bits, one group of both values); eval loss |w|^2 per step."""
    from thinwire.runner import train

    prob = PROBLEMS["sdp4bit-counterexample"](1, 0, ProblemConfig())
    cls = get_method("sdp")
    method = cls(make_config(cls, {"optimizer": "sgd", "lr": 0.1, "weight_bits": 2, "weight_group": 2,
                                   "rounding": "nearest", **params}), prob.layout)
    traj = train(method, prob.x0()[None], prob.oracle(xp_np, None, "float64"), SimComm(1, xp_np), prob, 100,
                 simulated=True, eval_every=1, progress=False)
    return np.array([r[2] for r in traj.rows])


def test_counterexample_quantized_weights_stall_and_weight_differences_converge():
    stalled = _counterexample({"weights": "qw", "master_weights": False})
    assert (stalled == 2.0).all()  # w stays (1, -1)
    converged = _counterexample({"weights": "qwd"})
    assert converged[-1] < 1e-12
    # q of a difference with one nonzero coordinate is exact up to its float32 scale: qWD follows
    # uncompressed SGD here.
    np.testing.assert_allclose(converged, _counterexample({}), rtol=1e-5)


@pytest.mark.parametrize("name, ops", [("sdp", ["all_to_all", "all_gather_shards"]),
                                       ("sdp-qw-tlq", ["all_to_all", "all_gather_shards"]),
                                       ("sdp-full", ["reduce_scatter", "all_gather_shards"])])
def test_one_gradient_and_one_weight_collective_per_step(tmp_path, name, ops):
    """qWD + TLq-HS (tiny), qW + TLq, and the uncompressed baseline (cases of tests/conformance.py)."""
    run = sim_run(case(name), tmp_path)
    assert method_log(run)["op"].tolist() == ops * len(run.trajectory)


def test_four_ranks_as_two_nodes_of_two(tmp_path):
    """2 nodes x 2 ranks (both all-to-all levels) with qWD and TLq-HS or ULq under gloo, both in one torchrun
    job: the simulator's trajectory and bytes, call by call."""
    four = {f"sdp-4-{grads}": Case("sdp", (*case("sdp-qw-tlq").args, *params(ranks_per_node=2, weights="qwd",
                                                                              grads=grads)))
            for grads in ("tlq-hs", "ulq")}
    proc = run_batch("gloo", four, {name: tmp_path / name / "gloo" for name in four}, tmp_path, nproc=4)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, c in four.items():
        sim, gloo = sim_run(c, tmp_path / name / "sim", workers=4), read_run(tmp_path / name / "gloo")
        assert_same_run(sim, gloo, "gloo")
        assert method_log(sim)["group_size"].tolist()[:3] == [2, 2, 4]
