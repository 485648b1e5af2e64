"""The Snakemake workflow end to end on a tiny runs sheet: dry run, report, no-op rerun, resume, bad config."""

import os
import signal
import subprocess
import time

import pandas as pd
import pytest
import yaml
from launch import BIN, ROOT, at_a_terminal, run

TINY = {
    "runs": [
        {"name": "t", "mode": "sim", "workload": "logreg", "workload_params": {"dim": 20}, "world_size": 2,
         "steps": 30, "dtype": "float64",
         "methods": [{"method": "sgd"}, {"method": "topk-ef", "params": {"density": 0.1}}]},
        {"name": "t", "mode": "real", "backends": ["gloo"], "workload": "logreg", "workload_params": {"dim": 20},
         "world_size": 2, "steps": 30, "dtype": "float64", "methods": [{"method": "sgd"}]},
        {"name": "boom", "mode": "sim", "workload": "lsq", "steps": 100,
         "methods": [{"method": "sgd", "params": {"lr": 50.0}}]},
    ],
    "model": {"clusters": ["this-machine"], "experiments": ["t"], "bandwidths_gbps": [1, 10]},
}


def snakemake(workdir, config, *args, timeout=300):
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return run([str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
                "--configfile", str(path), "--cores", "2", *args], workdir, timeout)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("wf")
    dry = snakemake(workdir, TINY, "-n")
    done = snakemake(workdir, TINY)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return workdir, dry


def test_dry_run_lists_every_job(finished):
    _, dry = finished
    assert dry.returncode == 0
    counts = dict(line.split()[:2] for line in dry.stdout.splitlines()
                  if line.split()[:1] and line.split()[0] in {"sim_run", "real_run", "model", "aggregate", "report"})
    assert counts == {"sim_run": "3", "real_run": "1", "model": "1", "aggregate": "1", "report": "1"}


def test_report_has_claims_figures_and_the_diverged_run(finished):
    workdir, _ = finished
    html = (workdir / "reports" / "index.html").read_text()
    claims = pd.read_csv(workdir / "reports" / "claims.csv")
    assert {"id", "verdict", "measured", "expected", "evidence"} <= set(claims.columns)
    assert claims.set_index("id").loc["TW-1", "verdict"] == "reproduced"
    assert claims.set_index("id").loc["TW-3", "verdict"] == "reproduced"  # sim vs gloo, same setup
    for name in ("loss_vs_step", "loss_vs_bytes", "model_speedup"):
        assert (workdir / "reports" / "figures" / f"{name}.png").stat().st_size > 1000
        assert f"figures/{name}.png" in html
    table = pd.read_csv(workdir / "results" / "table.csv")
    assert set(table["mode"]) == {"sim", "real", "model"}
    boom = table[table["run"] == "boom-sim-sgd-s0"]
    runs_html = (workdir / "reports" / "runs.html").read_text()
    assert (boom["status"] == "diverged").all() and '<tr class="diverged"><td class="run">boom-sim-sgd-s0' in runs_html
    # The front page: the summary figure, a page per paper, and the provenance the workflow recorded.
    assert (workdir / "reports" / "summary.png").stat().st_size > 1000 and '<img src="summary.png"' in html
    papers = sorted(p.stem for p in (workdir / "reports" / "papers").glob("*.html"))
    assert "foundation" in papers and all(f'href="papers/{p}.html"' in html for p in papers)
    assert str(workdir / "config.yaml") in html and "(this workflow invocation, start to report)" in html


def test_rerun_with_nothing_changed_does_nothing(finished):
    workdir, _ = finished
    again = snakemake(workdir, TINY)
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr


def test_changing_one_run_reruns_only_that_run(finished):
    workdir, _ = finished
    runs = workdir / "results" / "runs"
    before = {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/meta.json")}
    changed = {**TINY, "runs": [TINY["runs"][0], TINY["runs"][1], {**TINY["runs"][2], "steps": 90}]}
    redo = snakemake(workdir, changed)
    assert redo.returncode == 0, redo.stderr[-3000:]
    after = {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/meta.json")}
    assert {name for name in before if after[name] != before[name]} == {"boom-sim-sgd-s0"}


def test_bad_config_is_one_clear_error(tmp_path):
    bad = {**TINY, "runs": [{**TINY["runs"][0], "sedds": [1]}]}
    out = snakemake(tmp_path, bad, "-n")
    assert out.returncode != 0
    assert "thinwire: error: config.runs[0]: Additional properties are not allowed ('sedds' was unexpected)" \
        in out.stdout + out.stderr
    bad_param = {**TINY, "runs": [{**TINY["runs"][0], "methods": [{"method": "topk-ef", "params": {"density": 2}}]}]}
    out = snakemake(tmp_path, bad_param, "-n")
    assert out.returncode != 0 and "density must be in (0, 1]" in out.stdout + out.stderr


def test_interrupted_workflow_resumes_without_redoing_finished_runs(tmp_path):
    # Only the two runs are requested, so "1 of 2 steps" means the fast run is done and booked.
    config = {"runs": [
        {"name": "fast", "mode": "sim", "workload": "lsq", "workload_params": {"dim": 10}, "steps": 20,
         "methods": [{"method": "sgd"}]},
        {"name": "slow", "mode": "sim", "workload": "lsq", "workload_params": {"dim": 10}, "steps": 120000,
         "eval_every": 10000, "methods": [{"method": "sgd"}]},
    ]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    targets = [f"results/runs/{name}-sim-sgd-s0/meta.json" for name in ("fast", "slow")]
    cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(path), "--cores", "2", *targets]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    log = tmp_path / "snakemake.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(at_a_terminal(cmd), cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    fast = tmp_path / "results" / "runs" / "fast-sim-sgd-s0" / "meta.json"
    slow = tmp_path / "results" / "runs" / "slow-sim-sgd-s0" / "meta.json"
    deadline = time.monotonic() + 120
    # Interrupt once Snakemake itself has booked the fast run as done (its file appears a moment earlier).
    while "1 of 2 steps" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert fast.exists(), "the fast run never finished: " + log.read_text()[-2000:]
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does
    proc.wait(timeout=60)
    assert not slow.exists(), "the slow run finished before the interrupt; the test did not interrupt anything"
    assert not list((tmp_path / "results" / "runs").glob(".slow*")), "a partial run directory was left"
    finished_at = fast.stat().st_mtime_ns
    resumed = run(cmd + ["--rerun-incomplete"], tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert slow.exists() and fast.stat().st_mtime_ns == finished_at


def test_a_study_can_be_sized_in_the_config(tmp_path):
    """The full and paper configs lengthen the rate studies: the options reach `thinwire study`."""
    sized = {**TINY, "studies": [{"name": "zo_rate", "seeds": 2, "horizons": [800, 1600, 3200]},
                                 {"name": "quantizers", "draws": 50}, "sign_rate"]}
    dry = snakemake(tmp_path, sized, "-n", "-p")
    assert dry.returncode == 0, dry.stderr[-2000:]
    commands = [line for line in dry.stdout.splitlines() if "thinwire study" in line]
    assert any("study zo_rate --seeds 2 --horizons 800 1600 3200 --out" in c for c in commands), commands
    assert any("study quantizers --draws 50 --out" in c for c in commands)
    assert any("study sign_rate  --out" in c or "study sign_rate --out" in c for c in commands)
    twice = {**TINY, "studies": ["zo_rate", {"name": "zo_rate", "seeds": 5}]}
    out = snakemake(tmp_path, twice, "-n")
    assert out.returncode != 0 and "names a study twice" in out.stdout + out.stderr


def test_one_figure_by_name_and_an_unknown_one_named(finished):
    """`snakemake reports/figures/<name>.png` draws any registered figure, a generic or a paper's."""
    workdir, _ = finished
    target = workdir / "reports" / "figures" / "model_step_time.png"
    target.unlink()
    done = snakemake(workdir, TINY, "reports/figures/model_step_time.png")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert target.stat().st_size > 1000
    bad = snakemake(workdir, TINY, "reports/figures/no_such_figure.png")
    assert bad.returncode != 0 and "no figure named no_such_figure" in bad.stdout + bad.stderr


def test_snakemakes_own_report_has_every_figure_by_paper_with_captions_from_the_claims(finished):
    """`snakemake --report report.zip`: the report job's figures and tables, a category per paper, each
    evidence figure captioned with its claims (workflow/report/figure.rst)."""
    import zipfile

    workdir, _ = finished
    out = snakemake(workdir, TINY, "--report", "report.zip")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    with zipfile.ZipFile(workdir / "report.zip") as z:
        names = z.namelist()
        html = next(z.read(n).decode() for n in names if n.endswith("report.html"))
    drawn = {p.name for p in (workdir / "reports" / "figures").iterdir() if p.suffix in (".png", ".csv")}
    assert {"claim_ef_1.png", "claim_sdp4bit_loss.png", "loss_vs_step.png"} <= drawn
    for name in drawn:  # every figure and table the report job drew is in the zip
        assert any(n.endswith("/" + name) for n in names), name
    for paper in ("foundation", "sdp4bit", "dgc", "all papers"):
        assert f'"{paper}": {{' in html, paper
    assert "<strong>EF-1</strong>" in html and "The evidence of SDP-P3-qW, SDP-P3-qWD, SDP-P3-HS, SDP-P2" in html


def test_one_evidence_figure_by_name(finished):
    workdir, _ = finished
    target = workdir / "reports" / "figures" / "claim_tw_1.png"
    target.unlink()
    done = snakemake(workdir, TINY, "reports/figures/claim_tw_1.png")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert target.stat().st_size > 1000
