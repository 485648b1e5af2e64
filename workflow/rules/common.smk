# Validate the config and expand the runs sheet once; every rule reads RUNS from here.
from thinwire.algorithms.comm import ThinwireError
from thinwire.config import load, plan, study_options
from thinwire.options import MODEL_OPTIONS, STUDY_OPTIONS
from thinwire.results import FILES

try:  # read the sheet, then plan its runs here (workloads, methods' world sizes, this installation)
    CONFIG, RUNS = load(config)
    plan(CONFIG, RUNS)
except ThinwireError as e:
    sys.exit(f"thinwire: error: {e}")

RUN = {r.id: r for r in RUNS}


onstart:
    # Not on a dry run: planning works anywhere; submitting GPU jobs needs their packages here.
    from thinwire.config import check_cluster_installation

    try:
        check_cluster_installation(CONFIG, RUNS)
    except ThinwireError as e:
        sys.exit(f"thinwire: error: {e}")
SIM_IDS = [r.id for r in RUNS if r.mode == "sim"]
REAL_IDS = [r.id for r in RUNS if r.mode == "real"]
RESULTS, REPORTS = CONFIG["results"], CONFIG["reports"]
MODEL = CONFIG.get("model", {})
# One model job per cluster of the model section (with the section's settings) and per setup (a
# paper's setup on its cluster, for the model-side claims). Each writes results/model/<job>.csv, rows
# of the results table, and results/studies/model-<job>.csv, its break-even summary.
MODEL_JOBS = {c: {**{k: v for k, v in MODEL.items() if k not in ("clusters", "setups")}, "cluster": c}
              for c in MODEL.get("clusters", [])}
for _setup in MODEL.get("setups", []):
    if _setup["name"] in MODEL_JOBS:
        sys.exit(f"thinwire: error: model setup {_setup['name']!r} has the name of another model job")
    MODEL_JOBS[_setup["name"]] = _setup
# Studies by name, each with its `thinwire study` options.
STUDIES = study_options(CONFIG)


def study_args(name):
    """`thinwire study` options of a study job (the registry's flags, thinwire/options.py)."""
    s = STUDIES[name]
    return " ".join(a for key, option in STUDY_OPTIONS.items() if key in s for a in option.args(s[key]))


BIN = Path(sys.executable).parent
RUN_FILES = list(FILES)
CLUSTERS = ROOT / "simulators" / "clusters"


def run_outputs(run="{run}"):
    return [f"{RESULTS}/runs/{run}/{name}" for name in RUN_FILES]


# Where real runs start (thinwire/launch.py): this machine, or inside slurm allocations (profiles/slurm).
LAUNCHER = CONFIG.get("launcher", "local")


def run_command(wildcards):
    return RUN[wildcards.run].command(BIN, Path(RESULTS) / "runs" / wildcards.run,
                                      CONFIG["collective_timeout_s"], CONFIG["run_timeout_s"], LAUNCHER,
                                      CONFIG.get("mpi_launcher", "srun-pmi2"), CONFIG.get("cluster_name"))


def run_resources(ids):
    """Rule resources of the runs `ids` (Run.resources: sbatch options under slurm, none locally): each
    key some run sets, as a function of the job's run (None where that run does not set it)."""
    keys = dict.fromkeys(k for i in ids for k in RUN[i].resources(LAUNCHER, CONFIG["run_timeout_s"]))
    return {k: (lambda wildcards, k=k: RUN[wildcards.run].resources(LAUNCHER, CONFIG["run_timeout_s"]).get(k))
            for k in keys}


def one_of(ids):
    # A regex matching exactly these run ids (or nothing, when there are none).
    return "|".join(map(re.escape, ids)) or "(?!)"


def model_run_ids(job):
    """The runs a model job prices: its experiments (default all), its labels (default all)."""
    s = MODEL_JOBS[job]
    return [r.id for r in RUNS
            if r.experiment in s.get("experiments", [r.experiment]) and r.label in s.get("labels", [r.label])]


def model_args(job):
    """`thinwire model` options of a model job (MODEL_OPTIONS: each key's flag, thinwire/options.py)."""
    s = MODEL_JOBS[job]
    return " ".join(a for o in MODEL_OPTIONS if o.key in s for a in o.args(s[o.key]))
