"""thinwire workflow: every run of the runs sheet (simulator and real ranks), the performance model,
one results table, and the report with a verdict for every claim.

    snakemake --cores 2                                   # config/quick.yaml, the CPU default
    snakemake --cores all --configfile config/my.yaml     # another runs sheet
    snakemake -n                                          # list the jobs without running them
    snakemake reports/figures/loss_vs_step.png            # one figure
    snakemake --report report.zip                         # Snakemake's report of the figures and tables
    snakemake --profile profiles/slurm --configfile config/paper.yaml   # paper scale on a slurm cluster
"""

import os
import sys
from pathlib import Path

import yaml

ROOT = Path(workflow.basedir)
# No --configfile: the quick config, under any --config overrides (e.g. a profile's). A runs sheet that was
# given is used as it is, so a sheet without `runs:` is refused (config/schema.yaml), not replaced.
if not workflow.config_settings.configfiles:
    config.update({**yaml.safe_load((ROOT / "config" / "quick.yaml").read_text()), **config})


# `snakemake --report report.zip`: Snakemake's own report of the figures and tables (workflow/report/).
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/imported.smk"
include: "workflow/rules/runs.smk"
include: "workflow/rules/predicted.smk"
include: "workflow/rules/report.smk"


# Quick bookkeeping jobs stay on the submitting machine when a cluster executor is used.
localrules: all, aggregate, report, model, predicted, study


rule all:
    input:
        f"{REPORTS}/index.html",
