"""The compression vocabulary (algorithms/compress.py): every named compressor's payload is exactly the
bytes it states and decodes row by row; top-k round-trips what it keeps; error-feedback memory loses
nothing over a run; the link volume the results table reports is the performance model's beta term."""

import array_api_compat.numpy as xp_np
import array_api_compat.torch as xp_torch
import numpy as np
import pytest
import torch
from thinwire.algorithms.compress import (
    COMPRESSORS,
    TOPK,
    ErrorFeedback,
    NoMemory,
    TopK,
    compress_with_memory,
    make_compressor,
    worker_uniforms,
)
from thinwire.algorithms.quantizers import QUANTIZERS
from thinwire.algorithms.registry import is_period_end
from thinwire.simulators.collectives import Tier, one_tier
from thinwire.simulators.linkvolume import LINK_VOLUME, link_volume
from thinwire.simulators.simcomm import SimComm

N = 50


def as_np(a):
    return a.numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def draw(lead: tuple, lib: str, dtype=np.float32):
    x = np.random.default_rng(3).standard_normal(lead + (N,)).astype(dtype)
    return torch.from_numpy(x) if lib == "torch" else x


def test_the_registry_names_top_k_and_every_quantizer():
    assert set(COMPRESSORS) == {TOPK} | set(QUANTIZERS)
    with pytest.raises(ValueError, match="compressor must be 'topk' or a quantizer .*orq.*got 'randk'"):
        make_compressor("randk")


@pytest.mark.parametrize("name", sorted(COMPRESSORS))
@pytest.mark.parametrize("lib", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_payload_is_the_stated_bytes_and_decodes_row_by_row(name, lib, dtype):
    c = make_compressor(name, density=0.1, levels=3, bucket_size=16)
    x = draw((3,), lib, dtype)
    u = worker_uniforms(x, SimComm(3, xp_torch if lib == "torch" else xp_np), 7, 0) if c.stochastic else None
    payload = c.compress(x, u)
    itemsize = np.dtype(dtype).itemsize
    assert payload.shape == (3, c.payload_bytes(N, itemsize)) and as_np(payload).dtype == np.uint8
    together = as_np(c.decompress(payload, N, x.dtype))
    assert together.shape == (3, N) and together.dtype == dtype
    for r in range(3):  # a receiver decoding one gathered row gets what the batch decode gives
        alone = c.compress(x[r], None if u is None else u[r])
        np.testing.assert_array_equal(as_np(alone), as_np(payload[r]))
        np.testing.assert_array_equal(as_np(c.decompress(alone, N, x.dtype)), together[r])


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_top_k_round_trips_a_k_sparse_vector_and_sums_gathered_payloads_in_order(lib):
    c = TopK(0.1)
    assert c.k(N) == 5 and TopK(0.01).k(N) == 1 and TopK(0.11, round_up=True).k(N) == 6
    dense = np.zeros((4, N))
    rng = np.random.default_rng(0)
    for r in range(4):
        dense[r, rng.choice(N, 5, replace=False)] = rng.standard_normal(5) + 3
    x = torch.from_numpy(dense) if lib == "torch" else dense
    payload = c.compress(x)
    np.testing.assert_array_equal(as_np(c.decompress(payload, N, x.dtype)), dense)
    np.testing.assert_array_equal(as_np(c.decompress_sum(payload, N, x.dtype)), dense.sum(axis=0))
    assert c.payload_bytes(N, 8) == payload.shape[-1] == 5 * (4 + 8)


@pytest.mark.parametrize("name", [TOPK, "qsgd", "scaled-sign"])
def test_error_feedback_keeps_what_was_not_sent_and_loses_nothing_over_a_run(name):
    c, memory = make_compressor(name, density=0.1, bucket_size=16), ErrorFeedback()
    comm = SimComm(2, xp_np)
    rng = np.random.default_rng(1)
    error, sent_total, update_total = np.zeros((2, N)), np.zeros((2, N)), np.zeros((2, N))
    for t in range(25):
        update = rng.standard_normal((2, N))
        u = worker_uniforms(update, comm, 0, t) if c.stochastic else None
        p = memory.compensate(error, update)
        payload, error = compress_with_memory(c, memory, error, update, u)
        np.testing.assert_array_equal(payload, c.compress(p, u))  # C(e + update) goes on the wire
        sent = c.decompress(payload, N, update.dtype)
        np.testing.assert_array_equal(error, p - sent)  # e_new = p - C^-1(C(p)), exactly
        sent_total, update_total = sent_total + sent, update_total + update
    # Nothing lost, only delayed: everything sent plus what is still owed is every update.
    np.testing.assert_allclose(sent_total + error, update_total, rtol=0, atol=1e-12)
    assert np.abs(error).max() > 0  # the compressor really dropped something


def test_top_k_error_is_the_vector_with_its_sent_entries_zeroed():
    x = np.random.default_rng(2).standard_normal((2, N))
    c = TopK(0.1)
    _, error = compress_with_memory(c, ErrorFeedback(), np.zeros_like(x), x)
    kept = np.zeros_like(x, dtype=bool)
    np.put_along_axis(kept, np.asarray(c.select(x)).astype(np.intp), True, axis=-1)
    np.testing.assert_array_equal(error, np.where(kept, 0.0, x))


def test_no_memory_sends_the_update_and_keeps_nothing():
    x = np.random.default_rng(4).standard_normal((2, N))
    c = make_compressor("terngrad", bucket_size=16)
    u = worker_uniforms(x, SimComm(2, xp_np), 0, 0)
    payload, error = compress_with_memory(c, NoMemory(), np.ones_like(x), x, u)
    np.testing.assert_array_equal(as_np(payload), as_np(c.compress(x, u)))
    assert not error.any()


def test_period_end_is_every_periodth_step_counted_from_one():
    assert [t for t in range(12) if is_period_end(t, 4)] == [3, 7, 11]
    assert all(is_period_end(t, 1) for t in range(5))


@pytest.mark.parametrize("op", sorted(LINK_VOLUME))
def test_link_volume_is_the_beta_term_of_the_models_ring_formulas(op):
    p, n = np.arange(1, 9), np.full(8, 1000.0)
    tier = Tier(bandwidth_gbps=80.0, latency_us=0.0)  # 1e-10 s per byte
    np.testing.assert_allclose(link_volume(op, p, n) * tier.beta, one_tier(op, p, n, tier), rtol=1e-12, atol=0)
    assert link_volume(op, 1, 1000.0) == 0
