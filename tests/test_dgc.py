"""Deep Gradient Compression: warm-up schedules, the identities it must reduce to, masking, selection."""

import array_api_compat.numpy as xp
import numpy as np
import pytest
from conformance import case, sim_run
from launch import method_log
from simulate import simulate
from thinwire.algorithms.comm import ThinwireError
from thinwire.algorithms.registry import get_method, make_config
from thinwire.simulators.simcomm import SimComm

DGC = get_method("dgc")


def dgc(layout=(("w", (10, 100)),), **params):
    return DGC(make_config(DGC, params), layout)


def run(name, params, steps=25, workers=3, dtype="float32"):
    """float32 by default: DGC's fp32 wire format is then lossless, so identities hold to rounding."""
    sim = simulate(name, params, steps=steps, workers=workers, dtype=dtype, dim=40)
    return sim.x, sim.state


def test_paper_and_code_warmup_schedules():
    paper = dgc(density=0.001, warmup="paper", warmup_steps=40)
    assert [paper.density(t) for t in (0, 9, 10, 20, 30, 39, 40, 1000)] == [
        0.25, 0.25, 0.0625, 0.015625, 0.00390625, 0.00390625, 0.001, 0.001]
    code = dgc(density=0.001, warmup="code", warmup_steps=50)
    assert [round(code.density(t), 6) for t in (0, 10, 20, 30, 40, 50)] == [
        0.316228, 0.1, 0.031623, 0.01, 0.003162, 0.001]
    assert dgc(density=0.1, warmup="paper", warmup_steps=40).density(30) == 0.1  # never below the final
    assert dgc(density=0.001).density(0) == 0.001  # no warm-up steps: final density from the start


@pytest.mark.parametrize("wire, bits", [("fp32-int32", 10 * 64), ("fp16-int32", 10 * 48), ("fp32-int64", 10 * 96),
                                        ("fp32-rl16", 32 + 10 * 48 + 64)])  # count, entries, message length
def test_bits_per_entry_of_each_wire_format(wire, bits):
    # 1000-element matrix at density 0.01 (10 entries) plus a 10-element bias sent dense in float32.
    m = dgc(layout=(("w", (10, 100)), ("b", (10,))), density=0.01, wire=wire)
    assert m.bits_per_parameter(32, 0) == (bits + 10 * 32) / 1010


@pytest.mark.parametrize("threshold, wire", [("sampled", "fp32-int32"), ("sampled", "fp32-rl16"),
                                             ("exact", "fp32-rl16"), ("sampled", "fp16-int32")])
def test_variable_messages_send_exactly_the_stated_bits(threshold, wire):
    """Sampled thresholds send only the entries that pass, run lengths count their escapes: each step's
    logged bytes are the stated bits of what that step selected, with no padding."""
    # Two 200,000-element matrices at density 0.001 (k = 200 each). In w1 a sampled threshold lets
    # through about k entries, often fewer; in w2 the first 180,000 gradients are tiny, so the run from
    # w1's last entry to w2's first spans more than 65535 coordinates: escapes.
    layout = (("w1", (200, 1000)), ("b", (7,)), ("w2", (2, 100_000)))
    method = dgc(layout=layout, lr=0.1, density=0.001, threshold=threshold, wire=wire)
    comm, rng = SimComm(2, xp), np.random.default_rng(0)
    x = np.zeros((2, method.n_params), dtype=np.float32)
    state = method.init_state(x, comm)

    def oracle(x):
        g = rng.standard_normal(x.shape, np.float32)
        g[:, 200_007:380_007] *= 1e-3
        return np.zeros(2), g

    fewer_than_k = escapes = 0
    for t in range(12):
        comm.log.step = t
        x, state, _ = method.step(x, state, oracle, comm)
        sent, _ = comm.log.step_bytes(t)
        assert sent * 8 / method.n_params == method.stated_bits(32, t, state)
        gather = [r for r in comm.log.records if r.step == t and r.op == "all_gather_v"]
        assert len(gather) == 1 and gather[0].sent * 8 == state["message_bits"][0]
        entries = int(np.sum(state["v"][0] == 0))  # sent coordinates are cleared from the velocity
        per_entry = {"fp32-int32": 64, "fp16-int32": 48, "fp32-rl16": 48}[wire]
        header = 32 if wire == "fp32-rl16" else 0
        fewer_than_k += entries < 400
        escapes += (state["message_bits"][0] - header - per_entry * entries) // 16
    assert (fewer_than_k > 0) == (threshold == "sampled")  # no padding up to k
    assert (escapes > 0) == (wire == "fp32-rl16")  # escapes happened, and were counted


def test_full_density_without_masking_is_momentum_sgd():
    x_dgc, _ = run("dgc", {"lr": 0.3, "momentum": 0.8, "density": 1.0, "momentum_masking": False})
    x_sgd, _ = run("sgd", {"lr": 0.3, "momentum": 0.8})
    np.testing.assert_allclose(x_dgc, x_sgd, rtol=1e-5, atol=1e-7)


def test_full_density_with_masking_drops_the_momentum():
    # Every entry is sent every step, so masking clears the local momentum each time: plain SGD.
    x_dgc, _ = run("dgc", {"lr": 0.3, "momentum": 0.8, "density": 1.0})
    x_sgd, _ = run("sgd", {"lr": 0.3, "momentum": 0.0})
    np.testing.assert_allclose(x_dgc, x_sgd, rtol=1e-5, atol=1e-7)


def test_without_correction_full_density_is_momentum_sgd():
    x_dgc, _ = run("dgc", {"lr": 0.3, "momentum": 0.8, "density": 1.0, "momentum_correction": False})
    x_sgd, _ = run("sgd", {"lr": 0.3, "momentum": 0.8})
    np.testing.assert_allclose(x_dgc, x_sgd, rtol=1e-5, atol=1e-7)


def test_sent_coordinates_are_cleared_from_velocity_and_momentum():
    method = dgc(layout=(("w", (1, 40)),), lr=0.3, density=0.1)
    comm = SimComm(2, xp)
    x = np.zeros((2, 40))
    state = method.init_state(x, comm)
    rng = np.random.default_rng(0)
    grad = rng.standard_normal((2, 40))
    _, state, _ = method.step(x, state, lambda x: (np.zeros(2), grad), comm)
    payload = comm.log.records[0]
    assert payload.op == "all_gather" and payload.sent == 4 * (4 + 4)  # k = 4 int32 + fp32 entries
    for w in range(2):
        top = np.argsort(-np.abs(grad[w]))[:4]
        assert (state["v"][w, top] == 0).all() and (state["u"][w, top] == 0).all()
        rest = np.setdiff1d(np.arange(40), top)
        np.testing.assert_array_equal(state["v"][w, rest], grad[w, rest])


def test_sampled_threshold_sends_at_most_k_and_mostly_the_top_k():
    method = dgc(layout=(("w", (100, 1000)),), density=0.001, threshold="sampled")
    state = method.init_state(np.zeros((1, 100_000)), SimComm(1, xp))
    v = np.random.default_rng(1).standard_normal((1, 100_000))
    (chosen,) = method._select(v, 0, state["rngs"])
    k = 100
    assert (np.diff(chosen) > 0).all() and len(chosen) <= k  # ascending, distinct, at most k
    exact = set(np.argsort(-np.abs(v[0]))[:k])
    assert len(exact & set(chosen)) >= 0.5 * k  # a sampled threshold approximates the top k


@pytest.mark.parametrize("params, message", [
    ({"warmup": "fast"}, "warmup must be one of"),
    ({"threshold": "guess"}, "threshold must be exact or sampled"),
    ({"wire": "fp8-int8"}, "wire must be one of"),
    ({"wire": "paper"}, "wire must be one of fp32-int32, fp16-int32, fp32-int64, fp32-rl16"),
    ({"density": 0}, "density must be in"),
    ({"sample_ratio": 2}, "sample_ratio must be in"),
    ({"warmup_steps": -1}, "warmup_steps must be >= 0"),
])
def test_bad_parameters_are_named(params, message):
    with pytest.raises(ThinwireError, match=message):
        make_config(DGC, params)


def test_shape_workloads_have_the_papers_parameter_counts():
    from thinwire.workloads.registry import make_workload

    resnet, alexnet = make_workload("resnet50-shapes", 1, 0), make_workload("alexnet-shapes", 1, 0)
    assert resnet.n_params == 25_557_032 and resnet.n_params * 4 / 2**20 == pytest.approx(97.49, abs=0.005)
    assert alexnet.n_params == 60_965_224 and alexnet.n_params * 4 / 2**20 == pytest.approx(232.56, abs=0.005)
    ptb = make_workload("ptb-lstm-shapes", 1, 0)
    assert ptb.n_params == 51_034_000 and ptb.n_params * 4 / 2**20 == pytest.approx(194.68, abs=0.005)
    assert sum(len(s) > 1 for _, s in resnet.layout) == 54  # 53 convolutions and the fc matrix
    loss, grad = alexnet.oracle(xp, 0, "float32")(np.zeros(alexnet.n_params, dtype=np.float32))
    assert grad.shape == (alexnet.n_params,) and grad.dtype == np.float32 and float(loss) == 0


def test_deepspeech_shapes_follow_the_stated_architecture():
    import math

    from thinwire.workloads.registry import make_workload
    from thinwire.workloads.shapes import deepspeech

    # The same construction at 5 x 800 gives the parameter count deepspeech.pytorch printed for it.
    assert sum(math.prod(s) for _, s in deepspeech(hidden=800, layers=5)) == 38_067_968
    model = make_workload("deepspeech-shapes", 1, 0)
    assert model.n_params == 117_461_168  # 7 bidirectional GRU layers of 1200 after two convolutions
    assert model.n_params * 4 / 2**20 == pytest.approx(448.08, abs=0.005)  # not Table 4's 488.08
    matrices = [s for _, s in model.layout if len(s) > 1]
    assert len(matrices) == 2 + 7 * 4 + 1 and (3600, 672) in matrices  # convs, GRU ih/hh x 2 directions, fc


def test_compression_ratio_quantity_reads_the_logged_bytes():
    import pandas as pd
    from thinwire.analysis.quantities import compression_ratio

    table = pd.DataFrame({"experiment": "e", "method": "dgc", "mode": "sim", "run": "r", "workload": "w",
                          "step": [0, 1], "n_params": 1000, "bytes_sent": [4000, 40]})
    m = compression_ratio(table, experiment="e", method="dgc")
    assert m.value == 100.0 and "MB sent per rank per step" in m.evidence
    assert compression_ratio(table, experiment="other", method="dgc") is None


def test_staleness_tracking_counts_every_send_after_warmup():
    method = dgc(layout=(("w", (4, 25)), ("b", (4,))), lr=0.1, density=0.04, warmup_steps=5,
                 track_staleness=True)
    comm = SimComm(2, xp)
    x = np.zeros((2, 104))
    state = method.init_state(x, comm)
    rng = np.random.default_rng(0)
    for t in range(25):
        comm.log.step = t
        x, state, _ = method.step(x, state, lambda x: (np.zeros(2), rng.standard_normal((2, 104))), comm)
    counts = state["send_counts"]
    assert counts[:, :100].sum(axis=1).tolist() == [4 * 20, 4 * 20]  # k = 4 per step, 20 steps after warm-up
    assert counts[:, 100:].sum() == 0  # the dense bias is not "sent sparse"
    diag = method.diagnostics(state)
    assert diag["staleness_steps"] == 20
    sends = counts[0, :100]
    expected = np.median(np.where(sends > 0, 20 / np.maximum(sends, 1), np.inf))
    assert diag["median_update_interval"] == expected
    assert diag["never_updated_fraction"] == np.mean(sends == 0)
    # The histogram: intervals 20 / sends in [1, 2), [2, 4), ... [16, 32); with "never" it sums to one.
    shares = {int(k.rsplit("_", 1)[1]): v for k, v in diag.items() if k.startswith("update_interval_share_")}
    assert sorted(shares) == [1, 2, 4, 8, 16]
    assert shares[16] == np.mean(sends == 1) and shares[8] == np.mean(sends == 2)  # 20 and 10 steps
    assert sum(shares.values()) + diag["never_updated_fraction"] == pytest.approx(1.0)
    assert dgc(lr=0.1).diagnostics(state) == {}  # not tracking: nothing reported


def test_messages_are_the_selected_entries_and_escapes(tmp_path):
    """The sampled threshold's and the run-length format's messages (cases of tests/conformance.py)."""
    sampled = method_log(sim_run(case("dgc-sampled-rl16"), tmp_path / "sampled")).query("op == 'all_gather_v'")
    assert len(sampled) == 20 and sampled["sent"].nunique() > 1  # sizes follow the data and the warm-up
    escapes = method_log(sim_run(case("dgc-escapes"), tmp_path / "escapes")).query("op == 'all_gather_v'")
    assert (escapes["sent"] >= 4 + 3 * 6).all()  # count, then 3 entries of a float32 and a run length
    assert (escapes["sent"] > 4 + 3 * 6).any()  # and some steps needed escapes


def test_sampled_threshold_gathers_lengths_then_messages_and_reduces_biases(tmp_path):
    calls = method_log(sim_run(case("dgc-sampled-fp16"), tmp_path))
    assert set(calls["op"]) == {"all_gather", "all_gather_v", "all_reduce"}
