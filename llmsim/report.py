"""The capacity plan as a report: Markdown, and self-contained HTML (figures inlined)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from llmsim.plan import SLO, CandidatePlan, pareto, warnings
from llmsim.render import html_table, inline_png, markdown_table
from llmsim.sweep import seed_mean, seed_values


@dataclass(frozen=True)
class Question:
    """What was asked: the scenario, the target load, the SLOs and how many seeds."""

    scenario: str
    model: str
    rate: float
    slos: Sequence[SLO]
    seeds: int
    cost_model: str

    def sentence(self) -> str:
        slos = ", ".join(s.text for s in self.slos)
        return (
            f"The smallest, cheapest fleet serving {self.model} at {self.rate:g} req/s of the "
            f"'{self.scenario}' workload within {slos}, every one of {self.seeds} seeds passing."
        )


HEAD = (
    "candidate", "replicas", "GPUs", "$/hour", "$/M output tokens", "output tok/s per GPU",
    "tok/s per user", "Pareto", "per-replica estimate",
)  # fmt: skip


def rows(plans: Sequence[CandidatePlan], slos: Sequence[SLO]) -> list[list[str]]:
    out = []
    front = pareto(plans)
    for p in plans:
        if p.replicas is None:
            why = p.error or f"no fleet passes (estimate {p.estimate})"
            out.append([p.candidate.label, *("-" for _ in HEAD[1:-1]), why, *("-" for _ in slos)])
            continue
        cells = [
            p.candidate.label,
            str(p.replicas),
            f"{p.gpus} x {p.scenario.hardware}",
            f"{p.dollars_per_hour:,.2f}",
            f"{p.dollars_per_million_output:,.2f}",
            f"{p.tokens_per_gpu:,.0f}",
            f"{p.tokens_per_user:,.1f}",
            "yes" if p in front else "",
            f"{p.estimate} ({p.per_replica_rate:.2f} req/s each)",
        ]
        run = p.chosen
        assert run is not None
        for slo in slos:
            nums = seed_values(run.summaries, slo.metric)
            worst = max(nums) if slo.upper else min(nums)
            cells.append(f"{seed_mean(run.summaries, slo.metric):,.1f} (worst {worst:,.1f})")
        out.append(cells)
    return out


def recommendation(plans: Sequence[CandidatePlan]) -> list[str]:
    ok = [p for p in plans if p.replicas is not None]
    if not ok:
        return ["No candidate meets the SLOs at this load."]
    best = ok[0]
    lines = [
        f"Recommended: {best.candidate.label}, {best.replicas} replicas ({best.gpus} GPUs), "
        f"${best.dollars_per_hour:,.2f}/hour, ${best.dollars_per_million_output:,.2f} per "
        "million output tokens."
    ]
    if len(ok) > 1:
        second = ok[1]
        extra = second.dollars_per_hour / best.dollars_per_hour - 1
        lines.append(
            f"Runner-up: {second.candidate.label}, {second.replicas} replicas "
            f"({second.gpus} GPUs), ${second.dollars_per_hour:,.2f}/hour ({extra:+.0%})."
        )
    return lines


def _use(summary: dict[str, float], slo: SLO) -> float:
    """How much of an SLO a run uses: value / limit (limit / value for a floor)."""
    v = summary.get(slo.metric)
    if v is None or math.isnan(v):
        return math.inf
    return v / slo.limit if slo.upper else slo.limit / max(v, 1e-12)


def figure(plans: Sequence[CandidatePlan], slos: Sequence[SLO]) -> Figure:
    """Per candidate, the worst seed's use of its tightest SLO (value / limit; 1 is the limit)
    at every fleet size the search simulated, the chosen size circled."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, p in enumerate(plans):
        sizes = sorted(p.fleets)
        if not sizes:
            continue
        use = [
            min(10.0, max(_use(s, slo) for s in p.fleets[n].summaries for slo in slos))
            for n in sizes
        ]
        ax.plot(sizes, use, "o-", color=f"C{i}", label=p.candidate.label)
        if p.replicas is not None:
            ax.plot([p.replicas], [use[sizes.index(p.replicas)]], "o", ms=12, mfc="none",
                    color=f"C{i}")  # fmt: skip
    ax.axhline(1.0, color="grey", ls="--", lw=0.8, label="SLO limit")
    ax.set_xlabel("replicas")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("worst seed: value / SLO limit")
    ax.set_yscale("log")
    ax.set_title("Fleet sizes simulated (capped at 10x the limit)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def frontier(plans: Sequence[CandidatePlan]) -> Figure:
    """Output tokens/s per GPU against per-user speed at each candidate's fleet, the Pareto
    frontier joined."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, p in enumerate(plans):
        if p.replicas is not None:
            label = p.candidate.label
            ax.plot(p.tokens_per_user, p.tokens_per_gpu, "o", color=f"C{i}", label=label)
    front = sorted(pareto(plans), key=lambda p: p.tokens_per_user)
    if len(front) > 1:
        ax.plot([p.tokens_per_user for p in front], [p.tokens_per_gpu for p in front], "k--",
                lw=0.8, label="Pareto frontier")  # fmt: skip
    ax.set_xlabel("per-user speed (output tok/s per request)")
    ax.set_ylabel("output tok/s per GPU")
    ax.set_title("Throughput per GPU against per-user speed", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def assumptions(plans: Sequence[CandidatePlan], q: Question) -> list[str]:
    out = [
        f"Cost model: {q.cost_model} (see `llmsim fidelity` for its measured error).",
        "Replicas behind the scenario's router (round robin); each fleet size simulated "
        f"under {q.seeds} seeds; a fleet passes when every seed meets every SLO with no "
        "rejected request and serves at least 90 % of the offered load.",
        "Prices: the hardware profiles' on-demand price per GPU-hour unless overridden.",
    ]
    for p in plans:
        out += [f"{p.candidate.label}: {w}" for w in warnings(p, q.slos)]
    return out


def to_markdown(plans: Sequence[CandidatePlan], q: Question) -> str:
    slos = list(q.slos)
    head = [*HEAD, *(s.metric for s in slos)]
    lines = ["# Capacity plan", "", q.sentence(), "", *recommendation(plans), ""]
    lines += markdown_table(head, rows(plans, slos))
    lines += ["", "## Assumptions and warnings", ""]
    lines += [f"- {a}" for a in assumptions(plans, q)]
    return "\n".join(lines) + "\n"


def to_html(plans: Sequence[CandidatePlan], q: Question) -> str:
    """One file, no external resources: the table, the figure as an inline PNG."""
    slos = list(q.slos)
    e = html.escape
    table = html_table([*HEAD, *(s.metric for s in slos)], rows(plans, slos))
    recs = "".join(f"<p><strong>{e(line)}</strong></p>" for line in recommendation(plans))
    notes = "".join(f"<li>{e(a)}</li>" for a in assumptions(plans, q))
    img = inline_png(figure(plans, slos), "fleet sizes simulated")
    front = inline_png(frontier(plans), "Pareto frontier")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Capacity plan: {e(q.scenario)}</title>
<style>body{{font-family:sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}}
td:first-child,th:first-child{{text-align:left}}</style></head>
<body><h1>Capacity plan</h1><p>{e(q.sentence())}</p>{recs}
{table}
<h2>The search</h2>{img}
<h2>Throughput per GPU and per-user speed</h2>
{front}
<h2>Assumptions and warnings</h2><ul>{notes}</ul></body></html>
"""
