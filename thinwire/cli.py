"""The `thinwire` command: list what exists, run a method (simulated or real), price and report runs.

    thinwire list
    thinwire sim topk-ef --workload logreg --workers 8 --steps 200 --param density=0.01
    torchrun --standalone --nproc_per_node 2 -m thinwire run sgd --workload digits-mlp --steps 200
    mpiexec -n 2 thinwire run sgd --workload digits-mlp --backend mpi
    thinwire model results/runs/* --cluster simulators/clusters/dgc-64x4-titanxp.yaml --out results/model/dgc.csv \
        --bandwidth 1 --bandwidth 10 --speedup 1 --speedup 10 --summary results/studies/model-dgc.csv
    thinwire aggregate results/runs/* --model results/model/*.csv --out results/table.csv
    thinwire report results/table.csv --out reports
    thinwire validate config/validation.yaml     (root: model vs measurement on shaped links)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from thinwire.algorithms.comm import CollectiveError, ThinwireError


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("method", help="a registered method (see `thinwire list`)")
    p.add_argument("--workload", required=True, help="a problem or workload (see `thinwire list`)")
    p.add_argument("--steps", type=int, default=100, help="training steps (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of data, initialisation and batches (default 0)")
    p.add_argument("--dtype", default="float32", help="float32 (default) or float64")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="a method parameter, repeatable")
    p.add_argument("--wparam", action="append", metavar="KEY=VALUE", help="a workload parameter, repeatable")
    p.add_argument("--eval-every", type=int, default=10, help="evaluate the averaged model every N steps")
    p.add_argument("--out", type=Path, help="results directory (default results/runs/<mode>-<method>-<workload>-s<seed>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--experiment", default="", help="group name for figures (default: the workload)")
    p.add_argument("--label", default="", help="name of this method variant in figures (default: the method)")
    p.add_argument("--cluster-name", default="", help="where this runs, recorded for the report "
                   "(default: slurm's cluster name, else local:<host>)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thinwire", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the registered methods, problems and workloads, one per line")

    sim = sub.add_parser("sim", help="run a method with all workers simulated in this process")
    _run_args(sim)
    sim.add_argument("--workers", type=int, default=4, help="number of simulated workers (default 4)")
    sim.add_argument("--array-lib", choices=("numpy", "torch"), help="array library (default: the workload's)")

    run = sub.add_parser("run", help="run a method as this process's rank (under torchrun or mpiexec)")
    _run_args(run)
    run.add_argument("--backend", default="auto", help="auto (default: mpi under mpiexec, else torch), torch, mpi, "
                     "deepspeed (DeepSpeed's own OnebitAdam, for onebit-adam with deepspeed_compat=true), or ddp "
                     "(PyTorch's PowerSGD DDP hook, for powersgd with ddp_compat=true)")
    run.add_argument("--device", help="torch device: cpu (gloo), cuda (this rank's GPU, NCCL) or cuda:N "
                     "(default cuda when CUDA is present, else cpu)")
    run.add_argument("--busbw-mb", type=float, help="measure all-reduce bus bandwidth with this many MB before "
                     "training, kept in meta.json (default 64 on GPUs, 0 = off on CPUs)")
    run.add_argument("--timeout", type=float, default=120.0, help="seconds any collective may take (default 120)")
    run.add_argument("--world-size", type=int, help="the planned number of ranks: stop before training if the "
                     "launcher started another (the workflow always passes it)")
    run.add_argument("--inject-failure", metavar="RANK:STEP:HOW", help="for testing: make RANK exit or hang at STEP")

    model = sub.add_parser("model", help="price runs' communication logs on a described cluster")
    model.add_argument("runs", nargs="+", type=Path, help="run directories")
    model.add_argument("--cluster", required=True, type=Path, help="cluster description (YAML)")
    model.add_argument("--target-params", type=float, help="scale bytes to a model of this many parameters")
    model.add_argument("--flops-per-step", type=float, help="compute per worker per step of the target model")
    model.add_argument("--tokens-per-step", type=float,
                       help="transformer tokens per worker per step: compute 6 x params x tokens, unless --flops-per-step")
    model.add_argument("--bandwidth", type=float, action="append", help="inter-node Gbit/s to sweep, repeatable")
    model.add_argument("--overlap", action="store_true", help="overlap communication with the backward pass")
    model.add_argument("--buckets", type=int, help="gradient buckets for --overlap (default: DDP's 25 MiB)")
    model.add_argument("--baseline", default="sgd", help="method or label of the dense baseline (default sgd)")
    model.add_argument("--speedup", type=float, action="append",
                       help="find the bandwidth below which a run beats its baseline by this factor, repeatable "
                            "(default 1: the break-even bandwidth)")
    model.add_argument("--target-loss-factor", type=float, default=1.05,
                       help="time to target: reach this times the baseline's final loss (default 1.05)")
    model.add_argument("--out", required=True, type=Path, help="output CSV")
    model.add_argument("--summary", type=Path, help="output CSV of break-even bandwidths and times to target")
    model.add_argument("--name", help="name in the cluster column (default: the cluster's own)")

    agg = sub.add_parser("aggregate", help="concatenate runs and model predictions into one long table")
    agg.add_argument("runs", nargs="*", type=Path, help="run directories")
    agg.add_argument("--model", nargs="*", type=Path, default=[], help="model CSVs from `thinwire model`")
    agg.add_argument("--out", required=True, type=Path)

    rep = sub.add_parser("report", help="claim verdicts, figures and the HTML report from a results table")
    rep.add_argument("table", type=Path)
    rep.add_argument("--out", type=Path, default=Path("reports"))
    rep.add_argument("--claims", type=Path, help="claims folder (default: the packaged claims)")
    rep.add_argument("--studies", type=Path, help="folder of study tables (from `thinwire study`)")

    val = sub.add_parser("validate", help="performance model vs measured step times on shaped links (root)")
    val.add_argument("sheet", type=Path, help="validation sheet (e.g. config/validation.yaml)")
    val.add_argument("--work", type=Path, default=Path("results/validation"),
                     help="run directories and link measurements, kept for resuming (default results/validation)")
    val.add_argument("--out", type=Path, default=Path("reports/validation.csv"), help="the table (CSV)")

    study = sub.add_parser("study", help="a measurement that is not a training run, as a table")
    study.add_argument("name", choices=["quantizers", "sign_rate", "zo_rate"],
                       help="quantizers: error of every quantizer by distribution; "
                            "sign_rate: DSM-LS's gradient norm against the horizon (claim S3); "
                            "zo_rate: zeroth-order proximal methods' gradient mapping against the horizon (ZO-1..3)")
    study.add_argument("--out", required=True, type=Path, help="output CSV")
    study.add_argument("--seed", type=int, default=0, help="quantizers: seed of the data and the draws (default 0)")
    study.add_argument("--seeds", type=int, help="sign_rate, zo_rate: seeds per horizon (default 3)")
    study.add_argument("--horizons", type=int, nargs="+", help="sign_rate, zo_rate: the horizons T "
                       "(default sign_rate 100 ... 1600, zo_rate 50 ... 800)")
    study.add_argument("--draws", type=int, help="quantizers: draws per quantizer and distribution (default 20)")
    return parser


def _spec(args: argparse.Namespace):
    from thinwire.execute import RunSpec, parse_params

    return RunSpec(args.method, args.workload, args.steps, args.seed, args.dtype,
                   parse_params(args.param, "--param"), parse_params(args.wparam, "--wparam"), args.eval_every,
                   args.experiment, args.label, args.cluster_name)


def _out(args: argparse.Namespace, mode: str) -> Path:
    return args.out or Path("results/runs") / f"{mode}-{args.method}-{args.workload}-s{args.seed}"


def _list() -> None:
    from thinwire.algorithms.registry import method_names
    from thinwire.workloads.registry import WORKLOADS

    for name in method_names():
        print(f"method\t{name}")
    for name, (kind, _) in sorted(WORKLOADS.items(), key=lambda kv: (kv[1][0], kv[0])):
        print(f"{kind}\t{name}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            _list()
        elif args.command == "sim":
            from thinwire.execute import run_sim

            meta = run_sim(_spec(args), args.workers, _out(args, "sim"), args.array_lib, not args.quiet)
            _summary(meta)
        elif args.command == "run":
            from thinwire.execute import run_real

            meta = run_real(_spec(args), _out(args, "real"), args.backend, args.timeout, args.device,
                            not args.quiet, args.inject_failure, args.busbw_mb, args.world_size)
            if meta is not None:
                _summary(meta)
        elif args.command == "model":
            from thinwire.simulators.perfmodel import model_runs

            model_runs(args.runs, args.cluster, args.out, args.target_params, args.flops_per_step, args.bandwidth,
                       tokens_per_step=args.tokens_per_step, overlap=args.overlap, buckets=args.buckets,
                       baseline=args.baseline, speedups=args.speedup, target_loss_factor=args.target_loss_factor,
                       summary_out=args.summary, name=args.name)
        elif args.command == "aggregate":
            from thinwire.analysis.table import aggregate

            aggregate(args.runs, args.model, args.out)
        elif args.command == "report":
            from thinwire.analysis.build import build_report

            build_report(args.table, args.out, args.claims, args.studies)
        elif args.command == "validate":
            from thinwire.validate import summary, validate

            print(summary(validate(args.sheet, args.work, args.out)))
        elif args.command == "study":
            _study(args)
    except CollectiveError as e:
        print(f"thinwire: error: {e}", file=sys.stderr, flush=True)
        # Peers may be dead or stuck: leave now rather than hang in process-group teardown.
        os._exit(1)
    except ThinwireError as e:
        print(f"thinwire: error: {e}", file=sys.stderr)
        return 2
    return 0


def _study(args: argparse.Namespace) -> None:
    given = {k: v for k, v in (("seeds", args.seeds), ("horizons", args.horizons), ("draws", args.draws))
             if v is not None}
    takes = {"sign_rate": {"seeds", "horizons"}, "zo_rate": {"seeds", "horizons"}, "quantizers": {"draws"}}[args.name]
    if set(given) - takes:
        raise ThinwireError(f"study {args.name} takes {', '.join(f'--{t}' for t in sorted(takes))}, "
                            f"not {', '.join(f'--{g}' for g in sorted(set(given) - takes))}")
    if any(v < 1 for v in [given.get("seeds", 1), given.get("draws", 3), *given.get("horizons", [1])]):
        raise ThinwireError("study --seeds, --horizons and --draws must be positive")
    if len(given.get("horizons", [0, 1])) < 2:
        raise ThinwireError("study --horizons needs at least 2 horizons (a rate is a slope)")
    if "horizons" in given:
        given["horizons"] = tuple(given["horizons"])
    if args.name == "sign_rate":
        from thinwire.simulators.sign_rate_study import run_study as run_rate

        if "horizons" in given:  # DSM-LS's horizon is its number of global rounds
            given["rounds"] = given.pop("horizons")
        run_rate(args.out, **given)
    elif args.name == "zo_rate":
        from thinwire.simulators.zo_rate_study import run_study as run_zo

        run_zo(args.out, **given)
    else:
        from thinwire.simulators.quantizer_study import run_study

        try:
            run_study(args.out, seed=args.seed, **given)
        except ValueError as e:
            raise ThinwireError(f"study quantizers: {e}") from None


def _summary(meta: dict) -> None:
    print(f"{meta['run']}: {meta['status']} after {meta['steps_done']} steps, "
          f"{meta['stated_bits_per_param']:.4g} bits/param stated{'; ' + meta['message'] if meta['message'] else ''}")
