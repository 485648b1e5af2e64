"""Draw the report's figures from the long-format results table.

`draw_figures(table, out_dir)` writes one PNG per figure into `out_dir` and
returns {figure name: path}. Loss curves come from the sim and real rows (seeds
aggregated into seaborn's default 95% CI band); step time and speedup come from
the model rows. A figure with no rows to plot is skipped, not drawn empty, so
the report only links figures that exist. Non-finite losses (the tail of a
diverged run) are dropped first: a diverged run shows up as a curve that stops.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns

# The report is drawn headless (CI, Snakemake), never on a display.
matplotlib.use("Agg")

DPI = 110
BANDWIDTH = "bandwidth (Gbit/s)"
# Fixed bootstrap seed: the CI bands, hence the PNGs, are the same on every run.
BOOT_SEED = 0
SDP4BIT_LABELS = ("baseline", "qw", "qwd", "tlq", "tlq_hs", "sdp4bit")


def draw_figures(table: pd.DataFrame, out_dir: Path, studies: dict[str, pd.DataFrame] | None = None) -> dict[str, Path]:
    """Draw every figure that has data (from the results table and the study tables); return {name: png path}."""
    studies = studies or {}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = _loss_rows(table)
    model = _model_rows(table)
    plans = {
        "accuracy_vs_ratio": (_accuracy_rows(table), _accuracy_vs_ratio),
        "dgc_sparsity_warmup": (_warmup_rows(table), _dgc_warmup),
        "dgc_staleness_histogram": (_staleness_rows(table), _dgc_staleness_histogram),
        "lars_layer_lr": (_layer_lr_rows(table), _lars_layer_lr),
        "onebit_volume_vs_warmup": (_onebit_volume_rows(table), _onebit_volume_vs_warmup),
        "quantizer_accuracy": (_quantizer_rows(table), _quantizer_accuracy),
        "sdp4bit_loss_table": (_sdp4bit_loss_rows(table), _sdp4bit_loss_table),
        "sdp4bit_model_throughput": (_sdp4bit_throughput_rows(model), _sdp4bit_model_throughput),
        "loss_vs_step": (curves, _loss_vs_step),
        "loss_vs_bytes": (curves[curves["cum_bytes_sent"] > 0], _loss_vs_bytes),
        "model_step_time": (model[model["step_time"] > 0], _model_step_time),
        "model_speedup": (model[np.isfinite(model["speedup"])], _model_speedup),
        "model_time_to_target": (_time_rows(table), _model_time_to_target),
        "model_time_profile": (_time_rows(table), _model_time_profile),
        "model_validation": (studies.get("validation", pd.DataFrame()), _model_validation),
        "model_predicted": (_predicted_rows(studies), _model_predicted),
        "model_sensitivity": (studies.get("model-sensitivity", pd.DataFrame()), _model_sensitivity),
        "model_collectives": (studies.get("model-collectives", pd.DataFrame()), _model_collectives),
        "sign_rate": (_sign_rate_rows(studies), _sign_rate),
        "zo_rate": (_zo_rate_rows(studies), _zo_rate),
        "zo_queries": (_zo_budget_rows(studies), _zo_queries),
    }
    drawn = {}
    for name, (rows, draw) in plans.items():
        if rows.empty:
            continue
        grid = draw(rows)
        try:
            path = out_dir / f"{name}.png"
            grid.savefig(path, dpi=DPI)
            drawn[name] = path
        finally:
            plt.close(grid.figure)
    return drawn


def _loss_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Sim and real rows with a finite objective: the full loss of the workers' average model
    (eval_loss), which the runs record every few steps; the per-step minibatch loss is too noisy
    to compare methods by eye."""
    rows = table[table["mode"].isin(["sim", "real"])]
    rows = rows.assign(loss=pd.to_numeric(rows["eval_loss"], errors="coerce"))
    return rows[np.isfinite(rows["loss"])]


def _accuracy_rows(table: pd.DataFrame) -> pd.DataFrame:
    """One row per training run with an accuracy: its final accuracy and its compression ratio,
    32-bit dense gradient bytes over the bytes it sent per step on average."""
    rows = table[table["mode"].isin(["sim", "real"])].dropna(subset=["metric"])
    if rows.empty:
        return rows
    last = rows.sort_values("step").groupby("run").tail(1).set_index("run")
    sent = table[table["run"].isin(last.index)].groupby("run")["bytes_sent"].mean()
    last["ratio"] = last["n_params"] * 4 / sent.reindex(last.index)
    return last[np.isfinite(last["ratio"]) & (last["ratio"] > 0)].reset_index()


def _warmup_rows(table: pd.DataFrame) -> pd.DataFrame:
    """DGC runs whose bits per step change (a sparsity warm-up), step by step."""
    rows = table[table["mode"].isin(["sim", "real"]) & (table["method"] == "dgc")].dropna(subset=["stated_bits"])
    varying = rows.groupby("run")["stated_bits"].nunique()
    return rows[rows["run"].isin(varying[varying > 1].index)]


def _staleness_rows(table: pd.DataFrame) -> pd.DataFrame:
    """DGC runs that tracked staleness (claim D7): per run, the share of sparsified parameters in each
    bin of steps between sends (diagnostics update_interval_share_<b>: [b, 2b)), and those never sent."""
    shares = [c for c in table.columns if c.startswith("diag_update_interval_share_")]
    if not shares:
        return pd.DataFrame()
    runs = table.dropna(subset=shares, how="all").groupby("run").first()
    rows = [{"run": run, "experiment": r["experiment"], "label": r["label"], "bin": int(c.rsplit("_", 1)[1]),
             "share": r[c]} for run, r in runs.iterrows() for c in shares if pd.notna(r[c])]
    never = [{"run": run, "experiment": r["experiment"], "label": r["label"], "bin": np.inf,
              "share": r["diag_never_updated_fraction"]} for run, r in runs.iterrows()]
    out = pd.DataFrame(rows + never)
    if out.empty:
        return out
    # Bins below the shortest interval any run has are empty: leave them out.
    out = out[out["bin"] >= out.loc[out["share"] > 0, "bin"].min()].sort_values("bin")
    return out.assign(interval=[f"[{b:.0f}, {2 * b:.0f})" if np.isfinite(b) else "never" for b in out["bin"]])


def _dgc_staleness_histogram(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.catplot(data=rows, x="interval", y="share", hue="label", kind="bar", errorbar=None,
                       sharey=False, **_facets(rows, "experiment"))
    grid.set_xticklabels(rotation=45, horizontalalignment="right")
    grid.set_axis_labels("steps between sends after warm-up (the paper: 600-1000)",
                         "share of sparsified parameters")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("DGC: how often each sparsified parameter is sent", y=1.02)
    return grid


def _layer_lr_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The lr each weight tensor got at every step (the trace_lr:<tensor> columns LARS and CLARS
    record), one row per run, step and tensor; a panel per experiment and tensor."""
    traced = [c for c in table.columns if c.startswith("trace_lr:")]
    if not traced:
        return pd.DataFrame()
    rows = table[table["mode"].isin(["sim", "real"])].dropna(subset=traced, how="all")
    long = rows.melt(id_vars=["run", "experiment", "label", "mode", "step"], value_vars=traced,
                     var_name="tensor", value_name="lr").dropna(subset=["lr"])
    return long.assign(panel=long["experiment"] + ": " + long["tensor"].str.removeprefix("trace_lr:"))


def _lars_layer_lr(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.relplot(data=rows, x="step", y="lr", hue="label", style="mode", kind="line", seed=BOOT_SEED,
                       facet_kws={"sharex": False, "sharey": False}, **_facets(rows, "panel"))
    if (rows["lr"] > 0).all():
        grid.set(yscale="log")
    grid.set_axis_labels("step", "lr of the tensor (global lr x trust ratio)")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("LARS / CLARS: per-layer learning rate (mean over seeds, 95% CI)", y=1.02)
    return grid


def _quantizer_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Final accuracy of every run in the experiments that train with ef-quant, with its quantizer
    (" + EF" with error feedback) and code bits per value; the experiment's dense runs as "dense", 32."""
    from thinwire.algorithms.quantizers import make_quantizer
    from thinwire.algorithms.registry import get_method, make_config

    rows = table[table["mode"].isin(["sim", "real"])].dropna(subset=["metric"])
    quantized = rows.loc[rows["method"] == "ef-quant", "experiment"].unique()
    rows = rows[rows["experiment"].isin(quantized) & rows["method"].isin(["ef-quant", "sgd"])]
    last = rows.sort_values("step").groupby("run").tail(1)
    names, code_bits = [], []
    for method, params in zip(last["method"], last["params"]):
        if method == "sgd":
            names.append("dense")
            code_bits.append(32)
            continue
        c = make_config(get_method("ef-quant"), json.loads(params))
        names.append(c.quantizer + (" + EF" if c.error_feedback else ""))
        code_bits.append(make_quantizer(c.quantizer, c.levels, c.bucket_size).bits)
    return last.assign(quantizer=names, code_bits=code_bits)


def _quantizer_accuracy(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.catplot(data=rows, x="code_bits", y="metric", hue="quantizer", kind="point", dodge=0.5,
                       linestyle="none", errorbar=("ci", 95), seed=BOOT_SEED, sharey=False,
                       **_facets(rows, "experiment"))
    grid.set_axis_labels("code bits per value (32: dense float32)", "final accuracy (average model)")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("Final accuracy by quantizer and code bits (mean over seeds, 95% CI)", y=1.02)
    return grid


def _accuracy_vs_ratio(rows: pd.DataFrame) -> sns.FacetGrid:
    # Colour by method: the labels of a sweep name one method at several ratios.
    grid = sns.relplot(data=rows, x="ratio", y="metric", hue="method", style="mode", kind="scatter", s=60,
                       facet_kws={"sharex": False, "sharey": False}, **_facets(rows, "experiment"))
    grid.set(xscale="log")
    grid.set_axis_labels("compression ratio (32-bit dense bytes / bytes sent)", "final accuracy (average model)")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("Accuracy against compression, one point per run", y=1.02)
    return grid


def _dgc_warmup(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.relplot(data=rows, x="step", y="stated_bits", hue="label", kind="line", drawstyle="steps-post",
                       facet_kws={"sharex": False, "sharey": False}, errorbar=None, **_facets(rows, "experiment"))
    grid.set(yscale="log")
    grid.set_axis_labels("step", "bits per parameter sent")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("DGC: bits per parameter sent through its sparsity warm-up", y=1.02)
    return grid


def _sdp4bit_loss_rows(table: pd.DataFrame) -> pd.DataFrame:
    """SDP4Bit's Table 1 analogue: the last finite held-out loss of every run of experiment sdp4bit,
    one row per run (label, seed)."""
    rows = _loss_rows(table)
    rows = rows[rows["experiment"] == "sdp4bit"]
    return rows.sort_values("step", kind="stable").groupby("run", sort=False).tail(1).sort_index()


def _sdp4bit_loss_table(rows: pd.DataFrame) -> sns.FacetGrid:
    # Table 1's column order; labels it does not name follow.
    order = [x for x in SDP4BIT_LABELS if x in set(rows["label"])]
    order += sorted(set(rows["label"]) - set(order))
    # seaborn divides the dodge by the number of modes less one: no dodge for a single mode.
    dodge = 0.3 if rows["mode"].nunique() > 1 else False
    grid = sns.catplot(data=rows, x="label", y="loss", order=order, hue="mode", kind="point", dodge=dodge,
                       linestyle="none", errorbar=("se", 2), capsize=0.2, height=3.6, aspect=1.6)
    grid.set_axis_labels("variant (qw / qwd: weights; tlq / tlq_hs: gradients; sdp4bit: qwd + tlq_hs)",
                         "final held-out loss")
    grid.figure.suptitle("SDP4Bit variants, final held-out loss (mean over seeds, +-2 standard errors)", y=1.02)
    return grid


def _sdp4bit_throughput_rows(model: pd.DataFrame) -> pd.DataFrame:
    """The compressed labels of SDP4Bit's model setups (experiments sdp4bit_*; the cluster column names
    the model size and cluster): predicted speedup over the setup's baseline, mean over seeds, per
    modelled inter-node bandwidth."""
    rows = model[model["experiment"].str.startswith("sdp4bit") & (model["label"] != "baseline")]
    rows = rows[np.isfinite(rows["speedup"])]
    rows = rows.sort_values("bandwidth_gbps", kind="stable")  # legend from the slowest link up
    return rows.assign(bandwidth=rows["bandwidth_gbps"].map("{:g} Gbit/s".format))


def _sdp4bit_model_throughput(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.catplot(data=rows, x="cluster", y="speedup", hue="bandwidth", col="label", kind="bar",
                       errorbar=None, height=3.6, aspect=1.4)
    grid.refline(y=1.0, color="grey", linestyle="--")
    grid.set_axis_labels("model setup (model size, cluster)", "predicted throughput / the baseline's (x)")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("SDP4Bit: predicted end-to-end speedup over uncompressed sharded DP", y=1.02)
    return grid


def _model_rows(table: pd.DataFrame) -> pd.DataFrame:
    """One row per model run: its predicted step time (mean wall_s) and speedup."""
    rows = table[table["mode"] == "model"]
    keys = ["run", "label", "experiment", "cluster", "bandwidth_gbps"]
    per_run = rows.groupby(keys, as_index=False).agg(
        step_time=("wall_s", "mean"), speedup=("speedup", "mean")
    )
    # Log x needs a finite, positive bandwidth.
    finite_bw = np.isfinite(per_run["bandwidth_gbps"]) & (per_run["bandwidth_gbps"] > 0)
    return per_run[finite_bw]


def _facets(rows: pd.DataFrame, col: str) -> dict:
    """Wrap panels three to a row so many workloads or clusters stay legible."""
    return {"col": col, "col_wrap": min(rows[col].nunique(), 3), "height": 3.4, "aspect": 1.2}


def _loss_grid(rows: pd.DataFrame, x: str) -> sns.FacetGrid:
    grid = sns.relplot(
        data=rows, x=x, y="loss", hue="label", style="mode", kind="line",
        facet_kws={"sharex": False, "sharey": False}, seed=BOOT_SEED, **_facets(rows, "experiment"),
    )
    # Log y separates methods whose losses differ by orders of magnitude; it needs loss > 0.
    if (rows["loss"] > 0).all():
        grid.set(yscale="log")
    grid.set_titles("{col_name}")
    return grid


def _loss_vs_step(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = _loss_grid(rows, "step")
    grid.set_axis_labels("step", "objective (average model)")
    grid.figure.suptitle("Loss per step (mean over seeds, 95% CI)", y=1.02)
    return grid


def _loss_vs_bytes(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = _loss_grid(rows, "cum_bytes_sent")
    grid.set(xscale="log")
    grid.set_axis_labels("bytes sent per rank (cumulative)", "objective (average model)")
    grid.figure.suptitle("Loss against communication (mean over seeds, 95% CI)", y=1.02)
    return grid


def _model_step_time(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.relplot(
        data=rows, x="bandwidth_gbps", y="step_time", hue="label", style="experiment", kind="line", marker="o",
        **_facets(rows, "cluster"),
    )
    grid.set(xscale="log", yscale="log")
    grid.set_axis_labels(BANDWIDTH, "predicted step time (s)")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("Predicted step time against bandwidth", y=1.02)
    return grid


def _model_speedup(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.relplot(
        data=rows, x="bandwidth_gbps", y="speedup", hue="label", style="experiment", kind="line", marker="o",
        **_facets(rows, "cluster"),
    )
    grid.set(xscale="log")
    # Above the line a method beats dense SGD on that cluster and bandwidth.
    grid.refline(y=1.0, color="grey", linestyle="--")
    grid.set_axis_labels(BANDWIDTH, "predicted speedup over the dense baseline (x)")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("Predicted speedup over the dense baseline (sgd unless the model job names one)", y=1.02)
    return grid


def _time_rows(table: pd.DataFrame) -> pd.DataFrame:
    """One row per model run that reaches its target loss (a factor times its dense baseline's final
    loss, same seed): predicted seconds to get there, and that time over the fastest label's on the same
    experiment, cluster, bandwidth and seed (the ratio of a performance profile, Dolan and More 2002)."""
    if "seconds_to_target" not in table:
        return pd.DataFrame()
    rows = table[table["mode"] == "model"].dropna(subset=["seconds_to_target"])
    problem = ["experiment", "cluster", "bandwidth_gbps", "seed"]
    per_run = rows.groupby(["run", "label"] + problem, as_index=False)["seconds_to_target"].first()
    per_run["ratio"] = per_run["seconds_to_target"] / per_run.groupby(problem)["seconds_to_target"].transform("min")
    per_run["setup"] = per_run["experiment"] + " @ " + per_run["cluster"]
    # A profile counts the problems a label never solved too: its share is out of all its setup's problems.
    problems = per_run.drop_duplicates(["setup", "bandwidth_gbps", "seed"]).groupby("setup").size()
    per_run["problems"] = per_run["setup"].map(problems)
    return per_run


def _model_time_to_target(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.relplot(
        data=rows, x="bandwidth_gbps", y="seconds_to_target", hue="label", style="experiment", kind="line",
        marker="o", seed=BOOT_SEED, **_facets(rows, "cluster"),
    )
    grid.set(xscale="log", yscale="log")
    grid.set_axis_labels(BANDWIDTH, "predicted seconds to the target loss")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("Time to target: steps each run needed x predicted step times (runs that got there)",
                         y=1.02)
    return grid


def _model_time_profile(rows: pd.DataFrame) -> sns.FacetGrid:
    # Each run weighs 1 / its setup's problems, so a curve ends below 1 by the share a label never solved.
    grid = sns.displot(data=rows.assign(share=1 / rows["problems"]), x="ratio", hue="label", kind="ecdf",
                       stat="count", weights="share", log_scale=True, facet_kws={"sharex": False},
                       **_facets(rows, "setup"))
    grid.set(ylim=(0, 1.05))
    grid.set_axis_labels("time to target / the fastest label's (tau)", "share of bandwidths x seeds within tau")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("Performance profile of time to target over the modelled bandwidths and seeds", y=1.02)
    return grid


def _model_validation(rows: pd.DataFrame) -> sns.FacetGrid:
    """Predicted against measured step time on shaped links, one point per method and link; the
    diagonal is a perfect model, the band +-25% the acceptance bound."""
    grid = sns.relplot(data=rows, x="measured_s", y="predicted_s", hue="label", style="bandwidth", s=70,
                       height=4.5, aspect=1.2)
    ax = grid.ax
    lo = min(rows["measured_s"].min(), rows["predicted_s"].min()) / 1.5
    hi = max(rows["measured_s"].max(), rows["predicted_s"].max()) * 1.5
    line = np.geomspace(lo, hi, 50)
    ax.plot(line, line, color="black", lw=1)
    ax.fill_between(line, line * 0.75, line * 1.25, color="grey", alpha=0.15, lw=0)
    ax.set(xscale="log", yscale="log", xlabel="measured step time (s)", ylabel="predicted step time (s)",
           title="performance model vs shaped-link runs (2 gloo ranks)")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_formatter(mticker.NullFormatter())
    return grid


def _predicted_rows(studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Long rows of simulators/predict.py's table: per cell the claimed speedup and each prediction."""
    df = studies.get("model-predicted", pd.DataFrame())
    if df.empty:
        return df
    views = {"claimed": "claimed", "predicted": "public facts", "predicted_calibrated": "calibrated (cell)",
             "predicted_cluster_calibrated": "calibrated (cluster)"}
    rows = df.melt(id_vars=["claim", "stated", "band_low", "band_high"], value_vars=list(views),
                   var_name="view", value_name="speedup").dropna(subset=["speedup"])
    return rows.assign(view=rows["view"].map(views),
                       cells=np.where(rows["stated"], "claims the model decides", "Table 2's other cells"))


def _model_predicted(rows: pd.DataFrame) -> sns.FacetGrid:
    """Predicted against claimed speedup per paper cell; the grey bar is the sensitivity band of the
    public-facts prediction (each uncertain input at its published low and high)."""
    grid = sns.catplot(data=rows, x="speedup", y="claim", hue="view", col="cells", kind="strip", s=80, jitter=False,
                       sharey=False, height=4.5, aspect=1.1)
    for ax, (_, part) in zip(grid.axes.flat, rows.groupby("cells", sort=False)):
        bands = part.drop_duplicates("claim")
        ax.hlines(bands["claim"], bands["band_low"], bands["band_high"], color="grey", lw=8, alpha=0.3)
        ax.set(xlabel="speedup over the paper's baseline")
    return grid


def _model_sensitivity(rows: pd.DataFrame) -> sns.FacetGrid:
    """Each uncertain input at its low and high published value: the predicted speedup per claim."""
    grid = sns.catplot(data=rows, x="speedup", y="input", hue="end", col="claim", col_wrap=3, kind="strip", s=70,
                       jitter=False, sharex=False, sharey=False, height=3, aspect=1.6)
    for ax, (_, part) in zip(grid.axes.flat, rows.groupby("claim", sort=False)):
        ax.axvline(part["claimed"].iloc[0], color="black", lw=1)
    grid.set_titles("{col_name} (line: claimed)")
    return grid


def _model_collectives(rows: pd.DataFrame) -> sns.FacetGrid:
    """Predicted against published all-reduce bus bandwidth (nccl-tests), the diagonal a perfect model."""
    grid = sns.relplot(data=rows, x="measured_busbw_gbs", y="predicted_busbw_gbs", hue="name", s=70, height=4.5,
                       aspect=1.4)
    line = np.geomspace(rows[["measured_busbw_gbs", "predicted_busbw_gbs"]].min().min() / 1.5,
                        rows[["measured_busbw_gbs", "predicted_busbw_gbs"]].max().max() * 1.5, 50)
    grid.ax.plot(line, line, color="black", lw=1)
    grid.ax.set(xscale="log", yscale="log", xlabel="published busbw (GB/s)", ylabel="predicted busbw (GB/s)")
    return grid


def _sign_rate_rows(studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Claim S3's study in long form: each gradient-norm statistic of each run against its horizon."""
    df = studies.get("sign_rate", pd.DataFrame())
    if df.empty:
        return df
    return df.melt(id_vars=["sign", "seed", "rounds"], value_vars=["avg_grad_sq", "min_grad_sq", "avg_grad_l1"],
                   var_name="statistic")


def _sign_rate(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.relplot(data=rows, x="rounds", y="value", hue="sign", kind="line", marker="o", seed=BOOT_SEED,
                       facet_kws={"sharey": False}, **_facets(rows, "statistic"))
    grid.set(xscale="log", yscale="log")
    # A T^(-1/2) guide through each panel's first randomized-sign point.
    for statistic, ax in grid.axes_dict.items():
        first = rows[(rows["statistic"] == statistic) & (rows["sign"] == "randomized")].groupby("rounds")["value"].mean()
        ax.plot(first.index, first.iloc[0] * (first.index / first.index[0]) ** -0.5, color="grey", linestyle="--")
    grid.set_axis_labels("global rounds T (local lr 0.5 / sqrt(T))", "gradient norm statistic at the global model")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("DSM-LS on logreg-nc: gradient norm against the horizon (dashed: T^-1/2)", y=1.02)
    return grid


def _zo_rate_rows(studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Claims ZO-1/ZO-2's runs (study zo_rate) over horizons, against steps and against queries, each
    label named with its log-log slopes of avg_gm_sq against both (mean over seeds)."""
    df = studies.get("zo_rate", pd.DataFrame())
    if df.empty:
        return df
    df = df[df.groupby("label")["steps"].transform("nunique") > 1]
    axes, rows = ("steps", "queries"), []
    for label, g in df.groupby("label"):
        slopes = [np.mean([np.polyfit(np.log(s[a]), np.log(s["avg_gm_sq"]), 1)[0] for _, s in g.groupby("seed")])
                  for a in axes]
        name = f"{label} (slope {slopes[0]:.2f} steps, {slopes[1]:.2f} queries)"
        rows.extend(g.assign(axis=a, x=g[a], method=name) for a in axes)
    return pd.concat(rows, ignore_index=True)


def _zo_rate(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.relplot(data=rows, x="x", y="avg_gm_sq", hue="method", col="axis", kind="line", marker="o",
                       seed=BOOT_SEED, facet_kws={"sharex": False})
    grid.set(xscale="log", yscale="log")
    grid.set_axis_labels("", "mean_t |G(x_t)|^2 (exact gradient mapping)")
    grid.set_titles("against {col_name}")
    grid.figure.suptitle("zeroth-order proximal methods on sigmoid + l1 (log-log, fitted slopes)", y=1.02)
    return grid


def _zo_budget_rows(studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Claim ZO-3: function queries until |G|^2 <= EPS at an equal budget (runs budget_*; inf: never)."""
    df = studies.get("zo_rate", pd.DataFrame())
    return df[df["label"].str.startswith("budget_")] if not df.empty else df


def _zo_queries(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.catplot(data=rows.replace(np.inf, np.nan), x="label", y="queries_to_eps", kind="bar",
                       errorbar=("ci", 95), seed=BOOT_SEED, aspect=1.6)
    grid.set_axis_labels("", "function queries to |G|^2 <= 1e-4")
    grid.figure.suptitle("queries to accuracy at an equal budget of ~2e6 queries (sigmoid + l1)", y=1.02)
    return grid


def _onebit_volume_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Per 1-bit Adam run: its warm-up fraction (freeze_step / steps) and its whole-run link volume
    relative to the dense Adam run of the same experiment and seed."""
    rows = table[table["mode"].isin(["sim", "real"]) & table["method"].isin(["adam", "onebit-adam"])]
    if rows.empty or not (rows["method"] == "onebit-adam").any():
        return pd.DataFrame()
    per_run = rows.groupby(["run", "method", "experiment", "seed", "params"], as_index=False).agg(
        link_bytes=("link_bytes", "sum"), steps=("step", "size"))
    base = per_run[per_run["method"] == "adam"].set_index(["experiment", "seed"])["link_bytes"]
    ours = per_run[per_run["method"] == "onebit-adam"].copy()
    ours["warmup_fraction"] = [json.loads(p)["freeze_step"] / n for p, n in zip(ours["params"], ours["steps"])]
    ours["volume_ratio"] = base.reindex(pd.MultiIndex.from_frame(ours[["experiment", "seed"]])).to_numpy() / ours["link_bytes"]
    return ours.dropna(subset=["volume_ratio"])


def _onebit_volume_vs_warmup(rows: pd.DataFrame) -> sns.FacetGrid:
    """Measured overall volume reduction of 1-bit Adam against the warm-up fraction, with the blog's
    1 / (w + (1 - w) / 32) for fp32 (the compression stage at exactly 1 bit per value)."""
    grid = sns.relplot(data=rows, x="warmup_fraction", y="volume_ratio", hue="experiment", s=80, height=4, aspect=1.3)
    w = np.linspace(0.01, 1.0, 200)
    grid.ax.plot(w, 1 / (w + (1 - w) / 32), color="black", lw=1)
    grid.ax.text(0.45, 3.0, "formula: 1 / (w + (1 - w) / 32)")
    grid.ax.set(xlabel="warm-up fraction w (freeze_step / steps)", ylabel="volume of Adam / 1-bit Adam",
                yscale="log", title="1-bit Adam: overall volume vs warm-up")
    return grid
