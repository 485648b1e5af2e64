"""Today's codec kernels against the frozen pre-issue-15 kernels (tests/reference_codecs.py): the same
payload bytes and the same decoded values, bit for bit, on random inputs (hypothesis), numpy and torch,
with and without a leading worker axis, stochastic and nearest rounding, full and short last buckets.
A faster kernel is only a faster kernel if these pass."""

from __future__ import annotations

import numpy as np
import pytest
import reference_codecs as old
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from thinwire.algorithms import quantizers as new
from thinwire.algorithms import sdp_quant

BLOCKS = st.sampled_from([1, 40, 300, new.BLOCK_VALUES])  # host block sizes: one bucket each .. the default
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def inputs(draw):
    """(x, uniforms) float32 (lead..., n): Gaussian, heavy-tailed, with ties and exact zeros."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(1, 700))
    lead = draw(st.sampled_from([(), (3,)]))
    kind = draw(st.sampled_from(["normal", "cauchy", "ties", "zeros", "tiny"]))
    shape = lead + (n,)
    x = {"normal": lambda: rng.standard_normal(shape),
         "cauchy": lambda: rng.standard_cauchy(shape),
         "ties": lambda: rng.integers(-3, 4, shape) * 0.5,
         "zeros": lambda: np.where(rng.random(shape) < 0.7, 0.0, rng.standard_normal(shape)),
         "tiny": lambda: rng.standard_normal(shape) * 1e-30}[kind]()
    return x.astype(np.float32), rng.random(shape, dtype=np.float32)


def same(a, b) -> None:
    a = a.numpy() if isinstance(a, torch.Tensor) else a
    b = b.numpy() if isinstance(b, torch.Tensor) else b
    assert a.shape == b.shape and a.dtype == b.dtype
    assert a.tobytes() == b.tobytes()


def check(new_q, old_q, x, u, lib, block) -> None:
    """Payload and decoding equal; `block` values per host block (small ones: many blocks, short last)."""
    if lib == "torch":
        x, u = torch.from_numpy(x), torch.from_numpy(u)
    saved, new.BLOCK_VALUES = new.BLOCK_VALUES, block
    try:
        for uniforms in ((u, None) if new_q.stochastic else (None,)):
            payload = new_q.compress(x, uniforms)
            same(payload, old_q.compress(x, uniforms))
            n = x.shape[-1]
            same(new_q.decompress(payload, n, x.dtype), old_q.decompress(payload, n, x.dtype))
    finally:
        new.BLOCK_VALUES = saved


@pytest.mark.parametrize("lib", ["numpy", "torch"])
@pytest.mark.parametrize("name", sorted(new.QUANTIZERS))
@SETTINGS
@given(data=inputs(), levels=st.integers(1, 7), bucket=st.sampled_from([1, 2, 5, 64, 512]), block=BLOCKS)
def test_quantizers_match_the_old_kernels(name, lib, data, levels, bucket, block):
    x, u = data
    check(new.QUANTIZERS[name](levels, bucket), old.QUANTIZERS[name](levels, bucket), x, u, lib, block)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
@SETTINGS
@given(data=inputs(), k=st.sampled_from([2, 4, 8]), group=st.sampled_from([1, 4, 128, 2048]), block=BLOCKS)
def test_symmetric_quantizer_matches_the_old_kernel(lib, data, k, group, block):
    x, u = data
    check(sdp_quant.symmetric(k, group), old.symmetric(k, group), x, u, lib, block)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), blocks=st.integers(1, 40), block=st.sampled_from([1, 2, 32, 64]),
       values=BLOCKS)
def test_hadamard_matches_the_old_kernel(lib, seed, blocks, block, values):
    x = np.random.default_rng(seed).standard_normal((2, blocks * block)).astype(np.float32)
    kept = x.copy()
    if lib == "torch":
        x = torch.from_numpy(x)
    saved, new.BLOCK_VALUES = new.BLOCK_VALUES, values
    try:
        same(sdp_quant.hadamard(x, block), old.hadamard(x, block))
    finally:
        new.BLOCK_VALUES = saved
    same(x, kept)  # the input is left alone
