"""The paper folders (analysis/papers/<paper>/): the runs sheets they compose, and that every claim names a
figure and an experiment that exist."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import pytest
import yaml
from thinwire.algorithms.comm import ThinwireError
from thinwire.analysis.catalog import PAPERS_DIR, compose_runs, paper_names, paper_runs
from thinwire.analysis.claims import read_claims
from thinwire.analysis.figures import load_figures

from thinwire.config import load

ROOT = Path(__file__).resolve().parents[1]
SHEETS = ("quick", "full", "paper")


@pytest.mark.parametrize("sheet", SHEETS)
def test_each_sheet_expands_to_the_runs_it_had_before_the_paper_folders(sheet):
    """tests/data/runs-<sheet>.jsonl.gz: every Run of config/<sheet>.yaml as main's loader expanded it
    (commit 34e73b4, when the sheets held their runs themselves; since then, quick: + the model's held-out
    SDP4Bit cells sdp4bit_dp8 / sdp4bit_dp64 (and sdp4bit_dp128, the H800 TP-1 cells, issue 14); PowerSGD arms in dgc_ablation and digits; dgc_staleness at seeds
    0-2: the staleness of D7 depends on the data, so one seed cannot decide it, issue 13; all sheets: experiment
    hooks (PowerSGD and bf16 against PyTorch's DDP hooks), PowerSGD and bf16 arms in quant_cnn and, full and
    paper, cser_sweep, issue 20; dgc_d6: D6's ablation at small scale, issue 13; quick: saef arms tuned over lr {1, 2, 4}, labels <arm>.t<i>, issue 13 item 2). A sheet changed on
    purpose updates its file, and says so here.
    The runs must be the same, field by
    field; within an experiment they keep their order (the labels' order is the figures' legend order);
    the experiments now come paper after paper."""
    with gzip.open(ROOT / "tests" / "data" / f"runs-{sheet}.jsonl.gz", "rt") as f:
        before = [json.loads(line) for line in f]
    _, runs = load(ROOT / "config" / f"{sheet}.yaml")
    now = [json.loads(json.dumps(dataclasses.asdict(r))) for r in runs]
    assert sorted(now, key=lambda r: r["id"]) == sorted(before, key=lambda r: r["id"])
    for experiment in {r["experiment"] for r in before}:
        assert [r["id"] for r in now if r["experiment"] == experiment] == \
               [r["id"] for r in before if r["experiment"] == experiment], experiment


def test_a_sheet_runs_the_papers_it_names_in_their_order_then_its_own_runs():
    own = {"name": "mine", "mode": "sim", "workload": "lsq", "methods": [{"method": "sgd"}]}
    config = compose_runs({"scale": "quick", "papers": ["saef", "foundation"], "runs": [own]})
    assert "papers" not in config and "scale" not in config
    assert config["runs"] == paper_runs("saef", "quick") + paper_runs("foundation", "quick") + [own]


@pytest.mark.parametrize("bad, message", [
    ({"scale": "quick", "papers": ["no_such_paper"]}, "config.papers must list papers among"),
    ({"scale": "huge", "papers": ["saef"]}, "config.scale must be one of"),
    ({"papers": ["saef"]}, "config.scale must be one of"),
    ({"scale": "quick", "papers": ["validation"], "runs": []}, None),
])
def test_a_bad_paper_selection_is_one_clear_error(bad, message):
    if message is None:  # a paper without runs.yaml adds no runs
        assert compose_runs(bad)["runs"] == []
        return
    with pytest.raises(ThinwireError, match=message):
        compose_runs(bad)


def test_a_paper_without_runs_at_the_sheets_scale_is_refused(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "claims.yaml").write_text("[]\n")
    (tmp_path / "p" / "runs.yaml").write_text(yaml.safe_dump({"quick": []}))
    assert compose_runs({"scale": "quick", "papers": ["p"]}, tmp_path)["runs"] == []
    with pytest.raises(ThinwireError, match="has no `full` section"):
        compose_runs({"scale": "full", "papers": ["p"]}, tmp_path)


def test_every_sheet_names_every_paper_that_has_runs_at_its_scale():
    """A paper folder left out of a sheet would silently lose its runs, hence its verdicts."""
    for sheet in SHEETS:
        named = yaml.safe_load((ROOT / "config" / f"{sheet}.yaml").read_text())["papers"]
        with_runs = [p for p in paper_names() if (PAPERS_DIR / p / "runs.yaml").exists()]
        assert sorted(named) == with_runs, sheet


def _experiments() -> dict[str, set[str]]:
    """Each paper's experiments, over its three sections."""
    return {p: {e["name"] for s in SHEETS for e in paper_runs(p, s)} if (PAPERS_DIR / p / "runs.yaml").exists()
            else set() for p in paper_names()}


def test_every_claim_names_a_figure_and_an_experiment_that_exist():
    """A claim's figure is a generic figure or its own paper's; its experiment (unless out of scope) is its own paper's, or,
    for a paper without runs of its own (0/1 Adam reads the 1-bit Adam volume runs), any paper's. A renamed figure or experiment fails here instead of reading as "not drawn" or "no results"."""
    figures = load_figures()
    experiments = _experiments()
    every_experiment = set().union(*experiments.values())
    for paper in paper_names():
        shown = {name for name, f in figures.items() if f.paper in (None, paper)}
        readable = experiments[paper] or every_experiment
        for claim in read_claims(PAPERS_DIR / paper / "claims.yaml"):
            if claim.get("figure"):  # a registered figure, or an evidence figure (analysis/evidence.py)
                assert claim["figure"] in shown or claim["figure"].startswith("claim_"), \
                    (paper, claim["id"], claim["figure"])
            experiment = claim["quantity"].get("experiment")
            if experiment is not None and not claim.get("out_of_scope"):
                assert experiment in readable, (paper, claim["id"], experiment)


def _paper_files() -> Path | None:
    """../shared/papers beside the checkout (or its worktree folder), or $THINWIRE_PAPERS; None when absent."""
    import os

    candidates = [Path(os.environ["THINWIRE_PAPERS"])] if os.environ.get("THINWIRE_PAPERS") else []
    candidates += [ROOT.parent / "shared" / "papers", ROOT.parent.parent / "shared" / "papers"]
    return next((c for c in candidates if c.is_dir() and any(c.glob("*.md"))), None)


def test_every_paper_claim_id_has_a_row():
    """Completeness (issue 13): every claim id of the paper files has a claim row naming it as its
    paper_claim: a verdict, or out of scope with the reason."""
    from thinwire.analysis.claims import load_claims, missing_paper_claims, paper_claim_ids

    claims = load_claims()
    assert missing_paper_claims(claims) == []
    for c in claims:
        if c.get("out_of_scope"):
            assert len(str(c["out_of_scope"])) > 40, c["id"]  # a reason, not a placeholder
    # The check can fail: a paper claim whose rows are removed is reported missing.
    assert missing_paper_claims([c for c in claims if c.get("paper_claim") != "D6"]) == ["D6"]
    ids = {i for each in paper_claim_ids().values() for i in each}
    named = {str(c.get("paper_claim")) for c in claims}
    unknown = sorted(n for n in named if not n.startswith("none: ") and n not in ids)
    assert unknown == [], "paper_claim must be an id of the paper files or 'none: why'"


def test_the_checked_in_ids_are_the_paper_files_ids():
    from thinwire.analysis.claims import paper_claim_ids

    folder = _paper_files()
    if folder is None:
        pytest.skip("the paper files (../shared/papers) are not on this machine; the checked-in list stands")
    assert paper_claim_ids(folder) == paper_claim_ids()


def test_a_runs_file_is_parsed_once_per_text_and_handed_out_as_a_copy(tmp_path):
    """catalog caches the parse by the file's text: an edited file is read anew, and a caller that changes
    what it got changes nothing for the next one."""
    (tmp_path / "p").mkdir()
    entry = {"name": "e", "mode": "sim", "workload": "lsq", "methods": [{"method": "sgd"}]}
    (tmp_path / "p" / "runs.yaml").write_text(yaml.safe_dump({"quick": [entry]}))
    first = paper_runs("p", "quick", tmp_path)
    first[0]["methods"].append({"method": "topk-ef"})
    assert paper_runs("p", "quick", tmp_path) == [entry]
    (tmp_path / "p" / "runs.yaml").write_text(yaml.safe_dump({"quick": [{**entry, "name": "f"}]}))
    assert [e["name"] for e in paper_runs("p", "quick", tmp_path)] == ["f"]
