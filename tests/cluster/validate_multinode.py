"""The performance model against the multi-node runs of the test cluster (claim PM-validation-multinode).

thinwire/validate.py checks the model on shaped links between 2 namespaces; this is the same check on
the real Slurm of tests/cluster/netns_slurm.py, where a run's ranks sit on 2 nodes and its traffic takes
two tiers: a node's loopback (intra, unshaped) and the nodes' tc tbf links (inter). Everything runs as
Slurm job steps (srun from the controller's namespace), so it runs where the cluster test's runs run:

  links        the link micro-benchmark (thinwire.workloads.linkbench) on each tier: 2 ranks across the
               2 nodes (inter, once per round, the median fit kept: its latency fit ranged 0.13 to 1.2
               ms between sessions on the loaded 2 cores, one burst of load is enough), 2 ranks on the
               first node as the node is pinned (intra), and 2 ranks on the first node on every node's
               cores (the link the calibrations' ranks use; both steady at 67-75 us, once)
  calibration  the same case on one node (the local launcher's torchrun in the first node's namespace),
               its ranks on the cores the multi-node run's ranks get (the nodes' cores together: the
               same CPU per rank), all its traffic on loopback
  measured     the case across the nodes, launched as the cluster test launches it (launch.py: torchrun
               per node, static rendezvous on the first node)

Per round every case is calibrated and then measured; rounds interleave. validate.py prices: the
described test cluster (config/cluster-test-netns.yaml) with both tiers as measured, each case laid out
as it ran, its local time from the calibrations (validate.multinode_table).

    sudo python -m pytest tests/cluster -k model   # with THINWIRE_CLUSTER_TEST=1 (make cluster-test)
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
from cluster.netns_slurm import SlurmCluster

from thinwire.launch import FIRST_NODE, launch_command, port
from thinwire.validate import (
    RANK_ENV,
    MultinodeCase,
    _run_argv,
    measured_cluster,
    median_link,
    multinode_table,
)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _step(cluster: SlurmCluster, cmd: str, what: str, timeout: float) -> None:
    """One shell command (srun ...) in the controller's namespace; a failure raises with its output."""
    env = {**cluster.env, "PATH": f"{BIN}:{cluster.env['PATH']}", **RANK_ENV}
    proc = subprocess.run(cluster.in_controller(["sh", "-c", cmd]), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{what} exited {proc.returncode}: {(proc.stderr or proc.stdout)[-3000:]}")


def _one_node(cluster: SlurmCluster, ranks: int, cores: str | None, inner: list[str] | str) -> str:
    """srun of `inner` (argv, or a shell command) as one task with `ranks` CPUs on the first node, pinned
    to `cores` (None: as the node is pinned)."""
    inner = inner if isinstance(inner, str) else shlex.join(inner)
    pin = f"taskset -c {cores} " if cores else ""
    return (f"srun --kill-on-bad-exit=1 --nodes 1 --partition {cluster.spec.node_names[0]} --ntasks 1 "
            f"--cpus-per-task {ranks} {pin}sh -c {shlex.quote(inner)}")


def _links(cluster: SlurmCluster, sheet: dict, work: Path, cores: str, tiers: tuple[str, ...]) -> dict[str, Path]:
    """The link micro-benchmark on each of `tiers`: inter, intra, and the calibrations' link."""
    bench = ["-m", "thinwire.workloads.linkbench", "--repeats", str(sheet.get("link_repeats", 20)),
             "--timeout", str(sheet.get("timeout_s", 60))]
    links = {name: work / f"link-{name}.json" for name in tiers}
    torchrun = shlex.quote(str(BIN / "torchrun"))
    standalone = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", *bench, "--out"]
    for name, out in links.items():
        if name == "inter":
            across = (f'exec {torchrun} --nnodes 2 --nproc_per_node 1 --node_rank "$SLURM_NODEID" --master_addr '
                      f'"{FIRST_NODE}" --master_port {port(str(out))} {shlex.join([*bench, "--out", str(out)])}')
            cmd = f"srun --kill-on-bad-exit=1 --nodes 2 --ntasks-per-node 1 sh -c {shlex.quote(across)}"
        else:
            cmd = _one_node(cluster, 2, cores if name == "calibration" else None, [*standalone, str(out)])
        _step(cluster, cmd, f"link micro-benchmark ({name})", sheet.get("run_timeout_s", 120))
    return links


def run_validation(cluster: SlurmCluster, sheet_path: Path, work: Path, out: Path,
                   progress: bool = True) -> pd.DataFrame:
    """Measure, price and write the table (validate.MULTINODE_COLUMNS) to `out`; returns it."""
    sheet = yaml.safe_load(Path(sheet_path).read_text())
    work.mkdir(parents=True, exist_ok=True)
    limit = sheet.get("run_timeout_s", 120)
    spec = cluster.spec
    start = time.monotonic()
    runs: dict[str, list[Path]] = {c["name"]: [] for c in sheet["cases"]}
    calibrations: dict[str, list[Path]] = {c["name"]: [] for c in sheet["cases"]}
    cores_of = dict(zip(spec.node_names, spec.cores(), strict=True))
    all_cores = ",".join(map(str, sorted({c for cores in cores_of.values() for c in cores})))
    links = _links(cluster, sheet, work, all_cores, ("intra", "calibration"))
    inter: list[Path] = []
    for rep in range(sheet["repeats"]):
        inter.append(_links(cluster, sheet, work / f"rep{rep}", all_cores, ("inter",))["inter"])
        for case in sheet["cases"]:
            name, nodes, rpn = case["name"], case["nodes"], case["ranks_per_node"]
            cores = ",".join(map(str, sorted({c for n in spec.node_names[:nodes] for c in cores_of[n]})))
            run_sheet = {**sheet, "workload": case["workload"], "workload_params": case.get("workload_params")}
            method = {k: case[k] for k in ("method", "label", "params")}
            calibration, run = work / f"rep{rep}" / f"{name}-one-node", work / f"rep{rep}" / name
            local = launch_command(f"{name}-one-node", "gloo", _run_argv(run_sheet, method, calibration)[1:], BIN,
                                   nodes=1, ranks_per_node=nodes * rpn, run_timeout=limit)
            _step(cluster, _one_node(cluster, nodes * rpn, cores, local), f"{name} on one node (round {rep + 1})",
                  limit + 30)
            across = launch_command(f"validation-multinode-{name}-{rep}", "gloo",
                                    _run_argv(run_sheet, method, run)[1:], BIN, nodes=nodes, ranks_per_node=rpn,
                                    run_timeout=limit, launcher="slurm")
            _step(cluster, across, f"{name} on {nodes} nodes (round {rep + 1})", limit + 30)
            calibrations[name].append(calibration)
            runs[name].append(run)
            if progress:
                print(f"validation-multinode: round {rep + 1} {name} done at {time.monotonic() - start:.0f} s",
                      file=sys.stderr)
    described = ROOT / sheet["cluster"]
    links["inter"] = median_link(inter, work / "link-inter.json")
    model = measured_cluster(described, links["intra"], links["inter"], work / "cluster.yaml")
    cases = [MultinodeCase(c["name"], c["method"], c["label"], c["nodes"], c["ranks_per_node"],
                           tuple(runs[c["name"]]), tuple(calibrations[c["name"]])) for c in sheet["cases"]]
    table = multinode_table(cases, model, links["calibration"], sheet["skip"], sheet.get("step_stat", "median"))
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table
