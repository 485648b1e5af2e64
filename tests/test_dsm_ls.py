"""The DSM-LS family (dsm-ls, local-adamw, slowmo, local-adamw-global): the global steps against hand
computations, the local AdamW step against torch's, the schedule, the tau = 1 equivalences, bad input."""

import math

import array_api_compat.numpy as xp_np
import numpy as np
import pandas as pd
import pytest
import torch
from conformance import case, sim_run
from launch import method_log
from simulate import simulate
from thinwire.algorithms.comm import ThinwireError
from thinwire.algorithms.local_adamw import local_lr
from thinwire.algorithms.registry import get_method, make_config
from thinwire.simulators.simcomm import SimComm


def make(name, params, layout=(("w", (1, 4)),)):
    cls = get_method(name)
    return cls(make_config(cls, params), layout)


def test_sign_momentum_step_by_hand():
    """Delta over the given lr, sign of the interpolation with the OLD momentum, weight decay on x_old
    before the signed step, and the momentum updated afterwards."""
    method = make("dsm-ls", {"tau": 2, "sign_beta1": 0.5, "sign_beta2": 0.9, "lam": 0.5, "gamma": 2.0})
    comm = SimComm(1, xp_np)
    x_old = np.array([[1.0, 1.0, 1.0, 1.0]])
    x_bar = np.array([[0.9, 1.1, 1.05, 1.02]])
    m = np.array([[1.0, -1.0, 0.3, -0.5]])
    eta = 0.1
    x_new, outer = method.outer(x_bar, {"x_old": x_old, "momentum": m}, eta, 1, comm)
    # Delta = (x_old - x_bar) / 0.1 = [1, -1, -0.5, -0.2]; c = 0.5 m + 0.5 Delta = [1, -1, -0.1, -0.35];
    # x_old (1 - 0.5 * 2 * 0.1) - 2 * 0.1 * sign(c); m = 0.9 m + 0.1 Delta. At coordinate 3 the updated
    # momentum (0.22) has the other sign: taking the sign after the momentum update would step the other way.
    np.testing.assert_allclose(x_new, [[0.9 - 0.2, 0.9 + 0.2, 0.9 + 0.2, 0.9 + 0.2]], atol=1e-12)
    np.testing.assert_allclose(outer["momentum"], [[1.0, -1.0, 0.22, -0.47]], atol=1e-12)
    np.testing.assert_array_equal(outer["x_old"], x_new)
    # sign(0) = 0: with c = 0 x_old only decays.
    zero, _ = method.outer(x_old, {"x_old": x_old, "momentum": 0 * m}, eta, 1, comm)
    np.testing.assert_allclose(zero, 0.9 * x_old, atol=1e-12)


def test_slowmo_and_global_adamw_steps_by_hand():
    comm = SimComm(1, xp_np)
    x_old, x_bar, eta = np.array([[1.0, 2.0]]), np.array([[0.8, 2.1]]), 0.2
    slowmo = make("slowmo", {"slow_momentum": 0.5, "gamma": 3.0, "lam": 0.1}, (("w", (1, 2)),))
    x, outer = slowmo.outer(x_bar, {"x_old": x_old, "momentum": np.array([[2.0, 0.0]])}, eta, 0, comm)
    m = 0.5 * np.array([[2.0, 0.0]]) + np.array([[1.0, -0.5]])  # + (x_old - x_bar) / eta
    np.testing.assert_allclose(outer["momentum"], m, atol=1e-12)
    np.testing.assert_allclose(x, x_old * (1 - 0.1 * 3 * 0.2) - 3 * 0.2 * m, atol=1e-12)

    glob = make("local-adamw-global", {"tau": 2}, (("w", (1, 2)),))
    zeros = np.zeros((1, 2))
    x, outer = glob.outer(x_bar, {"x_old": x_old, "m": zeros, "v": zeros}, eta, 1, comm)
    delta = (x_old - x_bar) / eta
    m, v = 0.1 * delta, 0.05 * delta ** 2
    # Bias corrections at t = k + 1 = 2 local steps, step size the current local lr.
    update = (m / (1 - 0.9 ** 2)) / (np.sqrt(v / (1 - 0.95 ** 2)) + 1e-8)
    np.testing.assert_allclose(x, x_old * (1 - 0.1 * eta) - eta * update, atol=1e-12)


def test_whole_run_divides_by_the_current_lr():
    """Two workers on a quadratic, local SGD, warm-up then cosine: every global step uses the lr of the
    local step just taken (eta_1 = lr at the end of warm-up, then eta_3 on the cosine)."""
    params = {"tau": 2, "base": "sgd", "weight_decay": 0.0, "grad_clip": 0.0, "lr": 0.1, "schedule": "cosine",
              "warmup_steps": 2, "decay_steps": 6, "min_lr": 0.01, "lam": 0.2}
    method = make("dsm-ls", params, (("w", (1, 3)),))
    config = method.config
    targets = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -0.5]])
    comm = SimComm(2, xp_np)

    def oracle(x):
        return 0.5 * np.sum((x - targets) ** 2, axis=-1), x - targets

    x = np.zeros((2, 3))
    state = method.init_state(x, comm)
    hand_x, hand_old, hand_m = np.zeros((2, 3)), np.zeros(3), np.zeros(3)
    for k in range(4):
        x, state, _ = method.step(x, state, oracle, comm)
        eta = local_lr(config, k)
        hand_x = hand_x - eta * (hand_x - targets)
        if k % 2 == 1:
            delta = (hand_old - hand_x.mean(0)) / eta
            c = 0.95 * hand_m + 0.05 * delta
            hand_old = hand_old * (1 - 0.2 * eta) - eta * np.sign(c)
            hand_m = 0.98 * hand_m + 0.02 * delta
            hand_x = np.stack([hand_old, hand_old])
        np.testing.assert_allclose(x, hand_x, atol=1e-12)
    assert local_lr(config, 1) == 0.1 and local_lr(config, 3) < 0.1


def test_local_adamw_step_is_nanogpt_adamw():
    """One worker, no averaging inside the run: torch.optim.AdamW with nanoGPT's groups (decay on
    matrices only), gradient clipping to norm 1 and the lr set every step from the schedule."""
    layout = (("w", (2, 3)), ("b", (3,)))
    params = {"lr": 0.05, "tau": 100, "schedule": "cosine", "warmup_steps": 3, "decay_steps": 10,
              "min_lr": 0.005}
    method = make("local-adamw", params, layout)
    rng = np.random.default_rng(0)
    a, target = rng.standard_normal((9, 9)), rng.standard_normal(9) * 3

    def grad(flat):  # a gradient large enough for clipping to act
        return a.T @ (a @ flat - target)

    comm = SimComm(1, xp_np)
    x = rng.standard_normal((1, 9))
    w = torch.tensor(x[0, :6].reshape(2, 3), requires_grad=True)
    b = torch.tensor(x[0, 6:], requires_grad=True)
    opt = torch.optim.AdamW([{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}],
                            lr=0.05, betas=(0.9, 0.95), eps=1e-8)
    state = method.init_state(x, comm)
    for k in range(12):
        x, state, _ = method.step(x, state, lambda v: (np.zeros(1), grad(v[0])[None]), comm)
        flat = torch.cat([w.detach().reshape(-1), b.detach()]).numpy()
        g = torch.as_tensor(grad(flat))
        w.grad, b.grad = g[:6].reshape(2, 3).clone(), g[6:].clone()
        torch.nn.utils.clip_grad_norm_([w, b], 1.0)
        for group in opt.param_groups:
            group["lr"] = local_lr(method.config, k)
        opt.step()
        np.testing.assert_allclose(x[0], torch.cat([w.detach().reshape(-1), b.detach()]).numpy(), atol=1e-12)


def test_schedule():
    c = make_config(get_method("local-adamw"), {"lr": 1.0, "schedule": "cosine", "warmup_steps": 4,
                                                 "decay_steps": 14, "min_lr": 0.1})
    assert [local_lr(c, k) for k in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert local_lr(c, 9) == pytest.approx(0.55)  # half way down the cosine
    assert local_lr(c, 14) == local_lr(c, 1000) == 0.1  # nanoGPT: min_lr after the decay
    constant = make_config(get_method("local-adamw"), {"lr": 1.0, "warmup_steps": 2})
    assert [local_lr(constant, k) for k in (0, 1, 2, 500)] == [0.5, 1.0, 1.0, 1.0]


def test_slowmo_without_momentum_is_periodic_averaging():
    common = {"lr": 0.1, "tau": 4}
    a = simulate("slowmo", {**common, "slow_momentum": 0.0, "gamma": 1.0}, steps=30)
    b = simulate("local-adamw", common, steps=30)
    np.testing.assert_allclose(a.x, b.x, atol=1e-12)


# tau = 1 with plain SGD as the local step: each global step acts on the all-reduced gradient, so DSM-LS
# is Lion, SlowMo is heavy-ball SGD and the global AdamW step is AdamW, all at lr gamma * eta. With AdamW
# local steps and more than one worker no such identity holds (the local moments differ per worker).
SGD_TAU1 = {"tau": 1, "base": "sgd", "weight_decay": 0.0, "grad_clip": 0.0, "lr": 0.3}


def test_tau1_slowmo_is_heavy_ball_sgd_and_global_adamw_is_adamw():
    a, b = simulate("slowmo", {**SGD_TAU1, "slow_momentum": 0.9}), simulate("sgd", {"lr": 0.3, "momentum": 0.9})
    np.testing.assert_allclose(a.x, b.x, atol=1e-12)
    a = simulate("local-adamw-global", SGD_TAU1)
    b = simulate("adam", {"lr": 0.3, "beta1": 0.9, "beta2": 0.95, "weight_decay": 0.1})
    np.testing.assert_allclose(a.x, b.x, atol=1e-12)


def test_tau1_dsm_ls_is_lion_on_the_averaged_gradient():
    sim = simulate("dsm-ls", {**SGD_TAU1, "lam": 0.1})
    x, m = np.zeros(50), np.zeros(50)
    for g in sim.grads:
        g = g.mean(0)
        x = x * (1 - 0.1 * 0.3) - 0.3 * np.sign(0.95 * m + 0.05 * g)
        m = 0.98 * m + 0.02 * g
    np.testing.assert_allclose(sim.x, np.broadcast_to(x, sim.x.shape), atol=1e-12)


def test_one_worker_local_adamw_is_adamw():
    params = {"lr": 0.1, "beta1": 0.9, "beta2": 0.95, "weight_decay": 0.1}
    a = simulate("local-adamw", {**params, "tau": 5, "grad_clip": 0.0}, workers=1)
    np.testing.assert_allclose(a.x, simulate("adam", params, workers=1).x, atol=1e-12)


def test_randomized_sign_is_unbiased_up_to_the_bound_and_shared():
    method = make("dsm-ls", {"sign": "randomized", "sign_bound": 2.0, "tau": 1})
    comm = SimComm(3, xp_np)
    c = np.broadcast_to(np.array([-3.0, -1.0, 0.0, 0.5, 1.9]), (3, 5))
    draws = np.stack([method.sign(c, r, comm) for r in range(4000)])
    assert set(np.unique(draws)) == {-1.0, 1.0}
    assert (draws == draws[:, :1]).all()  # every worker draws the same signs
    # E S(c) = clip(c / B, -1, 1): within 4 standard errors of the mean of 4000 draws.
    expected = np.clip(c[0] / 2.0, -1, 1)
    se = np.sqrt(np.maximum(1 - expected ** 2, 1e-12) / 4000)
    assert (np.abs(draws[:, 0].mean(0) - expected) <= 4 * se + 1e-12).all()


@pytest.mark.parametrize("name, params, message", [
    ("dsm-ls", {"tau": 0}, "tau must be an integer >= 1"),
    ("slowmo", {"tau": -3}, "tau must be an integer >= 1"),
    ("dsm-ls", {"tau": 2.5}, "must be an integer"),
    ("dsm-ls", {"sign_beta1": 1.0}, r"sign_beta1 must be in \[0, 1\)"),
    ("dsm-ls", {"sign_beta2": -0.1}, r"sign_beta2 must be in \[0, 1\)"),
    ("dsm-ls", {"beta1": 1.5}, r"beta1 must be in \[0, 1\)"),
    ("slowmo", {"slow_momentum": 1.0}, r"slow_momentum must be in \[0, 1\)"),
    ("local-adamw-global", {"outer_beta2": 1.0}, r"outer_beta2 must be in \[0, 1\)"),
    ("dsm-ls", {"gamma": 0}, "gamma must be > 0"),
    ("dsm-ls", {"lam": -0.1}, "lam must be >= 0"),
    ("dsm-ls", {"sign": "soft"}, "sign must be one of exact, randomized"),
    ("dsm-ls", {"sign_bound": 0}, "sign_bound must be > 0"),
    ("local-adamw", {"schedule": "cosine"}, "set decay_steps to the run's number of steps"),
    ("local-adamw", {"schedule": "cosine", "decay_steps": 100, "min_lr": 0.0}, r"min_lr must be in \(0, lr"),
    ("local-adamw", {"schedule": "linear"}, "schedule must be one of constant, cosine"),
    ("local-adamw", {"base": "lion"}, "base must be one of adamw, sgd"),
    ("local-adamw", {"grad_clip": -1}, "grad_clip must be >= 0"),
])
def test_bad_input_is_named_with_its_fix(name, params, message):
    with pytest.raises(ThinwireError, match=message):
        make_config(get_method(name), params)


def test_bytes_only_at_period_ends():
    sim = simulate("dsm-ls", {"tau": 4})
    sent = [sim.comm.log.step_bytes(t)[0] for t in range(20)]
    assert sent == [50 * 8 if (t + 1) % 4 == 0 else 0 for t in range(20)]
    assert math.isclose(np.mean([sim.method.bits_per_parameter(32, t) for t in range(20)]), 32 / 4)


def test_rate_exponent_recovers_a_known_power_law():
    from thinwire.analysis.quantities import rate_exponent

    rows = [{"sign": "randomized", "seed": s, "rounds": t, "avg_grad_sq": (2 + s) * t ** -0.5 * (1 + 0.01 * s * (t == 400))}
            for s in range(3) for t in (100, 200, 400)]
    m = rate_exponent(None, {"sign_rate": pd.DataFrame(rows)}, "sign_rate", "randomized", "avg_grad_sq")
    assert m.value == pytest.approx(-0.5, abs=0.01) and 0 < m.sem < 0.01
    assert rate_exponent(None, {}, "sign_rate", "randomized", "avg_grad_sq") is None


def test_sign_rate_study_rows(tmp_path):
    from thinwire.simulators import sign_rate_study

    table = sign_rate_study.run_study(tmp_path / "s.csv", seeds=1, rounds=(5, 10))
    assert len(table) == 4 and set(table["sign"]) == {"randomized", "exact"}
    assert (table["min_grad_sq"] <= table["avg_grad_sq"]).all()
    assert np.allclose(table["eta"], 0.5 / np.sqrt(table["rounds"]))
    assert pd.read_csv(tmp_path / "s.csv").shape == table.shape


@pytest.mark.parametrize("name", ["dsm-ls-cosine", "slowmo-cosine"])
def test_one_parameter_all_reduce_per_period(tmp_path, name):
    """tau 4 over 20 steps (cases of tests/conformance.py): the float64 parameters are all-reduced at steps
    3, 7, 11, 15, 19 and nothing is sent between."""
    calls = method_log(sim_run(case(name), tmp_path))
    assert list(calls["op"]) == ["all_reduce"] * 5
    assert list(calls["step"]) == [3, 7, 11, 15, 19]
    assert (calls["sent"] == 50 * 8).all() and (calls["recv"] == 50 * 8).all()
