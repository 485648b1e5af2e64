"""How long the performance model takes to price a 1000-step CommLog of a 1B-parameter model on 1024 GPUs.

    .venv/bin/python benchmarks/bench_perfmodel.py               # 1000 steps, 1024 GPUs (128 x 8)
    .venv/bin/python benchmarks/bench_perfmodel.py --steps 100   # a shorter log
    .venv/bin/python benchmarks/bench_perfmodel.py --quick       # 20 steps, 1 repeat: seconds

The log is synthesised as a real DGC run of a GPT-style model (hidden 2048, 20 layers, vocabulary
50257: 1.11B parameters in 244 tensors) would write it, one record per collective call: per step and
per matrix, the all_gather of the ranks' message lengths and the all_gather_v of their sparse
payloads (density 0.001, fp16 values + int32 indices, lengths varying by rank), one dense all_reduce
of the vectors DGC leaves uncompressed, and one "metrics" all_reduce the model must skip; the run
world is 1024, so no rescaling of group sizes. Two timings, each the median of `--repeats`:

  price      what the model does once the log is in memory: StepModel (log -> arrays, compute and
             codec per step) and one predicted step time per step at one bandwidth.
  end to end `model_runs` on a run directory: read meta.json, commlog.csv and trajectory.csv, price
             at one bandwidth, pair with the baseline, write the per-step CSV.

The acceptance goal is pricing in under a second; the ratio column is the time over 1 s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from thinwire.simulators.perfmodel import Options, StepModel, load_cluster, model_runs
from timing import median_time  # benchmarks/timing.py, beside this script

CLUSTER = """name: bench-128x8
nodes: 128
gpus_per_node: 8
sustained_tflops: 300.0
algorithm: auto
hierarchical: true
codec_values_per_s: {dgc: 2.0e+10}
tiers:
  intra: {bandwidth_gbps: 1600.0, latency_us: 3.0}
  inter: {bandwidth_gbps: 400.0, latency_us: 5.0}
"""


def gpt_tensors(hidden: int = 2048, layers: int = 20, vocab: int = 50257) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = [(vocab, hidden), (2048, hidden)]  # token and position embeddings
    for _ in range(layers):
        shapes += [(hidden,), (hidden,), (hidden, 3 * hidden), (3 * hidden,), (hidden, hidden), (hidden,),
                   (hidden,), (hidden,), (hidden, 4 * hidden), (4 * hidden,), (4 * hidden, hidden), (hidden,)]
    return shapes + [(hidden,), (hidden,)]


def synthesise_log(steps: int, world: int, seed: int = 0) -> tuple[pd.DataFrame, int]:
    rng = np.random.default_rng(seed)
    shapes = gpt_tensors()
    sizes = np.array([int(np.prod(s)) for s in shapes])
    matrices = sizes[[len(s) > 1 for s in shapes]]
    dense_bytes = int(sizes[[len(s) == 1 for s in shapes]].sum()) * 4
    k = np.maximum(1, (matrices * 1e-3).astype(np.int64))
    # Per step and matrix: lengths (4 bytes per rank), then the payloads (6 bytes per kept value); the
    # total a rank receives varies around world x k because each rank's threshold keeps a different count.
    per_step = len(matrices)
    sent = np.repeat(k[None, :], steps, axis=0) * 6
    recv = (sent * world * rng.uniform(0.9, 1.1, size=sent.shape)).astype(np.int64)
    step = np.repeat(np.arange(steps), per_step)
    lengths = pd.DataFrame({"step": step, "op": "all_gather", "group_size": world, "sent": 4,
                            "recv": 4 * world, "category": "method"})
    payloads = pd.DataFrame({"step": step, "op": "all_gather_v", "group_size": world, "sent": sent.ravel(),
                             "recv": recv.ravel(), "category": "method"})
    vectors = pd.DataFrame({"step": np.arange(steps), "op": "all_reduce", "group_size": world,
                            "sent": dense_bytes, "recv": dense_bytes, "category": "method"})
    metrics = vectors.assign(sent=8, recv=8, category="metrics")
    log = pd.concat([lengths, payloads, vectors, metrics]).sort_values("step", kind="stable")
    return log.reset_index(drop=True), int(sizes.sum())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="20 steps, 1 repeat (checks the script runs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 20, 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "cluster.yaml").write_text(CLUSTER)
        cluster = load_cluster(tmp / "cluster.yaml")
        world = cluster.world_size
        log, n_params = synthesise_log(args.steps, world)
        meta = {"run": "bench-dgc", "method": "dgc", "label": "dgc", "workload": "gpt-1b", "seed": 0,
                "mode": "sim", "backend": "numpy", "world_size": world, "n_params": n_params,
                "experiment": "bench"}
        run = tmp / "run"
        run.mkdir()
        (run / "meta.json").write_text(json.dumps(meta))
        log.to_csv(run / "commlog.csv", index=False)
        pd.DataFrame({"step": np.arange(args.steps), "loss": 1.0}).to_csv(run / "trajectory.csv", index=False)
        steps = np.arange(args.steps)
        options = Options(tokens_per_step=8 * 2048, overlap=True)

        def price() -> np.ndarray:
            return StepModel(log, steps, meta, cluster, options).wall(cluster.inter.bandwidth_gbps)

        def end_to_end() -> None:
            model_runs([run], tmp / "cluster.yaml", tmp / "out.csv", tokens_per_step=8 * 2048, overlap=True)

        wall = price()
        t_price = median_time(price, args.repeats)
        t_all = median_time(end_to_end, args.repeats)
    print(f"log: {len(log):,} records ({args.steps} steps), {n_params / 1e9:.2f}B parameters, "
          f"{world} GPUs ({cluster.nodes} x {cluster.gpus_per_node}); predicted step {wall.mean() * 1e3:.1f} ms")
    print(f"{'timing':<12}{'seconds':>10}{'ratio to 1 s':>14}")
    for name, t in (("price", t_price), ("end to end", t_all)):
        print(f"{name:<12}{t:>10.3f}{t / 1.0:>14.3f}")


if __name__ == "__main__":
    main()
