"""Plots built from llmsim's tables (matplotlib). Each function draws on an Axes (a new one
when none is given) and returns it, so plots compose into a user's own figures.

Every figure should read without the notebook around it: axes carry readable labels (not dotted
keys), panels a title, and the figure the model and GPU it simulated (``scenario=``; with
:func:`grid`, on the figure's title). Lines that lie on top of each other are said so in the
legend, since the lower one cannot be seen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import NullFormatter

from llmsim.metric_names import KEY, LATENCIES, LATENCY_LABELS
from llmsim.metrics import Weighted
from llmsim.result import SimulationResult
from llmsim.scenario import Scenario

LABELS = {
    "request_throughput": "throughput (req/s)",
    "output_throughput": "output throughput (tok/s)",
    "total_token_throughput": "total throughput (tok/s)",
    "workload.arrival.rate": "offered load (req/s)",
    "workload.rate": "offered load (req/s)",
    "policy.batch_size": "batch size (requests)",
    "policy.max_batch_size": "maximum batch size (requests)",
    "policy.max_num_seqs": "maximum running requests",
    "policy.max_num_batched_tokens": "token budget per step",
    "mean_batch_size": "mean batch size",
    "mean_decode_batch_size": "mean decode batch size",
    "mean_kv_usage": "mean KV usage",
    "max_kv_usage": "maximum KV usage",
    "preemptions": "preemptions",
}
"""Axis labels of keys whose generic label (see :func:`label`) would read worse."""

_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def label(name: str) -> str:
    """A readable axis label for a summary key or a swept field: ``p99_ttft_ms`` -> "p99 TTFT
    (ms)", ``policy.max_num_seqs`` -> "maximum running requests", ``engine.block_size`` ->
    "block size"."""
    if name in LABELS:
        return LABELS[name]
    m = KEY.match(name)
    if m:
        return f"{m.group(1)} {LATENCY_LABELS[m.group(2)]} (ms)"
    return name.rsplit(".", 1)[-1].replace("_", " ")


def describe(scenario: Scenario) -> str:
    """The model and the GPUs a figure shows results of: "Llama-3.1-8B on 1x H100-SXM" (the
    policy is left out: figures often compare policies on one deployment)."""
    if scenario.cluster is not None:
        pools = ", ".join(
            f"{p.replicas}x {p.hardware or scenario.hardware}" for p in scenario.cluster.pools
        )
        return f"{scenario.model} on {pools}"
    where = f"{scenario.tensor_parallel}x {scenario.hardware}"
    if scenario.data_parallel > 1:
        where = f"{scenario.data_parallel} replicas of {where}"
    return f"{scenario.model} on {where}"


def _ax(ax: Axes | None) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    return ax


def _title(ax: Axes, title: str, scenario: Scenario | None) -> None:
    lines = [title] if title else []
    if scenario is not None:
        lines.append(describe(scenario))
    if lines:
        ax.set_title("\n".join(lines), fontsize=10)


def _finish(
    ax: Axes,
    xlabel: str,
    ylabel: str,
    title: str,
    scenario: Scenario | None,
    *,
    logx: bool = False,
    logy: bool = False,
    minor_grid: bool = False,
) -> Axes:
    """Label the axes, set their log scales, add the legend and the grid (at the minor ticks
    too with ``minor_grid``) and the title."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3, which="both" if minor_grid else "major")
    _title(ax, title, scenario)
    return ax


def _same(a: pd.DataFrame, b: pd.DataFrame, x: str, y: str) -> bool:
    """Two series with the same x values and y values equal to 0.1 %: one hides the other."""
    if len(a) != len(b) or not np.array_equal(a[x].to_numpy(), b[x].to_numpy()):
        return False
    return bool(np.allclose(a[y].to_numpy(float), b[y].to_numpy(float), rtol=1e-3, equal_nan=True))


def curves(
    sweeps: Mapping[str, pd.DataFrame],
    x: str,
    y: str,
    *,
    ax: Axes | None = None,
    logy: bool = False,
    marker: str | None = None,
    title: str | None = None,
    scenario: Scenario | None = None,
) -> Axes:
    """One line per named sweep (a DataFrame from ``llmsim.sweep.sweep``), ``y`` against ``x``.

    Every line is named in the legend, a single one too. A line that coincides with an earlier
    one is drawn dashed on top of it and its legend entry says which it hides. ``title``
    defaults to "<y> vs <x>"; ``scenario`` adds the model and GPU under it.
    """
    ax = _ax(ax)
    drawn: list[tuple[str, pd.DataFrame]] = []
    for i, (name, df) in enumerate(sweeps.items()):
        twin = next((other for other, prev in drawn if _same(prev, df, x, y)), None)
        shown = name if twin is None else f"{name} (same as {twin})"
        ax.plot(
            df[x],
            df[y],
            marker=marker or _MARKERS[i % len(_MARKERS)],
            ls="--" if twin else "-",
            mfc="none" if twin else None,
            label=shown,
        )
        drawn.append((name, df))
    title = f"{label(y)} vs {label(x)}" if title is None else title
    return _finish(ax, label(x), label(y), title, scenario, logy=logy)


def tradeoff(
    sweeps: Mapping[str, pd.DataFrame],
    latency: str = "p99_ttft_ms",
    throughput: str = "request_throughput",
    *,
    ax: Axes | None = None,
    logy: bool = True,
    title: str | None = None,
    scenario: Scenario | None = None,
) -> Axes:
    """The latency/throughput trade-off: latency against served throughput, per config."""
    if title is None:
        title = f"{label(latency).replace(' (ms)', '')} vs served throughput"
    return curves(sweeps, throughput, latency, ax=ax, logy=logy, title=title, scenario=scenario)


def bars(
    values: Mapping[str, float],
    metric: str,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    scenario: Scenario | None = None,
) -> Axes:
    """One bar per configuration for a single metric, each bar labelled with its value."""
    ax = _ax(ax)
    names = list(values)
    drawn = ax.bar(names, [values[n] for n in names], color="tab:blue")
    ax.bar_label(drawn, fmt="%.3g", fontsize=8)
    ax.set_ylabel(label(metric))
    ax.grid(axis="y", alpha=0.3)
    _title(ax, label(metric) if title is None else title, scenario)
    return ax


def timeline(
    result: SimulationResult, *, ax: Axes | None = None, replica: int = 0, title: str | None = None
) -> Axes:
    """Running requests and KV-cache usage over time, from the per-step table. On a figure of
    its own (no ``ax``) the title names the model and GPU."""
    own = ax is None
    ax = _ax(ax)
    s = result.steps[result.steps["replica"] == replica]
    ax.plot(s["start"], s["num_running"], lw=0.7, label="running requests")
    ax.plot(s["start"], s["num_waiting"], lw=0.7, label="waiting requests")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("requests")
    twin = ax.twinx()
    twin.plot(s["start"], 100 * s["kv_usage"], lw=0.7, color="tab:red", alpha=0.6, label="KV")
    twin.set_ylabel("KV cache used (%)", color="tab:red")
    ax.legend(loc="upper left")
    name = f"replica {replica} over time" if len(result.kv) > 1 else "requests and KV over time"
    _title(ax, name if title is None else title, result.scenario if own else None)
    return ax


def over_time(
    runs: Mapping[str, pd.DataFrame],
    column: str = "ttft",
    *,
    time: str = "arrival",
    window_s: float = 10.0,
    quantile: float = 0.99,
    ax: Axes | None = None,
    logy: bool = True,
    xlabel: str = "arrival time (s)",
    title: str | None = None,
    scenario: Scenario | None = None,
) -> Axes:
    """A per-request latency over time, one line per run: the ``quantile`` of ``column``
    (seconds, plotted in ms; e.g. ``ttft``, ``e2e``) among the requests whose ``time`` falls in
    each window of ``window_s`` seconds, drawn at the window's middle. Requests without a value
    (rejected, unfinished) are left out. To compare a trace replayed at different speeds, put
    each run's arrivals on the trace's clock first (``arrival * time_scale``)."""
    ax = _ax(ax)
    key = f"p{quantile * 100:g}_{LATENCIES.get(column, column)}_ms"
    for name, frame in runs.items():
        done = frame[[time, column]].dropna()
        window = np.floor(done[time].to_numpy(float) / window_s)
        q = done.groupby(window)[column].quantile(quantile)
        ax.plot((q.index.to_numpy() + 0.5) * window_s, q.to_numpy() * 1e3, lw=1.0, label=name)
    ylabel = f"{label(key)}, {window_s:g} s windows"
    title = f"{label(key).replace(' (ms)', '')} over time" if title is None else title
    return _finish(ax, xlabel, ylabel, title, scenario, logy=logy, minor_grid=True)


def cdf(
    samples: Mapping[str, np.ndarray | pd.Series | Weighted],
    *,
    xlabel: str = "latency (ms)",
    scale: float = 1e3,
    ax: Axes | None = None,
    logx: bool = True,
    title: str | None = None,
    scenario: Scenario | None = None,
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
    title = f"distribution of {xlabel}" if title is None else title
    return _finish(ax, xlabel, "fraction of samples", title, scenario, logx=logx)


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


def grid(
    n: int,
    cols: int = 3,
    size: tuple[float, float] = (5.0, 3.6),
    *,
    title: str | None = None,
    scenario: Scenario | None = None,
) -> Sequence[Axes]:
    """A figure with ``n`` axes in rows of ``cols``, laid out by matplotlib's constrained
    layout (labels and titles of neighbouring panels never overlap, however they are drawn
    later). ``title`` and the ``scenario``'s model and GPU go on the figure's title."""
    cols = min(cols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False, layout="constrained"
    )
    flat = list(axes.ravel())
    for extra in flat[n:]:
        extra.set_visible(False)
    lines = [t for t in (title, describe(scenario) if scenario is not None else None) if t]
    if lines:
        fig.suptitle("\n".join(lines))
    return flat[:n]
