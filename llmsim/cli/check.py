"""``llmsim check``: fail CI when a change makes serving significantly worse."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from llmsim.atomic import atomic_write_text
from llmsim.cli.common import JobsOpt, SetOpt, err_console, fail, load, out_console
from llmsim.errors import ConfigError, LlmsimError

if TYPE_CHECKING:  # the simulator and fitting code load when a command runs
    from llmsim.check import (
        Baseline,
        CheckReport,
    )
    from llmsim.executors import Executor
    from llmsim.scenario import Scenario

SHORT = {
    "regression": "[bold red]REGRESSION[/]",
    "within tolerance": "[yellow]within tol.[/]",
    "no significant change": "ok",
    "improvement": "[green]better[/]",
    "no data": "[dim]no data[/]",
}


def check(
    scenarios: Annotated[
        list[Path],
        typer.Argument(help="Scenario YAML files (the baseline settings).", show_default=False),
    ],
    candidate: Annotated[
        Path | None,
        typer.Option("--candidate", help="A second scenario file: the candidate (one SCENARIO)."),
    ] = None,
    candidate_policy: Annotated[
        str | None,
        typer.Option(
            "--candidate-policy",
            help="module:Class of a policy: the candidate is each scenario with this policy "
            "(kind custom), its other policy settings kept.",
        ),
    ] = None,
    candidate_set: Annotated[
        list[str] | None,
        typer.Option("--candidate-set", help="Override a field of the candidate only. Repeatable."),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline",
            help="Baseline JSON: compare the scenarios as they run now with the values stored "
            "there (written by --update-baseline).",
        ),
    ] = None,
    update_baseline: Annotated[
        bool,
        typer.Option("--update-baseline", help="Run the scenarios and rewrite --baseline."),
    ] = False,
    seeds: Annotated[int, typer.Option("--seeds", "-n", help="Paired seeds per scenario.")] = 5,
    metrics: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            "-m",
            help="Summary metric to check (default: p99 TTFT, TPOT and E2E, request "
            "throughput, goodput). Repeatable.",
        ),
    ] = None,
    tolerances: Annotated[
        list[str] | None,
        typer.Option(
            "--tolerance",
            "-t",
            help="Relative change allowed before a significant one fails: 0.05 (all metrics) "
            "or metric=0.1. Repeatable. Default 0.05.",
        ),
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="Write the report as Markdown here.")
    ] = None,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Write the verdicts as JUnit XML here.")
    ] = None,
    jobs: JobsOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Compare a candidate with a baseline over paired seeds; exit 1 on a significant
    regression beyond the tolerance, 0 otherwise, 2 on bad input."""
    from llmsim.check import DEFAULT_METRICS, check_scenarios, parse_tolerances, read_baseline
    from llmsim.check_report import to_junit, to_markdown
    from llmsim.executors import make_executor

    try:
        bases = [load(p, overrides) for p in scenarios]
        changes = [candidate is not None, candidate_policy is not None, bool(candidate_set)]
        if candidate is not None and len(scenarios) != 1:
            raise ConfigError(
                f"--candidate compares two files: give one SCENARIO (got {len(scenarios)})",
                field="--candidate",
            )
        if update_baseline and baseline is None:
            raise ConfigError("--update-baseline needs --baseline FILE", field="--baseline")
        if update_baseline and any(changes):
            raise ConfigError(
                "--update-baseline records the scenarios as they are: drop --candidate, "
                "--candidate-policy and --candidate-set",
                field="--update-baseline",
            )
        if baseline is None and not any(changes):
            raise ConfigError(
                "nothing to compare: give --candidate FILE, --candidate-policy module:Class, "
                "--candidate-set or --baseline FILE",
                field="--candidate",
            )
        default_tol, per_tol = parse_tolerances(tolerances or [], 0.05)
        pool = make_executor("process", jobs)
        if update_baseline:
            assert baseline is not None
            _update(baseline, bases, seeds, pool)
            return
        cands = [
            _candidate(sc, candidate, candidate_policy, candidate_set, overrides) for sc in bases
        ]
        pairs: list[tuple[Baseline, Scenario]] = []
        if baseline is not None:
            stored = read_baseline(baseline)
            for sc, cand in zip(bases, cands, strict=True):
                pairs.append((_stored(stored, sc, baseline, seeds), cand))
        else:
            pairs = list(zip(bases, cands, strict=True))
        report = check_scenarios(
            pairs,
            seeds,
            metrics=metrics or DEFAULT_METRICS,
            tolerance=default_tol,
            tolerances=per_tol,
            executor=pool,
            strict=bool(metrics),
        )
    except LlmsimError as exc:
        raise fail(exc) from None
    _print(report)
    if markdown is not None:
        atomic_write_text(markdown, to_markdown(report))
    if junit is not None:
        atomic_write_text(junit, to_junit(report))
    if not report.passed:
        raise typer.Exit(code=1)


def _candidate(
    sc: Scenario,
    file: Path | None,
    policy: str | None,
    sets: list[str] | None,
    overrides: list[str] | None,
) -> Scenario:
    from llmsim.check import with_policy

    cand = load(file, overrides) if file is not None else sc
    if policy is not None:
        cand = with_policy(cand, policy)
    return cand.with_overrides(sets) if sets else cand


def _stored(
    stored: dict[str, dict[str, object]],
    sc: Scenario,
    path: Path,
    n: int,
) -> dict[str, list[float]]:
    from llmsim.run_cache import scenario_digest
    from llmsim.sweep import seeds_for

    entry = stored.get(sc.name)
    if entry is None:
        raise ConfigError(
            f"no baseline for scenario '{sc.name}'; valid: {', '.join(stored) or 'none'} "
            "(add it with --update-baseline)",
            source=str(path),
            field="scenarios",
        )
    if entry.get("digest") != scenario_digest(sc, seed=False):
        raise ConfigError(
            f"scenario '{sc.name}' changed since the baseline was written (its settings, not "
            "the code, differ); rewrite it with --update-baseline",
            source=str(path),
            field=f"scenarios.{sc.name}.digest",
        )
    seeds = seeds_for(sc, n)
    if entry["seeds"] != seeds:
        raise ConfigError(
            f"the baseline of '{sc.name}' ran seeds {entry['seeds']}, this check {seeds} "
            f"(--seeds {n}, from the scenario's seed); use the same or --update-baseline",
            source=str(path),
            field=f"scenarios.{sc.name}.seeds",
        )
    return entry["metrics"]  # type: ignore[return-value]


def _update(path: Path, bases: list[Scenario], n: int, pool: Executor) -> None:
    from llmsim.check import per_metric, write_baseline
    from llmsim.sweep import run_seeds, seeds_for

    runs = {}
    for sc in bases:
        seeds = seeds_for(sc, n)
        runs[sc.name] = (sc, seeds, per_metric(run_seeds(sc, seeds, pool)))
    write_baseline(path, runs)
    out_console.print(f"wrote the baseline of {', '.join(runs)} ({n} seeds each) to {path}")


def _print(report: CheckReport) -> None:
    from llmsim.check_report import headline, mean, method

    t = Table(title="llmsim check", title_justify="left")
    several = len({c.scenario for c in report.checks}) > 1
    if several:
        t.add_column("scenario")
    t.add_column("metric")
    t.add_column("base", justify="right")
    t.add_column("cand.", justify="right")
    t.add_column("change [CI]")
    t.add_column("tol.", justify="right")
    t.add_column("verdict")
    for c in report.checks:
        change = c.counts() if c.failures else c.describe()
        tol = "+0" if c.failures else f"{c.tolerance:.0%}"
        cells = [c.metric, mean(c.baseline), mean(c.candidate), change, tol, SHORT[c.verdict]]
        t.add_row(*([c.scenario] if several else []), *cells)
    out_console.print(t)
    out_console.print(method(report), highlight=False)
    line = headline(report)
    (err_console if not report.passed else out_console).print(
        f"[bold {'red' if not report.passed else 'green'}]{line}[/]", highlight=False
    )
