"""``llmsim sweep``: a grid of runs of one scenario, in parallel, cached, tabled and plotted."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from llmsim.cli.common import ScenarioArg, SetOpt, err_console, fail, load, out_console
from llmsim.errors import ConfigError, LlmsimError

if TYPE_CHECKING:  # the simulator and fitting code load when a command runs
    from llmsim.executors import ExecutorKind
    from llmsim.sweep import PointOutcome, SweepResult

SHOWN = {
    "request_throughput": "req/s",
    "p99_ttft_ms": "TTFT p99 ms",
    "p99_tpot_ms": "TPOT p99 ms",
    "p99_e2el_ms": "E2E p99 ms",
    "goodput": "goodput req/s",
}


def sweep(
    scenario: ScenarioArg,
    vary: Annotated[
        list[str],
        typer.Option(
            "--vary",
            "-v",
            help="A field and its values: path=start:stop:num (evenly spaced, ends included) "
            "or path=a,b,c; the same dotted paths as --set. Repeat for a product.",
            show_default=False,
        ),
    ],
    overrides: SetOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder for sweep.parquet, sweep.csv, the plots and points/ (the cache of "
            "finished points); default: sweeps/<scenario name>.",
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", help="Points run at once; default: the CPUs available."),
    ] = None,
    executor: Annotated[
        str, typer.Option("--executor", help="process (a local pool), local (this process), ray.")
    ] = "process",
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Ray cluster to use (ray://host:10001, auto); default: start a local one.",
        ),
    ] = None,
    percentiles: Annotated[
        list[str] | None,
        typer.Option(
            "--percentile", "-p", help="Percentiles drawn: mean, p50, p90, p99. Repeatable."
        ),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Simulate every point again, ignoring the cache.")
    ] = False,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Draw the figures.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress.")] = False,
) -> None:
    """Run a scenario over a grid of --vary values; write a table with a row per point and
    the latency/throughput figures. Finished points are cached: running the same command
    again (after an interruption, or with more values) simulates only what is missing.
    Exits 1 when a point failed (its row says why), 2 on bad input."""
    from llmsim.cli.common import progress_bar
    from llmsim.executors import make_executor
    from llmsim.grid import parse_axes
    from llmsim.sweep import run_sweep
    from llmsim.sweep_plots import check_percentiles, save_plots

    if executor not in ("process", "local", "ray"):
        raise fail(
            ConfigError(
                f"unknown executor '{executor}'; valid: process, local, ray", field="--executor"
            )
        )
    try:
        sc = load(scenario, overrides)
        axes = parse_axes(vary)
        pcts = check_percentiles(percentiles or ["p50", "p99"])
        pool = make_executor(_kind(executor), jobs, address)
    except LlmsimError as exc:
        raise fail(exc) from None
    folder = out if out is not None else Path("sweeps") / sc.name
    show = not quiet
    live = show and sys.stderr.isatty()
    try:
        counts = "{task.completed}/{task.total} points, eta {task.fields[eta]}"
        with progress_bar(counts, disable=not live) as bar:
            task = bar.add_task(f"sweeping {sc.name}", total=None, eta="-")

            def progress(done: int, total: int, eta: float | None, o: PointOutcome) -> None:
                bar.update(task, completed=done, total=total, eta=_eta(eta))
                if o.error is not None:
                    err_console.print(f"[red]failed:[/] {o.describe()}: {o.error}", highlight=False)
                elif show and not live:
                    how = "cached" if o.cached else "done"
                    err_console.print(
                        f"[{done}/{total}] {o.describe()} {how}, eta {_eta(eta)}", highlight=False
                    )

            result = run_sweep(
                sc,
                axes,
                cache=folder / "points",
                executor=pool,
                progress=progress,
                reuse=not fresh,
            )
    except LlmsimError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: the finished points are kept in {folder / 'points'}/; run the same "
            "command again to resume"
        )
        raise typer.Exit(code=130) from None
    finally:
        pool.close()
    written = list(result.save(folder).values())
    if plots:
        written += save_plots(result.table, axes, folder, percentiles=pcts, name=sc.name)
    _print(result)
    out_console.print(f"wrote {', '.join(p.name for p in written)} to {folder}/")
    if result.failures:
        raise typer.Exit(code=1)


def _kind(name: str) -> ExecutorKind:
    return "ray" if name == "ray" else "local" if name == "local" else "process"


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _print(result: SweepResult) -> None:
    from llmsim.sweep_plots import split_axes

    t = result.table
    x, others = split_axes(result.axes)
    paths = [p for p in (x, *others) if p is not None]
    shown = [m for m in SHOWN if m in t]
    table = Table(title="Sweep", title_justify="left")
    for p in paths:
        table.add_column(p.split(".")[-1], justify="right")
    for m in shown:
        table.add_column(SHOWN[m], justify="right")
    table.add_column("saturated")
    for _, row in t.iterrows():
        cells = [str(row[p]) for p in paths]
        if row["status"] != "ok":
            table.add_row(*cells, *("-" for _ in shown), "failed")
            continue
        cells += [f"{row[m]:,.2f}" for m in shown]
        table.add_row(*cells, "yes" if row["saturated"] else "")
    out_console.print(table)
    n = len(result.outcomes)
    cached = sum(1 for o in result.outcomes if o.cached)
    out_console.print(
        f"{n} points: {result.computed} simulated, {cached} from the cache, "
        f"{len(result.failures)} failed"
    )
