"""Check the performance model against measured step times on shaped links.

    sudo thinwire validate config/validation.yaml --work results/validation --out reports/validation.csv

For each link rate, the harness builds 2 network namespaces behind a switch (workloads/shaped.py),
measures the link with gloo (workloads/linkbench.py: alpha and beta of the model's ring formula) and
runs every method of the sheet as 2 real gloo ranks across it. The model then predicts each run's
step time from quantities measured elsewhere:

    predicted = local + priced communication
    priced    = the run's own CommLog priced by simulators/perfmodel.py with the alpha and beta that
                the link micro-benchmark measured at that rate
    local     = the step time of a calibration run of the same method where the runs run: 2 ranks
                in their own unshaped namespaces behind the same bridge, minus its own CommLog priced on
                that link (measured the same way): the gradient, encode and decode, and what the link
                does not explain (the veth/bridge stack's cost per call, the ranks waiting for each
                other); measured on another run, not assumed. (Calibrating on loopback left the
                namespaces' stack unpriced: the model was too fast in 31 of 36 cases.)

and the table compares it with the measured step time, per case, with the relative error and the
speedup over dense SGD both ways. A run's step time is over its steps after `skip`, by the sheet's
`step_stat` (`step_time`): their mean, or the median of each kind of step weighted by the kinds' shares,
which stalls of the shared cores move much less.

Repeats (`repeats` in the sheet): two runs of the same method on the same link differ by up to ~25% in
step time here (2 cores shared by 2 ranks and the network stack), more than single steps average out,
and whole blocks of runs drift 10-20% together over minutes. Each calibration and each measured run is
then repeated in rounds, and within a round a method's calibration and its runs at every rate run back
to back (`measure_round`), so each round's prediction comes from a calibration taken beside its run in
time; a case's error is the median over the rounds of predicted / measured - 1. The relative spread
(max - min) / median of the measured runs of a case, and of its rounds' predicted / measured, is
reported next to its error: the noise floor that no model of this machine can beat. The claims read
the errors against the rounds' noise, each round resampled from the pooled spread of all rounds
(`noise_floor`: what a perfect model would show; `bound_test`: what a model erring by the claim's bound
would show), so noise is not read as a result (analysis/quantities.py validation_error). Every run
directory and link measurement is kept, so an
interrupted validation resumes where it stopped. Needs root for the namespaces; without
it the command says why and writes nothing.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from thinwire.algorithms.comm import ThinwireError
from thinwire.launch import thread_env

COLUMNS = ["case", "method", "label", "bandwidth", "bandwidth_mbit", "link_gbps", "link_latency_us",
           "repeats", "local_s", "comm_predicted_s", "comm_measured_s", "predicted_s", "measured_s", "error",
           "local_spread", "measured_spread", "error_spread", "predicted_speedup", "measured_speedup",
           "measured_runs_s", "calibration_runs_s", "round_errors"]


def load_sheet(path: Path) -> dict[str, Any]:
    try:
        sheet = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ThinwireError(f"validation sheet {path}: {e}") from None
    for key in ("workload", "steps", "skip", "rates_mbit", "methods"):
        if key not in sheet:
            raise ThinwireError(f"validation sheet {path} has no {key!r}")
    if not (isinstance(sheet.get("repeats", 1), int) and sheet.get("repeats", 1) >= 1):
        raise ThinwireError(f"validation sheet {path}: repeats must be an integer >= 1, got {sheet['repeats']!r}")
    if sheet.get("step_stat", "mean") not in STEP_STATS:
        raise ThinwireError(f"validation sheet {path}: step_stat must be one of {STEP_STATS}, "
                            f"got {sheet['step_stat']!r}")
    if not 0 <= sheet["skip"] < sheet["steps"]:
        raise ThinwireError(f"validation sheet {path}: skip must be in [0, steps), got {sheet['skip']}")
    labels = [_label(m) for m in sheet["methods"]]
    if "sgd" not in labels:
        raise ThinwireError(f"validation sheet {path}: speedups need a method labelled 'sgd' (dense baseline)")
    if len(set(labels)) != len(labels):
        raise ThinwireError(f"validation sheet {path}: method labels must be unique, got {labels}")
    return sheet


def _rate_name(rate: float | None) -> str:
    return "unshaped" if rate is None else f"{rate:g}mbit"


def _run_argv(sheet: dict, method: dict, out: Path) -> list[str]:
    """`thinwire run ...` arguments (after the module name) of one method's run."""
    argv = ["run", method["method"], "--workload", sheet["workload"],
            "--steps", str(sheet["steps"]), "--eval-every", str(sheet["steps"]), "--quiet",
            "--timeout", str(sheet.get("timeout_s", 120)), "--out", str(out),
            "--experiment", "validation", "--label", _label(method)]
    for k, v in (method.get("params") or {}).items():
        argv += ["--param", f"{k}={v}"]
    for k, v in (sheet.get("workload_params") or {}).items():
        argv += ["--wparam", f"{k}={v}"]
    return argv


def _done(out: Path, sheet: dict, method: dict) -> bool:
    """A kept run counts only if it ran what the sheet asks now (the sheet may have changed since)."""
    try:
        meta = json.loads((out / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    same = (meta["method"] == method["method"] and meta["steps"] == sheet["steps"]
            and meta["workload"] == sheet["workload"]
            and all(meta["params"].get(k) == v for k, v in (method.get("params") or {}).items())
            and all(meta["workload_params"].get(k) == v for k, v in (sheet.get("workload_params") or {}).items()))
    if not same:
        shutil.rmtree(out)
    return same


def _wait_all(procs: list[subprocess.Popen], what: str, timeout_s: float) -> None:
    try:
        codes = [p.wait(timeout=timeout_s) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        raise ThinwireError(f"{what}: ranks did not finish within {timeout_s:g} s") from None
    if any(codes):
        raise ThinwireError(f"{what}: ranks exited with {codes}")


# One core per rank: every thread pool at 1 (not only OpenMP's: MKL_NUM_THREADS inherited from
# Snakemake's job, 2 here, ran four BLAS threads on two cores and slowed runs A-I's steps 2-4x).
RANK_ENV = {**thread_env(1), "PYTHONUNBUFFERED": "1"}


def _setups(rates: list[float | None], work: Path) -> list[tuple[str, float | None, Path]]:
    """(name, rate, directory) of the calibration's unshaped namespaces and of each rate's, in sheet order."""
    return ([("calibration", None, work / "calibration" / _rate_name(None))]
            + [(_rate_name(rate), rate, work / _rate_name(rate)) for rate in rates])


def _label(method: dict) -> str:
    return method.get("label", method["method"])


def measure_round(sheet: dict, rates: list[float | None], work: Path, rep: int,
                  progress: bool = False) -> dict[str, tuple[Path, list[Path]]]:
    """Round `rep`: each setup's (the calibration's unshaped namespaces, then each rate's) link benchmark
    (once, in the first round that lacks it) and every method's run in it, as {setup name: (link file,
    one run directory per method)}.

    All setups stand at once, each in its own namespaces, and the round goes method by method: a method's
    calibration and its runs at every rate run back to back (their order rotated from method to method
    and round to round, so no setup always runs first), so that a case's run and the calibration that
    predicts it are minutes apart at most. This machine's step times drift by 10-20% over blocks of
    minutes (runs F and G, which calibrated every method before measuring any rate: a calibration ran
    10-20 minutes from its runs), and a drift both runs share cancels in the prediction's error."""
    from contextlib import ExitStack

    from thinwire.workloads.shaped import ShapedNet

    setups = _setups(rates, work)
    methods = sheet["methods"]
    runs = {name: [d / f"rep{rep}" / _label(m) for m in methods] for name, _, d in setups}
    result = {name: (d / "link.json", runs[name]) for name, _, d in setups}
    if all(link.exists() and all(_done(r, sheet, m) for r, m in zip(rs, methods)) for link, rs in result.values()):
        return result
    limit = sheet.get("run_timeout_s", 600)
    with ExitStack() as stack:
        nets = {name: stack.enter_context(ShapedNet(2, rate, prefix=f"tw{os.getpid()}s{i}"))
                for i, (name, rate, _) in enumerate(setups)}
        for name, (link, _) in result.items():
            if not link.exists():
                if progress:
                    print(f"round {rep + 1}: link benchmark at {name}", file=sys.stderr)
                bench = [sys.executable, "-m", "thinwire.workloads.linkbench", "--out", str(link)]
                _wait_all([nets[name].popen(r, bench, env=RANK_ENV, stdout=subprocess.DEVNULL) for r in range(2)],
                          f"link benchmark at {name}", limit)
        names = list(nets)
        for j, method in enumerate(methods):
            if progress:
                print(f"round {rep + 1}: {_label(method)} ({j + 1} of {len(methods)})", file=sys.stderr)
            shift = (rep + j) % len(names)
            for name in names[shift:] + names[:shift]:
                out = runs[name][j]
                if not _done(out, sheet, method):
                    argv = [sys.executable, "-m", "thinwire", *_run_argv(sheet, method, out)]
                    _wait_all([nets[name].popen(r, argv, env=RANK_ENV, stdout=subprocess.DEVNULL)
                               for r in range(2)], f"{method['method']} at {name}", limit)
    return result


def _timing(run: Path, skip: int) -> pd.DataFrame:
    t = pd.read_csv(run / "timing.csv")
    return t[t["step"] >= skip]


def priced_on(run: Path, cluster: Any, skip: int) -> float:
    """Mean seconds per step (after `skip`) of the run's CommLog priced on a perfmodel Cluster whose world
    is the run's (calls over the whole run stay over the whole cluster)."""
    from thinwire.simulators.perfmodel import step_comm_times

    steps = _timing(run, skip)["step"]
    per_step = step_comm_times(pd.read_csv(run / "commlog.csv"), cluster.world_size, cluster, 1.0)
    return float(per_step.reindex(steps).fillna(0.0).mean())


def priced(run: Path, link: Path, skip: int) -> float:
    """Mean seconds per step (after `skip`) of the run's CommLog priced on a measured 2-rank link."""
    from thinwire.simulators.perfmodel import Cluster, Tier

    fit = json.loads(link.read_text())
    tier = Tier(fit["bandwidth_gbps"], fit["latency_us"])
    return priced_on(run, Cluster("link", 2, 1, 1.0, tier, tier), skip)


def _spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values)


STEP_STATS = ("mean", "median")


def step_time(run: Path, column: str, skip: int, stat: str = "mean") -> float:
    """One run's time per step (`column` of timing.csv, steps after `skip`).

    mean    the mean over the steps.
    median  robust to stalls: the steps are grouped by what they sent (their CommLog rows: op, bytes,
            category), and the groups' median times are averaged with the groups' shares of the steps as
            weights. A method that communicates every step has one group: the median step. One that
            syncs every tau steps (local SGD, DSM-LS, CSER) keeps its mix of sync and local steps, which a
            plain median would drop (with tau = 4 it is a local step: no communication at all), so the
            priced communication, a mean over all steps, still applies to it."""
    if stat not in STEP_STATS:
        raise ThinwireError(f"step statistic must be one of {STEP_STATS}, got {stat!r}")
    t = _timing(run, skip)
    if stat == "mean":
        return float(t[column].mean())
    log = pd.read_csv(run / "commlog.csv")
    keys = (log["op"].astype(str) + ":" + log["sent"].astype(str) + ":" + log["category"].astype(str))
    kinds = keys.groupby(log["step"]).agg(lambda k: ",".join(sorted(k)))
    kind = t["step"].map(kinds).fillna("")
    share = kind.value_counts(normalize=True)
    return float((t[column].groupby(kind).median() * share).sum())


def _medians(runs: list[Path], calibrations: list[Path], price_calibration, price_run, skip: int,
             stat: str = "mean") -> dict[str, float]:
    """One case, round by round: round i's prediction is its calibration's local time (the calibration's
    step time minus its own CommLog priced by `price_calibration`) plus the round's run's CommLog priced by
    `price_run`, against that run's measured step time (each `step_time` with `stat` over the steps after
    `skip` of one run). The rounds pair a run with the calibration taken beside it in time, so the drift
    of the machine over minutes reaches both; the case's error is the median over the rounds of
    predicted / measured - 1 (`round_errors` keeps each round's). Also the medians over the rounds of
    the local time, the priced and measured communication and the step times, and the spreads."""
    if len(runs) != len(calibrations):
        raise ThinwireError(f"{len(runs)} runs and {len(calibrations)} calibrations: each round needs both")

    def per_step(run: Path, column: str) -> float:
        return step_time(run, column, skip, stat)

    calibrated = [per_step(c, "wall_s") for c in calibrations]
    locals_ = [t - price_calibration(c) for t, c in zip(calibrated, calibrations)]
    comms = [price_run(r) for r in runs]
    measured = [per_step(r, "wall_s") for r in runs]
    ratios = [(loc + comm) / m for loc, comm, m in zip(locals_, comms, measured)]
    local, comm = statistics.median(locals_), statistics.median(comms)
    return {"repeats": len(runs), "local_s": local, "comm_predicted_s": comm,
            "comm_measured_s": statistics.median(per_step(r, "comm_s") for r in runs),
            "predicted_s": local + comm, "measured_s": statistics.median(measured),
            "error": statistics.median(ratios) - 1,
            "local_spread": _spread(locals_), "measured_spread": _spread(measured), "error_spread": _spread(ratios),
            "measured_runs_s": _joined(measured), "calibration_runs_s": _joined(calibrated),
            "round_errors": _joined([q - 1 for q in ratios])}


def _joined(values: list[float]) -> str:
    """Each run's step time, in the order of the rounds (the table keeps them for `noise_floor`)."""
    return ";".join(f"{v:.9g}" for v in values)


def _runs(table: pd.DataFrame, column: str) -> list[np.ndarray]:
    return [np.array(v.split(";"), dtype=float) for v in table[column].astype(str)]


def noise_pool(table: pd.DataFrame) -> np.ndarray:
    """`noise_floor`'s pool: each round's predicted / measured relative to its case's rounds (exp of its
    log's residual about their mean, scaled by sqrt(n / (n - 1))), for every case, in table order. A
    round's ratio carries the noise of its measured run and of its calibration, and whatever moved both
    (they ran minutes apart at most, so the machine's slow drift cancels in it)."""
    def residuals(x: np.ndarray) -> np.ndarray:
        logs = np.log(x)
        return (logs - logs.mean()) * math.sqrt(len(x) / (len(x) - 1))

    return np.exp(np.concatenate([residuals(1 + x) for x in _runs(table, "round_errors")]))


def _resampled_errors(table: pd.DataFrame, rng: np.random.Generator, resamples: int,
                      model_error: np.ndarray | None = None) -> np.ndarray:
    """|error| (resamples, cases) of a model whose error on each case is `model_error` (resamples, cases;
    none: a perfect model) read through rounds drawn from the table's pooled noise: each case's rounds'
    predicted / measured drawn from `noise_pool`, as many as it has, and their median r, so the error is
    (1 + e) r - 1."""
    pool = noise_pool(table)
    counts = [len(x) for x in _runs(table, "round_errors")]
    errors = np.empty((resamples, len(table)))
    for j, n in enumerate(counts):
        r = np.median(rng.choice(pool, (resamples, n)), axis=1)
        e = 0.0 if model_error is None else model_error[:, j]
        errors[:, j] = np.abs((1 + e) * r - 1)
    return errors


def _single_runs(table: pd.DataFrame) -> bool:
    return min(map(len, _runs(table, "round_errors"))) < 2


def noise_floor(table: pd.DataFrame, stat: str, q: float = 0.95, resamples: int = 2000, seed: int = 0) -> float:
    """What a perfect model would show at these runs' noise: the q-quantile, over `resamples` resamples,
    of the median or max over the table's cases of |error| when the model's only error is the noise of
    the runs it reads.

    The noise is each round's predicted / measured relative to its case's other rounds: residuals of its
    log about their mean (scaled by sqrt(n / (n - 1)) for the mean they were taken about), pooled over
    the table (one noise for every case; with 3 rounds a case's outlier is shared out among its
    residuals, so tails are shrunk). A resample draws every case's rounds from that pool, as many as it
    has, and takes their median as `_medians` does. Infinite when a case has a single round (its noise is
    unknown). q, resamples and the seed are fixed (the defaults), never chosen per table."""
    if stat not in ("median", "max"):
        raise ThinwireError(f"noise_floor: stat must be median or max, got {stat!r}")
    if _single_runs(table):
        return math.inf
    errors = _resampled_errors(table, np.random.default_rng(seed), resamples)
    return float(np.quantile(getattr(np, stat)(errors, axis=1), q))


def _bound_patterns(stat: str, n: int, bound: float, side: str) -> list[np.ndarray]:
    """Each case's |model error| in the configurations, taken as least favourable, that put the stat over n
    cases exactly at the bound and push the observed stat furthest down (side "below": the true stat >=
    bound, reading reproduced wrongly) or up ("above": the true stat <= bound, reading not reproduced
    wrongly), in the order the cases are assigned to them. The max: one case at the bound and the rest
    exact / every case at it. The median (the (n // 2 + 1)-th smallest for odd n, the mean of the middle
    two for even n): n // 2 + 1 cases at the bound, the rest exact / wrong without limit; for even n also
    the middle two at 0 and twice the bound (below: half the cases exact and half at twice the bound;
    above: one at twice the bound, half exact, the rest wrong without limit)."""
    big = 1e9  # an error without limit: its case sorts last whatever its noise
    if stat == "max":
        return [np.r_[bound, np.zeros(n - 1)]] if side == "below" else [np.full(n, bound)]
    r, half = n // 2 + 1, n // 2
    if side == "below":
        patterns = [np.r_[np.full(r, bound), np.zeros(n - r)]]
        if n % 2 == 0:
            patterns.append(np.r_[np.full(half, 2 * bound), np.zeros(half)])
    else:
        patterns = [np.r_[np.full(r, bound), np.full(n - r, big)]]
        if n % 2 == 0:
            patterns.append(np.r_[2 * bound, np.zeros(half), np.full(half - 1, big)])
    return patterns


def bound_test(table: pd.DataFrame, stat: str, bound: float, resamples: int = 2000,
               seed: int = 0) -> tuple[float, float]:
    """(below, above): the claim "stat (median or max) over the cases of |error| <= bound" reads reproduced
    when the observed stat is under `below`, not reproduced when it is over `above`, inconclusive between.

    Both come from the resampling of `noise_floor` (each case's rounds drawn from the pooled noise of all
    rounds, assumed independent and alike for every case) with the model wrong by a chosen amount on
    each case, in each configuration (taken as least favourable) that puts the model's own stat exactly
    at the bound and could push the observed stat furthest (`_bound_patterns`), each with the signs all
    +, all - or drawn at random (the cases are alike, so which case takes which error does not matter):

    below  the lowest 5% quantile over those configurations: in each of them a model whose stat is at the
           bound shows an observed stat under it in at most 5% of resamples.
    above  the highest 95% quantile: in each, a model whose stat is at the bound shows one over it in at
           most 5% of resamples.

    The rounds are assumed independent: drift that moved a whole case's rounds together would make both
    too narrow (each round pairs a run with a calibration taken beside it, which cancels the drift that
    moved whole blocks of runs 13-22% in runs F and G, whose calibrations ran 10-20 minutes from their
    runs). (-inf, inf) when a case has one round (the noise is unknown: nothing is decided). Quantiles,
    resamples and the seed are fixed (the defaults)."""
    if stat not in ("median", "max"):
        raise ThinwireError(f"bound_test: stat must be median or max, got {stat!r}")
    if _single_runs(table):
        return -math.inf, math.inf
    rng = np.random.default_rng(seed)
    n = len(table)
    fn = getattr(np, stat)
    quantiles = {"below": [], "above": []}
    for side, q in (("below", 0.05), ("above", 0.95)):
        for pattern in _bound_patterns(stat, n, bound, side):
            magnitude = np.broadcast_to(pattern, (resamples, n))
            for signs in (1.0, -1.0, rng.choice([-1.0, 1.0], (resamples, n))):
                errors = _resampled_errors(table, rng, resamples, signs * magnitude)
                quantiles[side].append(float(np.quantile(fn(errors, axis=1), q)))
    return min(quantiles["below"]), max(quantiles["above"])


def predict(runs: list[Path], calibrations: list[Path], calibration_link: Path, link: Path,
            skip: int, stat: str = "mean") -> dict[str, float]:
    """One case: medians over the rounds of the calibration's local time, the priced and measured
    communication and the measured step time (each `step_time` with `stat` over the steps after `skip`
    of one run)."""
    fit = json.loads(link.read_text())
    return {"link_gbps": fit["bandwidth_gbps"], "link_latency_us": fit["latency_us"],
            **_medians(runs, calibrations, lambda c: priced(c, calibration_link, skip),
                       lambda r: priced(r, link, skip), skip, stat)}


def validate(sheet_path: Path, work: Path, out: Path, progress: bool = True) -> pd.DataFrame:
    from thinwire.workloads.shaped import unavailable

    sheet = load_sheet(sheet_path)
    reason = unavailable()
    if reason:
        raise ThinwireError(f"shaped-link validation skipped: {reason}")
    rates = [None if r in (None, "unshaped") else float(r) for r in sheet["rates_mbit"]]
    labels = [_label(m) for m in sheet["methods"]]
    rounds = [measure_round(sheet, rates, work, rep, progress) for rep in range(sheet.get("repeats", 1))]
    calibration_link = rounds[0]["calibration"][0]
    calibrations = {label: [r["calibration"][1][j] for r in rounds] for j, label in enumerate(labels)}
    links = {rate: rounds[0][_rate_name(rate)][0] for rate in rates}
    runs = {(rate, label): [r[_rate_name(rate)][1][j] for r in rounds] for rate in rates
            for j, label in enumerate(labels)}
    rows = []
    for rate in rates:
        for m, label in zip(sheet["methods"], labels):
            row = predict(runs[rate, label], calibrations[label], calibration_link, links[rate], sheet["skip"],
                          sheet.get("step_stat", "mean"))
            rows.append({"case": f"{sheet['workload']}@{_rate_name(rate)}", "method": m["method"], "label": label,
                         "bandwidth": _rate_name(rate), "bandwidth_mbit": math.nan if rate is None else rate, **row})
    table = pd.DataFrame(rows)
    for kind in ("predicted", "measured"):
        base = table[table["label"] == "sgd"].set_index("bandwidth")[f"{kind}_s"]
        table[f"{kind}_speedup"] = table["bandwidth"].map(base) / table[f"{kind}_s"]
    table = table[COLUMNS]
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table


def summary(table: pd.DataFrame) -> str:
    err = table["error"].abs()
    worst = err.idxmax()
    return (f"{len(table)} cases ({int(table['repeats'].min())} rounds each): median |error| {err.median():.1%}, "
            f"mean {err.mean():.1%}, max {err.max():.1%} ({table.loc[worst, 'label']} at "
            f"{table.loc[worst, 'bandwidth']}, its measured runs spread {table.loc[worst, 'measured_spread']:.1%}); "
            f"median spread of measured runs {table['measured_spread'].median():.1%}, of the rounds' predicted / "
            f"measured {table['error_spread'].median():.1%}"
            + (f"; a perfect model at these runs' noise: median {noise_floor(table, 'median'):.1%}, "
               f"max {noise_floor(table, 'max'):.1%} (95% of resamples)" if table["repeats"].min() > 1 else ""))


# --- Multi-node: the runs of `make cluster-test` priced on its two link tiers (tests/cluster) ----------
# The same method as above on a cluster of nodes: a case runs as `nodes` x `ranks_per_node` gloo ranks
# across the nodes (intra-node traffic over a node's loopback, inter-node traffic over the shaped links),
# the model prices its CommLog on the test cluster described with both tiers, each tier's alpha and beta
# measured there by the link micro-benchmark, and the local time comes from a one-node run of the same
# case (its step time minus its own CommLog priced on the link its ranks used). The harness that runs
# them on the real Slurm is tests/cluster/validate_multinode.py.

MULTINODE_COLUMNS = ["case", "method", "label", "nodes", "ranks_per_node", "bandwidth", "intra_gbps",
                     "intra_latency_us", "inter_gbps", "inter_latency_us", "repeats", "local_s", "comm_predicted_s",
                     "comm_measured_s", "predicted_s", "measured_s", "error", "local_spread", "measured_spread",
                     "error_spread", "measured_runs_s", "calibration_runs_s", "round_errors"]


@dataclass(frozen=True)
class MultinodeCase:
    """One case's runs, round by round: the multi-node runs and their one-node calibrations."""
    name: str
    method: str
    label: str
    nodes: int
    ranks_per_node: int
    runs: tuple[Path, ...]
    calibrations: tuple[Path, ...]


def _tier_facts(link: Path) -> dict[str, dict]:
    fit = json.loads(link.read_text())
    rounds = f", median of {len(fit['rounds'])} rounds" if "rounds" in fit else ""
    source = f"link micro-benchmark (thinwire.workloads.linkbench, {fit['world_size']} ranks{rounds}), {link}"
    return {k: {"value": float(fit[k]), "label": "measured", "source": source} for k in ("bandwidth_gbps", "latency_us")}


def median_link(links: list[Path], out: Path) -> Path:
    """One link fit from several of the same link (rounds): the median latency and the median bandwidth,
    with the rounds' fits kept in the file."""
    fits = [json.loads(p.read_text()) for p in links]
    out.write_text(json.dumps({"world_size": fits[0]["world_size"], "op": fits[0]["op"],
                               "latency_us": statistics.median(f["latency_us"] for f in fits),
                               "bandwidth_gbps": statistics.median(f["bandwidth_gbps"] for f in fits),
                               "rounds": [str(p) for p in links]}, indent=1) + "\n")
    return out


def measured_cluster(described: Path, intra: Path, inter: Path, out: Path):
    """The test cluster as its file describes it, each tier's bandwidth and latency replaced by what the
    link micro-benchmark measured on it (labelled measured, the benchmark's file as source); written to
    `out` next to the runs and loaded as the model loads every cluster file (perfmodel.load_cluster)."""
    from thinwire.simulators.perfmodel import load_cluster

    load_cluster(described)  # the described file itself must be a valid cluster
    d = yaml.safe_load(Path(described).read_text())
    d["tiers"] = {"intra": _tier_facts(intra), "inter": _tier_facts(inter)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# {described} with both tiers as measured on the running test cluster.\n"
                   + yaml.safe_dump(d, sort_keys=False))
    return load_cluster(out)


def multinode_table(cases: list[MultinodeCase], cluster, calibration_link: Path, skip: int,
                    stat: str = "median") -> pd.DataFrame:
    """Predicted against measured step time per case: the runs priced on `cluster` laid out as the case
    (its nodes, its ranks per node: groups inside a node on the intra tier, groups across nodes on the
    inter tier, perfmodel's rule), the calibrations' own logs on one node priced on `calibration_link`.
    Step times are `step_time`'s median by default: steps of ~1 ms on cores shared with the machine's
    other work stall now and then for 10 ms and more, and a mean over a few hundred steps counts the
    stalls (the link micro-benchmark's times are medians too)."""
    from thinwire.simulators.perfmodel import Cluster, Tier

    fit = json.loads(calibration_link.read_text())
    loopback = Tier(fit["bandwidth_gbps"], fit["latency_us"])
    rows = []
    for c in cases:
        world = c.nodes * c.ranks_per_node
        laid_out = replace(cluster, nodes=c.nodes, gpus_per_node=c.ranks_per_node)
        one_node = Cluster("calibration", 1, world, 1.0, loopback, loopback)
        row = _medians(list(c.runs), list(c.calibrations), lambda r, one_node=one_node: priced_on(r, one_node, skip),
                       lambda r, laid_out=laid_out: priced_on(r, laid_out, skip), skip, stat)
        rows.append({"case": c.name, "method": c.method, "label": c.label, "nodes": c.nodes,
                     "ranks_per_node": c.ranks_per_node, "bandwidth": f"{c.nodes}x{c.ranks_per_node}",
                     "intra_gbps": cluster.intra.bandwidth_gbps, "intra_latency_us": cluster.intra.latency_us,
                     "inter_gbps": cluster.inter.bandwidth_gbps, "inter_latency_us": cluster.inter.latency_us, **row})
    return pd.DataFrame(rows)[MULTINODE_COLUMNS]
