"""Many runs of one scenario: a field swept by hand, or a grid of ``--vary`` axes run on an
executor with every finished point cached.

Every override is a dotted path (the same paths as ``llmsim run --set``), so what is swept is
exactly what a user could set by hand. :func:`run_sweep` gives one tidy table, a row per point
with every summary metric; the same scenario and seed give the same table, byte for byte, on
every executor and whether a point was computed now or read back from the cache.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmsim.atomic import atomic_write
from llmsim.diagnostics import provenance
from llmsim.engine import simulate
from llmsim.errors import ConfigError, LlmsimError
from llmsim.executors import Executor, LocalExecutor
from llmsim.grid import Axis, points
from llmsim.result import json_ready
from llmsim.run_cache import RunCache, scenario_key
from llmsim.scenario import Scenario
from llmsim.search import crossover_rate, max_rate_under, run_with, saturation_throughput

__all__ = [
    "DEFAULT_METRICS",
    "SATURATION_RATIO",
    "PointOutcome",
    "SweepResult",
    "crossover_rate",
    "max_rate_under",
    "run_many",
    "run_point",
    "run_seeds",
    "run_sweep",
    "run_with",
    "saturation_throughput",
    "seed_mean",
    "seed_values",
    "seeds_for",
    "sweep",
]

DEFAULT_METRICS = (
    "request_throughput",
    "output_throughput",
    "mean_ttft_ms",
    "median_ttft_ms",
    "p99_ttft_ms",
    "median_tpot_ms",
    "p99_tpot_ms",
    "p99_itl_ms",
    "mean_e2el_ms",
    "p99_e2el_ms",
    "mean_batch_size",
    "mean_decode_batch_size",
    "mean_kv_usage",
    "preemptions",
)

SATURATION_RATIO = 0.9
"""A point without the run's overload verdict (see :mod:`llmsim.diagnostics`) is saturated when
it serves less than this share of its offered request rate."""


def sweep(
    scenario: Scenario,
    field: str,
    values: Iterable[Any],
    *,
    fixed: dict[str, Any] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> pd.DataFrame:
    """One run per value of ``field``, in this process; a row per run with the chosen
    summary metrics."""
    rows = []
    for v in values:
        res = run_with(scenario, {**(fixed or {}), field: v})
        row: dict[str, Any] = {field: v}
        row.update({m: res.summary.get(m, float("nan")) for m in metrics})
        rows.append(row)
    return pd.DataFrame(rows)


def run_point(job: tuple[str, str]) -> dict[str, Any]:
    """Simulate one resolved scenario, given as (YAML text, source); the executors' task.

    Returns ``{"summary": {...}}`` (every number a float, NaN as None), or ``{"error": "..."}``
    when the run fails, so that one failing point never stops the others."""
    text, source = job
    try:
        summary = simulate(Scenario.from_yaml(text, source)).summary
    except LlmsimError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # a bug or a custom policy's own error: report, do not stop
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"summary": json_ready({k: float(v) for k, v in summary.items()})}


def run_many(
    scenarios: Sequence[Scenario], executor: Executor | None = None
) -> list[dict[str, Any]]:
    """The summaries (NaN as None) of resolved scenarios, in their order, on ``executor``;
    the first failing run is an error naming its scenario and seed."""
    jobs = [(sc.to_yaml(), sc.source) for sc in scenarios]
    out: list[dict[str, Any]] = [{} for _ in jobs]
    for i, reply in (executor or LocalExecutor()).map_unordered(run_point, jobs):
        if "error" in reply:
            sc = scenarios[i]
            raise LlmsimError(f"{sc.source} (seed {sc.seed}): {reply['error']}")
        out[i] = reply["summary"]
    return out


def seeds_for(scenario: Scenario, n: int) -> list[int]:
    """``n`` seeds from the scenario's own: seed, seed + 1, ..."""
    if n < 1:
        raise ConfigError(f"--seeds must be at least 1 (got {n})", field="--seeds")
    return [scenario.seed + i for i in range(n)]


def run_seeds(
    scenario: Scenario, seeds: Sequence[int], executor: Executor | None = None
) -> list[dict[str, Any]]:
    """The summary of ``scenario`` under each seed, in seed order (NaN as None)."""
    return run_many([scenario.with_overrides({"seed": s}) for s in seeds], executor)


def seed_values(summaries: Sequence[dict[str, Any]], key: str) -> list[float]:
    """``key`` in each summary (one per seed) that reports it."""
    return [float(v) for s in summaries if (v := s.get(key)) is not None]


def seed_mean(summaries: Sequence[dict[str, Any]], key: str) -> float:
    """The mean of ``key`` over the summaries that report it; NaN when none does."""
    nums = seed_values(summaries, key)
    return sum(nums) / len(nums) if nums else math.nan


@dataclass(frozen=True)
class PointOutcome:
    """One finished point: its overrides, where its result came from and its error if any."""

    index: int
    overrides: dict[str, Any]
    cached: bool
    error: str | None = None

    def describe(self) -> str:
        """``point 3 (workload.rate=12, policy.max_num_seqs=64)``."""
        where = ", ".join(f"{k}={v}" for k, v in self.overrides.items())
        return f"point {self.index} ({where})" if where else f"point {self.index}"


@dataclass(frozen=True)
class SweepResult:
    """The table (a row per point, in grid order) and what happened to each point."""

    table: pd.DataFrame
    axes: list[Axis]
    outcomes: list[PointOutcome]

    @property
    def failures(self) -> list[PointOutcome]:
        return [o for o in self.outcomes if o.error is not None]

    @property
    def computed(self) -> int:
        """Points simulated by this call (the rest came from the cache or failed early)."""
        return sum(1 for o in self.outcomes if not o.cached and o.error is None)

    def save(self, folder: Path) -> dict[str, Path]:
        """Write ``sweep.parquet`` and ``sweep.csv`` atomically."""
        paths = {"parquet": folder / "sweep.parquet", "csv": folder / "sweep.csv"}
        atomic_write(paths["parquet"], lambda p: self.table.to_parquet(p, index=False))
        atomic_write(paths["csv"], lambda p: self.table.to_csv(p, index=False))
        return paths


ProgressFn = Callable[[int, int, float | None, PointOutcome], None]
"""``progress(done, total, eta_seconds, outcome)`` after each point."""


def run_sweep(
    scenario: Scenario,
    axes: list[Axis],
    *,
    cache: Path | None = None,
    executor: Executor | None = None,
    progress: ProgressFn | None = None,
    reuse: bool = True,
) -> SweepResult:
    """Simulate every point of the grid ``axes`` over ``scenario``.

    ``cache``: a folder of finished points (see :mod:`llmsim.run_cache`); points found there
    are not simulated again (unless ``reuse`` is False), each point simulated is stored as
    soon as it finishes. A point
    whose overrides do not validate, or whose run fails, is reported in the outcomes and its
    table row (``status`` ``failed``, ``error``) without stopping the others; when every point
    fails validation the first error is raised instead (a wrong path, not a bad point).
    """
    grid = points(axes)
    store = RunCache(cache) if cache is not None else None
    executor = executor or LocalExecutor()
    resolved: list[Scenario | None] = []
    outcomes: dict[int, PointOutcome] = {}
    records: dict[int, dict[str, Any]] = {}
    first_error: LlmsimError | None = None
    for i, overrides in enumerate(grid):
        try:
            resolved.append(scenario.with_overrides(overrides) if overrides else scenario)
        except LlmsimError as exc:
            first_error = first_error or exc
            resolved.append(None)
            outcomes[i] = PointOutcome(i, overrides, False, str(exc))
    if first_error is not None and len(outcomes) == len(grid):
        raise first_error
    keys = {i: scenario_key(sc) for i, sc in enumerate(resolved) if sc is not None}
    todo: list[int] = []
    for i, key in keys.items():
        hit = store.get(key) if store is not None and reuse else None
        if hit is not None and isinstance(hit.get("summary"), dict):
            records[i] = hit["summary"]
            outcomes[i] = PointOutcome(i, grid[i], True)
        else:
            todo.append(i)
    total = len(grid)
    done = len(outcomes)
    if progress is not None:
        for i in sorted(outcomes):
            progress(done, total, None, outcomes[i])
    start = time.monotonic()
    jobs = [(resolved[i].to_yaml(), resolved[i].source) for i in todo]  # type: ignore[union-attr]
    for n, (j, reply) in enumerate(executor.map_unordered(run_point, jobs), start=1):
        i = todo[j]
        if "summary" in reply:
            records[i] = reply["summary"]
            if store is not None:
                store.put(keys[i], {"overrides": _plain(grid[i]), "summary": reply["summary"]})
            outcomes[i] = PointOutcome(i, grid[i], False)
        else:
            outcomes[i] = PointOutcome(i, grid[i], False, str(reply["error"]))
        done += 1
        if progress is not None:
            elapsed = time.monotonic() - start
            eta = elapsed / n * (len(todo) - n)
            progress(done, total, eta, outcomes[i])
    ordered = [outcomes[i] for i in range(total)]
    table = _table(axes, grid, resolved, records, ordered)
    return SweepResult(table, axes, ordered)


def _plain(overrides: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in overrides.items()}


def _table(
    axes: list[Axis],
    grid: list[dict[str, Any]],
    resolved: list[Scenario | None],
    records: dict[int, dict[str, Any]],
    outcomes: list[PointOutcome],
) -> pd.DataFrame:
    """A row per point: its index, the varied fields, what it ran (model, GPU, offered rate,
    what priced it: cost model, preset), its status and error, then every summary metric any
    point reported (first-seen order)."""
    metrics: list[str] = []
    for i in sorted(records):
        metrics += [k for k in records[i] if k not in metrics]
    rows = []
    for i, (overrides, sc, outcome) in enumerate(zip(grid, resolved, outcomes, strict=True)):
        rate = getattr(sc.workload.arrival, "rate", None) if sc is not None else None
        row: dict[str, Any] = {"point": i, **overrides}
        row["model"] = sc.model if sc is not None else ""
        row["hardware"] = sc.hardware if sc is not None else ""
        row["tensor_parallel"] = sc.tensor_parallel if sc is not None else 0
        row["offered_rate"] = float(rate) if rate is not None else float("nan")
        row["priced_by"] = "; ".join(provenance(sc)) if sc is not None else ""
        row["status"] = "failed" if outcome.error is not None else "ok"
        row["error"] = outcome.error or ""
        summary = records.get(i, {})
        for m in metrics:
            v = summary.get(m)
            row[m] = float("nan") if v is None else float(v)
        rows.append(row)
    table = pd.DataFrame(rows)
    for axis in axes:  # one type per column (parquet needs it): mixed values become text
        kinds = {type(v) for v in axis.values}
        if kinds == {int, float}:
            table[axis.path] = table[axis.path].astype(float)
        elif len(kinds) > 1 or not kinds <= {int, float, str, bool}:
            table[axis.path] = table[axis.path].map(str)
    served = table.get("request_throughput", np.nan)
    by_rate = np.asarray(served < SATURATION_RATIO * table["offered_rate"])
    verdict = table["overloaded"].to_numpy(float) if "overloaded" in table else None
    # the run's own overload verdict where it gave one, else the served/offered ratio
    table["saturated"] = (
        by_rate if verdict is None else np.where(np.isnan(verdict), by_rate, verdict == 1)
    )
    return table
