"""Link micro-benchmark: time gloo collectives over a range of sizes and fit alpha-beta.

Run as torch.distributed ranks (torchrun, or inside shaped namespaces by thinwire.validate):
    torchrun --standalone --nproc_per_node 2 -m thinwire.workloads.linkbench --out link.json

Each size is timed `repeats` times after a warm-up call, sizes in turn, with a barrier before every
call so the ranks start together; the median is kept. alpha and beta are fitted to the ring all-reduce cost
    t(n) = 2 (p - 1) alpha + 2 (p - 1) / p * n * beta
(the formula simulators/perfmodel.py prices), so they are in the model's own terms. Rank 0 writes
the measurements, the fit and the environment fingerprint.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from scipy.stats import theilslopes

from thinwire.results import environment

SIZES = (1 << 8, 1 << 11, 1 << 13, 1 << 15, 1 << 18, 1 << 20, 1 << 21, 1 << 22)  # bytes per rank


def time_all_reduce(sizes: list[int], repeats: int) -> list[float]:
    """Median seconds per size over `repeats` calls, 10x as many for messages <= 32 KiB: their times
    are bimodal here (occasional ms-long stalls), so they need many samples. Every rank makes the same
    calls (the counts depend on the sizes only). The sizes take turns (round robin), so drift in the
    machine's load spreads over all of them instead of biasing one."""
    bufs = [torch.zeros(n // 4, dtype=torch.float32) for n in sizes]
    counts = [10 * repeats if n <= 1 << 15 else repeats for n in sizes]
    for x in bufs:
        dist.all_reduce(x)
    times: list[list[float]] = [[] for _ in sizes]
    for i in range(max(counts)):
        for x, out, count in zip(bufs, times, counts):
            if i >= count:
                continue
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(x)
            out.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def fit_alpha_beta(sizes: list[int], seconds: list[float], p: int) -> tuple[float, float]:
    """(alpha, beta) of the ring all-reduce formula: beta from the (Theil-Sen) slope over the large
    messages (>= 256 KiB, where bandwidth dominates), alpha from what the small ones (<= 8 KiB) take beyond
    their bytes. Both clipped at zero."""
    n, t = np.asarray(sizes, float), np.asarray(seconds, float)
    wire = 2.0 * (p - 1) / p * n  # bytes each rank sends in a ring all-reduce
    large, small = n >= 1 << 18, n <= 1 << 13
    if large.sum() < 2 or not small.any():
        raise ValueError("the fit needs two sizes >= 256 KiB and one <= 8 KiB")
    beta = max(float(theilslopes(t[large], wire[large]).slope), 1e-15)  # robust to one stalled size
    alpha = max(float(np.mean(t[small] - wire[small] * beta)) / (2 * (p - 1)), 0.0)
    return alpha, beta


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON file rank 0 writes")
    ap.add_argument("--repeats", type=int, default=40, help="calls per size above 32 KiB (10x below)")
    ap.add_argument("--max-bytes", type=int, default=SIZES[-1], help="largest message per rank")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds any collective may take")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=args.timeout))
    try:
        p = dist.get_world_size()
        sizes = [s for s in SIZES if s <= args.max_bytes]
        seconds = time_all_reduce(sizes, args.repeats)
        alpha, beta = fit_alpha_beta(sizes, seconds, p)
        if dist.get_rank() == 0:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({
                "world_size": p, "op": "all_reduce", "bytes": sizes, "seconds": seconds,
                "latency_us": alpha * 1e6, "bandwidth_gbps": 8 / beta / 1e9,
                "env": environment("gloo")}, indent=1) + "\n")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
