"""The `thinwire` command: listing, bad input, divergence, determinism."""

import json
import math

import pandas as pd
import pytest
from launch import thinwire


def test_list_prints_methods_problems_and_workloads(tmp_path):
    out = thinwire("list", cwd=tmp_path)
    assert out.returncode == 0
    lines = set(out.stdout.splitlines())
    assert {"method\tsgd", "method\ttopk-ef", "problem\tlogreg", "problem\tlsq", "workload\tdigits-mlp"} <= lines


def test_help_describes_the_commands(tmp_path):
    out = thinwire("--help", cwd=tmp_path)
    assert out.returncode == 0
    for word in ("list", "sim", "run", "model", "aggregate", "report", "torchrun", "mpiexec"):
        assert word in out.stdout


@pytest.mark.parametrize("args, message", [
    (["sim", "nope", "--workload", "logreg"], "unknown method 'nope'"),
    (["sim", "sgd", "--workload", "nope"], "unknown workload 'nope'"),
    (["sim", "topk-ef", "--workload", "logreg", "--param", "density=1.5"], "density must be in (0, 1]"),
    (["sim", "topk-ef", "--workload", "logreg", "--param", "density=0"], "density must be in (0, 1]"),
    (["sim", "topk-ef", "--workload", "logreg", "--param", "densty=0.1"], "no parameter 'densty'"),
    (["sim", "sgd", "--workload", "logreg", "--param", "lr=fast"], "'lr' must be float"),
    (["sim", "sgd", "--workload", "logreg", "--wparam", "dimm=3"], "no parameter 'dimm'"),
    (["sim", "sgd", "--workload", "logreg", "--dtype", "float16"], "dtype must be one of"),
    (["sim", "sgd", "--workload", "logreg", "--steps", "0"], "steps must be >= 1"),
    (["run", "nope", "--workload", "logreg"], "unknown method 'nope'"),
    (["run", "sgd", "--workload", "logreg", "--inject-failure", "x"], "--inject-failure takes"),
])
def test_bad_input_is_one_line_naming_the_problem(tmp_path, args, message):
    out = thinwire(*args, "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]  # one line, no traceback
    assert out.stderr.startswith("thinwire: error:") and message in out.stderr
    assert not (tmp_path / "run").exists()


def test_a_diverging_run_is_recorded_as_diverged(tmp_path):
    out = thinwire("sim", "sgd", "--workload", "lsq", "--param", "lr=50", "--steps", "200", "--quiet",
                   "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stderr
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["status"] == "diverged" and "loss became" in meta["message"]
    rows = (tmp_path / "run" / "trajectory.csv").read_text().splitlines()
    assert len(rows) - 1 == meta["steps_done"] < 200
    last_loss = float(rows[-1].split(",")[1])
    assert not math.isfinite(last_loss)


def test_simulator_runs_are_deterministic(tmp_path):
    args = ["sim", "topk-ef", "--workload", "logreg", "--steps", "30", "--workers", "3", "--seed", "5", "--quiet"]
    for name in ("a", "b"):
        assert thinwire(*args, "--out", str(tmp_path / name / "run"), cwd=tmp_path).returncode == 0
    for f in ("trajectory.csv", "commlog.csv", "params.npy", "meta.json"):
        assert (tmp_path / "a" / "run" / f).read_bytes() == (tmp_path / "b" / "run" / f).read_bytes(), f
    other = thinwire(*args[:-2], "6", "--quiet", "--out", str(tmp_path / "c" / "run"), cwd=tmp_path)
    assert other.returncode == 0
    assert (tmp_path / "c" / "run" / "trajectory.csv").read_bytes() != (tmp_path / "a" / "run" / "trajectory.csv").read_bytes()


def test_study_sizes_are_checked_and_used(tmp_path):
    from thinwire.cli import main

    out = tmp_path / "rate.csv"
    assert main(["study", "sign_rate", "--seeds", "1", "--horizons", "20", "40", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert sorted(table["rounds"].unique()) == [20, 40] and set(table["seed"]) == {0}
    for args, message in [(["sign_rate", "--draws", "5"], "takes --horizons, --seeds, not --draws"),
                          (["zo_rate", "--horizons", "100"], "needs at least 2 horizons"),
                          (["quantizers", "--draws", "0"], "must be positive"),
                          (["quantizers", "--draws", "2"], "draws must be >= 3")]:
        proc = thinwire("study", *args, "--out", str(tmp_path / "x.csv"), cwd=tmp_path)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
