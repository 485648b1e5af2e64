"""PowerSGD's laws in the simulator: a rank-1 step computed by hand, the error-feedback invariant, the
hook's compression rule and the stated bits, and ddp_compat changing nothing but rounding."""

import array_api_compat.numpy as xp
import numpy as np
import pytest
from conformance import case, sim_run
from launch import method_log
from thinwire.algorithms.comm import ThinwireError
from thinwire.algorithms.powersgd import gram_schmidt, should_compress
from thinwire.algorithms.registry import get_method, make_config
from thinwire.simulators.simcomm import SimComm

MLP = (("0.weight", (16, 64)), ("0.bias", (16,)), ("2.weight", (10, 16)), ("2.bias", (10,)))


def method(layout, **params):
    cls = get_method("powersgd")
    return cls(make_config(cls, {"lr": 1.0, "momentum": 0.0, **params}), layout)


def fixed(grads):
    """An oracle that returns the given per-worker gradients, one array per call, in turn."""
    it = iter(grads)
    return lambda x: (xp.zeros(x.shape[:-1]), next(it))


def test_rank_one_step_by_hand():
    # Two workers, one 2 x 3 matrix. Their mean M = [[1.5, 0, 0], [0, 2, 0]]; with Q = (1, 1, 0) / sqrt 2:
    # P = M Q ~ (1.5, 2) -> orthonormal (0.6, 0.8); Q = M^T P = (0.9, 1.6, 0); M_hat = P Q^T.
    m = method((("w", (2, 3)),), min_compression_rate=0.0)
    comm = SimComm(2, xp)
    x = xp.zeros((2, 6))
    state = m.init_state(x, comm)
    state["q"] = [xp.asarray(np.broadcast_to(np.array([[1.0], [1.0], [0.0]]) / np.sqrt(2), (2, 3, 1)))]
    g = xp.asarray(np.array([[3.0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 4.0, 0]]))
    new_x, new, _ = m.step(x, state, fixed([g]), comm)
    m_hat = np.array([0.54, 0.96, 0, 0.72, 1.28, 0])
    np.testing.assert_allclose(-new_x, np.stack([m_hat, m_hat]), atol=1e-12)
    np.testing.assert_allclose(new["error"], g - m_hat, atol=1e-12)
    np.testing.assert_allclose(new["q"][0][0, :, 0], [0.9, 1.6, 0], atol=1e-12)
    assert [r.sent for r in comm.log.records] == [2 * 8, 3 * 8]  # P, then Q: (n + m) r values


def test_error_feedback_invariant_and_dense_coordinates():
    """Every step, per worker: new error + aggregate = old error + gradient on the compressed matrices
    (nothing lost, only delayed); the vectors are averaged exactly and keep no error."""
    rng = np.random.default_rng(0)
    m = method(MLP, rank=2)
    comm = SimComm(3, xp)
    x = xp.zeros((3, m.n_params))
    state = m.init_state(x, comm)
    bias = np.zeros(m.n_params, dtype=bool)
    bias[1024:1040] = bias[1200:] = True
    for _ in range(5):
        g = xp.asarray(rng.normal(size=(3, m.n_params)))
        new_x, new, _ = m.step(x, state, fixed([g]), comm)
        aggregate = x - new_x
        np.testing.assert_allclose((new["error"] + aggregate)[:, ~bias], (state["error"] + g)[:, ~bias], atol=1e-12)
        np.testing.assert_allclose(aggregate[:, bias], np.broadcast_to(g[:, bias].mean(0), (3, bias.sum())), atol=1e-12)
        assert (new["error"][:, bias] == 0).all() and np.abs(new["error"][:, ~bias]).max() > 0.1
        x, state = new_x, new


def test_full_rank_is_exact_averaging():
    rng = np.random.default_rng(1)
    m = method((("w", (3, 4)),), rank=3, min_compression_rate=0.0)
    comm = SimComm(2, xp)
    x = xp.zeros((2, 12))
    g = xp.asarray(rng.normal(size=(2, 12)))
    new_x, _, _ = m.step(x, m.init_state(x, comm), fixed([g]), comm)
    np.testing.assert_allclose(-new_x, np.broadcast_to(g.mean(0), (2, 12)), atol=1e-12)


def test_gram_schmidt_gives_orthonormal_columns_of_the_same_span():
    a = np.random.default_rng(2).normal(size=(4, 7, 3))
    q = gram_schmidt(xp.asarray(a))
    np.testing.assert_allclose(np.swapaxes(q, -1, -2) @ q, np.broadcast_to(np.eye(3), (4, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(q @ (np.swapaxes(q, -1, -2) @ a), a, atol=1e-12)


def test_hooks_compression_rule_and_stated_bits():
    assert should_compress(16, 64, 2, 2.0) and should_compress(10, 16, 2, 2.0)
    assert not should_compress(10, 16, 4, 2.0)  # 26 * 4 * 2 = 208 >= 160
    m = method(MLP, rank=2, start_powersgd_iter=5)
    assert m.bits_per_parameter(32, 4) == 32.0
    assert m.bits_per_parameter(32, 5) == (2 * 80 + 2 * 26 + 26) * 32 / 1210
    m4 = method(MLP, rank=4)  # the 10 x 16 matrix is sent whole at rank 4
    assert m4.bits_per_parameter(64, 0) == (4 * 80 + 160 + 26) * 64 / 1210


def test_ddp_compat_changes_only_rounding():
    """The hook's order of draws, summed P, error on the vectors and QR at rank 4: the same aggregates."""
    rng = np.random.default_rng(3)
    grads = [xp.asarray(rng.normal(size=(2, 1210))) for _ in range(6)]
    for rank in (2, 4):
        out = []
        for compat in (False, True):
            m = method(MLP, rank=rank, start_powersgd_iter=2, ddp_compat=compat)
            comm = SimComm(2, xp)
            x = xp.zeros((2, 1210))
            state, oracle = m.init_state(x, comm), fixed(grads)
            for _ in range(6):
                x, state, _ = m.step(x, state, oracle, comm)
            out.append(x)
        assert np.abs(out[1] - out[0]).max() < 1e-10


@pytest.mark.parametrize("params, message", [
    ({"rank": 0}, "rank must be >= 1"),
    ({"ddp_compat": True, "start_powersgd_iter": 1}, "start_powersgd_iter >= 2"),
    ({"min_compression_rate": -1}, "min_compression_rate"),
])
def test_bad_parameters_are_named(params, message):
    with pytest.raises(ThinwireError, match=message):
        make_config(get_method("powersgd"), params)


def test_three_all_reduces_after_the_dense_steps(tmp_path):
    """The bytes of each call, on the conformance cases (tests/conformance.py), which also hold the
    simulator, gloo and MPI to one trajectory: the dense all-reduce of the first steps, then the
    uncompressed tensors, the Ps and the Qs."""
    log = method_log(sim_run(case("powersgd-rank2"), tmp_path / "rank2"))
    assert (log.query("step < 3")["sent"] == 1210 * 8).all() and len(log.query("step < 3")) == 3
    # rank 2: the biases (26 values), the Ps (2 (16 + 10)), the Qs (2 (64 + 16)), in float64
    assert log.query("step == 3")["sent"].tolist() == [26 * 8, 52 * 8, 160 * 8]
    # rank 4: the 10 x 16 weight is sent whole with the biases; one matrix left
    compat = method_log(sim_run(case("powersgd-rank4-compat"), tmp_path / "rank4"))
    assert compat.query("step == 3")["sent"].tolist() == [186 * 8, 64 * 8, 256 * 8]
