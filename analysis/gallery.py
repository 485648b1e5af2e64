"""Which figures the report has and what they are called: every claim's evidence figure (figure_name:
claim_<id>, or the claim_* group its claims.yaml names; analysis/evidence.py draws them), and the papers'
own figures and tables that thinwire regenerates from results (GALLERY: what each shows, the paper's table
or figure it stands for). The README's table of them is `markdown()`'s output (tests/test_figures.py holds
the two equal); the Snakemake report's categories and captions are `report_entries()`. Light on purpose
(yaml only): the Snakefile reads it when it plans.

    python -m thinwire.analysis.gallery      # print the README table
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import yaml
from thinwire.algorithms.comm import ThinwireError
from thinwire.analysis.catalog import PAPERS_DIR, paper_names

PREFIX = "claim_"


def slug(claim_id: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(claim_id).lower()).strip("_")


def figure_name(claim: dict) -> str:
    """The claim's evidence figure: its own claim_* `figure` (a group), else claim_<slug of its id>;
    "" when out of scope."""
    if claim.get("out_of_scope"):
        return ""
    own = str(claim.get("figure") or "")
    return own if own.startswith(PREFIX) else PREFIX + slug(claim["id"])


def resolve_figures(claims: list[dict]) -> list[dict]:
    """The claims with `figure` set to their evidence figure (figure_name). Two claims whose ids give the
    same slug without naming that figure themselves would share a figure by accident: an error."""
    out, owner = [], {}
    for c in claims:
        name = figure_name(c)
        explicit = str(c.get("figure") or "").startswith(PREFIX)
        if name and not explicit:
            if name in owner and owner[name] != c["id"]:
                raise ThinwireError(f"claims {owner[name]} and {c['id']} both get figure {name}; "
                                    f"name a claim_* figure for one of them in its claims.yaml")
            owner[name] = c["id"]
        out.append({**c, "figure": name})
    return out


def groups(claims: list[dict]) -> dict[str, list[dict]]:
    """{evidence figure: its claims}, in the claims' order (claims already resolved or not)."""
    by: dict[str, list[dict]] = {}
    for c in claims:
        name = figure_name(c)
        if name:
            by.setdefault(name, []).append(c)
    return by



@dataclasses.dataclass(frozen=True)
class PaperFigure:
    name: str  # the registered figure (reports/figures/<name>.png; <name>.csv when `table`)
    paper: str  # its folder, analysis/papers/<paper>/
    stands_for: str  # the paper's table or figure
    shows: str
    table: bool  # also written as reports/figures/<name>.csv


GALLERY = (
    PaperFigure("sdp4bit_loss_table", "sdp4bit", "Table 1", "final held-out loss per variant (baseline, qW, qWD, "
                "TLq, TLq-HS, SDP4Bit), measured, and its gap to the baseline beside Table 1's at 125M / 350M / 1.3B",
                True),
    PaperFigure("sdp4bit_model_throughput", "sdp4bit", "Table 2", "end-to-end speedup over uncompressed sharded DP "
                "at the paper's three P1 setups, predicted by the performance model (labelled so), beside the "
                "paper's measured speedups", True),
    PaperFigure("dgc_ratio_table", "dgc", "Tables 3-4", "compression ratio and gradient size per step on the real "
                "parameter tensors of ResNet-50, AlexNet, the PTB LSTM and DeepSpeech, measured, beside the paper's",
                True),
    PaperFigure("onebit_volume_vs_warmup", "onebit_adam", "blog / abstract (A1, A3)", "overall volume of Adam over "
                "1-bit Adam against the warm-up fraction, measured, with the fp32 formula and the paper's fp16 "
                "formula and points", True),
    PaperFigure("dsm_ls_loss_curves", "dsm_ls", "S1 / S2 (no readable numbers)", "held-out loss curves of DSM-LS "
                "against local AdamW and SlowMo at tau 4 and 12, measured", True),
    PaperFigure("zo_rate", "zo_prox", "abstract rates (ZO-1, ZO-2)", "gradient mapping against steps and queries, "
                "log-log with fitted slopes, beside the paper's T^-1/2 and T^-1", True),
    PaperFigure("zo_queries", "zo_prox", "ZO-3", "function queries to accuracy at an equal query budget", False),
    PaperFigure("lars_layer_lr", "clars", "CL-inv (no readable numbers)", "the learning rate of every weight tensor "
                "at every step, CLARS against LARS; the table gives CLARS' over LARS' per tensor", True),
)


def markdown() -> str:
    """The README's table of the regenerated paper figures."""
    lines = ["| figure (`snakemake reports/figures/<name>.png`) | paper | stands for | shows | table |",
             "|---|---|---|---|---|"]
    lines += [f"| `{f.name}` | {f.paper} | {f.stands_for} | {f.shows} | {'`' + f.name + '.csv`' if f.table else ''} |"
              for f in GALLERY]
    return "\n".join(lines)


def report_entries(folder: Path = PAPERS_DIR) -> dict[str, dict[str, str]]:
    """{figure name: {category, subcategory, caption}} for Snakemake's report (workflow/report/figure.rst):
    a category per paper; the evidence figures captioned with their claims (id, source, statement, the
    rule's bound), the papers' own with what they regenerate; any other figure under "all papers"."""
    entries: dict[str, dict[str, str]] = {}
    for paper in paper_names(folder):
        claims = yaml.safe_load((Path(folder) / paper / "claims.yaml").read_text()) or []
        for name, members in groups(claims).items():
            text = " ".join(f"**{_rst(c['id'])}** ({_rst(c.get('source', ''))}): {_rst(c.get('statement', ''))} "
                            f"[{_rst(_bound(c))}]" for c in members)
            entries[name] = {"category": paper, "subcategory": "evidence per claim",
                             "caption": f"The evidence of {', '.join(c['id'] for c in members)}: the runs compared "
                                        f"(left) and measured against expected (right). {text}"}
    for f in GALLERY:
        entries[f.name] = {"category": f.paper, "subcategory": "the paper's figures and tables, regenerated",
                           "caption": f"{f.stands_for} regenerated: {f.shows}."}
    return entries


def _rst(text: object) -> str:
    """Plain text for reStructuredText: one line, its markup characters escaped."""
    return re.sub(r"([\\*`|_<>\[\]])", r"\\\1", " ".join(str(text).split()))


def _bound(c: dict) -> str:
    if c.get("rule") == "reported":
        return "reported, no bound"
    tol = c.get("tolerance") or 0
    return f"{c.get('rule')} {c.get('expected')}" + (f" +- {tol}" if tol else "")


def report_entry(name: str, entries: dict[str, dict[str, str]]) -> dict[str, str]:
    """A figure's report entry; a figure no paper claims (a generic one) goes under "all papers"."""
    return entries.get(name, {"category": "all papers", "subcategory": "generic figures",
                              "caption": f"Generic figure {name}: every experiment of the runs sheet."})


if __name__ == "__main__":
    print(markdown())
