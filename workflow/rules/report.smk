# The results table, then the claim verdicts, figures and HTML report computed from it.
import json
import shlex
from datetime import datetime, timezone

# Each paper's claims and figures (analysis/papers/<paper>/): the report reruns when one changes.
PAPER_FILES = sorted((ROOT / "analysis" / "papers").glob("*/claims.yaml")) + sorted(
    (ROOT / "analysis" / "papers").glob("*/figures.py")) + sorted(
    (ROOT / "analysis" / "papers").glob("*/paper_numbers.yaml"))

from thinwire.analysis.gallery import report_entries, report_entry

# Snakemake's report: each figure's category (its paper) and caption (its claims), by figure name.
REPORT_ENTRIES = report_entries()
PAPERS = sorted(p.parent.name for p in (ROOT / "analysis" / "papers").glob("*/claims.yaml"))

# What only the workflow knows, for the report's provenance (analysis/report/provenance.py): the runs
# sheets it was given, its command line and when it started. The report job reads it from its
# environment; a param would change with every start and so rerun the report each time.
os.environ["THINWIRE_PROVENANCE"] = json.dumps({
    "configfiles": [str(p) for p in workflow.config_settings.configfiles],
    "command": " ".join([Path(sys.argv[0]).name, *map(shlex.quote, sys.argv[1:])]),
    "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
})


rule aggregate:
    input:
        runs=expand(f"{RESULTS}/runs/{{run}}/meta.json", run=RUN) + IMPORTED_RUNS,
        model=expand(f"{RESULTS}/model/{{job}}.csv", job=MODEL_JOBS),
    output:
        f"{RESULTS}/table.csv",
    log:
        f"{RESULTS}/logs/aggregate.log",
    params:
        dirs=lambda wc, input: " ".join(str(Path(m).parent) for m in input.runs),
    shell:
        "{BIN}/thinwire aggregate {params.dirs} --model {input.model} --out {output} > {log} 2>&1"


rule report:
    input:
        table=f"{RESULTS}/table.csv",
        papers=PAPER_FILES,
        studies=expand(f"{RESULTS}/studies/{{name}}.csv", name=STUDIES),
        model_summaries=expand(f"{RESULTS}/studies/model-{{job}}.csv", job=MODEL_JOBS),
        predicted=PREDICTED,
        imported=IMPORTED_CLAIMS,
    output:
        html=f"{REPORTS}/index.html",
        csv=f"{REPORTS}/claims.csv",
        md=f"{REPORTS}/claims.md",
        runs=f"{REPORTS}/runs.html",
        summary=f"{REPORTS}/summary.png",
        papers=expand(f"{REPORTS}/papers/{{paper}}.html", paper=PAPERS),
        assets=[f"{REPORTS}/{name}" for name in ("style.css", "table.js", "provenance.json")],
        # Every figure (<name>.png) and regenerated table (<name>.csv), drawn in this one job; declared for
        # `snakemake --report report.zip`: a category per paper, captions from its claims (gallery.py).
        figures=report(directory(f"{REPORTS}/figures"), patterns=["{name}.png", "{name}.csv"],
                       caption="../report/figure.rst",
                       category=lambda wildcards: report_entry(wildcards.name, REPORT_ENTRIES)["category"],
                       subcategory=lambda wildcards: report_entry(wildcards.name, REPORT_ENTRIES)["subcategory"],
                       labels=lambda wildcards: {"figure": wildcards.name}),
    params:
        captions={name: entry["caption"] for name, entry in REPORT_ENTRIES.items()},
    log:
        f"{RESULTS}/logs/report.log",
    shell:
        "{BIN}/thinwire report {input.table} --out {REPORTS} --studies {RESULTS}/studies {REPORT_CLAIMS_ARG} > {log} 2>&1"


# One figure by name (`snakemake reports/figures/zo_rate.png`), any registered figure, generic or a
# paper's; the report rule draws them all, and also makes the two it names.
ruleorder: report > figure
localrules: figure


rule figure:
    input:
        table=f"{RESULTS}/table.csv",
        papers=PAPER_FILES,  # a claim's evidence, a paper's numbers
        studies=expand(f"{RESULTS}/studies/{{name}}.csv", name=STUDIES),
        model_summaries=expand(f"{RESULTS}/studies/model-{{job}}.csv", job=MODEL_JOBS),
    output:
        f"{REPORTS}/figures/{{figure}}.png",
    wildcard_constraints:
        figure=r"[A-Za-z0-9_]+",
    run:
        from thinwire.analysis.build import build_figure

        # An error (unknown figure, no rows for it) fails the job with its one-line message.
        build_figure(input.table, wildcards.figure, Path(output[0]).parent, Path(RESULTS) / "studies")


rule study:
    output:
        f"{RESULTS}/studies/{{name}}.csv",
    log:
        f"{RESULTS}/logs/study-{{name}}.log",
    wildcard_constraints:
        name=one_of(STUDIES),
    params:
        args=lambda wildcards: study_args(wildcards.name),
    shell:
        "OMP_NUM_THREADS=1 {BIN}/thinwire study {wildcards.name} {params.args} --out {output} > {log} 2>&1"


# Opt-in (needs root for network namespaces): `snakemake validation`, or `make validate`, which then
# rebuilds the report with the table. Not part of `all`: CI and laptops without root skip it.
rule validation:
    input:
        sheet=ROOT / "config" / "validation.yaml",
    output:
        f"{RESULTS}/studies/validation.csv",
    log:
        f"{RESULTS}/logs/validation.log",
    threads: os.cpu_count()  # the whole machine: measured step times need it quiet (capped at --cores)
    shell:
        "{BIN}/thinwire validate {input.sheet} --work {RESULTS}/validation --out {output} > {log} 2>&1"
