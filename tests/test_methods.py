"""Conformance tests every registered method passes (simulator side), plus method-specific laws."""

import array_api_compat.numpy as xp_np
import array_api_compat.torch as xp_torch
import numpy as np
import pytest
import torch
from thinwire.algorithms.comm import ThinwireError
from thinwire.algorithms.registry import get_method, make_config, method_names
from thinwire.simulators.problems import PROBLEMS, ProblemConfig
from thinwire.simulators.simcomm import SimComm

LAYOUT = (("weight", (1, 50)),)


def simulate(name, params, workers=3, steps=20, dtype="float64", xp=xp_np, problem="logreg"):
    cls = get_method(name)
    prob = PROBLEMS[problem](workers, 0, ProblemConfig(dim=50, heterogeneity=0.5))
    method = cls(make_config(cls, params), prob.layout)
    comm = SimComm(workers, xp)
    oracle = prob.oracle(xp, None, dtype)
    x = xp.asarray(np.zeros((workers, 50), dtype=dtype))
    state = method.init_state(x, comm)
    losses = []
    for t in range(steps):
        comm.log.step = t
        x, state, loss = method.step(x, state, oracle, comm)
        losses.append(np.asarray(loss))
    return method, comm, np.asarray(x), np.array(losses), state


def test_every_method_declares_valid_tiny_params():
    for name in method_names():
        cls = get_method(name)
        make_config(cls, cls.tiny)


@pytest.mark.parametrize("name", method_names())
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_logged_bytes_equal_stated_bits_per_parameter(name, dtype):
    method, comm, _, losses, _ = simulate(name, get_method(name).tiny, dtype=dtype)
    assert np.isfinite(losses).all()
    for t in range(20):
        sent, _ = comm.log.step_bytes(t)
        assert sent * 8 / 50 == method.bits_per_parameter(np.dtype(dtype).itemsize * 8, t), (t, sent)


@pytest.mark.parametrize("name", method_names())
def test_method_decreases_the_loss(name):
    _, _, _, losses, _ = simulate(name, get_method(name).tiny, steps=60)
    assert losses[-10:].mean() < 0.9 * losses[0].mean()


@pytest.mark.parametrize("name", method_names())
def test_numpy_and_torch_namespaces_agree(name):
    *_, x_np, loss_np, _ = simulate(name, get_method(name).tiny)
    *_, x_t, loss_t, _ = simulate(name, get_method(name).tiny, xp=xp_torch)
    np.testing.assert_allclose(x_t, x_np, atol=1e-12)
    np.testing.assert_allclose(loss_t, loss_np, atol=1e-12)


@pytest.mark.parametrize("name", method_names())
def test_defaults_are_valid_and_unknown_params_named(name):
    cls = get_method(name)
    make_config(cls, {})
    with pytest.raises(ThinwireError, match="no parameter 'nonsense'"):
        make_config(cls, {"nonsense": 1})
    with pytest.raises(ThinwireError, match="lr"):
        make_config(cls, {"lr": -1})


def test_unknown_method_is_named():
    with pytest.raises(ThinwireError, match="unknown method 'nope'.*sgd"):
        get_method("nope")


@pytest.mark.parametrize("density", [0, -0.1, 1.5])
def test_topk_density_outside_unit_interval_is_refused(density):
    with pytest.raises(ThinwireError, match="density must be in"):
        make_config(get_method("topk-ef"), {"density": density})


def test_topk_at_full_density_is_plain_sgd():
    *_, x_ef, loss_ef, _ = simulate("topk-ef", {"lr": 0.5, "density": 1.0})
    *_, x_sgd, loss_sgd, _ = simulate("sgd", {"lr": 0.5, "momentum": 0.0})
    np.testing.assert_allclose(x_ef, x_sgd, atol=1e-12)
    np.testing.assert_allclose(loss_ef, loss_sgd, atol=1e-12)


def test_error_feedback_loses_nothing():
    """EF's invariant: model - mean error = start - lr * sum of mean gradients, whatever k is."""
    workers, lr = 3, 0.5
    cls = get_method("topk-ef")
    method = cls(make_config(cls, {"lr": lr, "density": 0.04}), LAYOUT)
    prob = PROBLEMS["lsq"](workers, 1, ProblemConfig(dim=50))
    comm, inner = SimComm(workers, xp_np), prob.oracle(xp_np, None, "float64")
    grads = []

    def oracle(x):
        loss, g = inner(x)
        grads.append(g)
        return loss, g

    x = np.zeros((workers, 50))
    state = method.init_state(x, comm)
    for _ in range(30):
        x, state, _ = method.step(x, state, oracle, comm)
    assert np.abs(state["error"]).sum() > 0  # compression really withheld something
    np.testing.assert_allclose(x[0] - state["error"].mean(0), -lr * np.sum([g.mean(0) for g in grads], 0),
                               atol=1e-12)
    np.testing.assert_array_equal(x[0], x[1])  # every worker applies the same update


def test_torch_workload_gradients_match_between_vmap_and_one_rank():
    from thinwire.workloads.registry import make_workload

    w = make_workload("digits-mlp", 2, 0, {"hidden": 8})
    x0 = torch.as_tensor(w.x0())
    all_loss, all_grad = w.oracle(None, None, "float64")(torch.stack([x0, x0]))
    one_loss, one_grad = w.oracle(None, 1, "float64")(x0)
    torch.testing.assert_close(one_grad, all_grad[1], rtol=0, atol=1e-12)
    torch.testing.assert_close(one_loss, all_loss[1], rtol=0, atol=1e-12)
