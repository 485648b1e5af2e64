"""0/1 Adam in the simulator: its schedule checked by hand (which steps update the variance, which
steps communicate and what), the local steps and synchronisations, and bad input."""

import array_api_compat.numpy as xp_np
import numpy as np
import pandas as pd
import pytest
from conformance import case, sim_run
from launch import method_log
from simulate import simulate
from thinwire.algorithms.comm import ThinwireError
from thinwire.algorithms.registry import get_method, make_config
from thinwire.simulators.simcomm import SimComm

SMALL = {"lr": 0.05, "var_freeze_step": 8, "var_update_scaler": 2, "local_step_scaler": 2, "local_step_clipper": 4}


def method(params: dict, d: int = 50):
    cls = get_method("zero-one-adam")
    return cls(make_config(cls, params), (("w", (1, d)),))


def test_schedule_by_hand():
    """SMALL, steps s = t + 1. Variance updates at s % var_interval == 0, the interval doubling after 2
    updates: s = 1, 2 (interval 1), 4, 6 (interval 2), 8 (interval 4); 1-bit gradients at s = 3, 5, 7.
    From s = 9 local steps, synchronising at s % local_interval == 0, the interval doubling after every
    2 local steps up to 4: s = 9, 10 (interval 1), 12 (interval 2: s = 11, 12), then every 4th."""
    m = method(SMALL)
    kinds = "".join(m.plan(t)[0][0] for t in range(24))
    assert kinds == "ddododod" + "sslslllslllsllls"
    assert [m.plan(t)[1] for t in range(10)] == [1, 2, 2, 3, 3, 4, 4, 5, 5, 5]


def test_default_schedule_is_deepspeeds():
    """DeepSpeed's defaults: 16 updates at interval 1, 16 at 2, 16 at 4, ..."""
    m = method({"var_freeze_step": 200})
    dense = [t + 1 for t in range(200) if m.plan(t)[0] == "dense"]
    assert dense == [*range(1, 17), *range(18, 49, 2), *range(52, 113, 4), *range(120, 201, 8)]
    assert all(m.plan(t)[0] == "onebit" for t in range(200) if t + 1 not in dense)
    assert m.plan(200)[0] == "sync" and m.plan(200)[1] == len(dense)


def run(steps: int, workers: int = 2, params: dict = SMALL):
    """steps of zero-one-adam on a stochastic logistic regression: the method, its communicator and per
    step (x, state, new x, new state, the local gradients the step drew)."""
    history = []
    sim = simulate("zero-one-adam", params, workers=workers, steps=steps,
                   on_step=lambda t, x, state, new_x, new, grad: history.append((x, state, new_x, new, grad)))
    return sim.method, sim.comm, history


def test_each_kind_of_step_sends_what_it_states():
    m, comm, history = run(20)
    for t, (_, before, x, after, _) in enumerate(history):
        kind = m.plan(t)[0]
        sent = comm.log.step_bytes(t)[0]
        assert sent * 8 / 50 == m.bits_per_parameter(64, t)
        if kind == "dense":
            assert sent == 50 * 8 and not np.array_equal(after["v"], before["v"])
        else:
            np.testing.assert_array_equal(after["v"], before["v"])  # the variance changes only on its steps
        if kind in ("onebit", "sync"):
            # d = 50 on 2 ranks: chunks of 32 coordinates, 4 bytes of sign bits and an 8-byte scale each.
            assert sent == 2 * (4 + 8) + (4 + 8)
        if kind == "local":
            assert sent == 0 and not np.array_equal(x[0], x[1])  # the ranks drift apart
        else:
            # Every communicating step ends in consensus, up to rounding after a synchronisation: each
            # rank undoes its own local steps (as DeepSpeed does) before applying the common update.
            np.testing.assert_allclose(x[0], x[1], rtol=0, atol=1e-15)


def test_errors_restart_at_the_freeze_and_sync_applies_the_averaged_momentum_sum():
    m, _, history = run(12)
    x_sync, state_sync = history[7][2:4]  # after s = 8, the last variance step
    assert np.abs(state_sync["error"]).max() > 0
    _, before, x, after, grad = history[8]  # s = 9: one local step, then a synchronisation
    assert after["lrs"] == 0 and np.abs(after["acc"]).max() == 0
    v_hat = before["v"] / (1 - 0.999 ** 5)
    denom = np.sqrt(v_hat) + 1e-8
    # Redo the step by hand: the local gradient gives the local momentum; the synchronisation compresses
    # lr m (sqrt(v_hat) + eps) with fresh (zero) errors, not the gradient errors held so far.
    local_m = 0.9 * before["m"] + 0.1 * grad
    fresh = dict(before, error=np.zeros_like(before["error"]), server_error=np.zeros_like(before["server_error"]))
    expected = m.onebit.compressed_average(0.05 * local_m, fresh, SimComm(2, xp_np))
    np.testing.assert_allclose(after["error"], expected["error"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(after["m"], expected["m"] / 0.05, rtol=1e-12)
    # x moved from the last synchronised point by -lr m / (sqrt(v_hat) + eps), m the new common momentum.
    np.testing.assert_allclose(x, x_sync - 0.05 * after["m"] / denom, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("params, message", [
    ({"var_freeze_step": 0}, "var_freeze_step must be >= 1"),
    ({"var_update_scaler": 0}, "var_update_scaler must be >= 1"),
    ({"local_step_scaler": -1}, "local_step_scaler must be >= 1"),
    ({"local_step_clipper": 0}, "local_step_clipper must be >= 1"),
    ({"beta1": 1.0}, r"beta1 must be in \[0, 1\)"),
    ({"eps": 0}, "eps must be > 0"),
])
def test_bad_parameters_are_named(params, message):
    with pytest.raises(ThinwireError, match=message):
        make_config(get_method("zero-one-adam"), params)


def test_rounds_ratio_counts_steps_with_method_traffic():
    """Two seeds: the baseline communicates on all 4 steps; `ours` on 2 of 4 (one step with two calls'
    worth of bytes still counts once), then on 1 of 4: ratios 2 and 4, mean 3."""
    from thinwire.analysis.quantities import rounds_ratio

    sent = {("base", 0): [8, 8, 8, 8], ("base", 1): [8, 8, 8, 8], ("ours", 0): [16, 0, 4, 0], ("ours", 1): [0, 0, 0, 2]}
    table = pd.DataFrame([{"experiment": "e", "mode": "sim", "label": label, "seed": seed, "step": t, "bytes_sent": b}
                          for (label, seed), values in sent.items() for t, b in enumerate(values)])
    m = rounds_ratio(table, "e", "ours", "base")
    assert m.value == 3.0 and m.sem == 1.0
    assert rounds_ratio(table, "e", "ours", "missing") is None


def test_the_schedule_is_on_the_wire(tmp_path):
    """Steps s = t + 1 (see test_schedule_by_hand), 24 of them (case zero-one-adam-24 of tests/conformance.py):
    dense at s = 1, 2, 4, 6, 8; 1-bit gradients at 3, 5, 7; then synchronisations at 9, 10, 12, 16, 20, 24
    and silence in between."""
    calls = method_log(sim_run(case("zero-one-adam-24"), tmp_path))
    per_step = calls.groupby("step")["op"].apply(tuple).to_dict()
    onebit = ("all_to_all", "all_gather_shards")
    assert {s + 1 for s, ops in per_step.items() if ops == ("all_reduce",)} == {1, 2, 4, 6, 8}
    assert {s + 1 for s, ops in per_step.items() if ops == onebit} == {3, 5, 7, 9, 10, 12, 16, 20, 24}
    assert len(per_step) == 14
