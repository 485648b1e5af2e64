"""Link micro-benchmark: time gloo collectives over a range of sizes and fit alpha-beta.

Run as torch.distributed ranks (torchrun, or inside shaped namespaces by thinwire.validate):
    torchrun --standalone --nproc_per_node 2 -m thinwire.workloads.linkbench --out link.json

Each size is timed `repeats` times after a warm-up call, with a barrier before every call so the
ranks start together; the median is kept. alpha and beta are fitted to the ring all-reduce cost
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

from thinwire.results import environment

SIZES = (1 << 10, 1 << 13, 1 << 16, 1 << 18, 1 << 20, 1 << 22)  # bytes per rank


def time_all_reduce(nbytes: int, repeats: int) -> float:
    x = torch.zeros(nbytes // 4, dtype=torch.float32)
    dist.all_reduce(x)
    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fit_alpha_beta(sizes: list[int], seconds: list[float], p: int) -> tuple[float, float]:
    """(alpha, beta) of the ring all-reduce formula: beta from the slope over the large messages
    (>= 256 KiB, where bandwidth dominates), alpha from what the small ones (<= 8 KiB) take beyond
    their bytes. Both clipped at zero."""
    n, t = np.asarray(sizes, float), np.asarray(seconds, float)
    wire = 2.0 * (p - 1) / p * n  # bytes each rank sends in a ring all-reduce
    large, small = n >= 1 << 18, n <= 1 << 13
    if large.sum() < 2 or not small.any():
        raise ValueError("the fit needs two sizes >= 256 KiB and one <= 8 KiB")
    beta = max(float(np.polyfit(wire[large], t[large], 1)[0]), 1e-15)
    alpha = max(float(np.mean(t[small] - wire[small] * beta)) / (2 * (p - 1)), 0.0)
    return alpha, beta


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON file rank 0 writes")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--max-bytes", type=int, default=SIZES[-1], help="largest message per rank")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds any collective may take")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=args.timeout))
    try:
        p = dist.get_world_size()
        sizes = [s for s in SIZES if s <= args.max_bytes]
        seconds = [time_all_reduce(s, args.repeats) for s in sizes]
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
