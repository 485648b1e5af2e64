"""Sparse message formats: round trips and sizes, property tests over numpy and torch."""

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from thinwire.algorithms import sparse_codec
from thinwire.algorithms.sparse_codec import FORMATS, decode, encode, message_bits

ENTRY_BITS = {"fp32-int32": 64, "fp16-int32": 48, "fp32-int64": 96}


@st.composite
def sparse_vectors(draw):
    """Sorted distinct indices into a vector of up to 300,000 coordinates (so gaps beyond 65535 are
    common), often with index 0 and the last index, and float32 values (within float16 range)."""
    n = draw(st.integers(1, 300_000))
    idx = draw(st.sets(st.integers(0, n - 1), max_size=40))
    if draw(st.booleans()):
        idx |= {0, n - 1}
    idx = np.array(sorted(idx), dtype=np.int64)
    values = np.array(draw(st.lists(st.floats(-6e4, 6e4, width=32), min_size=len(idx), max_size=len(idx))),
                      dtype=np.float32)
    return idx, values


def reference_bits(idx: np.ndarray, fmt: str) -> int:
    """The formula, independently: 32-bit header + 48 bits per entry + 16 per escape of 65535 skipped."""
    if fmt in ENTRY_BITS:
        return ENTRY_BITS[fmt] * len(idx)
    gaps = [b - a - 1 for a, b in zip([-1, *idx.tolist()], idx.tolist())]
    return 32 + 48 * len(idx) + 16 * sum(g // 65535 for g in gaps)


@settings(max_examples=200, deadline=None)
@given(sparse_vectors(), st.sampled_from(sorted(FORMATS)), st.booleans())
@example((np.array([0, 65535, 131071, 262143, 262144]), np.arange(5, dtype=np.float32)), "fp32-rl16", False)
@example((np.array([65534, 65535 + 65534]), np.ones(2, dtype=np.float32)), "fp32-rl16", True)
@example((np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)), "fp32-rl16", False)
def test_round_trip_and_size(vector, fmt, use_torch):
    idx, values = vector
    if use_torch:
        idx, values = torch.from_numpy(idx), torch.from_numpy(values)
    buf = encode(idx, values, fmt)
    assert buf.dtype in (np.uint8, torch.uint8) and buf.ndim == 1
    assert buf.shape[0] * 8 == message_bits(idx, fmt) == reference_bits(np.asarray(idx), fmt)
    got_idx, got_values = decode(buf, fmt)
    np.testing.assert_array_equal(np.asarray(got_idx), np.asarray(idx))
    want = np.asarray(values).astype(FORMATS[fmt][0])  # fp16 formats round the values, no more
    np.testing.assert_array_equal(np.asarray(got_values), want)


def test_escape_layout_is_the_documented_one():
    # Entry at 70000: 70000 skipped coordinates = one escape (65535) + run length 4465; then entry
    # at 70001 (run 0). The message is [c=2][2 float32][0xFFFF, 4465, 0] little-endian.
    buf = encode(np.array([70000, 70001]), np.array([1.5, -2.0], dtype=np.float32), "fp32-rl16")
    assert buf.shape[0] == 4 + 8 + 6
    assert np.frombuffer(buf[:4].tobytes(), np.uint32).tolist() == [2]
    assert np.frombuffer(buf[12:].tobytes(), np.uint16).tolist() == [0xFFFF, 4465, 0]


def test_a_corrupt_run_length_message_is_refused():
    buf = encode(np.array([3, 9]), np.ones(2, dtype=np.float32), "fp32-rl16")
    buf[0] = 3  # the header now claims three entries
    with pytest.raises(ValueError, match="corrupt"):
        decode(np.concatenate([buf, np.zeros(4, np.uint8)]), "fp32-rl16")


def test_escapes_count_every_full_65535_gap():
    escapes, runs = sparse_codec.run_lengths(np.array([65534, 65535 + 65535 + 65534, 65535 * 4 + 65534]))
    assert escapes.tolist() == [0, 1, 1] and runs.tolist() == [65534, 65534, 65534]
