"""Power: the regime in which a comparison can be tested, as requirements on quantities computed from
the run's own parameters and logs. A claim declares them (`power: {seeds: 3, global_rounds: 100}`); a
run below any gives "inconclusive: under-powered: needs X, ran Y", never a decided verdict.
claim_rows: the training runs a claim reads (also what claims.run_config describes)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pandas as pd
from thinwire.analysis.quantities import run_params, select


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
            return fn(run_params(r), int(r["step"].max() + 1)) if fn else None
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
        return max(steps - float(fn(run_params(r))), 0.0) / steps if fn else None
    return _per_run(_arm(rows, q, "label"), share)


@_power("baseline_warmup_steps")
def _baseline_warmup_steps(rows: pd.DataFrame, q: dict) -> float | None:
    """The baseline's warm-up length in updates (its params' warmup_steps)."""
    return _per_run(_arm(rows, q, "baseline"), lambda r: float(run_params(r).get("warmup_steps", 0)))


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


def claim_rows(table: pd.DataFrame, q: dict) -> pd.DataFrame:
    """The training runs a claim's quantity reads: its experiment's (or method's) arms."""
    if not {"mode", "method"} <= set(table.columns):  # no training runs (e.g. a study-only table)
        return table.iloc[0:0]
    rows = select(table, mode=["sim", "real"], experiment=q.get("experiment"))
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
    rows = claim_rows(table, claim["quantity"])
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
