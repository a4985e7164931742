"""The recommendations table as a report: Markdown, and self-contained HTML (figures inlined)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from llmsim.plots import label
from llmsim.recommend import DETAIL_HEAD, TABLE_HEAD, WorkloadResult, detail_rows, table_rows
from llmsim.render import html_table, inline_png, markdown_table, short

INTRO = (
    "The field note's practical recommendations, each workload simulated under every option "
    "listed; the option that meets the SLOs under every seed (no rejected request, no "
    "overload) with the best objective is the simulation's recommendation."
)


def _question(r: WorkloadResult, seeds: int) -> str:
    slos = ", ".join(s.text for s in r.slos) or "no SLO"
    return (
        f"{r.scenario.description or r.scenario.name}. Objective: {r.spec.objective} within "
        f"{slos}, {seeds} seeds."
    )


def to_markdown(results: Sequence[WorkloadResult]) -> str:
    lines = ["# The field note's recommendations, simulated", "", INTRO, ""]
    lines += markdown_table(TABLE_HEAD, table_rows(results))
    for r in results:
        lines += ["", f"## {r.spec.name}", "", _question(r, len(r.best.summaries)), ""]
        lines += markdown_table(DETAIL_HEAD, detail_rows(r))
    return "\n".join(lines) + "\n"


def figure(r: WorkloadResult) -> Figure:
    """The objective of every option, best first; options that miss the SLOs hatched, the
    note's own pick outlined."""
    ranked = r.ranked()
    fig, ax = plt.subplots(figsize=(7.0, 0.45 * len(ranked) + 1.4))
    values = [r.value(o) for o in ranked]
    y = list(range(len(ranked)))[::-1]
    for yi, o, v in zip(y, ranked, values, strict=True):
        note = o is r.note_option
        ax.barh(yi, 0 if math.isnan(v) else v, color="tab:blue" if o.qualifies else "lightgrey",
                hatch="" if o.qualifies else "//", edgecolor="black" if note else "none",
                linewidth=1.5 if note else 0)  # fmt: skip
        text = short(v) + ("" if o.qualifies else " (misses SLOs)")
        ax.text(0 if math.isnan(v) else v, yi, " " + text, va="center", fontsize=8)
    ax.set_yticks(y, [o.spec.label + (" [note]" if o is r.note_option else "") for o in ranked],
                  fontsize=8)  # fmt: skip
    metric = r.metric
    ax.set_xlabel(label(metric) + (" (lower is better)" if not r.maximise else ""))
    if not r.maximise and max((v for v in values if v > 0), default=1) > 100 * min(
        (v for v in values if v > 0), default=1
    ):
        ax.set_xscale("log")
    ax.set_xlim(right=ax.get_xlim()[1] * (60 if ax.get_xscale() == "log" else 1.35))
    ax.set_title(f"{r.spec.name}: {r.scenario.model} on {r.scenario.hardware}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def to_html(results: Sequence[WorkloadResult]) -> str:
    """One file, no external resources: the table, then per workload its options and figure."""
    e = html.escape
    parts = [html_table(TABLE_HEAD, table_rows(results))]
    for r in results:
        img = inline_png(figure(r), f"{r.spec.name}: objective per option")
        parts.append(
            f"<h2>{e(r.spec.name)}</h2><p>{e(_question(r, len(r.best.summaries)))}</p>"
            + html_table(DETAIL_HEAD, detail_rows(r))
            + f"<p>{img}</p>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>The field note's recommendations, simulated</title>
<style>body{{font-family:sans-serif;max-width:80rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse;margin:1rem 0}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;
text-align:left;vertical-align:top}}</style></head>
<body><h1>The field note's recommendations, simulated</h1><p>{e(INTRO)}</p>
{"".join(parts)}</body></html>
"""
