"""What produced a report: the code revision, the runs sheets, the machine, the date and the wall time.

The workflow records what only it knows (workflow/rules/report.smk): the config files it was given, its
command line and when it started, as JSON in the environment variable THINWIRE_PROVENANCE of the report
job. The rest comes from the results table (each run's env: git revision, cluster) and from this
process (the report's own revision, machine and date). A report built outside the workflow says that
the workflow's part was not recorded.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from html import escape
from pathlib import Path

import pandas as pd

ENV_VAR = "THINWIRE_PROVENANCE"
NOT_RECORDED = "not recorded (the report was built outside the workflow)"


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5, check=False)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def recorded() -> dict:
    """The workflow's record (ENV_VAR), or {} outside the workflow or when it is not valid JSON."""
    try:
        value = json.loads(os.environ.get(ENV_VAR, "") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min {s:02d} s" if h else f"{m} min {s:02d} s" if m else f"{s} s"


def _counts(values: pd.Series) -> str:
    counts = sorted(values.value_counts().items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{name} ({n} runs)" for name, n in counts)


def collect(table: pd.DataFrame, record: dict | None = None, now: datetime | None = None) -> dict[str, str]:
    """The provenance as ordered label: text pairs."""
    record = recorded() if record is None else record
    now = now or datetime.now(timezone.utc)
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    if commit != "unknown" and _git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    measured = table[table["mode"].isin(["sim", "real"])] if "mode" in table else table.iloc[:0]
    runs = measured.drop_duplicates("run") if "run" in measured else measured
    info: dict[str, str] = {"commit (report)": commit}
    if "env" in runs and len(runs):
        revs = runs["env"].map(lambda e: json.loads(e).get("git", "unknown") if isinstance(e, str) else "unknown")
        info["commit (runs)"] = _counts(revs)
    configs = record.get("configfiles")
    info["configs"] = (", ".join(map(str, configs)) if configs else "the default sheet, config/quick.yaml"
                       ) if "configfiles" in record else NOT_RECORDED
    if record.get("command"):
        info["command"] = str(record["command"])
    info["machine (report)"] = f"{platform.node() or 'unknown'}: {platform.platform()}, {os.cpu_count()} CPUs"
    if "ran_on" in runs and len(runs):
        info["machines (runs)"] = _counts(runs["ran_on"].fillna("unknown").astype(str))
    info["date"] = now.strftime("%Y-%m-%d %H:%M UTC")
    started = record.get("started")
    try:
        info["wall time"] = (f"{_duration((now - datetime.fromisoformat(started)).total_seconds())} "
                             f"(this workflow invocation, start to report)")
    except (TypeError, ValueError):
        info["wall time"] = NOT_RECORDED
    if {"wall_s", "run"} <= set(measured.columns) and len(measured):
        info["run time"] = (f"{_duration(float(pd.to_numeric(measured['wall_s'], errors='coerce').sum()))} "
                            f"(the {measured['run'].nunique()} runs' step times, summed)")
    return info


def html(info: dict[str, str]) -> str:
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in info.items())
    return f'<table class="provenance">{rows}</table>'
