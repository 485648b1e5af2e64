"""sdp in the simulator and as real ranks: the same trajectory and the same bytes, call by call.

2 ranks (one node) under gloo and MPI: SDP4Bit (qWD + TLq-HS, stochastic rounding: the ranks must draw
the simulator's uniforms), qW + TLq, and the uncompressed baseline; 4 ranks as 2 nodes x 2 (both
all-to-all levels) with qWD and TLq-HS or ULq under gloo.
"""

import pytest
from launch import assert_modes_agree, method_log, read_run, three_modes, torchrun

from thinwire.cli import main

COMMON = ["--steps", "12", "--dtype", "float64", "--eval-every", "1", "--quiet", "--seed", "3",
          "--workload", "logreg", "--wparam", "dim=100", "--wparam", "heterogeneity=0.5",
          "--param", "lr=0.05", "--param", "weight_group=16", "--param", "grad_group=32"]


@pytest.mark.parametrize("weights,grads,ops", [("qwd", "tlq-hs", ["all_to_all", "all_gather_shards"]),
                                               ("qw", "tlq", ["all_to_all", "all_gather_shards"]),
                                               ("full", "full", ["reduce_scatter", "all_gather_shards"])])
def test_two_ranks_sim_gloo_and_mpi_agree(tmp_path, weights, grads, ops):
    runs = three_modes("sdp", [*COMMON, "--param", f"weights={weights}", "--param", f"grads={grads}"], tmp_path)
    assert_modes_agree(runs)
    assert method_log(runs["sim"])["op"].tolist() == ops * 12


@pytest.mark.parametrize("grads", ["tlq-hs", "ulq"])
def test_four_ranks_as_two_nodes_of_two(tmp_path, grads):
    args = [*COMMON, "--param", "ranks_per_node=2", "--param", "weights=qwd", "--param", f"grads={grads}"]
    assert main(["sim", "sdp", *args, "--workers", "4", "--out", str(tmp_path / "sim")]) == 0
    proc = torchrun(4, "run", "sdp", *args, "--timeout", "60", "--backend", "torch", "--out",
                    str(tmp_path / "gloo"), cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sim, gloo = read_run(tmp_path / "sim"), read_run(tmp_path / "gloo")
    assert (abs(gloo.trajectory["loss"] - sim.trajectory["loss"]) <= 1e-6).all()
    assert abs(gloo.params - sim.params).max() <= 1e-6
    assert method_log(gloo).equals(method_log(sim))
    assert method_log(sim)["group_size"].tolist()[:3] == [2, 2, 4]
