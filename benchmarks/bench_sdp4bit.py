"""SDP4Bit's compressors on 25M float32 values, as a ratio to a numpy copy of the same array (claim P6's
ingredients: what the Hadamard transform adds to quantization, here on a CPU).

    python benchmarks/bench_sdp4bit.py [--n 25000000] [--repeats 3]
    python benchmarks/bench_sdp4bit.py --quick      # 204,800 values, 2 repeats: seconds

Cases (algorithms/sdp_quant.py): Q_{4,2048} (qWD's weights) and Q_{8,128} / Q_{4,128} (TLq's gradients),
each compress + pack into bytes, rounding to nearest and stochastically (the uniforms drawn inside the
timed call, as the method does, by compress.draw_uniforms: numpy's Generator.random, compiled with numba;
the draw alone is timed too, its own row); the block Hadamard transform (32) alone; Hadamard + Q_{8,128}. numpy
and torch (CPU) for each; unpack + decompress of Q_{8,128}. All cases take turns repeat by repeat
(timing.interleaved_medians). Issue 15's goal: each quantizer and Hadamard + Q_{8,128} <= 5x the copy. The last column, "Hadamard share", is the Hadamard transform's time over
Hadamard + quantize: the fraction of compression time the transform costs when it is not fused (the
paper fuses it into its CUDA quantization kernel; Table 4 prices the unfused version 29% slower).
With numba installed the numpy quantizers run the compiled host kernels
(algorithms/hostkernels.py); "numpy-api" rows time the same calls on the array-API path they replace,
in the same run (--no-array-api leaves them out). Nothing here passes or fails: it prints what it measured.
"""

from __future__ import annotations

import argparse
import math
import os

import numpy as np
import torch
from thinwire.algorithms import hostkernels
from thinwire.algorithms.compress import draw_uniforms
from thinwire.algorithms.sdp_quant import hadamard, symmetric
from timing import interleaved_medians, without_numba  # benchmarks/timing.py, beside this script


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=25_000_000, help="values (rounded down to a multiple of 2048)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="n = 204,800, 2 repeats (checks the script runs)")
    parser.add_argument("--no-array-api", action="store_true",
                        help="leave out the numpy quantizers on the array-API path (numba switched off)")
    args = parser.parse_args(argv)
    n, repeats = (100 * 2048, 2) if args.quick else (args.n // 2048 * 2048, args.repeats)
    x = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    xt = torch.from_numpy(x)
    print(f"numpy {np.__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}; n = {n:,} float32; load average {os.getloadavg()[0]:.1f}; "
          f"compiled host kernels: {'numba ' + hostkernels.numba.__version__ if hostkernels.ENABLED else 'no'}")
    rng = np.random.default_rng(1)

    def uniforms(like):  # drawn as the method draws them (compress.worker_uniforms)
        u = draw_uniforms(rng, n, np.float32)
        return torch.from_numpy(u) if isinstance(like, torch.Tensor) else u

    q4w, q8, q4 = symmetric(4, 2048), symmetric(8, 128), symmetric(4, 128)
    cases = {"copy": lambda: x.copy(), "uniforms": lambda: uniforms(x)}
    libs = [("numpy", x), ("torch", xt)]
    if hostkernels.ENABLED and not args.no_array_api:
        libs.append(("numpy-api", x))
    for lib, v in libs:
        each = without_numba if lib == "numpy-api" else (lambda fn: fn)
        q8_payload = q8.compress(v, uniforms(v))
        cases |= {f"{lib} {name}": each(fn) for name, fn in {
            "Q4,2048 nearest": lambda v=v: q4w.compress(v),
            "Q4,2048 stochastic": lambda v=v: q4w.compress(v, uniforms(v)),
            "Q8,128 stochastic": lambda v=v: q8.compress(v, uniforms(v)),
            "Q4,128 stochastic": lambda v=v: q4.compress(v, uniforms(v)),
            "Hadamard 32": lambda v=v: hadamard(v, 32),
            "Hadamard 32 + Q8,128 stochastic": lambda v=v: q8.compress(hadamard(v, 32), uniforms(v)),
            "Q8,128 unpack + decompress": lambda p=q8_payload, v=v: q8.decompress(p, n, v.dtype),
        }.items()}
    times = interleaved_medians(cases, repeats)
    copy, draw = times.pop("copy"), times.pop("uniforms")
    rows = []
    for lib, _ in libs:
        for key, t in times.items():
            if key.startswith(lib + " "):
                rows.append((lib, key.removeprefix(lib + " "), t, t / copy))
        share = times[f"{lib} Hadamard 32"] / times[f"{lib} Hadamard 32 + Q8,128 stochastic"]
        rows.append((lib, "Hadamard share of Hadamard + Q8,128", share, float("nan")))
    print(f"{'library':8} {'case':38} {'seconds':>9} {'x copy':>8}   (numpy copy: {copy:.4f} s)")
    print(f"{'numpy':8} {'uniforms drawn (in each stochastic case)':38} {draw:9.4f} {draw / copy:8.1f}")
    for lib, name, t, ratio in rows:
        print(f"{lib:8} {name:38} {t:9.4f} {ratio:8.1f}" if not math.isnan(ratio) else f"{lib:8} {name:38} {t:9.2%}")


if __name__ == "__main__":
    main()
