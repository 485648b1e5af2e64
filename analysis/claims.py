"""Claims as data, and the machinery that gives each a verdict from the results table (the quantities a
claim measures are in analysis/quantities.py, its power requirements in analysis/power.py).

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
power.check_power; arms tuned on unequal grids, tuning.check_equal_budget; or the bound lies within two
standard errors of the seed-to-seed spread: with a single seed the spread is unknown, see
quantities.standard_error, unless the quantity is a byte count whose every step equals its method's
formula, quantities.bytes_fixed), out of scope, reported (rule `reported`: a number computed and shown,
such as a performance-model prediction for a setup the paper leaves unstated, where no fair bound exists
to judge it by). Tolerances are fixed in the claim file before any result exists;
nothing here adjusts them.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import yaml
from thinwire.algorithms.comm import ThinwireError
from thinwire.analysis import tuning as tuning_rules
from thinwire.analysis.catalog import PAPERS_DIR
from thinwire.analysis.power import POWER, check_power, claim_rows
from thinwire.analysis.quantities import QUANTITIES, Measurement, run_params, select

RULES = ("within", "at_most", "at_least", "reported")
# paper claim: a claim of a paper in ../shared/papers (the report's headline counts only these);
# implementation check: a contract or identity true by construction (bits, cross-mode agreement, a
# quantizer identity, the model's validation on this machine); predicted: decided by the performance model.
# exploratory: a row whose settings or inputs were chosen after seeing results (kept visible, never counted
# in the headline): a paper claim's earlier row (a confirmatory row re-runs it on settings fixed beforehand)
# or a model prediction under a reading of a cluster's facts found after seeing the predictions.
KINDS = ("paper claim", "implementation check", "predicted", "exploratory")
# Quantities whose value is the performance model's, not a measurement: their claims are `predicted` (or
# `exploratory`), never a paper claim's reproduction.
MODEL_QUANTITIES = {"model_prediction", "model_bandwidth", "model_codec_share", "published_collective_error"}
# Quantities that count bytes or rounds (quantities.bytes_fixed decides whether one seed suffices).
BYTE_QUANTITIES = {"compression_ratio", "volume_ratio", "rounds_ratio", "wire_bits_per_param"}
FIELDS = {"id", "source", "statement", "setup", "quantity", "rule", "expected", "tolerance", "figure",
          "out_of_scope", "kind", "paper_claim", "power", "tuning"}
REQUIRED = {"id", "source", "statement", "setup", "quantity", "rule", "expected", "kind"}



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
    if q["name"] in MODEL_QUANTITIES and c["kind"] not in ("predicted", "exploratory"):
        raise ThinwireError(f"{path}: claim {name}: its quantity {q['name']} is a performance-model prediction, "
                            f"so its kind must be predicted (or exploratory), got {c['kind']!r}")
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
    rows = select(table, mode=["sim", "real"], experiment=q.get("experiment"), workload=q.get("workload"))
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
    rows = claim_rows(table, q)
    if rows.empty:
        return ""
    if "experiment" not in q and "baseline" not in q:  # a contract over every run of a method
        where = rows.get("experiment", pd.Series(dtype=str)).dropna().astype(str).unique()
        return f"every {q['method']} run: {rows['run'].nunique()} runs" + (f" in {', '.join(sorted(where))}"
                                                                          if len(where) else "")
    arms = []
    by = "label" if "experiment" in q else "method"
    for arm, r in rows.groupby(by, sort=False):
        params = {k: v for k, v in run_params(r).items() if k != "seed"}
        arms.append(f"{arm}: {r['method'].iloc[0]} {json.dumps(params, sort_keys=True)}")
    first = rows.iloc[0]
    seeds = sorted(int(x) for x in rows["seed"].unique())
    return (f"{'; '.join(arms)}; workload {first['workload']}, {int(first['world_size'])} workers, "
            f"{int(rows.groupby('run')['step'].max().max() + 1)} steps, seeds {seeds}")


class Regime(NamedTuple):
    """What an at_most claim's runs can show at their own noise (_against_noise)."""
    powered: bool
    power: str        # the power text the report shows
    verdict: str      # "" keeps judge()'s verdict
    reason: str
    tested: str       # the bound test's thresholds, said in words ("" without a bound test)
    refuted: bool


def _against_noise(m: Measurement, bound: float, power: str) -> Regime:
    """The run's own noise is part of its regime: a bound that a perfect implementation would miss at this
    noise cannot be shown by this run. With a bound test, the bar is what the test asks of a reproduction:
    a perfect implementation must read reproduced in 95% of resamples; and the verdict is decided against
    the runs' noise at the bound, not against a standard error (validate.bound_test): a value a model at
    the bound shows at this noise is neither a reproduction nor a refutation. A refutation needs no power to
    reproduce: a value beyond what a model at the bound shows is one whatever a perfect model would read."""
    below, above = m.bound_test(bound) if m.bound_test is not None else (bound, math.nan)
    declared = "" if power == "not declared" else f"; {power}"
    if not math.isfinite(m.noise_floor):
        return Regime(False, f"under-powered: needs more than one run per case (the runs' noise is unknown){declared}",
                      "", "", "", False)
    need = (f"a noise floor <= {below:.3g} (the value a perfect implementation reaches at the run's noise, 95%; "
            + (f"under {below:.3g}, what a model erring by the bound {bound:g} shows in at most 5% of resamples, "
               "reads reproduced)" if m.bound_test is not None else "the bound)"))
    powered = m.noise_floor <= below
    power = (f"powered: {need}, ran {m.noise_floor:.3g}{declared}" if powered
             else f"under-powered: needs {need}, ran {m.noise_floor:.3g} (more runs per case lower the floor)"
                  + (f"; a value over {above:.3g} still reads not reproduced" if m.bound_test is not None else "")
                  + declared)
    if m.bound_test is None:
        return Regime(powered, power, "", "", "", False)
    if not math.isfinite(m.value):
        return Regime(powered, power, "inconclusive", "the measured value is not finite", "not finite", False)
    refuted = m.value > above
    verdict = "not reproduced" if refuted else "reproduced" if m.value < below and powered else "inconclusive"
    tested = (f"a model erring by the bound {bound:g} shows under {below:.3g} in at most 5% of resamples and over "
              f"{above:.3g} in at most 5% (each configuration of errors taken as least favourable; rounds assumed "
              "independent)")
    return Regime(powered, power, verdict, f"measured {m.value:.3g}: {tested}", tested, refuted)


def verdicts(table: pd.DataFrame, claims: list[dict], studies: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """A verdict per claim. Quantities that take `studies` also get the study tables by name."""
    rows = []
    for c in claims:
        row = {k: c.get(k, "") for k in ("id", "source", "statement", "setup", "figure", "kind", "paper_claim")}
        # sem: the measured value's standard error over seeds (inf: one seed; 0: exact by construction).
        equal_tuning, tuned = check_tuning(table, c) if not c.get("out_of_scope") else (True, tuning(c))
        row.update(measured=np.nan, sem=np.nan, expected=np.nan, evidence="", reason="", ran_on=_ran_on(table, c),
                   tuning=tuned, config=run_config(table, c), power="not declared",
                   value_from="model" if c["quantity"]["name"] in MODEL_QUANTITIES else "runs")
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
            regime = _against_noise(m, expected + float(c.get("tolerance", 0.0)), row["power"])
            powered, row["power"], tested, refuted = regime.powered, regime.power, regime.tested, regime.refuted
            verdict, reason = regime.verdict or verdict, regime.reason or reason
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
