"""The performance model's parallel layout (simulators/layout.py), placement-aware collectives, the paper's
dense bits, cluster facts, the calibration and the published-collective check, each against a case
computed by hand."""

import json

import numpy as np
import pandas as pd
import pytest
from thinwire.algorithms.comm import ThinwireError
from thinwire.simulators.collectives import Tier, on_cluster
from thinwire.simulators.layout import Layout
from thinwire.simulators.perfmodel import Cluster, as_sent_by_paper, load_cluster
from thinwire.simulators.predict import Priced, calibrate, predict_cell, speedup, tflops, with_fact
from thinwire.simulators.published_collectives import predicted_busbw

# beta 1e-9 s/byte at 8 Gbit/s; alpha 1 us (intra) and 10 us (inter).
INTRA, INTER = Tier(8.0, 1.0), Tier(8.0, 10.0)


def test_tensor_parallel_traffic_by_hand():
    # 2 layers, 1 node of 2 GPUs, TP 2, no pipeline: d = 1, m = 1; 4 all-reduces per layer of
    # b s h 2 = 1 x 8 x 4 x 2 = 64 bytes, each a 2-rank ring: 2 alpha + 2 (1/2) 64 beta.
    lay = Layout(layers=2, hidden=4, tp=2, seq_len=8)
    c = Cluster("c", 1, 2, 1.0, INTRA, INTER)
    assert lay.tensor_parallel_seconds(c) == pytest.approx(8 * (2e-6 + 64e-9))


def test_pipeline_bubble_and_sends_by_hand():
    # 4 nodes of 1 GPU, PP 4, global batch 8 on d = 1: m = 8, bubble (4 - 1) / 8.
    lay = Layout(layers=4, hidden=4, pp=4, seq_len=8, global_batch=8)
    c = Cluster("c", 4, 1, 1.0, INTRA, INTER)
    assert lay.accumulation(4) == 8 and lay.bubble(4) == pytest.approx(0.375)
    ideal = lay.hardware_flops(4) / 4 / 1e12
    assert lay.compute_seconds(4, 1.0) == pytest.approx(ideal * 1.375)
    # Stages fill whole nodes: each send is alpha_e + 1 GPU x 64 bytes x beta_e; 2 (m + pp - 2) = 20 sends.
    assert lay.pipeline_seconds(c) == pytest.approx(20 * (10e-6 + 64e-9))
    assert Layout(layers=4, hidden=4).pipeline_seconds(c) == 0


def test_megatron_flops_match_the_fork_formula():
    # SDP4Bit's megatron/training.py: 60 B s l h^2 (1 + 1/5 + s/(5h) + V/(10 l h)), V padded to 128 t.
    lay = Layout(layers=40, hidden=6144, tp=8, seq_len=2048)
    b, s, l, h, v = 16, 2048, 40, 6144, 51200
    assert lay.padded_vocab == v
    assert lay.model_flops(128) == pytest.approx(60 * b * s * l * h * h * (1 + 1 / 5 + s / (5 * h) + v / (10 * l * h)))


def test_placement_aware_all_to_all_against_packed():
    # 4 nodes of 2 GPUs; a group of 4 ranks with one per node (SDP4Bit's inter level): every rank sends
    # 3/4 of n off its node, and both GPUs of a node push through its link: 3 alpha_e + 2 x 3/4 n beta_e.
    c = Cluster("c", 4, 2, 1.0, Tier(80.0, 1.0), Tier(8.0, 10.0))
    n = 1e6
    assert float(on_cluster("all_to_all", 4, n, c)) == pytest.approx(3e-5 + 2 * 0.75 * n * 1e-9)
    # Packed (the old pricing): 2 ranks per node, so only 2/4 of n left a node.
    assert float(on_cluster("all_to_all", 4, n, c)) > 3e-5 + 2 * 0.5 * n * 1e-9
    # A strided ring gets half the node link: (p-1) alpha_e + (p-1)/p n (2 beta_e).
    assert float(on_cluster("reduce_scatter", 4, n, c)) == pytest.approx(3e-5 + 0.75 * n * 2e-9)


def test_data_parallel_view_shares_the_node_link():
    c = Cluster("c", 16, 8, 1.0, Tier(1600.0, 3.0), Tier(3200.0, 5.0, 0.9))
    v = Layout(layers=1, hidden=8, tp=4).data_parallel_view(c)
    assert (v.nodes, v.gpus_per_node, v.inter.bandwidth_gbps, v.inter.efficiency) == (16, 2, 800.0, 0.9)
    with pytest.raises(ThinwireError, match="tensor parallel"):
        Layout(layers=1, hidden=8, tp=3).data_parallel(128)


def test_dense_bits_reprice_only_the_uncompressed_gather():
    # 64 parameters on 4 ranks: a full fp32 all-gather sends 16 x 4 bytes per rank; a 4-bit one 8 + 4.
    log = pd.DataFrame({"op": ["all_gather_shards", "all_gather_shards", "reduce_scatter"],
                        "group_size": [4, 4, 4], "sent": [64, 12, 256], "step": 0, "recv": 0, "category": "method"})
    out = as_sent_by_paper(log, 64, 32, {"all_gather": 16})
    assert out["sent"].tolist() == [32, 12, 256]


def test_cluster_facts_are_kept_and_checked(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("name: c\nnodes: {value: 2, label: paper, source: Table 2}\ngpus_per_node: 1\nsustained_tflops: 1\n"
                 "tiers:\n  intra: {bandwidth_gbps: 1, latency_us: 1}\n"
                 "  inter: {bandwidth_gbps: 1, latency_us: 1, efficiency: {value: 0.5, label: measured, source: x}}\n")
    c = load_cluster(f)
    assert c.nodes == 2 and c.inter.efficiency == 0.5
    assert c.facts["tiers.inter.efficiency"]["label"] == "measured" and c.facts["nodes"]["source"] == "Table 2"
    f.write_text(f.read_text().replace("label: paper", "label: guessed"))
    with pytest.raises(ThinwireError, match="malformed.*label"):
        load_cluster(f)


def _sharded_run(root, label="baseline", scale=1):
    d = root / label
    d.mkdir()
    (d / "meta.json").write_text(json.dumps({"run": label, "method": "sdp", "label": label, "world_size": 4,
                                             "n_params": 64, "dtype": "float32", "experiment": "e"}))
    pd.DataFrame({"step": [0, 0], "op": ["reduce_scatter", "all_gather_shards"], "group_size": [4, 4],
                  "sent": [256 // scale, 64 // scale], "recv": [64 // scale, 256 // scale],
                  "category": "method"}).to_csv(d / "commlog.csv", index=False)
    pd.DataFrame({"step": [0], "loss": [1.0]}).to_csv(d / "trajectory.csv", index=False)
    return Priced(d)


def test_calibration_recovers_a_known_link_efficiency(tmp_path):
    base = _sharded_run(tmp_path)
    c = Cluster("c", 4, 1, 100.0, Tier(1600.0, 3.0), Tier(400.0, 5.0, 0.94))
    lay = Layout(layers=8, hidden=1024)
    truth = with_fact(c, "tiers.inter.efficiency", 0.3)
    stated = tflops(lay, truth, base.step_seconds(truth, lay))
    assert calibrate(base, c, lay, stated) == pytest.approx(0.3, rel=1e-6)
    assert np.isnan(calibrate(base, c, lay, 1e9))  # faster than any link allows


def test_published_busbw_of_a_ring_is_the_link_rate():
    # One node of 8, no measurable latency at 8 GiB: ring busbw = 2400 Gbit/s x 0.8 = 240 GB/s.
    row = {"name": "n", "nodes": 1, "gpus_per_node": 8, "intra_gbps": 2400, "inter_gbps": 400,
           "size_bytes": 8 * 2**30}
    assert predicted_busbw(row, {"intra": 0.8, "inter": 0.9}) == pytest.approx(240.0, rel=1e-3)


def test_exploratory_readings_are_priced_apart_from_the_band(tmp_path):
    # A cluster of 4 one-GPU nodes; the method sends a quarter of the baseline's bytes. Its exploratory
    # reading (inter-node 40 instead of 400 Gbit/s) is priced in the *_exploratory columns; the band
    # (sensitivity only) and the public-facts prediction are those of the cluster as published.
    (tmp_path / "c.yaml").write_text(
        "name: c\nnodes: 4\ngpus_per_node: 1\nsustained_tflops: 100\n"
        "tiers:\n  intra: {bandwidth_gbps: 1600, latency_us: 3}\n"
        "  inter: {bandwidth_gbps: 400, latency_us: 5, efficiency: 0.94}\n")
    base, method = _sharded_run(tmp_path), _sharded_run(tmp_path, "sdp4bit", 4)
    runs = {"baseline": tmp_path / "baseline", "sdp4bit": tmp_path / "sdp4bit"}
    spec = {"layouts": {"l": {}}, "models": {"m": {"layers": 8, "hidden": 1024}},
            "labels": {"s": {"baseline": "baseline", "method": "sdp4bit"}}, "defaults": {"layout": "l", "labels": "s"},
            "sensitivity": {"c": {"sustained_tflops": {"low": 90.0, "high": 110.0, "source": "x"}}},
            "exploratory": {"c": {"tiers.inter.bandwidth_gbps": {"value": 40.0, "source": "y"}}}}
    cell = {"claim": "X", "stated": True, "model": "m", "cluster": "c", "tp": 1, "pp": 1, "claimed": 2.0}
    row, sens = predict_cell(spec, cell, runs, tmp_path, {})
    cluster, lay = load_cluster(tmp_path / "c.yaml"), Layout(layers=8, hidden=1024)
    slow = with_fact(cluster, "tiers.inter.bandwidth_gbps", 40.0)
    assert row["predicted_exploratory"] == pytest.approx(speedup(base, method, slow, lay)[0])
    assert row["predicted"] == pytest.approx(speedup(base, method, cluster, lay)[0])
    assert row["predicted_exploratory"] > row["predicted"]  # a slower link: communication weighs more
    assert row["exploratory_reading"] == "tiers.inter.bandwidth_gbps = 40"
    assert row["baseline_tflops_exploratory"] < row["baseline_tflops_predicted"]
    ends = [r["speedup"] for r in sens] + [row["predicted"]]
    assert (row["band_low"], row["band_high"]) == (min(ends), max(ends))
    assert row["band_high"] < row["predicted_exploratory"]
    typo = {**spec, "exploratory": {"c": {"tiers.inter.bandwdth_gbps": {"value": 40.0, "source": "y"}}}}
    with pytest.raises(ThinwireError, match="'tiers.inter.bandwdth_gbps' is neither a number of cluster c"):
        predict_cell(typo, cell, runs, tmp_path, {})
    without = {k: v for k, v in spec.items() if k != "exploratory"}
    for empty in ({}, {"exploratory": None}, {"exploratory": {"c": None}}):  # none, or a section left empty
        bare, _ = predict_cell({**without, **empty}, cell, runs, tmp_path, {})
        assert np.isnan(bare["predicted_exploratory"]) and bare["exploratory_reading"] == ""
