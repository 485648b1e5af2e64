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
    resources:
        **run_resources(SIM_IDS),
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
    # On this machine: one core per rank (Snakemake caps it at --cores); on slurm, the resources below.
    threads: lambda wildcards: RUN[wildcards.run].world_size
    resources:
        **run_resources(REAL_IDS),
    shell:
        "{params.cmd} > {log} 2>&1"


rule model:
    input:
        runs=lambda wc: expand(f"{RESULTS}/runs/{{run}}/meta.json", run=model_run_ids(wc.job)),
        cluster=lambda wc: CLUSTERS / f"{MODEL_JOBS[wc.job]['cluster']}.yaml",
    output:
        table=f"{RESULTS}/model/{{job}}.csv",
        summary=f"{RESULTS}/studies/model-{{job}}.csv",
    log:
        f"{RESULTS}/logs/model-{{job}}.log",
    wildcard_constraints:
        job=one_of(MODEL_JOBS),
    params:
        dirs=lambda wc, input: " ".join(str(Path(m).parent) for m in input.runs),
        args=lambda wc: model_args(wc.job),
    shell:
        "{BIN}/thinwire model {params.dirs} --cluster {input.cluster} {params.args} --out {output.table} "
        "--summary {output.summary} > {log} 2>&1"
