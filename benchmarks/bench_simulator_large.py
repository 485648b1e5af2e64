"""Time and peak memory of one simulator step at large (W, d), against the floor of the method's own arithmetic.

    .venv/bin/python benchmarks/bench_simulator_large.py    # W = 64 (d = 1e5, 1e6, text-gpt), W = 256 d = 1e6
    .venv/bin/python benchmarks/bench_simulator_large.py --workers 128 --dim 1000000 --methods topk-ef  # one size
    .venv/bin/python benchmarks/bench_simulator_large.py --quick               # W = 16, d = 1e5: seconds
    .venv/bin/python benchmarks/bench_simulator_large.py --layout text-gpt --methods sgd topk-ef dgc  # its tensors
    python benchmarks/bench_simulator_large.py --device cuda                   # torch arrays on a GPU

For "dgc" (exact top-k, density 0.001), "topk-ef" (density 0.01) and "sgd" (momentum 0.9), float32, the
parameters one (1000, d / 1000) matrix (with --layout text-gpt: that workload's 52 tensors, d = 218,496,
so DGC sends its biases and norms dense): one `method.step` over SimComm(W) with a synthetic oracle
(gradient x - b for a fixed b: no data set, so the step's own cost is what is measured). Each case runs
in its own process (so its maxrss is its own). By default: W = 64 at d = 1e5 and 1e6 and on text-gpt's
tensors, and W = 256 at d = 1e6 (issue 15's size; about 9 GB, skipped with a note when the machine has
less available). Printed per case:

  step s        median wall time of a step (after one warm-up step)
  floor s       the method's arithmetic done once in numpy over the same (W, d) state. Top-k methods: per
                worker top-k selection (argpartition) of p = e + lr g, the error update, and the dense sum
                of every worker's k entries with the model update (what any simulator must do; DGC's
                momentum correction is not in it). sgd: the workers' mean gradient, m = beta m + g and
                x - lr m.
  step / floor  issue 15's goal: <= 4
  held GB       what must be held between steps: model and optimizer/error state, (W, d) float32 each
                (dgc: x, u, v, M; topk-ef: x, e and the zero momentum; sgd: x, m)
  peak GB       the most held at once during a step: what was held before it plus tracemalloc's peak of
                what the step allocates (numpy reports its buffers to it; the gradient is among them)
  peak / held   issue 15's goal: <= 2
  maxrss GB     the process's resident high-water mark after the steps (before the floor is timed):
                the held state, the oracle's b, the interpreter and libraries

With --device, the step runs on torch arrays on that device (synchronised after each step) and is printed
against a copy of the (W, d) model on the same device (step / copy); peak GB is then torch's peak of
device memory over the step (CUDA; n/a on the CPU, whose torch buffers tracemalloc does not see).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
import tracemalloc

import array_api_compat.numpy as xp
import numpy as np
from thinwire.algorithms.registry import get_method, make_config
from thinwire.simulators.simcomm import SimComm

CASES = {"dgc": ({"density": 0.001}, 4), "topk-ef": ({"density": 0.01}, 3),
         "sgd": ({"momentum": 0.9}, 2)}  # config, (W, d) arrays held between steps


def floor_step(x: np.ndarray, e: np.ndarray, g: np.ndarray, lr: float, k: int) -> np.ndarray:
    """Top-k error feedback once in numpy over (W, d): select, update the error, sum, update the model."""
    p = e + lr * g
    idx = np.argpartition(np.abs(p), p.shape[-1] - k, axis=-1)[:, -k:]
    vals = np.take_along_axis(p, idx, axis=-1)
    np.put_along_axis(p, idx, 0.0, axis=-1)
    total = np.bincount(idx.ravel(), weights=vals.ravel(), minlength=x.shape[-1])
    return x - (total / x.shape[0]).astype(x.dtype)


def sgd_floor(x: np.ndarray, m: np.ndarray, g: np.ndarray, lr: float) -> np.ndarray:
    """Momentum SGD once in numpy over (W, d): the workers' mean gradient, m = beta m + g, x - lr m."""
    m = 0.9 * m + g.mean(axis=0)
    return x - lr * m


def layout_of(name: str, dim: int) -> tuple:
    if name == "matrix":
        return (("w", (1000, dim // 1000)),)
    from thinwire.workloads.registry import make_workload

    return make_workload(name, 1, 0, {}).layout


def measure(name: str, workers: int, dim: int, repeats: int, layout: str = "matrix") -> tuple:
    """(step s, floor s, peak GB, held GB, maxrss GB) of one case, in this process."""
    import resource

    params, held_arrays = CASES[name]
    cls = get_method(name)
    method = cls(make_config(cls, params), layout_of(layout, dim))
    dim = method.n_params
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
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: KiB
    held = held_arrays * x.nbytes
    del state
    e, g = np.zeros_like(x), x - b
    if name == "sgd":
        floor = statistics.median(_timed(lambda: sgd_floor(x, e, g, 0.1)) for _ in range(repeats))
    else:
        k = max(1, round(params["density"] * dim))
        floor = statistics.median(_timed(lambda: floor_step(x, e, g, 0.1, k)) for _ in range(repeats))
    return statistics.median(times), floor, (held + peak) / 1e9, held / 1e9, maxrss


def measure_device(name: str, workers: int, dim: int, repeats: int, device: str, layout: str = "matrix") -> tuple:
    """measure() with torch arrays on `device`: (step s, device copy s, peak GB or nan, held GB, nan)."""
    import array_api_compat.torch as xpt
    import torch

    params, held_arrays = CASES[name]
    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    cls = get_method(name)
    method = cls(make_config(cls, params), layout_of(layout, dim))
    dim = method.n_params
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
        start = time.perf_counter()
        x, state, _ = method.step(x, state, oracle, comm)
        sync()
        times.append(time.perf_counter() - start)
        if dev.type == "cuda":
            peak = torch.cuda.max_memory_allocated(dev) / 1e9  # what was held before the step, and its peak

    def copy():
        x.clone()
        sync()

    copy()
    floor = statistics.median(_timed(copy) for _ in range(max(repeats, 3)))
    return statistics.median(times), floor, peak, held_arrays * x.numel() * 4 / 1e9, float("nan")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def one_case(args: argparse.Namespace, name: str, layout: str, workers: int, dim: int) -> tuple:
    """The case in a fresh process, so that its maxrss and page-fault costs are its own."""
    import json
    import subprocess
    import sys

    cmd = [sys.executable, __file__, "--one", name, str(workers), str(dim), "--repeats", str(args.repeats),
           "--layout", layout] + (["--device", args.device] if args.device else [])
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{name} W={workers} d={dim} failed:\n{done.stderr[-3000:]}")
    return tuple(json.loads(done.stdout.strip().splitlines()[-1]))


def available_bytes() -> float:
    """MemAvailable of /proc/meminfo (Linux), else infinity."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return math.inf


def needed_bytes(workers: int, dim: int) -> float:
    """What a case needs at most, from the W = 256, d = 1e6 runs: about 8 (W, d) float32 arrays (dgc's step:
    4 held and 4 made; the floor: x, b, e, g, p, |p| and int64 indices), and the interpreter."""
    return 8 * workers * dim * 4 + 0.5e9


def plan(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    """(layout, W, d) groups to run: the ones asked for, or by default W = 64 at d = 1e5 and 1e6, text-gpt's
    tensors at W = 64, and W = 256 at d = 1e6 (issue 15's size, when this machine has the memory)."""
    if args.quick:
        args.repeats = 1
        return [("matrix", 16, 100_000)]
    if args.workers or args.dim or args.layout:
        layout = args.layout or "matrix"
        dims = (args.dim or [100_000, 1_000_000]) if layout == "matrix" else [0]  # 0: the workload's own size
        return [(layout, w, d) for w in args.workers or [64] for d in dims]
    return [("matrix", 64, 100_000), ("matrix", 64, 1_000_000), ("text-gpt", 64, 0), ("matrix", 256, 1_000_000)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--workers", type=int, nargs="+")
    parser.add_argument("--dim", type=int, nargs="+")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--layout", help="matrix (one (1000, d / 1000) tensor, the default) or a workload whose "
                                         "tensors to use (text-gpt)")
    parser.add_argument("--quick", action="store_true", help="W = 16, d = 1e5, 1 repeat (checks the script runs)")
    parser.add_argument("--device", help="torch arrays on this device (cpu, cuda), against a copy on it")
    parser.add_argument("--one", nargs=3, metavar=("METHOD", "W", "D"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        import json

        name, workers, dim = args.one[0], int(args.one[1]), int(args.one[2])
        layout = args.layout or "matrix"
        result = (measure_device(name, workers, dim, args.repeats, args.device, layout) if args.device
                  else measure(name, workers, dim, args.repeats, layout))
        print(json.dumps(result))
        return
    groups = plan(args)
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; float32"
          + (f"; torch on {args.device}" if args.device else ""))
    floor_name = "copy s" if args.device else "floor s"
    ratio_name = "step/copy" if args.device else "step/floor"
    print(f"\n{'method':8} {'layout':8} {'W':>4} {'d':>9} {'step s':>8} {floor_name:>8} {ratio_name:>10} "
          f"{'held GB':>8} {'peak GB':>8} {'peak/held':>9} {'maxrss GB':>9}")
    for layout, workers, dim in groups:
        d = dim or _layout_size(layout)
        need, have = needed_bytes(workers, d), available_bytes()
        if not args.device and need > have:
            print(f"(skipped {layout} W={workers} d={d}: needs about {need / 1e9:.1f} GB, "
                  f"{have / 1e9:.1f} GB available)", flush=True)
            continue
        for name in args.methods:
            t, floor, peak, held, maxrss = one_case(args, name, layout, workers, dim)
            print(f"{name:8} {layout:8} {workers:4d} {d:9d} {t:8.3f} {floor:8.3f} {t / floor:10.1f} {held:8.2f} "
                  f"{peak:8.2f} {peak / held:9.1f} {maxrss:9.2f}", flush=True)


def _layout_size(layout: str) -> int:
    return sum(math.prod(shape) for _, shape in layout_of(layout, 0))


if __name__ == "__main__":
    main()
