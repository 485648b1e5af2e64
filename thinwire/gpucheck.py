"""The prepared device check: one command that exercises thinwire's GPU paths and runs the claims that
need scale on one GPU, in at most 8 minutes, and packs everything into ONE archive.

    python -m thinwire.gpucheck                 # on the GPU machine: archive into $OUT (else results/gpu-check)
    python -m thinwire.gpucheck --dry           # on a CPU, tiny sizes (< 2 min): what CI runs
    make gpu-check [DRY=1]                      # the same through make (README, "GPU check")

Parts, each under a timeout inside one overall budget (--budget-s, default 480 s; what a part does not
finish in its time is recorded as timed out, never waited for):

  tests   pytest -m gpu tests/test_gpu.py with THINWIRE_TEST_DEVICE set to the device: every registered
          method's step on device tensors against numpy, TorchComm at world size 1 (NCCL on CUDA, gloo on
          the CPU) with the bus bandwidth probe, the device fingerprint, a text-gpt simulator run on the
          device against the CPU, DeepSpeed's own OnebitAdam on the GPU against thinwire's (CUDA only);
  bench   benchmarks/bench_compressors.py and bench_simulator_large.py with --device: codec and simulator
          step times as ratios to a copy on the same device (--quick in dry mode);
  scale   config/gpu.yaml's `device` sheet (`dry` with --dry): the scale-limited claims' experiments in the
          batched simulator (all workers as the leading axis of torch arrays on the device), several runs
          at a time (--jobs), seed 0 of every arm first, so a budget that runs out leaves whole seeds.

The archive (gpu-check-<date>-<commit>.tar.gz) holds manifest.json (ran_on: the GPU's name, date, commit,
wall time and status per part, each experiment's steps x parameters against the quick sheet's), the
tests' log and junit XML, the benchmarks' tables and runs/<run id>/ (thinwire's results directories).
The workflow imports it as a results source (config key `imported:`, workflow/rules/imported.smk).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHEET = ROOT / "config" / "gpu.yaml"
QUICK = ROOT / "config" / "quick.yaml"
COMMIT_FILE = ROOT / ".gpu" / "commit"  # written by `make gpu-wheels` here: the device copy has no .git
BUDGET_S = 480.0  # the 8 minutes on the device
PACK_RESERVE_S = 20.0  # kept back from the parts for packing the archive
PART_CAPS = {"tests": 150.0, "bench": 70.0}  # the rest of the budget goes to the scale runs
MIN_FACTOR = 30.0  # the device sheet's steps x parameters over the quick sheet's, per experiment
ARCHIVE_LIMIT = 16 * 2**20  # the device tool returns files of at most 16 MiB


# --- the sheets -------------------------------------------------------------------------------------------


def load_sheet(which: str, path: Path = SHEET) -> tuple[dict, list]:
    """One of config/gpu.yaml's two runs sheets ('device' or 'dry'), read and expanded as any runs sheet."""
    from thinwire.algorithms.comm import ThinwireError
    from thinwire.config import load, read

    sheets = read(path)
    if not isinstance(sheets, dict) or which not in sheets:
        raise ThinwireError(f"{path}: needs a mapping with runs sheets 'device' and 'dry', found no {which!r}")
    config, runs = load(sheets[which])
    if any(r.mode != "sim" for r in runs):
        raise ThinwireError(f"{path} ({which}): the device check runs simulator entries only (mode: sim)")
    return config, runs


def scale_factors(runs: list, quick: Path = QUICK) -> dict[str, dict[str, float]]:
    """Per experiment: steps, parameters, and steps x parameters over the quick sheet's same experiment."""
    from thinwire.config import load
    from thinwire.workloads.registry import make_workload

    _, quick_runs = load(quick)
    sizes: dict[str, int] = {}

    def n_params(r: Any) -> int:
        key = json.dumps([r.workload, r.world_size, r.workload_params], sort_keys=True)
        if key not in sizes:
            sizes[key] = make_workload(r.workload, r.world_size, 0, r.workload_params).n_params
        return sizes[key]

    out = {}
    for experiment in dict.fromkeys(r.experiment for r in runs):
        mine = next(r for r in runs if r.experiment == experiment)
        base = next((r for r in quick_runs if r.experiment == experiment), None)
        row = {"steps": mine.steps, "n_params": n_params(mine), "world_size": mine.world_size}
        if base is not None:
            row.update(quick_steps=base.steps, quick_n_params=n_params(base),
                       factor=mine.steps * row["n_params"] / (base.steps * n_params(base)))
        out[experiment] = row
    return out


# --- one run in the batched simulator on a device -----------------------------------------------------------


class _EvalOnDevice:
    """A workload whose held-out evaluation runs on the device (text workloads: their windows moved once);
    everything else is the workload's own."""

    def __init__(self, workload: Any, device: Any) -> None:
        import torch

        self._w, self._device = workload, device
        self._on = device.type != "cpu" and hasattr(workload, "eval_inputs") and hasattr(workload, "logits")
        if self._on:
            self._inputs = workload.eval_inputs.to(device)
            self._targets = workload.eval_targets.to(device)
        self._torch = torch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._w, name)

    def evaluate(self, x_mean: Any) -> tuple[float, float]:
        if not self._on:
            return self._w.evaluate(x_mean)
        torch = self._torch
        with torch.no_grad():  # TextWorkload.evaluate's loss and accuracy, on the device's copy of the windows
            logits = self._w.logits(torch.as_tensor(x_mean, device=self._device), self._inputs)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), self._targets.reshape(-1))
            return loss.item(), (logits.argmax(-1) == self._targets).double().mean().item()


def run_on_device(run: Any, out: Path, device: str, progress: bool = False) -> dict:
    """thinwire's simulator run (execute.run_sim) with every array on `device`: torch arrays, the oracle's
    data on the device, the held-out evaluation there too. Writes the run's results directory."""
    import numpy as np
    import torch

    from thinwire.algorithms.comm import ThinwireError
    from thinwire.execute import RunSpec, _meta, _namespace
    from thinwire.results import check_out, write_run
    from thinwire.runner import train
    from thinwire.simulators.simcomm import SimComm
    from thinwire.workloads.registry import make_workload

    spec = RunSpec(run.method, run.workload, run.steps, run.seed, run.dtype, dict(run.params),
                   dict(run.workload_params), run.eval_every, run.experiment, run.label)
    cls, config = spec.validate()
    try:
        getattr(config, "check_world", lambda world: None)(run.world_size)
    except ValueError as e:
        raise ThinwireError(f"method {spec.method!r}: {e}") from None
    check_out(out, False)
    dev = torch.device(device)
    workload = make_workload(spec.workload, run.world_size, spec.seed, spec.workload_params)
    method = cls(config, workload.layout)
    xp = _namespace("torch")
    comm = SimComm(run.world_size, xp)
    x = xp.asarray(np.broadcast_to(workload.x0(), (run.world_size, workload.n_params)).astype(spec.dtype), device=dev)
    traj = train(method, x, workload.oracle(xp, None, spec.dtype, dev), comm, _EvalOnDevice(workload, dev),
                 spec.steps, simulated=True, eval_every=spec.eval_every, progress=progress)
    meta = _meta(spec, out.name, "sim", "torch", run.world_size, method, workload, traj)
    meta["env"]["device"] = str(dev)
    write_run(out, meta, traj, comm.log, False)
    return meta


def _worker(args: argparse.Namespace) -> int:
    """A scale worker: the runs of a JSON list of run ids, one after another, each timed."""
    _, runs = load_sheet(args.sheet_name, args.sheet)
    by_id = {r.id: r for r in runs}
    for run_id in json.loads(args.worker):
        start = time.perf_counter()
        try:
            meta = run_on_device(by_id[run_id], args.runs_dir / run_id, args.device)
            status = meta["status"]
        except Exception as e:  # noqa: BLE001 -- one failing run is reported, the worker goes on with the next
            status = f"error: {type(e).__name__}: {' '.join(str(e).split())[:300]}"
        print(json.dumps({"run": run_id, "status": status, "wall_s": round(time.perf_counter() - start, 2)}),
              flush=True)
    return 0


# --- the parts -------------------------------------------------------------------------------------------


def _timed_subprocess(cmd: list[str], log: Path, timeout: float, env: dict | None = None) -> dict:
    start = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        if timeout <= 1:
            return {"status": "skipped: no budget left", "wall_s": 0.0}
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
            status = "ok" if rc == 0 else f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            _kill(proc)
            status = f"timed out after {timeout:.0f} s"
    return {"status": status, "wall_s": round(time.perf_counter() - start, 2)}


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, 9)  # its own session: the process and its children, nothing else
    except ProcessLookupError:
        pass
    proc.wait()


def _env(device: str) -> dict:
    env = dict(os.environ, THINWIRE_TEST_DEVICE=device, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.pop("THINWIRE_GPU_CHECK_E2E", None)
    return env


def part_tests(stage: Path, device: str, timeout: float) -> dict:
    junit = stage / "tests" / "junit.xml"
    res = _timed_subprocess([sys.executable, "-m", "pytest", "-m", "gpu", "tests/test_gpu.py", "-q", "-rs",
                             "-p", "no:cacheprovider", f"--junitxml={junit}"],
                            stage / "tests" / "log.txt", timeout, _env(device))
    if junit.exists():
        import xml.etree.ElementTree as ET

        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        tests, failures, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
        res.update(passed=tests - failures - errors - skipped, failed=failures + errors, skipped=skipped)
    return res


# Each benchmark's arguments on the device, and in dry mode (small sizes: the CPU's torch ORQ alone takes
# seconds per call at --quick's 200k values).
BENCHES = {"bench_simulator_large.py": ([], ["--quick"]),
           "bench_compressors.py": (["--repeats", "3"], ["--n", "50000", "--repeats", "1"])}


def part_bench(stage: Path, device: str, timeout: float, dry: bool) -> dict:
    deadline = time.monotonic() + timeout
    out: dict[str, Any] = {"status": "ok", "wall_s": 0.0}
    for script, (full, small) in BENCHES.items():
        cmd = [sys.executable, str(ROOT / "benchmarks" / script), "--device", device, *(small if dry else full)]
        res = _timed_subprocess(cmd, stage / "bench" / script.replace(".py", ".txt"), deadline - time.monotonic(),
                                _env(device))
        out[script] = res
        out["wall_s"] = round(out["wall_s"] + res["wall_s"], 2)
        if res["status"] != "ok":
            out["status"] = f"{script}: {res['status']}"
    return out


def _order(runs: list) -> list:
    """Seed 0 of every arm first, then seed 1, ...: a budget that runs out leaves whole seeds."""
    seeds = sorted({r.seed for r in runs})
    return [r for s in seeds for r in runs if r.seed == s]


def part_scale(stage: Path, device: str, timeout: float, jobs: int, sheet_name: str, sheet: Path) -> dict:
    start = time.perf_counter()
    _, runs = load_sheet(sheet_name, sheet)
    ordered = [r.id for r in _order(runs)]
    chunks = [ordered[i::jobs] for i in range(jobs) if ordered[i::jobs]]
    runs_dir = stage / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    logs = stage / "scale"
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    deadline = time.monotonic() + timeout
    for i, chunk in enumerate(chunks):
        cmd = [sys.executable, "-m", "thinwire.gpucheck", "--worker", json.dumps(chunk), "--device", device,
               "--runs-dir", str(runs_dir), "--sheet", str(sheet), "--sheet-name", sheet_name]
        f = (logs / f"worker{i}.log").open("w")
        procs.append((subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=_env(device),
                                       start_new_session=True), f))
    timed_out = False
    for proc, f in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill(proc)
            timed_out = True
        f.close()
    done = {}
    for log in sorted(logs.glob("worker*.log")):
        for line in log.read_text().splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                done[row["run"]] = row
    not_run = [i for i in ordered if i not in done]
    ok = [i for i, row in done.items() if row["status"] in ("ok", "diverged")]
    status = "ok" if len(ok) == len(ordered) else (
        f"timed out after {timeout:.0f} s: {len(not_run)} of {len(ordered)} runs unfinished" if timed_out
        else f"{len(ordered) - len(ok)} of {len(ordered)} runs failed")
    return {"status": status, "wall_s": round(time.perf_counter() - start, 2), "jobs": jobs,
            "runs_planned": len(ordered), "runs_done": len(ok), "runs": done, "unfinished": not_run}


# --- provenance and the archive ----------------------------------------------------------------------------


def commit() -> dict[str, Any]:
    """The commit the check ran: git here, else the .gpu/commit file `make gpu-wheels` wrote before the
    working tree travelled (the device's copy has no .git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=ROOT, capture_output=True, text=True, timeout=10)
        if head.returncode == 0 and head.stdout.strip():
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], check=False, cwd=ROOT,
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            return {"commit": head.stdout.strip(), "dirty": bool(dirty), "commit_from": "git"}
    except (OSError, subprocess.SubprocessError):
        pass
    if COMMIT_FILE.exists():
        recorded = json.loads(COMMIT_FILE.read_text())
        return {**recorded, "commit_from": str(COMMIT_FILE.relative_to(ROOT))}
    return {"commit": "unknown", "dirty": None, "commit_from": "none"}


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return "cpu"


def default_out() -> Path:
    return Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "results" / "gpu-check"


def archive_name(date: str, rev: str) -> str:
    return f"gpu-check-{date}-{rev[:7]}.tar.gz"


# Left out of the archive: the runs' final models (params.npy; nothing in the results table reads them), so
# that 48 runs' archive stays under the device tool's 16 MiB per returned file.
LEFT_OUT = ("params.npy",)


def _leave_out(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if Path(info.name).name in LEFT_OUT else info


def check(dry: bool, out: Path, budget_s: float, jobs: int, device: str | None = None,
          sheet: Path = SHEET, parts: tuple[str, ...] = ("tests", "bench", "scale")) -> Path:
    """Run the parts inside the budget and write the archive into `out`; returns its path."""
    import torch

    from thinwire.algorithms.comm import ThinwireError
    from thinwire.results import gpu_fingerprint

    t0 = time.monotonic()
    deadline = t0 + budget_s - PACK_RESERVE_S
    if device is None:
        device = "cpu" if dry else "cuda"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ThinwireError(f"device {device}: torch {torch.__version__} sees no GPU here; run with --dry on a CPU")
    sheet_name = "dry" if dry else "device"
    _, runs = load_sheet(sheet_name, sheet)  # a bad sheet fails before anything runs
    factors = scale_factors(runs)
    if not dry:
        low = {e: round(f.get("factor", 0), 1) for e, f in factors.items() if f.get("factor", 0) < MIN_FACTOR}
        if low:
            raise ThinwireError(f"{sheet} (device): below {MIN_FACTOR:g}x the quick sheet's steps x parameters: {low}")
    now = datetime.datetime.now(datetime.timezone.utc)
    rev = commit()
    manifest: dict[str, Any] = {
        "ran_on": device_name(device), "device": device, "dry": dry, "date": now.isoformat(timespec="seconds"),
        **rev, "budget_s": budget_s, "torch": torch.__version__, "fingerprint": gpu_fingerprint(),
        "host": os.uname().nodename, "cpus": os.cpu_count(), "sheet": f"{sheet.name}:{sheet_name}",
        "scale": factors, "parts": {}, "left_out": list(LEFT_OUT),
    }
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        stage = Path(tmp) / "gpu-check"
        stage.mkdir()
        for part in parts:
            left = deadline - time.monotonic()
            cap = min(PART_CAPS.get(part, left), left)
            print(f"gpu-check: {part} (up to {cap:.0f} s)", flush=True)
            if part == "tests":
                res = part_tests(stage, device, cap)
            elif part == "bench":
                res = part_bench(stage, device, cap, dry)
            else:
                res = part_scale(stage, device, cap, jobs, sheet_name, sheet)
            manifest["parts"][part] = res
            print(f"gpu-check: {part}: {res['status']} in {res['wall_s']:.1f} s", flush=True)
        manifest["total_wall_s"] = round(time.monotonic() - t0, 2)
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        for tmp_dir in (stage / "runs").glob(".*"):  # a run killed while writing its directory
            shutil.rmtree(tmp_dir, ignore_errors=True)
        path = out / archive_name(now.strftime("%Y%m%dT%H%MZ"), str(rev["commit"]))
        with tarfile.open(path, "w:gz") as tar:
            tar.add(stage, arcname="gpu-check", filter=_leave_out)
    size = path.stat().st_size
    print(f"gpu-check: {path} ({size / 2**20:.1f} MiB) in {time.monotonic() - t0:.1f} s", flush=True)
    if size > ARCHIVE_LIMIT:
        print(f"gpu-check: the archive is over the device tool's {ARCHIVE_LIMIT / 2**20:.0f} MiB per returned file: "
              f"it will not come back from the device", file=sys.stderr, flush=True)
    return path


# --- reading an archive back (the workflow's import) --------------------------------------------------------


def read_manifest(archive: Path) -> dict:
    """manifest.json of a device-check archive, with the ids of the runs it holds (`run_ids`)."""
    from thinwire.algorithms.comm import ThinwireError

    try:
        with tarfile.open(archive, "r:gz") as tar:
            names = tar.getnames()
            member = tar.extractfile("gpu-check/manifest.json")
            manifest = json.loads(member.read()) if member else None
    except (OSError, tarfile.TarError, KeyError, ValueError) as e:
        raise ThinwireError(f"cannot read device-check archive {archive}: {e}") from None
    if not isinstance(manifest, dict) or "ran_on" not in manifest:
        raise ThinwireError(f"{archive}: not a device-check archive (no manifest.json with ran_on)")
    manifest["run_ids"] = sorted({n.split("/")[2] for n in names if n.startswith("gpu-check/runs/")
                                  and n.endswith("/meta.json") and not n.split("/")[2].startswith(".")})
    return manifest


def source_tag(manifest: dict) -> str:
    """The name an imported archive's runs carry: gpu-<date>-<commit>, letters, digits, '.', '-' only."""
    date = re.sub(r"[^0-9]", "", manifest["date"])[:12]
    kind = "dry" if manifest.get("dry") else "gpu"
    return re.sub(r"[^A-Za-z0-9.-]", "-", f"{kind}-{date}-{str(manifest.get('commit', 'unknown'))[:7]}")


def ran_on(manifest: dict) -> str:
    return f"{manifest['ran_on']} {manifest['date'][:10]}" + (" (dry run, CPU)" if manifest.get("dry") else "")


def import_archive(archive: Path, runs_out: Path, claims_out: Path, papers: Path | None = None) -> list[str]:
    """Unpack an archive's runs into runs_out/<run>@<tag>/ as runs of experiments <experiment>@<tag> that
    ran on '<GPU> <date>' (meta env: cluster, and the archive, date, commit, scale), and write claims_out:
    a claim file with a copy of every claim that reads one of those experiments, id <id>@<tag>, its setup
    prefixed with where and at what scale it ran. Returns the imported run directories' names."""
    import yaml

    from thinwire.analysis.claims import claim_files, read_claims

    manifest = read_manifest(archive)
    tag, where = source_tag(manifest), ran_on(manifest)
    runs_out.mkdir(parents=True, exist_ok=True)
    names = []
    with tempfile.TemporaryDirectory(prefix="gpu-import-") as tmp, tarfile.open(archive, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("gpu-check/runs/") and (m.isfile() or m.isdir())]
        tar.extractall(tmp, members=members, filter="data")
        experiments = set()
        for run_id in manifest["run_ids"]:
            src = Path(tmp) / "gpu-check" / "runs" / run_id
            meta = json.loads((src / "meta.json").read_text())
            experiments.add(meta["experiment"])
            meta["run"] = f"{run_id}@{tag}"
            meta["experiment"] = f"{meta['experiment']}@{tag}"
            meta["env"].update(cluster=where, imported_from=Path(archive).name, imported_date=manifest["date"],
                               imported_commit=str(manifest.get("commit")))
            (src / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
            dest = runs_out / meta["run"]
            if dest.exists():
                shutil.rmtree(dest)
            shutil.move(str(src), dest)
            names.append(dest.name)
    claims = []
    for path in claim_files(papers):
        for c in read_claims(path):
            q = c.get("quantity") or {}
            if q.get("experiment") not in experiments:
                continue
            s = manifest["scale"].get(q["experiment"], {})
            scale = (f"{s['steps']} steps x {s['n_params']:,} parameters"
                     + (f", {s['factor']:.3g}x the quick run's steps x parameters" if "factor" in s else ""))
            copy = {**c, "id": f"{c['id']}@{tag}", "quantity": {**q, "experiment": f"{q['experiment']}@{tag}"},
                    "setup": f"Run on {where} (commit {str(manifest.get('commit'))[:7]}, device check "
                             f"{Path(archive).name}) at {scale}; otherwise as {c['id']}: {c['setup']}"}
            if manifest.get("dry") and "quick_steps" in s:
                # A dry run tests the check and the import; its tiny runs are never evidence: below the quick
                # run's steps every verdict is "inconclusive: under-powered".
                power = dict(c.get("power") or {})
                power["steps"] = max(power.get("steps", 0), s["quick_steps"])
                copy["power"] = power
            claims.append(copy)
    claims_out.parent.mkdir(parents=True, exist_ok=True)
    claims_out.write_text(yaml.safe_dump(claims, sort_keys=False, width=1000))
    return names


# --- the command -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from thinwire.algorithms.comm import ThinwireError

    p = argparse.ArgumentParser(prog="python -m thinwire.gpucheck", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--dry", action="store_true", help="config/gpu.yaml's dry sheet on the CPU, benchmarks --quick")
    p.add_argument("--out", type=Path, help="folder of the archive (default $OUT, else results/gpu-check)")
    p.add_argument("--budget-s", type=float, default=None, help=f"overall seconds (default {BUDGET_S:g}; dry 110)")
    p.add_argument("--jobs", type=int, default=None, help="scale runs at a time (default: 12 on a GPU, 2 dry)")
    p.add_argument("--device", help="torch device (default cuda, cpu with --dry)")
    p.add_argument("--parts", default="tests,bench,scale", help="comma-separated subset of tests,bench,scale")
    p.add_argument("--sheet", type=Path, default=SHEET, help=argparse.SUPPRESS)
    # A scale worker (started by the check itself).
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--runs-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--sheet-name", default="device", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        if args.worker:
            return _worker(args)
        parts = tuple(x for x in args.parts.split(",") if x)
        if set(parts) - {"tests", "bench", "scale"}:
            raise ThinwireError(f"--parts takes tests, bench, scale, got {args.parts!r}")
        budget = args.budget_s if args.budget_s is not None else (110.0 if args.dry else BUDGET_S)
        if not (budget > PACK_RESERVE_S and math.isfinite(budget)):
            raise ThinwireError(f"--budget-s must be more than {PACK_RESERVE_S:g}, got {budget}")
        jobs = args.jobs or (2 if args.dry else 12)
        check(args.dry, args.out or default_out(), budget, jobs, args.device, args.sheet, parts)
    except ThinwireError as e:
        print(f"thinwire: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
