"""Claim S3's rate check: DSM-LS with the randomized sign on a nonconvex smooth problem, over horizons T.

What the paper states (abstract; the theorem itself could not be read [unverified]): with the sign
replaced by a randomized sign, DSM-LS converges at O(1/sqrt(T)) on nonconvex smooth functions. The
usual form of such a result, and the one checked here, bounds the average over the T global rounds
of E |grad f(x_t)|^2 by C / sqrt(T) when the step sizes are set for the horizon, eta ~ 1 / sqrt(T);
min_t |grad f(x_t)|^2 is at most that average, so the same bound holds for it. A measured exponent
at or below -1/2 is consistent with the bound, a flatter one is not; neither proves anything.

For every horizon T in ROUNDS, seed, and sign (randomized, and exact for contrast), the registered
dsm-ls runs in the simulator on logreg-nc (W workers, plain SGD as the local optimizer, tau local
steps per round, constant local lr eta = ETA0 / sqrt(T), gamma 1, the code's betas, no weight decay,
B = SIGN_BOUND) for T rounds; before each round t = 0..T-1 the full gradient of f (all workers'
data) is taken at the global model x_t. One row per run:
    sign, seed, rounds, eta, avg_grad_sq = mean_t |grad f(x_t)|^2, min_grad_sq, avg_grad_l1.
Claim S3 fits log avg_grad_sq against log T per seed (analysis.quantities.rate_exponent).

    thinwire study sign_rate --out results/studies/sign_rate.csv
"""

from __future__ import annotations

from pathlib import Path

import array_api_compat.numpy as xp
import numpy as np
import pandas as pd
from thinwire.algorithms.registry import get_method, make_config
from thinwire.simulators.problems import PROBLEMS, ProblemConfig
from thinwire.simulators.simcomm import SimComm

ROUNDS = (100, 200, 400, 800, 1600)
WORKERS, TAU, DIM = 4, 4, 20
ETA0 = 0.5  # eta = ETA0 / sqrt(T): 0.05 at T = 100, 0.0125 at T = 1600
SIGN_BOUND = 1.0  # B: |c| of this problem stays below it after the first rounds, so E S(c) = c / B there
SIGNS = ("randomized", "exact")


def run_one(sign: str, seed: int, rounds: int) -> dict[str, float]:
    problem = PROBLEMS["logreg-nc"](WORKERS, seed, ProblemConfig(dim=DIM, heterogeneity=0.5))
    eta = ETA0 / np.sqrt(rounds)
    cls = get_method("dsm-ls")
    params = {"lr": eta, "tau": TAU, "base": "sgd", "weight_decay": 0.0, "grad_clip": 0.0, "lam": 0.0,
              "sign": sign, "sign_bound": SIGN_BOUND, "seed": seed}
    method = cls(make_config(cls, params), problem.layout)
    comm, oracle = SimComm(WORKERS, xp), problem.oracle(xp, None, "float64")
    a, y = problem.features.reshape(-1, DIM), problem.targets.reshape(-1)
    x = np.zeros((WORKERS, DIM))
    state = method.init_state(x, comm)
    grads = []
    for k in range(rounds * TAU):
        if k % TAU == 0:  # every worker holds the global model x_t
            grads.append(problem.loss_grad(np, x[0], a, y)[1])
        x, state, _ = method.step(x, state, oracle, comm)
    g = np.array(grads)
    sq = np.einsum("td,td->t", g, g)
    return {"sign": sign, "seed": seed, "rounds": rounds, "eta": eta, "avg_grad_sq": sq.mean(),
            "min_grad_sq": sq.min(), "avg_grad_l1": np.abs(g).sum(1).mean()}


def run_study(out: Path, seeds: int = 3, rounds: tuple[int, ...] = ROUNDS) -> pd.DataFrame:
    table = pd.DataFrame([run_one(sign, seed, t) for sign in SIGNS for seed in range(seeds) for t in rounds])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table
