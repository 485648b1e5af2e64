# Device-check archives as a results source (thinwire/gpucheck.py, README "GPU check"): the runs sheet's
# `imported: [path/gpu-check-<date>-<commit>.tar.gz, ...]`. One job unpacks every archive's runs into
# results/runs/<run>@<source>/ (source: gpu-<date>-<commit>, or dry-... for a CPU dry run) as runs of
# experiments <experiment>@<source> with ran_on "<GPU name> <date>" (meta.json env: cluster, and the archive,
# its date and commit), and writes, beside a copy of the papers' claim files, one claim file per archive:
# every claim that reads one of its experiments again as <id>@<source>, its setup saying where and at what
# scale (steps x parameters against the quick sheet's) it ran. The report then judges those rows with the
# same rules (power, tolerance) beside the CPU rows; each counts in the headline as a row of its kind.
from thinwire.gpucheck import import_archive, read_manifest, source_tag

IMPORTED = {}  # source tag -> (archive, manifest)
for _archive in CONFIG.get("imported", []):
    try:
        _manifest = read_manifest(Path(_archive))
    except ThinwireError as e:
        sys.exit(f"thinwire: error: config.imported: {e}")
    _tag = source_tag(_manifest)
    if _tag in IMPORTED:
        sys.exit(f"thinwire: error: config.imported: {_archive} and {IMPORTED[_tag][0]} are both {_tag}")
    IMPORTED[_tag] = (str(_archive), _manifest)

IMPORTED_RUNS = [f"{RESULTS}/runs/{run}@{tag}/meta.json" for tag, (_, m) in IMPORTED.items() for run in m["run_ids"]]
IMPORTED_CLAIMS_DIR = f"{RESULTS}/imported/claims"
PAPER_CLAIM_FILES = sorted((ROOT / "analysis" / "papers").glob("*/claims.yaml"))
IMPORTED_CLAIMS = ([f"{IMPORTED_CLAIMS_DIR}/{p.parent.name}/claims.yaml" for p in PAPER_CLAIM_FILES]
                   + [f"{IMPORTED_CLAIMS_DIR}/imported-{tag}/claims.yaml" for tag in IMPORTED]) if IMPORTED else []
# `thinwire report`'s claims: the papers' own, or with archives, the folder that adds theirs.
REPORT_CLAIMS_ARG = f"--claims {IMPORTED_CLAIMS_DIR}" if IMPORTED else ""

if IMPORTED:

    localrules: imported

    rule imported:
        input:
            archives=[a for a, _ in IMPORTED.values()],
            papers=PAPER_CLAIM_FILES,
        output:
            IMPORTED_RUNS + IMPORTED_CLAIMS,
        run:
            import shutil

            for p in PAPER_CLAIM_FILES:
                Path(f"{IMPORTED_CLAIMS_DIR}/{p.parent.name}").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, f"{IMPORTED_CLAIMS_DIR}/{p.parent.name}/claims.yaml")
            for tag, (archive, _) in IMPORTED.items():
                import_archive(Path(archive), Path(RESULTS) / "runs",
                               Path(f"{IMPORTED_CLAIMS_DIR}/imported-{tag}/claims.yaml"))
