"""SimComm collectives against hand-computed results, and the bytes each logs."""

import array_api_compat.numpy as xp
import numpy as np
import pytest
from thinwire.algorithms.comm import ThinwireError
from thinwire.simulators.simcomm import SimComm


@pytest.fixture
def comm():
    return SimComm(4, xp)


def test_all_reduce_sum_avg_and_groups(comm):
    x = np.arange(8.0).reshape(4, 2)
    np.testing.assert_array_equal(comm.all_reduce(x), np.tile([12.0, 16.0], (4, 1)))
    np.testing.assert_array_equal(comm.all_reduce(x, op="avg"), np.tile([3.0, 4.0], (4, 1)))
    pairs = comm.split([[0, 1], [2, 3]])
    np.testing.assert_array_equal(comm.all_reduce(x, group=pairs), [[2, 4], [2, 4], [10, 12], [10, 12]])
    interleaved = comm.split([[0, 2], [1, 3]])
    np.testing.assert_array_equal(comm.all_reduce(x, group=interleaved), [[4, 6], [8, 10], [4, 6], [8, 10]])


def test_all_gather_stacks_after_worker_axis(comm):
    x = np.arange(8.0).reshape(4, 2)
    out = comm.all_gather(x)
    assert out.shape == (4, 4, 2)
    for r in range(4):
        np.testing.assert_array_equal(out[r], x)
    grouped = comm.all_gather(x, group=comm.split([[0, 1], [2, 3]]))
    np.testing.assert_array_equal(grouped[3], x[2:4])


def test_reduce_scatter_gives_each_rank_its_chunk(comm):
    x = np.arange(16.0).reshape(4, 4)  # column sums 24, 28, 32, 36
    np.testing.assert_array_equal(comm.reduce_scatter(x), [[24.0], [28.0], [32.0], [36.0]])
    with pytest.raises(ValueError, match="divisible"):
        comm.reduce_scatter(np.zeros((4, 3)))


def test_all_to_all_transposes_chunks(comm):
    x = np.arange(16).reshape(4, 4, 1)  # x[src, dst]
    out = comm.all_to_all(x)[..., 0]
    np.testing.assert_array_equal(out, np.arange(16).reshape(4, 4).T)


def test_broadcast_from_group_root(comm):
    x = np.arange(8.0).reshape(4, 2)
    out = comm.broadcast(x, src=1, group=comm.split([[0, 1], [2, 3]]))
    np.testing.assert_array_equal(out, [[2, 3], [2, 3], [6, 7], [6, 7]])


def test_bytes_logged_are_the_buffers_handed_in_and_out(comm):
    comm.log.step = 7
    comm.all_reduce(np.zeros((4, 10)))                      # 80 in, 80 out
    comm.all_gather(np.zeros((4, 5), dtype=np.float32))     # 20 in, 4 x 20 out
    comm.reduce_scatter(np.zeros((4, 8)))                    # 64 in, 16 out
    comm.all_reduce(np.zeros((4, 1)), category="metrics")    # not method traffic
    assert [(r.op, r.sent, r.recv) for r in comm.log.records[:3]] == [
        ("all_reduce", 80, 80), ("all_gather", 20, 80), ("reduce_scatter", 64, 16)]
    assert comm.log.step_bytes(7) == (80 + 20 + 64, 80 + 80 + 16)
    assert comm.log.step_bytes(7, "metrics") == (8, 8)
    assert comm.log.step_bytes(6) == (0, 0)


def test_groups_must_partition_the_ranks(comm):
    with pytest.raises(ThinwireError, match="partition"):
        comm.split([[0, 1], [1, 2, 3]])
    with pytest.raises(ThinwireError, match="same size"):
        comm.split([[0], [1, 2, 3]])
