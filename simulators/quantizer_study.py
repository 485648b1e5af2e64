"""How close each quantizer comes to its input, at equal code bits, on several distributions.

No training: for every distribution x (Gaussian, Laplace, Student-t(3), and a real gradient of
digits-mlp at its initialisation) and every quantizer Q at 1-4 code bits, `draws` independent
stochastic roundings give
    mse  = mean_r |Q_r(x) - x|^2 / |x|^2          (variance plus squared bias)
    bias = |mean_r Q_r(x) - x|^2 / |x|^2          (about mse / draws for an unbiased quantizer)
and bits_per_value from the quantizer's exact payload size. Claims Q-1 read this table.

    thinwire study quantizers --out results/studies/quantizers.csv
"""

from __future__ import annotations

from pathlib import Path

import array_api_compat.numpy as xp
import numpy as np
import pandas as pd
from thinwire.algorithms.quantizers import make_quantizer

# (code bits, quantizer, levels s): QSGD spends one bit on the sign, ORQ none.
CASES = [(1, "scaled-sign", 1), (1, "bingrad", 1), (2, "terngrad", 1), (2, "qsgd", 1), (2, "orq", 3),
         (3, "qsgd", 3), (3, "orq", 7), (4, "qsgd", 7), (4, "orq", 15)]


def distributions(n: int, seed: int) -> dict[str, np.ndarray]:
    from thinwire.workloads.registry import make_workload

    rng = np.random.default_rng(seed)
    digits = make_workload("digits-mlp", 1, seed)
    _, grad = digits.oracle(None, 0, "float64")(__import__("torch").as_tensor(digits.x0()))
    return {"gaussian": rng.standard_normal(n), "laplace": rng.laplace(size=n),
            "student_t3": rng.standard_t(3, n), "digits_gradient": grad.numpy()}


def run_study(out: Path, n: int = 16384, bucket_size: int = 512, draws: int = 10, seed: int = 0) -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng([seed, 1])
    for dist, x in distributions(n, seed).items():
        x = x.astype(np.float32)
        norm = float(np.sum(x.astype(np.float64) ** 2))
        for code_bits, name, levels in CASES:
            q = make_quantizer(name, levels=levels, bucket_size=bucket_size)
            stochastic = q.unbiased
            outs = []
            for _ in range(draws if stochastic else 1):
                u = rng.random(x.shape, dtype=np.float32) if stochastic else None
                outs.append(np.asarray(q.decompress(q.compress(xp.asarray(x), u), x.shape[-1], x.dtype),
                                       dtype=np.float64))
            outs = np.stack(outs)
            rows.append({"distribution": dist, "quantizer": name, "levels": levels, "code_bits": code_bits,
                         "bits_per_value": q.payload_bytes(x.size) * 8 / x.size, "unbiased": stochastic,
                         "mse": float(np.mean(np.sum((outs - x) ** 2, axis=-1))) / norm,
                         "bias": float(np.sum((outs.mean(0) - x) ** 2)) / norm,
                         "draws": len(outs), "n": x.size, "bucket_size": bucket_size, "seed": seed})
    table = pd.DataFrame(rows)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table
