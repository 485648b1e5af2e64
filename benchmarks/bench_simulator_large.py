"""Time and peak memory of one simulator step at large (W, d), against the floor of the method's own arithmetic.

    .venv/bin/python benchmarks/bench_simulator_large.py                       # W = 64, d = 1e5 and 1e6
    .venv/bin/python benchmarks/bench_simulator_large.py --workers 256 --dim 1000000 --methods topk-ef  # GBs
    .venv/bin/python benchmarks/bench_simulator_large.py --quick               # W = 16, d = 1e5: seconds
    python benchmarks/bench_simulator_large.py --device cuda                   # torch arrays on a GPU

For "dgc" (exact top-k, density 0.001) and "topk-ef" (density 0.01), float32, the parameters one
(1000, d / 1000) matrix: one `method.step` over SimComm(W) with a synthetic oracle (gradient x - b for a
fixed b: no data set, so the step's own cost is what is measured). Printed per case:

  step s        median wall time of a step (after one warm-up step)
  floor s       the method's arithmetic done once in numpy over the same (W, d) state: per worker
                top-k selection (argpartition) of p = e + lr g, the error update, and the dense sum
                of every worker's k entries with the model update (what any simulator must do)
  step / floor  issue 15's goal: <= 4
  peak GB       tracemalloc's peak of what one step allocates (numpy reports its buffers to it), on top of
                the state held before it
  held GB       what must be held: model, error/momentum state and gradient, (W, d) float32 each

With --device, the step runs on torch arrays on that device (synchronised after each step) and is printed
against a copy of the (W, d) model on the same device (step / copy); peak GB is then torch's peak of
device memory over the step (CUDA; n/a on the CPU, whose torch buffers tracemalloc does not see).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import tracemalloc

import array_api_compat.numpy as xp
import numpy as np
from thinwire.algorithms.registry import get_method, make_config
from thinwire.simulators.simcomm import SimComm

CASES = {"dgc": ({"density": 0.001}, 4), "topk-ef": ({"density": 0.01}, 3)}  # config, (W, d) arrays held


def floor_step(x: np.ndarray, e: np.ndarray, g: np.ndarray, lr: float, k: int) -> np.ndarray:
    """Top-k error feedback once in numpy over (W, d): select, update the error, sum, update the model."""
    p = e + lr * g
    idx = np.argpartition(np.abs(p), p.shape[-1] - k, axis=-1)[:, -k:]
    vals = np.take_along_axis(p, idx, axis=-1)
    np.put_along_axis(p, idx, 0.0, axis=-1)
    total = np.bincount(idx.ravel(), weights=vals.ravel(), minlength=x.shape[-1])
    return x - (total / x.shape[0]).astype(x.dtype)


def measure(name: str, workers: int, dim: int, repeats: int) -> tuple[float, float, float, float]:
    params, held_arrays = CASES[name]
    cls = get_method(name)
    method = cls(make_config(cls, params), (("w", (1000, dim // 1000)),))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((workers, dim), dtype=np.float32)
    b = rng.standard_normal((1, dim), dtype=np.float32)

    def oracle(x):
        return xp.sum(x * x, axis=-1), x - b

    comm = SimComm(workers, xp)
    state = method.init_state(x, comm)
    x, state, _ = method.step(x, state, oracle, comm)
    times = []
    for _ in range(repeats):
        tracemalloc.start()
        start = time.perf_counter()
        x, state, _ = method.step(x, state, oracle, comm)
        times.append(time.perf_counter() - start)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    e, g = np.zeros_like(x), x - b
    k = max(1, round(params["density"] * dim))
    floor = statistics.median(_timed(lambda: floor_step(x, e, g, 0.1, k)) for _ in range(repeats))
    return statistics.median(times), floor, peak / 1e9, held_arrays * x.nbytes / 1e9


def measure_device(name: str, workers: int, dim: int, repeats: int, device: str) -> tuple[float, float, float, float]:
    """measure() with torch arrays on `device`: (step s, device copy s, peak GB or nan, held GB)."""
    import array_api_compat.torch as xpt
    import torch

    params, held_arrays = CASES[name]
    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    cls = get_method(name)
    method = cls(make_config(cls, params), (("w", (1000, dim // 1000)),))
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.standard_normal((workers, dim), dtype=np.float32), device=dev)
    b = torch.as_tensor(rng.standard_normal((1, dim), dtype=np.float32), device=dev)

    def oracle(x):
        return xpt.sum(x * x, axis=-1), x - b

    comm = SimComm(workers, xpt)
    state = method.init_state(x, comm)
    x, state, _ = method.step(x, state, oracle, comm)
    sync()
    times, peak = [], float("nan")
    for _ in range(repeats):
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
            before = torch.cuda.memory_allocated(dev)
        start = time.perf_counter()
        x, state, _ = method.step(x, state, oracle, comm)
        sync()
        times.append(time.perf_counter() - start)
        if dev.type == "cuda":
            peak = (torch.cuda.max_memory_allocated(dev) - before) / 1e9

    def copy():
        x.clone()
        sync()

    copy()
    floor = statistics.median(_timed(copy) for _ in range(max(repeats, 3)))
    return statistics.median(times), floor, peak, held_arrays * x.numel() * 4 / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--workers", type=int, nargs="+", default=[64])
    parser.add_argument("--dim", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--quick", action="store_true", help="W = 16, d = 1e5, 1 repeat (checks the script runs)")
    parser.add_argument("--device", help="torch arrays on this device (cpu, cuda), against a copy on it")
    args = parser.parse_args(argv)
    if args.quick:
        args.workers, args.dim, args.repeats = [16], [100_000], 1
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; float32"
          + (f"; torch on {args.device}" if args.device else ""))
    floor_name = "copy s" if args.device else "floor s"
    ratio_name = "step/copy" if args.device else "step/floor"
    print(f"\n{'method':8} {'W':>4} {'d':>9} {'step s':>8} {floor_name:>8} {ratio_name:>10} {'peak GB':>8} "
          f"{'held GB':>8} {'peak/held':>9}")
    for workers in args.workers:
        for dim in args.dim:
            for name in args.methods:
                t, floor, peak, held = (measure_device(name, workers, dim, args.repeats, args.device) if args.device
                                        else measure(name, workers, dim, args.repeats))
                print(f"{name:8} {workers:4d} {dim:9d} {t:8.3f} {floor:8.3f} {t / floor:10.1f} {peak:8.2f} "
                      f"{held:8.2f} {peak / held:9.1f}", flush=True)


if __name__ == "__main__":
    main()
