"""Payload packing and the top-k helpers: property tests over numpy and torch."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from thinwire.algorithms import wire

finite = st.floats(-1e6, 1e6, allow_nan=False, width=64)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 40)), elements=finite),
       st.data())
def test_pack_unpack_roundtrip_and_size(x, data):
    idx = data.draw(arrays(np.int32, x.shape, elements=st.integers(0, 2**31 - 1)))
    for a, b in ((x, idx), (torch.from_numpy(x), torch.from_numpy(idx))):
        buf = wire.pack([b, a])
        assert buf.shape[-1] == x.shape[-1] * (4 + 8)  # exactly int32 + float64 per entry
        got_idx, got_x = wire.unpack(buf, [(b.dtype, x.shape[-1]), (a.dtype, x.shape[-1])])
        np.testing.assert_array_equal(np.asarray(got_idx), idx)
        np.testing.assert_array_equal(np.asarray(got_x), x)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 60)), elements=finite,
              unique=True), st.data())
def test_top_k_keeps_the_largest_magnitudes(x, data):
    k = data.draw(st.integers(1, x.shape[-1]))
    for arr in (x, torch.from_numpy(x)):
        idx = np.asarray(wire.top_k_indices(arr, k))
        assert idx.shape == x.shape[:-1] + (k,)
        assert (np.diff(idx, axis=-1) > 0).all()  # ascending, no repeats
        kept = np.take_along_axis(np.abs(x), idx, axis=-1)
        threshold = np.sort(np.abs(x), axis=-1)[..., -k]
        assert (kept >= threshold[..., None]).all()


def test_scatter_sum_adds_sources_per_coordinate():
    idx = np.array([[[0, 2], [2, 3]]], dtype=np.int32)  # one receiver, two sources
    vals = np.array([[[1.0, 2.0], [10.0, 20.0]]])
    expected = [[1.0, 0.0, 12.0, 20.0, 0.0]]
    np.testing.assert_array_equal(wire.scatter_sum(idx, vals, 5), expected)
    np.testing.assert_array_equal(wire.scatter_sum(torch.from_numpy(idx), torch.from_numpy(vals), 5).numpy(),
                                  expected)


def test_scatter_sum_of_empty_sets_is_zeros_with_any_leading_axes():
    """k = 0 (a density that rounds to no coordinate): every receiver gets zeros, not an IndexError."""
    for shape in [(3, 1, 0), (3, 2, 0), (2, 3, 1, 0)]:
        idx, vals = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.float32)
        for i, v in ((idx, vals), (torch.from_numpy(idx), torch.from_numpy(vals))):
            out = np.asarray(wire.scatter_sum(i, v, 5))
            assert out.shape == shape[:-2] + (5,) and out.dtype == np.float32 and not out.any()
