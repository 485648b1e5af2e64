"""The shell command that starts one real run: every backend and launcher, built here and only here.

A real run is `thinwire run ...` on each of its ranks; what starts the ranks depends on the backend of
the run (torch.distributed with gloo or NCCL, MPI, DeepSpeed) and on where it runs:

local (this machine; the quick config, `make reproduce`):
    gloo, nccl  python -m thinwire.torchrun --standalone --nproc_per_node W -m thinwire run ...
    mpi         mpiexec -n W thinwire run ... --backend mpi
    deepspeed   deepspeed --num_gpus W --master_port P --no_local_rank --module thinwire run ... --backend deepspeed

slurm (the command runs as the batch script of a job that Snakemake's slurm executor submitted with
resource mpi=srun, so it starts its own job steps across the allocation's nodes; the executor's job
step keeps only SLURM_JOB_ID of the allocation's variables, which is all srun needs to attach):
    gloo, nccl  srun, one task per node with all of the node's CPUs and GPUs: torchrun (as
                `python -m thinwire.torchrun`) --nnodes N
                --nproc_per_node G with a static rendezvous (--node_rank $SLURM_NODEID, --master_addr the
                step's first node)
    mpi         srun --mpi=pmi2, one task per rank (mpi_launcher srun-pmi2, the default: Slurm's plugin,
                spoken to with MPICH's PMI-1 client), srun --mpi=pmix (srun-pmix), or the MPI library's mpiexec
                with the allocation's hosts (mpiexec: MPICH's hydra, -ppn G -launcher slurm)
    deepspeed   srun, one task per node: DeepSpeed's launcher with a hostfile of the step's nodes
                (`<host> slots=G`), --no_ssh --node_rank $SLURM_NODEID

Every run is told its planned world size (`--world-size`) and refuses to train with another, so a
launch that starts W singleton processes instead of one W-rank job fails instead of writing W copies.
Every command is bounded by `timeout` (the run's time limit) on top of the collectives' own timeout,
and srun kills the whole step when one task exits with an error (--kill-on-bad-exit), so a dead rank
never leaves its peers waiting. The rendezvous port is derived from the run id (below Linux's ephemeral
ports), so runs sharing a node do not collide. torchrun is started as `python -m thinwire.torchrun`
(thinwire/torchrun.py: the same launcher, same arguments), which ends a failed job with one line per
failed rank (its rank, exit code or signal, and its own one-line error) instead of torch's
ChildFailedError traceback.

Every command first sets the thread pools of the ranks it starts to their share of the cores
(`thread_env`: OpenMP, MKL, OpenBLAS, ... to cpus_per_rank). A rank otherwise inherits its launcher's
variables: Snakemake sets them to its job's threads (2 for a 2-rank run here), torchrun keeps them when
set, and MKL reads MKL_NUM_THREADS on its own, so two ranks ran four BLAS threads on two cores; their
spinning made every matmul-heavy step 2-4x slower (2026-12-07: sgd's steps 28 ms against 8 ms) and its
timings noisy.
"""

from __future__ import annotations

import shlex
import zlib
from pathlib import Path

LAUNCHERS = ("local", "slurm")
MPI_LAUNCHERS = ("srun-pmi2", "srun-pmix", "mpiexec")
BACKENDS = ("gloo", "nccl", "mpi", "deepspeed", "ddp")
# `thinwire run --backend/--device` of each runs-sheet backend
RUN_FLAGS = {"gloo": ["--backend", "torch", "--device", "cpu"], "nccl": ["--backend", "torch", "--device", "cuda"],
             "mpi": ["--backend", "mpi"], "deepspeed": ["--backend", "deepspeed"], "ddp": ["--backend", "ddp"]}
# MPICH's PMI client version for each srun PMI plugin (other MPI libraries ignore the variable). Slurm's
# mpi/pmi2 plugin serves the PMI-1 wire protocol too; MPICH 5's PMI-2 client fails MPI_Init against it
# (Slurm 22.05: "MPIR_pmi_init: Internal MPI error", tests/cluster), its PMI-1 client works.
MPICH_PMI = {"srun-pmi2": "1", "srun-pmix": "x"}
# Inside a step's task: its first node. Inside the batch script: the allocation's hosts, comma-separated.
FIRST_NODE = '$(scontrol show hostnames "$SLURM_STEP_NODELIST" | head -n 1)'
JOB_HOSTS = '$(scontrol show hostnames "$(squeue -h -j "$SLURM_JOB_ID" -o %N)" | paste -sd, -)'


# The thread-count variables of the libraries a rank's compute runs on (torch's OpenMP and MKL, numpy's
# BLAS, numexpr), the ones Snakemake sets for a job.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def thread_env(threads: int) -> dict[str, str]:
    """Every thread-count variable set to `threads`: a rank's pools fit the cores it was given."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return dict.fromkeys(THREAD_VARS, str(threads))


def port(run_id: str) -> int:
    """A rendezvous port in [10000, 30000), below Linux's ephemeral range, that depends only on the run id."""
    return 10000 + zlib.crc32(run_id.encode()) % 20000


def job_port(run_id: str) -> str:
    """The rendezvous port of a run's Slurm job, as a shell expression evaluated inside the job: the run's
    port shifted by the job id, so a rerun of the run (a new job) does not meet the port still held by
    what is left of its failed attempt on the same node (a node that died and came back: the cluster
    test's rerun got EADDRINUSE on the run-only port). Still in [10000, 30000)."""
    return f'"$(( ({port(run_id) - 10000} + SLURM_JOB_ID) % 20000 + 10000 ))"'


def launch_command(run_id: str, backend: str, run_args: list[str], bin_dir: Path, *, nodes: int = 1,
                   ranks_per_node: int = 2, gpus_per_node: int = 0, cpus_per_rank: int = 1,
                   run_timeout: float = 900.0, launcher: str = "local", mpi_launcher: str = "srun-pmi2") -> str:
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
    args = ["run", *run_args, *RUN_FLAGS[backend], "--world-size", str(world)]
    p = port(run_id)
    torchrun = [str(bin_dir / "python"), "-m", "thinwire.torchrun"]  # torchrun, with one line per failed rank
    # Each rank's thread pools sized to its cores, then the run's time limit around the launcher;
    # --foreground: the launcher stays in the caller's process group, so a terminal's Ctrl-C (and
    # Snakemake's) reaches torchrun / mpiexec / deepspeed, which stop their ranks.
    timeout = shlex.join(["env", *(f"{k}={v}" for k, v in thread_env(cpus_per_rank).items()),
                          "timeout", "--foreground", f"{run_timeout:g}"])
    if launcher == "local":
        if backend == "mpi":
            cmd = [str(bin_dir / "mpiexec"), "-n", str(world), thinwire, *args]
        elif backend == "deepspeed":
            cmd = [str(bin_dir / "deepspeed"), "--num_gpus", str(world), "--master_port", str(p),
                   "--no_local_rank", "--module", "thinwire", *args]
        else:
            cmd = [*torchrun, "--standalone", "--nproc_per_node", str(world), "-m", "thinwire", *args]
        return f"{timeout} {shlex.join(cmd)}"

    srun = ["srun", "--kill-on-bad-exit=1", "--nodes", str(nodes)]
    if backend == "mpi":
        if mpi_launcher == "mpiexec":  # hydra finds no nodes in the stripped environment: name them
            hydra = [str(bin_dir / "mpiexec"), "-n", str(world), "-ppn", str(ranks_per_node), "-launcher", "slurm"]
            return f'{timeout} {shlex.join(hydra)} -hosts "{JOB_HOSTS}" {shlex.join([thinwire, *args])}'
        cmd = [*srun, "--ntasks-per-node", str(ranks_per_node), "--cpus-per-task", str(cpus_per_rank),
               f"--mpi={mpi_launcher.removeprefix('srun-')}",
               f"--export=ALL,MPIR_CVAR_PMI_VERSION={MPICH_PMI[mpi_launcher]}", thinwire, *args]
        return f"{timeout} {shlex.join(cmd)}"
    # One task per node with the node's CPUs and GPUs; the per-node launcher needs the node's rank and the
    # first node's address, known only inside the task: a small sh -c script, its arguments quoted here.
    step = [*srun, "--ntasks-per-node", "1", "--cpus-per-task", str(ranks_per_node * cpus_per_rank)]
    if gpus_per_node:
        step.append(f"--gres=gpu:{gpus_per_node}")
    if backend == "deepspeed":
        hosts = '"${TMPDIR:-/tmp}/thinwire-$SLURM_JOB_ID-$SLURM_STEP_ID-$SLURM_NODEID.hosts"'  # one per node
        node = (f'scontrol show hostnames "$SLURM_STEP_NODELIST" | sed "s/$/ slots={ranks_per_node}/" > {hosts} && '
                f'{shlex.quote(str(bin_dir / "deepspeed"))} --hostfile {hosts} --no_ssh '
                f'--node_rank "$SLURM_NODEID" --master_addr "{FIRST_NODE}" --master_port {job_port(run_id)} '
                f"--num_nodes {nodes} --num_gpus {ranks_per_node} --no_local_rank --module thinwire "
                f"{shlex.join(args)}; status=$?; rm -f {hosts}; exit $status")
    else:
        node = (f"exec {shlex.join(torchrun)} --nnodes {nodes} --nproc_per_node {ranks_per_node} "
                f'--node_rank "$SLURM_NODEID" --master_addr "{FIRST_NODE}" --master_port {job_port(run_id)} -m thinwire '
                f"{shlex.join(args)}")
    return f"{timeout} {shlex.join([*step, 'sh', '-c', node])}"


def slurm_resources(nodes: int, ranks_per_node: int, gpus_per_node: int, cpus_per_rank: int,
                    mem_mb: int | None, runtime_min: int | None, partition: str | None = None) -> dict:
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
    if partition:
        res["slurm_partition"] = partition
    return res
