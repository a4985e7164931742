"""Converting a chunk's raw trace values into typed columns, vectorised, flagging bad rows.

Each converter returns the column and a boolean mask of rows whose value is invalid; the
caller reports (or skips) those rows. A bad row's column holds a harmless placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from llmsim.limits import MAX_PRIORITY, MAX_TOKENS
from llmsim.workload.traces.config import TimeUnit

MAX_TIMESTAMP = 4e18
"""Largest timestamp (in its unit) read: differences of two stay within 64-bit integers."""

SECONDS_PER: dict[str, float] = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9, "datetime": 1e9}
"""Timestamp units per second; date-times are read as nanoseconds."""


def _numbers(values: Sequence[Any]) -> pd.Series:
    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")


def _floats(values: Sequence[Any]) -> np.ndarray:
    """Numbers as float64, NaN where a value is not a number."""
    try:
        return np.fromiter(map(float, values), np.float64, len(values))
    except (TypeError, ValueError):
        return _numbers(values).to_numpy(dtype=float, na_value=np.nan)


def timestamps(values: Sequence[Any], unit: TimeUnit) -> tuple[np.ndarray, np.ndarray]:
    """Raw times: int64 nanoseconds for date-times, else numbers in ``unit`` (int64 or float)."""
    if unit == "datetime":
        parsed = pd.to_datetime(
            pd.Series(values, dtype=object), format="ISO8601", errors="coerce", utc=True
        )
        bad = parsed.isna().to_numpy()
        ns = parsed.dt.tz_convert(None).dt.as_unit("ns").to_numpy().view(np.int64).copy()
        ns[bad] = 0
        return ns, bad
    num = _numbers(values)
    arr = num.to_numpy()
    if arr.dtype.kind in "iu":
        bad = (arr > MAX_TIMESTAMP) | (arr < -MAX_TIMESTAMP)
        return np.where(bad, 0, arr).astype(np.int64), bad
    arr = arr.astype(float)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(arr) | (np.abs(arr) > MAX_TIMESTAMP)
    arr[bad] = 0.0
    return arr, bad


def counts(values: Sequence[Any], minimum: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Whole numbers from ``minimum`` to ``MAX_TOKENS`` (token counts)."""
    arr = _floats(values)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(arr) | (arr < minimum) | (arr > MAX_TOKENS) | (arr != np.floor(arr))
    return np.where(bad, minimum, arr).astype(np.int64), bad


def integers(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Whole numbers of any sign, up to ``MAX_PRIORITY`` in size (priorities)."""
    arr = _floats(values)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(arr) | (np.abs(arr) > MAX_PRIORITY) | (arr != np.floor(arr))
    return np.where(bad, 0, arr).astype(np.int64), bad


def labels(values: Sequence[Any], *, empty_ok: bool) -> tuple[np.ndarray, np.ndarray]:
    """Strings (object array); an empty one is bad unless ``empty_ok``."""
    arr = np.array([str(v).strip() for v in values], dtype=object)
    bad = np.zeros(len(arr), dtype=bool) if empty_ok else arr == ""
    return arr, bad


_SEP = re.compile(r"[\s,;]+")


def id_lists(values: Sequence[Any]) -> tuple[list[list[int]], np.ndarray]:
    """Lists of integers: JSON lists, or one CSV field like ``"3 4 5"`` / ``"[3, 4, 5]"``."""
    out: list[list[int]] = []
    bad = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values):
        try:
            if isinstance(v, list):
                if any(isinstance(x, bool) or not isinstance(x, int) for x in v):
                    raise ValueError
                out.append(v)
            else:
                text = str(v).strip().strip("[]").strip()
                out.append([int(x) for x in _SEP.split(text)] if text else [])
        except ValueError:
            bad[i] = True
            out.append([])
    return out, bad


REASONS: dict[str, str] = {
    "timestamp": "not a timestamp in {unit}",
    "prompt_tokens": f"must be a positive integer up to {MAX_TOKENS:,}",
    "output_tokens": f"must be a positive integer up to {MAX_TOKENS:,}",
    "session_id": "must not be empty",
    "request_class": "must be a string",
    "priority": f"must be an integer from {-MAX_PRIORITY:,} to {MAX_PRIORITY:,}",
    "hash_ids": "must be a list of integers",
}
"""Why a value of each field was rejected."""


def describe(field: str, raw: Any, unit: str) -> str:
    """The reason a raw value of ``field`` is bad, with the value."""
    if field == "timestamp" and unit == "datetime":
        reason = "not an ISO 8601 date-time"
    else:
        reason = REASONS[field].format(unit=unit)
    text = repr(raw)
    return f"{reason} (got {text if len(text) <= 40 else text[:37] + '...'})"
