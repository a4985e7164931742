"""``llmsim plan``: the cheapest fleet that meets the SLOs at a target load; ``llmsim
recommend``: the field note's recommendations table from simulation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from llmsim.atomic import atomic_write_text
from llmsim.cli.common import (
    JobsOpt,
    ScenarioArg,
    SetOpt,
    err_console,
    fail,
    load,
    out_console,
    warn,
)
from llmsim.errors import ConfigError, LlmsimError

if TYPE_CHECKING:  # the simulator and fitting code load when a command runs
    from llmsim.executors import Executor
    from llmsim.plan import (
        SLO,
        Candidate,
    )
    from llmsim.scenario import Scenario


def plan(
    scenario: ScenarioArg,
    slos: Annotated[
        list[str],
        typer.Option(
            "--slo",
            help="An SLO: ttft:p99<2000 (ms; ttft, tpot, itl, e2e with mean, p50, p90, p99), "
            "goodput>18, slo_attainment>=0.99 or any summary key. Repeatable.",
            show_default=False,
        ),
    ],
    rate: Annotated[
        float | None,
        typer.Option("--rate", help="Target load, requests per second (or give --replicas)."),
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option(
            "--replicas",
            help="The reverse question: the highest load this many replicas of each "
            "candidate sustain within the SLOs.",
        ),
    ] = None,
    candidates: Annotated[
        list[str] | None,
        typer.Option(
            "--candidate",
            "-c",
            help="A deployment as overrides: hardware=H100-SXM,tensor_parallel=4. "
            "Repeatable; default: the scenario as it is.",
        ),
    ] = None,
    prices: Annotated[
        list[str] | None,
        typer.Option("--price", help="GPU price per hour, USD: H100-SXM=2.5. Repeatable."),
    ] = None,
    seeds: Annotated[int, typer.Option("--seeds", "-n", help="Seeds per fleet size.")] = 3,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder for plan.md, plan.html (default: plans/<name>)."),
    ] = None,
    jobs: JobsOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Size each candidate's fleet by simulating it at the target load, rank them by cost,
    and write a Markdown and a self-contained HTML report."""
    from llmsim.executors import make_executor
    from llmsim.plan import Candidate, parse_candidate, parse_slo, plan_capacity, warnings
    from llmsim.report import HEAD, Question, recommendation, rows, to_html, to_markdown

    try:
        sc = load(scenario, overrides)
        parsed = [parse_slo(s) for s in slos]
        cands = [parse_candidate(c) for c in candidates] if candidates else []
        cands = cands or [Candidate(f"{sc.tensor_parallel}x {sc.hardware}", {})]
        price_map = {}
        for item in prices or []:
            name, _, raw = item.partition("=")
            try:
                price_map[name.strip()] = float(raw)
            except ValueError:
                raise ConfigError(
                    f"'{item}' must be GPU=USD per hour, e.g. H100-SXM=2.5", field="--price"
                ) from None
        pool = make_executor("process", jobs)
        if (rate is None) == (replicas is None):
            raise ConfigError(
                "give --rate (the fleet for a load) or --replicas (the load for a fleet)",
                field="--rate",
            )
        if replicas is not None:
            _reverse(sc, cands, parsed, replicas, seeds, price_map, pool)
            return
        assert rate is not None
        plans = plan_capacity(
            sc, cands, parsed, rate, seeds=seeds, prices=price_map, executor=pool,
            progress=_note,
        )  # fmt: skip
    except LlmsimError as exc:
        raise fail(exc) from None
    assert rate is not None
    cost = sc.engine.cost.kind
    q = Question(sc.name, sc.model, rate, parsed, seeds, cost)
    t = Table(title="Capacity plan", title_justify="left")
    for h in [*HEAD, *(s.metric for s in parsed)]:
        t.add_column(h)
    for r in rows(plans, parsed):
        t.add_row(*(Text(cell) for cell in r))
    out_console.print(t)
    for line in recommendation(plans):
        out_console.print(line, highlight=False)
    for p in plans:
        for w in warnings(p, parsed):
            warn(f"{p.candidate.label}: {w}")
    folder = out if out is not None else Path("plans") / sc.name
    atomic_write_text(folder / "plan.md", to_markdown(plans, q))
    atomic_write_text(folder / "plan.html", to_html(plans, q))
    out_console.print(f"wrote plan.md, plan.html to {folder}/")


def _note(text: str) -> None:
    """A line of progress on stderr, dimmed."""
    from rich.markup import escape

    err_console.print(f"[dim]{escape(text)}[/]", highlight=False)


def _reverse(
    sc: Scenario,
    cands: list[Candidate],
    slos: list[SLO],
    replicas: int,
    seeds: int,
    prices: dict[str, float],
    pool: Executor,
) -> None:
    from llmsim.plan import prepare, sustained_rate
    from llmsim.sweep import seeds_for

    if replicas < 1:
        raise ConfigError(f"--replicas must be at least 1 (got {replicas})", field="--replicas")
    t = Table(title=f"Load {replicas} replicas sustain within the SLOs", title_justify="left")
    for h in ("candidate", "GPUs", "$/hour", "req/s (all seeds pass)"):
        t.add_column(h)
    for cand in cands:
        rate = getattr(sc.workload.arrival, "rate", 1.0)
        p = prepare(sc, cand, rate, prices)
        _note(f"{cand.label}: bisection on the rate")
        seed_list = seeds_for(p.scenario, seeds)
        r = sustained_rate(p.scenario, slos, pool, replicas=replicas, seeds=seed_list)
        gpus = replicas * p.gpus_per_replica
        t.add_row(Text(cand.label), f"{gpus} x {p.scenario.hardware}",
                  f"{gpus * p.price_per_gpu_hour:,.2f}", f"{r:,.2f}")  # fmt: skip
    out_console.print(t)


def recommend(
    manifest: Annotated[
        Path,
        typer.Argument(
            help="Recommendations manifest: workloads, their SLOs and the options to compare "
            "(scenarios/recommendations/recommendations.yaml).",
            show_default=False,
        ),
    ],
    seeds: Annotated[
        int | None, typer.Option("--seeds", "-n", help="Seeds per option (default: the file's).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder for recommendations.md and .html (default: plans/).",
        ),
    ] = None,
    jobs: JobsOpt = None,
) -> None:
    """The field note's recommendations table from simulation: per workload, the option that
    meets its SLOs with the best objective, and where and why it differs from the note."""
    from llmsim.executors import make_executor
    from llmsim.recommend import TABLE_HEAD, table_rows
    from llmsim.recommend import recommend as run_recommend
    from llmsim.recommend_report import to_html as rec_html
    from llmsim.recommend_report import to_markdown as rec_markdown

    try:
        results = run_recommend(
            manifest, seeds=seeds, executor=make_executor("process", jobs),
            progress=_note,
        )  # fmt: skip
    except LlmsimError as exc:
        raise fail(exc) from None
    t = Table(title="The field note's recommendations, simulated", title_justify="left")
    for h in TABLE_HEAD[:-1]:
        t.add_column(h)
    table = table_rows(results)
    for r in table:
        t.add_row(*r[:-1])
    out_console.print(t)
    for r in table:
        if r[-1]:
            out_console.print(f"{r[0]}: {r[-1]}", highlight=False)
    folder = out if out is not None else Path("plans")
    atomic_write_text(folder / "recommendations.md", rec_markdown(results))
    atomic_write_text(folder / "recommendations.html", rec_html(results))
    out_console.print(f"wrote recommendations.md, recommendations.html to {folder}/")
