"""Plots built from llmsim's tables (matplotlib). Each function draws on an Axes (a new one
when none is given) and returns it, so plots compose into a user's own figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import NullFormatter

from llmsim.metrics import Weighted
from llmsim.result import SimulationResult

LABELS = {
    "request_throughput": "throughput (req/s)",
    "output_throughput": "output throughput (tok/s)",
    "workload.arrival.rate": "offered load (req/s)",
    "workload.rate": "offered load (req/s)",
    "mean_ttft_ms": "mean TTFT (ms)",
    "median_ttft_ms": "median TTFT (ms)",
    "p99_ttft_ms": "p99 TTFT (ms)",
    "median_tpot_ms": "median TPOT (ms)",
    "p99_tpot_ms": "p99 TPOT (ms)",
    "p99_itl_ms": "p99 ITL (ms)",
    "mean_e2el_ms": "mean E2E latency (ms)",
    "p99_e2el_ms": "p99 E2E latency (ms)",
    "mean_batch_size": "mean batch size",
    "mean_decode_batch_size": "mean decode batch size",
    "mean_kv_usage": "mean KV usage",
}


def _ax(ax: Axes | None) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8))
    return ax


def label(name: str) -> str:
    return LABELS.get(name, name)


def curves(
    sweeps: Mapping[str, pd.DataFrame],
    x: str,
    y: str,
    *,
    ax: Axes | None = None,
    logy: bool = False,
    marker: str = "o",
) -> Axes:
    """One line per named sweep (a DataFrame from ``llmsim.sweep.sweep``), ``y`` against ``x``."""
    ax = _ax(ax)
    for name, df in sweeps.items():
        ax.plot(df[x], df[y], marker=marker, label=name)
    ax.set_xlabel(label(x))
    ax.set_ylabel(label(y))
    if logy:
        ax.set_yscale("log")
    if len(sweeps) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    return ax


def tradeoff(
    sweeps: Mapping[str, pd.DataFrame],
    latency: str = "p99_ttft_ms",
    throughput: str = "request_throughput",
    *,
    ax: Axes | None = None,
    logy: bool = True,
) -> Axes:
    """The latency/throughput trade-off: latency against served throughput, per config."""
    return curves(sweeps, throughput, latency, ax=ax, logy=logy)


def bars(values: Mapping[str, float], metric: str, *, ax: Axes | None = None) -> Axes:
    """One bar per configuration for a single metric."""
    ax = _ax(ax)
    names = list(values)
    ax.bar(names, [values[n] for n in names], color="tab:blue")
    ax.set_ylabel(label(metric))
    ax.grid(axis="y", alpha=0.3)
    return ax


def timeline(result: SimulationResult, *, ax: Axes | None = None, replica: int = 0) -> Axes:
    """Running requests and KV-cache usage over time, from the per-step table."""
    ax = _ax(ax)
    s = result.steps[result.steps["replica"] == replica]
    ax.plot(s["start"], s["num_running"], lw=0.7, label="running requests")
    ax.plot(s["start"], s["num_waiting"], lw=0.7, label="waiting requests")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("requests")
    twin = ax.twinx()
    twin.plot(s["start"], 100 * s["kv_usage"], lw=0.7, color="tab:red", alpha=0.6)
    twin.set_ylabel("KV cache used (%)", color="tab:red")
    ax.legend(loc="upper left")
    return ax


def cdf(
    samples: Mapping[str, np.ndarray | pd.Series | Weighted],
    *,
    xlabel: str = "latency (ms)",
    scale: float = 1e3,
    ax: Axes | None = None,
    logx: bool = True,
) -> Axes:
    """Empirical CDFs of latency samples in seconds (plotted in ms), e.g. ``result.itl`` or
    ``result.requests["ttft"]``."""
    ax = _ax(ax)
    for name, x in samples.items():
        if isinstance(x, Weighted):
            order = np.argsort(x.values)
            v = x.values[order]
            c = np.cumsum(x.weights[order]) / x.weights.sum()
        else:
            v = np.sort(np.asarray(x, dtype=float))
            v = v[~np.isnan(v)]
            c = np.arange(1, len(v) + 1) / len(v)
        ax.step(v * scale, c, where="post", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of samples")
    if logx:
        ax.set_xscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def fidelity(
    rows: pd.DataFrame, *, ax: Axes | None = None, title: str = "", band: float = 0.15
) -> Axes:
    """Predicted against measured kernel times (``measured_s``, ``predicted_s``; the detail
    rows of ``llmsim fidelity``), log-log, with the diagonal and a +-``band`` corridor."""
    ax = _ax(ax)
    measured = rows["measured_s"].to_numpy(dtype=float) * 1e3
    predicted = rows["predicted_s"].to_numpy(dtype=float) * 1e3
    ok = np.isfinite(predicted) & (measured > 0)
    measured, predicted = measured[ok], predicted[ok]
    many = measured.size > 500
    ax.scatter(measured, predicted, s=4 if many else 16, alpha=0.35 if many else 0.8, linewidths=0)
    lo = float(min(measured.min(), predicted.min())) * 0.8
    hi = float(max(measured.max(), predicted.max())) * 1.25
    line = np.array([lo, hi])
    ax.plot(line, line, color="black", lw=0.8)
    for f in (1 - band, 1 + band):
        ax.plot(line, line * f, color="grey", lw=0.6, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ape = np.abs(predicted / measured - 1) * 100
    stats = f"median {np.median(ape):.1f} %, p90 {np.percentile(ape, 90):.1f} % (n={ape.size:,})"
    ax.set_title(f"{title}\n{stats}" if title else stats, fontsize=9)
    ax.set_xlabel("measured (ms)")
    ax.set_ylabel("predicted (ms)")
    ax.grid(alpha=0.3, which="both")
    return ax


def grid(n: int, cols: int = 3, size: tuple[float, float] = (5.0, 3.6)) -> Sequence[Axes]:
    """A figure with ``n`` axes in rows of ``cols``."""
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    flat = list(axes.ravel())
    for extra in flat[n:]:
        extra.set_visible(False)
    fig.tight_layout()
    return flat[:n]
