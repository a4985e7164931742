"""A vLLM ``benchmark_serving.py`` / ``vllm bench serve`` result (``.json``) read as a run: its
traffic settings become the workload (arrivals at ``request_rate`` with its ``burstiness``,
``num_prompts`` requests, lengths from the per-request lists of ``--save-detailed`` in send
order, else fixed at the run's means) and its reported metrics the measurements."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
import pandas as pd

from llmsim.e2e.parsed import ParsedRun, count_requests, short_value, workload_config
from llmsim.e2e.runs import client_metrics, whole_run
from llmsim.errors import ConfigError
from llmsim.workload.traces.files import open_text

BENCHMARK_REQUIRED = ("request_rate", "completed", "total_input_tokens", "total_output_tokens",
                      "duration")  # fmt: skip
"""Keys every vLLM benchmark result has."""

DETAIL_KEYS = ("input_lens", "output_lens", "ttfts", "itls", "errors")
"""The per-request lists a result saved with ``--save-detailed`` holds, in send order."""

VLLM_METRICS: dict[str, str] = {"ttft": "ttft", "e2el": "e2e", "tpot": "tpot", "itl": "itl_vllm"}
"""vLLM's metric word -> the ServingRun metric prefix. vLLM's ITL is the gap between streamed
chunks, pooled over all requests; the ServingRun's ``itl_mean`` is (E2E mean - TTFT mean) /
(mean output - 1), so vLLM's is kept apart as ``itl_vllm_*``."""

_PERCENTILE = re.compile(r"^p(\d+(?:\.\d+)?)_(ttft|tpot|itl|e2el)_ms$")


def _read_benchmark(src: str) -> ParsedRun:
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
            keep = ("ttft_",) + (("e2e_",) if "e2e" in detail else ())
            measured.update(
                (k, v) for k, v in whole_run(client_metrics(df)).items() if k.startswith(keep)
            )
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
        notes.append(f"{count_requests(failed)} failed: left out of the replay")

    if math.isinf(rate):
        arrival: dict[str, Any] = {"kind": "batch"}
    elif math.isinf(burst):
        arrival = {"kind": "constant", "rate": rate}
    elif burst == 1.0:
        arrival = {"kind": "poisson", "rate": rate}
    else:  # gamma gaps of shape k have a coefficient of variation 1/sqrt(k)
        arrival = {"kind": "gamma", "rate": rate, "cv": 1.0 / math.sqrt(burst)}
    # the client's cap on requests in flight (a request due while the cap is reached waits)
    capped = {"max_concurrency": cap} if cap is not None and cap < n else {}
    workload = workload_config({"arrival": arrival, **lengths, "num_requests": n, **capped}, src)

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
    return ParsedRun(workload, measured, notes)


def _details(data: dict[str, Any], src: str) -> dict[str, np.ndarray] | None:
    """The per-request lists, checked; None when the result has none."""
    if "input_lens" not in data and "output_lens" not in data:
        return None
    lists: dict[str, list[Any]] = {}
    for key in DETAIL_KEYS:
        if key in data and data[key] is not None:
            if not isinstance(data[key], list):
                raise ConfigError(
                    f"must be a list, one entry per request (got {short_value(data[key])})",
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
                        f"must be a list of non-negative numbers (got {short_value(gaps)})",
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
        raise ConfigError(f"must be a number (got {short_value(v)})", source=src, field=key)
    return float(v)


def _count(data: dict[str, Any], key: str, src: str) -> int:
    v = data[key]
    if not _is_number(v) or v != math.floor(v) or v < 0:
        raise ConfigError(f"must be an integer >= 0 (got {short_value(v)})", source=src, field=key)
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
    raise ConfigError(f"must be {valid} (got {short_value(v)})", source=src, field=key)
