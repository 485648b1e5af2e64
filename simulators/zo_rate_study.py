"""Claims ZO-1..3's rate check: zeroth-order proximal methods on the sigmoid loss + l1, over horizons T.

The check that needs no paper numbers (../shared/papers/zo_prox.md [derived]): f_i(x) = 1 / (1 +
exp(y_i a_i x)), psi = 1e-3 |x|_1, n = 1000 samples, d = 20 (the sigmoid problem; one worker, so the
whole data set is one shard). For every label of RUNS, seed and horizon T the registered method runs
T steps in the simulator, and before each step the exact gradient mapping G(x_t) = (x_t -
prox_{eta psi}(x_t - eta grad f(x_t))) / eta with the true gradient and eta = ETA for every method
is taken. One row per run:
    label, seed, steps, queries (function values the method asked for), avg_gm_sq = mean_t |G(x_t)|^2,
    final_gm_sq = |G(x_T)|^2, queries_to_eps = queries until |G(x_t)|^2 first drops to EPS (inf: never).
The rates being checked, in their usual form: avg_gm_sq ~ T^(-1/2) for ZO-ProxSGD with eta ~ 1/sqrt(T),
~ T^(-1) for the variance-reduced methods with a constant eta, until the floor the smoothing mu leaves.
Ablations: a larger mu (proxsvrg_mu_large) and a constant-step ZO-ProxSGD (proxsgd_const). Claim ZO-3
compares the queries to EPS of runs given the same budget of queries (budget_*).

    thinwire study zo_rate --out results/studies/zo_rate.csv
"""

from __future__ import annotations

import math
from pathlib import Path

import array_api_compat.numpy as xp
import numpy as np
import pandas as pd
from thinwire.algorithms import zo
from thinwire.algorithms.registry import get_method, make_config
from thinwire.simulators.problems import PROBLEMS, ProblemConfig
from thinwire.simulators.simcomm import SimComm

HORIZONS = (50, 100, 200, 400, 800)
N, DIM, L1 = 1000, 20, 1e-3
# 1 / (3L), the variance-reduced methods' step (Reddi et al.), L = max |sigmoid''| x lambda_max(A^T A / n)
# = 0.096 x 1.27 = 0.12 at seed 0; also the gradient mapping's eta and ZO-ProxSGD's at the shortest horizon.
ETA = 2.5
EPS = 1e-4  # the accuracy of queries_to_eps, in |G|^2, fixed before any run
MU, MU_LARGE = 1e-3, 1.0
SGD = {"estimator": "gauss", "batch": 10, "mu": MU}
VR = {"estimator": "coord", "batch": 100, "mu": MU, "lr": ETA}
# label -> (method, params, ZO-ProxSGD's eta ETA sqrt(HORIZONS[0] / T) instead of a constant, horizons)
RUNS = {
    "proxsgd": ("zo-proxsgd", SGD, True, HORIZONS),
    "proxsvrg": ("zo-proxsvrg", {**VR, "epoch": 10}, False, HORIZONS),
    "proxsaga": ("zo-proxsaga", VR, False, HORIZONS),
    # Ablations: constant-step ZO-ProxSGD; the smoothing floor of ZO-ProxSVRG at the longest horizon.
    "proxsgd_const": ("zo-proxsgd", {**SGD, "lr": ETA}, False, HORIZONS),
    "proxsvrg_mu_large": ("zo-proxsvrg", {**VR, "epoch": 10, "mu": MU_LARGE}, False, HORIZONS[-1:]),
    # ZO-3: the same budget of about 2e6 queries each (ZO-ProxSGD with b = 100: 200 queries a step).
    "budget_proxsgd": ("zo-proxsgd", {**SGD, "batch": 100}, True, (10_000,)),
    "budget_proxsvrg": ("zo-proxsvrg", {**VR, "epoch": 10}, False, (160,)),
    "budget_proxsaga": ("zo-proxsaga", VR, False, (240,)),
    # ZO-ProxSVRG-RandSGE: 2 queries a sample; eta ETA / d, the 1 / d scaling of ZO-SVRG (Liu et al. 2018).
    "budget_proxsvrg_rand": ("zo-proxsvrg", {**VR, "estimator": "sphere", "epoch": 10, "lr": ETA / DIM}, False,
                             (3_300,)),
}


def run_one(label: str, seed: int, steps: int) -> dict[str, float]:
    name, params, scaled, _ = RUNS[label]
    problem = PROBLEMS["sigmoid"](1, seed, ProblemConfig(samples_per_worker=N, dim=DIM, l2=0.0))
    params = {**params, "l1": L1, "seed": seed, **({"lr": ETA * math.sqrt(HORIZONS[0] / steps)} if scaled else {})}
    cls = get_method(name)
    method = cls(make_config(cls, params), problem.layout)
    comm, oracle = SimComm(1, xp), problem.oracle(xp, None, "float64")
    a, y = problem.features.reshape(-1, DIM), problem.targets.reshape(-1)
    x = np.zeros((1, DIM))
    state = method.init_state(x, comm)
    gm_sq, queries = [], [0.0]
    for _ in range(steps):
        grad = problem.loss_grad(np, x[0], a, y)[1]
        gm = zo.gradient_mapping(np, x[0], grad, ETA, L1, 0.0)
        gm_sq.append(gm @ gm)
        x, state, _ = method.step(x, state, oracle, comm)
        queries.append(queries[-1] + state["queries"])
    gm_sq = np.array(gm_sq)
    hit = np.flatnonzero(gm_sq <= EPS)
    return {"label": label, "seed": seed, "steps": steps, "lr": params.get("lr", math.nan),
            "queries": queries[-1], "avg_gm_sq": gm_sq.mean(), "final_gm_sq": gm_sq[-1],
            "queries_to_eps": queries[hit[0]] if hit.size else math.inf}


def run_study(out: Path, seeds: int = 3, horizons: tuple[int, ...] = HORIZONS) -> pd.DataFrame:
    """Every label of RUNS at its horizons; `horizons` replaces HORIZONS for the rate labels (and its longest
    for the mu ablation); the equal-budget runs of ZO-3 keep theirs. ZO-ProxSGD's decaying step stays
    anchored at HORIZONS[0], so longer horizons extend the same schedule."""
    def of(label: str) -> tuple[int, ...]:
        own = RUNS[label][3]
        return tuple(horizons) if own == HORIZONS else (max(horizons),) if own == HORIZONS[-1:] else own

    table = pd.DataFrame([run_one(label, seed, t) for label in RUNS for seed in range(seeds) for t in of(label)])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table
