"""``llmsim run`` and ``llmsim validate``: one scenario, simulated or checked."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmsim.cli.common import ScenarioArg, SetOpt, err_console, fail, load, out_console
from llmsim.engine import Simulation
from llmsim.errors import LlmsimError
from llmsim.metrics import preemption_warning
from llmsim.result import SimulationResult, check_output_folder


def run(
    scenario: ScenarioArg,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder for requests.parquet, steps.parquet, "
            "summary.json (default: runs/<scenario name>).",
        ),
    ] = None,
    overrides: SetOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run a scenario, print its summary and write its tables."""
    try:
        sc = load(scenario, overrides)
        folder = out if out is not None else Path("runs") / sc.name
        check_output_folder(folder)  # before the simulation, not after it
        sim = Simulation(sc)
    except LlmsimError as exc:
        raise fail(exc) from None
    if quiet or not sys.stderr.isatty():
        result = sim.run()
    else:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,} requests"),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        ) as bar:
            task = bar.add_task(f"simulating {sc.name}", total=len(sim.stream))
            result = sim.run(progress=lambda done, total: bar.update(task, completed=done))
    try:
        paths = result.save(folder)
    except LlmsimError as exc:
        raise fail(exc) from None
    print_summary(result)
    out_console.print(f"wrote {', '.join(p.name for p in paths.values())} to {folder}/")


def print_summary(result: SimulationResult) -> None:
    """The run summary as rich tables."""
    s = result.summary
    sc = result.scenario
    kv = result.kv[0]
    if sc.cluster is None:
        where = f"{sc.tensor_parallel}x {sc.hardware}, policy {sc.policy.kind}"
        if sc.data_parallel > 1:
            where = f"{sc.data_parallel} replicas of {where}, router round_robin"
    else:
        pools = ", ".join(f"{p.name} ({p.replicas} replicas)" for p in sc.cluster.pools)
        where = f"{len(result.kv)} replicas in pools {pools}, router {sc.cluster.router.kind}"
    out_console.print(
        f"[bold]{sc.name}[/]: {sc.model} on {where}, "
        f"{int(s['num_requests']):,} requests, seed {sc.seed}"
    )
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
        ("KV cache (blocks x tokens)", f"{kv.num_blocks:,} x {kv.block_size}"),
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
    if "goodput" in s:
        rows.append(
            ("goodput (within SLOs)", f"{s['goodput']:,.2f} req/s ({s['slo_attainment']:.1%})")
        )
    for k, v in rows:
        thr.add_row(k, v)
    out_console.print(thr)
    if result.by_pool is not None:
        _print_groups(result.by_pool, "Per pool")
    if s["rejected"]:
        err_console.print(
            f"[yellow]warning:[/] {int(s['rejected'])} requests were rejected: longer than "
            "engine.max_model_len, the token budget or the KV cache allows"
        )
    warning = preemption_warning(s)
    if warning:
        err_console.print(f"[yellow]warning:[/] {warning}")


GROUP_COLUMNS = {
    "completed": ("completed", "{:,.0f}"),
    "request_throughput": ("req/s", "{:,.2f}"),
    "median_ttft_ms": ("TTFT p50 ms", "{:,.1f}"),
    "p99_ttft_ms": ("TTFT p99 ms", "{:,.1f}"),
    "median_tpot_ms": ("TPOT p50 ms", "{:,.1f}"),
    "p99_itl_ms": ("ITL p99 ms", "{:,.1f}"),
    "mean_kv_usage": ("KV mean", "{:.1%}"),
}


def _print_groups(frame: pd.DataFrame, title: str) -> None:
    t = Table(title=title, title_justify="left")
    t.add_column(str(frame.index.name))
    for head, _ in GROUP_COLUMNS.values():
        t.add_column(head, justify="right")
    for name, row in frame.iterrows():
        t.add_row(str(name), *(fmt.format(row[key]) for key, (_, fmt) in GROUP_COLUMNS.items()))
    out_console.print(t)


def validate(scenario: ScenarioArg, overrides: SetOpt = None) -> None:
    """Check a scenario (fields, names, memory fit, the workload's files) without running it:
    what ``run`` refuses before simulating, ``validate`` refuses too."""
    try:
        sc = load(scenario, overrides)
        sim = Simulation(sc)
    except LlmsimError as exc:
        raise fail(exc) from None
    kv = sim.replicas[0].kv
    out_console.print(
        f"{scenario}: ok - {sc.model} on {sc.tensor_parallel}x {sc.hardware}: weights "
        f"{kv.weights / 1e9:.1f} GB/GPU, KV cache {kv.num_blocks:,} blocks "
        f"({kv.tokens:,} tokens)"
    )
