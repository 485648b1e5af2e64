"""Claims as data, and the machinery that gives each a verdict from the results table.

A claim file (analysis/papers/<paper>/claims.yaml, analysis/catalog.py) holds a list of claims:

    - id: EF-1
      source: "Stich et al. 2018, Sparsified SGD with memory, Thm 2.4 / Fig. 3"
      statement: what the paper says, in its words
      setup: what this machine runs to check it
      quantity: {name: final_loss_ratio, method: topk-ef, baseline: sgd, workload: logreg}
      rule: at_most          # within | at_most | at_least | reported (no verdict; expected may be null)
      expected: 1.05         # a number, or "stated" for the runs' stated value
      tolerance: 0.0         # absolute, added to the bound (within: |measured - expected| <= tolerance)
      figure: loss_vs_step
      out_of_scope: "why"    # optional: no verdict is computed, the reason is reported
      kind: paper claim      # paper claim | implementation check | predicted | exploratory (KINDS)
      paper_claim: D2        # the id in ../shared/papers it tests, or "none: why" (a paper claim stated there without an id)
      power: {seeds: 3, sends_per_coordinate: 5}   # optional: the regime in which it can be tested (POWER)
      tuning: {rule: min_validation_loss, arms: [topk-ef, sgd]}  # optional: equal tuning (analysis/tuning.py)

Verdicts: reproduced, not reproduced, inconclusive (no data; a run below the claim's declared power,
check_power; arms tuned on unequal grids, check_equal_budget; or the bound lies within two standard errors of the seed-to-seed spread: with a single seed
the spread is unknown, see `standard_error`, unless the quantity is a byte count whose every step equals
its method's formula, `bytes_fixed`), out of scope, reported (rule `reported`: a number computed and
shown, such as a performance-model prediction for a setup the paper leaves unstated, where no fair
bound exists to judge it by). Tolerances are fixed in the claim file before any result exists;
nothing here adjusts them.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from thinwire.algorithms.comm import ThinwireError
from thinwire.analysis import tuning as tuning_rules
from thinwire.analysis.catalog import PAPERS_DIR

RULES = ("within", "at_most", "at_least", "reported")
# paper claim: a claim of a paper in ../shared/papers (the report's headline counts only these);
# implementation check: a contract or identity true by construction (bits, cross-mode agreement, a
# quantizer identity, the model's validation on this machine); predicted: decided by the performance model.
# exploratory: a paper claim's earlier row whose settings were chosen after seeing results (kept visible,
# never counted in the headline; a confirmatory row re-runs it on settings fixed beforehand).
KINDS = ("paper claim", "implementation check", "predicted", "exploratory")
# Quantities whose value is the performance model's, not a measurement: their claims are `predicted`.
MODEL_QUANTITIES = {"model_prediction", "model_bandwidth", "model_codec_share", "published_collective_error"}
# Quantities that count bytes or rounds (bytes_fixed decides whether one seed suffices).
BYTE_QUANTITIES = {"compression_ratio", "volume_ratio", "rounds_ratio", "wire_bits_per_param"}
FIELDS = {"id", "source", "statement", "setup", "quantity", "rule", "expected", "tolerance", "figure",
          "out_of_scope", "kind", "paper_claim", "power", "tuning"}
REQUIRED = {"id", "source", "statement", "setup", "quantity", "rule", "expected", "kind"}


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
    is unknown, and the standard error is infinite, so `judge` reads any bound as inside it
    (inconclusive), never as decided. Only a quantity with no seed-to-seed spread by construction (bytes
    against a formula, an identity) states 0 instead of calling this."""
    values = pd.Series(values, dtype=float)
    if len(values) < 2 or not np.isfinite(values).all():
        return math.inf
    return float(values.std(ddof=1) / math.sqrt(len(values)))


def _over_seeds(values: pd.Series, evidence: str) -> Measurement:
    """The mean of per-seed (or per-run) values, with its standard error (standard_error's policy)."""
    return Measurement(float(values.mean()), None, standard_error(values), evidence)


def _select(table: pd.DataFrame, **where: Any) -> pd.DataFrame:
    """The rows whose columns take the given values (a value or a list of values); None: any."""
    for key, value in where.items():
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        table = table[table[key].isin(values)]
    return table


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
    rows = _select(table, method=method, mode=list(modes)).dropna(subset=["stated_bits"])
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
    rows = _select(table, workload=workload, mode=mode, experiment=experiment)
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
    sim = _select(table, mode="sim")[keys + ["loss", "run"]]
    real = _select(table, mode="real")
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
    rows = _select(table, method=method, experiment=experiment)
    sim = _select(rows, mode="sim")[keys + ["loss", "eval_loss", "bytes_sent", "run"]]
    hook = _select(rows, mode="real", backend="ddp")[keys + ["loss", "eval_loss", "bytes_sent", "run"]]
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
    rows = _select(table, experiment=experiment, method=method, mode=["sim", "real"])
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
    finals = _per_seed(_select(table, experiment=experiment, mode=mode), "label", "metric")
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
    rows = _select(table, experiment=experiment, mode=mode)
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
    rows = _select(table, experiment=experiment, label=[label, baseline], mode=mode)
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
    rows = _select(table, experiment=experiment, label=[label, baseline], mode=["sim", "real"])
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
    rows = _select(table, experiment=experiment, label=[label, baseline], mode=["sim", "real"])
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
    per_run = _select(table, experiment=experiment, label=label).groupby("run")[column].first().dropna()
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
                     study: str = "model-predicted") -> Measurement | None:
    """The performance model's speedup at a paper's stated setup (simulators/predict.py, one row per cell):
    the value is the prediction from public facts; the evidence sets it next to the claimed speedup, its
    error, the sensitivity band and the calibrated predictions, and reads "consistent / not consistent
    within the model's error" (the claim inside / outside the band), never "reproduced"."""
    df = studies.get(study)
    if df is None or df.empty or claim not in set(df["claim"]):
        return None
    r = df[df["claim"] == claim].iloc[0]
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


# Power: the regime in which a comparison can be tested, as requirements on quantities computed from
# the run's own parameters and logs. A claim declares them (`power: {seeds: 3, global_rounds: 100}`);
# a run below any gives "inconclusive: under-powered: needs X, ran Y", never a decided verdict.


@dataclasses.dataclass(frozen=True)
class PowerQuantity:
    measure: Callable[[pd.DataFrame, dict], float | None]  # (the claim's runs, its quantity's arguments)
    at_least: bool  # the requirement is a lower bound (else an upper bound)
    what: str


POWER: dict[str, PowerQuantity] = {}


def _arm(rows: pd.DataFrame, q: dict, key: str) -> pd.DataFrame:
    """The runs of one arm of a claim (key label/baseline: a label, or a method for claims without one)."""
    name = q.get(key) if key in q else q.get("method" if key == "label" else key)
    column = "label" if "label" in q or "experiment" in q else "method"
    return rows[rows[column] == name]


def _params(run: pd.DataFrame) -> dict:
    return json.loads(run["params"].iloc[0]) if isinstance(run["params"].iloc[0], str) else {}


def _per_run(rows: pd.DataFrame, fn: Callable[[pd.DataFrame], float | None],
             worst: Callable = min) -> float | None:
    """The least powered value of fn over the runs (worst: min for a lower bound, max for an upper one);
    None when no run gives one."""
    values = [v for _, r in rows.sort_values("step").groupby("run") if (v := fn(r)) is not None]
    return worst(values) if values else None


def _power(name: str, at_least: bool = True) -> Callable:
    def register(fn: Callable[[pd.DataFrame, dict], float | None]) -> Callable:
        POWER[name] = PowerQuantity(fn, at_least, (fn.__doc__ or "").strip())
        return fn
    return register


@_power("seeds")
def _seeds(rows: pd.DataFrame, q: dict) -> float | None:
    """Seeds of the arm with the fewest."""
    per_arm = rows.groupby("label" if "label" in rows else "method")["seed"].nunique()
    return float(per_arm.min()) if not per_arm.empty else None


@_power("steps")
def _steps(rows: pd.DataFrame, q: dict) -> float | None:
    """Steps of the shortest run."""
    return _per_run(rows, lambda r: float(r["step"].max() + 1))


@_power("global_rounds")
def _global_rounds(rows: pd.DataFrame, q: dict) -> float | None:
    """Steps with method traffic (bytes_sent > 0) of the method's shortest run: its global rounds (for
    a method with local steps, steps / period)."""
    return _per_run(_arm(rows, q, "label"), lambda r: float((r["bytes_sent"] > 0).sum()))


def _sparse_sends(p: dict, steps: int) -> float:
    """Top-k at `density` after `warmup_steps`: density x the steps after warm-up."""
    return p["density"] * max(steps - p.get("warmup_steps", 0), 0)


def _cser_sends(p: dict, steps: int) -> float:
    """CSER's blocks: a share (H - 1) / (H R1) + 1 / (H R2) of the coordinates per step."""
    return steps * ((p["H"] - 1) / (p["H"] * p["R1"]) + 1 / (p["H"] * p["R2"]))


SENDS: dict[str, Callable[[dict, int], float]] = {"dgc": _sparse_sends, "topk-ef": _sparse_sends,
                                                   "saef": _sparse_sends, "cser": _cser_sends}


@_power("sends_per_coordinate")
def _sends_per_coordinate(rows: pd.DataFrame, q: dict) -> float | None:
    """Expected sends of each coordinate over the method's run, from its own parameters (SENDS: top-k's
    density after warm-up, CSER's block shares); None for a method SENDS does not know."""
    def sends(r: pd.DataFrame) -> float | None:
        fn = SENDS.get(str(r["method"].iloc[0]))
        try:
            return fn(_params(r), int(r["step"].max() + 1)) if fn else None
        except KeyError:  # a run without the parameters its method's formula needs: unknown, not zero
            return None
    return _per_run(_arm(rows, q, "label"), sends)


# A method's uncompressed warm-up, in steps, from its params: what runs before it compresses.
WARMUP_STEPS: dict[str, Callable[[dict], float]] = {
    "onebit-adam": lambda p: p.get("freeze_step", 0), "zero-one-adam": lambda p: p.get("var_freeze_step", 0),
    "dgc": lambda p: p.get("warmup_steps", 0), "powersgd": lambda p: p.get("start_powersgd_iter", 0)}


@_power("compressed_share")
def _compressed_share(rows: pd.DataFrame, q: dict) -> float | None:
    """The share of the method's steps taken after its uncompressed warm-up (WARMUP_STEPS: 1-bit Adam's
    freeze_step, DGC's warm-up, ...), over its shortest run; None for a method WARMUP_STEPS does not know."""
    def share(r: pd.DataFrame) -> float | None:
        fn = WARMUP_STEPS.get(str(r["method"].iloc[0]))
        steps = int(r["step"].max() + 1)
        return max(steps - float(fn(_params(r))), 0.0) / steps if fn else None
    return _per_run(_arm(rows, q, "label"), share)


@_power("baseline_warmup_steps")
def _baseline_warmup_steps(rows: pd.DataFrame, q: dict) -> float | None:
    """The baseline's warm-up length in updates (its params' warmup_steps)."""
    return _per_run(_arm(rows, q, "baseline"), lambda r: float(_params(r).get("warmup_steps", 0)))


@_power("final_tenth_loss_drop", at_least=False)
def _final_tenth_loss_drop(rows: pd.DataFrame, q: dict) -> float | None:
    """Converged: the largest relative drop, over the baseline's runs, of its held-out loss over the last
    tenth of the run (loss at 90% of the steps over the final one, minus 1)."""
    def drop(r: pd.DataFrame) -> float | None:
        loss = r.dropna(subset=["eval_loss"])
        if len(loss) < 2:
            return None
        late = loss[loss["step"] <= 0.9 * r["step"].max()]
        at = late["eval_loss"].iloc[-1] if not late.empty else loss["eval_loss"].iloc[0]
        return float(at) / float(loss["eval_loss"].iloc[-1]) - 1
    return _per_run(_arm(rows, q, "baseline"), drop, worst=max)


def _claim_rows(table: pd.DataFrame, q: dict) -> pd.DataFrame:
    """The training runs a claim's quantity reads: its experiment's (or method's) arms."""
    if not {"mode", "method"} <= set(table.columns):  # no training runs (e.g. a study-only table)
        return table.iloc[0:0]
    rows = _select(table, mode=["sim", "real"], experiment=q.get("experiment"))
    # The method's arm is its label, else (a method and its baseline in an experiment whose labels are the
    # methods, EF-1) its method.
    arms = [q[k] for k in ("label", "baseline") if k in q]
    arms += [q["method"]] if "label" not in q and "method" in q and "baseline" in q else []
    if "experiment" in q and arms:
        return rows[rows["label"].isin(arms)]
    methods = [q[k] for k in ("method", "baseline") if k in q]
    return rows[rows["method"].isin(methods)] if methods else rows.iloc[0:0]


def check_power(table: pd.DataFrame, claim: dict) -> tuple[bool, str]:
    """(powered, text): each requirement of the claim's `power` against the value its runs give. The text
    is "powered: ..." or "under-powered: needs X, ran Y; ..." (only the failed requirements), or "not
    declared" for a claim without requirements."""
    needs = claim.get("power") or {}
    if not needs:
        return True, "not declared"
    rows = _claim_rows(table, claim["quantity"])
    met, failed = [], []
    for name, bound in needs.items():
        pq = POWER[name]
        value = pq.measure(rows, claim["quantity"]) if not rows.empty else None
        op = ">=" if pq.at_least else "<="
        if value is None:
            failed.append(f"needs {name} {op} {bound:g}, ran: not measurable from these runs")
        elif (value >= bound) if pq.at_least else (value <= bound):
            met.append(f"{name} {value:.4g} ({op} {bound:g})")
        else:
            failed.append(f"needs {name} {op} {bound:g}, ran {value:.4g}")
    return (False, "under-powered: " + "; ".join(failed)) if failed else (True, "powered: " + ", ".join(met))



PAPER_CLAIM_IDS = PAPERS_DIR / "paper_claim_ids.yaml"


def paper_claim_ids(folder: Path | None = None) -> dict[str, list[str]]:
    """The claim ids of the paper files, by file: parsed from the id column of the claim tables of
    folder/*.md (../shared/papers), or, without a folder, read from analysis/papers/paper_claim_ids.yaml
    (the checked-in list, for machines without the paper files)."""
    if folder is None:
        return yaml.safe_load(PAPER_CLAIM_IDS.read_text())
    ids = {}
    for path in sorted(Path(folder).glob("*.md")):
        rows, in_table = [], False
        for line in path.read_text().splitlines():
            if not line.startswith("|"):
                in_table = False
                continue
            first = line.strip().strip("|").split("|")[0].strip()
            if first == "id":
                in_table = True
            elif in_table and set(first) - set("-: "):
                rows.append(first)
        if rows:
            ids[path.name] = rows
    return ids


def missing_paper_claims(claims: list[dict], ids: dict[str, list[str]] | None = None) -> list[str]:
    """The paper claim ids that no claim row names as its paper_claim (each needs a verdict, or out of
    scope with the reason)."""
    named = {str(c.get("paper_claim")) for c in claims}
    return [i for each in (ids or paper_claim_ids()).values() for i in each if i not in named]


def claim_files(folder: Path | None = None) -> list[Path]:
    """The claim files of a folder of paper folders (each <paper>/claims.yaml; default: thinwire's
    papers), or of a folder of claim files (each *.yaml)."""
    folder = Path(folder or PAPERS_DIR)
    return sorted(folder.glob("*/claims.yaml")) or sorted(folder.glob("*.yaml"))


def read_claims(path: Path) -> list[dict]:
    """The claims of one claim file, each checked."""
    try:
        items = yaml.safe_load(Path(path).read_text()) or []
    except yaml.YAMLError as e:
        raise ThinwireError(f"claim file {path} is not valid YAML: {e}") from None
    for c in items:
        _check(c, path)
    return items


def load_claims(folder: Path | None = None) -> list[dict]:
    """Every claim of the claim files under `folder` (claim_files), ids unique."""
    claims = [c for path in claim_files(folder) for c in read_claims(path)]
    ids = [c["id"] for c in claims]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ThinwireError(f"duplicate claim ids: {', '.join(dupes)}")
    return claims


def _check(c: Any, path: Path) -> None:
    if not isinstance(c, dict):
        raise ThinwireError(f"{path}: every claim must be a mapping, got {c!r}")
    name = c.get("id", "?")
    missing, unknown = REQUIRED - set(c), set(c) - FIELDS
    if missing or unknown:
        raise ThinwireError(f"{path}: claim {name}: missing {sorted(missing)}, unknown {sorted(unknown)}")
    if c["rule"] not in RULES:
        raise ThinwireError(f"{path}: claim {name}: rule must be one of {RULES}, got {c['rule']!r}")
    q = c["quantity"]
    if not isinstance(q, dict) or q.get("name") not in QUANTITIES:
        raise ThinwireError(f"{path}: claim {name}: quantity.name must be one of {sorted(QUANTITIES)}")
    if c["kind"] not in KINDS:
        raise ThinwireError(f"{path}: claim {name}: kind must be one of {KINDS}, got {c['kind']!r}")
    if q["name"] in MODEL_QUANTITIES and c["kind"] != "predicted":
        raise ThinwireError(f"{path}: claim {name}: its quantity {q['name']} is a performance-model prediction, "
                            f"so its kind must be predicted, got {c['kind']!r}")
    if c["kind"] == "paper claim" and not str(c.get("paper_claim") or "").strip():
        raise ThinwireError(f"{path}: claim {name}: a paper claim names the id it tests in ../shared/papers "
                            f"(paper_claim), or says why there is none ('none: ...')")
    power = c.get("power") or {}
    if not isinstance(power, dict) or any(k not in POWER or isinstance(v, bool) or not isinstance(v, int | float)
                                          for k, v in power.items()):
        raise ThinwireError(f"{path}: claim {name}: power must map quantities among {sorted(POWER)} to numbers, "
                            f"got {power!r}")
    if "tuning" in c:
        tuning_rules.check_spec(c["tuning"], f"{path}: claim {name}")
        compared = [q[k] for k in ("label", "baseline") if k in q] or [q[k] for k in ("method",) if k in q]
        left_out = [a for a in compared if a not in c["tuning"]["arms"]]
        if left_out:
            raise ThinwireError(f"{path}: claim {name}: tuning.arms must include the arms its quantity compares; "
                                f"missing {left_out}")


def judge(rule: str, measured: float, expected: float, tolerance: float, sem: float) -> str:
    """reproduced / not reproduced, or inconclusive when the bound is inside measured +- 2 sem."""
    if not (math.isfinite(measured) and math.isfinite(expected)):
        return "inconclusive"
    if rule == "within":
        gap = abs(measured - expected)
        lo, hi = max(gap - 2 * sem, 0.0), gap + 2 * sem
        ok_lo, ok_hi = lo <= tolerance, hi <= tolerance
    else:
        bound = expected + tolerance if rule == "at_most" else expected - tolerance
        sign = 1 if rule == "at_most" else -1
        ok_lo = sign * (measured - 2 * sign * sem) <= sign * bound
        ok_hi = sign * (measured + 2 * sign * sem) <= sign * bound
    if ok_hi:
        return "reproduced"
    return "inconclusive" if ok_lo else "not reproduced"


def _ran_on(table: pd.DataFrame, claim: dict) -> str:
    """Where the runs of a claim's experiment ran (cluster names), for claims that read an experiment."""
    experiment = (claim.get("quantity") or {}).get("experiment")
    if experiment is None or "ran_on" not in table:
        return ""
    rows = table[(table["experiment"] == experiment) & table["mode"].isin(["sim", "real"])]
    return ", ".join(sorted(rows["ran_on"].dropna().astype(str).unique()))


def check_tuning(table: pd.DataFrame, claim: dict) -> tuple[bool, str]:
    """(equal, text): a claim with a `tuning` rule gets check_equal_budget over its runs (every arm the
    same number of grid points, their grids and chosen values in the text); any other claim is equal,
    with tuning()'s text."""
    spec = claim.get("tuning")
    if not spec:
        return True, tuning(claim)
    q = claim["quantity"]
    by = "label" if "experiment" in q else "method"
    if not {"mode", by} <= set(table.columns):  # no training runs (e.g. a study-only table)
        return tuning_rules.check_equal_budget(pd.DataFrame(columns=[by]), spec, by)
    rows = _select(table, mode=["sim", "real"], experiment=q.get("experiment"), workload=q.get("workload"))
    return tuning_rules.check_equal_budget(rows[rows[by].isin(spec["arms"])], spec, by)


def tuning(claim: dict) -> str:
    """What tuning a claim without a `tuning` rule had, by kind: none for checks, bytes and the model; a
    comparison without a rule says plainly that nothing was tuned."""
    if claim.get("kind") == "implementation check":
        return "none: implementation check"
    if claim.get("kind") == "predicted":
        return "none: performance model"
    q = claim["quantity"]
    if q["name"] in BYTE_QUANTITIES:
        return "none: a byte count, which no learning rate changes"
    if "experiment" in q or "workload" in q:
        return "not tuned: the sheet's fixed lr"
    return "not tuned: the study's fixed settings" if "study" in q else "none"


def run_config(table: pd.DataFrame, claim: dict) -> str:
    """The setup of the runs a claim reads, from the table: per arm its method and parameters (seed
    left out), then workload, world size, steps and seeds; the study's name for a study claim."""
    q = claim["quantity"]
    if "study" in q:
        return f"study {q['study']}"
    rows = _claim_rows(table, q)
    if rows.empty:
        return ""
    if "experiment" not in q and "baseline" not in q:  # a contract over every run of a method
        where = rows.get("experiment", pd.Series(dtype=str)).dropna().astype(str).unique()
        return f"every {q['method']} run: {rows['run'].nunique()} runs" + (f" in {', '.join(sorted(where))}"
                                                                          if len(where) else "")
    arms = []
    by = "label" if "experiment" in q else "method"
    for arm, r in rows.groupby(by, sort=False):
        params = {k: v for k, v in _params(r).items() if k != "seed"}
        arms.append(f"{arm}: {r['method'].iloc[0]} {json.dumps(params, sort_keys=True)}")
    first = rows.iloc[0]
    seeds = sorted(int(x) for x in rows["seed"].unique())
    return (f"{'; '.join(arms)}; workload {first['workload']}, {int(first['world_size'])} workers, "
            f"{int(rows.groupby('run')['step'].max().max() + 1)} steps, seeds {seeds}")


def verdicts(table: pd.DataFrame, claims: list[dict], studies: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """A verdict per claim. Quantities that take `studies` also get the study tables by name."""
    rows = []
    for c in claims:
        row = {k: c.get(k, "") for k in ("id", "source", "statement", "setup", "figure", "kind", "paper_claim")}
        # sem: the measured value's standard error over seeds (inf: one seed; 0: exact by construction).
        equal_tuning, tuned = check_tuning(table, c) if not c.get("out_of_scope") else (True, tuning(c))
        row.update(measured=np.nan, sem=np.nan, expected=np.nan, evidence="", reason="", ran_on=_ran_on(table, c),
                   tuning=tuned, config=run_config(table, c), power="not declared")
        if c.get("out_of_scope"):
            row.update(verdict="out of scope", reason=c["out_of_scope"], power="", config="")
            rows.append(row)
            continue
        powered, row["power"] = check_power(table, c)
        args = {k: v for k, v in c["quantity"].items() if k != "name"}
        if "studies" in inspect.signature(QUANTITIES[c["quantity"]["name"]]).parameters:
            args["studies"] = studies or {}
        try:
            m = QUANTITIES[c["quantity"]["name"]](table, **args)
        except TypeError as e:
            raise ThinwireError(f"claim {c['id']}: bad quantity arguments: {e}") from None
        if m is None:
            row.update(verdict="inconclusive", reason="no results for this claim's setup")
            rows.append(row)
            continue
        if c["rule"] == "reported":
            # The setup says what is measured and what assumed: the report shows it as the reason.
            row.update(verdict="reported", measured=m.value, sem=m.sem, evidence=m.evidence, reason=c["setup"])
            rows.append(row)
            continue
        expected = m.expected if c["expected"] == "stated" else float(c["expected"])
        if expected is None:
            raise ThinwireError(f"claim {c['id']}: quantity {c['quantity']['name']} has no stated value")
        verdict = judge(c["rule"], m.value, expected, float(c.get("tolerance", 0.0)), m.sem)
        reason = ""
        tested, refuted = "", False
        if powered and m.noise_floor is not None and c["rule"] == "at_most":
            # The run's own noise is part of its regime: a bound that a perfect implementation would miss
            # at this noise cannot be shown by this run. With a bound test, the bar is what the test asks
            # of a reproduction: a perfect implementation must read reproduced in 95% of resamples.
            bound = expected + float(c.get("tolerance", 0.0))
            below, above = m.bound_test(bound) if m.bound_test is not None else (bound, math.nan)
            declared = "" if row["power"] == "not declared" else f"; {row['power']}"
            if not math.isfinite(m.noise_floor):
                powered = False
                row["power"] = f"under-powered: needs more than one run per case (the runs' noise is unknown){declared}"
            else:
                need = (f"a noise floor <= {below:.3g} (the value a perfect implementation reaches at the run's "
                        "noise, 95%; " + (f"under {below:.3g}, what a model erring by the bound {bound:g} shows in "
                                          "at most 5% of resamples, reads reproduced)" if m.bound_test is not None
                                          else "the bound)"))
                powered = m.noise_floor <= below
                row["power"] = (f"powered: {need}, ran {m.noise_floor:.3g}{declared}" if powered
                                else f"under-powered: needs {need}, ran {m.noise_floor:.3g} (more runs per case lower "
                                     f"the floor)" + (f"; a value over {above:.3g} still reads not reproduced"
                                                      if m.bound_test is not None else "") + declared)
            if m.bound_test is not None and math.isfinite(m.noise_floor) and math.isfinite(m.value):
                # Decided against the runs' own noise at the bound, not against a standard error
                # (validate.bound_test): a value a model at the bound shows at this noise is neither a
                # reproduction nor a refutation. A refutation needs no power to reproduce: a value beyond
                # what a model at the bound shows is one whatever a perfect model would read.
                refuted = m.value > above
                verdict = ("not reproduced" if refuted else "reproduced" if m.value < below and powered
                           else "inconclusive")
                tested = (f"a model erring by the bound {bound:g} shows under {below:.3g} in at most 5% of resamples "
                          f"and over {above:.3g} in at most 5% (each configuration of errors taken as least "
                          "favourable; rounds assumed independent)")
                reason = f"measured {m.value:.3g}: {tested}"
            elif m.bound_test is not None and math.isfinite(m.noise_floor):
                verdict, reason, tested = "inconclusive", "the measured value is not finite", "not finite"
        if not powered and not refuted:  # never decided below the claim's regime, whatever the numbers say
            verdict, reason = "inconclusive", row["power"]
        elif not equal_tuning:  # an arm had a larger tuning budget than another: not a fair comparison
            verdict, reason = "inconclusive", tuned
        elif m.invalid:  # not the comparison the claim states (e.g. unequal bits)
            verdict, reason = "inconclusive", m.invalid
        elif tested and verdict == "inconclusive":  # (a non-finite value keeps its reason)
            if math.isfinite(m.value):
                reason = f"measured {m.value:.3g} is within the runs' noise about the bound: {tested}"
        elif verdict == "inconclusive":
            reason = ("one seed (or a non-finite value): the spread over seeds is unknown"
                      if math.isfinite(m.value) and math.isinf(m.sem) else
                      f"the bound lies within two standard errors over {m.sem_over}")
        # A claim judged by a bound test has no standard error to show (its thresholds are in the reason).
        row.update(verdict=verdict, measured=m.value, sem=math.nan if m.bound_test is not None else m.sem,
                   expected=expected, evidence=m.evidence, reason=reason)
        rows.append(row)
    return pd.DataFrame(rows)
