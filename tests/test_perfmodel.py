"""The performance model: collective formulas by hand, replaying a log, speedup pairing, bad clusters."""

import json
import math

import pandas as pd
import pytest
from thinwire.algorithms.comm import ThinwireError
from thinwire.simulators.perfmodel import (
    Cluster,
    Tier,
    collective_time,
    load_cluster,
    model_runs,
    step_comm_times,
)

GBIT = Tier(bandwidth_gbps=1.0, latency_us=10.0)  # alpha 1e-5 s, beta 8e-9 s/byte


@pytest.mark.parametrize("op, expected", [
    # p = 4, n = 1e6 bytes; hand-computed from the ring formulas (Thakur et al. 2005).
    ("all_reduce", 2 * 3 * 1e-5 + 2 * 3 / 4 * 1e6 * 8e-9),
    ("all_gather", 3 * 1e-5 + 3 * 1e6 * 8e-9),
    ("reduce_scatter", 3 * 1e-5 + 3 / 4 * 1e6 * 8e-9),
    ("all_to_all", 3 * 1e-5 + 3 / 4 * 1e6 * 8e-9),
    ("broadcast", 2 * (1e-5 + 1e6 * 8e-9)),
])
def test_collective_formulas(op, expected):
    assert collective_time(op, 4, 1e6, GBIT) == pytest.approx(expected, rel=1e-12)


def test_all_reduce_bus_bandwidth_matches_nccl_tests_definition():
    # nccl-tests: busbw = algbw * 2(p-1)/p for all-reduce; with no latency busbw equals the link rate.
    p, n = 8, 1e9
    t = collective_time("all_reduce", p, n, Tier(bandwidth_gbps=10.0, latency_us=0.0))
    busbw_gbps = n / t * 2 * (p - 1) / p * 8 / 1e9
    assert busbw_gbps == pytest.approx(10.0)


def test_one_rank_costs_nothing_and_unknown_ops_are_refused():
    assert collective_time("all_reduce", 1, 1e9, GBIT) == 0
    with pytest.raises(ThinwireError, match="cannot price"):
        collective_time("send", 4, 1.0, GBIT)


def test_tier_follows_group_span():
    c = Cluster("c", nodes=2, gpus_per_node=4, sustained_tflops=1.0, intra=Tier(100, 1), inter=Tier(1, 50))
    assert c.tier(4) is c.intra and c.tier(8) is c.inter and c.world_size == 8


def test_log_replay_scales_world_and_bytes():
    log = pd.DataFrame({"step": [0, 0, 1, 1], "op": ["all_reduce", "all_reduce", "all_gather", "all_reduce"],
                        "group_size": [2, 2, 2, 2], "sent": [100, 100, 10, 8], "recv": [100, 100, 20, 8],
                        "category": ["method", "metrics", "method", "metrics"]})
    c = Cluster("c", nodes=4, gpus_per_node=1, sustained_tflops=1.0, intra=GBIT, inter=GBIT)
    per_step = step_comm_times(log, run_world=2, cluster=c, scale=10.0)
    assert per_step[0] == pytest.approx(collective_time("all_reduce", 4, 1000, GBIT))  # metrics ignored
    assert per_step[1] == pytest.approx(collective_time("all_gather", 4, 100, GBIT))


def _fake_run(root, name, method, sent):
    d = root / name
    d.mkdir()
    (d / "meta.json").write_text(json.dumps({"run": name, "method": method, "workload": "w", "seed": 0,
                                             "mode": "sim", "backend": "numpy", "world_size": 2, "n_params": 1000,
                                             "experiment": "e"}))
    pd.DataFrame({"step": [0, 1], "op": "all_reduce", "group_size": 2, "sent": sent, "recv": sent,
                  "category": "method"}).to_csv(d / "commlog.csv", index=False)
    pd.DataFrame({"step": [0, 1], "loss": [1.0, 0.5]}).to_csv(d / "trajectory.csv", index=False)
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
    from pathlib import Path

    import thinwire.simulators as sims

    files = sorted((Path(sims.__file__).parent / "clusters").glob("*.yaml"))
    assert len(files) >= 2
    for f in files:
        assert load_cluster(f).world_size >= 2
