"""How much the vectorised simulator saves over a per-worker Python loop, and how far it is from numpy's floor.

    .venv/bin/python benchmarks/bench_simulator.py            # W = 8, 64, 256 (about 20 s on 2 cores)
    .venv/bin/python benchmarks/bench_simulator.py --quick    # W = 8, 64, fewer repeats

For each method ("sgd", "topk-ef") and worker count W, at d = 1000 in float32, with two oracles:

  logreg     logistic regression's minibatch gradient (batch 32): every step gathers W x 32 x d features
             and multiplies by them twice, 64x the model's size of arithmetic that both ways below do alike;
  synthetic  the gradient x - b of |x - b|^2 / 2 for a fixed b (one elementwise pass), so what is timed
             is the method's own step, where the per-worker overhead of a loop shows,

three ways to advance the same (W, d) state by one step are timed:

  vectorised   one `method.step` over SimComm(W): every array is (W, d), the oracle serves all workers.
  loop         W single-worker steps on (d,) arrays, each worker with its own oracle (logreg: rank=r;
               synthetic: its row of b), doing the method's arithmetic with no more than it needs.
               Isolated workers do not communicate (SimComm(1, xp) would also refuse (d,) arrays:
               it wants the worker axis first), so the loop does the collective's work in Python:
                 sgd      per worker: oracle -> gradient; then the W gradients are summed in a Python
                          loop and divided by W (the all-reduce avg); then per worker the momentum and
                          model update, m_r = beta m_r + g, x_r = x_r - lr m_r.
                 topk-ef  per worker: oracle -> gradient, p = e_r + lr g, top-k indices and values,
                          e_r = p - sent, and the int32-index + value payload packed with wire.pack;
                          then every payload is unpacked and scatter-added into one dense vector in a
                          Python loop (the all-gather and decode), divided by W; then per worker
                          x_r = x_r - update.
               Before timing, one loop step and one vectorised step from the same state and the same
               minibatches must give the same model, or the script stops: the loop does the same work.
  numpy pass   x - lr * g on the (W, d) state: one elementwise update, the floor of any step.

Each time is the median of per-step wall times (time.perf_counter) after warm-up; the three ways
take turns step by step, so other load on the machine hits them alike. The ratios are of those
medians, measured in this run. The script sets no thread variables: run it under the
environment you want to measure (it prints what it finds).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import array_api_compat.numpy as xp
import numpy as np
from thinwire.algorithms import wire
from thinwire.algorithms.registry import get_method
from thinwire.algorithms.sgd import warmup_factor
from thinwire.simulators.problems import PROBLEMS, ProblemConfig
from thinwire.simulators.simcomm import SimComm

from thinwire.launch import THREAD_VARS

DTYPE = "float32"


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    methods: tuple[str, ...] = ("sgd", "topk-ef")
    workers: tuple[int, ...] = (8, 64, 256)
    dim: int = 1000
    batch_size: int = 32
    samples_per_worker: int = 64  # keeps the W=256 dataset at 130 MB
    warmup: int = 3
    repeats: int = 21  # timed steps per (method, W); the numpy pass is timed in blocks of `inner` calls
    inner: int = 50
    seed: int = 0


QUICK = BenchConfig(workers=(8, 64), warmup=2, repeats=5, inner=20)


# The loop versions: W single-worker steps, then the collective done by hand. Per-worker state is a
# list of (d,) arrays, one entry per worker, as each real rank would hold its own.

def loop_step_sgd(method: Any, xs: list, state: dict, oracles: list) -> tuple[list, dict, list]:
    c = method.config
    losses, grads = zip(*(oracle(x) for oracle, x in zip(oracles, xs)))
    total = grads[0]
    for g in grads[1:]:
        total = total + g
    g = total / len(grads)
    lr = c.lr * warmup_factor(state["step"], c.warmup_steps)
    ms, new_xs = [], []
    for x, m in zip(xs, state["momentum"]):
        m = c.momentum * m + (g + c.weight_decay * x if c.weight_decay else g)
        ms.append(m)
        new_xs.append(x - lr * m)
    return new_xs, {"momentum": ms, "step": state["step"] + 1}, list(losses)


def loop_step_topk_ef(method: Any, xs: list, state: dict, oracles: list) -> tuple[list, dict, list]:
    c = method.config
    d = xs[0].shape[-1]
    k = method.compressor.k(d)
    losses, payloads, errors, moms = [], [], [], []
    for oracle, x, e, m in zip(oracles, xs, state["error"], state["momentum"]):
        loss, g = oracle(x)
        if c.momentum:
            m = c.momentum * m + g
            g = m
        p = e + c.lr * g
        idx = wire.top_k_indices(p, k)
        vals = wire.take_last(p, idx)
        errors.append(p - wire.scatter_sum(idx[None, :], vals[None, :], d))
        payloads.append(wire.pack([idx, vals]))
        moms.append(m)
        losses.append(loss)
    layout = [(np.dtype(np.int32), k), (np.dtype(DTYPE), k)]
    total = np.zeros(d, dtype=DTYPE)
    for buf in payloads:
        idx, vals = wire.unpack(buf, layout)
        total[idx] += vals  # indices within one payload are distinct
    update = total / len(payloads)
    return [x - update for x in xs], {"error": errors, "momentum": moms}, losses


LOOP_STEPS: dict[str, Callable] = {"sgd": loop_step_sgd, "topk-ef": loop_step_topk_ef}


@dataclasses.dataclass(frozen=True)
class Row:
    method: str
    oracle: str
    workers: int
    dim: int
    vectorised_ms: float
    loop_ms: float
    numpy_pass_ms: float


def median_ms(timed: dict[str, tuple[Callable[[], None], int]], warmup: int, repeats: int) -> dict[str, float]:
    """Median wall time per call, in ms, of each (fn, calls per timed block).

    The fns take turns block by block, so a machine busy with other work slows all of them alike and
    the ratios stay meaningful even when the absolute times drift.
    """
    for fn, _ in timed.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {key: [] for key in timed}
    for _ in range(repeats):
        for key, (fn, inner) in timed.items():
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            times[key].append((time.perf_counter() - start) / inner)
    return {key: 1e3 * statistics.median(t) for key, t in times.items()}


ORACLES = ("logreg", "synthetic")


def synthetic_oracle(b: np.ndarray) -> Callable:
    """The gradient of |x - b|^2 / 2 (and its value) for b of x's shape: one pass, no data."""
    def oracle(x):
        r = x - b
        return 0.5 * xp.sum(r * r, axis=-1), r
    return oracle


def setup(name: str, workers: int, cfg: BenchConfig, oracle: str = "logreg") -> tuple[Any, Any, Any, Any, list]:
    """A fresh method, problem, (W, d) start point, vectorised oracle and per-rank oracles."""
    problem = PROBLEMS["logreg"](workers, cfg.seed, ProblemConfig(
        samples_per_worker=cfg.samples_per_worker, dim=cfg.dim, batch_size=cfg.batch_size))
    method = get_method(name)(get_method(name).Config(), problem.layout)
    x = xp.asarray(np.broadcast_to(problem.x0(), (workers, problem.n_params)).astype(DTYPE))
    if oracle == "synthetic":
        b = np.random.default_rng([cfg.seed, 2]).standard_normal((workers, cfg.dim)).astype(DTYPE)
        return method, problem, x, synthetic_oracle(b), [synthetic_oracle(row) for row in b]
    oracles = [problem.oracle(xp, r, DTYPE) for r in range(workers)]
    return method, problem, x, problem.oracle(xp, None, DTYPE), oracles


def per_worker(state: dict) -> dict:
    """The vectorised state as each worker would hold it: (W, ...) arrays become lists of W rows."""
    return {key: list(v) if isinstance(v, np.ndarray) else v for key, v in state.items()}


def check_loop_matches(name: str, workers: int, cfg: BenchConfig, kind: str) -> None:
    """One step both ways from the same state: the per-rank oracles draw the same minibatches."""
    method, _, x, oracle, oracles = setup(name, workers, cfg, kind)
    comm = SimComm(workers, xp)
    x_vec, _, _ = method.step(x, method.init_state(x, comm), oracle, comm)
    rows = list(x)
    state = per_worker(method.init_state(x, comm))
    x_loop, _, _ = LOOP_STEPS[name](method, rows, state, oracles)
    x_loop = np.stack(x_loop)
    if not np.allclose(x_vec, x_loop, rtol=1e-4, atol=1e-6):
        raise SystemExit(f"{name}, W={workers}: the loop step does not reproduce the vectorised step "
                         f"(max |difference| {np.max(np.abs(x_vec - x_loop)):.3g}); fix LOOP_STEPS first")


def bench(name: str, workers: int, cfg: BenchConfig, kind: str) -> Row:
    check_loop_matches(name, workers, cfg, kind)
    method, _, x, oracle, oracles = setup(name, workers, cfg, kind)

    comm = SimComm(workers, xp)
    vec = [x, method.init_state(x, comm)]

    def vectorised() -> None:
        vec[0], vec[1], _ = method.step(vec[0], vec[1], oracle, comm)

    loop = [list(x), per_worker(method.init_state(x, comm))]

    def looped() -> None:
        loop[0], loop[1], _ = LOOP_STEPS[name](method, loop[0], loop[1], oracles)

    g = np.random.default_rng(cfg.seed).standard_normal(x.shape).astype(DTYPE)
    lr = method.config.lr

    def numpy_pass() -> None:
        x - lr * g

    ms = median_ms({"vectorised": (vectorised, 1), "loop": (looped, 1), "numpy": (numpy_pass, cfg.inner)},
                   cfg.warmup, cfg.repeats)
    return Row(name, kind, workers, cfg.dim, ms["vectorised"], ms["loop"], ms["numpy"])


def environment() -> list[str]:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas['name']} {blas['version']}"
    except (KeyError, TypeError):  # numpy < 1.26 has no mode="dicts"; the layout may change again
        blas = "unknown"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "n/a"
    threads = ", ".join(f"{v}={os.environ[v]}" for v in THREAD_VARS if v in os.environ) or "none set"
    return [
        f"python {platform.python_version()} on {platform.machine()} ({platform.system()})",
        f"numpy {np.__version__}, BLAS {blas}",
        f"CPUs: os.cpu_count()={os.cpu_count()}, usable by this process={affinity}",
        f"thread variables: {threads}",
        "load average (1, 5, 15 min): " + (", ".join(f"{v:.2f}" for v in os.getloadavg())
                                           if hasattr(os, "getloadavg") else "n/a"),
    ]


COLUMNS = ("method", "oracle", "W", "d", "vectorised ms/step", "loop ms/step", "numpy-pass ms/step",
           "loop/vectorised", "vectorised/numpy-pass")


def table(rows: list[Row]) -> str:
    cells = [COLUMNS] + [
        (r.method, r.oracle, str(r.workers), str(r.dim), f"{r.vectorised_ms:.3f}", f"{r.loop_ms:.3f}",
         f"{r.numpy_pass_ms:.4f}", f"{r.loop_ms / r.vectorised_ms:.1f}x",
         f"{r.vectorised_ms / r.numpy_pass_ms:.0f}x")
        for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--quick", action="store_true", help="W = 8, 64 and fewer repeats")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else BenchConfig()

    print("\n".join(environment()))
    print(f"d={cfg.dim}, logreg batch={cfg.batch_size}, {DTYPE}, default method configs; "
          f"median of {cfg.repeats} steps after {cfg.warmup} warm-up "
          f"(numpy pass: {cfg.repeats} blocks of {cfg.inner} calls)\n")
    start = time.perf_counter()
    rows = []
    for workers in cfg.workers:
        for name in cfg.methods:
            for kind in ORACLES:
                rows.append(bench(name, workers, cfg, kind))
                print(f"  done {name} {kind} W={workers}", file=sys.stderr, flush=True)
    rows.sort(key=lambda r: (cfg.methods.index(r.method), ORACLES.index(r.oracle), r.workers))
    print(table(rows))
    print(f"\n(total {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
