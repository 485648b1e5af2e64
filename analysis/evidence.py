"""One evidence figure per claim (or per group of claims that share their runs): the arms the claim
compares, and its measured value against the expected one with the tolerance band.

Every claim in scope has exactly one evidence figure, named by `figure_name` (analysis/gallery.py):

    figure: claim_sdp4bit_loss   # in claims.yaml: claims that name the same claim_* figure share it
    (no figure, or a non-claim_ one) -> claim_<id as a slug>, e.g. CL-1-epoch1 -> claim_cl_1_epoch1
    out_of_scope                 -> "" (no figure; the report says why)

so a claim row added to any claims.yaml gets its figure with no other edit. A figure has, left, one panel
per distinct view of the claims' runs (their loss or accuracy curves, bits or link bytes per step, a study's
cases, a rate's log-log line, the model's prediction; VIEWS picks the view from the quantity's name) and,
right, one row per claim: the measured value with +-2 standard errors over seeds, the expected value and
the band the rule accepts (within: expected +- tolerance; at_most / at_least: the half-line), labelled with
the verdict. Drawn with plain matplotlib on one Agg canvas per figure, all in the calling process.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from thinwire.algorithms.comm import ThinwireError
from thinwire.analysis.gallery import PREFIX, figure_name, groups, resolve_figures, slug  # noqa: F401 (the names)
from thinwire.analysis.quantities import QUANTITIES, Measurement, select, step_of

matplotlib.use("Agg")

DPI = 100
VERDICT_COLOURS = {"reproduced": "#2e8b57", "not reproduced": "#c0392b", "inconclusive": "#d4a017",
                   "reported": "#3a6ea5", "out of scope": "#888888"}


def measurement(table: pd.DataFrame, studies: dict[str, pd.DataFrame], claim: dict) -> Measurement | None:
    """The claim's quantity, computed as claims.verdicts computes it (for its standard error)."""
    q = claim["quantity"]
    fn = QUANTITIES[q["name"]]
    args = {k: v for k, v in q.items() if k != "name"}
    if "studies" in inspect.signature(fn).parameters:
        args["studies"] = studies
    try:
        return fn(table, **args)
    except (KeyError, TypeError, ValueError, ThinwireError):
        return None


# ---------------------------------------------------------------------------------------------- views
# A view: (key, draw). Claims of a figure whose views have the same key share one panel; draw gets the
# axes, the table, the studies and those claims, and returns False when it has nothing to draw.

View = tuple[tuple, Callable[[plt.Axes, pd.DataFrame, dict, list[dict]], bool]]


def _arms(claims: list[dict], keys: tuple[str, ...] = ("label", "baseline")) -> list[str]:
    return list(dict.fromkeys(c["quantity"][k] for c in claims for k in keys if k in c["quantity"]))


def _band(ax: plt.Axes, x: np.ndarray, mean: np.ndarray, sd: np.ndarray, label: str, **kw) -> None:
    # Markers where there are few steps: a run of one or two steps is a point, not an invisible line.
    line, = ax.plot(x, mean, label=label, lw=1.6, marker="o" if len(x) <= 20 else None, ms=4, **kw)
    if np.isfinite(sd).any():
        ax.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=0.18, lw=0)


def _curves(ax: plt.Axes, rows: pd.DataFrame, by: str, arms: list[str], column: str, cumulative: bool = False) -> bool:
    """Per arm, `column` per step: mean over seeds, band +-1 standard deviation (non-finite values dropped)."""
    drew = False
    for arm in arms:
        r = rows[rows[by] == arm].dropna(subset=[column]).sort_values("step")
        if r.empty:
            continue
        values = r[column].astype(float)
        if cumulative:
            values = values.groupby(r["run"]).cumsum()
        r = r.assign(v=values)
        r = r[np.isfinite(r["v"])]
        stats = r.groupby("step")["v"].agg(["mean", "std", "count"])
        seeds = r["seed"].nunique()
        _band(ax, stats.index.to_numpy(), stats["mean"].to_numpy(), stats["std"].fillna(np.nan).to_numpy(),
              f"{arm} ({seeds} seed{'s' * (seeds != 1)})")
        drew = True
    if drew:
        ax.legend(fontsize=8)
    return drew


def _log_if_wide(ax: plt.Axes, axis: str = "y") -> None:
    data = [v for line in ax.get_lines() for v in (line.get_ydata() if axis == "y" else line.get_xdata())]
    data = np.asarray([v for v in data if np.isfinite(v)], dtype=float)
    if data.size and (data > 0).all() and data.max() / data.min() > 30:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def _read_at(rows: pd.DataFrame, q: dict) -> int | None:
    """The step an at-step claim reads (its step, or the first step its epoch is done), None otherwise."""
    if "step" not in q and "epoch" not in q:
        return None
    try:
        return step_of(rows, step=q.get("step"), epoch=q.get("epoch"))
    except ThinwireError:  # the claim's own row says why
        return None


def _training_view(column: str, ylabel: str) -> Callable[[dict], View]:
    def view(c: dict) -> View:
        q = c["quantity"]
        mode = q.get("mode", "sim")
        where = q.get("experiment") or q.get("workload")

        def draw(ax, table, studies, claims):
            rows = select(table, mode=mode, experiment=q.get("experiment"),
                           workload=q.get("workload") if "experiment" not in q else None)
            by = "label" if "label" in q else "method"
            keys = ("label", "baseline") if by == "label" else ("method", "baseline")
            if not _curves(ax, rows, by, _arms(claims, keys), column):
                return False
            at = sorted({s for x in claims
                         if (s := _read_at(rows[rows[by].isin(_arms([x], keys))], x["quantity"])) is not None})
            for s in at:
                ax.axvline(s, color="grey", ls=":", lw=1)
            if column == "eval_loss":
                _log_if_wide(ax)
            marks = f"; dotted: steps {', '.join(map(str, at))}" if at else ""
            ax.set(xlabel="step", ylabel=ylabel, title=f"{where} ({mode}): mean over seeds, band +-1 sd{marks}")
            return True
        return ("training", column, where, mode), draw
    return view


def _bytes_view(c: dict) -> View:
    q = c["quantity"]
    bits = q.get("baseline_bits", 32)

    def draw(ax, table, studies, claims):
        rows = select(table, experiment=q["experiment"], method=q["method"], mode=["sim", "real"])
        if rows.empty:
            return False
        rows = rows.assign(bpp=rows["bytes_sent"] * 8 / rows["n_params"])
        if not _curves(ax, rows, "method", [q["method"]], "bpp"):
            return False
        ax.axhline(bits, color="black", ls="--", lw=1, label=f"dense ({bits}-bit)")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.set(xlabel="step", ylabel="bits per parameter sent per rank",
               title=f"{q['experiment']}: {q['method']} against dense (ratio at the last step)")
        return True
    return ("bytes", q["experiment"], q["method"]), draw


def _volume_view(c: dict) -> View:
    q = c["quantity"]
    last = q.get("steps", "all") == "last"

    def draw(ax, table, studies, claims):
        rows = select(table, experiment=q["experiment"], mode=["sim", "real"])
        if "link_bytes" not in rows or rows.empty:
            return False
        if not _curves(ax, rows, "label", _arms(claims), "link_bytes", cumulative=not last):
            return False
        _log_if_wide(ax)
        ax.set(xlabel="step", ylabel=("link bytes per rank per step" if last else "cumulative link bytes per rank"),
               title=f"{q['experiment']}: link volume ({'each step' if last else 'whole run'})")
        return True
    return ("volume", q["experiment"], last), draw


def _rounds_view(c: dict) -> View:
    q = c["quantity"]

    def draw(ax, table, studies, claims):
        rows = select(table, experiment=q["experiment"], mode=["sim", "real"])
        if rows.empty:
            return False
        rows = rows.assign(round=(rows["bytes_sent"] > 0).astype(float))
        if not _curves(ax, rows, "label", _arms(claims), "round", cumulative=True):
            return False
        ax.set(xlabel="step", ylabel="steps with method traffic (cumulative)",
               title=f"{q['experiment']}: communication rounds")
        return True
    return ("rounds", q["experiment"]), draw


def _bits_view(c: dict) -> View:
    q = c["quantity"]

    def draw(ax, table, studies, claims):
        rows = select(table, method=q["method"], mode=list(q.get("modes", ("sim", "real")))).dropna(
            subset=["stated_bits"])
        if rows.empty:
            return False
        measured = rows["bytes_sent"] * 8 / rows["n_params"]
        for (experiment, backend), idx in rows.groupby(["experiment", "backend"]).groups.items():
            ax.scatter(rows.loc[idx, "stated_bits"], measured[idx], s=14, alpha=0.7, label=f"{experiment} ({backend})")
        lo = float(min(rows["stated_bits"].min(), measured.min()))
        hi = float(max(rows["stated_bits"].max(), measured.max()))
        ax.plot([lo, hi], [lo, hi], color="black", lw=1)
        if lo > 0 and hi / lo > 30:
            ax.set(xscale="log", yscale="log")
        ax.legend(fontsize=7)
        ax.set(xlabel="stated bits per parameter (the method's formula)",
               ylabel="logged bits per parameter", title=f"{q['method']}: every step of every run (line: equal)")
        return True
    return ("bits", q["method"]), draw


def _modes_view(c: dict) -> View:
    def draw(ax, table, studies, claims):
        keys = ["method", "params", "workload", "world_size", "seed", "dtype", "step"]
        sim = select(table, mode="sim")[keys + ["loss", "run"]]
        real = select(table, mode="real")[keys + ["loss", "run", "backend"]]
        pairs = sim.merge(real, on=keys, suffixes=("_sim", "_real"))
        if pairs.empty:
            return False
        pairs["gap"] = (pairs["loss_sim"] - pairs["loss_real"]).abs()
        for backend, g in pairs.groupby("backend"):
            worst = g.groupby("step")["gap"].max()
            ax.plot(worst.index, worst.clip(lower=1e-18).to_numpy(), marker=".", label=f"{backend}: max over pairs")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.set(xlabel="step", ylabel="|loss(simulator) - loss(real ranks)|",
               title=f"{pairs[['run_sim', 'run_real']].drop_duplicates().shape[0]} simulator / real run pairs")
        return True
    return ("modes",), draw


def _diagnostic_view(c: dict) -> View:
    q = c["quantity"]
    column = f"diag_{q['diagnostic']}"

    def draw(ax, table, studies, claims):
        if column not in table:
            return False
        per_run = select(table, experiment=q["experiment"], label=q["label"]).groupby("run")[column].first().dropna()
        if per_run.empty:
            return False
        ax.bar(range(len(per_run)), per_run.to_numpy(), color="#3a6ea5")
        ax.set_xticks(range(len(per_run)), [r.rsplit("-", 1)[-1] for r in per_run.index], fontsize=8)
        ax.set(xlabel="run (seed)", ylabel=q["diagnostic"], title=f"{q['experiment']}: {q['label']}, per run")
        return True
    return ("diag", q["experiment"], q["label"], q["diagnostic"]), draw


def _study_ratio_view(c: dict) -> View:
    q = c["quantity"]
    metric, group, match = q.get("metric", "mse"), q.get("group", "quantizer"), list(q["match"])

    def draw(ax, table, studies, claims):
        df = studies.get(q["study"])
        arms = _arms(claims, ("a", "b"))
        if df is None or df.empty or metric not in df:
            return False
        rows = df[df[group].isin(arms)]
        if rows.empty:
            return False
        cases = rows[match].astype(str).agg(" ".join, axis=1)
        order = list(dict.fromkeys(cases))
        width = 0.8 / len(arms)
        for i, arm in enumerate(arms):
            r = rows[rows[group] == arm]
            x = np.array([order.index(k) for k in cases[r.index]], dtype=float) + (i - (len(arms) - 1) / 2) * width
            sem = r[f"{metric}_sem"] * 2 if f"{metric}_sem" in r else None
            ax.bar(x, r[metric].replace(np.inf, np.nan), width=width, yerr=sem, label=arm, capsize=2)
        ax.set_xticks(range(len(order)), order, rotation=45, ha="right", fontsize=7)
        positive = rows[metric].replace(np.inf, np.nan).dropna()
        if not positive.empty and (positive > 0).all() and positive.max() / positive.min() > 30:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.set(xlabel=" ".join(match), ylabel=metric, title=f"study {q['study']}: {metric} per case")
        return True
    return ("study_ratio", q["study"], metric, group, tuple(match)), draw


def _study_value_view(c: dict) -> View:
    q = c["quantity"]

    def draw(ax, table, studies, claims):
        df = studies.get(q["study"])
        if df is None or df.empty:
            return False
        rows = df[df["quantizer"] == q["a"]]
        if rows.empty or q["metric"] not in rows:
            return False
        cases = rows[[k for k in ("distribution", "code_bits") if k in rows]].astype(str).agg(" ".join, axis=1)
        sem = rows[f"{q['metric']}_sem"] * 2 if f"{q['metric']}_sem" in rows else None
        ax.errorbar(range(len(rows)), rows[q["metric"]], yerr=sem, fmt="o", capsize=3)
        ax.axhline(0, color="grey", lw=1)
        ax.set_xticks(range(len(rows)), list(cases), rotation=45, ha="right", fontsize=7)
        ax.set(ylabel=q["metric"], title=f"study {q['study']}: {q['a']} per case (+-2 se)")
        return True
    return ("study_value", q["study"], q["a"], q["metric"]), draw


def _rate_view(c: dict) -> View:
    q = c["quantity"]
    by, group, column = q.get("by", "rounds"), q.get("group", "sign"), q["column"]

    def draw(ax, table, studies, claims):
        df = studies.get(q["study"])
        if df is None or df.empty:
            return False
        drew = False
        for label in _arms(claims, ("label",)):
            r = df[df[group] == label]
            if r[by].nunique() < 2:
                continue
            means = r.groupby(by)[column].mean()
            line, = ax.plot(means.index, means.to_numpy(), "o-", label=label)
            slope, icpt = np.polyfit(np.log(r[by]), np.log(r[column]), 1)
            xs = np.array([means.index.min(), means.index.max()], dtype=float)
            ax.plot(xs, np.exp(icpt) * xs ** slope, ls="--", color=line.get_color(), lw=1,
                    label=f"fit: slope {slope:.2f}")
            drew = True
        if not drew:
            return False
        ax.set(xscale="log", yscale="log", xlabel=by, ylabel=column,
               title=f"study {q['study']}: log-log, mean over seeds")
        ax.legend(fontsize=8)
        return True
    return ("rate", q["study"], by, group, column), draw


def _model_bandwidth_view(c: dict) -> View:
    q = c["quantity"]
    job = q["study"].removeprefix("model-")

    def draw(ax, table, studies, claims):
        df = studies.get(q["study"])
        rows = table[table["mode"] == "model"] if "mode" in table else table.iloc[0:0]
        if df is None or df.empty or rows.empty:
            return False
        cluster = df["cluster"].iloc[0]
        rows = rows[(rows["cluster"] == cluster) & rows["label"].isin(_arms(claims, ("label",)))]
        if rows.empty:
            return False
        for label, r in rows.groupby("label"):
            s = r.groupby("bandwidth_gbps")["speedup"].mean()
            ax.plot(s.index, s.to_numpy(), "o-", label=label)
        for target in {float(x["quantity"]["speedup"]) for x in claims}:
            ax.axhline(target, color="grey", ls="--", lw=1)
        ax.set(xscale="log", xlabel="inter-node bandwidth (Gbit/s)", ylabel="predicted speedup over baseline (x)",
               title=f"model job {job} on {cluster}")
        ax.legend(fontsize=8)
        return True
    return ("model_bw", q["study"]), draw


def _prediction_view(c: dict) -> View:
    study = c["quantity"].get("study", "model-predicted")

    def draw(ax, table, studies, claims):
        df = studies.get(study)
        names = list(dict.fromkeys(x["quantity"]["claim"] for x in claims))  # a cell's exploratory row shares it
        if df is None or df.empty:
            return False
        rows = df[df["claim"].isin(names)].set_index("claim").reindex(names).dropna(subset=["predicted"])
        if rows.empty:
            return False
        y = np.arange(len(rows))
        ax.hlines(y, rows["band_low"], rows["band_high"], color="grey", lw=8, alpha=0.3, label="sensitivity band")
        ax.scatter(rows["predicted"], y, marker="o", zorder=3, label="predicted (public facts)")
        ax.scatter(rows["claimed"], y, marker="x", color="black", zorder=3, label="claimed by the paper")
        for col, marker in (("predicted_calibrated", "s"), ("predicted_cluster_calibrated", "^")):
            if col in rows and rows[col].notna().any():
                ax.scatter(rows[col], y, marker=marker, facecolors="none", edgecolors="C2", zorder=3,
                           label=col.replace("predicted_", "").replace("_", " "))
        if rows.get("predicted_exploratory", pd.Series(dtype=float)).notna().any():
            ax.scatter(rows["predicted_exploratory"], y, marker="D", color="C3", zorder=3,
                       label="exploratory reading (after seeing the predictions)")
        prefix = os.path.commonprefix(list(rows.index))
        prefix = prefix[:prefix.rfind("-") + 1] if len(rows) > 1 else ""  # "SDP-P1-": the labels fit the margin
        ax.set_yticks(y, [name[len(prefix):] for name in rows.index], fontsize=8)
        ax.set(xlabel="speedup over the paper's baseline (x)",
               title=f"performance model at the paper's setup{f' ({prefix[:-1]})' if prefix else ''}")
        entries = len(ax.get_legend_handles_labels()[0])
        ax.set_ylim(-0.6 - 0.3 * entries, len(rows) - 0.5)  # room below the rows, so the legend hides none
        ax.legend(fontsize=7, loc="lower left")
        return True
    return ("predicted", study), draw


def _collectives_view(c: dict) -> View:
    study = c["quantity"].get("study", "model-collectives")

    def draw(ax, table, studies, claims):
        df = studies.get(study)
        if df is None or df.empty:
            return False
        ax.scatter(df["measured_busbw_gbs"], df["predicted_busbw_gbs"], s=25)
        lo = df[["measured_busbw_gbs", "predicted_busbw_gbs"]].min().min() / 1.5
        hi = df[["measured_busbw_gbs", "predicted_busbw_gbs"]].max().max() * 1.5
        ax.plot([lo, hi], [lo, hi], color="black", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="published busbw (GB/s)", ylabel="predicted busbw (GB/s)",
               title=f"{len(df)} published all-reduce measurements (line: equal)")
        return True
    return ("collectives", study), draw


def _codec_view(c: dict) -> View:
    q = c["quantity"]

    def draw(ax, table, studies, claims):
        df = studies.get(q["study"])
        if df is None or df.empty:
            return False
        rows = df[(df["quantity"] == "codec_share") & (df["label"] == q["label"])]
        if rows.empty:
            return False
        s = rows.groupby("bandwidth_gbps")["value"].mean()
        ax.plot(s.index, s.to_numpy() * 100, "o-")
        ax.axvline(float(q["bandwidth"]), color="grey", ls=":", lw=1)
        ax.set(xscale="log", xlabel="inter-node bandwidth (Gbit/s)", ylabel="encode/decode share of the step (%)",
               title=f"{q['label']} on {rows['cluster'].iloc[0]}")
        return True
    return ("codec", q["study"], q["label"]), draw


def _validation_view(c: dict) -> View:
    study = c["quantity"].get("study", "validation")

    def draw(ax, table, studies, claims):
        df = studies.get(study)
        if df is None or df.empty:
            return False
        for bw, g in df.groupby("bandwidth"):
            ax.scatter(g["measured_s"] * 1e3, g["predicted_s"] * 1e3, s=25, label=str(bw))
        lo = min(df["measured_s"].min(), df["predicted_s"].min()) * 1e3 / 1.5
        hi = max(df["measured_s"].max(), df["predicted_s"].max()) * 1e3 * 1.5
        line = np.geomspace(lo, hi, 20)
        ax.plot(line, line, color="black", lw=1)
        bound = max(float(x["expected"]) + float(x.get("tolerance") or 0) for x in claims)
        ax.fill_between(line, line * (1 - bound), line * (1 + bound), color="grey", alpha=0.15, lw=0,
                        label=f"+-{bound:.0%}")
        if "round_errors" in df:
            from thinwire.validate import noise_floor

            floor = noise_floor(df, "max")
            if math.isfinite(floor):  # the largest error a perfect model shows at these runs' noise
                for sign in (-1, 1):
                    ax.plot(line, line * (1 + sign * floor), color="tab:red", ls="--", lw=1,
                            label=f"perfect model's max at this noise (95%): +-{floor:.0%}" if sign > 0 else None)
        ax.set(xscale="log", yscale="log", xlabel="measured step time (ms)", ylabel="predicted step time (ms)",
               title=f"{len(df)} cases of {study}")
        ax.legend(fontsize=7)
        return True
    return ("validation", study), draw


VIEWS: dict[str, Callable[[dict], View]] = {
    "final_loss_ratio": _training_view("eval_loss", "objective of the average model"),
    "final_eval_loss_ratio": _training_view("eval_loss", "held-out loss"),
    "eval_loss_ratio_at_step": _training_view("eval_loss", "held-out loss"),
    "final_metric_gap": _training_view("metric", "accuracy of the average model"),
    "compression_ratio": _bytes_view,
    "volume_ratio": _volume_view,
    "rounds_ratio": _rounds_view,
    "wire_bits_per_param": _bits_view,
    "mode_agreement": _modes_view,
    "diagnostic": _diagnostic_view,
    "study_ratio": _study_ratio_view,
    "study_value": _study_value_view,
    "rate_exponent": _rate_view,
    "model_bandwidth": _model_bandwidth_view,
    "model_prediction": _prediction_view,
    "published_collective_error": _collectives_view,
    "model_codec_share": _codec_view,
    "validation_error": _validation_view,
}


# ------------------------------------------------------------------------------ measured vs expected


def _bound(rule: str, expected: float, tolerance: float) -> tuple[float, float]:
    if rule == "within":
        return expected - tolerance, expected + tolerance
    if rule == "at_most":
        return -math.inf, expected + tolerance
    return expected - tolerance, math.inf


def verdict_panel(ax: plt.Axes, claims: list[dict], verdicts: dict[str, dict], sems: dict[str, float]) -> None:
    """One row per claim: measured +- 2 se (an arrow-less dot when the spread is unknown), the expected value
    (black tick) and the accepted band (green), the verdict as the row's label."""
    xs: list[float] = []
    for i, c in enumerate(claims):
        v = verdicts.get(c["id"], {})
        m, e = _num(v.get("measured")), _num(v.get("expected"))
        sem = sems.get(c["id"], math.nan)
        xs += [x for x in (m, e) if math.isfinite(x)]
        if math.isfinite(m) and math.isfinite(sem) and sem > 0:
            xs += [m - 2 * sem, m + 2 * sem]
        if math.isfinite(e) and c.get("rule") != "reported":
            tol = float(c.get("tolerance") or 0.0)
            xs += [x for x in _bound(c["rule"], e, tol) if math.isfinite(x)]
    if not xs:
        xs = [0.0, 1.0]
    lo, hi = min(xs), max(xs)
    pad = (hi - lo) * 0.15 or abs(hi) * 0.1 or 1.0
    lo, hi = lo - pad, hi + pad
    log = min(xs) > 0 and max(xs) / min(xs) > 100
    if log:
        lo, hi = min(xs) / 2, max(xs) * 2
    labels = []
    for i, c in enumerate(claims):
        v = verdicts.get(c["id"], {})
        verdict = str(v.get("verdict", "not computed"))
        colour = VERDICT_COLOURS.get(verdict, "#444444")
        labels.append(f"{c['id']}\n{verdict}")
        m, e = _num(v.get("measured")), _num(v.get("expected"))
        if math.isfinite(e) and c.get("rule") != "reported":
            tol = float(c.get("tolerance") or 0.0)
            b_lo, b_hi = _bound(c["rule"], e, tol)
            ax.barh(i, min(b_hi, hi) - max(b_lo, lo), left=max(b_lo, lo), height=0.5, color="#2e8b57", alpha=0.18)
            ax.plot([e, e], [i - 0.3, i + 0.3], color="black", lw=2)
        sem = sems.get(c["id"], math.nan)
        if math.isfinite(m):
            err = 2 * sem if math.isfinite(sem) and sem > 0 else None
            ax.errorbar([m], [i], xerr=None if err is None else [[min(err, m - lo if log else err)], [err]],
                        fmt="o", color=colour, capsize=4, ms=7)
            note = " (spread unknown)" if math.isinf(sem) else ""  # nan: no standard error (a bound test)
            ax.annotate(f"{m:.4g}{note}", (m, i), xytext=(0, 9), textcoords="offset points", ha="center",
                        fontsize=8, color=colour)
        else:
            ax.annotate(str(v.get("reason") or "no result")[:60], (0.02, i), xycoords=("axes fraction", "data"),
                        fontsize=8, va="center", color=colour)
    ax.set_xlim(lo, hi)
    if log:
        ax.set_xscale("log")
    ax.set_ylim(len(claims) - 0.5, -0.5)
    ax.set_yticks(range(len(claims)), labels, fontsize=8)
    for tick, c in zip(ax.get_yticklabels(), claims):
        tick.set_color(VERDICT_COLOURS.get(str(verdicts.get(c["id"], {}).get("verdict")), "#444444"))
    ax.set(xlabel="measured (dot, +-2 se) / expected (tick) / accepted (green)", title="measured vs expected")
    ax.grid(axis="x", alpha=0.3)


def _short(text: object, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3].rstrip() + "..."


def _num(x: object) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


# ------------------------------------------------------------------------------------------- drawing


def draw_one(name: str, claims: list[dict], table: pd.DataFrame, studies: dict[str, pd.DataFrame],
             verdicts: dict[str, dict], path: Path) -> Path:
    """Draw one evidence figure (the claims that share it) into `path`."""
    views: dict[tuple, tuple[Callable, list[dict]]] = {}
    for c in claims:
        make = VIEWS.get(c["quantity"]["name"])
        if make is None:
            continue
        key, draw = make(c)
        views.setdefault(key, (draw, []))[1].append(c)
    sems = {}
    for c in claims:
        v = verdicts.get(c["id"], {})
        if "sem" in v and v["sem"] is not None and not pd.isna(v["sem"]):
            sems[c["id"]] = float(v["sem"])
        elif c.get("rule") != "reported":
            m = measurement(table, studies, c)
            # A claim judged by its bound test has no standard error (its thresholds are in the reason).
            sems[c["id"]] = m.sem if m is not None and m.bound_test is None else math.nan
    # Fixed margins in inches (tight_layout would measure every text: a third of the drawing time).
    panel, gap, left, right = 4.2, 1.9, 1.1, 0.25
    width = left + (len(views) + 1) * panel + len(views) * gap + right
    height = max(3.9, 0.7 * len(claims) + 2.6)
    fig = plt.figure(figsize=(width, height), dpi=DPI)
    fig.subplots_adjust(left=(left + (gap - 0.6 if not views else 0)) / width, right=1 - right / width,
                        bottom=1.5 / height, top=1 - 0.75 / height, wspace=gap / panel)
    axes = fig.subplots(1, len(views) + 1, squeeze=False)[0]
    try:
        for ax, (key, (draw, members)) in zip(axes, views.items()):
            ok = False
            try:
                ok = draw(ax, table, studies, members)
            except (KeyError, ValueError, TypeError, np.linalg.LinAlgError):
                ok = False
            if ok:  # log axes: major labels only (minor ones collide: "2x10^2 3x10^2 4x10^2")
                for axis in (ax.xaxis, ax.yaxis):
                    if axis.get_scale() == "log":
                        axis.set_minor_formatter(mticker.NullFormatter())
            else:
                ax.cla()
                ax.set_axis_off()
                ax.text(0.5, 0.5, "no runs for this view in these results", ha="center", va="center",
                        transform=ax.transAxes, color="grey")
        verdict_panel(axes[-1], claims, verdicts, sems)
        ids = ", ".join(c["id"] for c in claims)
        about = f": {_short(claims[0].get('statement', ''), int(width * 11))}" if len(claims) == 1 else ""
        fig.suptitle(f"{ids}{about}", fontsize=10, x=0.01, ha="left")
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)
    return path


def draw_evidence(table: pd.DataFrame, claims: list[dict], verdicts: pd.DataFrame, out_dir: Path,
                  studies: dict[str, pd.DataFrame] | None = None, names: list[str] | None = None) -> dict[str, Path]:
    """Draw the evidence figure of every claim in scope (or those in `names`) into out_dir/<name>.png;
    return {name: path}. Every figure is drawn, with data or not: a view without runs says so."""
    studies = studies or {}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by = groups(claims)
    unknown = sorted(set(names or []) - set(by))
    if unknown:
        raise ThinwireError(f"no evidence figure named {', '.join(unknown)}")
    rows = {str(r["id"]): r for r in verdicts.to_dict("records")} if not verdicts.empty else {}
    drawn = {}
    for name, members in by.items():
        if names is not None and name not in names:
            continue
        drawn[name] = draw_one(name, members, table, studies, rows, out_dir / f"{name}.png")
    return drawn
