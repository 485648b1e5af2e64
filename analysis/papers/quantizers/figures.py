"""The quantizers' figure: final accuracy by quantizer and code bits, PyTorch's PowerSGD and bf16 beside them."""

from __future__ import annotations

import json

import pandas as pd
import seaborn as sns
from thinwire.analysis.figures import BOOT_SEED, facets, figure


def _quantizer_rows(table: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Final accuracy of every run in the experiments that train with ef-quant, with its quantizer
    (" + EF" with error feedback) and code bits per value; the experiment's dense runs as "dense", 32;
    PyTorch's compressors beside them (PowerSGD at rank r, "powersgd r", at its stated bits per parameter
    after the dense steps; "bf16", 16)."""
    from thinwire.algorithms.quantizers import make_quantizer
    from thinwire.algorithms.registry import get_method, make_config

    rows = table[table["mode"].isin(["sim", "real"])].dropna(subset=["metric"])
    quantized = rows.loc[rows["method"] == "ef-quant", "experiment"].unique()
    rows = rows[rows["experiment"].isin(quantized) & rows["method"].isin(["ef-quant", "sgd", "powersgd", "bf16"])]
    last = rows.sort_values("step").groupby("run").tail(1)
    names, code_bits = [], []
    for method, params, stated in zip(last["method"], last["params"], last["stated_bits"]):
        if method in ("sgd", "bf16"):
            names.append("dense" if method == "sgd" else "bf16")
            code_bits.append(32 if method == "sgd" else 16)
            continue
        c = make_config(get_method(method), json.loads(params))
        if method == "powersgd":
            names.append(f"powersgd r{c.rank}")
            code_bits.append(round(float(stated), 1))
            continue
        names.append(c.quantizer + (" + EF" if c.error_feedback else ""))
        code_bits.append(make_quantizer(c.quantizer, c.levels, c.bucket_size).bits)
    return last.assign(quantizer=names, code_bits=code_bits)


@figure("quantizer_accuracy", _quantizer_rows)
def _quantizer_accuracy(rows: pd.DataFrame) -> sns.FacetGrid:
    grid = sns.catplot(data=rows, x="code_bits", y="metric", hue="quantizer", kind="point", dodge=0.5,
                       linestyle="none", errorbar=("ci", 95), seed=BOOT_SEED, sharey=False,
                       **facets(rows, "experiment"))
    grid.set_axis_labels("code bits per value (PowerSGD: bits per parameter; 32: dense float32)",
                         "final accuracy (average model)")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("Final accuracy by quantizer and code bits (mean over seeds, 95% CI)", y=1.02)
    return grid
