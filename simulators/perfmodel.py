"""Performance model v0: price what a run actually sent (its CommLog) on a described cluster.

Each collective is priced with the alpha-beta model of its ring algorithm (Thakur, Rabenseifner and
Gropp 2005), for p ranks and n bytes handed in per rank, alpha the link latency and beta its seconds
per byte:
    all_reduce       2(p-1) alpha + 2(p-1)/p n beta
    all_gather       (p-1) alpha + (p-1) n beta          (every rank receives p-1 payloads of n)
    reduce_scatter   (p-1) alpha + (p-1)/p n beta
    all_to_all       (p-1) alpha + (p-1)/p n beta
    broadcast        ceil(log2 p) (alpha + n beta)        (binomial tree)
A collective over more ranks than one node holds runs at the inter-node tier, else at the intra-node
tier. A step costs compute + communication (no overlap in v0). No method has a cost formula of its
own: the model prices the bytes the method's code handed to each collective.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from thinwire.algorithms.comm import ThinwireError

BASELINE = "sgd"


@dataclass(frozen=True)
class Tier:
    bandwidth_gbps: float
    latency_us: float

    @property
    def alpha(self) -> float:
        return self.latency_us * 1e-6

    @property
    def beta(self) -> float:
        return 8 / (self.bandwidth_gbps * 1e9)


@dataclass(frozen=True)
class Cluster:
    name: str
    nodes: int
    gpus_per_node: int
    sustained_tflops: float
    intra: Tier
    inter: Tier

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node

    def with_inter_bandwidth(self, gbps: float) -> Cluster:
        return Cluster(self.name, self.nodes, self.gpus_per_node, self.sustained_tflops, self.intra,
                       Tier(gbps, self.inter.latency_us))

    def tier(self, p: int) -> Tier:
        return self.inter if p > self.gpus_per_node else self.intra


def load_cluster(path: Path) -> Cluster:
    try:
        d = yaml.safe_load(Path(path).read_text())
        return Cluster(d["name"], int(d["nodes"]), int(d["gpus_per_node"]), float(d["sustained_tflops"]),
                       Tier(**d["tiers"]["intra"]), Tier(**d["tiers"]["inter"]))
    except FileNotFoundError:
        raise ThinwireError(f"cluster file {path} does not exist") from None
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as e:
        raise ThinwireError(f"cluster file {path} is malformed: {e!r}") from None


def collective_time(op: str, p: int, n: float, tier: Tier) -> float:
    """Seconds for one collective of p ranks, n bytes handed in per rank."""
    if p <= 1:
        return 0.0
    a, b = tier.alpha, tier.beta
    if op == "all_reduce":
        return 2 * (p - 1) * a + 2 * (p - 1) / p * n * b
    if op == "all_gather":
        return (p - 1) * a + (p - 1) * n * b
    if op in ("reduce_scatter", "all_to_all"):
        return (p - 1) * a + (p - 1) / p * n * b
    if op == "broadcast":
        return math.ceil(math.log2(p)) * (a + n * b)
    raise ThinwireError(f"the performance model cannot price collective {op!r}")


def step_comm_times(commlog: pd.DataFrame, run_world: int, cluster: Cluster, scale: float) -> pd.Series:
    """Communication seconds per step of a run's log, replayed on `cluster` with bytes times `scale`.

    Calls over the whole run world become calls over the whole cluster; sub-groups keep their size.
    """
    log = commlog[commlog["category"] == "method"]
    if log.empty:
        return pd.Series(dtype=float)
    p = log["group_size"].where(log["group_size"] != run_world, cluster.world_size)
    cost = [collective_time(op, int(pi), n * scale, cluster.tier(int(pi)))
            for op, pi, n in zip(log["op"], p, log["sent"])]
    return pd.Series(cost, index=log.index).groupby(log["step"]).sum()


def model_runs(run_dirs: list[Path], cluster_path: Path, out: Path, target_params: float | None = None,
               flops_per_step: float | None = None, bandwidths: list[float] | None = None) -> pd.DataFrame:
    """Predict step time and speedup over dense SGD for every run, at each inter-node bandwidth."""
    cluster = load_cluster(cluster_path)
    compute_s = (flops_per_step or 0.0) / (cluster.sustained_tflops * 1e12)
    frames = []
    for d in map(Path, run_dirs):
        meta = json.loads((d / "meta.json").read_text())
        log = pd.read_csv(d / "commlog.csv")
        steps = pd.read_csv(d / "trajectory.csv")[["step", "loss"]]
        scale = (target_params or meta["n_params"]) / meta["n_params"]
        for bw in bandwidths or [cluster.inter.bandwidth_gbps]:
            comm = step_comm_times(log, meta["world_size"], cluster.with_inter_bandwidth(bw), scale)
            f = steps.assign(run=meta["run"], cluster=cluster.name, bandwidth_gbps=float(bw),
                             world_size=cluster.world_size, compute_s=compute_s)
            f["comm_s"] = f["step"].map(comm).fillna(0.0)
            f["wall_s"] = f["compute_s"] + f["comm_s"]
            f["method"], f["workload"], f["seed"] = meta["method"], meta["workload"], meta["seed"]
            f["experiment"], f["label"] = meta["experiment"], meta.get("label", meta["method"])
            f["source_mode"], f["source_backend"] = meta["mode"], meta["backend"]
            f["source_world_size"] = meta["world_size"]
            frames.append(f)
    if not frames:
        raise ThinwireError("no runs to model")
    table = pd.concat(frames, ignore_index=True)
    table["speedup"] = _speedup(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table


def _speedup(table: pd.DataFrame) -> pd.Series:
    """Mean predicted step time of the dense baseline over the run's, at the same bandwidth.

    The baseline is the dense SGD run with the same workload, seed and source (mode, backend, world
    size); where a sheet has several, the first is used. No baseline: NaN.
    """
    keys = ["experiment", "workload", "seed", "source_mode", "source_backend", "source_world_size", "bandwidth_gbps"]
    per_run = table.groupby(["run", "method"] + keys, as_index=False)["wall_s"].mean()
    base = (per_run[per_run["method"] == BASELINE].drop_duplicates(keys)
            .set_index(keys)["wall_s"])
    per_run["speedup"] = base.reindex(pd.MultiIndex.from_frame(per_run[keys])).to_numpy() / per_run["wall_s"]
    speedup = per_run.set_index(["run", "bandwidth_gbps"])["speedup"]
    return pd.Series(speedup.reindex(pd.MultiIndex.from_frame(table[["run", "bandwidth_gbps"]])).to_numpy(),
                     index=table.index)
