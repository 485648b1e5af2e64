"""Helpers to run the `thinwire` command, alone or under torchrun / mpiexec, with a hard timeout, and the
cross-mode contract every method must meet (simulator = gloo = MPI, bytes = stated bits)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from thinwire.launch import THREAD_VARS, thread_env

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def at_a_terminal(cmd: list[str]) -> list[str]:
    """cmd, started with SIGINT at its default, as a job started at a terminal, for the tests that Ctrl-C
    it. A shell's background job (`make test &`, some CI runners) starts with SIGINT ignored, which every
    child inherits across exec, so without this the interrupt tests would interrupt nothing there."""
    reset = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", reset, *cmd]


def run(cmd: list[str], cwd: Path, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env,
                          check=False)


def thinwire(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return run([str(BIN / "thinwire"), *args], cwd, timeout)


def torchrun(nproc: int, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", str(nproc), "-m", "thinwire", *args],
               cwd, timeout, env=thread_env(1))


def mpiexec(n: int, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return run([str(BIN / "mpiexec"), "-n", str(n), str(BIN / "thinwire"), *args], cwd, timeout)


class RunFiles(NamedTuple):
    trajectory: pd.DataFrame
    commlog: pd.DataFrame
    params: np.ndarray
    meta: dict
    trace: pd.DataFrame | None  # the method's per-step scalars, if it records any


def read_run(d: Path) -> RunFiles:
    trace = pd.read_csv(d / "trace.csv") if (d / "trace.csv").exists() else None
    return RunFiles(pd.read_csv(d / "trajectory.csv"), pd.read_csv(d / "commlog.csv"), np.load(d / "params.npy"),
                    json.loads((d / "meta.json").read_text()), trace)


def launched(backend: str, nproc: int, args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """`thinwire run <args>` on nproc local ranks, started by the command the workflow uses (thinwire/launch.py),
    from the environment Snakemake gives that command's job (every thread-count variable at its threads,
    one per rank)."""
    from thinwire.launch import launch_command, thread_env

    cmd = launch_command(f"test-{backend}", backend, args, BIN, ranks_per_node=nproc, run_timeout=timeout)
    return run(shlex.split(cmd), cwd, timeout + 10, env=thread_env(nproc))


ONE_THREAD = " ".join(f"{k}=1" for k in THREAD_VARS)  # what a rank of one core records in its env


def method_log(run: RunFiles) -> pd.DataFrame:
    """The method's own collectives (real ranks also all-reduce losses for logging: "metrics")."""
    return run.commlog.query("category == 'method'").reset_index(drop=True)


def assert_bytes_are_stated_bits(sim: RunFiles) -> None:
    """Every step's logged method bytes, in bits per parameter, equal the method's stated bits."""
    steps = sim.trajectory["step"]
    per_step = method_log(sim).groupby("step")["sent"].sum().reindex(steps, fill_value=0)
    assert (per_step.to_numpy() * 8 / sim.meta["n_params"] == sim.trajectory["stated_bits"].to_numpy()).all()


def assert_same_run(sim: RunFiles, run: RunFiles, backend: str, tol: float = 1e-6, trace_tol: float = 1e-9) -> None:
    """The conformance contract across modes: real ranks give the simulator's losses, objective and final
    model (to `tol`), the same method traffic call by call, the same stated bits, the same per-step
    trace (to `trace_tol`) and the same workload data."""
    assert run.meta["mode"] == "real" and run.meta["backend"] == backend
    assert run.meta["world_size"] == sim.meta["world_size"] and len(run.trajectory) == len(sim.trajectory)
    assert np.abs(run.trajectory["loss"] - sim.trajectory["loss"]).max() <= tol
    assert np.abs(run.trajectory["eval_loss"] - sim.trajectory["eval_loss"]).max() <= tol
    assert np.abs(run.params - sim.params).max() <= tol
    pd.testing.assert_frame_equal(method_log(run), method_log(sim))
    assert (run.trajectory["stated_bits"] == sim.trajectory["stated_bits"]).all()
    assert (run.trace is None) == (sim.trace is None)
    if sim.trace is not None:
        pd.testing.assert_frame_equal(run.trace[["step", "name"]], sim.trace[["step", "name"]])
        assert (run.trace["value"] - sim.trace["value"]).abs().max() <= trace_tol
    assert run.meta["workload_provenance"] == sim.meta["workload_provenance"]


def call(argv: list[str], capsys) -> tuple[int, str]:
    """`thinwire argv` in this process: (exit code, stderr); cheap enough for tables of bad inputs."""
    from thinwire.cli import main

    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err
