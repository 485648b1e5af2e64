# The performance model at the papers' stated setups (simulators/cells.yaml: predicted against claimed,
# calibrated, sensitivity) and against published collective measurements (simulators/published_collectives.yaml),
# as study tables the report reads: results/studies/model-{predicted,sensitivity,collectives}.csv.
# Planned only when the runs sheet has the experiments of every cell a claim rests on.
_CELLS = yaml.safe_load((ROOT / "simulators" / "cells.yaml").read_text())["cells"]
_EXPERIMENTS = {r.experiment for r in RUNS}
PREDICTED_RUNS = [r.id for r in RUNS if r.experiment in {c["experiment"] for c in _CELLS}]
PREDICTED = ([f"{RESULTS}/studies/model-{name}.csv" for name in ("predicted", "sensitivity", "collectives")]
             if {c["experiment"] for c in _CELLS if c["stated"]} <= _EXPERIMENTS else [])


rule predicted:
    input:
        runs=expand(f"{RESULTS}/runs/{{run}}/meta.json", run=PREDICTED_RUNS),
        cells=ROOT / "simulators" / "cells.yaml",
        clusters=sorted(CLUSTERS.glob("*.yaml")),
        published=ROOT / "simulators" / "published_collectives.yaml",
    output:
        predicted=f"{RESULTS}/studies/model-predicted.csv",
        sensitivity=f"{RESULTS}/studies/model-sensitivity.csv",
        collectives=f"{RESULTS}/studies/model-collectives.csv",
    log:
        f"{RESULTS}/logs/predicted.log",
    shell:
        "({BIN}/python -m thinwire.simulators.predict {RESULTS}/runs --cells {input.cells} "
        "--out {output.predicted} --sensitivity {output.sensitivity} && "
        "{BIN}/python -m thinwire.simulators.published_collectives --data {input.published} "
        "--out {output.collectives}) > {log} 2>&1"
