"""``llmsim run`` and ``llmsim validate``: one scenario, simulated or checked."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from llmsim.cli.common import (
    ScenarioArg,
    SetOpt,
    all_written,
    fail,
    load,
    out_console,
    print_table,
    progress_bar,
    warn,
)
from llmsim.errors import ConfigError, LlmsimError

if TYPE_CHECKING:  # the simulator and fitting code load when a command runs
    import pandas as pd

    from llmsim.result import SimulationResult


def run(
    scenario: ScenarioArg,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder for requests.parquet, steps.parquet, "
            "summary.json (default: runs/ then the scenario name).",
        ),
    ] = None,
    overrides: SetOpt = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="Print nothing on stdout and no progress; errors and warnings "
            "about the result still go to stderr.",
        ),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the summary as JSON on stdout (the summary.json written) "
            "instead of the tables.",
        ),
    ] = False,
    max_concurrency: Annotated[
        int | None,
        typer.Option(
            "--max-concurrency",
            min=1,
            help="At most N requests in flight, as vLLM's benchmark: "
            "sets workload.max_concurrency.",
        ),
    ] = None,
    goodput: Annotated[
        str | None,
        typer.Option(
            "--goodput",
            help="SLOs for goodput as vLLM's benchmark takes them, in ms: "
            "'ttft:2000 tpot:100' (keys ttft, tpot, e2el); sets metrics.slo_ttft_ms etc.",
        ),
    ] = None,
    metric_percentiles: Annotated[
        str | None,
        typer.Option(
            "--metric-percentiles",
            help="More percentiles in the summary, comma-separated as "
            "vLLM's benchmark takes them, e.g. 25,50,99.9 (keys p25_ttft_ms...).",
        ),
    ] = None,
) -> None:
    """Run a scenario, print its summary and write its tables.

    Example: llmsim run scenarios/quickstart.yaml --set workload.rate=6 --goodput 'ttft:2000
    tpot:100' --json
    """
    from llmsim.diagnostics import predicted_rejections
    from llmsim.engine import Simulation
    from llmsim.result import check_output_folder

    try:
        extra = _benchmark_overrides(max_concurrency, goodput, metric_percentiles)
        sc = load(scenario, [*(overrides or []), *extra])
        folder = out if out is not None else Path("runs") / sc.name
        check_output_folder(folder)  # before the simulation, not after it
        sim = Simulation(sc)
        before = predicted_rejections(sim)
    except LlmsimError as exc:
        raise fail(exc) from None
    if before:
        warn(before)
    if quiet or as_json or not sys.stderr.isatty():
        result = sim.run()
    else:
        with progress_bar("{task.completed:,}/{task.total:,} requests") as bar:
            task = bar.add_task(f"simulating {sc.name}", total=len(sim.stream))
            result = sim.run(progress=lambda done, total: bar.update(task, completed=done))
    try:
        paths = result.save(folder)
    except LlmsimError as exc:
        raise fail(exc) from None
    if quiet or as_json:
        if as_json and not quiet:
            sys.stdout.write(result.summary_json())
        print_warnings(result)
        all_written()
        return
    print_summary(result)
    out_console.print(f"wrote {', '.join(p.name for p in paths.values())} to {folder}/")
    all_written()


def _benchmark_overrides(
    max_concurrency: int | None, goodput: str | None, percentiles: str | None
) -> list[str]:
    """vLLM benchmark options as ``--set`` overrides."""
    from llmsim.metrics import parse_goodput

    out = []
    if max_concurrency is not None:
        out.append(f"workload.max_concurrency={max_concurrency}")
    if goodput is not None:
        try:
            slos = parse_goodput(goodput)
        except ValueError as exc:
            raise ConfigError(str(exc), field="--goodput") from None
        out += [f"metrics.{k}={v:g}" for k, v in slos.items()]
    if percentiles is not None:
        try:
            values = [float(p) for p in percentiles.split(",")]
        except ValueError:
            raise ConfigError(
                f"'{percentiles}': give comma-separated numbers, e.g. 25,50,99.9",
                field="--metric-percentiles",
            ) from None
        out.append(f"metrics.percentiles=[{', '.join(f'{p:g}' for p in values)}]")
    return out


def print_summary(result: SimulationResult) -> None:
    """The run summary as rich tables."""
    s = result.summary
    sc = result.scenario
    if sc.cluster is None:
        where = f"{sc.tensor_parallel}x {sc.hardware}, policy {sc.policy.kind}"
        if sc.data_parallel > 1:
            where = f"{sc.data_parallel} replicas of {where}, router round_robin"
    else:
        pools = ", ".join(f"{p.name} ({_count(p.replicas, 'replica')})" for p in sc.cluster.pools)
        where = (
            f"{_count(len(result.kv), 'replica')} in pools {pools}, router {sc.cluster.router.kind}"
        )
    out_console.print(
        f"[bold]{sc.name}[/]: {sc.model} on {where}, "
        f"{int(s['num_requests']):,} requests, seed {sc.seed}"
    )
    for line in result.provenance:
        out_console.print(f"priced by: {line}", highlight=False)
    lat = Table(title="Latency (ms)", title_justify="left")
    lat.add_column("metric")
    for col in ("mean", "p50", "p90", "p99"):
        lat.add_column(col, justify="right")
    labels = {
        "ttft": "TTFT",
        "tpot": "TPOT",
        "itl": "ITL",
        "e2el": "E2E latency",
        "queue": "queueing",
    }
    frame = result.summary_frame
    for name, row in frame.iterrows():
        lat.add_row(labels[str(name)], *(f"{row[c]:,.1f}" for c in ("mean", "p50", "p90", "p99")))
    out_console.print(lat)
    thr = Table(title="Throughput and resources", title_justify="left", show_header=False)
    thr.add_column("metric")
    thr.add_column("value", justify="right")
    rows = [
        ("completed / rejected", f"{int(s['completed']):,} / {int(s['rejected']):,}"),
        ("duration (simulated)", f"{s['duration_s']:,.1f} s"),
        ("request throughput", f"{s['request_throughput']:,.2f} req/s"),
        ("output token throughput", f"{s['output_throughput']:,.0f} tok/s"),
        ("total token throughput", f"{s['total_token_throughput']:,.0f} tok/s"),
        (
            "mean batch size (all / decode steps)",
            f"{s['mean_batch_size']:,.1f} / {s['mean_decode_batch_size']:,.1f}",
        ),
        ("KV cache per replica (blocks x tokens)", _kv_sizes(result)),
        ("KV usage (mean / max)", f"{s['mean_kv_usage']:.1%} / {s['max_kv_usage']:.1%}"),
        (
            "preemptions (per request / recomputed tokens)",
            f"{int(s['preemptions']):,} ({s['preemptions_per_request']:.2f} / "
            f"{s['recompute_fraction']:.1%})",
        ),
    ]
    if "prefix_cache_hit_rate" in s:
        rows.append(("prefix cache hit rate", f"{s['prefix_cache_hit_rate']:.1%}"))
    if "host_cache_hit_rate" in s:
        rows.append(("prefix cache hits from the host tier", f"{s['host_cache_hit_rate']:.1%}"))
    if s.get("trace_bad_rows_skipped"):
        rows.append(("trace rows skipped (bad)", f"{int(s['trace_bad_rows_skipped']):,}"))
    if "busy_fraction" in s:
        rows.append(("GPU busy (share of the window)", f"{s['busy_fraction']:.1%}"))
    if "offered_request_rate" in s:
        rows.append(("offered load", f"{s['offered_request_rate']:,.2f} req/s"))
    if "goodput" in s:
        rows.append(
            ("goodput (within SLOs)", f"{s['goodput']:,.2f} req/s ({s['slo_attainment']:.1%})")
        )
    for k, v in rows:
        thr.add_row(k, v)
    out_console.print(thr)
    if result.by_pool is not None:
        _print_groups(result.by_pool, "Per pool")
    print_warnings(result)


def print_warnings(result: SimulationResult) -> None:
    """What the summary's averages do not say (rejections, overload, preemption,
    extrapolation), one line each on stderr."""
    for warning in result.warnings:
        warn(warning)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _kv_sizes(result: SimulationResult) -> str:
    """Blocks x block size of each pool's replicas (all replicas of a pool are alike)."""
    sizes: dict[str, str] = {}
    pools = [spec.pool for spec in result.scenario.replica_specs()]
    for pool, kv in zip(pools, result.kv, strict=True):
        sizes.setdefault(pool, f"{kv.num_blocks:,} x {kv.block_size}")
    if len(sizes) == 1:
        return next(iter(sizes.values()))
    return ", ".join(f"{pool} {size}" for pool, size in sizes.items())


GROUP_COLUMNS = {
    "completed": ("completed", "{:,.0f}"),
    "request_throughput": ("req/s", "{:,.2f}"),
    "median_ttft_ms": ("TTFT p50 ms", "{:,.1f}"),
    "p99_ttft_ms": ("TTFT p99 ms", "{:,.1f}"),
    "median_tpot_ms": ("TPOT p50 ms", "{:,.1f}"),
    "p99_itl_ms": ("ITL p99 ms", "{:,.1f}"),
    "mean_kv_usage": ("KV mean", "{:.1%}"),
    "busy_fraction": ("busy", "{:.0%}"),
}


def _print_groups(frame: pd.DataFrame, title: str) -> None:
    t = Table(title=title, title_justify="left")
    t.add_column(str(frame.index.name))
    for head, _ in GROUP_COLUMNS.values():
        t.add_column(head, justify="right")
    for name, row in frame.iterrows():
        t.add_row(str(name), *(fmt.format(row[key]) for key, (_, fmt) in GROUP_COLUMNS.items()))
    print_table(t)


def validate(scenario: ScenarioArg, overrides: SetOpt = None) -> None:
    """Check a scenario (fields, names, memory fit, the workload's files) without running it:
    what ``run`` refuses before simulating, ``validate`` refuses too.

    Example: llmsim validate my.yaml --set hardware=L40S
    """
    from llmsim.diagnostics import predicted_rejections
    from llmsim.engine import Simulation

    try:
        sc = load(scenario, overrides)
        sim = Simulation(sc)  # every replica and the workload, as run builds them
        rejections = predicted_rejections(sim)
    except LlmsimError as exc:
        raise fail(exc) from None
    if rejections:
        warn(rejections)
    kv = sim.replicas[0].kv
    out_console.print(
        f"{scenario}: ok - {sc.model} on {sc.tensor_parallel}x {sc.hardware}: weights "
        f"{kv.weights / 1e9:.1f} GB/GPU, KV cache {kv.num_blocks:,} blocks "
        f"({kv.tokens:,} tokens)"
    )
