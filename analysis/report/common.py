"""What every page of the report shares: value formatting, escaped HTML tables, the page frame."""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

ASSETS = ("style.css", "table.js")
HERE = Path(__file__).parent


def fmt(value: object) -> str:
    if value is None or (np.isscalar(value) and pd.isna(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def html_table(rows: pd.DataFrame, row_classes: list[str], html_columns: frozenset[str] = frozenset(),
               table_id: str = "") -> str:
    """An HTML table with a class per row (pandas' to_html cannot set one), in a box that scrolls
    sideways by itself, so a wide table never widens the page.

    Cells are escaped text, except those in html_columns, which the caller has
    already built from escaped parts.
    """
    head = "".join(f'<th class="{slug(c)}">{escape(str(c))}</th>' for c in rows.columns)
    body = []
    for row_class, row in zip(row_classes, rows.itertuples(index=False)):
        cells = "".join(
            f'<td class="{slug(c)}">{v if c in html_columns else escape(fmt(v))}</td>'
            for c, v in zip(rows.columns, row)
        )
        body.append(f'<tr class="{escape(row_class)}">{cells}</tr>')
    ident = f' id="{escape(table_id)}"' if table_id else ""
    return (f'<div class="scroll"><table{ident}>\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(body)
            + "\n</tbody>\n</table></div>")


def page(title: str, body: str, root: str = "", script: bool = False) -> str:
    """A whole page: `root` is the way back to the report folder ("" or "../"), for the stylesheet,
    the script and the navigation links."""
    nav = (f'<nav><a href="{root}index.html">Summary</a> <a href="{root}runs.html">Runs</a> '
           f'<a href="{root}claims.csv">claims.csv</a> <a href="{root}claims.md">claims.md</a></nav>')
    tag = f'\n<script src="{root}table.js"></script>' if script else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<link rel="stylesheet" href="{root}style.css">{tag}
</head>
<body>
{nav}
{body}
</body>
</html>
"""


def copy_assets(out_dir: Path) -> None:
    """The stylesheet and the table script beside the pages (no CDN: the folder works offline)."""
    for name in ASSETS:
        (Path(out_dir) / name).write_text((HERE / name).read_text())
