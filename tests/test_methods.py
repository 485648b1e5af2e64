"""Conformance tests every registered method passes (simulator side), plus method-specific laws."""

import array_api_compat.torch as xp_torch
import numpy as np
import pytest
import torch
from conformance import case, sim_run
from launch import method_log
from simulate import simulate
from thinwire.algorithms.comm import ThinwireError
from thinwire.algorithms.quantizers import QUANTIZERS
from thinwire.algorithms.registry import get_method, make_config, method_names

LAYOUT = (("weight", (1, 50)),)


def test_every_method_declares_valid_tiny_params():
    for name in method_names():
        cls = get_method(name)
        make_config(cls, cls.tiny)


@pytest.mark.parametrize("name", method_names())
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_logged_bytes_equal_stated_bits_per_parameter(name, dtype):
    sim = simulate(name, get_method(name).tiny, dtype=dtype)
    method, comm, losses = sim.method, sim.comm, sim.losses
    assert np.isfinite(losses).all()
    for t in range(20):
        sent, _ = comm.log.step_bytes(t)
        assert sent * 8 / 50 == method.bits_per_parameter(np.dtype(dtype).itemsize * 8, t), (t, sent)


@pytest.mark.parametrize("name", method_names())
def test_method_decreases_the_loss(name):
    losses = simulate(name, get_method(name).tiny, steps=60).losses
    assert losses[-10:].mean() < 0.9 * losses[0].mean()


@pytest.mark.parametrize("name", method_names())
def test_numpy_and_torch_namespaces_agree(name):
    a = simulate(name, get_method(name).tiny)
    b = simulate(name, get_method(name).tiny, xp=xp_torch)
    x_np, loss_np, x_t, loss_t = a.x, a.losses, np.asarray(b.x), b.losses
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
    ef, sgd = simulate("topk-ef", {"lr": 0.5, "density": 1.0}), simulate("sgd", {"lr": 0.5, "momentum": 0.0})
    x_ef, loss_ef, x_sgd, loss_sgd = ef.x, ef.losses, sgd.x, sgd.losses
    np.testing.assert_allclose(x_ef, x_sgd, atol=1e-12)
    np.testing.assert_allclose(loss_ef, loss_sgd, atol=1e-12)


# Error-feedback methods, with compressors that withhold something on a 50-parameter problem.
ERROR_FEEDBACK = [
    ("topk-ef", {"lr": 0.5, "density": 0.04}),
    *[("ef-quant", {"lr": 0.2, "quantizer": q, "levels": 2, "bucket_size": 16}) for q in sorted(QUANTIZERS)],
    ("saef", {"lr": 0.5, "density": 0.1, "step_ahead": True, "error_average_every": 4}),
    ("saef", {"lr": 0.5, "step_ahead": True, "error_average_every": 4, "compressor": "qsgd", "levels": 2,
              "bucket_size": 16}),
]


@pytest.mark.parametrize("name, params", ERROR_FEEDBACK)
def test_error_feedback_loses_nothing(name, params):
    """EF's invariant: model - mean error = start - lr * sum of the mean gradients taken, whatever the
    compressor (and error averaging keeps the mean error); every worker applies the same update."""
    sim = simulate(name, params, steps=30, problem="lsq", seed=1, heterogeneity=0.0)
    assert np.abs(sim.state["error"]).max() > 0  # compression really withheld something
    np.testing.assert_allclose(sim.x[0] - sim.state["error"].mean(0),
                               -params["lr"] * np.sum([g.mean(0) for g in sim.grads], 0), atol=1e-12)
    np.testing.assert_array_equal(sim.x[0], sim.x[2])


def test_torch_workload_gradients_match_between_vmap_and_one_rank():
    from thinwire.workloads.registry import make_workload

    w = make_workload("digits-mlp", 2, 0, {"hidden": 8})
    x0 = torch.as_tensor(w.x0())
    all_loss, all_grad = w.oracle(None, None, "float64")(torch.stack([x0, x0]))
    one_loss, one_grad = w.oracle(None, 1, "float64")(x0)
    torch.testing.assert_close(one_grad, all_grad[1], rtol=0, atol=1e-12)
    torch.testing.assert_close(one_loss, all_loss[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", method_names())
def test_performance_model_prices_what_the_method_sent(name):
    """The third mode: every collective the method calls can be priced, and a step costs time exactly
    when the method sent something in it."""
    import pandas as pd
    from thinwire.algorithms.comm import CommLog
    from thinwire.simulators.perfmodel import Cluster, Tier, step_comm_times

    sim = simulate(name, get_method(name).tiny)
    log = pd.DataFrame(sim.comm.log.rows(), columns=CommLog.COLUMNS)
    cluster = Cluster("c", nodes=4, gpus_per_node=2, sustained_tflops=1.0, intra=Tier(100, 5), inter=Tier(1, 50))
    cost = step_comm_times(log, run_world=3, cluster=cluster, scale=1000.0).reindex(range(20), fill_value=0.0)
    sent = log[log["category"] == "method"].groupby("step")["sent"].sum().reindex(range(20), fill_value=0)
    assert np.isfinite(cost).all()
    assert ((cost > 0) == (sent > 0)).all()
    assert (sent > 0).any()


@pytest.mark.parametrize("name, sent", [("sgd", 50 * 8), ("topk-ef", 5 * (4 + 8))])
def test_dense_and_top_k_payload_sizes(tmp_path, name, sent):
    """On the tiny problem in float64: sgd all-reduces 50 values; topk-ef (density 0.1: k = 5) gathers int32
    indices and float64 values, the values starting at byte 20 of the payload (unaligned unpacking)."""
    calls = method_log(sim_run(case(name), tmp_path))
    assert len(calls) == 20 and (calls["sent"] == sent).all()
