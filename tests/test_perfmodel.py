"""The performance model: collective formulas by hand and against nccl-tests' busbw, hierarchical and
spanning collectives, replaying a log, compute / codec / overlap, speedup pairing, break-even
bandwidth, time to target, bad clusters."""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import thinwire.simulators
from thinwire.algorithms.comm import ThinwireError
from thinwire.simulators.breakeven import bandwidth_at_speedup
from thinwire.simulators.collectives import bus_bandwidth, nccl_tests_size, on_cluster
from thinwire.simulators.perfmodel import (
    Cluster,
    Options,
    StepModel,
    Tier,
    collective_time,
    load_cluster,
    model_runs,
    step_comm_times,
)

GBIT = Tier(bandwidth_gbps=1.0, latency_us=10.0)  # alpha 1e-5 s, beta 8e-9 s/byte


@pytest.mark.parametrize("op, algorithm, expected, by_hand", [
    # p = 4, n = 1e6 bytes, alpha 1e-5 s, beta 8e-9 s/byte (Thakur et al. 2005; NCCL's double binary
    # tree; a pipelined chain broadcast; a binomial tree broadcast).
    ("all_reduce", "ring", 2 * 3 * 1e-5 + 2 * 3 / 4 * 1e6 * 8e-9, 0.01206),
    ("all_reduce", "tree", 2 * 2 * 1e-5 + 2 * 1e6 * 8e-9, 0.01604),
    ("all_gather", "ring", 3 * 1e-5 + 3 * 1e6 * 8e-9, 0.02403),
    ("reduce_scatter", "ring", 3 * 1e-5 + 3 / 4 * 1e6 * 8e-9, 0.00603),
    ("all_to_all", "ring", 3 * 1e-5 + 3 / 4 * 1e6 * 8e-9, 0.00603),
    ("broadcast", "ring", 3 * 1e-5 + 1e6 * 8e-9, 0.00803),
    ("broadcast", "tree", 2 * (1e-5 + 1e6 * 8e-9), 0.01602),
])
def test_collective_formulas(op, algorithm, expected, by_hand):
    assert expected == pytest.approx(by_hand, rel=1e-12)
    assert collective_time(op, 4, 1e6, GBIT, algorithm) == pytest.approx(by_hand, rel=1e-12)


def test_auto_takes_the_cheaper_algorithm_per_call():
    small, large = (64, 1e3), (4, 1e6)  # latency-bound: tree; bandwidth-bound: ring
    for p, n in (small, large):
        ring, tree = (collective_time("all_reduce", p, n, GBIT, a) for a in ("ring", "tree"))
        assert collective_time("all_reduce", p, n, GBIT, "auto") == min(ring, tree)
    assert collective_time("all_reduce", *small, GBIT, "tree") < collective_time("all_reduce", *small, GBIT, "ring")
    assert collective_time("all_reduce", *large, GBIT, "ring") < collective_time("all_reduce", *large, GBIT, "tree")


@pytest.mark.parametrize("op, algorithm, share_of_link", [
    # With no latency, busbw (nccl-tests' definition) of each ring formula is the link rate.
    ("all_reduce", "ring", 1.0), ("reduce_scatter", "ring", 1.0), ("all_gather", "ring", 1.0),
    ("all_to_all", "ring", 1.0), ("broadcast", "ring", 1.0),
    ("all_reduce", "tree", 7 / 8),  # 2 n beta against the ring's 2 (p-1)/p n beta
    ("broadcast", "tree", 1 / 3),  # log2(8) rounds, each sending the whole message
])
def test_bus_bandwidth_of_each_formula_against_nccl_tests(op, algorithm, share_of_link):
    p, n, link = 8, 1e9, Tier(bandwidth_gbps=10.0, latency_us=0.0)
    t = collective_time(op, p, n, link, algorithm)
    busbw_gbps = bus_bandwidth(op, p, nccl_tests_size(op, p, n), t) * 8 / 1e9
    assert busbw_gbps == pytest.approx(10.0 * share_of_link)


def test_bus_bandwidth_factors_are_nccl_tests_summary():
    # doc/PERFORMANCE.md: S/t times 2(n-1)/n, (n-1)/n, (n-1)/n, (n-1)/n, 1, 1; here S = 1e9, t = 2 s, n = 4.
    got = {op: bus_bandwidth(op, 4, 1e9, 2.0) for op in
           ("all_reduce", "reduce_scatter", "all_gather", "all_to_all", "broadcast", "reduce")}
    assert got == pytest.approx({"all_reduce": 7.5e8, "reduce_scatter": 3.75e8, "all_gather": 3.75e8,
                                 "all_to_all": 3.75e8, "broadcast": 5e8, "reduce": 5e8})
    assert nccl_tests_size("all_gather", 4, 10) == 40 and nccl_tests_size("reduce_scatter", 4, 10) == 10


def test_one_rank_costs_nothing_and_unknown_ops_are_refused():
    assert collective_time("all_reduce", 1, 1e9, GBIT) == 0
    with pytest.raises(ThinwireError, match="cannot price"):
        collective_time("send", 4, 1.0, GBIT)
    with pytest.raises(ThinwireError, match="algorithm"):
        collective_time("all_reduce", 4, 1.0, GBIT, "butterfly")


# Two nodes of 4 GPUs: intra alpha 1e-6 s, beta 8e-11 s/byte; inter alpha 5e-5 s, beta 8e-9 s/byte.
TWO_NODES = Cluster("c", nodes=2, gpus_per_node=4, sustained_tflops=1.0, intra=Tier(100, 1), inter=Tier(1, 50))


@pytest.mark.parametrize("op, p, hierarchical, by_hand", [
    ("all_reduce", 4, False, 6e-6 + 1.2e-4),  # inside a node: the intra tier
    ("all_reduce", 8, False, 7e-4 + 0.014),  # flat ring across nodes: the inter tier
    # intra RS (3e-6 + 6e-5) + inter AR of 1e6 over 2 nodes (1e-4 + 8e-3) + intra AG of 2.5e5 (3 x 2.1e-5)
    ("all_reduce", 8, True, 6.3e-5 + 8.1e-3 + 6.3e-5),
    ("reduce_scatter", 8, True, 6.3e-5 + 5e-5 + 4e-3),  # intra RS + inter RS of 1e6 over 2 nodes
    ("all_reduce", 6, True, 5e-4 + 2 * 5 / 6 * 8e-3),  # not whole nodes: flat
    # 7 alpha_e + the 4 GPUs of a node pushing 4/8 of 1e6 each through its link (beta_e).
    ("all_to_all", 8, False, 3.5e-4 + 0.016),
])
def test_collectives_spanning_nodes(op, p, hierarchical, by_hand):
    c = dataclasses.replace(TWO_NODES, hierarchical=hierarchical)
    assert float(on_cluster(op, p, 1e6, c)) == pytest.approx(by_hand, rel=1e-12)
    assert c.world_size == 8


def test_log_replay_scales_world_and_bytes():
    log = pd.DataFrame({"step": [0, 0, 1, 1], "op": ["all_reduce", "all_reduce", "all_gather", "all_reduce"],
                        "group_size": [2, 2, 2, 2], "sent": [100, 100, 10, 8], "recv": [100, 100, 20, 8],
                        "category": ["method", "metrics", "method", "metrics"]})
    c = Cluster("c", nodes=4, gpus_per_node=1, sustained_tflops=1.0, intra=GBIT, inter=GBIT)
    per_step = step_comm_times(log, run_world=2, cluster=c, scale=10.0)
    assert per_step[0] == pytest.approx(collective_time("all_reduce", 4, 1000, GBIT))  # metrics ignored
    assert per_step[1] == pytest.approx(collective_time("all_gather", 4, 100, GBIT))


def _fake_run(root, name, method, sent, label=None, eval_loss=None):
    d = root / name
    d.mkdir()
    (d / "meta.json").write_text(json.dumps({"run": name, "method": method, "workload": "w", "seed": 0,
                                             "mode": "sim", "backend": "numpy", "world_size": 2, "n_params": 1000,
                                             "experiment": "e", "label": label or method}))
    steps = list(range(len(eval_loss or [0, 0])))
    pd.DataFrame({"step": steps, "op": "all_reduce", "group_size": 2, "sent": sent, "recv": sent,
                  "category": "method"}).to_csv(d / "commlog.csv", index=False)
    trajectory = pd.DataFrame({"step": steps, "loss": np.linspace(1.0, 0.5, len(steps))})
    if eval_loss:
        trajectory["eval_loss"] = eval_loss
    trajectory.to_csv(d / "trajectory.csv", index=False)
    return d


def test_speedup_is_against_the_dense_run_of_the_same_setup(tmp_path):
    dense = _fake_run(tmp_path, "dense", "sgd", 4000)
    small = _fake_run(tmp_path, "small", "topk-ef", 400)
    cluster = tmp_path / "c.yaml"
    cluster.write_text("name: c\nnodes: 4\ngpus_per_node: 1\nsustained_tflops: 1.0\n"
                       "tiers: {intra: {bandwidth_gbps: 1, latency_us: 0}, inter: {bandwidth_gbps: 1, latency_us: 0}}\n")
    table = model_runs([dense, small], cluster, tmp_path / "m.csv", target_params=1e6, flops_per_step=0.0,
                       bandwidths=[1.0, 10.0])
    got = table.groupby(["run", "bandwidth_gbps"])["speedup"].first()
    # No latency, no compute: time is proportional to bytes, so the speedup is 4000 / 400 at every bandwidth.
    assert got[("small", 1.0)] == pytest.approx(10.0) and got[("small", 10.0)] == pytest.approx(10.0)
    assert got[("dense", 1.0)] == pytest.approx(1.0)
    expected = collective_time("all_reduce", 4, 4000 * 1000, Tier(1.0, 0.0))
    assert table.query("run == 'dense' and bandwidth_gbps == 1.0")["wall_s"].iloc[0] == pytest.approx(expected)
    assert math.isclose(pd.read_csv(tmp_path / "m.csv")["speedup"].max(), 10.0)


def test_malformed_or_missing_cluster_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnodes: 2\n")
    with pytest.raises(ThinwireError, match="malformed"):
        load_cluster(bad)
    with pytest.raises(ThinwireError, match="does not exist"):
        load_cluster(tmp_path / "none.yaml")


def test_shipped_clusters_load():
    files = sorted((Path(thinwire.simulators.__file__).parent / "clusters").glob("*.yaml"))
    assert len(files) >= 7
    for f in files:
        assert load_cluster(f).world_size >= 2


def test_variable_all_gather_is_priced_as_a_ring_all_gather_of_the_total():
    # Rank 0 sent 100 of the 300 bytes its group of 2 gathered: the mean message is 150 bytes, 1500
    # after scaling by 10; on 4 ranks a ring all-gather takes 3 alpha + 3 x 1500 beta.
    log = pd.DataFrame({"step": [0, 0], "op": ["all_gather", "all_gather_v"], "group_size": [2, 2],
                        "sent": [8, 100], "recv": [16, 300], "category": ["method", "method"]})
    c = Cluster("c", nodes=4, gpus_per_node=1, sustained_tflops=1.0, intra=GBIT, inter=GBIT)
    per_step = step_comm_times(log, run_world=2, cluster=c, scale=10.0)
    lengths = 3 * 1e-5 + 3 * 80 * 8e-9  # the lengths' all-gather: 8 bytes x 10
    assert per_step[0] == pytest.approx(lengths + 3 * 1e-5 + 3 * 1500 * 8e-9, rel=1e-12)
    assert per_step[0] == pytest.approx(6.6e-5 + 3.192e-5, rel=1e-12)


def _one_link(**extra):
    """4 nodes of 1 GPU, no latency: a 4-rank ring all-reduce of n bytes takes 1.5 n beta."""
    return Cluster("c", nodes=4, gpus_per_node=1, sustained_tflops=1.0, intra=Tier(1, 0), inter=Tier(1, 0), **extra)


def _log(sent_per_step):
    return pd.DataFrame({"step": range(len(sent_per_step)), "op": "all_reduce", "group_size": 2,
                         "sent": sent_per_step, "recv": sent_per_step, "category": "method"})


META = {"run": "r", "method": "topk-ef", "world_size": 2, "n_params": 1000}


def test_compute_from_tokens_and_codec_only_on_steps_that_send():
    c = _one_link(codec_values_per_s={"topk-ef": 1e9})
    log = _log([1000, 0, 1000]).iloc[[0, 2]]  # step 1 sends nothing
    m = StepModel(log, np.arange(3), META, c, Options(target_params=1e6, tokens_per_step=1e3))
    assert m.compute_s == pytest.approx(6e-3)  # 6 x 1e6 params x 1e3 tokens at 1 TFLOP/s
    assert m.codec_s.tolist() == pytest.approx([1e-3, 0.0, 1e-3])  # 1e6 values at 1e9 values/s
    assert m.codec == "1e+09 values/s"
    plain = StepModel(log, np.arange(3), {**META, "method": "sgd"}, c, Options(flops_per_step=2e12))
    assert plain.compute_s == 2.0 and plain.codec == "not stated: 0 s" and not plain.codec_s.any()


def test_codec_rate_by_label_before_method():
    # Variants of one method (sdp's labels) are priced apart: the label's rate, else the method's, else 0.
    c = _one_link(codec_values_per_s={"sdp4bit": 1e9, "sdp": 4e9})
    log, opts = _log([1000]), Options(target_params=1e6, tokens_per_step=1e3)
    meta = {**META, "method": "sdp"}
    assert StepModel(log, np.arange(1), {**meta, "label": "sdp4bit"}, c, opts).codec_s.tolist() == pytest.approx([1e-3])
    assert StepModel(log, np.arange(1), {**meta, "label": "qwd"}, c, opts).codec_s.tolist() == pytest.approx([2.5e-4])
    other = StepModel(log, np.arange(1), {**META, "label": "sdp4bit_x"}, _one_link(codec_values_per_s={"sdp4bit": 1e9}), opts)
    assert other.codec == "not stated: 0 s" and not other.codec_s.any()


@pytest.mark.parametrize("comm, by_hand", [
    # compute 0.3 s: forward 0.1, backward 0.2; 4 buckets: 0.1 + max(0.05 + comm, 0.2 + comm / 4)
    (0.04, 0.1 + 0.21),  # communication hides behind the backward pass but for its last bucket
    (1.0, 0.1 + 1.05),  # the link is the bottleneck; only the first bucket's wait is exposed
])
def test_overlap_of_buckets_with_the_backward_pass(comm, by_hand):
    sent = comm / (1.5 * 8e-9)  # bytes whose 4-rank ring all-reduce takes `comm` seconds at 1 Gbit/s
    log = _log([sent])
    c = _one_link()
    on = StepModel(log, np.arange(1), META, c, Options(target_params=1000, flops_per_step=3e11, overlap=True,
                                                      buckets=4))
    off = StepModel(log, np.arange(1), META, c, Options(target_params=1000, flops_per_step=3e11))
    assert on.comm(1.0)[0] == pytest.approx(comm)
    assert on.wall(1.0)[0] == pytest.approx(by_hand)
    assert off.wall(1.0)[0] == pytest.approx(0.3 + comm)  # v0: no overlap unless asked


def test_default_buckets_follow_ddp_25_mib():
    m = StepModel(_log([4]), np.arange(1), META, _one_link(), Options(target_params=25e6, overlap=True))
    assert m.buckets == 4  # 100 MB of fp32 gradient / 25 MiB


@pytest.mark.parametrize("run_wall, speedup, by_hand", [
    (lambda bw: 1.5 + 1 / bw, 1.0, 18.0),  # 1 + 10/bw >= 1.5 + 1/bw  <=>  bw <= 18
    (lambda bw: 1.5 + 1 / bw, 2.0, 4.0),  # 1 + 10/bw >= 2 (1.5 + 1/bw)  <=>  bw <= 4
    (lambda bw: 0.5 * (1 + 10 / bw), 1.0, math.inf),  # faster at every bandwidth
    (lambda bw: 2 * (1 + 10 / bw), 1.0, 0.0),  # slower at every bandwidth
])
def test_bandwidth_at_speedup_finds_the_crossing(run_wall, speedup, by_hand):
    got = bandwidth_at_speedup(run_wall, lambda bw: 1 + 10 / bw, speedup)
    assert got == pytest.approx(by_hand, rel=1e-5)


def test_break_even_and_time_to_target_from_runs(tmp_path):
    # Dense sends 4000 bytes a step, scaled x1000: 4e6 bytes, 0.048 / bw s on 4 ranks. The compressed
    # run sends 400 (0.0048 / bw s) and pays 1e6 values / 1e8 values/s = 0.01 s of encode/decode.
    # Speedup >= 1 below 0.0432 / 0.01 = 4.32 Gbit/s, >= 2 below 0.0384 / 0.02 = 1.92 Gbit/s.
    dense = _fake_run(tmp_path, "dense", "csea", 4000, label="sync", eval_loss=[1.0, 0.5, 0.4])
    small = _fake_run(tmp_path, "small", "topk-ef", 400, eval_loss=[1.0, 0.45, 0.41])
    slow = _fake_run(tmp_path, "slow", "topk-ef", 400, label="slow", eval_loss=[1.0, 0.9, 0.8])
    cluster = tmp_path / "c.yaml"
    cluster.write_text("name: c\nnodes: 4\ngpus_per_node: 1\nsustained_tflops: 1.0\n"
                       "codec_values_per_s: {topk-ef: 1.0e+8}\n"
                       "tiers: {intra: {bandwidth_gbps: 1, latency_us: 0}, inter: {bandwidth_gbps: 1, latency_us: 0}}\n")
    table = model_runs([dense, small, slow], cluster, tmp_path / "m.csv", target_params=1e6, flops_per_step=0.0,
                       bandwidths=[1.0, 10.0], baseline="sync", speedups=[1.0, 2.0], target_loss_factor=1.05,
                       summary_out=tmp_path / "s.csv")
    s = pd.read_csv(tmp_path / "s.csv")
    bw = s[s["quantity"] == "bandwidth_at_speedup"].set_index(["run", "target"])["value"]
    assert bw[("small", 1.0)] == pytest.approx(4.32, rel=1e-5)
    assert bw[("small", 2.0)] == pytest.approx(1.92, rel=1e-5)
    assert "dense" not in bw.index.get_level_values(0)  # the baseline is not compared with itself
    speed = table.groupby(["run", "bandwidth_gbps"])["speedup"].first()
    assert speed[("small", 1.0)] == pytest.approx(0.048 / (0.01 + 0.0048))
    # Target 1.05 x dense's final 0.4 = 0.42: dense gets there at step 2 (3 steps), small at step 2 too,
    # slow never.
    ttt = s[s["quantity"] == "seconds_to_target"].set_index(["run", "bandwidth_gbps"])
    assert ttt.loc[("dense", 1.0), "target"] == pytest.approx(0.42)
    assert ttt.loc[("dense", 1.0), "value"] == pytest.approx(3 * 0.048)
    assert ttt.loc[("small", 10.0), "value"] == pytest.approx(3 * (0.01 + 0.00048))
    assert np.isnan(ttt.loc[("slow", 1.0), "value"])
    # Encode/decode share of the step, only for runs that pay one: small at 1 Gbit/s 0.01 / 0.0148.
    share = s[s["quantity"] == "codec_share"].set_index(["run", "bandwidth_gbps"])["value"]
    assert share[("small", 1.0)] == pytest.approx(0.01 / (0.01 + 0.0048))
    assert "dense" not in share.index.get_level_values(0)
    assert table["seconds_to_target"].notna().any() and {"codec_s", "comm_s", "eval_loss"} <= set(table)


def test_a_flat_ring_across_nodes_waits_for_its_slowest_hop():
    # Intra 100 Gbit/s slower than a 1000 Gbit/s node link (as H800 NVLink per GPU vs 8 NICs): the
    # flat ring runs at 100 Gbit/s and the larger latency; one GPU per node has no intra hop at all.
    fast_nic = Cluster("c", nodes=2, gpus_per_node=4, sustained_tflops=1.0, intra=Tier(100, 1), inter=Tier(1000, 5))
    assert float(on_cluster("all_reduce", 8, 1e6, fast_nic)) == pytest.approx(14 * 5e-6 + 1.75e6 * 8e-11)
    single = dataclasses.replace(fast_nic, nodes=8, gpus_per_node=1)
    assert float(on_cluster("all_reduce", 8, 1e6, single)) == pytest.approx(14 * 5e-6 + 1.75e6 * 8e-12)


@pytest.mark.parametrize("extra, message", [("algorithm: butterfly\n", "algorithm"), ("colour: blue\n", "unknown keys")])
def test_cluster_options_are_checked(tmp_path, extra, message):
    f = tmp_path / "c.yaml"
    f.write_text("name: c\nnodes: 2\ngpus_per_node: 1\nsustained_tflops: 1.0\n" + extra +
                 "tiers: {intra: {bandwidth_gbps: 1, latency_us: 0}, inter: {bandwidth_gbps: 1, latency_us: 0}}\n")
    with pytest.raises(ThinwireError, match=f"malformed.*{message}"):
        load_cluster(f)


def test_model_command_writes_the_table_and_the_summary(tmp_path):
    from thinwire.cli import main

    dense = _fake_run(tmp_path, "dense", "sgd", 4000, eval_loss=[1.0, 0.5])
    small = _fake_run(tmp_path, "small", "topk-ef", 400, eval_loss=[1.0, 0.5])
    cluster = Path(thinwire.simulators.__file__).parent / "clusters" / "cser-8x1-v100-assumed.yaml"
    argv = ["model", str(dense), str(small), "--cluster", str(cluster), "--target-params", "1e6",
            "--tokens-per-step", "100", "--overlap", "--speedup", "1", "--speedup", "2", "--bandwidth", "1",
            "--name", "job", "--out", str(tmp_path / "m.csv"), "--summary", str(tmp_path / "s.csv")]
    assert main(argv) == 0
    table, summary = pd.read_csv(tmp_path / "m.csv"), pd.read_csv(tmp_path / "s.csv")
    assert set(table["cluster"]) == {"job"} and table["overlap"].all()
    assert table["compute_s"].iloc[0] == pytest.approx(6 * 1e6 * 100 / 6.28e12)
    assert sorted(summary.query("quantity == 'bandwidth_at_speedup'")["target"]) == [1.0, 2.0]


def test_an_all_gather_of_shards_is_replayed_with_smaller_shards():
    """1-bit Adam's server chunks (d/p per rank) logged on 4 ranks, priced on 64: each rank's share is
    d/64, not d/4; an all-gather of whole payloads (top-k entries) keeps its size."""
    import pandas as pd
    from thinwire.simulators.collectives import Tier
    from thinwire.simulators.perfmodel import Cluster, step_comm_times

    tier = Tier(bandwidth_gbps=8e-9, latency_us=0.0)  # 1 byte per second, no latency
    cluster = Cluster("flat", nodes=1, gpus_per_node=64, sustained_tflops=1.0, intra=tier, inter=tier)
    log = pd.DataFrame({"step": [0, 1], "op": ["all_gather_shards", "all_gather"], "group_size": 4,
                        "sent": 1000, "recv": 4000, "category": "method"})
    seconds = step_comm_times(log, 4, cluster, scale=1.0)
    assert seconds[0] == pytest.approx(63 * 1000 * 4 / 64)  # (p-1) n with n = 4000 / 64
    assert seconds[1] == pytest.approx(63 * 1000)


@pytest.mark.parametrize("path", sorted((Path(thinwire.simulators.__file__).parent / "clusters").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_every_shipped_cluster_file_passes_the_input_check(path):
    """The input check (thinwire/clusterfile.py) and the loader agree on every cluster file the workflow
    prices with, fact-labelled numbers ({value, label, source}) included."""
    cluster = load_cluster(path)
    assert cluster.nodes >= 1 and cluster.gpus_per_node >= 1


def test_target_shapes_price_powersgd_for_the_target_models_tensors(tmp_path):
    """--target-shapes resnet50: PowerSGD's bytes (P and Q: n + m values per rank of each matrix) are priced
    for ResNet-50's tensors, by its bits formula there, not scaled by the parameter count as dense bytes
    are; SGD's and bf16's bytes per parameter do not depend on shapes, so they scale as --target-params."""
    from thinwire.algorithms.registry import get_method, make_config
    from thinwire.workloads.registry import make_workload

    from thinwire.cli import main

    runs = {}
    for method, params in (("sgd", []), ("bf16", []), ("powersgd", ["--param", "rank=2"])):
        runs[method] = tmp_path / method
        assert main(["sim", method, "--workload", "digits-mlp", "--workers", "2", "--steps", "3", "--quiet",
                     *params, "--out", str(runs[method])]) == 0
    cluster = tmp_path / "c.yaml"
    cluster.write_text("name: c\nnodes: 4\ngpus_per_node: 1\nsustained_tflops: 1.0\n"
                       "tiers: {intra: {bandwidth_gbps: 1, latency_us: 0}, inter: {bandwidth_gbps: 1, latency_us: 0}}\n")
    resnet = make_workload("resnet50-shapes", 1, 0)
    mlp = make_workload("digits-mlp", 2, 0)
    by_shapes = model_runs(list(runs.values()), cluster, tmp_path / "s.csv", flops_per_step=0.0,
                           target_shapes="resnet50").groupby("method")["comm_s"].mean()
    by_count = model_runs(list(runs.values()), cluster, tmp_path / "p.csv", flops_per_step=0.0,
                          target_params=resnet.n_params).groupby("method")["comm_s"].mean()
    assert by_shapes["sgd"] == pytest.approx(by_count["sgd"]) and by_shapes["bf16"] == pytest.approx(by_count["bf16"])
    assert by_shapes["bf16"] == pytest.approx(by_shapes["sgd"] / 2)  # 16 bits against float32's 32
    powersgd = get_method("powersgd")
    config = make_config(powersgd, {"rank": 2})
    bits = [powersgd(config, layout).bits_per_parameter(32, 1) for layout in (resnet.layout, mlp.layout)]
    # No latency: time is proportional to bytes, and the three all-reduces of a step add up.
    assert by_shapes["powersgd"] / by_count["powersgd"] == pytest.approx(bits[0] / bits[1])
    assert bits[0] < bits[1] / 10  # ResNet-50's large matrices compress far more than the MLP's
    with pytest.raises(ThinwireError, match="target-shapes must be one of .*resnet50"):
        model_runs([runs["sgd"]], cluster, tmp_path / "x.csv", target_shapes="resnet51")
