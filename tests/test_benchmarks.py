"""Every script in benchmarks/ runs in its --quick mode and prints its table, so none rots unnoticed
(issue 15: bench_simulator.py crashed for weeks because nothing ran it). No timing is asserted."""

from __future__ import annotations

import subprocess
import sys

import pytest
from launch import ROOT

# Each script, and a line of the table it must print (its header), so a script that exits 0 early fails.
SCRIPTS = {
    "bench_compressors.py": "orq unpack + decompress, torch",
    "bench_onebit_allreduce.py": "thinwire/DeepSpeed",
    "bench_sdp4bit.py": "Hadamard share of Hadamard + Q8,128",
    "bench_perfmodel.py": "end to end",
    "bench_simulator.py": "loop/vectorised",
    "bench_simulator_large.py": "step/floor",
}


def test_every_benchmark_is_covered():
    assert sorted(p.name for p in (ROOT / "benchmarks").glob("bench_*.py")) == sorted(SCRIPTS)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_benchmark_runs_quick_and_prints_its_table(script):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick"], capture_output=True,
                          text=True, timeout=240, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert SCRIPTS[script] in done.stdout, done.stdout[-3000:]
