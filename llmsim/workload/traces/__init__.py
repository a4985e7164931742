"""Trace replay: Azure LLM inference, Mooncake, BurstGPT, and any CSV or JSON Lines file.

>>> from llmsim.workload.traces import TraceConfig, read_trace
>>> stream = read_trace(TraceConfig(dataset="azure_conv", time_scale=2.0, max_requests=100))
>>> len(stream), stream.trace.rows
(100, 100)
"""

from __future__ import annotations

from llmsim.workload.traces.config import PRESETS, TraceColumns, TraceConfig
from llmsim.workload.traces.replay import read_trace

__all__ = ["PRESETS", "TraceColumns", "TraceConfig", "read_trace"]
