"""One byte-counting rule (algorithms/comm.collective_bytes) and every communicator logging by it:
SimComm, TorchComm (gloo) and MPIComm on 2 real ranks, and the DeepSpeed backend's counter. Each
communicator runs under a replaced rule whose numbers it could not compute itself, so a communicator
that counted its own way would log other numbers."""

import json
import sys

import array_api_compat.numpy as xp
import pytest
from comm_rule_script import MARKED, calls, message_length
from launch import BIN, ROOT, run
from thinwire.algorithms import comm as comm_module
from thinwire.algorithms.comm import CommLog, collective_bytes
from thinwire.simulators.simcomm import SimComm

from thinwire.launch import thread_env

WORLD = 2
SCRIPT = ROOT / "tests" / "comm_rule_script.py"


def test_the_rule_gives_what_a_rank_hands_in_and_gets_back():
    assert collective_bytes("all_reduce", 4, 80) == (80, 80)
    assert collective_bytes("all_gather", 4, 20) == (20, 80)
    assert collective_bytes("all_gather_shards", 3, 20) == (20, 60)
    assert collective_bytes("reduce_scatter", 4, 64) == (64, 16)
    assert collective_bytes("all_to_all", 4, 64) == (64, 64)
    assert collective_bytes("broadcast", 4, 64) == (64, 64)
    assert collective_bytes("send", 2, 12) == (12, 12)
    assert collective_bytes("all_gather_v", 3, 5, lengths=[5, 0, 7]) == (5, 12)


def test_the_rule_refuses_what_it_cannot_count():
    with pytest.raises(ValueError, match="no byte-counting rule for collective 'gossip'"):
        collective_bytes("gossip", 2, 8)
    with pytest.raises(ValueError, match="all_gather_v needs every member's message bytes"):
        collective_bytes("all_gather_v", 2, 8)


def expected(rank: int, p: int) -> list:
    """What `calls` must log on `rank` of p ranks, by the rule in force."""
    vec, chunks = 16 * p, 16 * p  # 4p float32; (p, 2) float64
    plan = [("all_reduce", vec, "method"), ("all_reduce", vec, "metrics"), ("all_gather", vec, "method"),
            ("all_gather_shards", vec, "method"), ("reduce_scatter", vec, "method"),
            ("all_to_all", chunks, "method"), ("broadcast", vec, "method"), ("all_gather", 8, "method")]
    out = [[op, p, *collective_bytes(op, p, sent), category] for op, sent, category in plan]
    lengths = [message_length(r) for r in range(p)]
    return out + [["all_gather_v", p, *collective_bytes("all_gather_v", p, lengths[rank], lengths), "method"]]


@pytest.fixture
def marked_rule(monkeypatch):
    for op, rule in MARKED.items():
        monkeypatch.setitem(comm_module.RECEIVED, op, rule)


def test_simcomm_logs_by_the_rule(marked_rule):
    comm = SimComm(WORLD, xp)
    calls(comm, list(range(WORLD)), stacked=True)
    got = [[r.op, r.group_size, r.sent, r.recv, r.category] for r in comm.log.records]
    assert got == expected(0, WORLD)  # the simulator logs rank 0's bytes
    assert got[0][3] == MARKED["all_reduce"](WORLD, 16 * WORLD)


@pytest.mark.parametrize("backend", ["torch", "mpi"])
def test_real_communicators_log_by_the_rule(tmp_path, marked_rule, backend):
    if backend == "torch":
        cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", str(WORLD), str(SCRIPT), "torch",
               str(tmp_path)]
    else:
        cmd = [str(BIN / "mpiexec"), "-n", str(WORLD), sys.executable, str(SCRIPT), "mpi", str(tmp_path)]
    proc = run(cmd, ROOT, timeout=120, env=thread_env(1))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in range(WORLD):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == expected(rank, WORLD), (backend, rank)


def test_deepspeed_counter_logs_by_the_rule(marked_rule, monkeypatch):
    dcomm = pytest.importorskip("deepspeed.comm")
    import torch
    from thinwire.workloads.deepspeed_backend import COUNTED, count_collectives

    for name in COUNTED:  # stand-ins for the real collectives: only the counting is under test
        monkeypatch.setattr(dcomm, name, lambda *args, **kwargs: None)
    monkeypatch.setattr(dcomm, "get_world_size", lambda group=None: 4 if group == "pair" else WORLD)
    log = CommLog()
    t = torch.zeros(6, dtype=torch.float32)
    with count_collectives(log):
        dcomm.all_reduce(t)
        dcomm.all_gather([t, t], t)
        dcomm.all_gather_into_tensor(torch.zeros(12), input_tensor=t)
        dcomm.all_to_all_single(torch.zeros(6), t, group="pair")
        dcomm.reduce_scatter_tensor(torch.zeros(3), t)
        dcomm.broadcast(t, 0)
        dcomm.send(t, 1)
    ops = [("all_reduce", 2), ("all_gather", 2), ("all_gather", 2), ("all_to_all", 4), ("reduce_scatter", 2),
           ("broadcast", 2), ("send", 2)]
    assert [[r.op, r.group_size, r.sent, r.recv] for r in log.records] == [
        [op, p, *collective_bytes(op, p, 24)] for op, p in ops]
    assert dcomm.all_reduce is not None and "wrapper" not in dcomm.all_reduce.__qualname__  # restored
