"""Run a sheet of `thinwire run` cases in sequence as this rank, so that one launch covers them all
(tests/conformance.py writes the sheet and launches it). Launched as
`torchrun --standalone --nproc_per_node 2 conformance_script.py SHEET` or
`mpiexec -n 2 python conformance_script.py SHEET`.

Each case goes through `thinwire run`'s own entry point with a collective timeout, so a case fails as
it would alone: a refused configuration names itself on stderr and the next case runs; a rank that
dies or hangs ends the whole launch.

Under torchrun all cases share one process group, as MPI's cases share COMM_WORLD: destroying it after
a case and initialising the next races (a fast rank reads its peer's stale address from the rendezvous
store and the connection is refused), so TorchComm.close is left to the end of the sheet.
"""

import json
import os
import sys
import time
from pathlib import Path

from thinwire.cli import main


def run_sheet(sheet: str) -> int:
    torchrun = "RANK" in os.environ
    if torchrun:
        from thinwire.workloads.torchcomm import TorchComm

        close, TorchComm.close = TorchComm.close, lambda self: None
    failed = 0
    for case in json.loads(Path(sheet).read_text()):
        start = time.perf_counter()
        failed += main([*case["args"], "--quiet", "--timeout", "30", "--world-size", str(case["nproc"]),
                        "--out", case["out"]]) != 0
        print(f"conformance case {case['name']}: {time.perf_counter() - start:.2f} s", file=sys.stderr, flush=True)
    if torchrun:
        close(None)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_sheet(sys.argv[1]))
