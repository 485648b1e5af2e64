"""Equal tuning (issue 13, item 2): every arm of a comparison gets the same grid, chosen on a validation
split by a rule fixed before the runs.

1. The grid, in a runs sheet: a method entry may carry `tune: {lr: [1e-3, 3e-3], gamma: [0.5, 1.0]}`
   (keys are parameters of its method, values lists). `expand` turns the entry into one arm per point of
   the cartesian product, in the key order written, labelled `<label>.t<i>` (i = 0..n-1 in product
   order), each with its params overridden by the point; thinwire/config.py plans one run per arm and seed.
2. The choice, when the results table is built (analysis/table.py): `select` applies `min_validation_loss`
   per arm, the point with the lowest mean over seeds of the runs' final validation loss (column
   val_loss, the workload's validation split: never the eval data the verdicts read). A diverged run, or
   one without a finite validation loss, makes its point lose; ties go to the lowest index. The chosen
   point's rows take the arm's plain label (claims read them unchanged) and carry the grid and every
   point's validation loss in the column `tuning` (JSON); the other points' rows stay in the table as
   evidence, with mode `tuning`, which no quantity or figure reads.
3. The budget, in a claim file: `tuning: {rule: min_validation_loss, arms: [dsm_ls, local_adamw]}`.
   `check_equal_budget` gives the claim's tuning text and refuses (verdict inconclusive, "unequal
   tuning: ...") when its arms had different numbers of grid points, e.g. one tuned and one not.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from typing import Any

import numpy as np
import pandas as pd
from thinwire.algorithms.comm import ThinwireError

RULES = ("min_validation_loss",)
TUNING_MODE = "tuning"  # the mode of a grid point's rows that the rule did not choose
GRID_LABEL = re.compile(r"^(?P<arm>.+)\.t(?P<point>\d+)$")


def arm_label(label: str) -> str:
    """The arm a run's label belongs to: `dense` for the grid point `dense.t2`, else the label itself."""
    point = GRID_LABEL.match(label)
    return point["arm"] if point else label


def grid_points(tune: Any, fields: list[str], method: str) -> list[dict[str, Any]]:
    """The points of a `tune` mapping, as parameter overrides in product order (the last key varies
    fastest); one-line errors for an unknown parameter, an empty or non-list value, a repeated value."""
    if not isinstance(tune, dict) or not tune:
        raise ThinwireError(f"tune must map parameters of {method} to lists of values, got {tune!r}")
    for key, values in tune.items():
        if key not in fields:
            raise ThinwireError(f"tune: {method} has no parameter {key!r}; its parameters: {', '.join(fields)}")
        if key == "seed":
            raise ThinwireError("tune: 'seed' is not a tuning parameter: the runs' seeds are the sheet's seeds")
        if not isinstance(values, list) or not values:
            raise ThinwireError(f"tune.{key} must be a non-empty list of values, got {values!r}")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise ThinwireError(f"tune.{key} repeats a value: {values!r}")
    keys = list(tune)
    return [dict(zip(keys, point)) for point in itertools.product(*(tune[k] for k in keys))]


def expand(entry: dict[str, Any], fields: list[str]) -> list[dict[str, Any]]:
    """A runs-sheet method entry as the method entries it runs: itself when untuned, else one per grid
    point, `<label>.t<i>` with its params overridden by the point (and no `tune`)."""
    label = entry.get("label", entry["method"])
    if GRID_LABEL.match(label):
        raise ThinwireError(f"label {label!r}: labels ending in .t<number> name tuning grid points")
    if "tune" not in entry:
        return [entry]
    base = {k: v for k, v in entry.items() if k != "tune"}
    return [{**base, "label": f"{label}.t{i}", "params": {**entry.get("params", {}), **point}}
            for i, point in enumerate(grid_points(entry["tune"], fields, entry["method"]))]


def _final(run: pd.DataFrame, column: str) -> float:
    """A run's last value of `column` (NaN when it logged none)."""
    values = run.dropna(subset=[column])[column] if column in run else pd.Series(dtype=float)
    return float(values.iloc[-1]) if len(values) else math.nan


def _score(run: pd.DataFrame) -> float:
    """What min_validation_loss ranks a run by: its final validation loss; +inf when it diverged or has
    no finite one (such a point loses to any point that ran)."""
    value = _final(run, "val_loss")
    diverged = "status" in run and (run["status"] == "diverged").any()
    return value if math.isfinite(value) and not diverged else math.inf


def select(runs: pd.DataFrame, rule: str = "min_validation_loss") -> pd.DataFrame:
    """The runs' rows with each tuned arm resolved by `rule` (module docstring, step 2): the chosen
    point's rows labelled with the arm, its grid in column `tuning`; the other points' rows mode TUNING_MODE.
    Rows of untuned arms are returned as they are (column `tuning` empty)."""
    if rule not in RULES:
        raise ThinwireError(f"tuning rule must be one of {RULES}, got {rule!r}")
    runs = runs.copy()
    runs["tuning"] = ""
    if runs.empty or "label" not in runs:
        return runs
    labels = runs["label"].astype(str)
    point = labels.str.extract(GRID_LABEL)
    grid = point["arm"].notna() & runs["mode"].isin(["sim", "real"])
    if not grid.any():
        return runs
    runs["_arm"], runs["_point"] = point["arm"], pd.to_numeric(point["point"])
    keys = ["experiment", "mode", "backend", "_arm"]
    for _, arm in runs[grid].groupby(keys, sort=False):
        points = []
        for index, rows in arm.sort_values("step").groupby("_point"):
            scores = [_score(r) for _, r in rows.groupby("run")]
            params = json.loads(rows["params"].iloc[0])
            points.append({"point": f"t{int(index)}", "index": int(index), "params": params,
                           "val_loss": float(np.mean(scores)), "seeds": len(scores)})
        tuned = _tuned_keys([p["params"] for p in points])
        chosen = min(points, key=lambda p: (p["val_loss"], p["index"]))
        record = {"rule": rule, "chosen": chosen["point"], "points": [
            {"point": p["point"], "values": {k: p["params"].get(k) for k in tuned},
             "val_loss": p["val_loss"] if math.isfinite(p["val_loss"]) else None, "seeds": p["seeds"]}
            for p in points]}
        text = json.dumps(record, sort_keys=True)
        member = runs.index.isin(arm.index)
        runs.loc[member & (runs["_point"] == chosen["index"]), ["label", "tuning"]] = [arm["_arm"].iloc[0], text]
        runs.loc[member & (runs["_point"] != chosen["index"]), "mode"] = TUNING_MODE
    return runs.drop(columns=["_arm", "_point"])


def _tuned_keys(params: list[dict]) -> list[str]:
    """The parameters whose value differs between a grid's points (the tuned ones), in their order; a
    method's `seed` derives from the run's seed (never tuned), so it is not one."""
    keys = [k for k in dict.fromkeys(k for p in params for k in p) if k != "seed"]
    return [k for k in keys if len({json.dumps(p.get(k), sort_keys=True) for p in params}) > 1]


def arm_tuning(rows: pd.DataFrame) -> dict | None:
    """The tuning record of one arm's rows (select's JSON), None for an untuned arm."""
    if "tuning" not in rows:
        return None
    texts = rows["tuning"].dropna().astype(str)
    texts = texts[texts != ""]
    return json.loads(texts.iloc[0]) if len(texts) else None


def describe(arm: str, record: dict | None) -> str:
    """One arm's grid and choice in words: `dense: lr [0.5, 1, 2] -> lr=1 (validation loss 0.41; 0.45, 0.52)`."""
    if record is None:
        return f"{arm}: untuned"
    points = record["points"]
    keys = list(points[0]["values"]) if points else []
    grid = ", ".join(f"{k} {_values([p['values'][k] for p in points])}" for k in keys) or "one point"
    chosen = next(p for p in points if p["point"] == record["chosen"])
    value = ", ".join(f"{k}={_fmt(v)}" for k, v in chosen["values"].items()) or chosen["point"]
    losses = "; ".join(f"{p['point']} {_fmt(p['val_loss'])}" for p in points)
    return f"{arm}: {grid} -> {value} (validation loss per point: {losses})"


def _values(values: list) -> str:
    """The distinct values, in their order, as a list."""
    unique = [json.loads(s) for s in dict.fromkeys(json.dumps(v) for v in values)]
    return "[" + ", ".join(_fmt(v) for v in unique) + "]"


def _fmt(v: Any) -> str:
    if v is None:
        return "diverged"
    return f"{v:.4g}" if isinstance(v, float) else json.dumps(v) if not isinstance(v, str) else v


def check_spec(spec: Any, where: str) -> str:
    """A claim file's `tuning` entry, checked: {rule: <one of RULES>, arms: [label, ...]}; returns the rule."""
    if not isinstance(spec, dict) or set(spec) != {"rule", "arms"}:
        raise ThinwireError(f"{where}: tuning must be {{rule: ..., arms: [...]}}, got {spec!r}")
    if spec["rule"] not in RULES:
        raise ThinwireError(f"{where}: tuning.rule must be one of {RULES}, got {spec['rule']!r}")
    arms = spec["arms"]
    if not isinstance(arms, list) or len(arms) < 2 or not all(isinstance(a, str) and a for a in arms):
        raise ThinwireError(f"{where}: tuning.arms must list the compared arms' labels (two or more), got {arms!r}")
    return spec["rule"]


def check_equal_budget(rows: pd.DataFrame, spec: dict, by: str = "label") -> tuple[bool, str]:
    """(equal, text) for a claim's `tuning` entry over its runs' rows (the experiment's sim/real rows):
    every arm must have had the same number of grid points (an untuned arm counts one). The text gives
    the rule, each arm's grid and chosen values, or says plainly that no arm was tuned; when unequal it
    is "unequal tuning: <arm> n points, <arm> m points"."""
    records = {arm: arm_tuning(rows[rows[by] == arm]) for arm in spec["arms"]}
    present = {arm: rec for arm, rec in records.items() if (rows[by] == arm).any()}
    sizes = {arm: len(rec["points"]) if rec else 1 for arm, rec in present.items()}
    missing = [arm for arm in spec["arms"] if arm not in present]
    absent = f"; no runs of {', '.join(missing)}" if missing else ""
    if len(set(sizes.values())) > 1:
        return False, "unequal tuning: " + ", ".join(
            f"{arm} {n} point{'s' if n != 1 else ''}{'' if present[arm] else ' (untuned)'}" for arm, n in sizes.items())
    if not any(present.values()):
        return True, (f"not tuned: every arm ran the sheet's fixed settings ({spec['rule']} declared for "
                      f"{', '.join(spec['arms'])}; these runs have no grid){absent}")
    n = next(iter(sizes.values()))
    return True, (f"{spec['rule']} on the validation split, {n} points per arm: "
                  + "; ".join(describe(arm, rec) for arm, rec in present.items()) + absent)
