"""The workflow's configuration: validate it, and expand its runs sheet into one spec per run.

A runs sheet entry is (name, mode, workload, methods x seeds x backends); every run gets an id
`<name>-<mode>[-<backend>]-<label>-s<seed>` and a command line. Everything is checked before any job
starts, in two steps. `load` reads the sheet and needs nothing but the sheet: the schema (unknown or
mistyped keys, non-finite numbers), studies, each method's parameters, world sizes against resources.
`plan` runs where runs are planned for submission (the workflow's planning step): it builds each
workload (its parameters; a tuned run's must have a validation split), checks each method against its
world size, and checks what this installation and launcher can run (packages, launchers, GPUs).

A method entry with `tune: {param: [values], ...}` runs one arm per point of the grid, labelled
`<label>.t<i>` (analysis/tuning.py, which also chooses among them when the results table is built).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from thinwire.algorithms.comm import ThinwireError
from thinwire.algorithms.registry import get_method, make_config
from thinwire.analysis.catalog import compose_runs
from thinwire.analysis.tuning import GRID_LABEL
from thinwire.analysis.tuning import expand as expand_grid
from thinwire.launch import launch_command, slurm_resources
from thinwire.options import RUN, check_finite, pricing_schema, studies_schema, study_kwargs

SCHEMA = Path(__file__).resolve().parents[1] / "config" / "schema.yaml"
DEFAULTS = {"results": "results", "reports": "reports", "collective_timeout_s": RUN.collective_timeout_s,
            "run_timeout_s": RUN.run_timeout_s}
RUN_DEFAULTS = {"backends": ["gloo"], "workload_params": {}, "world_size": RUN.world_size, "seeds": [RUN.seed],
                "steps": RUN.steps, "dtype": RUN.dtype, "eval_every": RUN.eval_every}


@dataclasses.dataclass(frozen=True)
class Run:
    id: str
    experiment: str
    label: str
    mode: str
    backend: str  # "numpy" for the simulator
    method: str
    params: dict
    workload: str
    workload_params: dict
    world_size: int
    seed: int
    steps: int
    dtype: str
    eval_every: int
    nodes: int = 1
    ranks_per_node: int = 2  # = gpus_per_node when there are GPUs
    gpus_per_node: int = 0
    cpus_per_rank: int = 1
    mem_mb: int | None = None
    runtime_min: int | None = None
    partition: str | None = None

    def command(self, bin_dir: Path, out: Path, collective_timeout: float, run_timeout: float,
                launcher: str = "local", mpi_launcher: str = "srun-pmi2", cluster_name: str | None = None) -> str:
        """The shell command that produces this run's results directory (thinwire/launch.py for real runs)."""
        args = [self.method, "--workload", self.workload, "--steps", str(self.steps), "--seed", str(self.seed),
                "--dtype", self.dtype, "--eval-every", str(self.eval_every), "--out", str(out), "--quiet",
                "--experiment", self.experiment, "--label", self.label]
        for k, v in self.params.items():
            args += ["--param", f"{k}={json.dumps(v)}"]
        for k, v in self.workload_params.items():
            args += ["--wparam", f"{k}={json.dumps(v)}"]
        if cluster_name:
            args += ["--cluster-name", cluster_name]
        if self.mode == "sim":
            return shlex.join([str(bin_dir / "thinwire"), "sim", *args, "--workers", str(self.world_size)])
        return launch_command(self.id, self.backend, [*args, "--timeout", f"{collective_timeout:g}"], bin_dir,
                              nodes=self.nodes, ranks_per_node=self.ranks_per_node, gpus_per_node=self.gpus_per_node,
                              cpus_per_rank=self.cpus_per_rank, run_timeout=run_timeout, launcher=launcher,
                              mpi_launcher=mpi_launcher)

    def resources(self, launcher: str = "local", run_timeout: float = 900.0) -> dict:
        """The job's resources for Snakemake's cluster executors (sbatch options of the slurm plugin);
        none on this machine, where threads and --cores schedule the jobs. The job's time limit is the
        entry's runtime_min, else the run's own timeout plus 5 minutes."""
        if launcher == "local":
            return {}
        runtime = self.runtime_min or math.ceil(run_timeout / 60) + 5
        if self.mode == "real":
            return slurm_resources(self.nodes, self.ranks_per_node, self.gpus_per_node, self.cpus_per_rank,
                                   self.mem_mb, runtime, self.partition)
        res = {"runtime": runtime, "mem_mb": self.mem_mb, "slurm_partition": self.partition}
        return {k: v for k, v in res.items() if v}


def schema() -> dict:
    """The runs sheet's JSON schema: config/schema.yaml, with the model's pricing keys and the studies
    filled in from their single definitions (thinwire/options.py)."""
    s = yaml.safe_load(SCHEMA.read_text())
    s["$defs"]["pricing"]["properties"].update(pricing_schema())
    s["properties"]["studies"]["items"] = studies_schema()
    return s


def read(path: str | Path) -> Any:
    """A runs sheet's YAML, or one line saying why it cannot be read."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except UnicodeDecodeError as e:
        raise ThinwireError(f"cannot read config {path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ThinwireError(f"cannot read config {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise ThinwireError(f"cannot read config {path}: not YAML{at}: "
                            f"{getattr(e, 'problem', None) or type(e).__name__}") from None


def load(config: dict | str | Path) -> tuple[dict, list[Run]]:
    """Validate a config (a mapping, or a YAML file) and return (config with defaults, runs). Reads the
    sheet only: no workload is built and nothing about the installation is probed (see `plan`)."""
    if not isinstance(config, dict):
        config = read(config)
    if not isinstance(config, dict):
        raise ThinwireError(f"config: a runs sheet is a mapping with a runs: list, got {type(config).__name__}")
    config = compose_runs(config)  # a sheet that names papers runs their entries (analysis/papers/)
    _check_finite(config, "config")
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema()).iter_errors(config))
    if error is not None:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise ThinwireError(f"config{where}: {_one_line(error.message)}")
    config = {**DEFAULTS, **config}
    study_options(config)
    runs = []
    for i, entry in enumerate(config["runs"]):
        try:
            runs += _expand(entry)
        except ThinwireError as e:
            raise ThinwireError(f"config.runs[{i}] ({entry['name']}): {e}") from None
    check_resources(runs)
    ids = [r.id for r in runs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ThinwireError(f"config: run ids repeat (give methods a label): {', '.join(dupes)}")
    return config, runs


def plan(config: dict[str, Any], runs: list[Run]) -> None:
    """What reading the sheet does not check, checked where its runs are planned for submission: each
    workload built with its parameters, each method against its run's world size, and what this
    installation and launcher can run (check_placement)."""
    from thinwire.workloads.registry import make_workload

    built: dict[str, Any] = {}
    for r in runs:
        key = json.dumps([r.workload, r.world_size, r.workload_params], sort_keys=True)
        try:
            if key not in built:
                built[key] = make_workload(r.workload, r.world_size, 0, r.workload_params)
            config_ = make_config(get_method(r.method), r.params, run_seed=r.seed)
            getattr(config_, "check_world", lambda world: None)(r.world_size)
            workload = built[key]
            if GRID_LABEL.match(r.label) and not getattr(workload, "validation_split", ""):
                raise ThinwireError(f"tune chooses on a validation split, and workload {r.workload} has none with "
                                    f"these parameters{getattr(workload, 'validation_hint', '')}")
        except ValueError as e:
            raise ThinwireError(f"run {r.id}: method {r.method!r}: {e}") from None
        except ThinwireError as e:
            raise ThinwireError(f"run {r.id}: {e}") from None
    check_placement(config, runs)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


def _check_finite(value: Any, where: str) -> None:
    """Refuse .inf and .nan anywhere in a runs sheet (no option means them; lr: .inf passes `lr > 0`)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ThinwireError(f"{where}: must be a finite number, got {value}")
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        _check_finite(v, f"{where}[{k}]" if isinstance(k, int) else f"{where}.{k}")


def study_options(config: dict[str, Any]) -> dict[str, dict]:
    """The config's studies by name, each with its size options (a config names a study, or gives its size),
    checked against the study registry (thinwire/options.py)."""
    names = [s if isinstance(s, str) else s["name"] for s in config.get("studies", [])]
    if len(set(names)) != len(names):
        raise ThinwireError(f"config.studies names a study twice: {names}")
    studies = {name: ({} if isinstance(s, str) else {k: v for k, v in s.items() if k != "name"})
               for name, s in zip(names, config.get("studies", []))}
    for name, given in studies.items():
        try:
            study_kwargs(name, given)
        except ThinwireError as e:
            raise ThinwireError(f"config.studies ({name}): {e}") from None
    return studies


def _placement(entry: dict[str, Any]) -> dict[str, Any]:
    """Nodes, ranks per node and GPUs of an entry's runs, consistent with its world size."""
    res = entry.get("resources") or {}
    nodes, gpus = res.get("nodes", 1), res.get("gpus_per_node", 0)
    if entry["mode"] == "sim":
        if nodes != 1 or gpus:
            raise ThinwireError("simulator runs are one process on one node: resources.nodes must be 1 and "
                                "gpus_per_node 0")
        rpn = 1
    elif gpus:
        if res.get("ranks_per_node", gpus) != gpus:
            raise ThinwireError(f"one rank per GPU: ranks_per_node {res['ranks_per_node']} != gpus_per_node {gpus}")
        rpn = gpus
    else:
        default = max(1, entry["world_size"] // nodes) if "world_size" in entry else (
            RUN_DEFAULTS["world_size"] if nodes == 1 else 1)
        rpn = res.get("ranks_per_node", default)
    if entry["mode"] == "real":
        if "world_size" not in entry:
            entry["world_size"] = nodes * rpn
        elif nodes * rpn != entry["world_size"]:
            raise ThinwireError(f"world_size {entry['world_size']} is not resources.nodes {nodes} x ranks per node "
                                f"{rpn}")
    return {"nodes": nodes, "ranks_per_node": rpn, "gpus_per_node": gpus, "cpus_per_rank": res.get("cpus_per_rank", 1),
            "mem_mb": res.get("mem_mb"), "runtime_min": res.get("runtime_min"), "partition": res.get("partition")}


def _expand(entry: dict[str, Any]) -> list[Run]:
    entry = dict(entry)  # the config's own entry stays as written
    placement = _placement(entry)
    entry = {**RUN_DEFAULTS, **entry}
    from thinwire.workloads.registry import WORKLOADS

    if entry["workload"] not in WORKLOADS:
        raise ThinwireError(f"unknown workload {entry['workload']!r}; known workloads: {', '.join(sorted(WORKLOADS))}")
    backends = ["numpy"] if entry["mode"] == "sim" else entry["backends"]
    runs = []
    arms = []
    for m in entry["methods"]:  # a method entry with a `tune` grid is one arm per grid point
        fields = [f.name for f in dataclasses.fields(get_method(m["method"]).Config)]
        try:
            arms += expand_grid(m, fields)
        except ThinwireError as e:
            raise ThinwireError(f"methods ({m.get('label', m['method'])}): {e}") from None
    for m in arms:
        seeds = entry["seeds"]
        config = make_config(get_method(m["method"]), m.get("params", {}), run_seed=seeds[0] if seeds else 0)
        check_finite(m["method"], config)
        try:  # a config whose validity depends on the run's length (e.g. 1-bit Adam's freeze_step)
            getattr(config, "check_run", lambda steps: None)(entry["steps"])
        except ValueError as e:
            raise ThinwireError(f"method {m['method']!r}: {e}") from None
        label = m.get("label", m["method"])
        for backend in backends:
            for seed in entry["seeds"]:
                where = "" if entry["mode"] == "sim" else f"-{backend}"
                runs.append(Run(f"{entry['name']}-{entry['mode']}{where}-{label}-s{seed}", entry["name"], label,
                                entry["mode"], backend,
                                m["method"], dict(m.get("params", {})), entry["workload"],
                                dict(entry["workload_params"]), entry["world_size"], seed, entry["steps"],
                                entry["dtype"], entry["eval_every"], **placement))
    return runs


def check_resources(runs: list[Run]) -> None:
    """What the sheet alone shows a run cannot be given: NCCL without GPUs, GPUs for CPU backends, and
    mem_mb on some runs of a rule but not all."""
    for r in runs:
        if r.mode != "real":
            continue
        if r.backend == "nccl" and not r.gpus_per_node:
            raise ThinwireError(f"run {r.id}: backend nccl needs GPUs (set resources.gpus_per_node, or use gloo)")
        if r.backend in ("mpi", "gloo") and r.gpus_per_node:
            what = "moves host (numpy) buffers" if r.backend == "mpi" else "runs CPU ranks"
            raise ThinwireError(f"run {r.id}: backend {r.backend} {what}, its ranks use no GPU: set "
                                f"resources.ranks_per_node instead of gpus_per_node")
    with_mem = {r.mode for r in runs if r.mem_mb}
    for r in runs:  # Snakemake needs a number for a rule's mem_mb: every run of a rule sets it, or none
        if r.mode in with_mem and not r.mem_mb:
            raise ThinwireError(f"run {r.id} has no resources.mem_mb while other {r.mode} runs do: set it on every "
                                f"{r.mode} entry or on none")


def check_placement(config: dict[str, Any], runs: list[Run]) -> None:
    """Refuse, before any job starts or is submitted, what the launcher or this installation cannot run:
    more GPUs per node than the cluster's nodes have, several nodes without a cluster launcher, a
    backend whose package or launcher is not installed, more GPUs than this machine has."""
    from thinwire.workloads.registry import make_workload

    launcher = config.get("launcher", "local")
    max_gpus = config.get("max_gpus_per_node")
    real = [r for r in runs if r.mode == "real"]
    for r in real:
        if max_gpus is not None and r.gpus_per_node > max_gpus:
            raise ThinwireError(f"run {r.id} asks for {r.gpus_per_node} GPUs per node; the profile allows "
                                f"max_gpus_per_node={max_gpus}")
        if launcher == "local" and r.nodes > 1:
            raise ThinwireError(f"run {r.id} asks for {r.nodes} nodes: the local launcher runs on this machine "
                                f"(use a cluster profile, e.g. --profile profiles/slurm)")
        if launcher == "slurm" and r.world_size < 2:
            raise ThinwireError(f"run {r.id}: a real run on slurm needs at least 2 ranks")
    backends = {r.backend for r in real}
    missing = [problem for b in sorted(backends) if (problem := _backend_problem(b, config))]
    if missing:
        raise ThinwireError("; ".join(missing))
    if launcher == "local":
        gpus = max((r.gpus_per_node for r in real), default=0)
        if gpus:
            import torch

            have = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if have < gpus:
                raise ThinwireError(f"runs ask for {gpus} GPUs on this machine, which has {have}"
                                    f"{' (NCCL requested without a GPU)' if 'nccl' in backends else ''}")
            if "nccl" in backends:
                import torch.distributed as dist

                if not dist.is_nccl_available():
                    raise ThinwireError("backend nccl: this torch has no NCCL (install a CUDA build of torch)")
    for r in real:
        if r.backend in ("deepspeed", "ddp"):  # the reference backends' own checks, at planning time
            if r.backend == "deepspeed":
                from thinwire.workloads.deepspeed_backend import check_spec, check_workload
            else:
                from thinwire.workloads.ddp_hooks import check_spec, check_workload
            try:
                check_spec(r, make_config(get_method(r.method), r.params))
                check_workload(r, make_workload(r.workload, r.world_size, 0, r.workload_params))
            except ThinwireError as e:
                raise ThinwireError(f"run {r.id}: {e}") from None


def _backend_problem(backend: str, config: dict[str, Any]) -> str | None:
    """Why this installation cannot launch `backend` runs, or None."""
    import importlib.util
    import shutil
    import sys
    from importlib import metadata

    bin_dir = Path(sys.executable).parent
    launcher = config.get("launcher", "local")

    def tool(name: str) -> bool:
        return (bin_dir / name).exists() or shutil.which(name) is not None

    if backend in ("gloo", "nccl", "ddp"):
        if importlib.util.find_spec("torch") is None or not tool("torchrun"):
            return f"backend {backend} needs torch and torchrun (pip install torch==2.13.0)"
    elif backend == "mpi":
        if importlib.util.find_spec("mpi4py") is None:
            return "backend mpi needs mpi4py: pip install '.[mpi]'"
        if (launcher == "local" or config.get("mpi_launcher") == "mpiexec") and not tool("mpiexec"):
            return "backend mpi needs an mpiexec on PATH (pip install '.[mpi]' brings MPICH's)"
    elif backend == "deepspeed":
        try:
            version = metadata.version("deepspeed")
        except metadata.PackageNotFoundError:
            return "backend deepspeed needs DeepSpeed: pip install '.[deepspeed]' (see the README)"
        release = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
        if release is None or tuple(map(int, release.groups())) > (0, 19, 6):
            return (f"backend deepspeed needs DeepSpeed <= 0.19.6 (the last release with the 1-bit optimizers), "
                    f"found {version}")
        if not tool("deepspeed"):
            return "backend deepspeed needs the deepspeed launcher on PATH"
    return None


def check_cluster_installation(config: dict[str, Any], runs: list[Run]) -> None:
    """What only the cluster's GPU jobs need, checked when the workflow starts to submit (not when it only
    plans, which works on any machine): NCCL in torch, and cupy for DeepSpeed's 1-bit optimizers on GPUs."""
    if config.get("launcher", "local") != "slurm":
        return  # on this machine, check_placement already checked against the GPUs it has
    import shutil

    if shutil.which("srun") is None:
        raise ThinwireError("launcher slurm starts ranks with srun, which is not here: submit with "
                            "--profile profiles/slurm on a slurm cluster (or run inside an allocation)")
    real = [r for r in runs if r.mode == "real"]
    if any(r.backend == "nccl" for r in real):
        import torch.distributed as dist

        if not dist.is_nccl_available():
            raise ThinwireError("backend nccl: this torch has no NCCL (install a CUDA build of torch on the cluster)")
    if any(r.backend == "deepspeed" and r.gpus_per_node for r in real):
        import importlib.util

        if importlib.util.find_spec("cupy") is None:
            raise ThinwireError("backend deepspeed on GPUs: DeepSpeed's 1-bit optimizers need cupy "
                                "(pip install cupy-cuda12x)")
