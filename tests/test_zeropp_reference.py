"""DeepSpeed's own ZeRO++ reference run (workloads/zeropp_reference.py) on 4 CPU ranks: qwZ really sends
int8 weights (a quarter of ZeRO-3's fp32 weight all-gather bytes) and trains like ZeRO-3; hpZ moves part
of the weight all-gathers into groups of 2 ranks. Two DeepSpeed launches (qwz-hpz, zero3), ~15 s each."""

import json

import pytest
from launch import BIN, run

from thinwire.launch import thread_env

pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install '.[deepspeed]')")


def launch(variant: str, root) -> dict:
    out = root / f"{variant}.json"
    proc = run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "4", "-m",
                "thinwire.workloads.zeropp_reference", "--variant", variant, "--out", str(out)], root, timeout=400,
               env=thread_env(1))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_qwz_sends_int8_weights_and_hpz_gathers_inside_the_node(tmp_path):
    dense, zpp = launch("zero3", tmp_path), launch("qwz-hpz", tmp_path)
    assert not any("int8" in k for k in dense["bytes_sent"])
    fp32_gathers = dense["bytes_sent"]["all_gather_into_tensor float32 group 4"]
    int8_gathers = sum(v for k, v in zpp["bytes_sent"].items() if k.startswith("all_gather_into_tensor int8"))
    assert 4 * int8_gathers == fp32_gathers
    assert zpp["bytes_sent"]["all_gather_into_tensor int8 group 2"] > 0  # hpZ: the secondary partition
    assert abs(zpp["losses"][-1] - dense["losses"][-1]) < 0.01 * dense["losses"][-1]
    assert dense["losses"][-1] < 0.5 * dense["losses"][0]
