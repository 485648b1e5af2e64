"""The cases every mode runs: each registered method on its tiny problem, plus the configurations that
need their own cross-mode check (other workloads, wire formats, compressors); and the batch runner that
runs many cases on real ranks in one launch.

A launch costs seconds (every rank imports torch), so tests/test_conformance.py runs all its cases in ONE
torchrun job and ONE mpiexec job: tests/conformance_script.py runs them in sequence as each rank, each
case through `thinwire run`'s own entry point, and writes each case's results directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from launch import BIN, RunFiles, read_run
from thinwire.algorithms.registry import get_method, method_names

from thinwire.launch import RUN_FLAGS, thread_env

SCRIPT = Path(__file__).with_name("conformance_script.py")
WORKERS = 2
# The tiny problem `Method.tiny` is tuned for: logistic regression on 50 parameters, 20 steps, float64
# (real ranks then reproduce the simulator to rounding), evaluated every step.
COMMON = ("--steps", "20", "--dtype", "float64", "--eval-every", "1", "--seed", "3")
TINY = ("--workload", "logreg", "--wparam", "dim=50", "--wparam", "heterogeneity=0.5")


class Case(NamedTuple):
    method: str
    args: tuple[str, ...]  # `thinwire run` arguments after the method, before --out


def params(**kw: object) -> tuple[str, ...]:
    """--param KEY=VALUE for each keyword, values as the command line reads them (JSON or a string)."""
    return tuple(a for k, v in kw.items() for a in ("--param", f"{k}={v if isinstance(v, str) else json.dumps(v)}"))


def tiny_case(method: str) -> Case:
    return Case(method, (*COMMON, *TINY, *params(**get_method(method).tiny)))


MLP = ("--workload", "digits-mlp", "--wparam", "hidden=16")
TEXT_LSTM = ("--workload", "text-lstm", "--wparam", "width=8", "--wparam", "seq_len=8", "--wparam", "batch_size=2",
             "--wparam", "eval_bytes=1024")
TEXT_GPT = ("--workload", "text-gpt", "--wparam", "width=16", "--wparam", "layers=1", "--wparam", "heads=2",
            "--wparam", "seq_len=8", "--wparam", "batch_size=2", "--wparam", "eval_bytes=1024")
SIGMOID = ("--workload", "sigmoid", "--wparam", "dim=20", "--wparam", "samples_per_worker=64", "--wparam", "l2=0",
           "--wparam", "heterogeneity=0.5", "--steps", "12")
SDP = ("--workload", "logreg", "--wparam", "dim=100", "--wparam", "heterogeneity=0.5", "--steps", "12",
       *params(lr=0.05, weight_group=16, grad_group=32))
COSINE = {"lr": 0.05, "tau": 4, "schedule": "cosine", "warmup_steps": 4, "decay_steps": 20, "min_lr": 0.005}

# Configurations beyond `tiny` whose agreement across modes is checked too: what each one exercises on
# real ranks is in its comment. Later arguments override COMMON's.
EXTRA: dict[str, Case] = {
    # Variable-size messages: the sampled threshold (stride 9 over the 1,024-weight layer), a warm-up that
    # changes k, dense biases next to sparsified matrices; the paper's 32-bit value + 16-bit run-length
    # format, and fp16 values with int32 indices.
    "dgc-sampled-rl16": Case("dgc", (*COMMON, *MLP, *params(lr=0.2, density=0.02, threshold="sampled",
                                                            warmup_steps=8, wire="fp32-rl16"))),
    "dgc-sampled-fp16": Case("dgc", (*COMMON, *MLP, *params(lr=0.2, density=0.02, threshold="sampled",
                                                            warmup_steps=8, wire="fp16-int32"))),
    # k = 3 of 140,000 weights: runs of 65,535 coordinates and more are common, so escapes cross the wire.
    "dgc-escapes": Case("dgc", (*COMMON, "--workload", "logreg", "--wparam", "dim=140000", "--wparam",
                                "samples_per_worker=16", "--wparam", "batch_size=8",
                                *params(lr=20, density=2e-5, wire="fp32-rl16"))),
    # Text workloads: sparsified embedding and LSTM matrices with dense biases; a tiny transformer.
    "dgc-text-lstm": Case("dgc", (*COMMON, *TEXT_LSTM, "--steps", "8", *params(lr=1.0, density=0.05,
                                                                                warmup_steps=4))),
    "sgd-text-gpt": Case("sgd", (*COMMON, *TEXT_GPT, "--steps", "8", *params(lr=0.5, momentum=0.9))),
    # Deterministic quantizer: Lloyd's iteration must reach the same levels in numpy (MPI) and torch (gloo).
    "ef-quant-bingrad": Case("ef-quant", (*COMMON, *TINY, *params(lr=0.5, bucket_size=16, quantizer="bingrad"))),
    # Per-layer trust ratios on two weight tensors (trace.csv), CLARS' per-example norms.
    "lars-mlp": Case("lars", (*COMMON, *MLP, "--wparam", "batch_size=16", "--steps", "12", "--seed", "2",
                              *params(lr=0.4, trust=0.05, warmup_steps=4))),
    "clars-mlp": Case("clars", (*COMMON, *MLP, "--wparam", "batch_size=16", "--steps", "12", "--seed", "2",
                                *params(lr=0.4, trust=0.05, norms="per_example"))),
    "onebit-adam-deepspeed-compat": Case("onebit-adam", (*COMMON, *TINY, *params(lr=0.05, freeze_step=5,
                                                                                 deepspeed_compat=True))),
    # QSGD as the compressor: per-worker uniforms (method seed, worker, step) must match across modes.
    "saef-qsgd": Case("saef", (*COMMON, *TINY, *params(lr=0.5, compressor="qsgd", levels=2, bucket_size=16,
                                                       step_ahead=True, error_average_every=4))),
    "sdp-qw-tlq": Case("sdp", (*COMMON, *SDP, *params(weights="qw", grads="tlq"))),
    "sdp-full": Case("sdp", (*COMMON, *SDP, *params(weights="full", grads="full"))),
    # Local steps with a warm-up then a cosine, so every global step divides by a different lr; tau 4: the
    # parameters are all-reduced at steps 3, 7, 11, 15, 19. The randomized sign's uniforms must match.
    "dsm-ls-cosine": Case("dsm-ls", (*COMMON, *TINY, *params(**COSINE, sign="randomized", sign_bound=2.0))),
    "slowmo-cosine": Case("slowmo", (*COMMON, *TINY, *params(**COSINE, slow_momentum=0.5))),
    # Zeroth-order estimators on the sigmoid problem; ZO-ProxSVRG's snapshots add a second d-vector.
    "zo-proxsvrg-sigmoid": Case("zo-proxsvrg", (*COMMON, *SIGMOID, *params(lr=0.1, estimator="sphere", batch=8,
                                                                          epoch=5, l1=0.01, l2=0.01))),
    "zo-proxsaga-sigmoid": Case("zo-proxsaga", (*COMMON, *SIGMOID, *params(lr=0.5, estimator="gauss", batch=8,
                                                                          l1=0.01))),
    # PowerSGD on the MLP after 3 dense steps: rank 2 with Gram-Schmidt and warm start; rank 4 with the hook's
    # QR, fresh draws of Q every step and weight decay (the 10 x 16 weight then goes uncompressed).
    "powersgd-rank2": Case("powersgd", (*COMMON, *MLP, *params(lr=0.2, start_powersgd_iter=3, rank=2))),
    "powersgd-rank4-compat": Case("powersgd", (*COMMON, *MLP, *params(lr=0.2, start_powersgd_iter=3, rank=4,
                                                                     ddp_compat=True, warm_start=False,
                                                                     weight_decay=0.001))),
    "zero-one-adam-24": Case("zero-one-adam", (*COMMON, *TINY, "--steps", "24", *params(
        lr=0.05, var_freeze_step=8, var_update_scaler=2, local_step_scaler=2, local_step_clipper=4))),
}


def cases() -> dict[str, Case]:
    """Every registered method on its tiny problem (named after the method), then EXTRA."""
    return {**{m: tiny_case(m) for m in method_names()}, **EXTRA}


def case(name: str) -> Case:
    """A case by name: an EXTRA one, else a method's tiny one."""
    return EXTRA[name] if name in EXTRA else tiny_case(name)


def sim_run(case: Case, out: Path, workers: int = WORKERS) -> RunFiles:
    """The case in the simulator, in this process (what `thinwire sim` does)."""
    from thinwire.cli import main

    assert main(["sim", case.method, *case.args, "--quiet", "--workers", str(workers), "--out", str(out)]) == 0
    return read_run(out)


def run_batch(mode: str, jobs: dict[str, Case], outs: dict[str, Path], work: Path, nproc: int = WORKERS,
              timeout: float = 240) -> subprocess.CompletedProcess:
    """Run `jobs` in sequence on `nproc` local ranks in one launch: torchrun for "gloo", mpiexec for "mpi".
    Each case writes outs[name]; a case that fails leaves its directory missing and says why on stderr.
    The whole launch is killed, process group and all, after `timeout` seconds."""
    work.mkdir(parents=True, exist_ok=True)
    sheet = work / f"{mode}-cases.json"
    sheet.write_text(json.dumps([{"name": name, "out": str(outs[name]), "nproc": nproc,
                                  "args": ["run", c.method, *c.args, *RUN_FLAGS[mode]]}
                                 for name, c in jobs.items()]))
    launcher = ([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", str(nproc)] if mode == "gloo"
                else [str(BIN / "mpiexec"), "-n", str(nproc), sys.executable])
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **thread_env(1)}
    proc = subprocess.Popen([*launcher, str(SCRIPT), str(sheet)], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\n(the {mode} batch was killed after {timeout} s)"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def case_logs(stderr: str, names: list[str], nproc: int = WORKERS) -> dict[str, str]:
    """Split a batch's stderr by case: conformance_script.py prints "conformance case NAME: ..." on each of
    the `nproc` ranks after each case, so what comes after the previous case's last such line and before
    this case's last is this case's. A launch that died mid-case leaves the rest to the case it was running."""
    logs: dict[str, str] = {}
    chunk: list[str] = []
    seen = dict.fromkeys(names, 0)
    for line in stderr.splitlines():
        name = line.removeprefix("conformance case ").split(": ")[0] if line.startswith("conformance case ") else None
        if name is None:
            chunk.append(line)
        elif name in seen:
            seen[name] += 1
            if seen[name] == nproc:
                logs[name], chunk = "\n".join(chunk)[-3000:], []
    unfinished = [name for name in names if name not in logs]
    if unfinished:
        logs[unfinished[0]] = "\n".join(chunk)[-3000:]
    return logs
