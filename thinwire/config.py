"""The workflow's configuration: validate it, and expand its runs sheet into one spec per run.

A runs sheet entry is (name, mode, workload, methods x seeds x backends); every run gets an id
`<name>-<mode>[-<backend>]-<label>-s<seed>` and a command line. Everything is checked here, before
any job starts: the schema (unknown or mistyped keys), and each method's and workload's parameters.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from thinwire.algorithms.comm import ThinwireError
from thinwire.algorithms.registry import get_method, make_config
from thinwire.workloads.registry import make_workload

SCHEMA = Path(__file__).resolve().parents[1] / "config" / "schema.yaml"
DEFAULTS = {"results": "results", "reports": "reports", "collective_timeout_s": 120.0, "run_timeout_s": 900.0}
RUN_DEFAULTS = {"backends": ["gloo"], "workload_params": {}, "world_size": 2, "seeds": [0], "steps": 100,
                "dtype": "float32", "eval_every": 10}


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

    def command(self, bin_dir: Path, out: Path, collective_timeout: float, run_timeout: float) -> str:
        """The shell command that produces this run's results directory."""
        args = [self.method, "--workload", self.workload, "--steps", str(self.steps), "--seed", str(self.seed),
                "--dtype", self.dtype, "--eval-every", str(self.eval_every), "--out", str(out), "--quiet",
                "--experiment", self.experiment, "--label", self.label]
        for k, v in self.params.items():
            args += ["--param", f"{k}={json.dumps(v)}"]
        for k, v in self.workload_params.items():
            args += ["--wparam", f"{k}={json.dumps(v)}"]
        thinwire = str(bin_dir / "thinwire")
        if self.mode == "sim":
            cmd = [thinwire, "sim", *args, "--workers", str(self.world_size)]
        elif self.backend == "mpi":
            cmd = ["timeout", f"{run_timeout:g}", str(bin_dir / "mpiexec"), "-n", str(self.world_size),
                   thinwire, "run", *args, "--backend", "mpi", "--timeout", f"{collective_timeout:g}"]
        else:
            cmd = ["timeout", f"{run_timeout:g}", str(bin_dir / "torchrun"), "--standalone",
                   "--nproc_per_node", str(self.world_size), "-m", "thinwire", "run", *args,
                   "--backend", "torch", "--timeout", f"{collective_timeout:g}"]
        return shlex.join(cmd)


def load(config: dict | str | Path) -> tuple[dict, list[Run]]:
    """Validate a config (a mapping, or a YAML file) and return (config with defaults, runs)."""
    if not isinstance(config, dict):
        try:
            config = yaml.safe_load(Path(config).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ThinwireError(f"cannot read config {config}: {e}") from None
    schema = yaml.safe_load(SCHEMA.read_text())
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise ThinwireError(f"config{where}: {error.message}")
    config = {**DEFAULTS, **config}
    runs = [run for entry in config["runs"] for run in _expand({**RUN_DEFAULTS, **entry})]
    ids = [r.id for r in runs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ThinwireError(f"config: run ids repeat (give methods a label): {', '.join(dupes)}")
    return config, runs


def _expand(entry: dict[str, Any]) -> list[Run]:
    make_workload_checked(entry)
    backends = ["numpy"] if entry["mode"] == "sim" else entry["backends"]
    runs = []
    for m in entry["methods"]:
        make_config(get_method(m["method"]), m.get("params", {}))
        label = m.get("label", m["method"])
        for backend in backends:
            for seed in entry["seeds"]:
                where = "" if entry["mode"] == "sim" else f"-{backend}"
                runs.append(Run(f"{entry['name']}-{entry['mode']}{where}-{label}-s{seed}", entry["name"], label,
                                entry["mode"], backend,
                                m["method"], dict(m.get("params", {})), entry["workload"],
                                dict(entry["workload_params"]), entry["world_size"], seed, entry["steps"],
                                entry["dtype"], entry["eval_every"]))
    return runs


def make_workload_checked(entry: dict[str, Any]) -> None:
    """Build the workload once (cheap) so bad workload names and parameters fail at planning time."""
    make_workload(entry["workload"], entry["world_size"], 0, entry["workload_params"])
