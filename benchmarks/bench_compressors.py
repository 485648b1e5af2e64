"""Compressor throughput on 25M float32 values, as a ratio to a copy of the same array.

    python benchmarks/bench_compressors.py [--n 25000000] [--repeats 5]
    python benchmarks/bench_compressors.py --quick     # 200k values, 2 repeats: seconds
    python benchmarks/bench_compressors.py --device cuda   # the torch cases on a GPU, as ratios to a copy there

Measures, in one run, on the host (numpy) and torch paths: exact top-k at 0.1% (numpy argpartition,
torch.topk), DGC's sampled threshold at 0.1% (its strided sample and adaptation rules), and every
compressor of algorithms/compress.py's vocabulary (top-k and the quantizers of quantizers.py), each
compress + pack into bytes and unpack + decompress, with the default levels (4) and bucket (512).
The cases take turns repeat by repeat (timing.interleaved_medians), so load on the machine hits them
alike. Goals of issue 15 (x copy): selection and sign <= 3; QSGD, TernGrad, NUQSGD <= 5; BinGrad,
ORQ <= 8. With numba installed the numpy quantizers, top-k selection and the Hadamard transform run
the compiled host kernels (algorithms/hostkernels.py); the library "numpy array-API" times the same
calls on the path they replace (numba switched off for the call: array-API operations, argpartition),
so one run shows both (--no-array-api leaves it out).
Nothing here passes or fails: it prints what it measured. With --device, only the torch cases
run, on that device (each call synchronised with it), as ratios to a copy of the tensor on the same device
(thinwire/gpucheck.py runs it so on the GPU).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from thinwire.algorithms import hostkernels, wire
from thinwire.algorithms.compress import COMPRESSORS, make_compressor
from thinwire.algorithms.dgc import sampled_threshold_indices
from timing import interleaved_medians, print_table, without_numba  # benchmarks/timing.py, beside this script

GOALS = {"scaled-sign": 3, "topk": 3, "qsgd": 5, "terngrad": 5, "nuqsgd": 5, "bingrad": 8, "orq": 8}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=25_000_000, help="values per tensor (default 25M)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="n = 200k, 2 repeats (checks the script runs)")
    parser.add_argument("--device", help="torch cases only, on this torch device (cpu, cuda, cuda:N), as ratios to "
                        "a copy on it (default: host numpy and CPU torch against a numpy copy)")
    parser.add_argument("--no-array-api", action="store_true",
                        help="leave out the numpy quantizers on the array-API path (numba switched off)")
    args = parser.parse_args(argv)
    n, repeats = (200_000, 2) if args.quick else (args.n, args.repeats)
    k = max(1, n // 1000)
    x = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    u = np.random.default_rng(1).random(n, dtype=np.float32)
    print(f"numpy {np.__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}; n = {n:,} float32, k = {k:,} (0.1%); "
          f"load average {os.getloadavg()[0]:.1f}; compiled host kernels: "
          f"{'numba ' + hostkernels.numba.__version__ if hostkernels.ENABLED else 'no (numba not installed)'}")

    if args.device:
        dev = torch.device(args.device)
        if dev.type == "cuda":
            print(f"device {dev}: {torch.cuda.get_device_name(dev)}")
        times, goals = _cases({f"torch {dev}": (torch.from_numpy(x).to(dev), torch.from_numpy(u).to(dev))}, n, k,
                              f"copy, torch {dev} (reference)", repeats, _synchronised(dev))
        print_table(times, f"copy, torch {dev} (reference)", goals)
        return
    xt = torch.from_numpy(x)
    cases = {"copy, numpy (reference)": (lambda: x.copy(), None), "copy, torch": (lambda: xt.clone(), None)}
    libs = {"numpy": (x, u), "torch": (xt, torch.from_numpy(u))}
    if hostkernels.ENABLED and not args.no_array_api:
        libs["numpy array-API"] = (x, u)
    times, goals = _cases(libs, n, k, None, repeats, lambda fn: fn, cases)
    print_table(times, "copy, numpy (reference)", goals)


def _synchronised(dev: torch.device):
    """A call's time on `dev` includes its kernels: wait for the device after each call."""
    if dev.type != "cuda":
        return lambda fn: fn

    def wrap(fn):
        def call():
            out = fn()
            torch.cuda.synchronize(dev)
            return out
        return call
    return wrap


def _cases(libs: dict, n: int, k: int, copy_name: str | None, repeats: int, wrap, cases: dict | None = None):
    """Time every case of every library (name -> (values, uniforms)); copy_name: a copy of the first library's
    values as the reference case. Returns (times, goals) by case."""
    cases = dict(cases or {})
    if copy_name:
        first = next(iter(libs.values()))[0]
        cases[copy_name] = (lambda: first.clone(), None)
    for lib, (v, uv) in libs.items():
        rng = np.random.default_rng(0)
        array_api = lib.endswith("array-API")
        each = without_numba if array_api else (lambda fn: fn)
        cases[f"top-k exact select, {lib}"] = (each(lambda v=v: wire.top_k_indices(v, k)), 3)
        if not array_api:  # DGC's sampled threshold does not use the compiled kernels
            cases[f"DGC sampled threshold, {lib}"] = (
                lambda v=v, rng=rng: sampled_threshold_indices(abs(v), k, 0.001, 0.01, rng), 3)
        for name in COMPRESSORS:
            c = make_compressor(name, density=0.001)
            uniforms = uv if c.stochastic else None
            payload = each(lambda c=c, v=v, w=uniforms: c.compress(v, w))()
            goal = GOALS.get(name)
            cases[f"{name} compress + pack, {lib}"] = (each(lambda c=c, v=v, w=uniforms: c.compress(v, w)), goal)
            cases[f"{name} unpack + decompress, {lib}"] = (
                each(lambda c=c, p=payload, v=v: c.decompress(p, n, v.dtype)), goal)
    times = interleaved_medians({name: wrap(fn) for name, (fn, _) in cases.items()}, repeats)
    return times, {name: goal for name, (_, goal) in cases.items()}


if __name__ == "__main__":
    main()
