"""Faults on every backend (gloo, MPI, DeepSpeed), 2 real ranks each, started by the workflow's own launch
command (thinwire/launch.py): a rank killed with SIGKILL or stopped with SIGSTOP ends the whole job with an
error and no results directory; NaN injected at step k is recorded as diverged at step k; Ctrl-C of the
workflow ends the real runs within seconds, and a rerun completes them.

Multi-process and slow (each launch imports torch on every rank): every run is tiny and uses a short
collective timeout, so a test's time is mostly start-up.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from launch import BIN, ROOT, at_a_terminal, launched

from thinwire.launch import launch_command, thread_env

pytestmark = pytest.mark.timeout(600)

TIMEOUT = 5  # seconds a collective may take
RUN = {"gloo": ["sgd", "--workload", "lsq", "--wparam", "dim=10"],
       "mpi": ["sgd", "--workload", "lsq", "--wparam", "dim=10"],
       "deepspeed": ["onebit-adam", "--workload", "digits-mlp", "--wparam", "hidden=16", "--param", "lr=0.001",
                     "--param", "freeze_step=5", "--param", "deepspeed_compat=true", "--busbw-mb", "0"]}
LAUNCHERS = ("torchrun", "mpiexec", "hydra", "deepspeed", "timeout")


def _needs(backend: str) -> None:
    if backend == "deepspeed":
        pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install '.[deepspeed]')")


def ranks(marker: str) -> dict[int, int]:
    """The live rank processes (rank -> pid) whose command line contains `marker`, launchers excluded."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            env = dict(kv.split(b"=", 1) for kv in (proc / "environ").read_bytes().split(b"\0") if b"=" in kv)
        except OSError:
            continue
        text = b" ".join(argv).decode(errors="replace")
        if marker not in text or state == "Z" or any(w in a.decode(errors="replace") for a in argv[:4]
                                                     for w in LAUNCHERS):
            continue
        if "thinwire" in text and " run " in f" {text} ":
            rank = env.get(b"RANK") or env.get(b"PMI_RANK")
            if rank is not None:
                found[int(rank)] = int(proc.name)
    return found


def wait_for(condition, seconds: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def start(backend: str, args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    cmd = launch_command(f"fault-{backend}", backend, args, BIN, ranks_per_node=2, run_timeout=300)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **thread_env(1), "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as sink:  # stdin not connected: mpiexec would forward the test's own to rank 0
        return subprocess.Popen(shlex.split(cmd), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=sink,
                                stderr=subprocess.STDOUT)


def steps_done(log: Path) -> int:
    """Steps rank 0 has finished, from its progress bar (tqdm's `n/total [`) in the launcher's log: rank 0
    finishes a step only after every rank has joined its collectives, so the whole job is past start-up."""
    counts = re.findall(r"(\d+)/\d+ \[", log.read_text(errors="replace"))
    return max(map(int, counts), default=0)


def diagnostics(log: Path, marker: str) -> str:
    """What a failure needs: each live rank's state (R running, S waiting, T stopped) and where it waits in
    the kernel, then the tail of the launcher's log, which holds every rank's stderr (merged)."""
    lines = []
    for rank, pid in sorted(ranks(marker).items()):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            wchan = Path(f"/proc/{pid}/wchan").read_text()
        except OSError:
            state = wchan = "gone"
        lines.append(f"rank {rank}: pid {pid}, state {state}, waiting in {wchan or '-'}")
    text = log.read_text(errors="replace").replace("\r", "\n")
    return "\n".join([*lines, "--- launcher log (every rank's stderr), last 40 lines:", *text.splitlines()[-40:]])


# A peer of a dead or stopped rank must leave at the collective timeout (--timeout); what follows is its
# own teardown and the launcher's (DeepSpeed's launcher waits up to 30 s for the stopped rank to take its
# SIGTERM, then kills it). The bound on the peers catches a collective that falls back to torch's default
# group timeout (30 min), as DeepSpeed's own groups did.
PEER_GRACE_S = 30


@pytest.mark.parametrize("backend, sig", [
    ("gloo", signal.SIGKILL), ("mpi", signal.SIGKILL), ("deepspeed", signal.SIGKILL),
    ("gloo", signal.SIGSTOP), ("mpi", signal.SIGSTOP), ("deepspeed", signal.SIGSTOP),
], ids=["gloo-kill-9", "mpi-kill-9", "deepspeed-kill-9", "gloo-stop", "mpi-stop", "deepspeed-stop"])
def test_a_killed_or_stopped_rank_ends_the_job(tmp_path, backend, sig):
    _needs(backend)
    out, log = tmp_path / "run", tmp_path / "launch.log"
    marker = str(out)
    proc = start(backend, [*RUN[backend], "--steps", "1000000", "--eval-every", "100000", "--timeout", str(TIMEOUT),
                           "--out", str(out)], tmp_path, log)
    try:
        # both ranks up and at least one step done: the signal lands in training, not in start-up
        assert wait_for(lambda: len(ranks(marker)) == 2 and steps_done(log) >= 1, 240), "the run never trained"
        live = ranks(marker)
        victim = live[1]
        os.kill(victim, sig)
        signalled = time.monotonic()
        assert wait_for(lambda: set(ranks(marker).values()) <= {victim}, TIMEOUT + PEER_GRACE_S), \
            f"the peers of the {sig.name} rank outlived --timeout {TIMEOUT} by {PEER_GRACE_S} s"
        peers_took = time.monotonic() - signalled
        proc.wait(timeout=TIMEOUT + 90)
        assert wait_for(lambda: not ranks(marker), 30), f"ranks left: {ranks(marker)}"
        took = time.monotonic() - signalled
        assert proc.returncode != 0
        assert not out.exists()
        text = log.read_text(errors="replace")
        assert "Traceback" not in text  # the peers' one-line CollectiveError, not a stack
        if backend == "gloo":  # thinwire.torchrun: one line for the failed rank, no ChildFailedError block
            assert "ChildFailedError" not in text and "thinwire.torchrun: rank " in text
    except BaseException:
        print(diagnostics(log, marker))
        raise
    finally:
        for pid in ranks(marker).values():
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"{backend} {sig.name}: peers gone {peers_took:.2f} s, job ended {took:.2f} s after the signal")


@pytest.mark.parametrize("backend", ["gloo", "mpi", "deepspeed"])
def test_nan_at_step_k_is_recorded_as_diverged_on_every_rank(tmp_path, backend):
    _needs(backend)
    out = tmp_path / "run"
    proc = launched(backend, 2, [*RUN[backend], "--steps", "20", "--eval-every", "10", "--quiet",
                                 "--timeout", "30", "--inject-failure", "1:6:nan", "--out", str(out)], cwd=tmp_path,
                    timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "diverged" and meta["steps_done"] == 7
    assert meta["message"] == "loss became nan at step 6"
    rows = (out / "trajectory.csv").read_text().splitlines()
    assert len(rows) == 1 + 7 and rows[-1].split(",")[1] == "nan"

# Steps for a run of several seconds on an idle machine (gloo 4,000 steps took 11 s once, 2-3 s on an idle machine
# on 2026-12-05, so 20,000; MPI 40,000 steps 4.5 s), so the interrupt lands mid-run, and the rerun stays short.
SHEET = {"gloo": ("sgd", "lsq", {"dim": 10}, {}, 20000), "mpi": ("sgd", "lsq", {"dim": 10}, {}, 80000),
         "deepspeed": ("onebit-adam", "digits-mlp", {"hidden": 16},
                       {"lr": 0.001, "freeze_step": 5, "deepspeed_compat": True}, 300)}


@pytest.mark.skipif(not (BIN / "snakemake").exists(), reason="needs the workflow extra")
@pytest.mark.parametrize("backend", ["gloo", "mpi", "deepspeed"])
def test_ctrl_c_of_the_workflow_ends_real_runs_within_seconds_and_a_rerun_completes_them(tmp_path, backend):
    _needs(backend)
    method, workload, wparams, params, steps = SHEET[backend]
    sheet = {"runs": [{"name": f"cc{backend}", "mode": "real", "backends": [backend], "world_size": 2,
                       "steps": steps, "eval_every": 1000, "workload": workload, "workload_params": wparams,
                       "methods": [{"method": method, "params": params}]}], "collective_timeout_s": 30}
    path = tmp_path / "sheet.yaml"
    path.write_text(yaml.safe_dump(sheet))
    meta = tmp_path / f"results/runs/cc{backend}-real-{backend}-{method}-s0/meta.json"
    cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--configfile",
           str(path), "--cores", "2", str(meta.relative_to(tmp_path))]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    log = tmp_path / "snakemake.log"
    marker = f"cc{backend}-real-"
    with open(log, "w") as sink:
        proc = subprocess.Popen(at_a_terminal(cmd), cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own process group, as a terminal's job
    try:
        assert wait_for(lambda: len(ranks(marker)) == 2, 240), log.read_text()[-3000:]
        time.sleep(1)  # both ranks started; SIGINT must reach them wherever they are
        assert len(ranks(marker)) == 2 and not meta.exists(), "the run ended before the interrupt: make it longer"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does
        interrupted = time.monotonic()
        assert wait_for(lambda: not ranks(marker), 10), f"ranks still running 10 s after Ctrl-C: {ranks(marker)}"
        took = time.monotonic() - interrupted
        proc.wait(timeout=60)
    finally:
        for pid in ranks(marker).values():
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    print(f"Ctrl-C: the {backend} ranks were gone {took:.2f} s after the interrupt")
    assert not meta.exists() and not list(tmp_path.glob("results/runs/.*"))  # nothing finished, nothing partial
    resumed = subprocess.run([*cmd, "--rerun-incomplete"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=500, check=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(meta.read_text())["status"] == "ok"
