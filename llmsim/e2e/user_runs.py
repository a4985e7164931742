"""A user's own serving run, read as a :class:`~llmsim.e2e.runs.ServingRun`.

Two kinds of file are read (the formats are documented in ``docs/user_runs.md``):

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

import warnings
from pathlib import Path
from typing import Any

from llmsim.config_io import read_yaml, validate_data
from llmsim.e2e.benchmark_json import VLLM_METRICS, _read_benchmark
from llmsim.e2e.parsed import TimeUnit
from llmsim.e2e.request_log import _read_requests
from llmsim.e2e.runs import WHOLE_RUN, ServingRun
from llmsim.errors import ConfigError
from llmsim.scenario import Scenario

FORMATS: dict[str, str] = {
    ".json": "benchmark",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
"""File suffix (before an optional ``.gz``) -> what the file is read as."""


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
    and key. What the replay cannot model (dropped failed requests, missing per-request
    lengths) is said in ``notes`` and as a warning.
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
