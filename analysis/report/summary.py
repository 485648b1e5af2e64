"""The verdict counts: the headline sentence, claims.md, and the summary figure (verdicts by paper and kind)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .common import fmt

VERDICTS = ["reproduced", "not reproduced", "inconclusive", "out of scope", "reported"]
KIND_ORDER = {"paper claim": "paper claims", "implementation check": "implementation checks",
              "predicted": "predicted by the performance model",
              "exploratory": "exploratory (settings chosen after seeing results; not counted)"}
# The summary figure's panel titles: short, so four panels fit side by side at 1400 px.
PANEL_TITLES = {"paper claim": "paper claims", "implementation check": "implementation checks",
                "predicted": "predicted (model)", "exploratory": "exploratory (not counted)"}
# One colour per verdict, the same on the pages (style.css) and in the summary figure.
COLOURS = {"reproduced": "#4c9a4c", "not reproduced": "#c84a4a", "inconclusive": "#e0a526",
           "out of scope": "#9a9a9a", "reported": "#5b86c2"}
OTHER_COLOUR = "#6b4c9a"


def _summary(verdicts: pd.Series) -> str:
    """'2 reproduced, 1 not reproduced, ...': the five verdicts first, then any other value."""
    counts = verdicts.value_counts()
    order = VERDICTS + sorted(set(counts.index) - set(VERDICTS))
    return ", ".join(f"{counts.get(v, 0)} {v}" for v in order)


def kinds(claims: pd.DataFrame) -> list[str]:
    """The kinds present, in the headline's order (paper claims always, first)."""
    present = set(claims["kind"].dropna()) if "kind" in claims else set()
    return ["paper claim"] + [k for k in list(KIND_ORDER)[1:] if k in present] + sorted(present - set(KIND_ORDER))


def headline(claims: pd.DataFrame) -> str:
    """The verdict counts of the paper claims (only these are reproductions of a paper), then those of
    the other kinds, each counted apart. Without a kind column (an older verdict table): all claims."""
    if "kind" not in claims or claims["kind"].isna().all():
        return _summary(claims["verdict"])
    parts = []
    for kind in list(KIND_ORDER) + sorted(set(claims["kind"].dropna()) - set(KIND_ORDER)):
        rows = claims[claims["kind"] == kind]
        if kind == "paper claim" or not rows.empty:
            parts.append(f"{KIND_ORDER.get(kind, kind)} ({len(rows)}): {_summary(rows['verdict'])}")
    return ". ".join(parts)


def markdown(claims: pd.DataFrame) -> str:
    def cell(value: object) -> str:
        # A pipe or a newline would break the table; a '<' would start raw HTML.
        return fmt(value).replace("|", r"\|").replace("\n", " ").replace("<", "&lt;")

    lines = [
        "# thinwire claims",
        "",
        f"Verdicts: {headline(claims)}.",
        "",
        "| " + " | ".join(claims.columns) + " |",
        "|" + "---|" * len(claims.columns),
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in claims.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def draw_summary(claims: pd.DataFrame, paper_of: pd.Series, path: Path) -> Path:
    """One horizontal stacked bar per paper, one panel per kind, segments by verdict with their counts:
    14 x (2.2 + 0.5 per paper) inches at 100 dpi, 1400 px wide, the front page's width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.DataFrame({"paper": paper_of.values, "verdict": claims["verdict"].values,
                          "kind": claims["kind"].fillna("paper claim").values if "kind" in claims
                          else "paper claim"})
    papers = sorted(frame["paper"].unique(), reverse=True)  # alphabetical from the top
    panels = kinds(claims)
    verdicts = VERDICTS + sorted(set(frame["verdict"]) - set(VERDICTS))
    fig, axes = plt.subplots(1, len(panels), figsize=(14, 2.2 + 0.5 * len(papers)), sharey=True, dpi=100,
                             squeeze=False, layout="constrained")
    for ax, kind in zip(axes[0], panels):
        counts = (frame[frame["kind"] == kind].groupby(["paper", "verdict"]).size().unstack(fill_value=0)
                  .reindex(index=papers, columns=verdicts, fill_value=0))
        left = pd.Series(0, index=papers)
        for verdict in verdicts:
            n = counts[verdict]
            if not n.any():
                continue
            bars = ax.barh(papers, n, left=left, color=COLOURS.get(verdict, OTHER_COLOUR), label=verdict,
                           edgecolor="white", linewidth=0.8)
            ax.bar_label(bars, labels=[str(int(v)) if v else "" for v in n], label_type="center",
                         color="white", fontsize=11, fontweight="bold")
            left = left + n
        ax.set_title(f"{PANEL_TITLES.get(kind, kind)} ({int(counts.to_numpy().sum())})", fontsize=13)
        ax.set_xlabel("claims", fontsize=11)
        ax.tick_params(labelsize=11)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.spines[["top", "right"]].set_visible(False)
    handles = {}
    for ax in axes[0]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    order = [v for v in verdicts if v in handles]
    fig.legend([handles[v] for v in order], order, loc="outside lower center", ncol=len(order), fontsize=11,
               frameon=False)
    fig.suptitle("Verdicts by paper and kind of check", fontsize=15)
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
