"""Step-ahead error feedback (../shared/papers/saef_quant.md): the reductions to plain local EF, where
the gradient is taken, what error averaging does to the errors and to the bytes, and config errors."""

import array_api_compat.numpy as xp_np
import array_api_compat.torch as xp_torch
import numpy as np
import pytest
import torch
from conformance import case, sim_run
from launch import method_log
from thinwire.algorithms.comm import ThinwireError
from thinwire.algorithms.compress import TopK
from thinwire.algorithms.quantizers import make_quantizer
from thinwire.algorithms.registry import get_method, make_config
from thinwire.simulators.problems import PROBLEMS, ProblemConfig
from thinwire.simulators.simcomm import SimComm

from thinwire.runner import to_numpy

D = 50
BOTH = {"lr": 0.5, "density": 0.1, "step_ahead": True, "error_average_every": 4}


class Recording:
    """An oracle that keeps every point it is asked about."""

    def __init__(self, inner):
        self.inner, self.points = inner, []

    def __call__(self, x):
        self.points.append(to_numpy(x).copy())
        return self.inner(x)


def run(name, params, workers=3, steps=20, dtype="float64", xp=xp_np, observe=None):
    """Run a method on heterogeneous logistic regression; `observe(t, x, state, new_x, new_state)` sees
    every step. Returns (method, comm, oracle, final x, final state)."""
    cls = get_method(name)
    prob = PROBLEMS["logreg"](workers, 2, ProblemConfig(dim=D, heterogeneity=0.8))
    method = cls(make_config(cls, params), prob.layout)
    comm, oracle = SimComm(workers, xp), Recording(prob.oracle(xp, None, dtype))
    x = xp.asarray(np.zeros((workers, D), dtype=dtype))
    state = method.init_state(x, comm)
    for t in range(steps):
        comm.log.step = t
        new_x, new_state, _ = method.step(x, state, oracle, comm)
        if observe:
            observe(t, to_numpy(x), {k: to_numpy(v) for k, v in state.items() if k == "error"},
                    to_numpy(new_x), {k: to_numpy(v) for k, v in new_state.items() if k == "error"})
        x, state = new_x, new_state
    return method, comm, oracle, to_numpy(x), state


@pytest.mark.parametrize("xp", [xp_np, xp_torch], ids=["numpy", "torch"])
def test_both_switches_off_is_topk_ef_step_for_step(xp):
    *_, ora_ef, x_ef, st_ef = run("topk-ef", {"lr": 0.5, "density": 0.1}, xp=xp)
    *_, ora_sa, x_sa, st_sa = run("saef", {"lr": 0.5, "density": 0.1}, xp=xp)
    np.testing.assert_allclose(x_sa, x_ef, rtol=0, atol=1e-12)
    np.testing.assert_allclose(to_numpy(st_sa["error"]), to_numpy(st_ef["error"]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.array(ora_sa.points), np.array(ora_ef.points), rtol=0, atol=1e-12)


def test_both_switches_off_is_ef_quant_with_the_same_stochastic_rounding():
    q = {"lr": 0.5, "levels": 2, "bucket_size": 16, "seed": 7}
    *_, x_ef, st_ef = run("ef-quant", {**q, "quantizer": "qsgd"})
    *_, x_sa, st_sa = run("saef", {**q, "compressor": "qsgd"})
    np.testing.assert_allclose(x_sa, x_ef, rtol=0, atol=1e-12)
    np.testing.assert_allclose(st_sa["error"], st_ef["error"], rtol=0, atol=1e-12)


def test_the_switches_change_the_trajectory():
    *_, x_off, _ = run("saef", {"lr": 0.5, "density": 0.1})
    for switch in ({"step_ahead": True}, {"error_average_every": 4}):
        *_, x_on, _ = run("saef", {"lr": 0.5, "density": 0.1, **switch})
        assert np.abs(x_on - x_off).max() > 1e-3, switch


@pytest.mark.parametrize("compressor", [{"density": 0.1}, {"compressor": "scaled-sign", "bucket_size": 16}])
def test_step_ahead_takes_one_gradient_per_step_at_x_minus_the_local_error(compressor):
    xs, expected = [], []

    def observe(t, x, st, *_):
        xs.append(x)
        expected.append(x - st["error"])

    _, _, oracle, _, _ = run("saef", {"lr": 0.5, "step_ahead": True, **compressor}, observe=observe)
    assert len(oracle.points) == len(expected) == 20  # one oracle call per step
    np.testing.assert_array_equal(np.array(oracle.points), np.array(expected))
    # the workers really ask about different points (their errors differ), none of them x
    assert np.abs(oracle.points[5][0] - oracle.points[5][1]).max() > 1e-6
    assert (np.abs(oracle.points[5] - xs[5]).max(axis=-1) > 1e-6).all()


def test_without_step_ahead_the_gradient_is_taken_at_x():
    xs = []
    _, _, oracle, _, _ = run("saef", {"lr": 0.5, "density": 0.1, "error_average_every": 4},
                             observe=lambda t, x, *_: xs.append(x))
    np.testing.assert_array_equal(np.array(oracle.points), np.array(xs))


def test_error_averaging_equalises_the_errors_exactly_at_its_steps_and_keeps_their_mean():
    seen = []

    def observe(t, x, st, new_x, new_st):
        seen.append((t, new_st["error"]))

    run("saef", BOTH, observe=observe)
    for t, e in seen:
        spread = np.abs(e - e[0]).max()
        if (t + 1) % 4 == 0:
            assert spread == 0, t
        else:
            assert spread > 1e-6, t


def test_after_averaging_step_ahead_asks_every_worker_about_the_virtual_model():
    """Right after an averaging step e_i = mean_j e_j, so x - e_i is xtilde = x - mean e for every i."""
    _, _, oracle, _, _ = run("saef", BOTH)
    for t in range(1, 20):
        points = oracle.points[t]
        same = np.abs(points - points[0]).max() == 0
        assert same == (t % 4 == 0), t


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_full_precision_all_reduce_of_d_values_at_exactly_the_averaging_steps(dtype):
    _, comm, *_ = run("saef", BOTH, dtype=dtype)
    item = np.dtype(dtype).itemsize
    reduces = [r for r in comm.log.records if r.op == "all_reduce"]
    assert [r.step for r in reduces] == [3, 7, 11, 15, 19]
    assert all(r.sent == r.recv == D * item and r.category == "method" for r in reduces)
    gathers = [r for r in comm.log.records if r.op == "all_gather"]
    assert [r.step for r in gathers] == list(range(20))
    assert all(r.sent == 5 * (4 + item) for r in gathers)  # k = 5 int32 indices + 5 values
    assert {r.op for r in comm.log.records} == {"all_reduce", "all_gather"}


@pytest.mark.parametrize("compressor, payload_bits", [
    ({"density": 0.1}, lambda vb: 5 * (32 + vb)),
    ({"compressor": "orq", "levels": 3, "bucket_size": 16}, lambda vb: 8 * make_quantizer("orq", 3, 16).payload_bytes(D)),
])
@pytest.mark.parametrize("value_bits", [32, 64])
def test_bits_per_parameter_include_the_error_average_at_its_steps(compressor, payload_bits, value_bits):
    cls = get_method("saef")
    method = cls(make_config(cls, {**compressor, "error_average_every": 3}), (("weight", (1, D)),))
    for t in range(12):
        extra = D * value_bits if t % 3 == 2 else 0
        assert method.bits_per_parameter(value_bits, t) == (payload_bits(value_bits) + extra) / D, t
    never = cls(make_config(cls, compressor), (("weight", (1, D)),))
    assert {never.bits_per_parameter(value_bits, t) for t in range(12)} == {payload_bits(value_bits) / D}


@pytest.mark.parametrize("lead", [(), (3,)])
def test_topk_payload_round_trips_with_and_without_a_worker_axis(lead):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(lead + (D,))
    c = TopK(0.1)
    for arr in (x, torch.as_tensor(x)):
        payload = c.compress(arr)
        assert payload.shape == lead + (5 * 12,)
        back = to_numpy(c.decompress(payload, D, arr.dtype))
        kept = np.abs(x) >= np.sort(np.abs(x), axis=-1)[..., -5:-4]
        np.testing.assert_array_equal(back, np.where(kept, x, 0))


@pytest.mark.parametrize("params, message", [
    ({"compressor": "randk"}, "compressor must be 'topk' or a quantizer .*qsgd.*got 'randk'"),
    ({"density": 0}, "density must be in \\(0, 1\\]"),
    ({"density": 1.5}, "density must be in \\(0, 1\\]"),
    ({"error_average_every": -1}, "error_average_every must be >= 0"),
    ({"error_average_every": 2.5}, "error_average_every' must be an integer"),
    ({"step_ahead": "maybe"}, "step_ahead' must be bool"),
    ({"compressor": "qsgd", "levels": 0}, "levels \\(s\\) must be >= 1"),
    ({"compressor": "orq", "levels": 300}, "needs 9 bits per code"),
    ({"lr": 0}, "lr must be > 0"),
])
def test_bad_configs_are_refused_with_a_named_error(params, message):
    with pytest.raises(ThinwireError, match=message):
        make_config(get_method("saef"), params)


def test_bytes_are_the_payload_plus_the_error_average(tmp_path):
    """QSGD, s = 2, d = 50 in buckets of 16, 16, 16, 2 (case saef-qsgd of tests/conformance.py): 4 float32
    norms + 50 codes of 3 bits = 16 + 19 bytes a step; the float64 errors all-reduced every 4 steps."""
    payload, errors = 35, 50 * 8
    run = sim_run(case("saef-qsgd"), tmp_path)
    sim = method_log(run)
    gathers, reduces = sim[sim["op"] == "all_gather"], sim[sim["op"] == "all_reduce"]
    assert set(sim["op"]) == {"all_gather", "all_reduce"}
    assert list(gathers["step"]) == list(range(20))
    assert (gathers["sent"] == payload).all() and (gathers["recv"] == 2 * payload).all()
    assert list(reduces["step"]) == [3, 7, 11, 15, 19]
    assert (reduces["sent"] == errors).all() and (reduces["recv"] == errors).all()
    stated = run.trajectory.set_index("step")["stated_bits"]
    assert stated[3] == (payload + errors) * 8 / 50 and stated[4] == payload * 8 / 50
