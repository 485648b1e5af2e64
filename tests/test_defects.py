"""The defects of issue 21, one test each (the multi-process ones, Ctrl-C and NaN on every backend, are in
test_faults.py, except a failed 2-rank torchrun job here). Most run the CLI in this process: main(argv)
with its exit code and stderr."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from launch import BIN, ROOT, call, run
from thinwire.algorithms.comm import ThinwireError

from thinwire.cli import main


def one_line_error(code: int, err: str, *words: str) -> None:
    assert code != 0, err
    assert err.startswith("thinwire: error:") and err.strip().count("\n") == 0, err
    for w in words:
        assert w in err, (w, err)


SIM = ["sim", "sgd", "--workload", "lsq", "--wparam", "dim=8", "--steps", "3", "--quiet"]


@pytest.fixture(scope="module")
def a_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "sgd-run"
    assert main([*SIM, "--out", str(out)]) == 0
    return out


# 1. --out never deletes what is not this run's directory; --force replaces a finished run.
def test_out_refuses_a_folder_of_other_things(tmp_path, capsys):
    results = tmp_path / "results"
    (results / "runs" / "other").mkdir(parents=True)
    (results / "notes.txt").write_text("mine")
    code, err = call([*SIM, "--out", str(results)], capsys)
    one_line_error(code, err, "--out", "not a thinwire run directory")
    assert (results / "notes.txt").read_text() == "mine" and (results / "runs" / "other").is_dir()


def test_out_dot_deletes_nothing(tmp_path, capsys, monkeypatch):
    (tmp_path / "keep.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    code, err = call([*SIM, "--out", "."], capsys)
    one_line_error(code, err, "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_a_finished_run_is_replaced_only_with_force(tmp_path, capsys):
    out = tmp_path / "r"
    assert call([*SIM, "--out", str(out)], capsys)[0] == 0
    first = (out / "meta.json").stat().st_mtime_ns
    code, err = call([*SIM, "--out", str(out)], capsys)
    one_line_error(code, err, "--force")
    assert (out / "meta.json").stat().st_mtime_ns == first
    assert call([*SIM, "--out", str(out), "--force"], capsys)[0] == 0
    assert (out / "meta.json").stat().st_mtime_ns != first
    other = tmp_path / "s"
    other.mkdir()
    (other / "meta.json").write_text(json.dumps({"run": "someone-else"}))
    one_line_error(*call([*SIM, "--out", str(other), "--force"], capsys), "another run")
    assert json.loads((other / "meta.json").read_text()) == {"run": "someone-else"}


# 2. A runs sheet without `runs:` is refused, not replaced by the quick config.
@pytest.mark.skipif(not (BIN / "snakemake").exists(), reason="needs the workflow extra")
def test_a_sheet_without_runs_is_refused(tmp_path):
    sheet = tmp_path / "sheet.yaml"
    sheet.write_text(yaml.safe_dump({"results": "res", "reports": "rep"}))
    proc = run([str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                "--configfile", str(sheet), "--cores", "1", "-n"], tmp_path, 300)
    assert proc.returncode != 0
    assert "thinwire: error: config: 'runs' is a required property" in proc.stdout + proc.stderr


# 4. Impossible clusters are refused with the key's name.
@pytest.mark.parametrize("change, words", [
    ({"tiers": {"intra": {"bandwidth_gbps": 5, "latency_us": 1}, "inter": {"bandwidth_gbps": -1, "latency_us": 1}}},
     ["tiers.inter.bandwidth_gbps", "> 0"]),
    ({"tiers": {"intra": {"bandwidth_gbps": 0, "latency_us": 1}, "inter": {"bandwidth_gbps": 1, "latency_us": 1}}},
     ["tiers.intra.bandwidth_gbps", "> 0"]),
    ({"tiers": {"intra": {"bandwidth_gbps": "fast", "latency_us": 1},
                "inter": {"bandwidth_gbps": 1, "latency_us": 1}}}, ["tiers.intra.bandwidth_gbps", "number"]),
    ({"nodes": 0}, ["nodes", ">= 1"]),
    ({"sustained_tflops": -3}, ["sustained_tflops", "> 0"]),
])
def test_impossible_clusters_are_refused(a_run, tmp_path, capsys, change, words):
    cluster = {**yaml.safe_load((ROOT / "simulators" / "clusters" / "this-machine.yaml").read_text()), **change}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cluster))
    code, err = call(["model", str(a_run), "--cluster", str(path), "--out", str(tmp_path / "m.csv")], capsys)
    one_line_error(code, err, str(path), *words)
    assert not (tmp_path / "m.csv").exists()


def test_negative_target_parameters_are_refused(a_run, tmp_path, capsys):
    code, err = call(["model", str(a_run), "--cluster", str(ROOT / "simulators" / "clusters" / "this-machine.yaml"),
                      "--target-params", "-5", "--out", str(tmp_path / "m.csv")], capsys)
    one_line_error(code, err, "--target-params", "> 0")


# 5. An unwritable output is found before training; `model` on a folder that is not a run says so.
@pytest.mark.parametrize("where", ["/proc/thinwire-run", "FILE/run"])
def test_an_unwritable_out_fails_before_training(tmp_path, capsys, monkeypatch, where):
    import thinwire.execute

    def no_training(*a, **k):
        raise AssertionError("trained before finding that the output cannot be written")

    monkeypatch.setattr(thinwire.execute, "train", no_training)
    (tmp_path / "FILE").write_text("a file, not a folder")
    out = where.replace("FILE", str(tmp_path / "FILE"))
    code, err = call([*SIM, "--out", out], capsys)
    one_line_error(code, err, "--out", "cannot be written")


def test_model_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    code, err = call(["model", str(tmp_path), "--cluster", str(ROOT / "simulators" / "clusters" / "this-machine.yaml"),
                      "--out", str(tmp_path / "m.csv")], capsys)
    one_line_error(code, err, "not a thinwire run directory")


# 6. --timeout must be positive (0 gave a C++ trace).
@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_timeout_is_checked(tmp_path, capsys, value):
    code, err = call(["run", "sgd", "--workload", "lsq", "--timeout", value, "--out", str(tmp_path / "r")], capsys)
    one_line_error(code, err, "--timeout")
    assert not (tmp_path / "r").exists()


# 7. lr=inf and weight_decay=nan are refused, on the command line and in a runs sheet.
@pytest.mark.parametrize("param", ["lr=inf", "lr=Infinity", "weight_decay=nan", "weight_decay=NaN"])
def test_non_finite_parameters_are_refused(tmp_path, capsys, param):
    method = "sgd" if param.startswith("lr") else "local-adamw"
    code, err = call(["sim", method, "--workload", "lsq", "--param", param, "--out", str(tmp_path / "r")], capsys)
    one_line_error(code, err, repr(param.split("=")[0]), "finite")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("lr", [float("inf"), "inf"])
def test_non_finite_parameters_are_refused_in_a_sheet(lr):
    from thinwire.config import load

    sheet = {"runs": [{"name": "t", "mode": "sim", "workload": "lsq", "methods": [{"method": "sgd",
                                                                                  "params": {"lr": lr}}]}]}
    with pytest.raises(ThinwireError, match="lr.*finite"):
        load(sheet)


# 8. The diverged message quotes the quantity that stopped being finite.
def test_diverged_message_names_what_diverged():
    from thinwire.runner import diverged

    assert diverged(0.6931, float("inf"), 0) == "eval_loss became inf at step 0"
    assert diverged(float("nan"), 0.5, 3) == "loss became nan at step 3"


# 9. sdp's world size against ranks_per_node is checked when the workflow plans; reading a sheet
# probes nothing (no torch).
def test_sdp_world_size_is_checked_when_planning():
    from thinwire.config import load, plan

    sheet = {"runs": [{"name": "t", "mode": "real", "world_size": 4, "workload": "lsq",
                       "methods": [{"method": "sdp", "params": {"ranks_per_node": 3}}]}]}
    config, runs = load(sheet)
    with pytest.raises(ThinwireError, match="world size 4 is not divisible into nodes of ranks_per_node=3"):
        plan(config, runs)


def test_reading_a_sheet_imports_no_torch():
    code = ("import sys; from thinwire.config import load; c, r = load(sys.argv[1]); "
            "assert len(r) > 100; assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT / "config" / "quick.yaml")], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


# 10. Run directories are as readable as the umask allows (mkdtemp made them 0700).
def test_run_directory_is_group_readable(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        assert call([*SIM, "--out", str(tmp_path / "r")], capsys)[0] == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r").stat().st_mode) == 0o755


# 11. Messages name the parameter.
@pytest.mark.parametrize("args, name", [
    (["--seed", "-1"], "seed"), (["--wparam", "dim=abc"], "'dim'"), (["--wparam", "dim=10.5"], "'dim'"),
])
def test_messages_name_the_parameter(tmp_path, capsys, args, name):
    code, err = call(["sim", "sgd", "--workload", "lsq", *args, "--out", str(tmp_path / "r")], capsys)
    one_line_error(code, err, name)


# 12. A runs sheet of random bytes is one line, not a traceback.
def test_a_sheet_of_random_bytes_is_one_line(tmp_path, capsys):
    sheet = tmp_path / "sheet.yaml"
    sheet.write_bytes(bytes(range(256)) * 4)
    one_line_error(*call(["check", str(sheet)], capsys), "not UTF-8")


# 12. ... and `make reproduce CONFIG=SHEET` checks the sheet before Snakemake reads it (Snakemake's own
# reading of a --configfile that is not text is its UnicodeDecodeError traceback: the README says so).
@pytest.mark.skipif(not (BIN / "snakemake").exists(), reason="needs the workflow extra")
def test_make_reproduce_checks_the_sheet_first(tmp_path):
    sheet = tmp_path / "sheet.yaml"
    sheet.write_bytes(bytes(range(256)) * 4)
    venv = BIN.parent
    # -o: never (re)install the venv from here; `make reproduce` must stop at the check, before Snakemake
    proc = run(["make", "-C", str(ROOT), "-o", f"{venv}/.installed", f"VENV={venv}", "reproduce",
                f"CONFIG={sheet}"], tmp_path, 120)
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if not line.startswith("make")]
    assert len(ours) == 1 and ours[0].startswith("thinwire: error:") and "not UTF-8" in ours[0], proc.stderr
    assert "snakemake" not in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / ".snakemake").exists() and not (ROOT / "results" / "sheet").exists()


def test_readme_checks_every_configfile_before_snakemake():
    lines = (ROOT / "README.md").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("snakemake") and "--configfile" in line:
            sheet = line.split("--configfile", 1)[1].split()[0]
            assert any(f"thinwire check {sheet}" in earlier for earlier in lines[max(0, i - 3):i]), line
    assert "UnicodeDecodeError" in "\n".join(lines)


# 12. A failed torchrun job ends with one line per failed rank (thinwire/torchrun.py), its own error included,
# not torch's ChildFailedError traceback: a rank that dies (exit 17 at step 3), ranks that refuse their input.
@pytest.mark.parametrize("args, words", [
    (["--wparam", "dim=10", "--inject-failure", "1:3:exit"], ["rank 1 ", "exited with code 17"]),
    (["--wparam", "dim=abc"], ["exited with code 2: thinwire: error:", "dim"]),
], ids=["rank-dies", "bad-input"])
def test_a_failed_torchrun_job_is_one_line_per_failed_rank(tmp_path, args, words):
    from launch import launched

    out = tmp_path / "run"
    proc = launched("gloo", 2, ["sgd", "--workload", "lsq", *args, "--steps", "50", "--quiet", "--timeout", "30",
                                "--out", str(out)], cwd=tmp_path, timeout=240)
    assert proc.returncode != 0 and not out.exists()
    text = proc.stdout + proc.stderr
    assert "ChildFailedError" not in text and "Traceback" not in text, text[-3000:]
    failed = [line for line in proc.stderr.splitlines() if line.startswith("thinwire.torchrun: rank ")]
    assert failed and len(failed) == len({line.split()[2] for line in failed}) <= 2, proc.stderr[-3000:]
    assert any(all(w in line for w in words) for line in failed), failed


# 13. --inject-failure takes nan (the runs themselves are in test_faults.py).
def test_inject_failure_takes_nan():
    from thinwire.execute import _failure

    fail = _failure("1:4:nan")
    assert fail(1, 4) and not fail(0, 4) and not fail(1, 3)


# 14. No dense baseline among the runs: say so instead of an empty break-even summary.
def test_model_without_a_baseline_says_so(a_run, tmp_path, capsys):
    cluster = str(ROOT / "simulators" / "clusters" / "this-machine.yaml")
    code, err = call(["model", str(a_run), "--cluster", cluster, "--baseline", "adam", "--speedup", "2",
                      "--summary", str(tmp_path / "s.csv"), "--out", str(tmp_path / "m.csv")], capsys)
    one_line_error(code, err, "--baseline adam", "no run")
    assert not (tmp_path / "s.csv").exists()
    assert call(["model", str(a_run), "--cluster", cluster, "--speedup", "2", "--summary", str(tmp_path / "s.csv"),
                 "--out", str(tmp_path / "m.csv")], capsys)[0] == 0  # sgd is its own baseline


def test_readme_model_example_includes_a_baseline():
    readme = (ROOT / "README.md").read_text()
    example = readme[readme.index("thinwire model results/runs/"):].split("\n\n")[0]
    assert "sim-sgd-" in example.split("--cluster")[0]
