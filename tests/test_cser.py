"""CSER family (../shared/papers/cser.md): the shared block sparsifier, the bytes, the residual form, the
reductions that hold exactly, the bits formulas in expectation, and config errors."""

import array_api_compat.numpy as xp_np
import array_api_compat.torch as xp_torch
import numpy as np
import pytest
from conformance import case, sim_run
from launch import method_log
from thinwire.algorithms import grbs
from thinwire.algorithms.comm import ThinwireError
from thinwire.algorithms.local_nag import nag_step
from thinwire.algorithms.registry import get_method, make_config
from thinwire.simulators.problems import PROBLEMS, ProblemConfig
from thinwire.simulators.simcomm import SimComm

from thinwire.runner import to_numpy

LAYOUT = (("weight", (1, 50)),)
# A conv kernel and a matrix whose dims every split below divides, and a bias.
NET = (("conv", (16, 8, 3, 3)), ("fc", (8, 16)), ("bias", (16,)))
MATRICES = NET[:2]


class SpyComm(SimComm):
    """A SimComm that keeps every buffer handed to all_reduce."""

    def __init__(self, *args):
        super().__init__(*args)
        self.buffers = []

    def all_reduce(self, x, op="sum", group=None, category="method"):
        self.buffers.append((self.log.step, to_numpy(x), op))
        return super().all_reduce(x, op, group, category)


def run(name, params, workers=3, steps=30, dtype="float64", xp=xp_np, observe=None):
    """Run a method on heterogeneous logistic regression; `observe(t, x_before, x_after, grad, method)`
    sees every step."""
    cls = get_method(name)
    prob = PROBLEMS["logreg"](workers, 2, ProblemConfig(dim=50, heterogeneity=0.8))
    method = cls(make_config(cls, params), prob.layout)
    comm, inner = SpyComm(workers, xp), prob.oracle(xp, None, dtype)
    grads = []

    def oracle(x):
        loss, g = inner(x)
        grads.append(to_numpy(g))
        return loss, g

    x = xp.asarray(np.zeros((workers, 50), dtype=dtype))
    state = method.init_state(x, comm)
    for t in range(steps):
        comm.log.step = t
        before = to_numpy(x)
        x, state, _ = method.step(x, state, oracle, comm)
        if observe:
            observe(t, before, to_numpy(x), grads[-1], method)
    return method, comm, to_numpy(x), state, grads


# --- the compressor -------------------------------------------------------------------------------

def test_every_worker_draws_the_same_blocks_from_the_shared_stream():
    split = grbs.Split(2, 4, 2)
    ranks = [grbs.BlockSparsifier(NET, split, seed=7) for _ in range(3)]  # as three processes build it
    for t in range(50):
        first = ranks[0].indices(t)
        for other in ranks[1:]:
            np.testing.assert_array_equal(other.indices(t), first)
    draws = {tuple(ranks[0].indices(t)) for t in range(50)}
    assert len(draws) > 20  # the blocks change with the step
    other_seed = grbs.BlockSparsifier(NET, split, seed=8)
    assert any(not np.array_equal(other_seed.mask(t), ranks[0].mask(t)) for t in range(10))  # and the seed


def test_blocks_are_contiguous_along_dims_0_and_1_and_mask_matches_indices():
    sp = grbs.BlockSparsifier(NET, grbs.Split(1, 4, 2), seed=0)
    for t in range(20):
        mask = sp.mask(t)
        assert mask.sum() == sp.count(t) == len(sp.indices(t))
        np.testing.assert_array_equal(np.flatnonzero(mask), sp.indices(t))
        conv = mask[:1152].reshape(16, 8, 3, 3)
        rows, cols = np.nonzero(conv.any(axis=(2, 3)))
        assert conv[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # a full rectangle, whole kernels
        assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (4, 4)  # k0 = 16/4, k1 = 8/2
        assert rows.min() % 4 == 0 and cols.min() % 4 == 0
        bias = mask[1280:]
        assert bias.sum() == 4 and np.flatnonzero(bias)[0] % 4 == 0  # vectors: dim 0 only (ratio layer * in)


def test_gather_and_scatter_round_trip_with_and_without_a_worker_axis():
    sp = grbs.BlockSparsifier(NET, grbs.Split(1, 2, 2), seed=1)
    idx = sp.indices(5)
    for xp in (xp_np, xp_torch):
        for shape in ((3, 1424), (1424,)):
            x = xp.asarray(np.random.default_rng(0).standard_normal(shape))
            buf = grbs.gather(x, idx)
            assert buf.shape == shape[:-1] + (len(idx),)
            np.testing.assert_array_equal(to_numpy(buf), to_numpy(x)[..., idx])
            y = grbs.scatter(x, idx, 2 * buf)
            expect = to_numpy(x).copy()
            expect[..., idx] *= 2
            np.testing.assert_array_equal(to_numpy(y), expect)
            assert not np.array_equal(to_numpy(x), expect)  # scatter copies: x itself is unchanged


@pytest.mark.parametrize("split", [grbs.Split(1, 4, 4), grbs.Split(2, 4, 2), grbs.Split(4, 2, 2)])
def test_expected_fraction_is_one_over_r_and_every_coordinate_is_drawn_uniformly(split):
    sp = grbs.BlockSparsifier(MATRICES, split, seed=3)
    steps = 3000
    freq = np.mean([sp.mask(t) for t in range(steps)], axis=0)
    assert abs(freq.mean() * split.ratio - 1) < 0.08  # mean fraction: std error ~2% at these sizes
    assert (np.abs(freq * split.ratio - 1) < 0.35).all()  # each coordinate ~1/R, none left out
    vec = grbs.BlockSparsifier((("bias", (16,)),), split, seed=3)
    frac = np.mean([vec.count(t) for t in range(steps)]) / 16
    assert abs(frac * split.layer * split.in_ - 1) < 0.1  # vectors ignore `out`, as in the code


def test_shapes_that_ratios_do_not_divide_follow_the_codes_rounding():
    # n0 = 10, in = 4: k0 = round(2.5) = 2 (Python rounds half to even), 5 blocks of 2 rows
    sp = grbs.BlockSparsifier((("b", (10,)),), grbs.Split(1, 4, 1), seed=0)
    starts = {tuple(sp.indices(t)) for t in range(200)}
    assert starts == {(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)}
    # n0 = 7, in = 2: k0 = round(3.5) = 4, blocks [0, 4) and [4, 7)
    sp = grbs.BlockSparsifier((("b", (7,)),), grbs.Split(1, 2, 1), seed=0)
    assert {sp.count(t) for t in range(200)} == {4, 3}


# --- bytes on the wire ----------------------------------------------------------------------------

CSER_TINY = {"lr": 0.2, "R1": 10, "split1": "2x1x5", "R2": 2, "split2": "out", "H": 4}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cser_sends_block_values_only_no_indices(dtype):
    method, comm, *_ = run("cser", CSER_TINY, steps=40, dtype=dtype)
    itemsize = np.dtype(dtype).itemsize
    sent_steps = {t for t, _, _ in comm.buffers}
    for t in range(40):
        c = method.sparsifier_at(t)
        idx = c.indices(t)
        records = [r for r in comm.log.records if r.step == t and r.category == "method"]
        if len(idx) == 0:
            assert records == [] and t not in sent_steps  # no block drawn: nothing sent, no call at all
            continue
        assert [(r.op, r.sent) for r in records] == [("all_reduce", len(idx) * itemsize)]
        (_, buf, op), = [b for b in comm.buffers if b[0] == t]
        assert op == "avg" and buf.dtype == np.dtype(dtype) and buf.shape == (3, len(idx))
    assert 0 < len(sent_steps) < 40  # layer = 2: some steps send nothing
    assert {method.sparsifier_at(t) is method.c2 for t in range(40)} == {True, False}


def test_the_buffer_is_the_models_block():
    """What CSER all-reduces is x_i[B] after the local step: the block's values, in index order."""
    seen = []

    def observe(t, before, after, grad, method):
        seen.append((t, after, method.sparsifier_at(t).indices(t)))

    _, comm, *_ = run("csea", {"lr": 0.2, "R": 5, "split": "out", "weight_decay": 0.0}, steps=10, observe=observe)
    for (t, buf, _), (_, after, idx) in zip(comm.buffers, seen):
        np.testing.assert_allclose(after[:, idx], np.broadcast_to(buf.mean(0), buf.shape), atol=1e-15)
        assert np.ptp(buf, axis=0).max() > 0  # the workers' blocks differed before averaging


# --- the residual form (cser.md: x_i = xhat - e_i) ------------------------------------------------

def test_cser_residual_form_synchronising_block_b_resets_the_local_error_on_b():
    """The v1 code keeps the local updates r_i since the last sync and on block B does x[B] += r[B];
    x[B] -= mean r[B]; r[B] = 0. Run it next to our (v2, model averaging) CSER from the same gradients."""
    c = CSER_TINY
    ref = {}

    def observe(t, before, after, grad, method):
        if not ref:
            ref.update(x=before.copy(), r=np.zeros_like(before), m=np.zeros_like(before))
        x, r = ref["x"], ref["r"]
        new, ref["m"] = nag_step(x, ref["m"], grad, c["lr"], 0.9, 5e-4)
        r = r + (x - new)
        idx = method.sparsifier_at(t).indices(t)
        x = new.copy()
        x[:, idx] += r[:, idx]
        x[:, idx] -= r[:, idx].mean(0)
        r[:, idx] = 0
        ref.update(x=x, r=r)
        np.testing.assert_allclose(after, x, atol=1e-12)  # the two forms agree
        xhat = x + r
        np.testing.assert_allclose(xhat, np.broadcast_to(xhat[0], xhat.shape), atol=1e-12)  # x_i = xhat - e_i
        if len(idx):
            assert (r[:, idx] == 0).all()  # error reset on B ...
            np.testing.assert_allclose(np.ptp(after[:, idx], axis=0), 0, atol=1e-12)  # ... models agree on B
        off = np.setdiff1d(np.arange(50), idx)
        ref.setdefault("withheld", []).append(np.abs(r[:, off]).max())

    run("cser", c, steps=30, observe=observe)
    assert max(ref["withheld"]) > 1e-3  # the local error off the block was really there


def test_momentum_is_never_synchronised():
    *_, x, state, _ = run("csea", {"lr": 0.2, "R": 1}, steps=10)
    np.testing.assert_allclose(np.ptp(x, axis=0), 0, atol=1e-12)  # every coordinate averaged ...
    assert np.ptp(state["momentum"], axis=0).max() > 1e-3  # ... but each worker keeps its own momentum


# --- reductions that hold exactly -----------------------------------------------------------------

def assert_same_run(a, b, atol=1e-12):
    *_, xa, _, ga = run(*a)
    *_, xb, _, gb = run(*b)
    np.testing.assert_allclose(xa, xb, rtol=0, atol=atol)
    np.testing.assert_allclose(np.array(ga), np.array(gb), rtol=0, atol=atol)


def test_csea_at_r1_is_synchronous_nag_on_averaged_gradients():
    """Averaging every coordinate every step: x common, mean_i m_i follows NAG on mean_i g_i (+ wd x)."""
    lr, mu, wd = 0.2, 0.9, 5e-4
    ref = {}

    def observe(t, before, after, grad, method):
        x, m = ref.get("x", before[0]), ref.get("m", np.zeros(50))
        g = grad.mean(0)
        m = mu * m + g + wd * x
        ref.update(x=x - lr * (mu * m + g), m=m)
        np.testing.assert_allclose(after, np.broadcast_to(ref["x"], after.shape), rtol=0, atol=1e-12)

    run("csea", {"lr": lr, "R": 1, "weight_decay": wd}, observe=observe)
    assert len(ref) == 2


def test_cser_with_h1_resets_every_step_so_is_csea_at_r2():
    assert_same_run(("cser", {"lr": 0.2, "R1": 10, "split1": "out", "R2": 5, "split2": "out", "H": 1}),
                    ("csea", {"lr": 0.2, "R": 5, "split": "out"}))


def test_cser_with_r1_equal_r2_is_csea_whatever_h():
    assert_same_run(("cser", {"lr": 0.2, "R1": 5, "split1": "out", "R2": 5, "split2": "out", "H": 3}),
                    ("csea", {"lr": 0.2, "R": 5, "split": "out"}))


def test_cser_pl_with_h1_is_csea():
    assert_same_run(("cser-pl", {"lr": 0.2, "R": 5, "split": "out", "H": 1}),
                    ("csea", {"lr": 0.2, "R": 5, "split": "out"}))


def test_cser_pl_at_r1_is_local_sgd_with_model_averaging_every_h_steps():
    lr, mu, wd, H = 0.2, 0.9, 5e-4, 3
    ref = {}

    def observe(t, before, after, grad, method):
        x, m = ref.get("x", before), ref.get("m", np.zeros_like(before))
        x, m = nag_step(x, m, grad, lr, mu, wd)
        if t % H == H - 1:
            x = np.broadcast_to(x.mean(0), x.shape)
        ref.update(x=x, m=m)
        np.testing.assert_allclose(after, x, rtol=0, atol=1e-12)

    *_, x, _, _ = run("cser-pl", {"lr": lr, "R": 1, "H": H}, steps=31, observe=observe)
    assert np.ptp(x, axis=0).max() > 1e-4  # 31 = 10 * 3 + 1: the last step was local


def test_qsparse_at_r1_is_local_sgd_with_model_averaging_every_h_steps():
    assert_same_run(("qsparse-local-sgd", {"lr": 0.2, "R": 1, "H": 3}), ("cser-pl", {"lr": 0.2, "R": 1, "H": 3}))


def test_qsparse_with_h1_is_ef_sgd_without_weight_decay():
    """H = 1: e_i gains the local step -lr u_i, the shared block of mean e is applied: EF-SGD, whose
    weight decay alone is handled differently (outside error feedback)."""
    assert_same_run(("qsparse-local-sgd", {"lr": 0.2, "R": 5, "split": "out", "H": 1, "weight_decay": 0}),
                    ("ef-sgd-blocks", {"lr": 0.2, "R": 5, "split": "out", "weight_decay": 0}))


def test_ef_sgd_at_r1_without_weight_decay_is_csea_at_r1():
    assert_same_run(("ef-sgd-blocks", {"lr": 0.2, "R": 1, "weight_decay": 0}),
                    ("csea", {"lr": 0.2, "R": 1, "weight_decay": 0}))


def test_ef_sgd_loses_nothing_and_keeps_models_identical():
    """EF invariant: x - mean e = x0 - lr * sum of mean NAG directions (weight decay off)."""
    lr, mu = 0.2, 0.9
    ref = {"m": np.zeros((3, 50)), "sum": np.zeros(50)}

    def observe(t, before, after, grad, method):
        ref["m"] = mu * ref["m"] + grad
        ref["sum"] += (grad + mu * ref["m"]).mean(0)

    *_, x, state, _ = run("ef-sgd-blocks", {"lr": lr, "R": 5, "split": "out", "weight_decay": 0}, observe=observe)
    assert np.abs(state["error"]).max() > 1e-3
    np.testing.assert_allclose(x[0] - state["error"].mean(0), -lr * ref["sum"], atol=1e-12)
    np.testing.assert_array_equal(x[0], x[1])


def test_cser_reductions_would_fail_if_the_reset_compressor_were_ignored():
    """Guard for the H = 1 reduction: with C1 only, CSER at (10, 5) differs from CSEA at 5."""
    *_, xa, _, _ = run("cser", {"lr": 0.2, "R1": 10, "split1": "out", "R2": 5, "split2": "out", "H": 2})
    *_, xb, _, _ = run("csea", {"lr": 0.2, "R": 5, "split": "out"})
    assert np.abs(xa - xb).max() > 1e-6


# --- bits per parameter ---------------------------------------------------------------------------

def expected_bits(name, params, steps=4000):
    cls = get_method(name)
    method = cls(make_config(cls, params), MATRICES)
    return np.mean([method.bits_per_parameter(32, t) for t in range(steps)])


@pytest.mark.parametrize("name,params,formula", [
    ("csea", {"R": 16, "split": "2x4x2"}, 32 / 16),
    ("ef-sgd-blocks", {"R": 16, "split": "2x4x2"}, 32 / 16),
    ("cser-pl", {"R": 4, "split": "2x2x1", "H": 4}, 32 / (4 * 4)),
    ("qsparse-local-sgd", {"R": 4, "split": "1x2x2", "H": 4}, 32 / (4 * 4)),
    ("cser", {"R1": 16, "split1": "2x4x2", "R2": 4, "split2": "1x2x2", "H": 4}, 32 * (3 / 16 + 1 / 4) / 4),
    ("cser", {"R1": 64, "split1": "4x4x4", "R2": 4, "split2": "2x2x1", "H": 16}, 32 * (15 / 64 + 1 / 4) / 16),
])
def test_bits_per_parameter_match_the_papers_formulas_in_expectation(name, params, formula):
    assert abs(expected_bits(name, params) / formula - 1) < 0.1


def test_bits_are_exact_per_step_without_layer_randomness():
    # layer = 1 and dims the ratios divide: every step sends exactly 1/R of the coordinates
    cls = get_method("cser")
    method = cls(make_config(cls, {"R1": 8, "split1": "1x4x2", "R2": 2, "split2": "in", "H": 4}), MATRICES)
    bits = [method.bits_per_parameter(32, t) for t in range(12)]
    assert bits == [32 / 8] * 3 + [32 / 2] + [32 / 8] * 3 + [32 / 2] + [32 / 8] * 3 + [32 / 2]


# --- config errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("name,params,message", [
    ("cser", {"R1": 0}, "R1 must be an integer >= 1"),
    ("cser", {"R2": -4}, "R2 must be an integer >= 1"),
    ("cser", {"H": 0}, "H must be an integer >= 1"),
    ("cser", {"R1": 16, "split1": "2x2x2"}, "split '2x2x2' multiplies to 8, not R1=16"),
    ("cser", {"split2": "rows"}, "split of R2 must be layer, in, out or LxIxO"),
    ("cser-pl", {"H": 0}, "H must be"),
    ("cser-pl", {"R": 0}, "R must be"),
    ("csea", {"R": 2, "split": "1x2"}, "split of R must be"),
    ("ef-sgd-blocks", {"momentum": 1.0}, "momentum must be in"),
    ("qsparse-local-sgd", {"weight_decay": -1}, "weight_decay must be >= 0"),
    ("qsparse-local-sgd", {"R": 2.5}, "must be an integer"),
])
def test_bad_configs_are_refused_with_a_named_error(name, params, message):
    with pytest.raises(ThinwireError, match=message):
        make_config(get_method(name), params)


@pytest.mark.parametrize("name,params,message", [
    ("cser", {"R1": 2, "split1": "in"}, r"R1: in=2 exceeds dim 0 \(1\) of tensor 'weight' \(1, 50\)"),
    ("cser", {"R2": 64, "split2": "out"}, r"R2: out=64 exceeds dim 1 \(50\) of tensor 'weight'"),
    ("csea", {"R": 100, "split": "2x1x50"}, None),
    ("qsparse-local-sgd", {"R": 51, "split": "out"}, "out=51 exceeds dim 1"),
])
def test_ratios_larger_than_a_tensor_allows_are_refused_naming_it(name, params, message):
    cls = get_method(name)
    config = make_config(cls, params)
    if message is None:  # the largest ratio the tensor allows is fine
        cls(config, LAYOUT)
        return
    with pytest.raises(ThinwireError, match=message):
        cls(config, LAYOUT)


@pytest.mark.parametrize("method", ["cser", "qsparse-local-sgd"])
def test_bytes_are_block_values_only(tmp_path, method):
    """The tiny problem (tests/conformance.py) splits blocks inside the 1 x 50 weight and sets `layer` = 2
    on C1, so some steps send nothing and the block sizes vary (10 or 25 values)."""
    calls = method_log(sim_run(case(method), tmp_path))
    assert set(calls["op"]) == {"all_reduce"} and (calls["sent"] % 8 == 0).all()
    per_step = calls.groupby("step")["sent"].sum().reindex(range(20), fill_value=0)
    # float64 block values, nothing else: a block of the 1 x 50 weight holds 10 (out = 5) or 25 (R2 = 2)
    assert set(calls["sent"] // 8) <= {10, 25}
    assert (per_step == 0).any() and (per_step > 0).any()  # steps without a block send nothing
