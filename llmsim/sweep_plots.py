"""The figures of a sweep, drawn from its table (``llmsim.sweep.run_sweep``).

* latency (TTFT, TPOT, E2E at chosen percentiles) against achieved throughput, one curve per
  configuration, saturated points marked;
* latency and goodput (or throughput, without SLOs) against offered load, the saturation point
  of each configuration marked.

A configuration is one combination of the varied fields other than the x axis (the arrival
rate when it is varied, else the first ``--vary``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from llmsim.atomic import atomic_write
from llmsim.errors import ConfigError
from llmsim.grid import Axis
from llmsim.metric_names import LATENCY_LABELS, STATISTICS, metric_key

RATE_PATHS = ("workload.rate", "workload.arrival.rate")
LATENCIES = tuple((lat, LATENCY_LABELS[lat]) for lat in ("ttft", "tpot", "e2el"))
STYLES = ("-", "--", ":", "-.")


def check_percentiles(percentiles: Sequence[str]) -> list[str]:
    """The percentiles named for the plots, refused in one line when unknown."""
    for p in percentiles:
        if p not in STATISTICS:
            raise ConfigError(
                f"unknown percentile '{p}'; valid: {', '.join(STATISTICS)}",
                field="--percentile",
            )
    return list(percentiles)


def split_axes(axes: Sequence[Axis]) -> tuple[str | None, list[str]]:
    """The x-axis path (the arrival rate if varied, else the first axis) and the others."""
    paths = [a.path for a in axes]
    x = next((p for p in paths if p in RATE_PATHS), paths[0] if paths else None)
    return x, [p for p in paths if p != x]


def _configs(table: pd.DataFrame, others: list[str]) -> list[tuple[str, pd.DataFrame]]:
    ok = table[table["status"] == "ok"]
    if not others:
        return [("", ok)]
    groups = []
    for values, sub in ok.groupby(others, sort=False):
        vals = values if isinstance(values, tuple) else (values,)
        name = ", ".join(f"{p.split('.')[-1]}={v}" for p, v in zip(others, vals, strict=True))
        groups.append((name, sub))
    return groups


def _title(table: pd.DataFrame, name: str, what: str) -> str:
    ok = table[table["status"] == "ok"]
    models = ", ".join(dict.fromkeys(ok["model"].astype(str)))
    pairs = zip(ok["tensor_parallel"], ok["hardware"], strict=True)
    gpus = ", ".join(dict.fromkeys(f"{tp}x {hw}" for tp, hw in pairs))
    return f"{name}: {what}\n{models} on {gpus}"


def latency_vs_throughput(
    table: pd.DataFrame,
    axes: Sequence[Axis],
    *,
    percentiles: Sequence[str] = ("p50", "p99"),
    name: str = "sweep",
) -> Figure:
    """TTFT, TPOT and E2E latency against achieved request throughput, a panel each."""
    x, others = split_axes(axes)
    configs = _configs(table, others)
    fig, panels = plt.subplots(1, len(LATENCIES), figsize=(5.2 * len(LATENCIES), 4.2))
    for ax, (lat, label) in zip(panels, LATENCIES, strict=True):
        for c, (_, sub) in enumerate(configs):
            sub = sub.sort_values(x or "point", kind="stable")  # in order of load
            for s, pct in enumerate(percentiles):
                y = sub[metric_key(lat, pct)]
                ax.plot(
                    sub["request_throughput"], y, STYLES[s % len(STYLES)], marker="o",
                    ms=3, color=f"C{c}",
                )  # fmt: skip
                sat = sub["saturated"].astype(bool)
                ax.scatter(
                    sub["request_throughput"][sat], y[sat], marker="x", s=40, color="black",
                    zorder=3,
                )  # fmt: skip
        ax.set_xlabel("achieved throughput (req/s)")
        ax.set_ylabel(f"{label} (ms)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(_title(table, name, "latency against achieved throughput"), fontsize=10)
    _legend(fig, configs, percentiles, [("saturated", "black", "", "x")])
    fig.tight_layout(rect=(0, 0, 0.87, 1))
    return fig


def latency_vs_load(
    table: pd.DataFrame,
    axes: Sequence[Axis],
    *,
    percentiles: Sequence[str] = ("p50", "p99"),
    name: str = "sweep",
) -> Figure:
    """TTFT, TPOT, E2E latency and goodput (throughput without SLOs) against offered load;
    a dotted vertical line at each configuration's first saturated load."""
    _, others = split_axes(axes)
    configs = _configs(table, others)
    served = "goodput" if "goodput" in table and table["goodput"].notna().any() else None
    served = served or "request_throughput"
    fig, panels = plt.subplots(1, len(LATENCIES) + 1, figsize=(4.6 * (len(LATENCIES) + 1), 4.2))
    for c, (_, sub) in enumerate(configs):
        sub = sub.sort_values("offered_rate")
        sat = sub[sub["saturated"].astype(bool)]["offered_rate"]
        for ax, (lat, label) in zip(panels, LATENCIES, strict=False):
            for s, pct in enumerate(percentiles):
                ax.plot(
                    sub["offered_rate"], sub[metric_key(lat, pct)], STYLES[s % len(STYLES)],
                    marker="o", ms=3, color=f"C{c}",
                )  # fmt: skip
            ax.set_ylabel(f"{label} (ms)")
            ax.set_yscale("log")
        ax = panels[-1]
        ax.plot(sub["offered_rate"], sub[served], "-", marker="o", ms=3, color=f"C{c}")
        goodput = served == "goodput"
        ax.set_ylabel("goodput (req/s within SLOs)" if goodput else "throughput (req/s)")
        if len(sat):
            for ax in panels:
                ax.axvline(float(sat.min()), color=f"C{c}", ls=":", lw=1)
    top = float(table["offered_rate"].max())
    panels[-1].plot([0, top], [0, top], color="grey", lw=0.8, ls="--")
    for ax in panels:
        ax.set_xlabel("offered load (req/s)")
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(_title(table, name, "latency and goodput against offered load"), fontsize=10)
    extra = [("first saturated load", "black", ":", ""), ("offered = served", "grey", "--", "")]
    _legend(fig, configs, percentiles, extra)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    return fig


def _legend(
    fig: Figure,
    configs: list[tuple[str, pd.DataFrame]],
    percentiles: Sequence[str],
    extra: Sequence[tuple[str, str, str, str]],
) -> None:
    """Colours name the configurations, line styles the percentiles; ``extra`` adds
    (label, colour, line style, marker) entries."""
    handles = [
        Line2D([], [], color=f"C{c}", lw=2, label=name or "all points")
        for c, (name, _) in enumerate(configs)
    ]
    handles += [
        Line2D([], [], color="black", ls=STYLES[s % len(STYLES)], label=pct)
        for s, pct in enumerate(percentiles)
    ]
    handles += [
        Line2D([], [], color=c, ls=ls or "", marker=m or None, label=lbl) for lbl, c, ls, m in extra
    ]
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)


def save_plots(
    table: pd.DataFrame,
    axes: Sequence[Axis],
    folder: Path,
    *,
    percentiles: Sequence[str] = ("p50", "p99"),
    name: str = "sweep",
) -> list[Path]:
    """Write the sweep's figures as PNG files (atomically); none when no point succeeded.
    The load figure needs an offered rate that varies."""
    if not (table["status"] == "ok").any():
        return []
    figures = {
        "latency_vs_throughput.png": latency_vs_throughput(
            table, axes, percentiles=percentiles, name=name
        )
    }
    if table["offered_rate"].nunique() > 1:
        figures["latency_vs_load.png"] = latency_vs_load(
            table, axes, percentiles=percentiles, name=name
        )
    paths = []
    for filename, fig in figures.items():
        path = folder / filename
        atomic_write(path, partial(fig.savefig, dpi=110, format="png"))
        plt.close(fig)
        paths.append(path)
    return paths
