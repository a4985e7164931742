"""A user's own serving run, read as a :class:`~llmsim.e2e.runs.ServingRun`.

Two kinds of file are read (the formats are documented in ``docs/fidelity.md``):

- a vLLM ``benchmark_serving.py`` / ``vllm bench serve`` result (``.json``): its traffic settings
  become the workload (arrivals at ``request_rate`` with its ``burstiness``, ``num_prompts``
  requests, lengths from the per-request lists of ``--save-detailed`` in send order, else fixed
  at the run's means) and its reported metrics the measurements;
- a per-request log (``.csv`` or ``.jsonl``, optionally gzipped): one row per request with its
  arrival time, prompt and output tokens, TTFT and finish time (or E2E latency). It is replayed
  as a trace at its own arrival times, and measured with :func:`~llmsim.e2e.runs.client_metrics`
  from the same rows.

The engine side (model, hardware, parallelism, engine preset and settings, policy) comes from a
scenario the user writes; its workload, if any, is replaced by the one read from the run.
"""

from __future__ import annotations

import csv
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from llmsim.config_io import read_yaml, validate_data
from llmsim.e2e.runs import WHOLE_RUN, ServingRun, client_metrics
from llmsim.errors import ConfigError
from llmsim.scenario import Scenario
from llmsim.workload import TraceColumns, TraceConfig, WorkloadConfig
from llmsim.workload.traces import fields as conv
from llmsim.workload.traces.files import RawChunk, csv_chunks, jsonl_chunks, open_text

TimeUnit = Literal["s", "ms"]

FORMATS: dict[str, str] = {
    ".json": "benchmark",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
"""File suffix (before an optional ``.gz``) -> what the file is read as."""

BENCHMARK_REQUIRED = ("request_rate", "completed", "total_input_tokens", "total_output_tokens",
                      "duration")  # fmt: skip
"""Keys every vLLM benchmark result has."""

DETAIL_KEYS = ("input_lens", "output_lens", "ttfts", "itls", "errors")
"""The per-request lists a result saved with ``--save-detailed`` holds, in send order."""

VLLM_METRICS: dict[str, str] = {"ttft": "ttft", "e2el": "e2e", "tpot": "tpot", "itl": "itl_vllm"}
"""vLLM's metric word -> the ServingRun metric prefix. vLLM's ITL is the gap between streamed
chunks, pooled over all requests; the ServingRun's ``itl_mean`` is (E2E mean - TTFT mean) /
(mean output - 1), so vLLM's is kept apart as ``itl_vllm_*``."""

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

_PERCENTILE = re.compile(r"^p(\d+(?:\.\d+)?)_(ttft|tpot|itl|e2el)_ms$")


def load_user_run(
    path: str | Path,
    engine_scenario: Scenario | str | Path,
    *,
    seed: int | None = None,
    time_unit: TimeUnit = "s",
) -> ServingRun:
    """Read a user's serving run: the workload it sent and what its client measured.

    ``engine_scenario`` is a Scenario or a scenario file (its ``workload`` may be left out; see
    :func:`load_engine_scenario`). ``seed`` replaces the scenario's seed (it draws arrival times
    for a benchmark result). ``time_unit`` is the unit of per-request log columns whose name has
    no ``_s`` / ``_ms`` suffix. Bad input raises a one-line :class:`ConfigError` naming the file
    and key. What the replay cannot model (a concurrency cap under a finite rate, dropped failed
    requests) is said in ``notes`` and as a warning.
    """
    p = Path(path)
    src = str(p)
    scenario = (
        engine_scenario
        if isinstance(engine_scenario, Scenario)
        else load_engine_scenario(engine_scenario)
    )
    fmt = _format(p)
    if not p.is_file():
        raise ConfigError("file not found", source=src)
    parsed = _read_benchmark(src) if fmt == "benchmark" else _read_requests(src, fmt, time_unit)
    for note in parsed.notes:
        warnings.warn(f"{src}: {note}", UserWarning, stacklevel=2)
    name = p.name[: -len(".gz")] if p.name.lower().endswith(".gz") else p.name
    update: dict[str, Any] = {"workload": parsed.workload, "name": Path(name).stem}
    if seed is not None:
        update["seed"] = seed
    return ServingRun(
        key=update["name"],
        group=scenario.model,
        scenario=scenario.model_copy(update=update),
        measured={(WHOLE_RUN, k): float(v) for k, v in parsed.measured.items()},
        source=src,
        notes=tuple(parsed.notes),
    )


def load_engine_scenario(path: str | Path) -> Scenario:
    """A scenario file giving the engine side of a run; ``workload`` may be left out.

    A left-out workload is filled with a one-request placeholder, which
    :func:`load_user_run` replaces with the run's.
    """
    data = read_yaml(path)
    if isinstance(data, dict) and "workload" not in data:
        data = {**data, "workload": _PLACEHOLDER}
    scenario = validate_data(Scenario, data, str(path))
    scenario._source = str(path)
    return scenario


_PLACEHOLDER = {
    "arrival": {"kind": "batch"},
    "prompt_tokens": {"kind": "fixed", "value": 1},
    "output_tokens": {"kind": "fixed", "value": 1},
    "num_requests": 1,
}


def simulated_extras(summary: dict[str, float]) -> dict[str, float]:
    """vLLM's own TPOT and ITL statistics of a simulated run, under the ServingRun names.

    ``summary`` is a :class:`~llmsim.result.SimulationResult` summary (``mean_tpot_ms``...);
    returns ``tpot_mean``, ``tpot_p50``, ..., ``itl_vllm_p99``: the same names as the extra
    metrics :func:`load_user_run` reads from a benchmark result, to compare them.
    """
    out: dict[str, float] = {}
    for word in ("tpot", "itl"):
        name = VLLM_METRICS[word]
        for stat in ("mean", "median", "p90", "p99"):
            key = f"{stat}_{word}_ms"
            if key in summary:
                out[f"{name}_{'p50' if stat == 'median' else stat}"] = float(summary[key])
    return out


@dataclass
class _Parsed:
    workload: WorkloadConfig
    measured: dict[str, float]
    notes: list[str] = field(default_factory=list)


def _format(p: Path) -> str:
    name = p.name.lower()
    name = name[: -len(".gz")] if name.endswith(".gz") else name
    suffix = Path(name).suffix
    if suffix not in FORMATS:
        raise ConfigError(
            f"unknown run file type '{suffix or name}'; valid: .json (a vLLM benchmark result), "
            ".csv, .jsonl or .ndjson (one row per request), optionally .gz",
            source=str(p),
        )
    return FORMATS[suffix]


# --- vLLM benchmark results -------------------------------------------------------------------


def _read_benchmark(src: str) -> _Parsed:
    with open_text(src) as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            raise ConfigError(
                f"more than one JSON document (line {exc.lineno}): a file written with "
                "--append-result holds one result per line; keep one result per file "
                "(a per-request log must be named .jsonl)",
                source=src,
            ) from None
        raise ConfigError(f"not valid JSON ({exc.msg}, line {exc.lineno})", source=src) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a vLLM benchmark result (a JSON object), got a JSON {type(data).__name__}",
            source=src,
        )
    for key in BENCHMARK_REQUIRED:
        if key not in data:
            raise ConfigError(
                "missing: not a vLLM benchmark_serving result? one has "
                f"{', '.join(BENCHMARK_REQUIRED)}",
                source=src,
                field=key,
            )
    if data.get("ramp_up_strategy") is not None:
        raise ConfigError(
            f"'{data['ramp_up_strategy']}' ramp-up is not supported: the rate changes during "
            "the run; valid: a run without --ramp-up-strategy",
            source=src,
            field="ramp_up_strategy",
        )
    rate = _positive(data, "request_rate", src, allow_inf=True)
    burst = _positive(data, "burstiness", src, allow_inf=True, default=1.0)
    cap = data.get("max_concurrency")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise ConfigError(
            f"must be a positive integer or null (got {cap!r})", source=src, field="max_concurrency"
        )
    completed = _count(data, "completed", src)
    if completed == 0:
        raise ConfigError(
            "no request completed: nothing was measured", source=src, field="completed"
        )
    total_in = _count(data, "total_input_tokens", src)
    total_out = _count(data, "total_output_tokens", src)
    duration = _positive(data, "duration", src)
    notes: list[str] = []
    measured: dict[str, float] = {}

    detail = _details(data, src)
    if detail is not None:
        ok = detail["ok"]
        n = int(ok.sum())
        if n != completed:
            raise ConfigError(
                f"{completed} but the per-request lists hold {n} successful requests",
                source=src,
                field="completed",
            )
        pairs = tuple(zip(detail["input"][ok].tolist(), detail["output"][ok].tolist(), strict=True))
        lengths: dict[str, Any] = {"lengths": {"inline": pairs, "in_order": True}}
        failed = int((~ok).sum())
        if "ttft" in detail:
            df = pd.DataFrame(
                {
                    "request_id": np.arange(len(ok)),
                    "arrival": np.zeros(len(ok)),  # not saved; latencies only need differences
                    "first_token": np.where(ok, detail["ttft"], np.nan),
                    "finish": np.where(ok, detail.get("e2e", np.full(len(ok), np.nan)), np.nan),
                    "prompt_tokens": detail["input"],
                    "output_tokens": detail["output"],
                }
            )
            if "e2e" not in detail:  # no ITLs: TTFT only; finish is a placeholder
                df["finish"] = df["first_token"]
            rows = client_metrics(df)
            keep = ("ttft_",) + (("e2e_",) if "e2e" in detail else ())
            for _, r in rows[rows["stage"] == WHOLE_RUN].iterrows():
                if str(r["metric"]).startswith(keep):
                    measured[str(r["metric"])] = float(r["value"])
    else:
        n = completed
        failed = _failed(data, completed)
        lengths = {
            "prompt_tokens": {"kind": "fixed", "value": max(1, round(total_in / completed))},
            "output_tokens": {"kind": "fixed", "value": max(1, round(total_out / completed))},
        }
        notes.append(
            "no per-request lists (--save-detailed): every request replayed with the run's mean "
            "prompt and output lengths"
        )
    if failed:
        notes.append(f"{_requests(failed)} failed: left out of the replay")

    if math.isinf(rate):
        if cap is not None and cap < n:
            arrival: dict[str, Any] = {"kind": "closed_loop", "clients": cap}
        else:
            arrival = {"kind": "batch"}
    else:
        if math.isinf(burst):
            arrival = {"kind": "constant", "rate": rate}
        elif burst == 1.0:
            arrival = {"kind": "poisson", "rate": rate}
        else:  # gamma gaps of shape k have a coefficient of variation 1/sqrt(k)
            arrival = {"kind": "gamma", "rate": rate, "cv": 1.0 / math.sqrt(burst)}
        if cap is not None and cap < n:
            notes.append(
                f"max_concurrency {cap} is not modelled: requests arrive at {rate:g}/s "
                "without the client's cap on requests in flight"
            )
    workload = _workload({"arrival": arrival, **lengths, "num_requests": n}, src)

    for key in data:
        m = _PERCENTILE.match(key)
        if m is not None:
            measured[f"{VLLM_METRICS[m.group(2)]}_p{m.group(1)}"] = _number(data, key, src)
        for word, name in VLLM_METRICS.items():
            if key == f"mean_{word}_ms":
                measured[f"{name}_mean"] = _number(data, key, src)
            elif key == f"median_{word}_ms":
                measured[f"{name}_p50"] = _number(data, key, src)
    out_mean = total_out / completed
    measured.update(
        requests_per_sec=completed / duration,
        output_tokens_per_sec=total_out / duration,
        input_tokens_per_sec=total_in / duration,
        prompt_len_mean=total_in / completed,
        output_len_mean=out_mean,
        n_success=float(completed),
        n_failed=float(failed),
    )
    for key, name in (("request_throughput", "requests_per_sec"),
                      ("output_throughput", "output_tokens_per_sec")):  # fmt: skip
        if key in data:
            measured[name] = _number(data, key, src)
    if "e2e_mean" in measured and "ttft_mean" in measured and out_mean > 1:
        measured["itl_mean"] = (measured["e2e_mean"] - measured["ttft_mean"]) / (out_mean - 1)
    elif "tpot_mean" in measured:
        measured["itl_mean"] = measured["tpot_mean"]
        notes.append(
            "itl_mean is vLLM's mean TPOT: the result has no E2E latency (add e2el to "
            "--percentile-metrics, or save per-request data with --save-detailed)"
        )
    if "ttft_mean" not in measured and "e2e_mean" not in measured:
        raise ConfigError(
            "no latency measured: the result has neither TTFT nor E2E figures; valid: a result "
            "with mean_ttft_ms or mean_e2el_ms, or per-request ttfts",
            source=src,
            field="mean_ttft_ms",
        )
    return _Parsed(workload, measured, notes)


def _details(data: dict[str, Any], src: str) -> dict[str, np.ndarray] | None:
    """The per-request lists, checked; None when the result has none."""
    if "input_lens" not in data and "output_lens" not in data:
        return None
    lists: dict[str, list[Any]] = {}
    for key in DETAIL_KEYS:
        if key in data and data[key] is not None:
            if not isinstance(data[key], list):
                raise ConfigError(
                    f"must be a list, one entry per request (got {_short(data[key])})",
                    source=src,
                    field=key,
                )
            lists[key] = data[key]
    for key in ("input_lens", "output_lens"):
        if key not in lists:
            raise ConfigError(
                "missing: per-request lists need both input_lens and output_lens",
                source=src,
                field=key,
            )
    n = len(lists["input_lens"])
    if n == 0:
        raise ConfigError("empty: no requests", source=src, field="input_lens")
    for key, values in lists.items():
        if len(values) != n:
            raise ConfigError(
                f"has {len(values)} entries but input_lens has {n}: the per-request lists "
                "must be equally long",
                source=src,
                field=key,
            )
    inp = _int_list(lists["input_lens"], "input_lens", src, minimum=1)
    out = _int_list(lists["output_lens"], "output_lens", src, minimum=0)
    if "errors" in lists:
        errs = lists["errors"]
        ok = np.array([e is None or e == "" for e in errs], dtype=bool)
    else:
        ok = out > 0
    bad = np.flatnonzero(ok & (out < 1))
    if len(bad):
        i = int(bad[0])
        raise ConfigError(
            f"a request without an error must have produced a token (got {out[i]})",
            source=src,
            field=f"output_lens[{i}]",
        )
    res: dict[str, np.ndarray] = {"input": inp, "output": out, "ok": ok}
    if "ttfts" in lists:
        res["ttft"] = _float_list(lists["ttfts"], "ttfts", src, ok)
        if "itls" in lists:
            # The client's own E2E latency is its TTFT plus every gap after the first token.
            e2e = np.full(n, np.nan)
            for i, gaps in enumerate(lists["itls"]):
                if not ok[i]:
                    continue
                if not isinstance(gaps, list) or not all(_is_number(g) and g >= 0 for g in gaps):
                    raise ConfigError(
                        f"must be a list of non-negative numbers (got {_short(gaps)})",
                        source=src,
                        field=f"itls[{i}]",
                    )
                e2e[i] = res["ttft"][i] + float(sum(gaps))
            res["e2e"] = e2e
    return res


def _int_list(values: list[Any], key: str, src: str, *, minimum: int) -> np.ndarray:
    for i, v in enumerate(values):
        if not _is_number(v) or v != math.floor(v) or v < minimum:
            what = "a positive integer" if minimum > 0 else "an integer >= 0"
            raise ConfigError(f"must be {what} (got {v!r})", source=src, field=f"{key}[{i}]")
    return np.asarray(values, dtype=np.int64)


def _float_list(values: list[Any], key: str, src: str, ok: np.ndarray) -> np.ndarray:
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if not ok[i]:
            continue
        if not _is_number(v) or not math.isfinite(v) or v < 0:
            raise ConfigError(
                f"must be a number of seconds >= 0 (got {v!r})", source=src, field=f"{key}[{i}]"
            )
        out[i] = float(v)
    return out


def _failed(data: dict[str, Any], completed: int) -> int:
    if _is_number(data.get("failed")):
        return int(data["failed"])
    if _is_number(data.get("num_prompts")):
        return max(0, int(data["num_prompts"]) - completed)
    return 0


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _number(data: dict[str, Any], key: str, src: str) -> float:
    v = data[key]
    if not _is_number(v) or not math.isfinite(v):
        raise ConfigError(f"must be a number (got {_short(v)})", source=src, field=key)
    return float(v)


def _count(data: dict[str, Any], key: str, src: str) -> int:
    v = data[key]
    if not _is_number(v) or v != math.floor(v) or v < 0:
        raise ConfigError(f"must be an integer >= 0 (got {_short(v)})", source=src, field=key)
    return int(v)


def _positive(
    data: dict[str, Any],
    key: str,
    src: str,
    *,
    allow_inf: bool = False,
    default: float | None = None,
) -> float:
    v: Any = data.get(key, default)
    if v is None and default is not None:
        v = default
    if allow_inf and isinstance(v, str) and v.strip().lower() in ("inf", "infinity"):
        return math.inf
    if _is_number(v) and v > 0 and (allow_inf or math.isfinite(v)):
        return float(v)
    valid = 'a positive number or "inf"' if allow_inf else "a positive number"
    raise ConfigError(f"must be {valid} (got {_short(v)})", source=src, field=key)


def _requests(n: int) -> str:
    return f"{n} request{'s' if n != 1 else ''}"


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _workload(data: dict[str, Any], src: str) -> WorkloadConfig:
    return validate_data(WorkloadConfig, data, src)


# --- per-request logs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    name: str
    """The column's name in the file."""
    unit: TimeUnit


def _read_requests(src: str, fmt: str, default_unit: TimeUnit) -> _Parsed:
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
            f"{_fmt(arrival[i])} s is before the row above it ({_fmt(arrival[i - 1])} s): rows "
            f"must be in arrival order; sort the file by '{cols['arrival'].name}'",
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
                f"comes {_fmt((earlier[i] - later[i]) * 1e3)} ms before {what}: "
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
    rows = client_metrics(df)
    measured = {
        str(r["metric"]): float(r["value"]) for _, r in rows[rows["stage"] == WHOLE_RUN].iterrows()
    }
    notes = []
    if failed.any():
        notes.append(
            f"{_requests(int(failed.sum()))} without a first token or finish count as "
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
    return _Parsed(_workload({"trace": trace.model_dump()}, src), measured, notes)


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
            f"{reason} (got {_short(value)})", source=f"{src}:{raw.lines[i]}", field=column
        )


def _optional_numbers(values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Numbers; an empty string or a JSON null is NaN (a failed request), anything else bad."""
    s = pd.Series(values, dtype=object)
    empty = s.isna() | s.map(lambda v: isinstance(v, str) and not v.strip())
    num = pd.to_numeric(s.where(~empty, None), errors="coerce").to_numpy(dtype=float)
    bad = (~empty.to_numpy()) & ~np.isfinite(num)
    return num, bad
