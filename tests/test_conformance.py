"""Conformance of every registered method, automatically: on its tiny problem (and in each extra case of
tests/conformance.py), the simulator, gloo and MPI (2 ranks, float64) follow the same trajectory and log
the same calls, and every step's bytes are the method's stated bits. A new method is covered by being
registered; one that cannot run in a mode says why in `unsupported_modes`, reported here as a skip.

All the cases run in one torchrun job and one mpiexec job (tests/conformance_script.py); only the cases
of the tests pytest selected run (`pytest tests/test_conformance.py -k topk` launches topk-ef's alone).
"""

import json
from pathlib import Path
from typing import NamedTuple

import pytest
from conformance import WORKERS, case_logs, cases, run_batch, sim_run
from launch import ONE_THREAD, assert_bytes_are_stated_bits, assert_same_run, launched, read_run
from thinwire.algorithms.registry import MODES, get_method, method_names

# One fixture runs every case in every mode (the per-method modules it replaces had 300 s each).
pytestmark = pytest.mark.timeout(600)
CASES = cases()
REAL = [m for m in MODES if m != "sim"]


def unsupported(case: str, mode: str) -> str | None:
    return get_method(CASES[case].method).unsupported_modes.get(mode)


class Runs(NamedTuple):
    root: Path
    files: dict  # {case: {mode: RunFiles, or None where the case wrote no results}}
    logs: dict  # {(case, mode): what the launch printed on stderr while running the case}


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory) -> Runs:
    """The cases of the selected tests, in the simulator here and in one launch per real mode."""
    root = tmp_path_factory.mktemp("conformance")
    wanted = sorted({item.callspec.params["case"] for item in request.session.items
                     if item.module is request.module and hasattr(item, "callspec") and "case" in item.callspec.params})
    files = {name: {"sim": sim_run(CASES[name], root / name / "sim")} for name in wanted}
    logs = {}
    for mode in REAL:
        jobs = {name: CASES[name] for name in wanted if unsupported(name, mode) is None}
        proc = run_batch(mode, jobs, {name: root / name / mode for name in jobs}, root) if jobs else None
        per_case = case_logs(proc.stderr, list(jobs)) if proc else {}
        for name in wanted:
            d = root / name / mode
            files[name][mode] = read_run(d) if d.exists() else None
            logs[name, mode] = per_case.get(name, "")
    return Runs(root, files, logs)


def test_every_method_declares_why_it_skips_a_mode():
    for name in method_names():
        reasons = get_method(name).unsupported_modes
        assert set(reasons) <= set(MODES) - {"sim"}, (name, reasons)  # the simulator is the reference
        assert all(isinstance(r, str) and r.strip() for r in reasons.values()), (name, reasons)


@pytest.mark.parametrize("case", list(CASES))
def test_logged_bytes_equal_stated_bits(runs, case):
    sim = runs.files[case]["sim"]
    assert_bytes_are_stated_bits(sim)
    assert sim.meta["world_size"] == WORKERS and sim.meta["status"] == "ok"
    assert sim.trajectory["eval_loss"].iloc[-1] < sim.trajectory["eval_loss"].iloc[0]  # it trained


@pytest.mark.parametrize("mode", REAL)
@pytest.mark.parametrize("case", list(CASES))
def test_real_ranks_follow_the_simulator(runs, case, mode):
    reason = unsupported(case, mode)
    if reason is not None:
        pytest.skip(f"{CASES[case].method} does not run under {mode}: {reason}")
    run = runs.files[case][mode]
    assert run is not None, f"case {case} wrote no results under {mode}:\n{runs.logs[case, mode]}"
    assert_same_run(runs.files[case]["sim"], run, mode)


@pytest.mark.parametrize("case", ["topk-ef"])
def test_real_runs_are_deterministic_and_record_where_they_ran(runs, case):
    """Run the case again alone, with the workflow's launch command, a bus-bandwidth measurement (the GPU
    default, asked for on gloo here) and a cluster name: the same results, and the fingerprint says
    where and how fast the all-reduce was."""
    root = runs.root
    again = launched("gloo", WORKERS, [case, *CASES[case].args, "--quiet", "--timeout", "30", "--busbw-mb", "1",
                                       "--cluster-name", "testbed", "--out", str(root / "again" / "gloo")], cwd=root)
    assert again.returncode == 0, again.stderr[-2000:]
    for name in ("trajectory.csv", "commlog.csv", "params.npy"):
        assert (root / "again" / "gloo" / name).read_bytes() == (root / case / "gloo" / name).read_bytes(), name
    first, second = (json.loads((root / d / "gloo" / "meta.json").read_text()) for d in (case, "again"))
    assert first["env"]["cluster"].startswith("local:") and second["env"]["cluster"] == "testbed"
    assert float(second["env"]["allreduce_busbw_gbps"]) > 0 and "allreduce_busbw_gbps" not in first["env"]
    assert int(second["env"]["allreduce_bytes"]) == 2**20
    assert "gpu" not in second["env"]  # no GPU here: no GPU fingerprint
    # launched from a job's environment of 2 threads (Snakemake's), each rank's pools were set to its 1 core
    assert second["env"]["threads"] == ONE_THREAD
    drop = ("env",)
    assert {k: v for k, v in first.items() if k not in drop} == {k: v for k, v in second.items() if k not in drop}
