"""One page per paper (papers/<paper>.html): its claims as cards, each with the verdict, the measured value
against the expected one with its uncertainty, the power and tuning facts, its one figure, and the setup
and evidence folded away."""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

import pandas as pd

from .common import fmt, page, slug
from .summary import KIND_ORDER, headline, kinds

# The standard error of the measured value, under the first of these names the verdict table has.
SEM_COLUMNS = ("sem", "standard_error", "se")
OTHER = "other"


def claim_papers(claims_dir: Path | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """{claim id: paper} from the claim files (<paper>/claims.yaml: the folder's name; a catalog's
    <name>.yaml: its stem) and {paper: title}, the first line of the file's leading comment."""
    from thinwire.analysis.claims import claim_files, read_claims

    ids, titles = {}, {}
    for path in claim_files(claims_dir):
        paper = path.parent.name if path.name == "claims.yaml" else path.stem
        for claim in read_claims(path):
            ids[str(claim["id"])] = paper
        comment = []
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                break
            comment.append(line.lstrip("#").strip())
        if comment:
            # "# Deep Gradient Compression (../shared/papers/dgc.md). The ..." -> its first sentence, cut short
            first = re.split(r"(?<=[^.]\.)\s+(?=[A-Z])", " ".join(comment), maxsplit=1)[0].rstrip(".")
            titles[paper] = first if len(first) <= 160 else first[:159].rsplit(" ", 1)[0] + " …"
    return ids, titles


def assign(claims: pd.DataFrame, papers: dict[str, str] | None) -> pd.Series:
    """Each claim's paper: from `papers` (claim_papers), else its source's first part ("Paper A, Table 2"
    -> paper-a), else 'other'. Every claim gets exactly one."""
    papers = papers or {}

    def one(row: pd.Series) -> str:
        if str(row["id"]) in papers:
            return papers[str(row["id"])]
        return slug(fmt(row.get("source", "")).split(",")[0]) or OTHER

    return claims.apply(one, axis=1) if len(claims) else pd.Series([], dtype=str)


def claim_anchor(claim_id: object) -> str:
    return f"claim-{slug(claim_id) or 'unnamed'}"


def _uncertainty(row: pd.Series) -> tuple[str, str]:
    """(measured with its standard error, how the uncertainty was obtained)."""
    measured = fmt(row.get("measured"))
    if not measured:
        return "", ""
    if fmt(row.get("value_from")) == "model":  # no seeds to spread over: the model's error is in the evidence
        return measured, "none sampled: the performance model's output; its error is in the evidence"
    for column in SEM_COLUMNS:
        if column in row.index and fmt(row[column]):
            sem = float(row[column])
            if sem == float("inf"):
                return f"{measured} ± ∞", "one seed or a non-finite value: the spread is unknown"
            return f"{measured} ± {fmt(sem)}", "± one standard error over seeds (0: exact by construction, or the worst case over every seed)"
    return measured, "no standard error in the verdict table: the reason and the evidence say how it was decided"


def figure_html(name: object, figure_src: dict[str, str], root: str) -> str:
    name = fmt(name).strip()
    if name in figure_src:
        src = escape(root + figure_src[name])
        return (f'<figure><a href="{src}"><img src="{src}" alt="figure {escape(name)}"></a>'
                f"<figcaption>{escape(name)}</figcaption></figure>")
    # A claim may name a figure that was skipped for lack of data, or none yet; say so, never a broken image.
    text = (f"Figure {escape(name)} was not drawn: these results have no rows for it." if name
            else "No figure for this claim.")
    return f'<div class="no-figure">{text}</div>'


def _dl(items: list[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items if v) + "</dl>"


def card(row: pd.Series, figure_src: dict[str, str], root: str = "../") -> str:
    verdict = fmt(row.get("verdict"))
    kind = fmt(row.get("kind")) or "paper claim"
    paper_claim = fmt(row.get("paper_claim"))
    measured, how = _uncertainty(row)
    why, power = fmt(row.get("reason")), fmt(row.get("power"))
    if why and why == power:  # an under-powered verdict's reason is its power text: said once, under power
        why = "the runs are below the claim's power (see power)"
    value = "model value" if fmt(row.get("value_from")) == "model" else "measured"
    facts = [(value, measured), ("uncertainty", how), ("expected", fmt(row.get("expected"))),
             ("why", why), ("power", power),
             ("tuning", fmt(row.get("tuning"))), ("ran on", fmt(row.get("ran_on")))]
    folded = [("setup", fmt(row.get("setup"))), ("evidence", fmt(row.get("evidence"))),
              ("runs", fmt(row.get("config"))), ("source", fmt(row.get("source")))]
    label = f"{kind} {paper_claim}" if paper_claim and kind == "paper claim" else kind
    details = (f"<details><summary>Setup and evidence</summary>{_dl(folded)}</details>"
               if any(v for _, v in folded) else "")
    return f"""<article class="claim verdict-{slug(verdict)}" id="{claim_anchor(row['id'])}">
<header><h3>{escape(fmt(row['id']))}</h3><span class="badge">{escape(verdict)}</span>
<span class="kind">{escape(label)}</span></header>
<p class="statement">{escape(fmt(row.get('statement')))}</p>
<p class="source">{escape(fmt(row.get('source')))}</p>
<div class="card-body"><div>{_dl(facts)}{details}</div>
{figure_html(row.get('figure'), figure_src, root)}</div>
</article>"""


def paper_page(paper: str, title: str, claims: pd.DataFrame, figure_src: dict[str, str]) -> str:
    sections = []
    for kind in kinds(claims):
        rows = claims[claims["kind"].fillna("paper claim") == kind] if "kind" in claims else claims
        if rows.empty:
            continue
        cards = "\n".join(card(row, figure_src) for _, row in rows.iterrows())
        sections.append(f"<h2>{escape(KIND_ORDER.get(kind, kind).capitalize())} ({len(rows)})</h2>\n{cards}")
    subtitle = f"<p>{escape(title)}</p>" if title and title != paper else ""
    body = f"""<h1>{escape(paper)}</h1>
{subtitle}
<p class="headline">{escape(headline(claims))}.</p>
{chr(10).join(sections)}"""
    return page(f"thinwire: {paper}", body, root="../")
