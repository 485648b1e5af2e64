"""The simulator's in-place steps (algorithms/inplace.py, used by sgd, topk-ef and dgc) do the same
arithmetic as the plain expressions, lay the new model out the same way, and never write into what the
caller still holds: the model, the state and the gradient the oracle returned."""

from __future__ import annotations

import array_api_compat.numpy as xp_np
import numpy as np
import pytest
import torch
from thinwire.algorithms import inplace
from thinwire.algorithms.registry import get_method, make_config
from thinwire.simulators.problems import PROBLEMS, ProblemConfig
from thinwire.simulators.simcomm import SimComm


def test_minus_update_matches_the_full_expression_bit_for_bit_and_layout():
    rng = np.random.default_rng(0)
    row = rng.standard_normal((1, 50), dtype=np.float32)
    for x in (rng.standard_normal((5, 50), dtype=np.float32),
              np.asfortranarray(rng.standard_normal((5, 50), dtype=np.float32))):
        want = x - np.ascontiguousarray(np.broadcast_to(row, x.shape))  # what the methods computed before
        got = inplace.minus_update(x, row)
        assert got.tobytes() == want.tobytes() and got.strides == want.strides
        full = np.ascontiguousarray(np.broadcast_to(row, x.shape))
        got = inplace.minus_update(x, full.copy(), scratch=True)
        assert got.tobytes() == want.tobytes() and got.strides == want.strides
    xt = torch.as_tensor(np.asfortranarray(rng.standard_normal((5, 50), dtype=np.float32)))
    rt = torch.as_tensor(row)
    want = xt - rt.expand(5, 50).contiguous()
    got = inplace.minus_update(xt, rt)
    assert torch.equal(got, want) and got.stride() == want.stride()


def test_zero_at_and_put_last_are_where_and_scatter():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 30))
    idx = np.sort(rng.permutation(30)[:5])[None].repeat(4, 0)
    sent = np.zeros(a.shape, bool)
    np.put_along_axis(sent, idx, True, axis=-1)
    assert np.array_equal(inplace.zero_at(a.copy(), idx), np.where(sent, 0.0, a))
    t = torch.as_tensor(a)
    assert torch.equal(inplace.zero_at(t.clone(), torch.as_tensor(idx)), torch.as_tensor(np.where(sent, 0.0, a)))
    vals = np.take_along_axis(a, idx, axis=-1)
    assert np.array_equal(inplace.put_last(np.zeros_like(a), idx, vals), np.where(sent, a, 0.0))


def test_row_blocks_give_the_same_rows(monkeypatch):
    monkeypatch.setattr(inplace, "BLOCK_ELEMENTS", 64)  # 2 rows of 30 per block
    a = np.random.default_rng(2).standard_normal((7, 30))
    assert [s.stop - s.start for s in inplace.row_blocks(7, 30)] == [2, 2, 2, 1]
    top3 = lambda x: np.sort(np.argpartition(np.abs(x), 27, axis=-1)[:, 27:], axis=-1)
    assert np.array_equal(inplace.by_row_blocks(top3, a), top3(a))


@pytest.mark.parametrize("name, params", [
    ("sgd", {"lr": 0.5, "weight_decay": 0.01}),
    ("topk-ef", {"lr": 0.5, "density": 0.1}),
    ("topk-ef", {"lr": 0.5, "density": 0.1, "momentum": 0.9}),
    ("dgc", {"lr": 0.5, "density": 0.1}),
    ("dgc", {"lr": 0.5, "density": 0.1, "momentum_correction": False}),
    ("dgc", {"lr": 0.5, "density": 0.1, "nesterov": True, "threshold": "sampled"}),
])
def test_a_step_leaves_the_callers_arrays_alone(name, params):
    """Copies of the model, the state and the gradient taken before each step equal them after it."""
    prob = PROBLEMS["logreg"](3, 0, ProblemConfig(dim=40, heterogeneity=0.5))
    cls = get_method(name)
    method = cls(make_config(cls, params), prob.layout)
    comm, inner = SimComm(3, xp_np), prob.oracle(xp_np, None, "float32")
    grads = []

    def oracle(x):
        loss, g = inner(x)
        grads.append((g, g.copy()))
        return loss, g

    x = np.zeros((3, 40), dtype=np.float32)
    state = method.init_state(x, comm)
    for t in range(6):
        comm.log.step = t
        x0 = x.copy()
        state0 = {k: v.copy() for k, v in state.items() if isinstance(v, np.ndarray) and k != "send_counts"}
        new_x, new_state, _ = method.step(x, state, oracle, comm)
        assert np.array_equal(x, x0), (name, t)
        for k, v in state0.items():
            assert np.array_equal(state[k], v), (name, t, k)
        assert np.array_equal(*grads[-1]), (name, t, "gradient")
        x, state = new_x, new_state
