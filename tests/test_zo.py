"""Zeroth-order estimators, proximal operators, query counts and bad input (algorithms/zo.py, zo_prox.py)."""

import array_api_compat.numpy as xp
import numpy as np
import pytest
from conformance import case, sim_run
from launch import method_log
from simulate import simulate
from thinwire.algorithms import zo
from thinwire.algorithms.comm import ThinwireError
from thinwire.algorithms.registry import get_method, make_config
from thinwire.simulators.problems import PROBLEMS, ProblemConfig
from thinwire.simulators.simcomm import SimComm

DIM = 6


def sigmoid_oracle(samples=8, seed=0):
    problem = PROBLEMS["sigmoid"](1, seed, ProblemConfig(samples_per_worker=samples, dim=DIM, batch_size=1, l2=0.1))
    return problem, problem.oracle(xp, None, "float64")


def true_grads(problem, x, idx):
    a, y = problem.features[0], problem.targets[0]
    return np.stack([problem.loss_grad(np, x, a[i:i + 1], y[i:i + 1])[1] for i in idx])


@pytest.mark.parametrize("kind", ["lsq", "logreg", "logreg-nc", "sigmoid"])
def test_sample_values_are_the_loss_and_its_gradient_per_sample(kind):
    """The function values a ZO method sees are the gradient oracle's loss; finite differences of the
    sigmoid loss match its analytic gradient (the exact gradient mapping of the rate study uses it)."""
    problem = PROBLEMS[kind](1, 0, ProblemConfig(samples_per_worker=5, dim=DIM, batch_size=5))
    oracle = problem.oracle(xp, None, "float64")
    x = np.random.default_rng(1).standard_normal(DIM)
    idx = np.arange(5)[None]
    values = oracle.values(x[None, None, None, :], idx)[0, :, 0]
    loss, grad = problem.loss_grad(np, x, problem.features[0], problem.targets[0])
    np.testing.assert_allclose(values.mean(), loss, rtol=1e-12)
    h = 1e-6 * np.eye(DIM)
    fd = [(problem.loss_grad(np, x + e, problem.features[0], problem.targets[0])[0]
           - problem.loss_grad(np, x - e, problem.features[0], problem.targets[0])[0]) / 2e-6 for e in h]
    np.testing.assert_allclose(fd, grad, atol=1e-8)


def test_coordinate_estimator_converges_to_the_gradient_as_mu_shrinks():
    problem, oracle = sigmoid_oracle()
    x = np.random.default_rng(2).standard_normal(DIM)
    idx = np.arange(8)[None]
    exact = true_grads(problem, x, idx[0])
    errors = [np.abs(zo.estimate(xp, oracle, idx, x[None, None, :], "coord", mu, None)[0][0] - exact).max()
              for mu in (1e-1, 1e-2, 1e-3)]
    assert errors[0] > 50 * errors[1] and errors[1] > 50 * errors[2]  # central differences: O(mu^2)
    assert errors[2] < 1e-6


@pytest.mark.parametrize("estimator", ["sphere", "gauss"])
def test_random_direction_estimators_converge_to_the_gradient_as_mu_shrinks(estimator):
    """For fixed directions u_k the estimate tends to the directional-derivative estimate
    c mean_k u_k u_k^T grad (c = d on the sphere, 1 for Gaussians) at rate mu; with many directions that
    is close to grad itself (E c u u^T = I)."""
    problem, oracle = sigmoid_oracle(samples=1)
    comm = SimComm(1, xp)
    x = np.random.default_rng(3).standard_normal((1, DIM))
    k = 20_000
    u = zo.directions(estimator, 0, 0, 0, (k, DIM), x, comm)
    idx = np.zeros((1, k), dtype=int)  # the one sample, k directions
    exact = true_grads(problem, x[0], [0])[0]
    c = DIM if estimator == "sphere" else 1
    limit = c * np.einsum("wkd,wke->de", u, u)[None] @ exact / k
    gaps = [np.abs(zo.estimate(xp, oracle, idx, x[:, None, :], estimator, mu, u)[0].mean(1) - limit).max()
            for mu in (1e-2, 1e-3, 1e-4)]
    assert gaps[0] > 5 * gaps[1] > 25 * gaps[2]
    np.testing.assert_allclose(limit[0], exact, atol=0.05 * np.abs(exact).max())


@pytest.mark.parametrize("l1, l2", [(0.3, 0.0), (0.3, 0.5), (0.0, 2.0)])
def test_prox_is_the_minimiser_of_its_definition(l1, l2):
    """prox_{eta psi}(v) = argmin_x |x - v|^2 / 2 + eta (l1 |x|_1 + l2 |x|^2 / 2), separable: the
    minimiser over a fine grid per coordinate, and the closed forms (soft-threshold, / (1 + eta l2))."""
    eta, v = 0.7, np.array([-2.0, -0.25, 0.0, 0.1, 0.21, 1.5])
    out = zo.prox(xp, v, eta, l1, l2)
    grid = np.linspace(-3, 3, 600_001)
    for vi, oi in zip(v, out):
        objective = (grid - vi) ** 2 / 2 + eta * (l1 * np.abs(grid) + l2 / 2 * grid ** 2)
        assert abs(grid[objective.argmin()] - oi) < 2e-5
    np.testing.assert_allclose(out, np.sign(v) * np.maximum(np.abs(v) - eta * l1, 0) / (1 + eta * l2))


def test_gradient_mapping_is_zero_exactly_at_a_stationary_point():
    # psi = l1 |x|_1 with grad f(x) = 0.5 sign(x) at x != 0 would not be stationary; at x = 0 with
    # |grad f| <= l1 it is.
    assert np.all(zo.gradient_mapping(xp, np.zeros(3), np.array([0.1, -0.2, 0.0]), 0.5, 0.3, 0.0) == 0)
    assert np.any(zo.gradient_mapping(xp, np.zeros(3), np.array([0.4, 0.0, 0.0]), 0.5, 0.3, 0.0) != 0)


class CountingOracle:
    """The problem oracle, counting the function values served per worker (simulated: W at once)."""

    def __init__(self, inner, workers):
        self.inner, self.workers, self.served = inner, workers, 0
        self.n_samples, self.draw = inner.n_samples, inner.draw

    def values(self, points, idx):
        out = self.inner.values(points, idx)
        self.served += out.size // self.workers
        return out


# (method, params, queries per worker after 7 steps), n = 256 samples per worker, d = 50.
Q_COORD = 2 * 50 + 1
QUERY_FORMULAS = [
    ("zo-proxsgd", {"batch": 8}, 7 * 8 * 2),
    ("zo-proxsgd", {"batch": 8, "estimator": "coord"}, 7 * 8 * Q_COORD),
    ("zo-proxsvrg", {"batch": 8, "epoch": 3}, 3 * 256 * Q_COORD + 7 * 2 * 8 * Q_COORD),  # snapshots at 0, 3, 6
    ("zo-proxsvrg", {"batch": 8, "epoch": 5, "estimator": "sphere"}, 2 * 256 * 2 + 7 * 2 * 8 * 2),
    ("zo-proxsaga", {"batch": 8}, 256 * Q_COORD + 7 * 2 * 8 * Q_COORD),
]


@pytest.mark.parametrize("name, params, expected", QUERY_FORMULAS)
def test_query_counts_equal_the_formula_and_the_values_served(name, params, expected):
    workers = 2
    cls = get_method(name)
    problem = PROBLEMS["logreg"](workers, 0, ProblemConfig(dim=50))
    method = cls(make_config(cls, params), problem.layout)
    comm, oracle = SimComm(workers, xp), CountingOracle(problem.oracle(xp, None, "float64"), workers)
    x = np.zeros((workers, 50))
    state, per_step = method.init_state(x, comm), []
    for _ in range(7):
        x, state, _ = method.step(x, state, oracle, comm)
        per_step.append(method.trace(state)["queries"])
    assert method.diagnostics(state)["total_queries"] == sum(per_step) == expected == oracle.served


def test_saga_table_and_phi_stay_consistent_with_the_coordinate_estimator():
    """With CooSGE (deterministic) phi must stay the mean over all samples of the estimates at the table."""
    sim = simulate("zo-proxsaga", {"batch": 8, "lr": 1.0}, workers=2, steps=10, problem="logreg")
    problem = PROBLEMS["logreg"](2, 0, ProblemConfig(dim=50, heterogeneity=0.5))
    oracle = problem.oracle(xp, None, "float64")
    n = oracle.n_samples
    table, phi = sim.state["table"], sim.state["phi"]
    g, _ = zo.estimate(xp, oracle, np.broadcast_to(np.arange(n), (2, n)), table, "coord", 1e-3, None)
    np.testing.assert_allclose(phi, np.broadcast_to(g.mean(1).mean(0), phi.shape), atol=1e-10)
    assert (np.abs(table - table[:, :1]).max(-1) > 0).any()  # some entries were refreshed


@pytest.mark.parametrize("params, match", [({"mu": 0.0}, "mu must be > 0"), ({"mu": -1e-3}, "mu must be > 0"),
                                           ({"batch": 0}, "batch must be >= 1"),
                                           ({"estimator": "nope"}, "estimator must be one of"),
                                           ({"l1": -1.0}, "l1 and l2 must be >= 0")])
@pytest.mark.parametrize("name", ["zo-proxsgd", "zo-proxsvrg", "zo-proxsaga"])
def test_bad_config_is_refused_with_a_named_parameter(name, params, match):
    with pytest.raises(ThinwireError, match=match):
        make_config(get_method(name), params)


@pytest.mark.parametrize("name", ["zo-proxsgd", "zo-proxsvrg", "zo-proxsaga"])
def test_batch_larger_than_the_data_is_refused(name):
    with pytest.raises(ThinwireError, match="batch 300 is larger than the 256 samples per worker"):
        simulate(name, {"batch": 300}, steps=1)


def test_workload_without_function_values_is_refused():
    cls = get_method("zo-proxsgd")
    method = cls(make_config(cls, {}), (("weight", (1, 3)),))
    comm = SimComm(2, xp)
    x = np.zeros((2, 3))
    with pytest.raises(ThinwireError, match="needs function values"):
        method.step(x, method.init_state(x, comm), lambda x: (x.sum(-1), x), comm)


def test_non_finite_function_values_are_refused():
    bad = PROBLEMS["lsq"](1, 0, ProblemConfig(samples_per_worker=8, dim=DIM, batch_size=4))
    bad_oracle = bad.oracle(xp, None, "float64")
    cls = get_method("zo-proxsgd")
    method = cls(make_config(cls, {"batch": 4}), bad.layout)
    comm = SimComm(1, xp)
    x = np.full((1, DIM), 1e200)  # (a x - y)^2 overflows to inf
    with np.errstate(over="ignore", invalid="ignore"), pytest.raises(ThinwireError, match="non-finite function value"):
        method.step(x, method.init_state(x, comm), bad_oracle, comm)


@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_proxsvrg_decreases_the_objective_on_breast_cancer(l2):
    """The real small data set shipped with scikit-learn, sigmoid loss + l1 (and elastic net)."""
    problem = PROBLEMS["sigmoid-bc"](2, 0, ProblemConfig(samples_per_worker=256, l2=0.0))
    assert problem.features.shape == (2, 256, 30)
    cls = get_method("zo-proxsvrg")
    method = cls(make_config(cls, {"batch": 32, "epoch": 8, "lr": 1.0, "l1": 1e-3, "l2": l2}), problem.layout)
    comm, oracle = SimComm(2, xp), problem.oracle(xp, None, "float64")
    x = np.zeros((2, 30))
    state = method.init_state(x, comm)
    start = problem.evaluate(x[0])[0]
    for _ in range(40):
        x, state, _ = method.step(x, state, oracle, comm)
    np.testing.assert_array_equal(x[0], x[1])  # every worker holds the same model
    objective = problem.evaluate(x[0])[0] + 1e-3 * np.abs(x[0]).sum() + l2 / 2 * x[0] @ x[0]
    assert objective < 0.8 * start


def test_breast_cancer_refuses_more_samples_than_it_has():
    with pytest.raises(ValueError, match="exceeds the 569 samples"):
        PROBLEMS["sigmoid-bc"](4, 0, ProblemConfig(samples_per_worker=200))


FULL_PASS_STEPS = {"zo-proxsvrg": [0, 5, 10], "zo-proxsaga": [0]}


@pytest.mark.parametrize("name", sorted(FULL_PASS_STEPS))
def test_one_d_vector_a_step_and_one_more_at_a_full_pass(tmp_path, name):
    """On the sigmoid problem, d = 20, 12 steps (cases of tests/conformance.py): every step all-reduces one
    float64 d-vector, a full pass (ZO-ProxSVRG's snapshots, ZO-ProxSAGA's table) a second. Each worker
    queries its own 64 samples at a full pass, and 2 x 8 samples at x and at the snapshot / table
    otherwise: 2 function values a sample with either random-direction estimator."""
    run = sim_run(case(f"{name}-sigmoid"), tmp_path)
    log = method_log(run)
    assert set(log["op"]) == {"all_reduce"}
    assert (log["sent"] == 20 * 8).all() and (log["recv"] == 20 * 8).all()
    calls = log.groupby("step").size()
    assert list(calls[calls == 2].index) == FULL_PASS_STEPS[name] and set(calls) == {1, 2}
    assert len(calls) == 12
    queries = run.trace.query("name == 'queries'")
    expected = [64 * 2 * (t in FULL_PASS_STEPS[name]) + 2 * 8 * 2 for t in range(12)]
    assert list(queries["step"]) == list(range(12)) and list(queries["value"]) == expected
