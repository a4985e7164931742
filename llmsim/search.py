"""Searches over the arrival rate, by bisection: the most a configuration serves, the highest
rate under an SLO, the rate at which one configuration overtakes another.

Each takes a base scenario and dotted-path overrides (the same paths as ``llmsim run --set``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from llmsim.engine import simulate
from llmsim.result import SimulationResult
from llmsim.scenario import Scenario


def run_with(scenario: Scenario, overrides: dict[str, Any] | None = None) -> SimulationResult:
    """Simulate ``scenario`` with dotted-path overrides applied."""
    return simulate(scenario.with_overrides(overrides) if overrides else scenario)


def saturation_throughput(
    scenario: Scenario, num_requests: int | None = None, fixed: dict[str, Any] | None = None
) -> float:
    """Requests per second served when every request is present at t=0 (an offline run):
    the most the configuration can sustain. Measured to the finish of the first
    :data:`SATURATION_QUANTILE` of the requests, so that the last few long requests, served
    alone at the end, do not set the capacity."""
    res = run_with(scenario, {**(fixed or {}), **offline(scenario, num_requests)})
    finish = np.sort(res.requests.loc[res.requests["status"] == "finished", "finish"].to_numpy())
    if not len(finish):
        return 0.0
    k = max(1, math.ceil(SATURATION_QUANTILE * len(finish)))
    start = float(res.requests["arrival"].min())
    return k / (float(finish[k - 1]) - start)


SATURATION_QUANTILE = 0.99
"""Share of an offline run's requests whose finish measures saturation throughput."""


def offline(scenario: Scenario, num_requests: int | None = None) -> dict[str, Any]:
    """The overrides of an offline run: ``num_requests`` (default: the scenario's, else 1000)
    all present at t=0."""
    n = num_requests or scenario.workload.num_requests or 1000
    return {
        "workload.arrival": {"kind": "batch"},
        "workload.num_requests": n,
        "workload.duration_s": None,
    }


def max_rate_under(
    scenario: Scenario,
    metric: str,
    limit: float,
    *,
    lo: float,
    hi: float,
    fixed: dict[str, Any] | None = None,
    rel_tol: float = 0.02,
    max_runs: int = 12,
) -> float:
    """The highest Poisson arrival rate in [lo, hi] whose ``metric`` stays <= ``limit``,
    by bisection (assumes the metric grows with load). Returns ``lo`` if even ``lo`` fails."""
    ok = _meets(scenario, metric, limit, fixed)
    if not ok(lo):
        return lo
    if ok(hi):
        return hi
    return bisection(ok, lo, hi, rel_tol=rel_tol, max_runs=max_runs)[0]


def crossover_rate(
    a: Scenario,
    b: Scenario,
    metric: str,
    *,
    lo: float,
    hi: float,
    rel_tol: float = 0.02,
    max_runs: int = 12,
) -> float | None:
    """The arrival rate in [lo, hi] at which ``a``'s metric stops being below ``b``'s, by
    bisection; None when the order is the same at both ends."""

    def gap(rate: float) -> float:
        ra = run_with(a, {"workload.arrival.rate": rate}).summary[metric]
        rb = run_with(b, {"workload.arrival.rate": rate}).summary[metric]
        return float(ra - rb)

    g_lo, g_hi = gap(lo), gap(hi)
    if (g_lo < 0) == (g_hi < 0):
        return None

    def same_side_as_lo(rate: float) -> bool:
        return (gap(rate) < 0) == (g_lo < 0)

    lo, hi = bisection(same_side_as_lo, lo, hi, rel_tol=rel_tol, max_runs=max_runs)
    return (lo + hi) / 2


def bisection(
    ok: Callable[[float], bool], lo: float, hi: float, *, rel_tol: float, max_runs: int
) -> tuple[float, float]:
    """Narrow [lo, hi], where ``ok(lo)`` holds and ``ok(hi)`` does not, by halving it until it
    is within ``rel_tol`` of ``hi`` or ``ok`` has been called ``max_runs`` times; the final
    (lo, hi)."""
    for _ in range(max_runs):
        if hi - lo <= rel_tol * hi:
            break
        mid = (lo + hi) / 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo, hi


def _meets(
    scenario: Scenario, metric: str, limit: float, fixed: dict[str, Any] | None
) -> Callable[[float], bool]:
    def ok(rate: float) -> bool:
        res = run_with(scenario, {**(fixed or {}), "workload.arrival.rate": rate})
        return bool(res.summary[metric] <= limit)

    return ok
