"""The device paths (tests marked `gpu`) and the prepared device check end to end in dry mode.

Marked `gpu`: they run on THINWIRE_TEST_DEVICE (the device check sets it: cuda on the GPU machine), else on
CUDA when torch sees a GPU, else on the CPU, where they check the same code with CPU tensors (gloo instead
of NCCL, an empty GPU fingerprint). `make gpu-check` runs them on the GPU (thinwire/gpucheck.py).
Unmarked: config/gpu.yaml's device sheet is at least 30x the quick sheet's scale and plans, and
`python -m thinwire.gpucheck --dry` writes an archive that a workflow imports into claim rows with ran_on.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tarfile

import array_api_compat.torch as xp_torch
import numpy as np
import pandas as pd
import pytest
import torch
from launch import BIN, ROOT
from simulate import simulate
from thinwire.algorithms.registry import get_method, method_names
from thinwire.analysis.build import read_results
from thinwire.analysis.claims import load_claims, verdicts

from thinwire.config import load, plan
from thinwire.gpucheck import MIN_FACTOR, load_sheet, read_manifest, run_on_device, scale_factors

DEVICE = torch.device(os.environ.get("THINWIRE_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))
ON_CUDA = DEVICE.type == "cuda"


def _np(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


@pytest.mark.gpu
@pytest.mark.parametrize("name", method_names())
def test_method_step_on_device_agrees_with_numpy(name):
    """Every registered method on its tiny problem: torch arrays on the device give numpy's trajectory
    (test_methods.py's tolerance for numpy against torch on the CPU) and hand the same bytes to the same
    collectives."""
    a = simulate(name, get_method(name).tiny)
    b = simulate(name, get_method(name).tiny, xp=xp_torch, device=DEVICE)
    assert b.x.device.type == DEVICE.type
    np.testing.assert_allclose(_np(b.x), a.x, atol=1e-12)
    np.testing.assert_allclose(np.array([_np(v) for v in b.losses]), a.losses, atol=1e-12)
    assert [a.comm.log.step_bytes(t) for t in range(20)] == [b.comm.log.step_bytes(t) for t in range(20)]


@pytest.mark.gpu
def test_torchcomm_at_world_size_one_and_bus_bandwidth_probe():
    """TorchComm in one process (NCCL for CUDA tensors, gloo for CPU ones): collectives return the rank's own
    data on its device, log their bytes; the bus bandwidth probe times real all-reduces (nccl-tests' busbw is
    0 at one rank: the factor 2 (p - 1) / p)."""
    from thinwire.workloads.torchcomm import TorchComm, measure_busbw

    comm = TorchComm(DEVICE, 60.0)
    try:
        assert comm.backend == ("nccl" if ON_CUDA else "gloo")
        assert (comm.rank, comm.world_size) == (0, 1)
        x = torch.arange(1000, dtype=torch.float32, device=DEVICE)
        avg = comm.all_reduce(x, op="avg")
        assert avg.device.type == DEVICE.type
        torch.testing.assert_close(avg, x)
        gathered = comm.all_gather(x)
        assert tuple(gathered.shape) == (1, 1000)
        torch.testing.assert_close(gathered[0], x)
        assert comm.log.step_bytes(0)[0] == 2 * 4000
        probe = measure_busbw(DEVICE, 4 << 20)
        assert probe["allreduce_bytes"] == 4 << 20
        assert 0 < probe["allreduce_s"] < 10
        assert probe["allreduce_busbw_gbps"] == 0.0
    finally:
        comm.close()
    assert not torch.distributed.is_initialized()


@pytest.mark.gpu
def test_device_fingerprint():
    """What a run records about its GPU: model and count, CUDA, driver and NCCL versions; nothing on a CPU."""
    from thinwire.results import environment, gpu_fingerprint

    env = environment("nccl" if ON_CUDA else "gloo")
    if not torch.cuda.is_available():
        assert gpu_fingerprint() == {} and "gpu" not in env
        return
    assert env["gpu"] == torch.cuda.get_device_name(0)
    assert env["gpus"] == str(torch.cuda.device_count())
    assert env["cuda"] == str(torch.version.cuda)
    assert re.fullmatch(r"\d+(\.\d+)+", env["gpu_driver"]), env["gpu_driver"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", env["nccl"]), env["nccl"]


TINY_GPT = {"runs": [{"name": "tiny", "mode": "sim", "workload": "text-gpt", "world_size": 4, "steps": 4,
                      "eval_every": 2, "dtype": "float64", "seeds": [0],
                      "workload_params": {"width": 16, "layers": 1, "heads": 2, "eval_bytes": 2048,
                                          "worker_grads": "vmap"},
                      "methods": [{"method": "adam", "params": {"lr": 0.003}},
                                  {"method": "sdp", "params": {"lr": 0.003, "ranks_per_node": 2,
                                                               "weights": "qwd", "grads": "tlq-hs"}}]}]}


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["adam", "sdp"])
def test_text_gpt_simulator_on_device_matches_the_cpu(tmp_path, method):
    """The device check's batched simulator run (thinwire.gpucheck.run_on_device): a small GPT in float64
    on the device gives the CPU's losses, held-out losses and bytes."""
    _, runs = load(TINY_GPT)
    run = next(r for r in runs if r.method == method)
    dev = run_on_device(run, tmp_path / "dev", str(DEVICE))
    cpu = run_on_device(run, tmp_path / "cpu", "cpu")
    assert dev["status"] == cpu["status"] == "ok"
    assert dev["env"]["device"].startswith(DEVICE.type)
    a, b = (pd.read_csv(tmp_path / d / "trajectory.csv") for d in ("dev", "cpu"))
    for column in ("loss", "eval_loss"):
        np.testing.assert_allclose(a[column], b[column], rtol=1e-9, atol=1e-12)
    assert (a["bytes_sent"] == b["bytes_sent"]).all()


ONEBIT_ARGS = ["onebit-adam", "--workload", "digits-mlp", "--wparam", "hidden=16", "--dtype", "float32", "--steps",
               "40", "--eval-every", "5", "--quiet", "--param", "lr=0.001", "--param", "freeze_step=10",
               "--param", "deepspeed_compat=true"]


@pytest.mark.gpu
def test_deepspeed_onebit_adam_on_the_device_matches_thinwire(tmp_path):
    """DeepSpeed's own OnebitAdam (the deepspeed backend: its engine, NCCL, cupy's bit packing) at one rank on
    the GPU against thinwire's onebit-adam (deepspeed_compat) simulated: test_onebit_adam_deepspeed.py's
    run, trajectory and tolerances, there on 2 gloo ranks with the CPU adapters."""
    if not ON_CUDA:
        pytest.skip("CUDA only: on the CPU, tests/test_onebit_adam_deepspeed.py compares DeepSpeed's OnebitAdam")
    pytest.importorskip("deepspeed.runtime.fp16.onebit.adam", reason="DeepSpeed 0.19.6 not installed (make gpu-wheels)")
    pytest.importorskip("cupy", reason="DeepSpeed's 1-bit optimizers need cupy on CUDA")
    from launch import read_run

    from thinwire.cli import main

    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                           "-m", "thinwire", "run", *ONEBIT_ARGS, "--backend", "deepspeed", "--device", "cuda",
                           "--busbw-mb", "1", "--out", str(tmp_path / "deepspeed")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert main(["sim", *ONEBIT_ARGS, "--workers", "1", "--out", str(tmp_path / "thinwire")]) == 0
    ds, tw = read_run(tmp_path / "deepspeed"), read_run(tmp_path / "thinwire")
    assert ds.meta["backend"] == "deepspeed" and ds.meta["env"]["gpu"] == torch.cuda.get_device_name(0)
    assert np.abs(ds.trajectory["loss"] - tw.trajectory["loss"]).max() <= 1e-5
    assert np.abs(ds.params - tw.params).max() <= 1e-4
    assert ds.trajectory["eval_loss"].iloc[-1] < ds.trajectory["eval_loss"].iloc[0]


# --- unmarked: the device sheet and the dry check end to end -------------------------------------------------


def test_device_sheet_is_at_scale_and_plans():
    """config/gpu.yaml's device sheet: every experiment at >= 30x the quick sheet's steps x parameters,
    with the quick sheet's experiments and labels (the claims read them), and it plans (workloads built,
    methods checked against their world sizes)."""
    config, runs = load_sheet("device")
    plan(config, runs)
    factors = scale_factors(runs)
    assert set(factors) == {"dsm_ls", "onebit_gpt", "sdp4bit", "dgc_lstm"}
    for experiment, f in factors.items():
        assert f["factor"] >= MIN_FACTOR, (experiment, f)
    _, quick = load(ROOT / "config" / "quick.yaml")
    _, dry = load_sheet("dry")
    for sheet in (runs, dry):
        labels = {(r.experiment, r.label) for r in sheet}
        assert labels == {(r.experiment, r.label) for r in quick if r.experiment in factors}


def test_device_script_parses_and_names_its_wheels():
    """The device side (benchmarks/gpu_check_device.sh) is valid bash, and `make gpu-wheels` fetches a wheel
    for every third-party package thinwire imports at start that the device image lacks (README)."""
    script = ROOT / "benchmarks" / "gpu_check_device.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True, check=False).returncode == 0
    wheels = re.search(r"^GPU_WHEELS := (.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1).split()
    assert {"array-api-compat", "jsonschema"} <= set(wheels)


def test_dry_check_archive_imports_into_a_workflow(tmp_path):
    """`python -m thinwire.gpucheck --dry` on the CPU writes one archive with a manifest (ran_on, date, commit,
    wall time per part) and every dry run; a workflow with `imported: [archive]` unpacks it and its report
    has claim rows for the imported experiments (id@source) with ran_on the archive's device and date."""
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "thinwire.gpucheck", "--dry", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=150, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (archive,) = out.glob("gpu-check-*.tar.gz")
    manifest = read_manifest(archive)
    assert manifest["ran_on"] == "cpu" and manifest["dry"] is True
    assert re.fullmatch(r"[0-9a-f]{40}", manifest["commit"])
    assert manifest["total_wall_s"] < manifest["budget_s"]
    for part in ("tests", "bench", "scale"):
        assert manifest["parts"][part]["status"] == "ok", (part, manifest["parts"][part])
        assert manifest["parts"][part]["wall_s"] > 0
    assert manifest["parts"]["tests"]["failed"] == 0 and manifest["parts"]["tests"]["passed"] > len(method_names())
    _, dry = load_sheet("dry")
    assert manifest["run_ids"] == sorted(r.id for r in dry)
    with tarfile.open(archive) as tar:
        bench = tar.extractfile("gpu-check/bench/bench_compressors.txt").read().decode()
    assert "copy, torch cpu (reference)" in bench

    work = tmp_path / "wf"
    work.mkdir()
    (work / "sheet.yaml").write_text(json.dumps({
        "imported": [str(archive)],
        "runs": [{"name": "host", "mode": "sim", "workload": "logreg", "world_size": 2, "steps": 5, "seeds": [0],
                  "methods": [{"method": "sgd"}]}]}))
    snakemake = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(work),
                 "--configfile", str(work / "sheet.yaml"), "--cores", "2"]
    # The workflow's import and results table; the verdicts as the report rule computes them (its
    # command, checked below, passes the claims folder), without drawing every figure.
    claims_dir = work / "results" / "imported" / "claims"
    done = subprocess.run([*snakemake, "results/table.csv"], cwd=work, capture_output=True, text=True,
                          timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    plan = subprocess.run([*snakemake, "-n", "-p", "reports/claims.csv"], cwd=work, capture_output=True, text=True,
                          timeout=120, check=False)
    assert plan.returncode == 0 and "--claims results/imported/claims" in plan.stdout, plan.stdout[-3000:]
    table, studies = read_results(work / "results" / "table.csv", work / "results" / "studies")
    claims = verdicts(table, load_claims(claims_dir), studies)
    tag = f"@dry-{re.sub(r'[^0-9]', '', manifest['date'])[:12]}-{manifest['commit'][:7]}"
    imported = claims[claims["id"].str.endswith(tag)]
    assert {"S1-tau4", "S2-tau12", "A1-convergence", "SDP-P2", "SDP-P3-qW", "D4-small"} <= {
        i[: -len(tag)] for i in imported["id"]}
    assert (imported["ran_on"] == f"cpu {manifest['date'][:10]} (dry run, CPU)").all()
    assert imported["setup"].str.contains("steps x").all()
    # A dry run's tiny runs decide nothing: below the quick run's steps every row is under-powered.
    assert (imported["verdict"] == "inconclusive").all()
    assert imported["power"].str.contains("under-powered: .*needs steps >= ", regex=True).all()
    # The host's own run is there too, on this machine; the imported runs keep their own experiments.
    assert set(table[table["run"].str.endswith(tag)]["experiment"]) == {f"{e}{tag}" for e in
                                                                        ("dsm_ls", "onebit_gpt", "sdp4bit", "dgc_lstm")}
    assert not math.isnan(table[table["experiment"] == "host"]["loss"].iloc[0])
