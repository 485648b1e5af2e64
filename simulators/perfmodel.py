"""Performance model: price what a run actually sent (its CommLog) on a described cluster.

A step costs compute + encode/decode + communication, each from data, none from a method's own formula:
- communication: every logged collective, priced by the alpha-beta formulas of collectives.py (ring,
  tree or the cheaper per call; flat or hierarchical when a group spans nodes; the cluster file says
  which). Calls over the whole run world become calls over the whole cluster, sub-groups keep their
  size, bytes scale by target_params over the run's parameter count, or, with target_shapes (a shapes
  workload: resnet50, alexnet, ...), to that model's own tensors: each step's bytes by the method's bits
  formula on the target's layout over the same formula on the run's (PowerSGD's P and Q grow with
  n + m, not n m), the parameter ratio where the formula cannot be rebuilt. A variable-size all-gather
  (all_gather_v) is priced as a ring all-gather of the mean message: the log's recv (the total over
  the run's group) divided by the group size.
- compute: flops_per_step, or 6 x params x tokens_per_step for a transformer (Kaplan et al. 2020),
  at the cluster's sustained_tflops.
- encode/decode: params / the cluster's codec_values_per_s[label] on every step the run sends, else
  codec_values_per_s[method] (variants of one method differ by label: sdp's sdp4bit Hadamard-transforms
  and quantizes, its baseline codes nothing); 0 where the cluster states neither (the `codec` column
  says which).
- overlap (off by default, as v0): backward is 2/3 of compute (4 N D of the 6 N D rule); the step's
  communication splits into k equal buckets, bucket i ready after i/k of the backward, the link
  serving buckets in order, so
      step = codec + forward + max(backward / k + comm, backward + comm / k)
  with k the dense fp32 gradient over PyTorch DDP's 25 MiB buckets unless given. It treats every
  method as if its traffic were per-bucket gradients: generous to methods that compress the whole
  flattened gradient or send after the optimizer step (local steps, model averaging).
- layout (optional, simulators/layout.py: a paper's tensor / pipeline parallelism, batch and
  accumulation as data): the logged world becomes the data-parallel group of one GPU per rank on the
  cluster's data-parallel view (its ranks per node, its share of the node link), bytes scale to the
  GPU's 1/(t pp) of the layout's parameters, dense collectives carry the paper's `dense_bits`, compute
  is the layout's (Megatron's FLOPs, selective recomputation, the 1F1B bubble), and the tensor- and
  pipeline-parallel traffic is added to every step (Layout.tensor_parallel_seconds, pipeline_seconds).
The speedup of a run is its dense baseline's mean predicted step time over its own, at the same
bandwidth (breakeven.py finds the bandwidth where it crosses 1 or any target, and time to a loss).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from thinwire.algorithms.comm import ThinwireError
from thinwire.simulators.breakeven import baseline_runs, summary, time_to_target
from thinwire.simulators.collectives import ALGORITHMS, Tier, on_cluster, one_tier
from thinwire.simulators.layout import Layout

from thinwire.clusterfile import check_cluster

BASELINE = "sgd"
BACKWARD_SHARE = 2 / 3  # of compute: the backward pass costs twice the forward (4 N D of the 6 N D)
DDP_BUCKET_BYTES = 25 * 2**20  # torch DistributedDataParallel's default bucket_cap_mb


@dataclass(frozen=True)
class Cluster:
    name: str
    nodes: int
    gpus_per_node: int
    sustained_tflops: float
    intra: Tier
    inter: Tier
    algorithm: str = "ring"  # all_reduce and broadcast: ring, tree or auto (collectives.py)
    hierarchical: bool = False  # all_reduce / reduce_scatter over whole nodes: intra, inter, intra
    # Encode + decode throughput per run label or method (the label first), parameters per second per
    # GPU; neither stated costs 0.
    codec_values_per_s: dict[str, float] = field(default_factory=dict, compare=False, hash=False)
    # Each number's label and source, by dotted key (load_cluster), for the report.
    facts: dict[str, dict[str, str]] = field(default_factory=dict, compare=False, hash=False)

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node

    def with_inter_bandwidth(self, gbps: float) -> Cluster:
        return replace(self, inter=Tier(gbps, self.inter.latency_us, self.inter.efficiency))


CLUSTER_KEYS = {"name", "nodes", "gpus_per_node", "sustained_tflops", "tiers", "algorithm", "hierarchical",
                "codec_values_per_s"}
# Where a cluster number comes from: the paper itself, the paper's official scripts, someone else's
# published measurement (nccl-tests, Megatron-LM), the vendor's data sheet, or assumed.
FACT_LABELS = ("paper", "official-script", "measured", "vendor", "assumed")


def load_cluster(path: Path) -> Cluster:
    """A cluster file. Any number may be written as {value, label, source} (label one of FACT_LABELS):
    the value is used, label and source are kept in Cluster.facts under the number's dotted key."""
    facts: dict[str, dict[str, str]] = {}

    def number(x, key: str) -> float:
        if isinstance(x, dict):
            if set(x) != {"value", "label", "source"} or x["label"] not in FACT_LABELS:
                raise ValueError(f"{key}: a fact is {{value, label, source}} with label one of {FACT_LABELS}")
            facts[key] = {"value": x["value"], "label": x["label"], "source": x["source"]}
            x = x["value"]
        return float(x)

    try:
        d = yaml.safe_load(Path(path).read_text())
        check_cluster(d, path)  # one line naming a missing or impossible key (thinwire/clusterfile.py)
        unknown = sorted(set(d) - CLUSTER_KEYS)
        if unknown:
            raise ValueError(f"unknown keys {unknown}")
        if d.get("algorithm", "ring") not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}")
        codec = {str(k): number(v, f"codec_values_per_s.{k}") for k, v in (d.get("codec_values_per_s") or {}).items()}
        tiers = {t: Tier(**{k: number(v, f"tiers.{t}.{k}") for k, v in d["tiers"][t].items()})
                 for t in ("intra", "inter")}
        return Cluster(d["name"], int(number(d["nodes"], "nodes")), int(number(d["gpus_per_node"], "gpus_per_node")),
                       number(d["sustained_tflops"], "sustained_tflops"), tiers["intra"], tiers["inter"],
                       d.get("algorithm", "ring"), bool(d.get("hierarchical", False)), codec, facts)
    except FileNotFoundError:
        raise ThinwireError(f"cluster file {path} does not exist") from None
    except (KeyError, TypeError, ValueError, AttributeError, yaml.YAMLError) as e:
        raise ThinwireError(f"cluster file {path} is malformed: {e!r}") from None


def collective_time(op: str, p: int, n: float, tier: Tier, algorithm: str = "ring") -> float:
    """Seconds for one collective of p ranks on one tier, n bytes handed in per rank (for
    all_gather_v: the mean message)."""
    return float(one_tier("all_gather" if op in ("all_gather_v", "all_gather_shards") else op, p, n, tier, algorithm))


@dataclass(frozen=True)
class Calls:
    """A log's method calls as arrays: step, ranks on the cluster (p), bytes per rank (n), and the
    rows of each op (a variable-size all-gather is priced as an all-gather of its mean message)."""

    step: np.ndarray
    p: np.ndarray
    n: np.ndarray
    rows: dict[str, np.ndarray]


def log_calls(commlog: pd.DataFrame, run_world: int, world_size: int, scale: float | pd.Series) -> Calls:
    """Calls over the whole run world become calls over all `world_size` ranks (an all-gather of
    shards then carries smaller shards); sub-groups keep their size; bytes are multiplied by `scale` (a
    number, or one per step: a Series indexed by step). Metrics traffic is not the method's and is dropped."""
    log = commlog[commlog["category"] == "method"]
    if isinstance(scale, pd.Series):
        scale = scale.reindex(log["step"].to_numpy()).to_numpy(dtype=float)
    group = log["group_size"].to_numpy()
    ops = log["op"].to_numpy().astype(str)
    p = np.where(group == run_world, world_size, group)
    # Messages of different lengths: what one rank sent says little about the others; their mean does.
    n = np.where(ops == "all_gather_v", log["recv"].to_numpy() / np.maximum(group, 1), log["sent"].to_numpy())
    # Shares of one vector: on p' ranks instead of p each share is p/p' as large.
    n = np.where(ops == "all_gather_shards", n * group / p, n)
    rows: dict[str, list] = {}
    for op in np.unique(ops):
        priced_as = "all_gather" if op in ("all_gather_v", "all_gather_shards") else op
        rows.setdefault(priced_as, []).append(np.flatnonzero(ops == op))
    return Calls(log["step"].to_numpy(), p, n * scale,
                 {op: np.concatenate(r) for op, r in rows.items()})


def price(calls: Calls, cluster: Cluster) -> np.ndarray:
    """Seconds of each call on `cluster`, all calls of one op at once."""
    cost = np.zeros(len(calls.step))
    for op, at in calls.rows.items():
        cost[at] = on_cluster(op, calls.p[at], calls.n[at], cluster)
    return cost


def step_comm_times(commlog: pd.DataFrame, run_world: int, cluster: Cluster, scale: float) -> pd.Series:
    """Communication seconds per step of a run's log, replayed on `cluster` with bytes times `scale`."""
    calls = log_calls(commlog, run_world, cluster.world_size, scale)
    if not len(calls.step):
        return pd.Series(dtype=float)
    return pd.Series(price(calls, cluster)).groupby(calls.step).sum()


@dataclass(frozen=True)
class Options:
    """What a step costs besides its logged communication (see the module docstring)."""

    target_params: float | None = None
    flops_per_step: float | None = None
    tokens_per_step: float | None = None
    overlap: bool = False
    buckets: int | None = None
    layout: Layout | None = None
    target_shapes: str | None = None  # a shapes workload (resnet50, ...): bytes scaled to its tensors


def shape_scale(meta: dict, steps: np.ndarray, target_shapes: str) -> tuple[pd.Series, int]:
    """(per step, the factor from the run's logged bytes to what its method sends on `target_shapes`'s
    tensors; the target's parameter count). The factor is target params x the method's bits per parameter
    on the target's layout over run params x those on the run's (bits_per_parameter, its formula, at each
    step), so a method whose bytes depend on tensor shapes (PowerSGD) is priced for the target's; where the
    formula cannot be rebuilt on both layouts (it needs the run's state, or gives no bits), the parameter
    ratio, as target_params does."""
    from thinwire.algorithms.registry import get_method, make_config
    from thinwire.workloads.registry import WORKLOADS, make_workload

    name = target_shapes if target_shapes.endswith("-shapes") else f"{target_shapes}-shapes"
    if WORKLOADS.get(name, ("",))[0] != "shapes":
        shapes = sorted(n.removesuffix("-shapes") for n, (kind, _) in WORKLOADS.items() if kind == "shapes")
        raise ThinwireError(f"--target-shapes must be one of {', '.join(shapes)}, got {target_shapes!r}")
    target = make_workload(name, 1, 0)
    steps = np.unique(np.asarray(steps, dtype=int))
    ratio = target.n_params / meta["n_params"]
    try:
        cls = get_method(meta["method"])
        config = make_config(cls, meta["params"])
        run = make_workload(meta["workload"], meta["world_size"], meta["seed"], meta.get("workload_params"))
        on_target, on_run = cls(config, target.layout), cls(config, run.layout)
        value_bits = VALUE_BITS.get(meta.get("dtype"), 32)
        bits = np.array([[m.bits_per_parameter(value_bits, int(t)) for m in (on_target, on_run)] for t in steps])
    except (ThinwireError, TypeError, ValueError, KeyError, RuntimeError):
        return pd.Series(ratio, index=steps), target.n_params
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(bits[:, 1] > 0, ratio * bits[:, 0] / bits[:, 1], ratio)
    return pd.Series(factor, index=steps), target.n_params


VALUE_BITS = {"float16": 16, "bfloat16": 16, "float32": 32, "float64": 64}


def as_sent_by_paper(commlog: pd.DataFrame, n_params: int, value_bits: int, dense_bits: dict[str, int]) -> pd.DataFrame:
    """The log with every uncompressed call of an op in `dense_bits` re-priced at that many bits per value.
    A call is uncompressed when it carries the run's value bits for each of its values (an all-gather: the
    rank's 1/p share of the parameters; any other op: all of them), e.g. the fp32 all-gather of the sharded
    baseline, which the paper's Megatron sends in bf16; a quantized payload carries far fewer."""
    if not dense_bits:
        return commlog
    log = commlog.copy()
    ops = log["op"].astype(str)
    gathers = ops.str.startswith("all_gather").to_numpy()
    values = np.where(gathers, n_params / log["group_size"].to_numpy(), n_params)
    dense = log["sent"].to_numpy() * 8 >= (value_bits - 0.5) * values
    sent = log["sent"].to_numpy(dtype=float)
    for op, bits in dense_bits.items():
        rows = dense & (ops.to_numpy() == op) | dense & gathers & (op == "all_gather")
        sent = np.where(rows, sent * bits / value_bits, sent)
    log["sent"] = sent
    return log


class StepModel:
    """One run's steps on a cluster: per-step compute, encode/decode and communication seconds.

    The log is read once; `wall(bandwidth)` reprices it at any inter-node bandwidth, which is what
    the break-even search calls many times.
    """

    def __init__(self, commlog: pd.DataFrame, steps: np.ndarray, meta: dict, cluster: Cluster,
                 options: Options) -> None:
        self.cluster, self.options, self.steps = cluster, options, np.asarray(steps)
        layout = options.layout
        params = options.target_params or (layout.params if layout else meta["n_params"])
        scale: float | pd.Series | None = None
        if options.target_shapes:
            if options.target_params or layout is not None:
                raise ThinwireError("--target-shapes sets the target model's parameters: give it without "
                                    "--target-params or a layout")
            scale, params = shape_scale(meta, self.steps, options.target_shapes)
        self.parallel_s = 0.0  # tensor- and pipeline-parallel seconds per step
        if layout is not None:
            world = cluster.world_size
            self.compute_s = layout.compute_seconds(world, cluster.sustained_tflops)
            self.parallel_s = layout.tensor_parallel_seconds(cluster) + layout.pipeline_seconds(cluster)
            self.net = layout.data_parallel_view(cluster)
            params = params / (layout.tp * layout.pp)  # one GPU's share: what its data-parallel group sends
            commlog = as_sent_by_paper(commlog, meta["n_params"], VALUE_BITS.get(meta.get("dtype"), 32),
                                       layout.dense_bits)
        else:
            flops = options.flops_per_step
            if flops is None:
                flops = 6 * params * (options.tokens_per_step or 0.0)  # Kaplan et al. 2020, C = 6 N D
            self.compute_s = flops / (cluster.sustained_tflops * 1e12)
            self.net = cluster
        calls = log_calls(commlog, meta["world_size"], self.net.world_size,
                          params / meta["n_params"] if scale is None else scale)
        sends = np.isin(self.steps, calls.step)
        codec = cluster.codec_values_per_s
        rate = codec.get(meta.get("label", meta["method"]), codec.get(meta["method"]))
        self.codec = f"{rate:g} values/s" if rate else "not stated: 0 s"
        self.codec_s = np.where(sends, params / rate if rate else 0.0, 0.0)
        self.buckets = options.buckets or max(1, math.ceil(params * 4 / DDP_BUCKET_BYTES))
        # As v0: calls logged at a step the trajectory lacks cost nothing.
        self._row = pd.Index(self.steps).get_indexer(calls.step)
        self.calls = calls
        self._mean: dict[float, float] = {}

    def comm(self, bandwidth_gbps: float) -> np.ndarray:
        # The data-parallel view keeps its share of the node link at any node bandwidth.
        share = self.net.inter.bandwidth_gbps / self.cluster.inter.bandwidth_gbps
        cost = price(self.calls, self.net.with_inter_bandwidth(bandwidth_gbps * share))
        kept = self._row >= 0
        return np.bincount(self._row[kept], weights=cost[kept], minlength=len(self.steps))

    def wall(self, bandwidth_gbps: float, comm: np.ndarray | None = None) -> np.ndarray:
        comm = self.comm(bandwidth_gbps) if comm is None else comm
        if not self.options.overlap:
            return self.compute_s + self.parallel_s + self.codec_s + comm
        backward, k = BACKWARD_SHARE * self.compute_s, self.buckets
        return self.codec_s + self.parallel_s + (self.compute_s - backward) + np.maximum(backward / k + comm, backward + comm / k)

    def mean_wall(self, bandwidth_gbps: float) -> float:
        """Mean predicted step time; cached, as the break-even search asks for the same bandwidths often."""
        if bandwidth_gbps not in self._mean:
            self._mean[bandwidth_gbps] = float(self.wall(bandwidth_gbps).mean())
        return self._mean[bandwidth_gbps]


def model_runs(run_dirs: list[Path], cluster_path: Path, out: Path, target_params: float | None = None,
               flops_per_step: float | None = None, bandwidths: list[float] | None = None, *,
               tokens_per_step: float | None = None, overlap: bool = False, buckets: int | None = None,
               baseline: str = BASELINE, speedups: list[float] | None = None, target_loss_factor: float = 1.05,
               summary_out: Path | None = None, name: str | None = None,
               target_shapes: str | None = None) -> pd.DataFrame:
    """Predict step time, speedup over the dense baseline and time to target for every run, at each
    inter-node bandwidth; optionally the break-even summary (breakeven.summary) as a second CSV.
    `name` (default: the cluster's) fills the cluster column, so two setups on one cluster stay apart."""
    cluster = load_cluster(cluster_path)
    options = Options(target_params, flops_per_step, tokens_per_step, overlap, buckets, target_shapes=target_shapes)
    models, frames = {}, []
    for d in map(Path, run_dirs):
        meta = json.loads((d / "meta.json").read_text())
        trajectory = pd.read_csv(d / "trajectory.csv")
        steps = trajectory[[c for c in ("step", "loss", "eval_loss") if c in trajectory]]
        model = StepModel(pd.read_csv(d / "commlog.csv"), steps["step"].to_numpy(), meta, cluster, options)
        models[meta["run"]] = model.mean_wall
        for bw in bandwidths or [cluster.inter.bandwidth_gbps]:
            comm = model.comm(bw)
            f = steps.assign(run=meta["run"], cluster=name or cluster.name, bandwidth_gbps=float(bw),
                             world_size=cluster.world_size, compute_s=model.compute_s, codec_s=model.codec_s,
                             comm_s=comm, wall_s=model.wall(bw, comm), codec=model.codec, overlap=overlap)
            f["method"], f["workload"], f["seed"] = meta["method"], meta["workload"], meta["seed"]
            f["experiment"], f["label"] = meta["experiment"], meta.get("label", meta["method"])
            f["source_mode"], f["source_backend"] = meta["mode"], meta["backend"]
            f["source_world_size"] = meta["world_size"]
            frames.append(f)
    if not frames:
        raise ThinwireError("no runs to model")
    table = pd.concat(frames, ignore_index=True)
    base = baseline_runs(table, baseline)
    table["speedup"] = _speedup(table, base)
    table[["target_loss", "seconds_to_target"]] = time_to_target(table, base, target_loss_factor)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    if summary_out is not None:
        Path(summary_out).parent.mkdir(parents=True, exist_ok=True)
        summary(models, table, base, speedups or [1.0]).to_csv(summary_out, index=False)
    return table


def _speedup(table: pd.DataFrame, base: pd.Series) -> pd.Series:
    """Mean predicted step time of each run's baseline over the run's own, at the same bandwidth."""
    mean = table.groupby(["run", "bandwidth_gbps"])["wall_s"].mean()
    bw = table["bandwidth_gbps"].to_numpy()
    own = mean.reindex(pd.MultiIndex.from_arrays([table["run"].to_numpy(), bw])).to_numpy()
    ref = mean.reindex(pd.MultiIndex.from_arrays([base.reindex(table["run"]).to_numpy(), bw])).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):  # a step that costs nothing: inf or NaN
        return pd.Series(ref / own, index=table.index)
