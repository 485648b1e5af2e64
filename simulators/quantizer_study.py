"""How close each quantizer comes to its input, at equal code bits, on several distributions.

No training: for every distribution x (Gaussian, Laplace, Student-t(3), and real minibatch gradients
of digits-mlp and digits-cnn at their initialisation) and every quantizer Q at 1-4 code bits, R =
`draws` independent stochastic roundings e_r = Q_r(x) - x (fixed seed) give, all over |x|^2,

    mse        = mean_r |e_r|^2                                  (variance plus squared bias)
    bias       = |E Q(x) - x|^2, estimated without the variance term: the mean over pairs r != r'
                 of <e_r, e_r'>, i.e. (|S|^2 - T) / (R (R - 1)) with S = sum_r e_r, T = sum_r |e_r|^2
    variance   = mse - bias = (R T - |S|^2) / (R (R - 1))      (mean rounding variance)
    bias_share = bias / mse                                      (0 unbiased, 1 deterministic)

Each estimate is unbiased; its standard error (column <name>_sem) is the delete-one-draw jackknife,
so "unbiased" is a statistical statement: an unbiased quantizer's bias is 0 within a few standard
errors, not exactly. (|mean_r Q_r(x) - x|^2 alone would be biased upward by variance / R.) For a
zero bias the jackknife overstates the bias's standard error by up to sqrt(2) (the pair statistic is
then degenerate), so a claim that the bias is small errs towards "inconclusive". bias_sem is carried
to bias_share as bias_sem / mse. bits_per_value comes from the quantizer's exact payload
size. Claims Q-1 and Q-2 read this table.

    thinwire study quantizers --out results/studies/quantizers.csv
"""

from __future__ import annotations

from pathlib import Path

import array_api_compat.numpy as xp
import numpy as np
import pandas as pd
from thinwire.algorithms.quantizers import make_quantizer

# (code bits, quantizer, levels s): (NU)QSGD spend one bit on the sign, ORQ none. At 2 bits NUQSGD's
# levels {0, 1} are QSGD's: it is listed so every comparison covers every width.
CASES = [(1, "scaled-sign", 1), (1, "bingrad", 1), (2, "terngrad", 1), (2, "qsgd", 1), (2, "nuqsgd", 1),
         (2, "orq", 3), (3, "qsgd", 3), (3, "nuqsgd", 3), (3, "orq", 7), (4, "qsgd", 7), (4, "nuqsgd", 7),
         (4, "orq", 15)]
# Equal TOTAL bits (claims Q-1-multilevel, Q-2-*): ORQ sends s + 1 float32 levels per bucket where QSGD,
# NUQSGD and TernGrad send one float32 scale, so at equal buckets ORQ spends (s + 1) x more side bits.
# ORQ over buckets (s + 1) x larger spends QSGD's side bits per value (exactly so where the buckets divide
# the values): label orq_equal_bits, one row per code width. The claims check the bits, row by row.
EQUAL_BITS = [(2, "orq", 3), (3, "orq", 7), (4, "orq", 15)]
EQUAL_BITS_LABEL = "orq_equal_bits"


def distributions(n: int, seed: int) -> dict[str, np.ndarray]:
    import torch
    from thinwire.workloads.registry import make_workload

    rng = np.random.default_rng(seed)
    out = {"gaussian": rng.standard_normal(n), "laplace": rng.laplace(size=n), "student_t3": rng.standard_t(3, n)}
    for model in ("mlp", "cnn"):
        digits = make_workload(f"digits-{model}", 1, seed)
        _, grad = digits.oracle(None, 0, "float64")(torch.as_tensor(digits.x0()))
        out[f"digits_{model}_gradient"] = grad.numpy()
    return out


def estimates(errors: np.ndarray, norm: float) -> dict[str, float]:
    """mse, bias, variance, bias_share of R draws of errors (R, n), over norm = |x|^2, with jackknife
    standard errors (<name>_sem)."""
    r = errors.shape[0]
    total = errors.sum(0)
    sq = np.einsum("rn,rn->r", errors, errors)  # |e_r|^2
    cross = errors @ total  # <S, e_r>

    def stats(s2, t, k):  # |S|^2, T and the number of draws -> (mse, bias, variance)
        return t / k, (s2 - t) / (k * (k - 1)), (k * t - s2) / (k * (k - 1))

    full = stats(total @ total, sq.sum(), r)
    # Leaving draw k out: |S - e_k|^2 = |S|^2 - 2 <S, e_k> + |e_k|^2, T - |e_k|^2, R - 1 draws.
    loo = stats(total @ total - 2 * cross + sq, sq.sum() - sq, r - 1)
    out = {}
    for name, value, left_out in zip(("mse", "bias", "variance"), full, loo):
        out[name] = value / norm
        out[f"{name}_sem"] = float(np.sqrt((r - 1) / r * np.sum((left_out - left_out.mean()) ** 2))) / norm
    out["bias_share"] = out["bias"] / out["mse"]
    out["bias_share_sem"] = out["bias_sem"] / out["mse"]
    return out


def run_study(out: Path, n: int = 16384, bucket_size: int = 512, draws: int = 20, seed: int = 0) -> pd.DataFrame:
    if draws < 3:
        raise ValueError(f"draws must be >= 3 for the bias and its jackknife standard error, got {draws}")
    rows = []
    rng = np.random.default_rng([seed, 1])
    for dist, x in distributions(n, seed).items():
        x = x.astype(np.float32)
        exact = x.astype(np.float64)
        norm = float(exact @ exact)
        for code_bits, name, levels, label, bucket in (
                [(c, n, s, n, bucket_size) for c, n, s in CASES]
                + [(c, n, s, EQUAL_BITS_LABEL, bucket_size * (s + 1)) for c, n, s in EQUAL_BITS]):
            q = make_quantizer(name, levels=levels, bucket_size=bucket)
            errors = np.stack([
                np.asarray(q.decompress(q.compress(xp.asarray(x), rng.random(x.shape, dtype=np.float32)
                                                   if q.stochastic else None), x.shape[-1], x.dtype),
                           dtype=np.float64) - exact
                for _ in range(draws)])
            rows.append({"distribution": dist, "quantizer": label, "levels": levels, "code_bits": code_bits,
                         "bits_per_value": q.payload_bytes(x.size) * 8 / x.size, "unbiased": q.unbiased,
                         **estimates(errors, norm), "draws": draws, "n": x.size, "bucket_size": bucket,
                         "seed": seed})
    table = pd.DataFrame(rows)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table
