# One job per run of the runs sheet. A run writes its results directory all at once (or not at all),
# so an interrupted workflow resumes with exactly the unfinished runs.
import re


rule sim_run:
    output:
        run_outputs(),
    log:
        f"{RESULTS}/logs/{{run}}.log",
    wildcard_constraints:
        run=one_of(SIM_IDS),
    params:
        cmd=run_command,
    threads: 1
    shell:
        "OMP_NUM_THREADS=1 {params.cmd} > {log} 2>&1"


rule real_run:
    output:
        run_outputs(),
    log:
        f"{RESULTS}/logs/{{run}}.log",
    wildcard_constraints:
        run=one_of(REAL_IDS),
    params:
        cmd=run_command,
    threads: 2
    shell:
        "{params.cmd} > {log} 2>&1"


rule model:
    input:
        runs=expand(f"{RESULTS}/runs/{{run}}/meta.json", run=MODEL_IDS),
        cluster=CLUSTERS / "{cluster}.yaml",
    output:
        f"{RESULTS}/model/{{cluster}}.csv",
    log:
        f"{RESULTS}/logs/model-{{cluster}}.log",
    params:
        dirs=lambda wc, input: " ".join(str(Path(m).parent) for m in input.runs),
        scale=model_args(),
    shell:
        "{BIN}/thinwire model {params.dirs} --cluster {input.cluster} {params.scale} --out {output} > {log} 2>&1"
