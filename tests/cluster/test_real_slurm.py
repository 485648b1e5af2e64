"""The cluster path end to end on a real Slurm (tests/cluster/netns_slurm.py: a controller and 2 nodes in
network namespaces, 1 Gbit/s shaped links between the nodes): `snakemake --profile profiles/slurm
--configfile config/cluster-test.yaml` submits every multi-node launch path; each multi-node run must
equal its one-node twin (float64: exactly; DeepSpeed's float32 OnebitAdam: to the cross-mode tolerance
1e-6 of tests/launch.py) with identical commlogs; the performance model priced on the cluster's two link
tiers against the measured step times of multi-node runs (claim PM-validation-multinode,
tests/cluster/validate_multinode.py), shown in the report; then faults (scancel, a killed slurmd) on a
second workflow, its rerun, and nothing left behind.

Needs root, Debian's slurm-wlm and munge (installed if missing) and several minutes: it runs only when
asked, `make cluster-test` (THINWIRE_CLUSTER_TEST=1); the normal suite skips it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from cluster.netns_slurm import ClusterSpec, SlurmCluster, leftovers
from cluster.validate_multinode import run_validation
from launch import method_log, read_run

pytestmark = [
    pytest.mark.skipif(os.environ.get("THINWIRE_CLUSTER_TEST") != "1",
                       reason="a real Slurm cluster in network namespaces: make cluster-test (root, several minutes)"),
    pytest.mark.timeout(2400),
]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SPEC = ClusterSpec()
CONFIG, FAULTS = ROOT / "config" / "cluster-test.yaml", ROOT / "config" / "cluster-test-faults.yaml"
RESULTS, FAULT_RESULTS = ROOT / "results" / "cluster-test", ROOT / "results" / "cluster-test-faults"
VALIDATION = ROOT / "config" / "cluster-test-validation.yaml"
WORKFLOW_TIMEOUT_S = 900
# Each multi-node run, its one-node twin, its simulator twin (or None), the largest difference allowed.
TWINS = [("mn_modes-real-gloo-topk-ef-s0", "one_modes-real-gloo-topk-ef-s0", "sim_modes-sim-topk-ef-s0", 0.0),
         ("mn_modes-real-mpi-topk-ef-s0", "one_modes-real-mpi-topk-ef-s0", "sim_modes-sim-topk-ef-s0", 0.0),
         ("mn_sdp-real-gloo-sdp4bit-s3", "one_sdp-real-gloo-sdp4bit-s3", "sim_sdp-sim-sdp4bit-s3", 0.0),
         ("mn_onebit-real-deepspeed-onebit-adam-s0", "one_onebit-real-deepspeed-onebit-adam-s0", None, 1e-6)]


def snakemake(cluster: SlurmCluster, config: Path, *extra: str) -> subprocess.CompletedProcess:
    """The workflow as a user runs it on a cluster's login node: here the controller's namespace. Status
    by squeue (there is no accounting database for sacct; MinJobAge keeps finished jobs in squeue). A
    killed earlier test may have left Snakemake's lock on these (the test's own) results: unlock first."""
    cmd = [str(BIN / "snakemake"), "--profile", "profiles/slurm", "--configfile", str(config), "--keep-going",
           "--jobs", "2", "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "5",
           *extra]
    env = {**cluster.env, "PATH": f"{BIN}:{cluster.env['PATH']}"}
    subprocess.run([*cmd[:5], "--unlock"], cwd=ROOT, env=env, capture_output=True, timeout=120, check=True)
    return subprocess.run(cluster.in_controller(cmd), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=WORKFLOW_TIMEOUT_S, check=False)


def job_nodes(cluster: SlurmCluster, job_id: str) -> str:
    return cluster.client(["squeue", "-h", "--states=all", "-j", job_id, "-o", "%N"]).stdout.strip()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = SlurmCluster(SPEC, keep_logs=tmp_path_factory.mktemp("slurm-logs"))
    with c:
        yield c
    assert leftovers(SPEC.prefix, c.run_dir) == []


@pytest.fixture(scope="module")
def workflow(cluster):
    for d in (RESULTS, ROOT / "reports" / "cluster-test"):
        shutil.rmtree(d, ignore_errors=True)
    before = cluster.link_bytes()
    start = time.monotonic()
    proc = snakemake(cluster, CONFIG)
    print(f"cluster-test workflow: {time.monotonic() - start:.0f} s", file=sys.stderr)
    assert proc.returncode == 0, proc.stderr[-5000:]
    after = cluster.link_bytes()
    return proc, {n: after[n] - before[n] for n in after}


def test_every_launch_path_ran_on_the_cluster(cluster, workflow):
    runs = {p.name: json.loads((p / "meta.json").read_text()) for p in (RESULTS / "runs").iterdir()}
    assert set(runs) == {r for twin in TWINS for r in twin[:3] if r}
    for run_id, meta in runs.items():
        assert meta["status"] == "ok" and meta["env"]["cluster"] == SPEC.name, run_id
        nodes = job_nodes(cluster, meta["env"]["slurm_job_id"])
        assert nodes == (f"{SPEC.prefix}-n[1-2]" if run_id.startswith("mn_") else nodes), (run_id, nodes)
        assert run_id.startswith("mn_") or "," not in nodes and "[" not in nodes
    table = pd.read_csv(RESULTS / "table.csv")
    assert set(table["ran_on"]) == {SPEC.name}
    assert (ROOT / "reports" / "cluster-test" / "index.html").exists()
    assert (ROOT / "reports" / "cluster-test" / "runs.html").exists()


def test_multi_node_runs_crossed_the_shaped_links(cluster, workflow):
    _, sent = workflow
    qdisc = cluster.client(["tc", "qdisc", "show", "dev", "eth0"]).stdout  # the controller's: unshaped
    assert "tbf" not in qdisc
    for node in SPEC.node_names:
        shown = subprocess.run(["ip", "netns", "exec", node, "tc", "qdisc", "show", "dev", "eth0"],
                               capture_output=True, text=True, timeout=10, check=True).stdout
        assert re.search(r"tbf .*rate 1Gbit", shown), shown
    # What crossed between the nodes: at least each multi-node run's method traffic (every rank sends its
    # bytes to a rank on the other node at least once per collective; loopback traffic is not counted).
    method_bytes = sum(method_log(read_run(RESULTS / "runs" / mn))["sent"].sum() for mn, *_ in TWINS)
    assert min(sent.values()) >= method_bytes / 4 > 0, (sent, method_bytes)


@pytest.mark.parametrize("multi,one,sim,tol", TWINS, ids=[t[0].split("-")[0] + "-" + t[0].split("-")[2] for t in TWINS])
def test_multi_node_equals_one_node(workflow, multi, one, sim, tol):
    mn, on = read_run(RESULTS / "runs" / multi), read_run(RESULTS / "runs" / one)
    assert mn.meta["world_size"] == on.meta["world_size"] and len(mn.trajectory) == len(on.trajectory)
    for col in ("loss", "eval_loss", "metric"):
        assert np.nanmax(np.abs(mn.trajectory[col] - on.trajectory[col]).fillna(0)) <= tol, col
    assert np.abs(mn.params - on.params).max() <= tol
    pd.testing.assert_frame_equal(mn.commlog, on.commlog)  # every call's bytes, metrics included
    assert (mn.trajectory[["bytes_sent", "bytes_recv", "stated_bits"]]
            == on.trajectory[["bytes_sent", "bytes_recv", "stated_bits"]]).all().all()
    if sim is not None:  # and the simulator's run, to the cross-mode tolerance
        s = read_run(RESULTS / "runs" / sim)
        assert np.abs(mn.trajectory["loss"] - s.trajectory["loss"]).max() <= 1e-6
        pd.testing.assert_frame_equal(method_log(mn), method_log(s))


def test_model_prices_the_multi_node_runs(cluster, workflow):
    """PM-validation-multinode: measured on the cluster, priced on its two measured tiers, and the report
    the cluster test built shows the claim with its value (rebuilt with the study, as make validate does)."""
    start = time.monotonic()
    study = RESULTS / "studies" / "validation-multinode.csv"
    table = run_validation(cluster, VALIDATION, RESULTS / "validation-multinode", study)
    print(f"validation-multinode: {time.monotonic() - start:.0f} s\n{table.to_string()}", file=sys.stderr)
    sheet = yaml.safe_load(VALIDATION.read_text())
    assert list(table["case"]) == [c["name"] for c in sheet["cases"]]
    assert (table["repeats"] == sheet["repeats"]).all() and sheet["repeats"] >= 3
    assert (table[["local_s", "comm_predicted_s", "measured_s"]] > 0).all().all()
    # Both tiers measured where the runs ran: the shaped one near the tbf rate and the slower of the two.
    inter, intra = table["inter_gbps"].iloc[0], table["intra_gbps"].iloc[0]
    assert 0.5 < inter < 1.2 < intra, (inter, intra)
    facts = yaml.safe_load((RESULTS / "validation-multinode" / "cluster.yaml").read_text())["tiers"]
    assert {f["label"] for tier in facts.values() for f in tier.values()} == {"measured"}
    subprocess.run([str(BIN / "thinwire"), "report", str(RESULTS / "table.csv"), "--out",
                    str(ROOT / "reports" / "cluster-test"), "--studies", str(RESULTS / "studies")],
                   cwd=ROOT, check=True, capture_output=True, timeout=600)
    claims = pd.read_csv(ROOT / "reports" / "cluster-test" / "claims.csv").set_index("id")
    for claim, stat in (("PM-validation-multinode", "median"), ("PM-validation-multinode-max", "max")):
        assert claims.loc[claim, "measured"] == pytest.approx(getattr(table["error"].abs(), stat)()), claim
        assert claims.loc[claim, "verdict"] in ("reproduced", "not reproduced", "inconclusive"), claim
    assert "PM-validation-multinode" in (ROOT / "reports" / "cluster-test" / "papers" / "validation.html").read_text()


def _training(cluster: SlurmCluster, names: set[str], workflow: subprocess.Popen,
              timeout: float = 300) -> dict[str, str]:
    """Wait until the jobs of these runs have their ranks' step running (not just the batch script: a
    fault before the step starts is a failed launch, not a failure mid-run); their job ids by run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if workflow.poll() is not None:
            raise AssertionError(f"the workflow ended before its jobs trained: {workflow.stdout.read()[-3000:]}")
        out = cluster.client(["squeue", "-h", "-o", "%i|%T|%k"]).stdout
        jobs = {comment.split("_wildcards_")[-1]: (job, state)
                for job, state, comment in (line.split("|") for line in out.splitlines() if line)}
        steps = set(cluster.client(["squeue", "-h", "-s", "-o", "%i"]).stdout.split())
        found = {run: job for run, (job, state) in jobs.items()
                 if run in names and state == "RUNNING" and f"{job}.0" in steps}
        if set(found) == names:
            return found
        time.sleep(2)
    raise AssertionError(f"jobs of {names} not training after {timeout:g} s")


def test_faults_fail_only_their_runs_and_a_rerun_completes_them(cluster):
    shutil.rmtree(FAULT_RESULTS, ignore_errors=True)
    shutil.rmtree(ROOT / "reports" / "cluster-test-faults", ignore_errors=True)
    cancel, node = "f_cancel-real-gloo-topk-ef-s0", "f_node-real-gloo-topk-ef-s0"
    ok = "f_ok-real-gloo-topk-ef-s0"
    env = {**cluster.env, "PATH": f"{BIN}:{cluster.env['PATH']}"}
    # No requeue: Slurm would requeue the job of a failed node, and it would wait for that node forever.
    cmd = [str(BIN / "snakemake"), "--profile", "profiles/slurm", "--configfile", str(FAULTS), "--keep-going",
           "--jobs", "3", "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "5",
           "--slurm-no-requeue"]
    subprocess.run([*cmd[:5], "--unlock"], cwd=ROOT, env=env, capture_output=True, timeout=120, check=True)
    proc = subprocess.Popen(cluster.in_controller(cmd), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        jobs = _training(cluster, {cancel, node}, proc)
        time.sleep(5)  # both are past their ranks' start
        cluster.client(["scancel", jobs[cancel]])
        cluster.kill_slurmd(f"{SPEC.prefix}-n2")
        out, _ = proc.communicate(timeout=WORKFLOW_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode != 0
    errors = out.split("Error in rule")[1:]
    failed = {run for run in (cancel, node, ok) for e in errors if f"runs/{run}/" in e}
    assert failed == {cancel, node}, out[-5000:]
    assert any(cancel in e and "CANCELLED" in e for e in errors), out[-5000:]
    assert any(node in e and "NODE_FAIL" in e for e in errors), out[-5000:]
    assert (FAULT_RESULTS / "runs" / ok / "meta.json").exists()
    assert not (FAULT_RESULTS / "runs" / cancel).exists() and not (FAULT_RESULTS / "runs" / node).exists()
    done = (FAULT_RESULTS / "runs" / ok / "meta.json").stat().st_mtime_ns

    # The node comes back (its slurmd ends what is left of the failed job); the rerun runs only what failed.
    cluster.start_slurmd(f"{SPEC.prefix}-n2")
    rerun = snakemake(cluster, FAULTS)
    assert rerun.returncode == 0, rerun.stderr[-5000:]
    assert sorted(re.findall(r"wildcards: run=(\S+)", rerun.stderr)) == sorted([cancel, node]), rerun.stderr[-3000:]
    assert all((FAULT_RESULTS / "runs" / r / "meta.json").exists() for r in (cancel, node, ok))
    assert (FAULT_RESULTS / "runs" / ok / "meta.json").stat().st_mtime_ns == done
