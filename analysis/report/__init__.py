"""Write the report: the claim verdicts as CSV and Markdown, and a static HTML site.

`write_report(table, verdicts, figures, out_dir, ...)` writes into out_dir:

    claims.csv, claims.md   every verdict (summary.py: the headline counts paper claims apart)
    index.html              the front page: the headline, summary.png (verdicts by paper and kind), the
                            papers, the provenance (provenance.py), the validation table, the figures
    papers/<paper>.html     one page per paper, its claims as cards (papers.py)
    runs.html               the runs, sortable and filterable by table.js, each linking its files (runs.py)
    style.css, table.js     the one stylesheet and the one script: no CDN, the folder works offline
    provenance.json         the provenance shown on the front page

Figures are linked as figures/NAME.png, relative to out_dir, so the folder can be copied or served as it
is. All text from the tables is passed through html.escape: claim statements are quoted from papers and
may hold '<' or '&'.
"""

from .pages import CLAIM_FIRST, CLAIM_PAGE, write_report
from .papers import claim_papers
from .summary import KIND_ORDER, VERDICTS, headline

__all__ = ["CLAIM_FIRST", "CLAIM_PAGE", "KIND_ORDER", "VERDICTS", "claim_papers", "headline", "write_report"]
