"""Today's codec kernels against the frozen pre-issue-15 kernels (tests/reference_codecs.py): the same
payload bytes and the same decoded values, bit for bit, on random inputs (hypothesis), numpy and torch,
with and without a leading worker axis, stochastic and nearest rounding, full and short last buckets.
numpy arrays run both host paths: the compiled kernels (algorithms/hostkernels.py, when numba is
installed) and the array-API path they replace (THINWIRE_NUMBA=0, or no numba).
A faster kernel is only a faster kernel if these pass."""

from __future__ import annotations

import numpy as np
import pytest
import reference_codecs as old
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from thinwire.algorithms import bits, compress, hostkernels, sdp_quant, wire
from thinwire.algorithms import quantizers as new

BLOCKS = st.sampled_from([1, 40, 300, new.BLOCK_VALUES])  # host block sizes: one bucket each .. the default
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# (library, host path): torch tensors take the array-API path whatever numba does
PATHS = [("numpy", "compiled"), ("numpy", "array-api"), ("torch", "array-api")]
COMPILED = pytest.mark.skipif(not hostkernels.ENABLED, reason="numba not installed (or THINWIRE_NUMBA=0)")
LIB_PATHS = [pytest.param(lib, path, marks=[COMPILED] if path == "compiled" else [], id=f"{lib}-{path}")
             for lib, path in PATHS]


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


def check(new_q, old_q, x, u, lib, block, path="array-api") -> None:
    """Payload and decoding equal; `block` values per host block (small ones: many blocks, short last);
    `path`: the compiled host kernels or the array-API path for numpy arrays."""
    if lib == "torch":
        x, u = torch.from_numpy(x), torch.from_numpy(u)
    saved, new.BLOCK_VALUES = new.BLOCK_VALUES, block
    enabled, hostkernels.ENABLED = hostkernels.ENABLED, path == "compiled"
    try:
        for uniforms in ((u, None) if new_q.stochastic else (None,)):
            payload = new_q.compress(x, uniforms)
            same(payload, old_q.compress(x, uniforms))
            n = x.shape[-1]
            same(new_q.decompress(payload, n, x.dtype), old_q.decompress(payload, n, x.dtype))
    finally:
        new.BLOCK_VALUES = saved
        hostkernels.ENABLED = enabled


@pytest.mark.parametrize(("lib", "path"), LIB_PATHS)
@pytest.mark.parametrize("name", sorted(new.QUANTIZERS))
@SETTINGS
@given(data=inputs(), levels=st.integers(1, 7), bucket=st.sampled_from([1, 2, 5, 64, 512]), block=BLOCKS)
def test_quantizers_match_the_old_kernels(name, lib, path, data, levels, bucket, block):
    x, u = data
    check(new.QUANTIZERS[name](levels, bucket), old.QUANTIZERS[name](levels, bucket), x, u, lib, block, path)


@pytest.mark.parametrize(("lib", "path"), LIB_PATHS)
@SETTINGS
@given(data=inputs(), k=st.sampled_from([2, 4, 8]), group=st.sampled_from([1, 4, 128, 2048]), block=BLOCKS)
def test_symmetric_quantizer_matches_the_old_kernel(lib, path, data, k, group, block):
    x, u = data
    check(sdp_quant.symmetric(k, group), old.symmetric(k, group), x, u, lib, block, path)


@COMPILED
@pytest.mark.parametrize("name", sorted(new.QUANTIZERS) + ["symmetric"])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(4000, 20000), levels=st.integers(1, 7),
       bucket=st.sampled_from([1, 3, 5, 64, 512, 2048]), lead=st.sampled_from([(), (2,)]))
def test_long_vectors_match_the_old_kernels(name, seed, n, levels, bucket, lead):
    """Vectors long enough that the compiled kernels code and pack several runs of buckets each (a run is
    about 4096 values), with bucket sizes whose runs end mid-byte in the array-API path's blocks."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(lead + (n,)).astype(np.float32)
    u = rng.random(x.shape, dtype=np.float32)
    if name == "symmetric":
        k = [2, 4, 8][levels % 3]
        new_q, old_q = sdp_quant.symmetric(k, bucket), old.symmetric(k, bucket)
    else:
        new_q, old_q = new.QUANTIZERS[name](levels, bucket), old.QUANTIZERS[name](levels, bucket)
    check(new_q, old_q, x, u, "numpy", new.BLOCK_VALUES, "compiled")


@COMPILED
@pytest.mark.parametrize("name", sorted(new.QUANTIZERS) + ["symmetric"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_values_that_are_not_finite_take_the_array_api_path(name, bad):
    """A value that is not finite sends the call (or an ORQ bucket) back to the array-API path: the same
    bytes as that path. (Not compared with the frozen kernels: with an infinite value today's array-API
    QSGD already differed from them before the compiled kernels.)"""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 1500)).astype(np.float32)
    x[1, 700] = bad
    u = rng.random(x.shape, dtype=np.float32)
    q = sdp_quant.symmetric(4, 128) if name == "symmetric" else new.QUANTIZERS[name](4, 512)
    with np.errstate(all="ignore"):
        for uniforms in ((u, None) if q.stochastic else (None,)):
            payload = q.compress(x, uniforms)
            saved, hostkernels.ENABLED = hostkernels.ENABLED, False
            try:
                same(payload, q.compress(x, uniforms))
                decoded = q.decompress(payload, 1500, np.float32)
            finally:
                hostkernels.ENABLED = saved
            same(q.decompress(payload, 1500, np.float32), decoded)


@COMPILED
@pytest.mark.parametrize("name", [n for n in sorted(new.QUANTIZERS) if n != "scaled-sign"] + ["symmetric"])
def test_numpy_float32_takes_the_compiled_kernels(name, monkeypatch):
    """With numba, a float32 numpy vector never reaches the array-API encode or decode (else the tests
    above would only compare the array-API path with itself)."""
    q = sdp_quant.symmetric(4, 128) if name == "symmetric" else new.QUANTIZERS[name](4, 512)
    x = np.random.default_rng(0).standard_normal((3, 2000)).astype(np.float32)

    def fail(*args):
        raise AssertionError("the array-API kernel ran")
    monkeypatch.setattr(type(q), "_encode", fail)
    monkeypatch.setattr(bits, "unpack", fail)  # every array-API decompress unpacks its codes with it
    payload = q.compress(x, np.full(x.shape, 0.5, dtype=np.float32))
    assert q.decompress(payload, 2000, np.float32).shape == x.shape


@pytest.mark.parametrize(("lib", "path"), LIB_PATHS + [pytest.param("torch", "compiled", marks=[COMPILED])])
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), blocks=st.integers(1, 300),
       block=st.sampled_from([1, 2, 4, 8, 16, 32, 64, 256]), values=BLOCKS, dtype=st.sampled_from([np.float32, np.float64]))
def test_hadamard_matches_the_old_kernel(lib, path, seed, blocks, block, values, dtype):
    """numpy arrays and CPU tensors both take the host kernel (compiled, or numpy's)."""
    x = np.random.default_rng(seed).standard_normal((2, blocks * block)).astype(dtype)
    kept = x.copy()
    if lib == "torch":
        x = torch.from_numpy(x)
    saved, new.BLOCK_VALUES = new.BLOCK_VALUES, values
    enabled, hostkernels.ENABLED = hostkernels.ENABLED, path == "compiled"
    try:
        same(sdp_quant.hadamard(x, block), old.hadamard(x, block))
    finally:
        new.BLOCK_VALUES = saved
        hostkernels.ENABLED = enabled
    same(x, kept)  # the input is left alone


@COMPILED
@SETTINGS
@given(data=inputs(), density=st.sampled_from([0.001, 0.01, 0.1, 0.5, 0.99]), big=st.booleans())
def test_top_k_selection_matches_argpartition(data, density, big):
    """wire.top_k_indices' compiled pass (sample, candidates, partition) gives argpartition's indices;
    where the k-th largest |x| ties it leaves the choice to argpartition, as before."""
    x = data[0].reshape(-1)
    if big:  # long enough for a strided sample of the vector
        x = np.concatenate([x, np.random.default_rng(x.shape[0]).standard_normal(50_000).astype(np.float32)])
    k = max(1, min(x.shape[0] - 1, round(density * x.shape[0])))
    if x.shape[0] < 2:
        return
    got = wire.top_k_indices(x, k)
    saved, hostkernels.ENABLED = hostkernels.ENABLED, False
    try:
        same(got, wire.top_k_indices(x, k))
    finally:
        hostkernels.ENABLED = saved


@COMPILED
@pytest.mark.parametrize("n", [1000, 300_000])
def test_top_k_selection_takes_the_compiled_pass(n):
    """On Gaussian values (no ties) the compiled pass answers, itself: the test above compares something."""
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    k = max(1, n // 1000)
    idx = wire._top_k_host(x, k)
    assert idx is not None and idx.dtype == np.int32 and idx.shape == (k,)
    assert np.all(np.diff(idx) > 0) and np.abs(x[idx]).min() > np.delete(np.abs(x), idx).max()


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 3000), lead=st.sampled_from([(), (3,)]),
       sets=st.sampled_from([1, 2]), order=st.sampled_from(["rising", "repeats", "unordered"]),
       dtype=st.sampled_from([np.float32, np.float64, np.float16]))
def test_scatter_sum_matches_bincount(seed, d, lead, sets, order, dtype):
    """wire.scatter_sum (top-k's decompress): one rising set per row is written straight into zeros; the
    same bytes as bincount's float64 sums, -0.0 and NaN included; other sets still go through bincount."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, min(d, 50) + 1))
    shape = lead + (sets, k)
    if order == "rising":
        idx = np.stack([np.sort(rng.choice(d, k, replace=False)) for _ in range(int(np.prod(lead + (sets,))))])
    else:
        idx = rng.integers(0, d, (int(np.prod(lead + (sets,))), k))
        if order == "repeats" and k > 1:
            idx = np.sort(idx, axis=-1)
            idx[:, 1] = idx[:, 0]
    idx = idx.reshape(shape).astype(np.int32)
    values = rng.standard_normal(shape).astype(dtype)
    values[rng.random(shape) < 0.2] = -0.0
    values[rng.random(shape) < 0.05] = np.nan
    same(wire.scatter_sum(idx, values, d), old.scatter_sum_numpy(idx, values, d))


@SETTINGS
@given(seed=st.integers(0, 2**63 - 1), before=st.integers(0, 5), n=st.integers(0, 3000),
       dtype=st.sampled_from([np.float32, np.float64]), compiled=st.booleans())
def test_draw_uniforms_is_generator_random(seed, before, n, dtype, compiled):
    """compress.draw_uniforms (worker_uniforms' draw; compiled PCG64 for float32 when numba is there)
    gives Generator.random's numbers and leaves the generator in the same state: the state dict, its
    held 32-bit half (odd draws before and now) and the draws after."""
    enabled, hostkernels.ENABLED = hostkernels.ENABLED, hostkernels.ENABLED and compiled
    try:
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        a.random(before, dtype=np.float32)
        b.random(before, dtype=np.float32)
        into = np.full(n, 7, dtype=dtype) if n % 3 == 0 else None  # also drawn into a given array
        drawn = compress.draw_uniforms(b, n, dtype, out=into)
        same(drawn, a.random(n, dtype=dtype))
        assert into is None or drawn is into
        assert b.bit_generator.state == a.bit_generator.state
        same(b.random(3, dtype=np.float32), a.random(3, dtype=np.float32))
        assert b.random() == a.random()
    finally:
        hostkernels.ENABLED = enabled


@COMPILED
def test_draw_uniforms_takes_the_compiled_kernel(monkeypatch):
    """float32 from a PCG64 Generator is drawn by the compiled kernel (the test above compares something)."""
    calls = []
    kernel = hostkernels.pcg64_uniforms
    monkeypatch.setattr(hostkernels, "pcg64_uniforms", lambda *a: calls.append(len(a[-1])) or kernel(*a))
    assert compress.draw_uniforms(np.random.default_rng(7), 1001, np.float32).shape == (1001,)
    assert calls == [1001]
