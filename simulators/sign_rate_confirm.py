"""Claim S3's confirmatory rate check: the exploratory study sign_rate (simulators/sign_rate_study.py) chose
its step constant and horizons after seeing other settings' slopes (its claim rows S3, S3-l1 say so and
are kept, kind exploratory). This study re-runs the chosen setting once, on seeds and horizons fixed
before it ran (in analysis/papers/dsm_ls/claims.yaml, rows S3-confirmatory and S3-l1-confirmatory, and
here): fresh seeds 10-14 (fresh logreg-nc data too), fresh horizons 125 ... 2000 global rounds (none of
them among the 50 ... 1600 tried), and everything else as sign_rate: eta = 0.5 / sqrt(T), tau 4, 4
workers, d 20, B 1, gamma 1, both signs. It takes no options: a confirmatory check that could be re-run
at other settings until it passes would be exploratory again. One row per run, as sign_rate's:
    sign, seed, rounds, eta, avg_grad_sq, min_grad_sq, avg_grad_l1.
Cost: about 13 s of one core (12.6 s user time measured on a loaded machine).

    thinwire study sign_rate_confirm --out results/studies/sign_rate_confirm.csv
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from thinwire.simulators import sign_rate_study

SEEDS = (10, 11, 12, 13, 14)
ROUNDS = (125, 250, 500, 1000, 2000)


def run_study(out: Path) -> pd.DataFrame:
    table = pd.DataFrame([sign_rate_study.run_one(sign, seed, t)
                          for sign in sign_rate_study.SIGNS for seed in SEEDS for t in ROUNDS])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table
