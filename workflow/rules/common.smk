# Validate the config and expand the runs sheet once; every rule reads RUNS from here.
from thinwire.algorithms.comm import ThinwireError
from thinwire.config import load
from thinwire.results import FILES

try:
    CONFIG, RUNS = load(config)
except ThinwireError as e:
    sys.exit(f"thinwire: error: {e}")

RUN = {r.id: r for r in RUNS}
SIM_IDS = [r.id for r in RUNS if r.mode == "sim"]
REAL_IDS = [r.id for r in RUNS if r.mode == "real"]
RESULTS, REPORTS = CONFIG["results"], CONFIG["reports"]
MODEL = CONFIG.get("model", {})
MODEL_IDS = [r.id for r in RUNS if r.experiment in MODEL.get("experiments", [r.experiment])]
BIN = Path(sys.executable).parent
RUN_FILES = list(FILES)
CLUSTERS = ROOT / "simulators" / "clusters"
CLAIMS = sorted((ROOT / "analysis" / "claims").glob("*.yaml"))


def run_outputs(run="{run}"):
    return [f"{RESULTS}/runs/{run}/{name}" for name in RUN_FILES]


def run_command(wildcards):
    return RUN[wildcards.run].command(BIN, Path(RESULTS) / "runs" / wildcards.run,
                                      CONFIG["collective_timeout_s"], CONFIG["run_timeout_s"])


def one_of(ids):
    # A regex matching exactly these run ids (or nothing, when there are none).
    return "|".join(map(re.escape, ids)) or "(?!)"


def model_args():
    """`thinwire model` options from the config's model section."""
    args = []
    if "target_params" in MODEL:
        args.append(f"--target-params {MODEL['target_params']}")
    if "flops_per_step" in MODEL:
        args.append(f"--flops-per-step {MODEL['flops_per_step']}")
    args += [f"--bandwidth {b}" for b in MODEL.get("bandwidths_gbps", [])]
    return " ".join(args)
