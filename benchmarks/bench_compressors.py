"""Compressor throughput on 25M float32 values, as a ratio to a numpy copy of the same array.

    python benchmarks/bench_compressors.py [--n 25000000] [--repeats 5]

Measures, in one run: exact top-k at 0.1% (numpy argpartition, torch.topk), DGC's sampled threshold at
0.1% (its strided sample and adaptation rules), and every quantizer of algorithms/quantizers.py
(compress + pack into bytes). The issue's goal is each within 3x the copy; the table says which are.
Nothing here passes or fails: it prints what it measured.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from thinwire.algorithms import wire
from thinwire.algorithms.registry import get_method, make_config
from timing import median_time  # benchmarks/timing.py, beside this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=25_000_000, help="values per tensor (default 25M)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n, k = args.n, max(1, args.n // 1000)
    x = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    xt = torch.from_numpy(x)
    print(f"numpy {np.__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}; n = {n:,} float32, k = {k:,} (0.1%)")

    dgc_cls = get_method("dgc")
    layout = (("w", (1000, n // 1000)),)
    dgc = dgc_cls(make_config(dgc_cls, {"density": 0.001, "threshold": "sampled"}), layout)
    rng = np.random.default_rng(0)
    cases = {
        "numpy copy (reference)": lambda: x.copy(),
        "top-k exact, numpy argpartition": lambda: wire.top_k_indices(x, k),
        "top-k exact, torch.topk": lambda: wire.top_k_indices(xt, k),
        "DGC sampled threshold, numpy": lambda: dgc._sampled_row(np.abs(x), k, 0, rng),
        "DGC sampled threshold, torch": lambda: dgc._sampled_row(xt.abs(), k, 0, rng),
    }
    try:
        from thinwire.algorithms.quantizers import QUANTIZERS
    except ImportError:
        QUANTIZERS = {}
    for name, make in QUANTIZERS.items():
        q = make()
        uniforms = rng.random(n, dtype=np.float32)
        cases[f"quantizer {name}: compress + pack"] = lambda q=q, u=uniforms: q.compress(x, u)

    copy = median_time(cases.pop("numpy copy (reference)"), args.repeats)
    print(f"\n{'case':45s} {'ms':>9s} {'x copy':>8s}  within 3x")
    print(f"{'numpy copy (reference)':45s} {copy * 1e3:9.2f} {1.0:8.2f}")
    for name, fn in cases.items():
        t = median_time(fn, args.repeats)
        print(f"{name:45s} {t * 1e3:9.2f} {t / copy:8.2f}  {'yes' if t <= 3 * copy else 'no'}")


if __name__ == "__main__":
    main()
