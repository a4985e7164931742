"""Upper bounds of numeric scenario and profile fields.

Every number a user gives is finite (no ``.inf``, no ``.nan``) and bounded: a value beyond
these limits would overflow an integer column, make a clock step vanish against the time it is
added to, or describe no real deployment. The bounds are generous: far past any real serving
system, close enough that arithmetic on them stays exact.
"""

from __future__ import annotations

MAX_TOKENS = 100_000_000
"""Tokens of one prompt or one output (and any token-length field)."""

MAX_RATE = 1e6
"""Requests per second of an arrival process."""

MAX_SECONDS = 1e7
"""Any duration, window or time in a scenario, seconds (about 116 days)."""

MAX_MS = MAX_SECONDS * 1e3
"""The same bound for fields given in milliseconds."""

MAX_TIME_SCALE = 1e6
"""Speed-up or slow-down factor of a trace replay."""

MAX_COUNT = 10_000_000
"""Requests, sessions, clients, replicas and other counts."""

MAX_TFLOPS = 1e6
"""Peak TFLOP/s of one GPU (1 EFLOP/s)."""

MAX_BANDWIDTH_GBPS = 1e6
"""Bandwidth of one memory or link, GB/s (1 PB/s)."""

MAX_MEMORY_GIB = 1e6
"""Memory of one GPU, GiB."""

MAX_MODEL_DIM = 1_000_000_000
"""Layers, widths, heads, vocabulary and context length of a model."""

MAX_PRIORITY = 1_000_000_000
"""Largest priority of a request class, either sign."""
