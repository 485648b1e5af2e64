"""The cluster path without a cluster: launch commands as text (and executed against stand-ins for srun,
scontrol and the launchers), slurm resources, the checks made before any job is submitted, the slurm
profile's plan of the paper-scale config, and where results say they came from."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from thinwire.algorithms.comm import ThinwireError

from thinwire.config import load as read_sheet
from thinwire.config import plan


def load(config):
    """Read a runs sheet and plan its runs, as the workflow does before any job starts."""
    config, runs = read_sheet(config)
    plan(config, runs)
    return config, runs
from thinwire.launch import launch_command, port, slurm_resources

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ARGS = ["sgd", "--workload", "logreg", "--out", "results/runs/x"]


def test_local_commands_start_every_rank_on_this_machine():
    b = Path("/venv/bin")
    gloo = shlex.split(launch_command("r", "gloo", ARGS, b, ranks_per_node=2, run_timeout=60))
    # every thread pool of a rank at its cores (1), whatever the caller's variables say (Snakemake: its job's
    # threads); torchrun as thinwire.torchrun: torch's launcher, one line per failed rank
    threads = ["env", "OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1", "GOTO_NUM_THREADS=1",
               "VECLIB_MAXIMUM_THREADS=1", "NUMEXPR_NUM_THREADS=1"]
    assert gloo == [*threads, "timeout", "--foreground", "60", "/venv/bin/python", "-m", "thinwire.torchrun",
                    "--standalone", "--nproc_per_node", "2", "-m", "thinwire", "run", *ARGS, "--backend", "torch",
                    "--device", "cpu", "--world-size", "2"]
    nccl = shlex.split(launch_command("r", "nccl", ARGS, b, ranks_per_node=4, cpus_per_rank=4))
    assert nccl[-6:] == ["--backend", "torch", "--device", "cuda", "--world-size", "4"] and "--nproc_per_node" in nccl
    assert nccl[:7] == [t.replace("=1", "=4") for t in threads]
    mpi = shlex.split(launch_command("r", "mpi", ARGS, b, ranks_per_node=3))[len(threads):]
    assert mpi[3:] == ["/venv/bin/mpiexec", "-n", "3", "/venv/bin/thinwire", "run", *ARGS, "--backend", "mpi",
                       "--world-size", "3"]
    ds = shlex.split(launch_command("r", "deepspeed", ARGS, b, ranks_per_node=2))[len(threads):]
    assert ds[3:10] == ["/venv/bin/deepspeed", "--num_gpus", "2", "--master_port", str(port("r")), "--no_local_rank",
                       "--module"]
    assert ds[10:] == ["thinwire", "run", *ARGS, "--backend", "deepspeed", "--world-size", "2"]
    with pytest.raises(ValueError, match="threads must be >= 1"):
        launch_command("r", "gloo", ARGS, b, cpus_per_rank=0)


def test_bad_launch_requests_are_refused():
    with pytest.raises(ValueError, match="backend must be one of"):
        launch_command("r", "ucc", ARGS, BIN)
    with pytest.raises(ValueError, match="launcher must be one of"):
        launch_command("r", "gloo", ARGS, BIN, launcher="pbs")
    with pytest.raises(ValueError, match="runs on 1 node"):
        launch_command("r", "gloo", ARGS, BIN, nodes=2)
    with pytest.raises(ValueError, match="at least 2 ranks"):
        slurm_resources(1, 1, 1, 4, None, 60)


def test_ports_depend_only_on_the_run():
    ids = [f"paper-real-nccl-dgc-s{i}" for i in range(200)]
    ports = [port(i) for i in ids]
    assert all(10000 <= p < 30000 for p in ports) and ports == [port(i) for i in ids]  # below ephemeral ports
    assert len(set(ports)) > 190


def _stand_ins(tmp_path: Path) -> Path:
    """srun (runs its command as task 1 of 2 nodes, printing its own options), scontrol (2 hosts), and
    python (for `python -m thinwire.torchrun`) / deepspeed / thinwire that print their arguments (and the
    hostfile they were given)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    scripts = {
        "srun": 'echo "srun $*" >&2; while [ "${1#-}" != "$1" ]; do case "$1" in --nodes|--ntasks-per-node|--cpus-per-task) shift;; '
                'esac; shift; done; SLURM_NODEID=1 SLURM_STEP_NODELIST="gpu[07-08]" exec "$@"',
        "scontrol": 'test "$1 $2 $3" = "show hostnames gpu[07-08]" && printf "gpu07\\ngpu08\\n"',
        "squeue": 'test "$*" = "-h -j 4242 -o %N" && echo "gpu[07-08]"',
        "mpiexec": 'printf "%s\\n" "$@"',
        "python": 'echo "threads OMP=$OMP_NUM_THREADS MKL=$MKL_NUM_THREADS" >&2; printf "%s\\n" "$@"',
        "thinwire": 'printf "%s\\n" "$@"',
        "deepspeed": 'printf "%s\\n" "$@"; while [ "$1" != "--hostfile" ]; do shift; done; cat "$2"',
    }
    for name, body in scripts.items():
        (fake / name).write_text(f"#!/bin/sh\n{body}\n")
        (fake / name).chmod(0o755)
    return fake


def _job_port(run_id: str, job_id: int) -> int:
    """What a Slurm job's rendezvous port must be: the run's port shifted by the job id, in [10000, 30000)."""
    return 10000 + (port(run_id) - 10000 + job_id) % 20000


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_a_rerun_of_a_slurm_run_rendezvous_on_another_port(tmp_path):
    """A rerun is a new job: its port differs from the failed attempt's, whose leftover processes on a node
    that came back may still hold that port (cluster test: EADDRINUSE)."""
    fake = _stand_ins(tmp_path)
    cmd = launch_command("job", "gloo", ARGS, fake, nodes=2, ranks_per_node=2, launcher="slurm")
    ports = []
    for job in ("4242", "4243", "19999"):
        env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "SLURM_JOB_ID": job, "TMPDIR": str(tmp_path)}
        out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, env=env, timeout=30, check=True).stdout.split("\n")
        ports.append(int(out[out.index("--master_port") + 1]))
    assert len(set(ports)) == 3 and all(10000 <= p < 30000 for p in ports), ports


def _execute(command: str, fake: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242", "TMPDIR": str(tmp_path)}
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env, timeout=30, check=False)


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_slurm_commands_run_one_launcher_per_node_with_the_first_node_as_master(tmp_path):
    fake = _stand_ins(tmp_path)
    cmd = launch_command("job", "nccl", ARGS, fake, nodes=2, ranks_per_node=8, gpus_per_node=8, cpus_per_rank=4,
                         launcher="slurm")
    proc = _execute(cmd, fake, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "srun --kill-on-bad-exit=1 --nodes 2 --ntasks-per-node 1 --cpus-per-task 32 --gres=gpu:8 sh -c" in proc.stderr
    assert "threads OMP=4 MKL=4" in proc.stderr  # each rank's pools at its 4 CPUs, through srun and torchrun
    assert proc.stdout.split("\n")[:14] == ["-m", "thinwire.torchrun", "--nnodes", "2", "--nproc_per_node", "8", "--node_rank", "1",
                                            "--master_addr", "gpu07", "--master_port", str(_job_port("job", 4242)), "-m",
                                            "thinwire"]
    assert proc.stdout.split("\n")[14:-1] == ["run", *ARGS, "--backend", "torch", "--device", "cuda", "--world-size",
                                              "16"]

    ds = _execute(launch_command("job", "deepspeed", ARGS, fake, nodes=2, ranks_per_node=4, gpus_per_node=4,
                                 launcher="slurm"), fake, tmp_path)
    assert ds.returncode == 0, ds.stderr
    out = ds.stdout.split("\n")
    assert out[out.index("--node_rank") + 1] == "1" and out[out.index("--master_addr") + 1] == "gpu07"
    assert out[out.index("--master_port") + 1] == str(_job_port("job", 4242))
    assert "--no_ssh" in out and out[out.index("--num_gpus") + 1] == "4"
    assert out[out.index("--module") + 1:out.index("--module") + 3] == ["thinwire", "run"]
    assert ds.stdout.endswith("gpu07 slots=4\ngpu08 slots=4\n")  # the hostfile of the allocation
    assert not list(tmp_path.glob("thinwire-*.hosts"))  # removed after the launcher exits

    mpi = _execute(launch_command("job", "mpi", ARGS, fake, nodes=2, ranks_per_node=4, launcher="slurm"),
                   fake, tmp_path)
    assert mpi.returncode == 0, mpi.stderr
    assert ("srun --kill-on-bad-exit=1 --nodes 2 --ntasks-per-node 4 --cpus-per-task 1 --mpi=pmi2 "
            "--export=ALL,MPIR_CVAR_PMI_VERSION=1") in mpi.stderr
    assert mpi.stdout.split("\n")[:-1] == ["run", *ARGS, "--backend", "mpi", "--world-size", "8"]
    # hydra: the batch script has no SLURM_NODELIST (the executor strips it): the hosts come from squeue
    hydra = _execute(launch_command("job", "mpi", ARGS, fake, nodes=2, ranks_per_node=4, launcher="slurm",
                                    mpi_launcher="mpiexec"), fake, tmp_path)
    assert hydra.returncode == 0, hydra.stderr
    assert hydra.stdout.split("\n")[:10] == ["-n", "8", "-ppn", "4", "-launcher", "slurm", "-hosts", "gpu07,gpu08",
                                             str(fake / "thinwire"), "run"]


def _sbatch(resources: dict) -> str:
    """The sbatch line snakemake-executor-plugin-slurm builds for a job with these resources."""
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    class Resources(dict):
        __getattr__ = dict.__getitem__

    job = SimpleNamespace(resources=Resources(resources), threads=1)
    params = {"run_uuid": "u", "slurm_logfile": "log", "comment_str": "c", "account": "", "partition": "",
              "workdir": "/w"}
    return get_submit_command(job, params) + set_gres_string(job)


def test_slurm_resources_become_the_intended_sbatch_options():
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install '.[cluster]'")
    # 4 nodes x 8 GPUs: one task per GPU, GPUs per node as gres, no per-GPU task geometry
    line = _sbatch(slurm_resources(4, 8, 8, 6, 200_000, 120))
    for option in ("--nodes=4", "--ntasks-per-node=8", "--cpus-per-task=6", "--gres=gpu:8", "--mem 200000", "-t 120"):
        assert option in line, (option, line)
    assert "--ntasks-per-gpu" not in line and "--ntasks=" not in line
    # one GPU per node: tasks in total, one per GPU (the plugin would otherwise read tasks as per GPU)
    line = _sbatch(slurm_resources(2, 1, 1, 4, None, 30))
    assert "--ntasks-per-gpu=1" in line and "--ntasks=2" in line and "--nodes=2" in line and "--gres=gpu:1" in line
    # CPU ranks
    line = _sbatch(slurm_resources(2, 8, 0, 1, 32_000, 60, "cpu"))
    assert "--ntasks-per-node=8" in line and "gres" not in line and "--nodes=2" in line


def _config(entry: dict, **top) -> dict:
    return {"runs": [{"name": "t", "mode": "real", "workload": "logreg", "methods": [{"method": "sgd"}], **entry}],
            **top}


@pytest.mark.parametrize("entry, top, message", [
    ({"backends": ["nccl"], "resources": {"nodes": 2, "gpus_per_node": 16}}, {"launcher": "slurm", "max_gpus_per_node": 8},
     "asks for 16 GPUs per node; the profile allows max_gpus_per_node=8"),
    ({"resources": {"nodes": 2}}, {}, "asks for 2 nodes: the local launcher runs on this machine"),
    ({"backends": ["nccl"]}, {"launcher": "slurm"}, "backend nccl needs GPUs"),
    ({"backends": ["nccl"], "resources": {"gpus_per_node": 1}, "world_size": 1}, {},
     "runs ask for 1 GPUs on this machine, which has 0 (NCCL requested without a GPU)"),
    ({"world_size": 4, "resources": {"nodes": 2, "gpus_per_node": 4}}, {"launcher": "slurm"},
     "world_size 4 is not resources.nodes 2 x ranks per node 4"),
    ({"resources": {"gpus_per_node": 4, "ranks_per_node": 2}}, {"launcher": "slurm"}, "one rank per GPU"),
    ({"backends": ["deepspeed"]}, {}, "deepspeed backend runs DeepSpeed's OnebitAdam"),
    ({"backends": ["deepspeed"], "methods": [{"method": "onebit-adam", "params": {"deepspeed_compat": True}}]}, {},
     "the deepspeed backend trains a torch-module workload (digits-mlp, digits-cnn), got logreg"),
    ({"backends": ["mpi"], "resources": {"nodes": 2, "gpus_per_node": 8}}, {"launcher": "slurm"},
     "backend mpi moves host (numpy) buffers"),
    ({"backends": ["gloo"], "resources": {"nodes": 2, "gpus_per_node": 8}}, {"launcher": "slurm"},
     "backend gloo runs CPU ranks, its ranks use no GPU"),
    ({"world_size": 1}, {"launcher": "slurm"}, "needs at least 2 ranks"),
    ({"mode": "sim", "resources": {"nodes": 2}}, {}, "simulator runs are one process on one node"),
])
def test_what_cannot_run_is_refused_before_any_job_starts(entry, top, message):
    if "GPU" in message and "which has" in message:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    with pytest.raises(ThinwireError, match=re.escape(message)):
        load(_config(entry, **top))


def test_a_backend_that_is_not_installed_is_named_with_its_fix(monkeypatch):
    import importlib.util
    from importlib import metadata

    real_find_spec, real_version = importlib.util.find_spec, metadata.version
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mpi4py" else real_find_spec(name, *a))
    with pytest.raises(ThinwireError, match=re.escape("backend mpi needs mpi4py: pip install '.[mpi]'")):
        load(_config({"backends": ["mpi"]}))

    def version(name):
        if name == "deepspeed":
            raise metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(metadata, "version", version)
    entry = {"backends": ["deepspeed"], "workload": "digits-mlp",
             "methods": [{"method": "onebit-adam", "params": {"deepspeed_compat": True, "freeze_step": 5}}]}
    with pytest.raises(ThinwireError, match="backend deepspeed needs DeepSpeed"):
        load(_config(entry))
    monkeypatch.setattr(metadata, "version", lambda name: "0.19.8" if name == "deepspeed" else real_version(name))
    with pytest.raises(ThinwireError, match="needs DeepSpeed <= 0.19.6"):
        load(_config(entry))


def test_world_size_follows_from_resources_and_mem_mb_is_all_or_nothing():
    _, runs = load(_config({"backends": ["nccl"], "resources": {"nodes": 4, "gpus_per_node": 8, "mem_mb": 64000}},
                           launcher="slurm"))
    r = runs[0]
    assert (r.world_size, r.nodes, r.ranks_per_node) == (32, 4, 8)
    assert r.resources("slurm")["mem_mb"] == 64000 and r.resources("local") == {}
    assert r.resources("slurm", run_timeout=600)["runtime"] == 15  # no runtime_min: the run's timeout + 5 min
    cfg = _config({"backends": ["gloo"], "resources": {"mem_mb": 8000}})
    cfg["runs"].append({**cfg["runs"][0], "name": "u", "resources": {}})
    with pytest.raises(ThinwireError, match="has no resources.mem_mb while other real runs do"):
        load(cfg)


def test_cuda_without_a_gpu_is_an_error_not_a_fallback():
    import torch

    from thinwire.execute import _device

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ThinwireError, match="torch sees no GPU"):
        _device("cuda")
    assert _device(None).type == "cpu" and _device("cpu").type == "cpu"


def _snakemake(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "snakemake"), *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}, check=False)


@pytest.mark.skipif(shutil.which("snakemake", path=str(BIN)) is None, reason="needs the workflow extra")
def test_the_slurm_profile_plans_every_paper_scale_job_without_a_cluster(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install '.[cluster]'")
    _, runs = load(ROOT / "config" / "paper.yaml")
    proc = _snakemake("-n", "--profile", "profiles/slurm", "--configfile", "config/paper.yaml",
                      "--directory", str(tmp_path), "--snakefile", str(ROOT / "Snakefile"))
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    out = proc.stdout + proc.stderr
    planned = re.findall(r"wildcards: run=(\S+)\n\s+resources: ([^\n]*)\nShell command: ([^\n]*)", out)
    by_run = {run: (res, cmd) for run, res, cmd in planned}
    assert set(by_run) == {r.id for r in runs}
    for r in runs:
        res, cmd = by_run[r.id]
        if r.mode == "real":
            assert f"nodes={r.nodes}" in res and "mpi=srun" in res
            assert cmd.startswith(f"env OMP_NUM_THREADS={r.cpus_per_rank} MKL_NUM_THREADS={r.cpus_per_rank} ")
            assert " timeout --foreground " in cmd
            assert "srun --kill-on-bad-exit=1" in cmd or r.backend == "mpi"
            if r.gpus_per_node:
                assert f"gres=gpu:{r.gpus_per_node}" in res
        assert "runtime=" in res


@pytest.mark.skipif(shutil.which("snakemake", path=str(BIN)) is None, reason="needs the workflow extra")
def test_the_local_profile_runs_the_quick_config_unchanged(tmp_path):
    plain = _snakemake("-n", "-p", "--cores", "2", "--directory", str(tmp_path), "--snakefile", str(ROOT / "Snakefile"))
    local = _snakemake("-n", "-p", "--profile", "profiles/local", "--cores", "2", "--directory", str(tmp_path),
                       "--snakefile", str(ROOT / "Snakefile"))
    assert plain.returncode == 0 and local.returncode == 0, local.stderr[-2000:]

    def commands(proc):
        return sorted(re.findall(r"Shell command: ([^\n]*)", proc.stdout + proc.stderr))

    assert commands(local) == commands(plain) and len(commands(plain)) > 100


@pytest.mark.skipif(shutil.which("snakemake", path=str(BIN)) is None, reason="needs the workflow extra")
def test_submitting_gpu_jobs_without_their_packages_stops_before_any_submission(tmp_path):
    """Planning works anywhere; submitting NCCL jobs from an installation without NCCL is refused before
    the first sbatch (a stand-in that records its calls)."""
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install '.[cluster]'")
    import torch.distributed as dist

    if dist.is_nccl_available():
        pytest.skip("this torch has NCCL")
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "sbatch-calls"
    for tool in ("sbatch", "srun", "sinfo", "sacct", "squeue"):
        (fake / tool).write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {calls}\nexit 1\n")
        (fake / tool).chmod(0o755)
    proc = subprocess.run([str(BIN / "snakemake"), "--profile", "profiles/slurm", "--configfile", "config/paper.yaml",
                           "--directory", str(tmp_path / "work"), "--snakefile", str(ROOT / "Snakefile")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "PATH": f"{fake}:{BIN}:{os.environ['PATH']}"})
    assert proc.returncode != 0
    assert "thinwire: error: backend nccl: this torch has no NCCL" in proc.stderr + proc.stdout
    assert not calls.exists() or "sbatch" not in calls.read_text()
    assert not (tmp_path / "work" / "results").exists()


def test_a_run_started_with_another_world_size_than_planned_stops_before_training(tmp_path):
    """What a launcher whose PMI does not match would do: start singletons instead of one job."""
    proc = subprocess.run([str(BIN / "thinwire"), "run", "sgd", "--workload", "lsq", "--steps", "3", "--quiet",
                           "--backend", "torch", "--device", "cpu", "--world-size", "2", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0
    assert "thinwire: error: this rank belongs to a job of 1 rank(s), 2 were planned" in proc.stderr
    assert not (tmp_path / "r").exists()
