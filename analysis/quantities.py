"""The quantities a claim measures: each reads the results table (and, for studies and the model, the
study tables) and returns a Measurement, its value with its standard error and evidence.

A claim names one by `quantity: {name: ..., ...}` (analysis/claims.py); `@quantity` registers it in
QUANTITIES under its function's name, and the claim's other keys are its arguments. The helpers they
share (select, run_params, step_of, standard_error, bytes_fixed) serve the evidence figures and the power
requirements too.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from thinwire.algorithms.comm import ThinwireError


@dataclasses.dataclass
class Measurement:
    value: float
    expected: float | None = None  # when the quantity itself knows the expected value ("stated")
    sem: float = 0.0  # standard error over seeds (standard_error); 0 when exact (no seed-to-seed spread)
    evidence: str = ""
    # Why the comparison is not the one the claim states (e.g. unequal bits): the verdict is then
    # inconclusive with this reason, whatever the numbers say.
    invalid: str = ""
    sem_over: str = "seeds"  # what the standard error is over, as the verdict's reason says it
    # What a perfect implementation would measure at this run's noise (an upper quantile): a claim
    # bounding the value from above is under-powered when even that exceeds its bound (with a bound test,
    # the test's lower threshold: a perfect implementation must read reproduced).
    noise_floor: float | None = None
    # For such a claim, the noise's own decision thresholds at a bound: (below, above) = the value reads
    # reproduced under `below`, not reproduced over `above` (thinwire/validate.py bound_test); judged by
    # the standard error when absent.
    bound_test: Callable[[float], tuple[float, float]] | None = None


QUANTITIES: dict[str, Callable[..., Measurement | None]] = {}


def quantity(fn: Callable[..., Measurement | None]) -> Callable[..., Measurement | None]:
    QUANTITIES[fn.__name__] = fn
    return fn


def standard_error(values: pd.Series) -> float:
    """Standard error of the mean of independent per-seed (or per-run) values: sample standard deviation
    over sqrt(n). The single-seed policy of every claim: with one value, or a non-finite one, the spread
    is unknown, and the standard error is infinite, so claims.judge reads any bound as inside it
    (inconclusive), never as decided. Only a quantity with no seed-to-seed spread by construction (bytes
    against a formula, an identity) states 0 instead of calling this."""
    values = pd.Series(values, dtype=float)
    if len(values) < 2 or not np.isfinite(values).all():
        return math.inf
    return float(values.std(ddof=1) / math.sqrt(len(values)))


def _over_seeds(values: pd.Series, evidence: str) -> Measurement:
    """The mean of per-seed (or per-run) values, with its standard error (standard_error's policy)."""
    return Measurement(float(values.mean()), None, standard_error(values), evidence)


def select(table: pd.DataFrame, **where: Any) -> pd.DataFrame:
    """The rows whose columns take the given values (a value or a list of values); None: any."""
    for key, value in where.items():
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        table = table[table[key].isin(values)]
    return table


def run_params(run: pd.DataFrame) -> dict:
    """The parameters of a run's method, from its rows' `params` (JSON); {} when not logged."""
    return json.loads(run["params"].iloc[0]) if isinstance(run["params"].iloc[0], str) else {}


def _per_seed(rows: pd.DataFrame, by: str, column: str, how: str = "last") -> pd.Series:
    """Per (arm, seed), where an arm is a value of `by` (method or label): `column` at the run's last
    step with a value (how "last"), or summed over the run ("sum")."""
    runs = rows.dropna(subset=[column]).sort_values("step").groupby([by, "seed"])[column]
    return runs.last() if how == "last" else runs.sum()


def _paired(values: pd.Series, a: str, b: str, combine: Callable[[pd.Series, pd.Series], pd.Series]) -> pd.Series | None:
    """combine(values[a], values[b]) per seed, from an (arm, seed)-indexed series; None when an arm has no
    runs or no seed pairs."""
    arms = values.index.get_level_values(0)
    if a not in arms or b not in arms:
        return None
    paired = combine(values[a], values[b]).dropna()
    return None if paired.empty else paired


EXACT = "bytes fixed by the configuration: every step equals the stated formula"


@functools.lru_cache(maxsize=64)
def _layout(workload: str, world_size: int, seed: int, experiment: str, n_params: int) -> Any:
    """The layout of the run's workload: with its default parameters, or with those of a runs-sheet entry
    of the same experiment (the table does not log workload parameters), whichever has n_params; None
    when none does."""
    from thinwire.analysis.catalog import SCALES, paper_names
    from thinwire.workloads.registry import make_workload

    candidates = [{}] + [e.get("workload_params") or {} for p in paper_names() for scale in SCALES
                         for e in _sections(p, scale) if e.get("name") == experiment and e.get("workload") == workload]
    for wp in candidates:
        w = make_workload(workload, world_size, seed, wp)
        if w.n_params == n_params:
            return w.layout
    return None


def _sections(paper: str, scale: str) -> list[dict]:
    from thinwire.analysis.catalog import paper_runs

    try:
        return paper_runs(paper, scale)
    except ThinwireError:
        return []


@functools.lru_cache(maxsize=256)
def _formula(method: str, params: str, workload: str, world_size: int, seed: int, dtype: str,
             steps: tuple[int, ...], n_params: int, experiment: str) -> tuple[float, ...] | str:
    """The method's bits formula (bits_per_parameter: a function of its configuration and the step
    only) at each step, rebuilt from the run's logged setup; a string saying why when it cannot be."""
    from thinwire.algorithms.registry import get_method, make_config

    try:
        cls = get_method(method)
        layout = _layout(workload, world_size, seed, experiment, n_params)
        if layout is None:
            return f"no parameters of workload {workload} give the run's {n_params} parameters"
        m = cls(make_config(cls, json.loads(params)), layout)
        value_bits = np.dtype(dtype).itemsize * 8
        try:
            return tuple(float(m.bits_per_parameter(value_bits, t)) for t in steps)
        except RuntimeError:  # a formula over the ranks (1-bit Adam's chunks) learns their number at init
            from thinwire.simulators.simcomm import SimComm

            m.init_state(np.zeros((world_size, n_params), dtype=dtype), SimComm(world_size, np))
            return tuple(float(m.bits_per_parameter(value_bits, t)) for t in steps)
    except (ThinwireError, TypeError, ValueError, KeyError, RuntimeError) as e:
        return f"the formula of {method} cannot be rebuilt: {e}"


def bytes_fixed(rows: pd.DataFrame) -> tuple[bool, str]:
    """Whether the byte counts in `rows` have no seed-to-seed spread by construction: every step of every
    run logged exactly the bytes of its method's bits formula, a function of the configuration and the
    step only (bits_per_parameter, rebuilt from the run's method, params, workload, world size and dtype;
    not the step's own stated bits, which for DGC's run-length escapes or sampled threshold count what the
    step's data selected). Decided by the logged data, never declared: (True, EXACT) or (False, why not)."""
    need = {"run", "method", "params", "workload", "world_size", "seed", "dtype", "step", "bytes_sent", "n_params"}
    if rows.empty or not need <= set(rows.columns):
        return False, "the runs' setup is not in the table"
    for run, r in rows.sort_values("step").groupby("run"):
        first = r.iloc[0]
        n = int(first["n_params"])
        formula = _formula(str(first["method"]), str(first["params"]), str(first["workload"]),
                           int(first["world_size"]), int(first["seed"]), str(first["dtype"]),
                           tuple(int(t) for t in r["step"]), n, str(first.get("experiment", "")))
        if isinstance(formula, str):
            return False, f"run {run}: {formula}"
        measured = r["bytes_sent"].to_numpy(dtype=float) * 8 / n
        off = ~np.isclose(measured, np.array(formula), rtol=1e-9, atol=0.0)
        if off.any():
            t = int(np.argmax(off))
            return False, (f"bytes depend on the data: run {run} step {int(r['step'].iloc[t])} logged "
                           f"{measured[t]:.6g} bits per parameter, the formula gives {formula[t]:.6g}")
    return True, EXACT


def _exact_or_over_seeds(values: pd.Series, evidence: str, rows: pd.DataFrame) -> Measurement:
    """A byte quantity's mean over seeds: standard error 0 when bytes_fixed says the bytes are fixed by
    the configuration (then one seed decides), else standard_error's policy; the evidence says which."""
    fixed, why = bytes_fixed(rows)
    m = _over_seeds(values, f"{evidence}; {why}")
    if fixed:
        m.sem = 0.0
    return m


@quantity
def wire_bits_per_param(table: pd.DataFrame, method: str, modes: list[str] = ("sim", "real")) -> Measurement | None:
    """Bits each rank handed to collectives per parameter per step, against the method's stated formula.

    Reports the run farthest from its stated value (every step of every run is compared).
    """
    rows = select(table, method=method, mode=list(modes)).dropna(subset=["stated_bits"])
    if rows.empty:
        return None
    measured = rows["bytes_sent"] * 8 / rows["n_params"]
    stated = rows["stated_bits"]  # the formula at that step (methods with warm-up change it per step)
    gap = (measured - stated).abs()
    worst = gap.idxmax()
    runs = rows["run"].nunique()
    backends = ", ".join(sorted(rows["backend"].unique()))
    exact = int((gap == 0).sum())
    return Measurement(float(measured[worst]), float(stated[worst]), 0.0,
                       f"{exact} of {len(rows)} steps in {runs} runs ({backends}) logged exactly the stated "
                       f"bits; worst run {rows.at[worst, 'run']}: {measured[worst]:.6g} vs "
                       f"{stated[worst]:.6g} stated")


@quantity
def final_loss_ratio(table: pd.DataFrame, method: str, baseline: str, workload: str,
                     mode: str = "sim", experiment: str | None = None) -> Measurement | None:
    """Final full objective (eval_loss) of `method` over `baseline`'s, paired by seed; mean over seeds.
    With `experiment`, only that runs-sheet entry's runs (other entries may run the same methods on the
    same workload with other settings)."""
    rows = select(table, workload=workload, mode=mode, experiment=experiment)
    ratio = _paired(_per_seed(rows, "method", "eval_loss"), method, baseline, lambda a, b: a / b)
    if ratio is None:
        return None
    diverged = rows[(rows["method"] == method) & (rows["status"] == "diverged")]["run"].nunique()
    return _over_seeds(ratio,
                       f"{method} / {baseline} final loss on {workload} ({mode}), {len(ratio)} seeds: "
                       f"mean {ratio.mean():.4g} (per seed {', '.join(f'{r:.4g}' for r in ratio)}); "
                       f"{diverged} diverged runs")


@quantity
def mode_agreement(table: pd.DataFrame) -> Measurement | None:
    """Largest |loss difference| between a simulator run and a real run of the same setup (thinwire's own
    real runs: the ddp backend is PyTorch's implementation, which hook_gap compares)."""
    keys = ["method", "params", "workload", "world_size", "seed", "dtype", "step"]
    sim = select(table, mode="sim")[keys + ["loss", "run"]]
    real = select(table, mode="real")
    real = real[real["backend"] != "ddp"][keys + ["loss", "run", "backend"]]
    pairs = sim.merge(real, on=keys, suffixes=("_sim", "_real"))
    if pairs.empty:
        return None
    gap = (pairs["loss_sim"] - pairs["loss_real"]).abs()
    n_pairs = pairs[["run_sim", "run_real"]].drop_duplicates()
    backends = ", ".join(sorted(pairs["backend"].unique()))
    return Measurement(float(gap.max()), None, 0.0,
                       f"{len(n_pairs)} simulator/real run pairs ({backends}), {len(pairs)} steps: "
                       f"max |loss difference| {gap.max():.3g}")


@quantity
def hook_gap(table: pd.DataFrame, method: str, experiment: str) -> Measurement | None:
    """How far thinwire's simulator run of `method` in `experiment` is from the run of the same setup under
    the ddp backend (PyTorch's own communication hook in DistributedDataParallel, workloads/ddp_hooks.py):
    the largest, over every step, of the |difference| of the training loss, of the held-out loss, and of
    the bytes sent relative to the hook's (the hook must also send what thinwire sends)."""
    keys = ["method", "params", "workload", "world_size", "seed", "dtype", "step"]
    rows = select(table, method=method, experiment=experiment)
    sim = select(rows, mode="sim")[keys + ["loss", "eval_loss", "bytes_sent", "run"]]
    hook = select(rows, mode="real", backend="ddp")[keys + ["loss", "eval_loss", "bytes_sent", "run"]]
    pairs = sim.merge(hook, on=keys, suffixes=("_sim", "_hook"))
    if pairs.empty:
        return None
    loss = (pairs["loss_sim"] - pairs["loss_hook"]).abs().max()
    held_out = (pairs["eval_loss_sim"] - pairs["eval_loss_hook"]).abs().max(skipna=True)
    sent = ((pairs["bytes_sent_sim"] - pairs["bytes_sent_hook"]).abs() / pairs["bytes_sent_hook"]).max()
    runs = len(pairs[["run_sim", "run_hook"]].drop_duplicates())
    bytes_note = "the same at every step" if sent == 0 else f"differ by up to {sent:.3g} of the hook's"
    return Measurement(float(max(loss, held_out, sent)), None, 0.0,
                       f"{runs} thinwire simulator / DDP-hook run pairs of {method}, {len(pairs)} steps: max "
                       f"|loss difference| {loss:.3g}, held-out {held_out:.3g}; bytes sent {bytes_note} "
                       f"({int(pairs['bytes_sent_hook'].sum())} by the hook in all)")


@quantity
def compression_ratio(table: pd.DataFrame, experiment: str, method: str, baseline_bits: int = 32) -> Measurement | None:
    """Dense gradient bytes (baseline_bits per parameter) over the bytes the method logged at its last step;
    mean over the runs (seeds, modes), with its standard error."""
    rows = select(table, experiment=experiment, method=method, mode=["sim", "real"])
    if rows.empty:
        return None
    last = rows.sort_values("step").groupby("run").tail(1)
    dense = last["n_params"] * baseline_bits / 8
    ratio = dense / last["bytes_sent"]
    mib = 2 ** 20
    worst = (ratio - ratio.mean()).abs().idxmax()
    return _exact_or_over_seeds(ratio,
                       f"{method} on {last.at[worst, 'workload']} ({int(last.at[worst, 'n_params']):,} parameters): "
                       f"{last.at[worst, 'bytes_sent'] / mib:.4g} MB sent per rank per step against "
                       f"{dense[worst] / mib:.4g} MB dense ({baseline_bits}-bit), over {len(last)} runs", rows)


@quantity
def final_metric_gap(table: pd.DataFrame, experiment: str, label: str, baseline: str,
                     mode: str = "sim") -> Measurement | None:
    """Final metric (accuracy of the average model) of `baseline` minus that of `label`, paired by
    seed; mean over seeds, with its standard error. Positive: `label` lost accuracy."""
    finals = _per_seed(select(table, experiment=experiment, mode=mode), "label", "metric")
    gap = _paired(finals, baseline, label, lambda b, a: b - a)
    if gap is None:
        return None
    return _over_seeds(gap,
                       f"final accuracy {baseline} {finals[baseline].mean():.4f} vs {label} {finals[label].mean():.4f} "
                       f"on {experiment} ({mode}), {len(gap)} seeds; gap per seed "
                       f"{', '.join(f'{g:+.4f}' for g in gap)}")


@quantity
def final_eval_loss_ratio(table: pd.DataFrame, experiment: str, label: str, baseline: str,
                          mode: str = "sim") -> Measurement | None:
    """Final held-out loss of `label` over `baseline`'s in one experiment, paired by seed; mean over
    seeds, with its standard error. Above 1: `label` ends worse (for a language model, the
    perplexity ratio is exp(loss difference)). A diverged run counts as an infinite loss."""
    rows = select(table, experiment=experiment, mode=mode)
    finals = _per_seed(rows, "label", "eval_loss")
    diverged = rows[rows["status"] == "diverged"].groupby(["label", "seed"]).size().index
    finals[finals.index.isin(diverged)] = math.inf
    ratio = _paired(finals, label, baseline, lambda a, b: a / b)
    if ratio is None:
        return None
    return _over_seeds(ratio,
                       f"final eval loss {baseline} {finals[baseline].mean():.4f} vs {label} {finals[label].mean():.4f} "
                       f"on {experiment} ({mode}), {len(ratio)} seeds; ratio per seed "
                       f"{', '.join(f'{r:.4f}' for r in ratio)}; {len(diverged)} diverged runs")


@quantity
def eval_loss_ratio_at_step(table: pd.DataFrame, experiment: str, label: str, baseline: str,
                            step: int | None = None, epoch: float | None = None,
                            mode: str = "sim") -> Measurement | None:
    """Held-out loss of `label` over `baseline`'s in the row of `step` (the model after step + 1
    updates), paired by seed; mean over seeds, with its standard error: an ordering early in training.
    `epoch` instead of `step`: the first row by which every run has done that many passes over its
    training data (column epoch), so the claim keeps its meaning at another batch size. A run that
    diverged before that step counts as an infinite loss."""
    rows = select(table, experiment=experiment, label=[label, baseline], mode=mode)
    if rows.empty:
        return None
    step = step_of(rows, step=step, epoch=epoch)
    after = f"step {step}" if epoch is None else f"epoch {epoch:g} (step {step})"
    runs = rows.groupby(["label", "seed"])
    at = rows[rows["step"] == step].groupby(["label", "seed"])["eval_loss"].first()
    at = at.reindex(runs.size().index)
    diverged = runs["status"].first() == "diverged"
    at[at.isna() & diverged] = math.inf
    at = at.dropna()
    ratio = _paired(at, label, baseline, lambda a, b: a / b)
    if ratio is None:
        return None
    return _over_seeds(ratio,
                       f"eval loss after {after}: {baseline} {at[baseline].mean():.4f} vs {label} "
                       f"{at[label].mean():.4f} on {experiment} ({mode}), {len(ratio)} seeds; ratio per seed "
                       f"{', '.join(f'{r:.4f}' for r in ratio)}")


def step_of(rows: pd.DataFrame, step: int | None = None, epoch: float | None = None) -> int:
    """The step a claim reads: `step` itself, or the first step by which `epoch` passes over the training
    data are done (the rows' epoch column, from each run's batch and training set). The same step in
    every run, or an error: runs at different batches cannot be compared at one epoch."""
    if (step is None) == (epoch is None):
        raise ThinwireError("give the step or the epoch a claim reads, not both")
    if epoch is None:
        return int(step)
    if "epoch" not in rows or rows["epoch"].isna().all():
        raise ThinwireError(f"epoch {epoch:g}: these runs' workload has no epochs (give a step instead)")
    reached = rows[rows["epoch"] >= epoch * (1 - 1e-9)].groupby("run")["step"].min()
    missing = sorted(set(rows["run"]) - set(reached.index))
    if missing:
        raise ThinwireError(f"epoch {epoch:g}: run {missing[0]} ends before it")
    if reached.nunique() != 1:
        raise ThinwireError(f"epoch {epoch:g} falls on different steps in these runs "
                            f"({', '.join(map(str, sorted(set(reached))))}): they use different batches")
    return int(reached.iloc[0])


@quantity
def volume_ratio(table: pd.DataFrame, experiment: str, label: str, baseline: str, steps: str = "all",
                 baseline_bits: int | None = None) -> Measurement | None:
    """Link volume of `baseline` over that of `label` (column link_bytes: the bytes one rank puts on the
    links under the performance model's ring collectives), paired by seed, mean over seeds. steps "all":
    whole runs; "last": each run's last step (e.g. 1-bit Adam's compression stage against a dense step).
    baseline_bits: count the baseline's values at this many bits (16: an fp16 all-reduce, from an fp32 one)."""
    if steps not in ("all", "last"):
        raise ThinwireError(f"volume_ratio: steps must be all or last, got {steps!r}")
    rows = select(table, experiment=experiment, label=[label, baseline], mode=["sim", "real"])
    if rows.empty or "link_bytes" not in rows:
        return None
    rows = rows.sort_values("step")
    runs = rows.groupby(["label", "seed"])
    link = runs["link_bytes"].sum() if steps == "all" else runs["link_bytes"].last()
    handed = runs["bytes_sent"].sum() if steps == "all" else runs["bytes_sent"].last()
    value_bits = runs["dtype"].first().map(lambda d: np.dtype(d).itemsize * 8)
    if baseline not in value_bits.index.get_level_values(0):
        return None
    scale = (baseline_bits / value_bits[baseline]) if baseline_bits else 1.0
    ratio = _paired(link, baseline, label, lambda b, a: b * scale / a)
    if ratio is None:
        return None
    as_handed = (handed[baseline] * scale / handed[label]).mean()
    bits = f" counted at {baseline_bits} bits" if baseline_bits else ""
    return _exact_or_over_seeds(ratio,
                       f"{baseline}{bits} / {label} link bytes per rank ({'whole runs' if steps == 'all' else 'last step'}"
                       f", {experiment}): {(link[baseline] * scale).mean():,.0f} / {link[label].mean():,.0f} = "
                       f"{ratio.mean():.4g} over {len(ratio)} seeds; bytes handed to collectives: {as_handed:.4g}x", rows)


@quantity
def rounds_ratio(table: pd.DataFrame, experiment: str, label: str, baseline: str) -> Measurement | None:
    """Communication rounds of `baseline` over those of `label`, whole runs, paired by seed, mean over
    seeds. A round is a step with method traffic (bytes_sent > 0), however many collectives it calls."""
    rows = select(table, experiment=experiment, label=[label, baseline], mode=["sim", "real"])
    if rows.empty:
        return None
    runs = rows.groupby(["label", "seed"])
    rounds = runs["bytes_sent"].apply(lambda b: int((b > 0).sum()))
    steps = runs["step"].count()
    ratio = _paired(rounds, baseline, label, lambda b, a: (b / a).replace(math.inf, np.nan))
    if ratio is None:
        return None
    return _exact_or_over_seeds(ratio,
                       f"steps with method traffic, {baseline} / {label} ({experiment}): {rounds[baseline].mean():.4g} "
                       f"/ {rounds[label].mean():.4g} of {steps[label].mean():.4g} steps = {ratio.mean():.4g} over "
                       f"{len(ratio)} seeds ({1 - 1 / ratio.mean():.1%} fewer rounds)", rows)


@quantity
def diagnostic(table: pd.DataFrame, experiment: str, label: str, diagnostic: str) -> Measurement | None:
    """A method's own end-of-run diagnostic (column diag_<name>), mean over the runs (seeds)."""
    name = diagnostic
    column = f"diag_{name}"
    if column not in table:
        return None
    per_run = select(table, experiment=experiment, label=label).groupby("run")[column].first().dropna()
    if per_run.empty:
        return None
    return _over_seeds(per_run,
                       f"{name} of {label} on {experiment}: {', '.join(f'{v:.4g}' for v in per_run)} "
                       f"({len(per_run)} runs)")


@quantity
def study_ratio(table: pd.DataFrame, studies: dict[str, pd.DataFrame], study: str, a: str, b: str,
                match: list[str], metric: str = "mse", group: str = "quantizer",
                longest: str | None = None, same: dict[str, float] | None = None) -> Measurement | None:
    """The largest metric(a) / metric(b) over the cases of a study (results/studies/<study>.csv)
    where a and b (values of the `group` column) share the `match` columns, e.g. ORQ against QSGD
    per distribution and code bits. With `longest` (a column, e.g. steps), only the cases at a's
    largest value of it (the longest horizon the study ran). With `same` ({column: tolerance}, e.g.
    {bits_per_value: 0.05}), every compared case must have a and b within the tolerance on each column
    (equal total bits), else the measurement is invalid: the verdict is inconclusive, naming the case.
    When the study gives standard errors (<metric>_sem) of independent estimates, the ratio's is
    ratio * sqrt((sem_a / a)^2 + (sem_b / b)^2), and the worst case is the largest ratio + 2 sem."""
    df = studies.get(study)
    if df is None:
        return None
    rows_a = df[df[group] == a]
    if longest is not None and not rows_a.empty:
        rows_a = rows_a[rows_a[longest] == rows_a[longest].max()]
    pair = rows_a.merge(df[df[group] == b], on=match, suffixes=("_a", "_b"))
    if pair.empty:
        return None
    pair["ratio"] = pair[f"{metric}_a"] / pair[f"{metric}_b"]
    pair["sem"] = 0.0
    if f"{metric}_sem" in df:
        pair["sem"] = pair["ratio"] * np.hypot(pair[f"{metric}_sem_a"] / pair[f"{metric}_a"],
                                               pair[f"{metric}_sem_b"] / pair[f"{metric}_b"])
    worst = (pair["ratio"] + 2 * pair["sem"]).idxmax()
    cases = "; ".join(f"{' '.join(str(r[m]) for m in match)}: {r['ratio']:.3g}" for _, r in pair.iterrows())
    invalid = []
    for column, tol in (same or {}).items():
        gap = (pair[f"{column}_a"] - pair[f"{column}_b"]).abs()
        if (gap > tol).any():
            i = gap.idxmax()
            invalid.append(f"unequal {column}: {a} {pair.at[i, f'{column}_a']:.4g} vs {b} "
                           f"{pair.at[i, f'{column}_b']:.4g} at {' '.join(str(pair.at[i, m]) for m in match)} "
                           f"(tolerance {tol:g}; {int((gap > tol).sum())} of {len(pair)} cases)")
    bits = (f" (bits per value {pair['bits_per_value_a'].mean():.3g} vs {pair['bits_per_value_b'].mean():.3g})"
            if "bits_per_value_a" in pair else "")
    return Measurement(float(pair.at[worst, "ratio"]), None, float(pair.at[worst, "sem"]),
                       f"{metric} of {a} / {b}{bits}, worst case "
                       f"{' '.join(str(pair.at[worst, m]) for m in match)}; all: {cases}", "; ".join(invalid))


@quantity
def study_value(table: pd.DataFrame, studies: dict[str, pd.DataFrame], study: str, a: str, metric: str,
                worst: str = "max") -> Measurement | None:
    """metric of quantizer `a` in its worst case over a study's rows, with the standard error the
    study gives (<metric>_sem, else 0): `worst: max` picks the largest metric + 2 sem (for at_most
    rules), `min` the smallest metric - 2 sem (for at_least), e.g. ORQ's largest bias."""
    if worst not in ("max", "min"):
        raise ThinwireError(f"study_value: worst must be max or min, got {worst!r}")
    df = studies.get(study)
    if df is None:
        return None
    rows = df[df["quantizer"] == a]
    if rows.empty:
        return None
    sem = rows[f"{metric}_sem"] if f"{metric}_sem" in rows else pd.Series(0.0, index=rows.index)
    sign = 1 if worst == "max" else -1
    pick = (sign * rows[metric] + 2 * sem).idxmax()
    case = ", ".join(f"{k} {rows.at[pick, k]}" for k in ("distribution", "code_bits") if k in rows)
    cases = "; ".join(f"{' '.join(str(r[k]) for k in ('distribution', 'code_bits') if k in rows)}: "
                      f"{r[metric]:.3g} +- {sem[i]:.2g}" for i, r in rows.iterrows())
    return Measurement(float(rows.at[pick, metric]), None, float(sem[pick]),
                       f"{metric} of {a} ({worst} + 2 standard errors over {len(rows)} cases): "
                       f"{rows.at[pick, metric]:.3g} +- {sem[pick]:.2g} at {case}; all: {cases}")


@quantity
def rate_exponent(table: pd.DataFrame, studies: dict[str, pd.DataFrame], study: str, label: str, column: str,
                  by: str = "rounds", group: str = "sign") -> Measurement | None:
    """The exponent b of column ~ a * by^b (e.g. the mean squared gradient norm against the horizon T)
    for a study's rows whose `group` is `label`: a least-squares line in log-log per seed, then the mean
    slope over seeds with its standard error. A rate check, not a proof of a rate."""
    df = studies.get(study)
    if df is None:
        return None
    rows = df[df[group] == label]
    if rows[by].nunique() < 2:
        return None
    slopes = pd.Series({seed: np.polyfit(np.log(g[by]), np.log(g[column]), 1)[0] for seed, g in rows.groupby("seed")})
    means = rows.groupby(by)[column].mean()
    return _over_seeds(slopes,
                       f"{column} of {label} ({study}), mean over {len(slopes)} seeds at {by} "
                       f"{', '.join(f'{t:g}: {v:.3g}' for t, v in means.items())}; log-log slope per seed "
                       f"{', '.join(f'{b:.3f}' for b in slopes)}")


@quantity
def model_bandwidth(table: pd.DataFrame, studies: dict[str, pd.DataFrame], study: str, label: str,
                    speedup: float) -> Measurement | None:
    """Inter-node Gbit/s below which `label` steps `speedup` times faster than its dense baseline, from
    a model job's summary (results/studies/model-<job>.csv); mean over seeds. inf: at every bandwidth
    the model tried; 0: at none."""
    df = studies.get(study)
    if df is None:
        return None
    rows = df[(df["quantity"] == "bandwidth_at_speedup") & (df["label"] == label)]
    at = rows[np.isclose(rows["target"], speedup)]["value"]
    if at.empty:
        return None

    def below(values: pd.Series) -> str:
        if np.isinf(values).all():
            return "at every bandwidth the model tried"
        return "below " + ", ".join("never" if v == 0 else f"{v:.3g}" for v in values) + " Gbit/s"

    each = "; ".join(f"{t:g}x {below(g['value'])}" for t, g in rows.groupby("target"))
    return _over_seeds(at,
                       f"{label} against its baseline on {rows['cluster'].iloc[0]}, per seed ({len(at)}): {each}")


@quantity
def model_prediction(table: pd.DataFrame, studies: dict[str, pd.DataFrame], claim: str,
                     study: str = "model-predicted", view: str = "public") -> Measurement | None:
    """The performance model's speedup at a paper's stated setup (simulators/predict.py, one row per cell).
    view public: the prediction from public facts; the evidence sets it next to the claimed speedup, its
    error, the sensitivity band and the calibrated predictions, and reads "consistent / not consistent
    within the model's error" (the claim inside / outside the band), never "reproduced". view exploratory:
    the prediction under the cluster's exploratory readings (read after seeing the predictions), with the
    baseline and method throughput it implies against the stated ones; None where the cluster has none."""
    if view not in ("public", "exploratory"):
        raise ThinwireError(f"model_prediction: view must be public or exploratory, got {view!r}")
    df = studies.get(study)
    if df is None or df.empty or claim not in set(df["claim"]):
        return None
    r = df[df["claim"] == claim].iloc[0]
    if view == "exploratory":
        if pd.isna(r.get("predicted_exploratory", np.nan)):
            return None
        return Measurement(float(r["predicted_exploratory"]), None, 0.0,
                           f"exploratory reading of the cluster's facts, found after seeing the predictions "
                           f"({r['exploratory_reading']}): predicted {r['predicted_exploratory']:.2f}x against the "
                           f"claimed {r['claimed']:g}x (error {r['error_exploratory']:+.0%}); baseline "
                           f"{r['baseline_tflops_exploratory']:.1f} TFLOP/s per GPU against the stated "
                           f"{r['baseline_tflops_stated']:g}, method {r['method_tflops_exploratory']:.1f} against "
                           f"{r['method_tflops_stated']:g} (from the paper's facts: {r['predicted']:.2f}x, baseline "
                           f"{r['baseline_tflops_predicted']:.1f} TFLOP/s)")
    calibrated = "; calibrated on the stated baseline: no stated baseline" if pd.isna(r["predicted_calibrated"]) else (
        f"; calibrated on the stated baseline ({r['baseline_tflops_stated']:g} TFLOP/s): per cell "
        f"{r['predicted_calibrated']:.2f}x ({r['error_calibrated']:+.0%}, inter-node efficiency "
        f"{r['calibrated_inter_efficiency']:.3g}), per cluster {r['predicted_cluster_calibrated']:.2f}x "
        f"({r['error_cluster_calibrated']:+.0%}, efficiency {r['cluster_inter_efficiency']:.3g})")
    verdict = "consistent" if r["consistent"] else "not consistent"
    return Measurement(float(r["predicted"]), None, 0.0,
                       f"predicted {r['predicted']:.2f}x from public facts against the claimed {r['claimed']:g}x "
                       f"(error {r['error']:+.0%}); sensitivity band {r['band_low']:.2f}x to {r['band_high']:.2f}x: "
                       f"{verdict} within the model's error{calibrated}")


@quantity
def published_collective_error(table: pd.DataFrame, studies: dict[str, pd.DataFrame], stat: str,
                               study: str = "model-collectives") -> Measurement | None:
    """median or max over published nccl-tests measurements of |predicted / measured - 1| all-reduce bus
    bandwidth (simulators/published_collectives.py), with every row's error in the evidence."""
    if stat not in ("median", "max"):
        raise ThinwireError(f"published_collective_error: stat must be median or max, got {stat!r}")
    df = studies.get(study)
    if df is None or df.empty:
        return None
    e = df["error"].abs()
    value = float(e.median() if stat == "median" else e.max())
    each = "; ".join(f"{r.name}: {r.predicted_busbw_gbs:.1f} vs {r.measured_busbw_gbs:g} GB/s ({r.error:+.0%})"
                     for r in df.itertuples(index=False))
    return Measurement(value, None, 0.0, f"{stat} |error| over {len(df)} published measurements: {each}")


@quantity
def model_codec_share(table: pd.DataFrame, studies: dict[str, pd.DataFrame], study: str, label: str,
                      bandwidth: float) -> Measurement | None:
    """Share of `label`'s predicted step spent encoding/decoding (mean codec_s / mean wall_s) at one
    inter-node bandwidth, from a model job's summary; mean over seeds. None when the cluster states no
    codec rate for the label (the summary then has no such row)."""
    df = studies.get(study)
    if df is None:
        return None
    rows = df[(df["quantity"] == "codec_share") & (df["label"] == label)]
    at = rows[np.isclose(rows["bandwidth_gbps"], bandwidth)]["value"]
    if at.empty:
        return None
    each = "; ".join(f"{bw:g} Gbit/s {g['value'].mean():.3%}" for bw, g in rows.groupby("bandwidth_gbps"))
    return _over_seeds(at,
                       f"encode/decode share of {label}'s step on {rows['cluster'].iloc[0]} ({len(at)} runs): {each}")


@quantity
def validation_error(table: pd.DataFrame, studies: dict[str, pd.DataFrame], stat: str,
                     study: str = "validation") -> Measurement | None:
    """median or max over the shaped-link cases of |predicted - measured| / measured step time
    (results/studies/validation.csv, from `thinwire validate`; a case's error is the median over its rounds
    of predicted / measured - 1). With each round's ratio in the table (`round_errors`) it is decided
    against the rounds' own noise (thinwire/validate.py, rounds assumed independent): reproduced or not
    reproduced only beyond what a model erring by the bound shows at that noise in 95% of resamples
    (bound_test), so run-to-run noise reads as a result in at most about 5% of cases; under-powered when a
    perfect model would not read reproduced in 95% of resamples (noise_floor against bound_test's lower
    threshold). A table without the rounds' ratios (older) is judged by the measured runs' relative spread
    (median over the cases, (max - min) / median of each case's runs) as two standard errors."""
    if stat not in ("median", "max"):
        raise ThinwireError(f"validation_error: stat must be median or max, got {stat!r}")
    df = studies.get(study)
    if df is None or df.empty:
        return None
    err = df["error"].abs()
    worst = df.loc[err.idxmax()]
    spread = float(df["measured_spread"].median()) if "measured_spread" in df else 0.0
    floor, floor_text, test = None, "", None
    if "round_errors" in df:
        from thinwire.validate import bound_test, noise_floor

        floor = noise_floor(df, stat)
        test = functools.partial(bound_test, df, stat)
        floor_text = (f"; a perfect model at these runs' noise: {stat} |error| up to {floor:.1%} (95% of resamples)"
                      if math.isfinite(floor) else "; one round per case: the runs' noise is unknown")
    return Measurement(float(getattr(err, stat)()), None, spread / 2, sem_over="runs (half their spread)",
                       noise_floor=floor, bound_test=test,
                       evidence=f"{len(df)} cases ({', '.join(sorted(df['bandwidth'].unique()))}); median {err.median():.1%}, "
                       f"max {err.max():.1%} ({worst['label']} at {worst['bandwidth']}: predicted "
                       f"{worst['predicted_s'] * 1e3:.3g} ms, measured {worst['measured_s'] * 1e3:.3g} ms"
                       + (f", its {int(worst['repeats'])} measured runs spread {worst['measured_spread']:.1%}"
                          if "measured_spread" in df else "") + f"); median spread of the measured runs {spread:.1%}"
                       + (f", of the rounds' predicted / measured {df['error_spread'].median():.1%}"
                          if "error_spread" in df else "")
                       + floor_text)
