"""The `thinwire` command: list what exists, run a method (simulated or real), price and report runs.

    thinwire list
    thinwire check config/my.yaml      (a runs sheet read and planned as the workflow does)
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
import json
import math
import os
import sys
from pathlib import Path

from thinwire.algorithms.comm import CollectiveError, ThinwireError
from thinwire.options import MODEL_OPTIONS, RUN, STUDIES, STUDY_OPTIONS, Option, study_kwargs


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (no usage block), like every other error of thinwire."""

    def error(self, message: str) -> None:  # type: ignore[override]
        from thinwire.torchrun import record_error

        line = f"thinwire: error: {' '.join(message.split())} (see {self.prog} --help)"
        record_error(line)
        self.exit(2, line + "\n")


def _number(name: str, kind: type, minimum: float | None = None, above: float | None = None):
    """An argparse type: a finite `kind` in range, or an error naming the option (argparse prefixes the flag)."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"{name} must be finite, got {text!r}")
        if minimum is not None and v < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum:g}, got {text!r}")
        if above is not None and v <= above:
            raise argparse.ArgumentTypeError(f"{name} must be > {above:g}, got {text!r}")
        return v

    return parse


def _add(p: argparse.ArgumentParser, o: Option, ranged: bool = True) -> None:
    """One option of a table in thinwire/options.py as a flag (`ranged`: argparse checks its range; else
    the caller does, with Option.check)."""
    if o.kind is bool:
        p.add_argument(o.flag, action="store_true", help=o.help)
        return
    kind = _number(o.flag.lstrip('-'), o.kind, o.minimum, o.above) if o.kind in (int, float) and ranged else o.kind
    if o.repeat and o.min_items > 1:
        p.add_argument(o.flag, type=kind, nargs="+", help=o.help)
    else:
        p.add_argument(o.flag, type=kind, action="append" if o.repeat else "store", default=o.default, help=o.help)


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("method", help="a registered method (see `thinwire list`)")
    p.add_argument("--workload", required=True, help="a problem or workload (see `thinwire list`)")
    p.add_argument("--steps", type=_number("steps", int, 1), default=RUN.steps, help=f"training steps (default {RUN.steps})")
    p.add_argument("--seed", type=_number("seed", int, 0), default=RUN.seed,
                   help=f"seed of data, initialisation, batches and the method's random streams (default {RUN.seed})")
    p.add_argument("--dtype", default=RUN.dtype, help=f"float32 or float64 (default {RUN.dtype})")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="a method parameter, repeatable")
    p.add_argument("--wparam", action="append", metavar="KEY=VALUE", help="a workload parameter, repeatable")
    p.add_argument("--eval-every", type=_number("eval_every", int, 1), default=RUN.eval_every,
                   help=f"evaluate the averaged model every N steps (default {RUN.eval_every})")
    p.add_argument("--out", type=Path, help="results directory (default results/runs/<mode>-<method>-<workload>-s<seed>): "
                   "a new path, or this run's own directory")
    p.add_argument("--force", action="store_true", help="replace a finished run in --out (never anything else)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--experiment", default="", help="group name for figures (default: the workload)")
    p.add_argument("--label", default="", help="name of this method variant in figures (default: the method)")
    p.add_argument("--cluster-name", default="", help="where this runs, recorded for the report "
                   "(default: slurm's cluster name, else local:<host>)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="thinwire", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the registered methods, problems and workloads, one per line")

    check = sub.add_parser("check", help="read a runs sheet and plan its runs as the workflow does, without "
                           "running anything (Snakemake itself tracebacks on a sheet that is not text)")
    check.add_argument("sheet", type=Path, help="a runs sheet (e.g. config/quick.yaml)")

    sim = sub.add_parser("sim", help="run a method with all workers simulated in this process")
    _run_args(sim)
    sim.add_argument("--workers", type=_number("workers", int, 1), default=RUN.workers,
                     help=f"number of simulated workers (default {RUN.workers})")
    sim.add_argument("--array-lib", choices=("numpy", "torch"), help="array library (default: the workload's)")

    run = sub.add_parser("run", help="run a method as this process's rank (under torchrun or mpiexec)")
    _run_args(run)
    run.add_argument("--backend", default="auto", help="auto (default: mpi under mpiexec, else torch), torch, mpi, "
                     "deepspeed (DeepSpeed's own OnebitAdam, for onebit-adam with deepspeed_compat=true), or ddp "
                     "(PyTorch's DDP hooks: powerSGD_hook for powersgd with ddp_compat=true, bf16_compress_hook for bf16)")
    run.add_argument("--device", help="torch device: cpu (gloo), cuda (this rank's GPU, NCCL) or cuda:N "
                     "(default cuda when CUDA is present, else cpu)")
    run.add_argument("--busbw-mb", type=_number("busbw-mb", float, 0), help="measure all-reduce bus bandwidth with this many MB before "
                     "training, kept in meta.json (default 64 on GPUs, 0 = off on CPUs)")
    run.add_argument("--timeout", type=_number("timeout", float, above=0), default=RUN.collective_timeout_s,
                     help=f"seconds any collective may take (default {RUN.collective_timeout_s:g})")
    run.add_argument("--world-size", type=_number("world-size", int, 1), help="the planned number of ranks: stop before training if the "
                     "launcher started another (the workflow always passes it)")
    run.add_argument("--inject-failure", metavar="RANK:STEP:HOW",
                     help="for testing: make RANK exit, hang, or turn its model to NaN at STEP (HOW: exit, hang, nan)")

    model = sub.add_parser("model", help="price runs' communication logs on a described cluster")
    model.add_argument("runs", nargs="+", type=Path, help="run directories")
    model.add_argument("--cluster", required=True, type=Path, help="cluster description (YAML)")
    for option in MODEL_OPTIONS:
        _add(model, option)
    model.add_argument("--out", required=True, type=Path, help="output CSV")
    model.add_argument("--summary", type=Path, help="output CSV of break-even bandwidths and times to target")

    agg = sub.add_parser("aggregate", help="concatenate runs and model predictions into one long table")
    agg.add_argument("runs", nargs="*", type=Path, help="run directories")
    agg.add_argument("--model", nargs="*", type=Path, default=[], help="model CSVs from `thinwire model`")
    agg.add_argument("--out", required=True, type=Path)

    rep = sub.add_parser("report", help="claim verdicts, figures and the HTML report from a results table")
    rep.add_argument("table", type=Path)
    rep.add_argument("--out", type=Path, default=Path("reports"))
    rep.add_argument("--claims", type=Path, help="claims folder (default: the packaged claims)")
    rep.add_argument("--studies", type=Path, help="folder of study tables (from `thinwire study`)")

    val = sub.add_parser(
        "validate", help="performance model vs measured step times on shaped links (root)",
        description="Runs every method of the sheet as 2 gloo ranks across network namespaces, links shaped "
                    "with tc tbf at each of the sheet's rates, in `repeats` rounds; in a round each method's "
                    "calibration (unshaped) and its runs at every rate run back to back, and the model predicts "
                    "each run from the calibration beside it. Prints the errors, the runs' spread and what a "
                    "perfect model would show at that noise. About 10 minutes a round for config/validation.yaml "
                    "on 2 cores; finished runs are kept under --work, so an interrupted run (or a larger "
                    "`repeats`) resumes.")
    val.add_argument("sheet", type=Path, help="validation sheet (e.g. config/validation.yaml)")
    val.add_argument("--work", type=Path, default=Path("results/validation"),
                     help="run directories and link measurements, kept for resuming (default results/validation)")
    val.add_argument("--out", type=Path, default=Path("reports/validation.csv"), help="the table (CSV)")

    study = sub.add_parser("study", help="a measurement that is not a training run, as a table")
    study.add_argument("name", choices=sorted(STUDIES),
                       help="; ".join(f"{name}: {s.help}" for name, s in sorted(STUDIES.items())))
    study.add_argument("--out", required=True, type=Path, help="output CSV")
    for option in STUDY_OPTIONS.values():
        _add(study, option, ranged=False)  # study_kwargs checks them, as it does a runs sheet's
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
        _dispatch(args)
    except CollectiveError as e:
        _error(str(e))
        # Peers may be dead or stuck: leave now rather than hang in process-group teardown.
        os._exit(1)
    except ThinwireError as e:
        _error(" ".join(str(e).split()))
        return 2
    except OSError as e:  # a file that cannot be read or written: name it, no traceback
        where = f"{e.filename}: " if e.filename else ""
        _error(f"{where}{e.strerror or e}")
        return 1
    return 0


def _error(message: str) -> None:
    """The one-line error, on stderr and, under torchrun, in the file it reads a failed rank's error from."""
    from thinwire.torchrun import record_error

    line = f"thinwire: error: {message}"
    print(line, file=sys.stderr, flush=True)
    record_error(line)


def _dispatch(args: argparse.Namespace) -> None:
    """Run the parsed command."""
    if args.command == "list":
        _list()
    elif args.command == "check":
        from thinwire.config import load, plan

        config, runs = load(args.sheet)
        plan(config, runs)
        print(f"{args.sheet}: {len(runs)} runs planned")
    elif args.command == "sim":
        from thinwire.execute import run_sim

        meta = run_sim(_spec(args), args.workers, _out(args, "sim"), args.array_lib, not args.quiet, args.force)
        _summary(meta)
    elif args.command == "run":
        from thinwire.execute import run_real

        meta = run_real(_spec(args), _out(args, "real"), args.backend, args.timeout, args.device,
                        not args.quiet, args.inject_failure, args.busbw_mb, args.world_size, args.force)
        if meta is not None:
            _summary(meta)
    elif args.command == "model":
        from thinwire.simulators.perfmodel import model_runs

        _check_model(args)
        model_runs(args.runs, args.cluster, args.out, args.target_params, args.flops_per_step, args.bandwidth,
                   tokens_per_step=args.tokens_per_step, overlap=args.overlap, buckets=args.buckets,
                   baseline=args.baseline, speedups=args.speedup, target_loss_factor=args.target_loss_factor,
                   summary_out=args.summary, name=args.name, target_shapes=args.target_shapes)
    elif args.command == "aggregate":
        from thinwire.analysis.table import aggregate

        _file_out(args.out)
        aggregate(args.runs, args.model, args.out)
    elif args.command == "report":
        from thinwire.analysis.build import build_report

        build_report(args.table, args.out, args.claims, args.studies)
    elif args.command == "validate":
        from thinwire.validate import summary, validate

        print(summary(validate(args.sheet, args.work, args.out)))
    elif args.command == "study":
        _study(args)


def _study(args: argparse.Namespace) -> None:
    """A registered study (thinwire/options.py) with its checked options."""
    kwargs = study_kwargs(args.name, {key: getattr(args, key) for key in STUDY_OPTIONS})
    _file_out(args.out)
    try:
        STUDIES[args.name].run(args.out, **kwargs)
    except ValueError as e:
        raise ThinwireError(f"study {args.name}: {e}") from None


def _file_out(path: Path) -> None:
    """An output file's place, checked without writing anything: not a directory, under a writable folder."""
    if path.is_dir():
        raise ThinwireError(f"--out {path} is a directory; give a file name")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ThinwireError(f"--out {path} cannot be written ({folder} is not a writable folder)")


def _check_model(args: argparse.Namespace) -> None:
    """Before pricing: every path is a run directory, the outputs can be written, and a baseline is among
    the runs when speedups or a break-even summary are asked for (else they would be silently empty)."""
    metas = []
    for d in args.runs:
        try:
            meta = json.loads((d / "meta.json").read_text())
        except (OSError, ValueError):
            raise ThinwireError(f"{d} is not a thinwire run directory (no readable meta.json)") from None
        missing = [f for f in ("trajectory.csv", "commlog.csv") if not (d / f).is_file()]
        if missing or not isinstance(meta, dict) or not {"run", "method", "workload"} <= set(meta):
            raise ThinwireError(f"{d} is not a complete thinwire run directory "
                                f"({'no ' + ', '.join(missing) if missing else 'meta.json lacks run, method, workload'})")
        metas.append(meta)
    from thinwire.simulators.perfmodel import load_cluster

    load_cluster(args.cluster)
    for out in (args.out, args.summary):
        if out is not None:
            _file_out(out)
    if (args.speedup or args.summary) and not any(args.baseline in (m["method"], m.get("label")) for m in metas):
        raise ThinwireError(f"--baseline {args.baseline}: no run among the {len(metas)} given has this method or "
                            f"label, so there is no speedup or break-even to compute: add the dense baseline's run "
                            f"(e.g. thinwire sim {args.baseline} ...) or name it with --baseline")


def _summary(meta: dict) -> None:
    print(f"{meta['run']}: {meta['status']} after {meta['steps_done']} steps, "
          f"{meta['stated_bits_per_param']:.4g} bits/param stated{'; ' + meta['message'] if meta['message'] else ''}")
