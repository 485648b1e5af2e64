"""What every benchmark here times with, and how it prints ratios to a reference.

`median_time`: the median of `repeats` calls after one warm-up call. `interleaved_medians`: the same
for several functions that take turns call by call, so other load on a shared machine slows them
alike and their ratios hold even when absolute times drift.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_time(fn: Callable[[], object], repeats: int) -> float:
    return interleaved_medians({"fn": fn}, repeats)["fn"]


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each fn: one warm-up call each, then `repeats` rounds of one call each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def print_table(times: dict[str, float], reference: str, goals: dict[str, float | None]) -> None:
    """One row per case: ms, ratio to `reference`'s time, and whether it meets its goal (x reference)."""
    ref = times[reference]
    width = max(len(name) for name in times)
    print(f"\n{'case':{width}s} {'ms':>10s} {'x copy':>8s} {'goal':>6s}  met")
    for name, t in times.items():
        goal = goals.get(name)
        met = "" if goal is None else ("yes" if t <= goal * ref else "no")
        print(f"{name:{width}s} {t * 1e3:10.2f} {t / ref:8.2f} {goal or '':>6}  {met}")


def without_numba(fn: Callable[[], object]) -> Callable[[], object]:
    """fn on the array-API host path: the compiled kernels (algorithms/hostkernels.py) switched off for
    the call, so one run can time both paths taking turns."""
    from thinwire.algorithms import hostkernels

    def call():
        saved, hostkernels.ENABLED = hostkernels.ENABLED, False
        try:
            return fn()
        finally:
            hostkernels.ENABLED = saved
    return call
