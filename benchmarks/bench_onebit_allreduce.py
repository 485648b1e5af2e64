"""thinwire's 1-bit Adam compressed all-reduce against DeepSpeed 0.19.6's own, on 2 gloo ranks.

    .venv/bin/python benchmarks/bench_onebit_allreduce.py            # 1M, 4M, 16M, 64M float32 values
    .venv/bin/python benchmarks/bench_onebit_allreduce.py --quick    # 1M values, few repeats: seconds

The communication step of 1-bit Adam's compression stage (algorithms/onebit_adam.py), as thinwire's
`onebit-adam` runs it on real ranks (workloads/torchcomm.py over torch.distributed), against
DeepSpeed's `CompressedBackend.compressed_allreduce` (runtime/comm/compressed.py), the step its
OnebitAdam runs, with the CPU adapters of workloads/deepspeed_cpu.py (the backend thinwire's
`--backend deepspeed` runs). Three cases, taking turns call by call on the same ranks and process
group, each call after a barrier; a call's time is the slowest rank's, the table shows the median
over the repeats:

  thinwire           `compressed_average`, thinwire's default mode: the whole vector in p chunks, one
                     worker scale per chunk (padding excluded), an all-to-all and an all-gather
  thinwire ds-compat `_compat_average`, the `deepspeed_compat: true` mode: DeepSpeed's algorithm
                     (one worker scale per tensor, four collectives)
  DeepSpeed          DeepSpeed's compressed_allreduce on the momentum buffer, in place, as its
                     OnebitAdam calls it

Each case feeds its output back as the next call's momentum and keeps its error-feedback state, as
an optimizer does. Before timing, the script checks the results: ds-compat against DeepSpeed over
three successive calls with fresh momenta (output, worker and server errors), and says how the
default mode differs. Each rank uses cores / 2 torch threads (at least 1). The goal (issue 15):
thinwire's time <= 1.0x DeepSpeed's. Prints the load average: on a shared machine absolute times
drift, the interleaved ratios less so.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import resource
import socket
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

RANKS = 2
SIZES = [2**20, 2**22, 2**24, 2**26]
REPEATS = {2**20: 15, 2**22: 9, 2**24: 5, 2**26: 3}
GOAL = 1.0  # thinwire's time over DeepSpeed's
HEADER = "thinwire/DeepSpeed"


def _label(n: int) -> str:
    return f"{n // 2**20}M"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _deepspeed_backend() -> object | str:
    """DeepSpeed's CompressedBackend on the initialised process group, or why there is none."""
    try:
        import deepspeed
    except ImportError as e:
        return f"DeepSpeed is not installed ({e}): pip install '.[deepspeed]'"
    from thinwire.workloads import deepspeed_cpu
    from thinwire.workloads.deepspeed_backend import import_deepspeed

    import_deepspeed()  # refuses a DeepSpeed without the 1-bit optimizers, naming the fix
    deepspeed_cpu.apply()
    deepspeed.init_distributed(dist_backend="gloo", verbose=False, timeout=datetime.timedelta(seconds=600))
    from deepspeed.runtime.comm.compressed import CompressedBackend

    return CompressedBackend()


def _max_over_ranks(values: list[float]) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


class Cases:
    """The three compressed all-reduces on d values, each with its own momentum and error state."""

    def __init__(self, d: int, ds: object | None, comm: object, seed: int) -> None:
        from thinwire.algorithms.onebit_adam import OnebitAdam

        self.d, self.ds, self.comm = d, ds, comm
        layout = [("momentum", (d,))]
        self.default = OnebitAdam(OnebitAdam.Config(), layout)
        self.compat = OnebitAdam(OnebitAdam.Config(deepspeed_compat=True), layout)
        zeros = torch.zeros(d, dtype=torch.float32)
        # Only the error feedback: init_state's Adam moments are not part of the all-reduce.
        self.state = {name: {k: v for k, v in method.init_state(zeros, comm).items() if "error" in k}
                      for name, method in (("default", self.default), ("compat", self.compat))}
        (block,) = self.compat.blocks(RANKS)
        self.padded, self.chunk = block.padded, block.chunk
        gen = torch.Generator().manual_seed(seed)
        m = torch.randn(d, generator=gen, dtype=torch.float32)
        self.m = {"default": m, "compat": m.clone(), "ds": m.clone()}
        self.ds_errors = (torch.zeros(self.padded), torch.zeros(self.chunk))

    def thinwire(self) -> None:
        out = self.default.compressed_average(self.m["default"], self.state["default"], self.comm)
        self.m["default"] = out.pop("m")
        self.state["default"].update(out)

    def thinwire_compat(self) -> None:
        out = self.compat._compat_average(self.m["compat"], self.state["compat"], self.comm)
        self.m["compat"] = out.pop("m")
        self.state["compat"].update(out)

    def deepspeed(self) -> None:
        self.m["ds"] = self.ds.compressed_allreduce(self.m["ds"], *self.ds_errors, 0)


def check(d: int, ds: object, comm: object, rank: int) -> tuple[str, str]:
    """Three successive calls with fresh momenta: ds-compat against DeepSpeed (output, worker and
    server errors), and the default mode's output against DeepSpeed's. Returns two verdict lines."""
    from thinwire.algorithms.onebit_adam import OnebitAdam

    layout = [("momentum", (d,))]
    compat, default = OnebitAdam(OnebitAdam.Config(deepspeed_compat=True), layout), OnebitAdam(OnebitAdam.Config(), layout)
    zeros = torch.zeros(d)
    s_compat, s_default = compat.init_state(zeros, comm), default.init_state(zeros, comm)
    (block,) = compat.blocks(RANKS)
    worker, server = torch.zeros(block.padded), torch.zeros(block.chunk)
    gen = torch.Generator().manual_seed(1000 + rank)
    compat_gap = default_gap = 0.0
    identical = True
    for _ in range(3):
        m = torch.randn(d, generator=gen)
        ours = compat._compat_average(m, s_compat, comm)
        mine = default.compressed_average(m, s_default, comm)
        theirs = ds.compressed_allreduce(m.clone(), worker, server, 0)
        for a, b in ((ours["m"], theirs), (ours["error"], worker), (ours["server_error"], server)):
            identical &= torch.equal(a, b)
            compat_gap = max(compat_gap, (a - b).abs().max().item())
        # The share of coordinates whose sign differs from DeepSpeed's output.
        default_gap = max(default_gap, (torch.signbit(mine["m"]) != torch.signbit(theirs)).double().mean().item())
        s_compat.update({k: v for k, v in ours.items() if k != "m"})
        s_default.update({k: v for k, v in mine.items() if k != "m"})
    identical = bool(_max_over_ranks([0.0 if identical else 1.0])[0] == 0.0)
    compat_gap, default_gap = _max_over_ranks([compat_gap, default_gap])
    same = ("bit-identical" if identical else f"max |difference| {compat_gap:.3g}") + \
        " to DeepSpeed's: output, worker and server errors, 3 successive calls"
    differs = (f"differs from DeepSpeed's by design (one worker scale per chunk, not per tensor; "
               f"padding excluded from scales and errors): the output's sign differs in {default_gap:.2%} of the values")
    return same, differs


def rank_main(rank: int, port: int, sizes: list[int], repeats: dict[int, int]) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(RANKS), LOCAL_WORLD_SIZE=str(RANKS),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // RANKS))
    from thinwire.workloads.torchcomm import TorchComm

    ds = _deepspeed_backend()
    if isinstance(ds, str):  # no DeepSpeed: thinwire's cases only
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=600))
    comm = TorchComm(torch.device("cpu"), timeout_s=600)
    load = os.getloadavg()
    if rank == 0:
        print(f"{RANKS} gloo ranks, torch {torch.__version__} with {torch.get_num_threads()} threads per rank, "
              f"{os.cpu_count()} cores; load average {load[0]:.1f} at the start")
        if isinstance(ds, str):
            print(f"DeepSpeed: not measured: {ds}")
        else:
            import deepspeed

            print(f"DeepSpeed {deepspeed.__version__}, CompressedBackend with thinwire's CPU adapters "
                  f"(workloads/deepspeed_cpu.py)")
    rows = []
    for d in sizes:
        cases = Cases(d, None if isinstance(ds, str) else ds, comm, seed=rank)
        fns = {"thinwire": cases.thinwire, "thinwire ds-compat": cases.thinwire_compat}
        if not isinstance(ds, str):
            fns["DeepSpeed"] = cases.deepspeed
            verdicts = check(d, ds, comm, rank)
        for fn in fns.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(repeats[d]):
            for name, fn in fns.items():
                dist.barrier()
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        medians = {name: statistics.median(_max_over_ranks(t)) for name, t in times.items()}
        rows.append((d, repeats[d], medians, None if isinstance(ds, str) else verdicts))
        del cases
    peak = _max_over_ranks([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20])[0]
    load = os.getloadavg()
    if rank == 0:
        print(f"\n{'values':>7s} {'repeats':>7s} {'thinwire ms':>12s} {'ds-compat ms':>13s} {'DeepSpeed ms':>13s} "
              f"{HEADER:>19s} {'ds-compat/DeepSpeed':>20s} {'goal':>5s}  met")
        for d, r, t, _ in rows:
            ref = t.get("DeepSpeed", math.nan)
            met = "" if math.isnan(ref) else ("yes" if max(t["thinwire"], t["thinwire ds-compat"]) <= GOAL * ref else "no")
            print(f"{_label(d):>7s} {r:7d} {t['thinwire'] * 1e3:12.1f} {t['thinwire ds-compat'] * 1e3:13.1f} "
                  f"{ref * 1e3:13.1f} {t['thinwire'] / ref:19.2f} {t['thinwire ds-compat'] / ref:20.2f} "
                  f"{GOAL:5.1f}  {met}")
        for d, _, _, verdicts in rows:
            if verdicts:
                print(f"{_label(d)}: thinwire ds-compat is {verdicts[0]}; thinwire's default mode {verdicts[1]}")
        print(f"peak memory per rank {peak:.2f} GB; load average {load[0]:.1f} at the end "
              f"({os.cpu_count()} cores): times measured under that load")
    dist.barrier()
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1M values, 3 repeats")
    parser.add_argument("--sizes", type=int, nargs="+", help="vector lengths (default 1M 4M 16M 64M)")
    parser.add_argument("--repeats", type=int, help="repeats per size (default: 15 at 1M down to 3 at 64M)")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([2**20] if args.quick else SIZES)
    repeats = {d: args.repeats or (3 if args.quick else REPEATS.get(d, 5)) for d in sizes}
    mp.spawn(rank_main, args=(_free_port(), sizes, repeats), nprocs=RANKS, join=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
