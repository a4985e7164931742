"""The summary's names of latency statistics, for what names them from outside: SLOs
(``ttft:p99<2000``), the percentiles a sweep plots (``--percentile p99``) and axis labels
(``p99_ttft_ms`` -> "p99 TTFT (ms)")."""

from __future__ import annotations

import re

LATENCIES = {"ttft": "ttft", "tpot": "tpot", "itl": "itl", "e2e": "e2el", "e2el": "e2el"}
"""Latency names a user may write -> the summary's."""

STATISTICS = {"mean": "mean", "p50": "median", "median": "median", "p90": "p90", "p99": "p99"}
"""Statistics a user may write -> the summary's."""

LATENCY_LABELS = {
    "ttft": "TTFT",
    "tpot": "TPOT",
    "itl": "ITL",
    "e2el": "E2E latency",
    "queue": "queueing",
}
"""How a figure names each latency of the summary."""

KEY = re.compile(r"^(mean|median|std|p\d+(?:\.\d+)?)_(ttft|tpot|itl|e2el|queue)_ms$")
"""A latency statistic's summary key: the statistic, then the latency (groups 1 and 2)."""


def metric_key(latency: str, statistic: str) -> str:
    """``("ttft", "p99")`` -> ``"p99_ttft_ms"``, ``("e2e", "p50")`` -> ``"median_e2el_ms"``."""
    return f"{STATISTICS[statistic]}_{LATENCIES[latency]}_ms"
