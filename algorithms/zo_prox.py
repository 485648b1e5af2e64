"""Zeroth-order proximal stochastic methods for min f(x) + psi(x), f = mean_i f_i known by values only:
ZO-ProxSGD (RSPGF, Ghadimi-Lan-Zhang 2016), ZO-ProxSVRG and ZO-ProxSAGA (Huang et al. 2019).

Only the abstract and introduction of Huang et al. could be read: the loops are the standard
Prox-SVRG / Prox-SAGA structure (Reddi et al. 2016) with the estimators of algorithms/zo.py in place
of gradients [unverified]. Per step, with minibatch I_t of b samples per worker and eta = lr:
    ZO-ProxSGD   v = mean_{i in I_t} g_i(x)
    ZO-ProxSVRG  every m steps: snapshot xt = x, gbar = mean_i g_i(xt) over the whole shard;
                 v = mean_{i in I_t} [g_i(x) - g_i(xt)] + gbar (the same directions at x and xt)
    ZO-ProxSAGA  table z_i = x0, phi = mean_i g_i(z_i) (at the first step);
                 v = mean_{i in I_t} [g_i(x) - g_i(z_i)] + phi; then z_i = x and
                 phi += sum_{i in I_t} [g_i(x) - g_i(z_i)] / n (Reddi's form: the table is refreshed at
                 I_t with the estimates just taken, where the paper file's sketch draws a second J_t)
    x = prox_{eta psi}(x - eta v)
g_i is an estimate (coord, sphere or gauss) with smoothing mu; psi = l1 |x|_1 + l2 / 2 |x|^2.

Distributed: every worker queries only its own shard (b samples, n per full pass) and the d-vectors
are averaged with one all-reduce per step (value bits per parameter); a full pass (SVRG snapshot,
SAGA's first step) all-reduces its d-vector too (2 x value bits then). All workers hold the same x.
Function queries per worker are counted in the state: `trace` gives the step's, `diagnostics` the total.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
from thinwire.algorithms import zo
from thinwire.algorithms.comm import Communicator
from thinwire.algorithms.registry import MethodBase, Oracle, check_step, register


class _ZOProx(MethodBase):
    """What the three share: estimate, average over workers, proximal step, count queries."""

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        return {"step": 0, "queries": 0, "total_queries": 0}

    def estimate(self, x: Any, oracle: Any, idx: Any, base: Any, step: int, purpose: int,
                 comm: Communicator) -> tuple[Any, Any, int]:
        """Per-sample estimates at `base` for samples idx, f_i there, and the queries that cost (per worker)."""
        c = self.config
        u = zo.directions(c.estimator, c.seed, step, purpose, (idx.shape[-1], x.shape[-1]), x, comm)
        g, fx = zo.estimate(comm.xp, oracle, idx, base, c.estimator, c.mu, u)
        return g, fx, idx.shape[-1] * zo.queries_per_sample(c.estimator, x.shape[-1])

    def prox_step(self, x: Any, v: Any, comm: Communicator) -> Any:
        c = self.config
        return zo.prox(comm.xp, x - c.lr * v, c.lr, c.l1, c.l2)

    def trace(self, state: dict[str, Any]) -> dict[str, float]:
        return {"queries": float(state["queries"])}

    def diagnostics(self, state: dict[str, Any]) -> dict[str, float]:
        return {"total_queries": float(state["total_queries"])}

    @staticmethod
    def counted(state: dict[str, Any], queries: int, **new: Any) -> dict[str, Any]:
        return {**state, **new, "step": state["step"] + 1, "queries": queries,
                "total_queries": state["total_queries"] + queries}


def _check(c: Any) -> None:
    check_step(c.lr)
    zo.check_zo(c.mu, c.estimator, c.batch, c.l1, c.l2)


@register
class ZOProxSGD(_ZOProx):
    name = "zo-proxsgd"
    tiny: ClassVar[dict[str, Any]] = {"lr": 2.0, "batch": 8}

    @dataclasses.dataclass(frozen=True)
    class Config:
        lr: float = 0.1  # eta; RSPGF's rate needs eta ~ 1 / sqrt(T): set it for the horizon
        mu: float = 1e-3  # smoothing
        estimator: str = "gauss"  # RSPGF's Gaussian directions
        batch: int = 16  # b, samples per worker per step
        l1: float = 1e-3  # psi's l1 weight (the paper's problem)
        l2: float = 0.0  # psi's l2 weight: > 0 makes psi the elastic net
        seed: int = 0  # of the random directions

        def __post_init__(self) -> None:
            _check(self)

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle, comm: Communicator):
        zo.require_values(oracle, self.name, self.config.batch)
        xp = comm.xp
        idx = oracle.draw(self.config.batch)
        g, fx, queries = self.estimate(x, oracle, idx, x[..., None, :], state["step"], 0, comm)
        v = comm.all_reduce(xp.mean(g, axis=-2), op="avg")
        return self.prox_step(x, v, comm), self.counted(state, queries), xp.mean(fx, axis=-1)

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        return float(value_bits)


@register
class ZOProxSVRG(_ZOProx):
    name = "zo-proxsvrg"
    tiny: ClassVar[dict[str, Any]] = {"lr": 2.0, "batch": 8, "epoch": 5}

    @dataclasses.dataclass(frozen=True)
    class Config:
        lr: float = 0.1  # eta (Reddi et al.: 1 / (3L))
        mu: float = 1e-3
        estimator: str = "coord"  # CooSGE; "sphere" for ZO-ProxSVRG-RandSGE
        batch: int = 100  # b = n^(2/3) for n = 1000
        epoch: int = 10  # m = n^(1/3): steps between snapshots
        l1: float = 1e-3
        l2: float = 0.0
        seed: int = 0

        def __post_init__(self) -> None:
            _check(self)
            if self.epoch < 1:
                raise ValueError(f"epoch must be >= 1, got {self.epoch}")

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        return {**super().init_state(x, comm), "snapshot": x, "full": comm.xp.zeros_like(x)}

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle, comm: Communicator):
        c, xp, t = self.config, comm.xp, state["step"]
        zo.require_values(oracle, self.name, c.batch)
        queries, snapshot, full = 0, state["snapshot"], state["full"]
        if t % c.epoch == 0:
            snapshot = x
            g_all, _, queries = self.estimate(x, oracle, zo.all_samples(oracle, x), x[..., None, :], t, 1, comm)
            full = comm.all_reduce(xp.mean(g_all, axis=-2), op="avg")
        idx = oracle.draw(c.batch)
        # One set of directions for both points, so the difference cancels the estimator's noise too.
        u = zo.directions(c.estimator, c.seed, t, 0, (c.batch, x.shape[-1]), x, comm)
        g, fx = zo.estimate(xp, oracle, idx, x[..., None, :], c.estimator, c.mu, u)
        g_snap, _ = zo.estimate(xp, oracle, idx, snapshot[..., None, :], c.estimator, c.mu, u)
        queries += 2 * c.batch * zo.queries_per_sample(c.estimator, x.shape[-1])
        v = comm.all_reduce(xp.mean(g - g_snap, axis=-2), op="avg") + full
        new = self.counted(state, queries, snapshot=snapshot, full=full)
        return self.prox_step(x, v, comm), new, xp.mean(fx, axis=-1)

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        return float(value_bits * (2 if step % self.config.epoch == 0 else 1))


@register
class ZOProxSAGA(_ZOProx):
    name = "zo-proxsaga"
    tiny: ClassVar[dict[str, Any]] = {"lr": 2.0, "batch": 8}

    @dataclasses.dataclass(frozen=True)
    class Config:
        lr: float = 0.1  # eta (Reddi et al.: 1 / (5L) for b = n^(2/3))
        mu: float = 1e-3
        estimator: str = "coord"
        batch: int = 100  # b = n^(2/3) for n = 1000
        l1: float = 1e-3
        l2: float = 0.0
        seed: int = 0

        def __post_init__(self) -> None:
            _check(self)

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        return {**super().init_state(x, comm), "table": None, "phi": None}

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle, comm: Communicator):
        c, xp, t = self.config, comm.xp, state["step"]
        n = zo.require_values(oracle, self.name, c.batch)
        queries, table, phi = 0, state["table"], state["phi"]
        if table is None:  # z_i = x0 for every sample of the shard; phi = mean_i g_i(x0) over all shards
            g_all, _, queries = self.estimate(x, oracle, zo.all_samples(oracle, x), x[..., None, :], t, 1, comm)
            table = xp.broadcast_to(x[..., None, :], (*x.shape[:-1], n, x.shape[-1]))
            phi = comm.all_reduce(xp.mean(g_all, axis=-2), op="avg")
        idx = oracle.draw(c.batch)
        u = zo.directions(c.estimator, c.seed, t, 0, (c.batch, x.shape[-1]), x, comm)
        g, fx = zo.estimate(xp, oracle, idx, x[..., None, :], c.estimator, c.mu, u)
        g_table, _ = zo.estimate(xp, oracle, idx, _rows(table, idx), c.estimator, c.mu, u)
        queries += 2 * c.batch * zo.queries_per_sample(c.estimator, x.shape[-1])
        correction = comm.all_reduce(xp.mean(g - g_table, axis=-2), op="avg")
        # Every shard refreshes b of its n entries: the mean over workers of the phi updates is b / n
        # times the averaged correction, so phi needs no message of its own.
        new = self.counted(state, queries, table=_set_rows(xp, table, idx, x), phi=phi + c.batch / n * correction)
        return self.prox_step(x, correction + phi, comm), new, xp.mean(fx, axis=-1)

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        return float(value_bits * (2 if step == 0 else 1))


def _rows(table: Any, idx: Any) -> Any:
    """table[..., idx, :] per worker: (W, n, d) with idx (W, b), or (n, d) with idx (b,)."""
    if table.ndim == 2:
        return table[idx, :]
    return table[_worker_axis(table), idx, :]


def _set_rows(xp: Any, table: Any, idx: Any, x: Any) -> Any:
    out = xp.asarray(table, copy=True)
    if table.ndim == 2:
        out[idx, :] = x
    else:
        out[_worker_axis(table), idx, :] = x[:, None, :]
    return out


def _worker_axis(table: Any) -> np.ndarray:
    return np.arange(table.shape[0])[:, None]
