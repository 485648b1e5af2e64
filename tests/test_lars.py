"""LARS and CLARS: the trust ratio against a hand computation, CLARS' lr never above LARS' at the same
point (mean of norms >= norm of mean), the per-example gradients of the digits models, sgd's warm-up,
and the errors a user can act on."""

import array_api_compat.numpy as xp_np
import numpy as np
import pytest
import torch
from conformance import case, sim_run
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from launch import method_log
from simulate import simulate
from thinwire.algorithms.comm import ThinwireError
from thinwire.algorithms.lars import trust_ratio
from thinwire.algorithms.registry import get_method, make_config
from thinwire.simulators.simcomm import SimComm
from thinwire.workloads.registry import make_workload

from thinwire.execute import RunSpec, run_sim

# Two weight tensors and a bias, 8 parameters; two simulated workers.
LAYOUT = (("w1", (2, 2)), ("b1", (2,)), ("w2", (1, 2)))
X = np.array([3.0, 0, 0, 4, 1, -1, 0, 2])  # ||w1|| = 5, ||w2|| = 2
GRADS = np.array([[0.6, 0.8, 0, 0, 0.2, 0.2, 0, 0.5],  # w1 part: norm 1 on each worker,
                  [0.6, -0.8, 0, 0, 0.4, 0.0, 0, 0.5]])  # norm 0.6 of their mean; w2: 0.5 everywhere


class FixedOracle:
    """Every worker's gradient is its row of GRADS; per_example serves it as one example per worker."""

    def __call__(self, x):
        return np.zeros(2), GRADS.copy()

    def per_example(self, x):
        return np.zeros(2), GRADS[:, None, :].copy()


def one_step(name, **params):
    cls = get_method(name)
    method = cls(make_config(cls, params), LAYOUT)
    comm = SimComm(2, xp_np)
    x = np.stack([X, X])
    state = method.init_state(x, comm)
    new_x, state, _ = method.step(x, state, FixedOracle(), comm)
    return method, comm, state, x[0] - new_x[0]


@pytest.mark.parametrize("name, params, w1_trust", [
    # gamma at step 0 of a 2-step warm-up: 0.5 / 2; LARS: 0.1 * 5 / 0.6; CLARS: 0.1 * 5 / 1.
    ("lars", {}, 0.1 * 5 / 0.6),
    ("clars", {"norms": "per_worker"}, 0.1 * 5 / 1.0),
    ("clars", {"norms": "per_example"}, 0.1 * 5 / 1.0),  # one example per worker: the same norms
])
def test_one_step_matches_the_hand_computation(name, params, w1_trust):
    method, comm, state, update = one_step(name, lr=0.5, trust=0.1, momentum=0.0, warmup_steps=2, **params)
    gamma = 0.25
    w2_trust = 0.1 * 2 / 0.5
    expected = np.concatenate([gamma * w1_trust * np.array([0.6, 0, 0, 0]),  # the mean gradient of w1
                               gamma * np.array([0.3, 0.1]),  # bias: plain SGD at the global lr
                               gamma * w2_trust * np.array([0, 0.5])])
    np.testing.assert_allclose(update, expected, rtol=1e-12)
    assert method.trace(state) == pytest.approx({"lr:w1": gamma * w1_trust, "lr:w2": gamma * w2_trust}, rel=1e-14)
    sent, _ = comm.log.step_bytes(0)
    assert sent == 8 * (8 if name == "lars" else 8 + 2)  # CLARS adds one float64 per weight tensor
    if name == "clars":
        assert method.diagnostics(state) == pytest.approx({"lr_ratio_to_lars_max": 1.0,
                                                            "lr_ratio_to_lars_min": 0.6}, rel=1e-14)


def test_beta_and_weight_decay_enter_as_you_et_al_write_them():
    _, _, _, update = one_step("lars", lr=0.5, trust=0.1, momentum=0.0, beta=0.2, weight_decay=0.01)
    w1_trust = 0.1 * 5 / (0.6 + 0.2 * 5)
    w1 = np.array([3.0, 0, 0, 4])
    np.testing.assert_allclose(update[:4], 0.5 * w1_trust * (np.array([0.6, 0, 0, 0]) + 0.01 * w1), rtol=1e-12)
    np.testing.assert_allclose(update[4:6], 0.5 * np.array([0.3, 0.1]), rtol=1e-12)  # no decay on biases


def test_a_zero_layer_falls_back_to_the_global_lr():
    zeros = np.zeros(1)
    ratio = trust_ratio(xp_np, np.array([0.0, 2.0, 2.0]), np.array([1.0, 0.0, 4.0]), 0.1, 0.0)
    np.testing.assert_allclose(ratio, [1.0, 1.0, 0.05])
    assert trust_ratio(xp_np, zeros, zeros, 0.1, 0.5)[0] == 1.0


@settings(max_examples=200, deadline=None)
@given(per_example=arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 5)),
                          # below 1e-100 the squares underflow to subnormals and norms lose the digits the
                          # inequality needs: that is floating point, not the method, so such values are 0
                          elements=st.floats(-10, 10).map(lambda v: v if abs(v) > 1e-100 else 0.0)),
       w_norm=st.floats(0, 100), trust=st.floats(1e-4, 1), beta=st.floats(0, 1))
def test_clars_trust_ratio_never_exceeds_lars(per_example, w_norm, trust, beta):
    """Mean of the per-example norms >= norm of their mean, so CLARS' ratio <= LARS' for any beta >= 0."""
    mean_of_norms = np.array([np.linalg.norm(per_example, axis=-1).mean()])
    norm_of_mean = np.array([np.linalg.norm(per_example.mean(0))])
    clars = trust_ratio(xp_np, np.array([w_norm]), mean_of_norms, trust, beta)
    lars = trust_ratio(xp_np, np.array([w_norm]), norm_of_mean, trust, beta)
    assert clars[0] <= lars[0] * (1 + 1e-12) or norm_of_mean[0] == 0


@pytest.mark.parametrize("workload, norms, workers", [("digits-mlp", "per_example", 2), ("digits-cnn", "per_example", 2),
                                                      ("logreg", "per_worker", 4)])
def test_clars_lr_stays_at_or_below_lars_at_every_step(tmp_path, workload, norms, workers):
    wparams = {"batch_size": 8} if workload.startswith("digits") else {}
    spec = RunSpec("clars", workload, steps=8, dtype="float64", workload_params=wparams,
                   params={"lr": 0.4, "trust": 0.05, "norms": norms})
    meta = run_sim(spec, workers, tmp_path / "run", progress=False)
    ratios = meta["diagnostics"]
    assert 0 < ratios["lr_ratio_to_lars_min"] <= ratios["lr_ratio_to_lars_max"] <= 1 + 1e-12
    assert ratios["lr_ratio_to_lars_min"] < 0.99  # the examples (workers) disagree: CLARS is slower


def test_clars_on_one_worker_per_worker_norms_is_lars():
    lars = simulate("lars", {"lr": 2.0, "trust": 0.1}, workers=1)
    clars = simulate("clars", {"lr": 2.0, "trust": 0.1, "norms": "per_worker"}, workers=1)
    np.testing.assert_allclose(clars.x, lars.x, rtol=0, atol=1e-14)
    assert clars.method.diagnostics(clars.state)["lr_ratio_to_lars_min"] == pytest.approx(1.0, rel=1e-14)


def test_lars_warmup_raises_the_lr_linearly():
    cold = simulate("lars", {"lr": 2.0, "trust": 0.1, "momentum": 0.0}, steps=1)
    warm = simulate("lars", {"lr": 2.0, "trust": 0.1, "momentum": 0.0, "warmup_steps": 4}, steps=1)
    np.testing.assert_allclose(warm.x, cold.x / 4, rtol=1e-12)


def test_sgd_warmup_raises_the_lr_linearly_then_holds_it():
    sim = simulate("sgd", {"lr": 0.5, "momentum": 0.0, "warmup_steps": 4}, steps=6, workers=2)
    g = [grad.mean(0) for grad in sim.grads]
    factors = [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    np.testing.assert_allclose(sim.x[0], -0.5 * sum(f * gt for f, gt in zip(factors, g)), atol=1e-14)


@pytest.mark.parametrize("name", ["digits-mlp", "digits-cnn"])
@pytest.mark.parametrize("rank", [None, 1])
def test_digits_per_example_gradients_average_to_the_batch_gradient(name, rank):
    w = make_workload(name, 2, 0, {"hidden": 8, "batch_size": 5})
    x = torch.stack([torch.as_tensor(w.x0()), torch.as_tensor(w.x0()) + 0.01])
    x = x if rank is None else x[rank]
    loss, per_example = w.oracle(None, rank, "float64").per_example(x)
    batch_loss, batch_grad = w.oracle(None, rank, "float64")(x)  # same seed: the same batch
    assert per_example.shape[-2:] == (5, w.n_params)
    torch.testing.assert_close(per_example.mean(-2), batch_grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(loss, batch_loss, rtol=0, atol=1e-12)
    assert not torch.allclose(per_example[..., 0, :], per_example[..., 1, :])


def test_per_example_norms_on_a_workload_without_them_name_the_ones_that_have_them(tmp_path):
    spec = RunSpec("clars", "logreg", steps=2, params={"norms": "per_example"})
    with pytest.raises(ThinwireError, match="digits-cnn, digits-mlp.*norms=per_worker") as e:
        run_sim(spec, 2, tmp_path / "run", progress=False)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name, params, words", [
    ("lars", {"beta": -0.1}, "beta must be >= 0"),
    ("clars", {"beta": -1}, "beta must be >= 0"),
    ("lars", {"trust": 0}, "trust must be > 0"),
    ("clars", {"norms": "per_layer"}, "norms must be one of per_example, per_worker"),
    ("lars", {"warmup_steps": -1}, "warmup_steps must be >= 0"),
    ("sgd", {"warmup_steps": -3}, "warmup_steps must be >= 0"),
    ("clars", {"momentum": 1.0}, "momentum must be in"),
])
def test_bad_parameters_fail_with_one_line(name, params, words):
    with pytest.raises(ThinwireError, match=words) as e:
        make_config(get_method(name), params)
    assert "\n" not in str(e.value)


def test_a_layout_without_weight_tensors_is_refused():
    cls = get_method("lars")
    with pytest.raises(ThinwireError, match="needs a weight tensor.*only b"):
        cls(make_config(cls, {}), (("b", (3,)),))


def test_the_layer_lrs_reach_the_results_table_one_column_per_tensor(tmp_path):
    from thinwire.analysis.table import aggregate

    spec = RunSpec("lars", "digits-mlp", steps=5, workload_params={"hidden": 8, "batch_size": 8},
                   params={"lr": 0.4, "trust": 0.05, "warmup_steps": 5})
    run_sim(spec, 2, tmp_path / "lars", progress=False)
    run_sim(RunSpec("sgd", "logreg", steps=3), 2, tmp_path / "sgd", progress=False)  # no trace: no file
    assert not (tmp_path / "sgd" / "trace.csv").exists()
    table = aggregate([tmp_path / "lars", tmp_path / "sgd"], [], tmp_path / "table.csv")
    traced = [c for c in table.columns if c.startswith("trace_")]
    assert traced == ["trace_lr:net.0.weight", "trace_lr:net.2.weight"]
    lars = table[table["method"] == "lars"].sort_values("step")
    assert lars[traced].notna().all().all() and table.loc[table["method"] == "sgd", traced].isna().all().all()
    assert (lars["trace_lr:net.0.weight"].diff().dropna() > 0).all()  # the warm-up raises it


N_MLP_PARAMS = 64 * 16 + 16 + 16 * 10 + 10


@pytest.fixture(scope="module")
def mlp_runs(tmp_path_factory):
    """LARS and CLARS on the two-weight-tensor MLP (cases of tests/conformance.py), in the simulator."""
    root = tmp_path_factory.mktemp("lars-mlp")
    return {name: sim_run(case(f"{name}-mlp"), root / name) for name in ("lars", "clars")}


@pytest.mark.parametrize("name", ["lars", "clars"])
def test_one_lr_per_weight_tensor_is_traced_every_step(mlp_runs, name):
    trace = mlp_runs[name].trace
    assert set(trace["name"]) == {"lr:net.0.weight", "lr:net.2.weight"} and len(trace) == 2 * 12


def test_clars_sends_one_extra_value_per_weight_tensor(mlp_runs):
    for name, extra in (("lars", 0), ("clars", 2)):
        log = method_log(mlp_runs[name])
        assert (log["op"] == "all_reduce").all() and (log["sent"] == 8 * (N_MLP_PARAMS + extra)).all()
    ratios = mlp_runs["clars"].meta["diagnostics"]
    assert ratios["lr_ratio_to_lars_max"] <= 1 + 1e-12 and ratios["lr_ratio_to_lars_min"] < 1
