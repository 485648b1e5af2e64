"""Claims as data, and the machinery that gives each a verdict from the results table.

A claim file (analysis/claims/*.yaml) holds a list of claims:

    - id: EF-1
      source: "Stich et al. 2018, Sparsified SGD with memory, Thm 2.4 / Fig. 3"
      statement: what the paper says, in its words
      setup: what this machine runs to check it
      quantity: {name: final_loss_ratio, method: topk-ef, baseline: sgd, workload: logreg}
      rule: at_most          # within | at_most | at_least
      expected: 1.05         # a number, or "stated" for the runs' stated value
      tolerance: 0.0         # absolute, added to the bound (within: |measured - expected| <= tolerance)
      figure: loss_vs_step
      out_of_scope: "why"    # optional: no verdict is computed, the reason is reported

Verdicts: reproduced, not reproduced, inconclusive (no data, or the bound lies within two standard
errors of the seed-to-seed spread), out of scope. Tolerances are fixed in the claim file before
any result exists; nothing here adjusts them.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from thinwire.algorithms.comm import ThinwireError

CLAIMS_DIR = Path(__file__).parent / "claims"
RULES = ("within", "at_most", "at_least")
FIELDS = {"id", "source", "statement", "setup", "quantity", "rule", "expected", "tolerance", "figure",
          "out_of_scope"}
REQUIRED = {"id", "source", "statement", "setup", "quantity", "rule", "expected"}


@dataclasses.dataclass
class Measurement:
    value: float
    expected: float | None = None  # when the quantity itself knows the expected value ("stated")
    sem: float = 0.0  # standard error over seeds; 0 when exact
    evidence: str = ""


QUANTITIES: dict[str, Callable[..., Measurement | None]] = {}


def quantity(fn: Callable[..., Measurement | None]) -> Callable[..., Measurement | None]:
    QUANTITIES[fn.__name__] = fn
    return fn


def _select(table: pd.DataFrame, **where: Any) -> pd.DataFrame:
    for key, value in where.items():
        values = value if isinstance(value, list) else [value]
        table = table[table[key].isin(values)]
    return table


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
                     mode: str = "sim") -> Measurement | None:
    """Final full objective (eval_loss) of `method` over `baseline`'s, paired by seed; mean over seeds."""
    rows = _select(table, workload=workload, mode=mode)
    finals = rows.dropna(subset=["eval_loss"]).sort_values("step").groupby(["method", "seed"])["eval_loss"].last()
    if method not in finals.index.get_level_values(0) or baseline not in finals.index.get_level_values(0):
        return None
    ratio = (finals[method] / finals[baseline]).dropna()
    if ratio.empty:
        return None
    sem = float(ratio.std(ddof=1) / math.sqrt(len(ratio))) if len(ratio) > 1 else math.inf
    diverged = rows[(rows["method"] == method) & (rows["status"] == "diverged")]["run"].nunique()
    return Measurement(float(ratio.mean()), None, sem,
                       f"{method} / {baseline} final loss on {workload} ({mode}), {len(ratio)} seeds: "
                       f"mean {ratio.mean():.4g} (per seed {', '.join(f'{r:.4g}' for r in ratio)}); "
                       f"{diverged} diverged runs")


@quantity
def mode_agreement(table: pd.DataFrame) -> Measurement | None:
    """Largest |loss difference| between a simulator run and a real run of the same setup."""
    keys = ["method", "params", "workload", "world_size", "seed", "dtype", "step"]
    sim = _select(table, mode="sim")[keys + ["loss", "run"]]
    real = _select(table, mode="real")[keys + ["loss", "run", "backend"]]
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
def compression_ratio(table: pd.DataFrame, experiment: str, method: str, baseline_bits: int = 32) -> Measurement | None:
    """Dense gradient bytes (baseline_bits per parameter) over the bytes the method logged at its last step."""
    rows = _select(table, experiment=experiment, method=method, mode=["sim", "real"])
    if rows.empty:
        return None
    last = rows.sort_values("step").groupby("run").tail(1)
    dense = last["n_params"] * baseline_bits / 8
    ratio = dense / last["bytes_sent"]
    mib = 2 ** 20
    worst = (ratio - ratio.mean()).abs().idxmax()
    return Measurement(float(ratio.mean()), None, float(ratio.std(ddof=0)),
                       f"{method} on {last.at[worst, 'workload']} ({int(last.at[worst, 'n_params']):,} parameters): "
                       f"{last.at[worst, 'bytes_sent'] / mib:.4g} MB sent per rank per step against "
                       f"{dense[worst] / mib:.4g} MB dense ({baseline_bits}-bit), over {len(last)} runs")


@quantity
def final_metric_gap(table: pd.DataFrame, experiment: str, label: str, baseline: str,
                     mode: str = "sim") -> Measurement | None:
    """Final metric (accuracy of the average model) of `baseline` minus that of `label`, paired by
    seed; mean over seeds, with its standard error. Positive: `label` lost accuracy."""
    rows = _select(table, experiment=experiment, mode=mode).dropna(subset=["metric"])
    finals = rows.sort_values("step").groupby(["label", "seed"])["metric"].last()
    labels = finals.index.get_level_values(0)
    if label not in labels or baseline not in labels:
        return None
    gap = (finals[baseline] - finals[label]).dropna()
    if gap.empty:
        return None
    sem = float(gap.std(ddof=1) / math.sqrt(len(gap))) if len(gap) > 1 else math.inf
    return Measurement(float(gap.mean()), None, sem,
                       f"final accuracy {baseline} {finals[baseline].mean():.4f} vs {label} {finals[label].mean():.4f} "
                       f"on {experiment} ({mode}), {len(gap)} seeds; gap per seed "
                       f"{', '.join(f'{g:+.4f}' for g in gap)}")


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
    sem = float(per_run.std(ddof=1) / math.sqrt(len(per_run))) if len(per_run) > 1 else 0.0
    return Measurement(float(per_run.mean()), None, sem,
                       f"{name} of {label} on {experiment}: {', '.join(f'{v:.4g}' for v in per_run)} "
                       f"({len(per_run)} runs)")


@quantity
def study_ratio(table: pd.DataFrame, studies: dict[str, pd.DataFrame], study: str, a: str, b: str,
                match: list[str], metric: str = "mse") -> Measurement | None:
    """The largest metric(a) / metric(b) over the cases of a study (results/studies/<study>.csv)
    where a and b share the `match` columns, e.g. ORQ against QSGD per distribution and code bits."""
    df = studies.get(study)
    if df is None:
        return None
    pair = df[df["quantizer"] == a].merge(df[df["quantizer"] == b], on=match, suffixes=("_a", "_b"))
    if pair.empty:
        return None
    pair["ratio"] = pair[f"{metric}_a"] / pair[f"{metric}_b"]
    worst = pair["ratio"].idxmax()
    cases = "; ".join(f"{' '.join(str(r[m]) for m in match)}: {r['ratio']:.3g}" for _, r in pair.iterrows())
    bits = (f" (bits per value {pair['bits_per_value_a'].mean():.3g} vs {pair['bits_per_value_b'].mean():.3g})"
            if "bits_per_value_a" in pair else "")
    return Measurement(float(pair.at[worst, "ratio"]), None, 0.0,
                       f"{metric} of {a} / {b}{bits}, worst case "
                       f"{' '.join(str(pair.at[worst, m]) for m in match)}; all: {cases}")


def load_claims(folder: Path | None = None) -> list[dict]:
    claims = []
    for path in sorted(Path(folder or CLAIMS_DIR).glob("*.yaml")):
        try:
            items = yaml.safe_load(path.read_text()) or []
        except yaml.YAMLError as e:
            raise ThinwireError(f"claim file {path} is not valid YAML: {e}") from None
        for c in items:
            _check(c, path)
            claims.append(c)
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


def verdicts(table: pd.DataFrame, claims: list[dict], studies: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """A verdict per claim. Quantities that take `studies` also get the study tables by name."""
    rows = []
    for c in claims:
        row = {k: c.get(k, "") for k in ("id", "source", "statement", "setup", "figure")}
        row.update(measured=np.nan, expected=np.nan, evidence="", reason="")
        if c.get("out_of_scope"):
            row.update(verdict="out of scope", reason=c["out_of_scope"])
            rows.append(row)
            continue
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
        expected = m.expected if c["expected"] == "stated" else float(c["expected"])
        if expected is None:
            raise ThinwireError(f"claim {c['id']}: quantity {c['quantity']['name']} has no stated value")
        verdict = judge(c["rule"], m.value, expected, float(c.get("tolerance", 0.0)), m.sem)
        reason = "the bound lies within two standard errors over seeds" if verdict == "inconclusive" else ""
        row.update(verdict=verdict, measured=m.value, expected=expected, evidence=m.evidence, reason=reason)
        rows.append(row)
    return pd.DataFrame(rows)
