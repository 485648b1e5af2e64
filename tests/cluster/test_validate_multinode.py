"""The multi-node validation's pricing (thinwire/validate.py multinode_table, measured_cluster) on run
directories written here: no cluster, no root. What make cluster-test measures is checked there."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from thinwire.simulators.perfmodel import load_cluster

from thinwire.validate import MultinodeCase, measured_cluster, median_link, multinode_table

ROOT = Path(__file__).resolve().parents[2]
DESCRIBED = ROOT / "config" / "cluster-test-netns.yaml"


def _link(path: Path, gbps: float, latency_us: float) -> Path:
    path.write_text(json.dumps({"world_size": 2, "bandwidth_gbps": gbps, "latency_us": latency_us}))
    return path


def _run(path: Path, wall_s: list[float], calls: list[tuple[str, int, int]], steps: int = 4) -> Path:
    """A run directory: every step takes wall_s[step] and makes `calls` (op, group size, bytes)."""
    path.mkdir(parents=True)
    pd.DataFrame({"step": range(steps), "wall_s": wall_s, "comm_s": 0.0}).to_csv(path / "timing.csv", index=False)
    rows = [(s, op, g, n, n, "method") for s in range(steps) for op, g, n in calls]
    rows += [(s, "all_reduce", g, 8, 8, "metrics") for s in range(steps) for g in {calls[0][1]}]
    pd.DataFrame(rows, columns=["step", "op", "group_size", "sent", "recv", "category"]).to_csv(
        path / "commlog.csv", index=False)
    return path


def test_the_described_cluster_labels_every_number():
    cluster = load_cluster(DESCRIBED)
    assert cluster.name == "thinwire-netns" and (cluster.nodes, cluster.gpus_per_node) == (2, 1)
    assert set(cluster.facts) == {"nodes", "gpus_per_node", "sustained_tflops", "tiers.intra.bandwidth_gbps",
                                  "tiers.intra.latency_us", "tiers.inter.bandwidth_gbps", "tiers.inter.latency_us"}
    assert all(f["label"] == "assumed" and f["source"] for f in cluster.facts.values())


def test_runs_are_priced_on_the_tier_their_groups_cross(tmp_path):
    """2 x 1: the all-gather crosses the inter tier; 2 x 2: the 4-rank all-gather crosses it, a 2-rank
    group stays on a node's loopback (intra); calibrations are priced on their own loopback link; the
    local time is the calibration's median step minus that; medians over rounds; spread (max-min)/median."""
    intra, inter = _link(tmp_path / "intra.json", 8.0, 50.0), _link(tmp_path / "inter.json", 1.0, 200.0)
    loop = _link(tmp_path / "loop.json", 4.0, 100.0)
    cluster = measured_cluster(DESCRIBED, intra, inter, tmp_path / "cluster.yaml")
    assert {f["label"] for k, f in cluster.facts.items() if k.startswith("tiers.")} == {"measured"}
    assert (cluster.intra.bandwidth_gbps, cluster.inter.latency_us) == (8.0, 200.0)

    n = 125_000  # bytes per rank: 1 ms at 1 Gbit/s
    gather = [("all_gather", 2, n)]
    two_tiers = [("all_to_all", 2, n), ("all_gather", 4, n)]
    runs = [_run(tmp_path / f"r{i}", [9.0, t, t, t], gather) for i, t in enumerate([0.010, 0.012, 0.011])]
    cals = [_run(tmp_path / f"c{i}", [9.0, t, t, 1.0], gather) for i, t in enumerate([0.006, 0.005, 0.007])]
    runs4 = [_run(tmp_path / f"q{i}", [9.0, 0.02, 0.02, 0.02], two_tiers) for i in range(3)]
    cals4 = [_run(tmp_path / f"d{i}", [9.0, 0.01, 0.01, 0.01], two_tiers) for i in range(3)]
    table = multinode_table([MultinodeCase("a", "topk-ef", "topk-ef", 2, 1, tuple(runs), tuple(cals)),
                             MultinodeCase("b", "sdp", "sdp4bit", 2, 2, tuple(runs4), tuple(cals4))],
                            cluster, loop, skip=1).set_index("case")

    loop_gather = 100e-6 + n * 8 / 4e9
    a = table.loc["a"]
    assert a["comm_predicted_s"] == pytest.approx(200e-6 + n * 8 / 1e9)
    assert a["local_s"] == pytest.approx(0.006 - loop_gather)  # median over rounds of each run's median step
    assert a["measured_s"] == pytest.approx(0.011) and a["repeats"] == 3
    assert a["measured_spread"] == pytest.approx(0.002 / 0.011)
    # each round predicts its run from its own calibration; the error is the median of the rounds' ratios
    ratios = [(c - loop_gather + a["comm_predicted_s"]) / m for c, m in ((0.006, 0.010), (0.005, 0.012), (0.007, 0.011))]
    assert a["error"] == pytest.approx(sorted(ratios)[1] - 1)

    b = table.loc["b"]
    all_to_all_intra = 50e-6 + n / 2 * 8 / 8e9
    all_gather_inter = 3 * (200e-6 + n * 8 / 1e9)  # ring of 4 at the slower tier
    assert b["comm_predicted_s"] == pytest.approx(all_to_all_intra + all_gather_inter)
    assert b["local_s"] == pytest.approx(0.01 - (100e-6 + n / 2 * 8 / 4e9) - 3 * (100e-6 + n * 8 / 4e9))
    assert (b["inter_gbps"], b["intra_gbps"]) == (1.0, 8.0)


def test_a_link_measured_in_rounds_is_their_median(tmp_path):
    fits = [_link(tmp_path / f"l{i}.json", gbps, us) for i, (gbps, us) in enumerate([(0.9, 130), (0.87, 1250), (1.0, 360)])]
    for f in fits:
        f.write_text(json.dumps({**json.loads(f.read_text()), "op": "all_reduce"}))
    cluster = measured_cluster(DESCRIBED, fits[0], median_link(fits, tmp_path / "inter.json"), tmp_path / "c.yaml")
    assert (cluster.inter.bandwidth_gbps, cluster.inter.latency_us) == (0.9, 360)
    assert "median of 3 rounds" in cluster.facts["tiers.inter.latency_us"]["source"]
