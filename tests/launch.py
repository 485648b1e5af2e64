"""Helpers to run the `thinwire` command, alone or under torchrun / mpiexec, with a hard timeout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env,
                          check=False)


def thinwire(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return run([str(BIN / "thinwire"), *args], cwd, timeout)


def torchrun(nproc: int, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", str(nproc), "-m", "thinwire", *args],
               cwd, timeout, env={"OMP_NUM_THREADS": "1"})


def mpiexec(n: int, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return run([str(BIN / "mpiexec"), "-n", str(n), str(BIN / "thinwire"), *args], cwd, timeout)
