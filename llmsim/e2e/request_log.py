"""A per-request log (``.csv`` or ``.jsonl``, optionally gzipped) read as a run: one row per
request with its arrival time, prompt and output tokens, TTFT and finish time (or E2E latency),
replayed as a trace at its own arrival times and measured with
:func:`~llmsim.e2e.runs.client_metrics` from the same rows."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmsim.e2e.parsed import (
    ParsedRun,
    TimeUnit,
    count_requests,
    fmt_number,
    short_value,
    workload_config,
)
from llmsim.e2e.runs import client_metrics, whole_run
from llmsim.errors import ConfigError
from llmsim.workload import TraceColumns, TraceConfig
from llmsim.workload.traces import fields as conv
from llmsim.workload.traces.files import RawChunk, csv_chunks, jsonl_chunks, open_text

ALIASES: dict[str, tuple[str, ...]] = {
    "arrival": ("arrival", "arrival_time", "timestamp", "send_time", "start_time", "start"),
    "prompt_tokens": ("prompt_tokens", "input_tokens", "prompt_len", "input_len",
                      "input_length", "num_prompt_tokens"),
    "output_tokens": ("output_tokens", "output_len", "output_length", "completion_tokens",
                      "generated_tokens", "num_output_tokens"),
    "ttft": ("ttft", "time_to_first_token"),
    "first_token": ("first_token", "first_token_time"),
    "e2e": ("e2e", "e2el", "e2e_latency", "latency"),
    "finish": ("finish", "finish_time", "end_time", "end"),
}  # fmt: skip
"""Accepted column names (any case) of a per-request log, by what they hold. A name may end in
``_s`` or ``_ms`` to give its unit; without a suffix it is in the ``time_unit`` passed in
(seconds by default). ``ttft`` and ``e2e`` are durations from the arrival; ``arrival``,
``first_token`` and ``finish`` are times on one clock (any origin)."""


@dataclass(frozen=True)
class _Column:
    name: str
    """The column's name in the file."""
    unit: TimeUnit


def _read_requests(src: str, fmt: str, default_unit: TimeUnit) -> ParsedRun:
    header = _header(src, fmt)
    cols = _resolve(header, src, default_unit)
    mapping = {f: c.name for f, c in cols.items()}
    chunks = csv_chunks(src, mapping, set()) if fmt == "csv" else jsonl_chunks(src, mapping)
    latency = {"ttft", "first_token", "e2e", "finish"}
    parts: dict[str, list[np.ndarray]] = {f: [] for f in cols}
    lines: list[int] = []
    for raw in chunks:
        lines += raw.lines
        _check_problems(raw, src, {cols[f].name for f in latency if f in cols})
        a_raw, bad = conv.timestamps(raw.values["arrival"], cols["arrival"].unit)
        _bad_row(raw, "arrival", bad, src, cols["arrival"].name, "must be a number")
        parts["arrival"].append(a_raw.astype(float) / conv.SECONDS_PER[cols["arrival"].unit])
        for f in ("prompt_tokens", "output_tokens"):
            counts, bad = conv.counts(raw.values[f])
            _bad_row(raw, f, bad, src, cols[f].name, "must be a positive integer")
            parts[f].append(counts)
        for f in latency & set(cols):
            x, bad = _optional_numbers(raw.values[f])
            why = "must be a number, or empty for a failed request"
            _bad_row(raw, f, bad, src, cols[f].name, why)
            parts[f].append(x / conv.SECONDS_PER[cols[f].unit])
    arrival = np.concatenate(parts["arrival"]) if parts["arrival"] else np.empty(0)
    if not len(arrival):
        raise ConfigError("no requests: the file has no data rows", source=src)
    back = np.flatnonzero(np.diff(arrival) < 0)
    if len(back):
        i = int(back[0]) + 1
        raise ConfigError(
            f"{fmt_number(arrival[i])} s is before the row above it "
            f"({fmt_number(arrival[i - 1])} s): rows must be in arrival order; "
            f"sort the file by '{cols['arrival'].name}'",
            source=f"{src}:{lines[i]}",
            field=cols["arrival"].name,
        )
    col = {f: np.concatenate(v) for f, v in parts.items()}
    t0 = arrival[0]
    rel = arrival - t0
    first = rel + col["ttft"] if "ttft" in col else col["first_token"] - t0
    finish = rel + col["e2e"] if "e2e" in col else col["finish"] - t0
    for name, later, earlier, what in (
        ("ttft" if "ttft" in col else "first_token", first, rel, "the arrival"),
        ("e2e" if "e2e" in col else "finish", finish, first, "the first token"),
    ):
        back = np.flatnonzero(later < earlier - 1e-9)
        if len(back):
            i = int(back[0])
            raise ConfigError(
                f"comes {fmt_number((earlier[i] - later[i]) * 1e3)} ms before {what}: "
                "latencies must be >= 0",
                source=f"{src}:{lines[i]}",
                field=cols[name].name,
            )
    failed = np.isnan(first) | np.isnan(finish)
    df = pd.DataFrame(
        {
            "request_id": np.arange(len(rel)),
            "arrival": rel,
            "first_token": np.where(failed, np.nan, first),
            "finish": np.where(failed, np.nan, finish),
            "prompt_tokens": col["prompt_tokens"],
            "output_tokens": col["output_tokens"],
        }
    )
    if failed.all():
        raise ConfigError("no request finished: nothing was measured", source=src)
    measured = whole_run(client_metrics(df))
    notes = []
    if failed.any():
        notes.append(
            f"{count_requests(int(failed.sum()))} without a first token or finish count as "
            "failed; they are still replayed"
        )
    trace = TraceConfig(
        format="csv" if fmt == "csv" else "jsonl",
        path=str(Path(src).resolve()),  # the replay may run from another directory
        columns=TraceColumns(
            timestamp=cols["arrival"].name,
            prompt_tokens=cols["prompt_tokens"].name,
            output_tokens=cols["output_tokens"].name,
        ),
        time_unit=cols["arrival"].unit,
    )
    return ParsedRun(workload_config({"trace": trace.model_dump()}, src), measured, notes)


def _header(src: str, fmt: str) -> list[str]:
    with open_text(src, newline="" if fmt == "csv" else None) as f:
        if fmt == "csv":
            try:
                return [h.strip() for h in next(csv.reader(f))]
            except StopIteration:
                raise ConfigError("empty file: expected a header line", source=src) from None
        for lineno, text in enumerate(f, start=1):
            if text.strip():
                try:
                    obj = json.loads(text)
                except ValueError:
                    obj = None
                if not isinstance(obj, dict):
                    raise ConfigError(
                        "expected a JSON object on this line", source=f"{src}:{lineno}"
                    )
                return [str(k) for k in obj]
    raise ConfigError("empty file: expected one JSON object per line", source=src)


def _resolve(header: list[str], src: str, default_unit: TimeUnit) -> dict[str, _Column]:
    """Which column holds what, by the names in ``ALIASES``."""
    found: dict[str, list[_Column]] = {}
    for name in header:
        low = name.strip().lower()
        unit: TimeUnit = default_unit
        base = low
        if low.endswith("_ms"):
            base, unit = low[:-3], "ms"
        elif low.endswith("_s"):
            base, unit = low[:-2], "s"
        for f, names in ALIASES.items():
            if low in names:  # a name that is itself an alias (no unit suffix)
                found.setdefault(f, []).append(_Column(name, default_unit))
            elif base in names and f not in ("prompt_tokens", "output_tokens"):
                found.setdefault(f, []).append(_Column(name, unit))
    for f, cs in found.items():
        if len(cs) > 1:
            raise ConfigError(
                f"columns {', '.join(repr(c.name) for c in cs)} all hold the {f}; keep one",
                source=src,
                field=cs[0].name,
            )
    cols = {f: cs[0] for f, cs in found.items()}
    for need in (("arrival",), ("prompt_tokens",), ("output_tokens",), ("ttft", "first_token"),
                 ("e2e", "finish")):  # fmt: skip
        if not any(f in cols for f in need):
            accepted = [n for f in need for n in ALIASES[f]]
            raise ConfigError(
                f"no column for the {' or '.join(need)}; accepted names: {', '.join(accepted)} "
                f"(time columns may end in _s or _ms); columns: {', '.join(header)}",
                source=src,
                field=need[0],
            )
    for a, b in (("ttft", "first_token"), ("e2e", "finish")):
        if a in cols and b in cols:
            raise ConfigError(
                f"both '{cols[a].name}' and '{cols[b].name}' given; keep one",
                source=src,
                field=cols[b].name,
            )
    return cols


def _check_problems(raw: RawChunk, src: str, latency_columns: set[str]) -> None:
    for pos, (column, reason) in sorted(raw.problems.items()):
        if column in latency_columns and reason == "missing":
            continue  # a failed request: no first token or finish
        raise ConfigError(reason, source=f"{src}:{raw.lines[pos]}", field=column or None)


def _bad_row(
    raw: RawChunk, field: str, bad: np.ndarray, src: str, column: str, reason: str
) -> None:
    where = np.flatnonzero(bad)
    if len(where):
        i = int(where[0])
        value = raw.values[field][i]
        raise ConfigError(
            f"{reason} (got {short_value(value)})", source=f"{src}:{raw.lines[i]}", field=column
        )


def _optional_numbers(values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Numbers; an empty string or a JSON null is NaN (a failed request), anything else bad."""
    s = pd.Series(values, dtype=object)
    empty = s.isna() | s.map(lambda v: isinstance(v, str) and not v.strip())
    num = pd.to_numeric(s.where(~empty, None), errors="coerce").to_numpy(dtype=float)
    bad = (~empty.to_numpy()) & ~np.isfinite(num)
    return num, bad
