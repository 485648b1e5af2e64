"""The shell command that starts one real run: every backend and launcher, built here and only here.

A real run is `thinwire run ...` on each of its ranks; what starts the ranks depends on the backend of
the run (torch.distributed with gloo or NCCL, MPI, DeepSpeed) and on where it runs:

local (this machine; the quick config, `make reproduce`):
    gloo, nccl  torchrun --standalone --nproc_per_node W -m thinwire run ...
    mpi         mpiexec -n W thinwire run ... --backend mpi
    deepspeed   deepspeed --num_gpus W --master_port P --no_local_rank --module thinwire run ... --backend deepspeed

slurm (the command runs as the batch script of a job that Snakemake's slurm executor submitted with
resource mpi=srun, so it starts its own job steps across the allocation's nodes):
    gloo, nccl  srun --nodes N --ntasks-per-node 1: on each node torchrun --nnodes N --nproc_per_node G
                with a static rendezvous (--node_rank $SLURM_NODEID, --master_addr the first node)
    mpi         srun --mpi=pmix --nodes N --ntasks-per-node G thinwire run ... (mpi_launcher: srun), or
                mpiexec -n W -ppn G thinwire run ... (mpi_launcher: mpiexec, MPICH's hydra)
    deepspeed   srun --nodes N --ntasks-per-node 1: on each node the deepspeed launcher with a hostfile of
                the allocation (`<host> slots=G`), --no_ssh --node_rank $SLURM_NODEID

Every command is bounded by `timeout` (the run's time limit) on top of the collectives' own timeout, and
srun kills the whole step when one task exits with an error (--kill-on-bad-exit), so a dead rank never
leaves its peers waiting. The rendezvous port is derived from the run id, so runs sharing a node do not
collide.
"""

from __future__ import annotations

import shlex
import zlib
from pathlib import Path

LAUNCHERS = ("local", "slurm")
MPI_LAUNCHERS = ("srun", "mpiexec")
BACKENDS = ("gloo", "nccl", "mpi", "deepspeed")
# `thinwire run --backend/--device` of each runs-sheet backend
RUN_FLAGS = {"gloo": ["--backend", "torch", "--device", "cpu"], "nccl": ["--backend", "torch", "--device", "cuda"],
             "mpi": ["--backend", "mpi"], "deepspeed": ["--backend", "deepspeed"]}
# The first node of the job step, from inside one of its tasks.
FIRST_NODE = '$(scontrol show hostnames "$SLURM_STEP_NODELIST" | head -n 1)'


def port(run_id: str) -> int:
    """A rendezvous port in [20000, 40000) that depends only on the run id."""
    return 20000 + zlib.crc32(run_id.encode()) % 20000


def launch_command(run_id: str, backend: str, run_args: list[str], bin_dir: Path, *, nodes: int = 1,
                   ranks_per_node: int = 2, run_timeout: float = 900.0, launcher: str = "local",
                   mpi_launcher: str = "srun") -> str:
    """The shell command that runs `thinwire run <run_args>` on nodes x ranks_per_node ranks."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}")
    if mpi_launcher not in MPI_LAUNCHERS:
        raise ValueError(f"mpi_launcher must be one of {', '.join(MPI_LAUNCHERS)}, got {mpi_launcher!r}")
    if launcher == "local" and nodes != 1:
        raise ValueError(f"the local launcher runs on 1 node, got nodes={nodes} (use launcher: slurm)")
    world = nodes * ranks_per_node
    thinwire = str(bin_dir / "thinwire")
    args = ["run", *run_args, *RUN_FLAGS[backend]]
    module = ["-m", "thinwire", *args]
    p = port(run_id)
    timeout = ["timeout", f"{run_timeout:g}"]
    if launcher == "local":
        if backend == "mpi":
            cmd = [str(bin_dir / "mpiexec"), "-n", str(world), thinwire, *args]
        elif backend == "deepspeed":
            cmd = [str(bin_dir / "deepspeed"), "--num_gpus", str(world), "--master_port", str(p),
                   "--no_local_rank", "--module", "thinwire", *args]
        else:
            cmd = [str(bin_dir / "torchrun"), "--standalone", "--nproc_per_node", str(world), *module]
        return shlex.join(timeout + cmd)

    srun = ["srun", "--kill-on-bad-exit=1", "--nodes", str(nodes)]
    if backend == "mpi":
        if mpi_launcher == "srun":
            cmd = srun + ["--mpi=pmix", "--ntasks-per-node", str(ranks_per_node), thinwire, *args]
        else:
            cmd = [str(bin_dir / "mpiexec"), "-n", str(world), "-ppn", str(ranks_per_node), thinwire, *args]
        return shlex.join(timeout + cmd)
    # One task per node; the per-node launcher needs the node's rank and the first node's address, known
    # only inside the task: a small sh -c script, its arguments quoted here.
    if backend == "deepspeed":
        hosts = '"${TMPDIR:-/tmp}/thinwire-$SLURM_JOB_ID-$SLURM_STEP_ID.hosts"'
        node = (f'scontrol show hostnames "$SLURM_STEP_NODELIST" | sed "s/$/ slots={ranks_per_node}/" > {hosts} && '
                f'exec {shlex.quote(str(bin_dir / "deepspeed"))} --hostfile {hosts} --no_ssh '
                f'--node_rank "$SLURM_NODEID" --master_addr "{FIRST_NODE}" --master_port {p} '
                f"--num_nodes {nodes} --num_gpus {ranks_per_node} --no_local_rank --module thinwire {shlex.join(args)}")
    else:
        node = (f"exec {shlex.quote(str(bin_dir / 'torchrun'))} --nnodes {nodes} --nproc_per_node {ranks_per_node} "
                f'--node_rank "$SLURM_NODEID" --master_addr "{FIRST_NODE}" --master_port {p} {shlex.join(module)}')
    return shlex.join(timeout + srun + ["--ntasks-per-node", "1", "sh", "-c", node])


def slurm_resources(nodes: int, ranks_per_node: int, gpus_per_node: int, cpus_per_rank: int,
                    mem_mb: int | None, runtime_min: int | None) -> dict:
    """Resources of a real run's job for snakemake-executor-plugin-slurm (sbatch options): `mpi` makes
    the plugin run the job's command as the batch script, which then starts its own steps with srun;
    GPUs are requested per node (gres), tasks per node (or in total, when there is one per node)."""
    if nodes * ranks_per_node < 2:
        raise ValueError("a real run on slurm needs at least 2 ranks (the plugin's MPI-style jobs need 2 tasks)")
    res: dict = {"nodes": nodes, "mpi": "srun", "cpus_per_task": cpus_per_rank}
    if gpus_per_node:
        res["gres"] = f"gpu:{gpus_per_node}"
    if ranks_per_node > 1:
        res["tasks_per_node"] = ranks_per_node
    else:  # the plugin refuses tasks_per_node 1 for MPI-style jobs; with GPUs it reads tasks as per GPU
        res["tasks"] = nodes
        if gpus_per_node:
            res["tasks_per_gpu"] = 1
    if mem_mb:
        res["mem_mb"] = mem_mb
    if runtime_min:
        res["runtime"] = runtime_min
    return res
