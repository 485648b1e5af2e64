"""The papers' own figures and tables that thinwire regenerates from results: what each shows, the paper's
table or figure it stands for, and whether it is measured or predicted. The README's table of them is
`markdown()`'s output (tests/test_figures.py holds the two equal), and the Snakemake report's captions
(workflow/report/) read `CAPTIONS`.

    python -m thinwire.analysis.gallery      # print the README table
"""

from __future__ import annotations

import dataclasses


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


CAPTIONS = {f.name: f"{f.paper}, {f.stands_for}: {f.shows}." for f in GALLERY}


if __name__ == "__main__":
    print(markdown())
