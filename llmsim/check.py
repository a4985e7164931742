"""A statistical gate for changes: a candidate against a baseline over paired seeds.

Both sides run the same scenario settings under the same N seeds, so each seed gives a pair
of runs on the same requests. Per metric, the change is the candidate's mean over the seeds
relative to the baseline's, with a paired bootstrap confidence interval (seeds resampled
with their pairs). A metric regresses when the whole interval lies on the worse side beyond
the tolerance: a difference the seeds cannot tell from noise never fails a check.

Requests that fail (``rejected``, and any ``*overload*`` / ``*rejected*`` key of the summary)
are checked on their own: a candidate with more of them than the baseline, summed over the
seeds, regresses whatever its latencies say (latencies are measured on completed requests,
so turning requests away would otherwise look like an improvement).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llmsim.atomic import atomic_write_text
from llmsim.errors import ConfigError, did_you_mean
from llmsim.executors import Executor
from llmsim.run_cache import scenario_digest
from llmsim.scenario import Scenario
from llmsim.sweep import run_seeds, seeds_for

DEFAULT_METRICS = (
    "p99_ttft_ms",
    "p99_tpot_ms",
    "p99_e2el_ms",
    "request_throughput",
    "goodput",
)
HIGHER_IS_BETTER = ("throughput", "goodput", "slo_attainment")
BASELINE_FORMAT = 1
CONFIDENCE = 0.95
RESAMPLES = 4000

Verdict = Literal[
    "regression", "within tolerance", "no significant change", "improvement", "no data"
]


def higher_is_better(metric: str) -> bool:
    return any(word in metric for word in HIGHER_IS_BETTER)


def failure_keys(summary: dict[str, Any]) -> list[str]:
    """The summary keys that count failed requests (or overload), whatever else is added."""
    return [k for k in summary if k == "rejected" or "overload" in k or "rejected" in k]


def paired_bootstrap(
    base: np.ndarray, cand: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float, float]:
    """Relative change of the mean (candidate / baseline - 1) and its percentile bootstrap
    interval at :data:`CONFIDENCE`, resampling the seed pairs together."""
    change = float(cand.mean() / base.mean() - 1)
    if base.size < 2 or np.array_equal(base, cand):
        return change, change, change
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, base.size, size=(resamples, base.size))
    stats = cand[idx].mean(axis=1) / base[idx].mean(axis=1) - 1
    tail = (1 - CONFIDENCE) / 2 * 100
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return change, float(lo), float(hi)


@dataclass(frozen=True)
class MetricCheck:
    """One metric of one scenario: per-seed values of both sides and the verdict."""

    scenario: str
    metric: str
    baseline: tuple[float, ...]
    candidate: tuple[float, ...]
    tolerance: float
    change: float  # relative change of the mean (counts: candidate total - baseline total)
    low: float
    high: float
    verdict: Verdict
    failures: bool = False  # a count of failed requests (compared by total, not by ratio)

    @property
    def regressed(self) -> bool:
        return self.verdict == "regression"

    def counts(self) -> str:
        """A failure count's totals over the seeds: ``0 -> 3``."""
        return f"{sum(self.baseline):g} -> {sum(self.candidate):g}"

    def describe(self) -> str:
        if self.failures:
            return f"{self.counts()} over the seeds"
        if self.verdict == "no data":
            return "not reported by both sides"
        return f"{self.change:+.1%} [{self.low:+.1%}, {self.high:+.1%}]"


def compare_metric(
    scenario: str,
    metric: str,
    base: Sequence[float],
    cand: Sequence[float],
    tolerance: float,
) -> MetricCheck:
    b = np.asarray(base, dtype=float)
    c = np.asarray(cand, dtype=float)
    keys = (scenario, metric, tuple(b.tolist()), tuple(c.tolist()), tolerance)
    if metric in failure_keys({metric: 0}):
        diff = float(np.nansum(c) - np.nansum(b))
        verdict: Verdict = "regression" if diff > 0 else "no significant change"
        return MetricCheck(*keys, diff, diff, diff, verdict, failures=True)
    ok = ~(np.isnan(b) | np.isnan(c))
    if not ok.any() or b[ok].mean() == 0:
        return MetricCheck(*keys, math.nan, math.nan, math.nan, "no data")
    change, lo, hi = paired_bootstrap(b[ok], c[ok])
    worse_lo, worse_hi = (-hi, -lo) if higher_is_better(metric) else (lo, hi)
    if worse_lo > tolerance:
        verdict = "regression"
    elif worse_lo > 0:
        verdict = "within tolerance"  # significantly worse, by less than the tolerance
    elif worse_hi < 0:
        verdict = "improvement"
    else:
        verdict = "no significant change"
    return MetricCheck(*keys, change, lo, hi, verdict)


@dataclass
class CheckReport:
    """Every metric check, and whether the candidate may pass."""

    checks: list[MetricCheck]
    seeds: int  # paired runs per side and scenario

    @property
    def regressions(self) -> list[MetricCheck]:
        return [c for c in self.checks if c.regressed]

    @property
    def passed(self) -> bool:
        return not self.regressions


def per_metric(summaries: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Summaries (one per seed) as metric -> values by seed (NaN where a run lacks one)."""
    keys: list[str] = []
    for s in summaries:
        keys += [k for k in s if k not in keys]
    return {k: [math.nan if s.get(k) is None else float(s[k]) for s in summaries] for k in keys}


def compare(
    scenario: str,
    base: dict[str, list[float]],
    cand: dict[str, list[float]],
    metrics: Sequence[str],
    tolerances: dict[str, float],
    default_tolerance: float,
    strict: bool = False,
) -> list[MetricCheck]:
    """The checks of one scenario: the chosen metrics either side reports (``strict``: a
    metric neither reports is an error), then every failure count either side reports."""
    checks = []
    n = max((len(v) for v in (*base.values(), *cand.values())), default=0)  # paired seeds
    for m in metrics:
        if strict and m not in base and m not in cand:
            raise ConfigError(
                f"metric '{m}' is not in the summary of '{scenario}'"
                f"{did_you_mean(m, [*base, *cand])}; valid: {', '.join(sorted(base))}",
                field="--metric",
            )
        if m in base or m in cand:
            nan = [math.nan] * n
            tol = tolerances.get(m, default_tolerance)
            checks.append(compare_metric(scenario, m, base.get(m, nan), cand.get(m, nan), tol))
    fails = failure_keys(base) + [k for k in failure_keys(cand) if k not in base]
    for k in fails:
        zeros = [0.0] * n
        checks.append(compare_metric(scenario, k, base.get(k, zeros), cand.get(k, zeros), 0.0))
    if any(c.failures and c.regressed for c in checks):  # fewer served is never better
        checks = [
            replace(c, verdict="no significant change") if c.verdict == "improvement" else c
            for c in checks
        ]
    return checks


# --- the committed baseline -----------------------------------------------------------------


def write_baseline(
    path: Path, runs: dict[str, tuple[Scenario, list[int], dict[str, list[float]]]]
) -> None:
    """Write the baseline file (atomically): per scenario name, its digest, the seeds and
    every summary metric by seed."""
    data = {
        "format": BASELINE_FORMAT,
        "scenarios": {
            name: {
                "digest": scenario_digest(sc, seed=False),
                "seeds": seeds,
                "metrics": {k: [None if math.isnan(v) else v for v in vs] for k, vs in m.items()},
            }
            for name, (sc, seeds, m) in runs.items()
        },
    }
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def read_baseline(path: Path) -> dict[str, dict[str, Any]]:
    """The scenarios of a baseline file; one-line errors for a missing or malformed file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            "baseline file not found; create it with --update-baseline", source=str(path)
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"not a readable baseline JSON ({exc})", source=str(path)) from None
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
        raise ConfigError(
            f"not an llmsim check baseline (format {BASELINE_FORMAT}); rewrite it with "
            "--update-baseline",
            source=str(path),
            field="format",
        )
    scenarios = data.get("scenarios")
    if not isinstance(scenarios, dict):
        raise ConfigError("missing the 'scenarios' mapping", source=str(path), field="scenarios")
    out: dict[str, dict[str, Any]] = {}
    for name, entry in scenarios.items():
        metrics = entry.get("metrics") if isinstance(entry, dict) else None
        if not isinstance(metrics, dict) or not isinstance(entry.get("seeds"), list):
            raise ConfigError(
                "each scenario needs 'seeds' and 'metrics'", source=str(path), field=name
            )
        entry["metrics"] = {
            k: [math.nan if v is None else float(v) for v in vs] for k, vs in metrics.items()
        }
        out[name] = entry
    return out


# --- what is compared -----------------------------------------------------------------------


def with_policy(scenario: Scenario, class_path: str) -> Scenario:
    """``scenario`` with its policy replaced by the class ``class_path`` (``kind: custom``),
    the policy's other settings kept (the class's Config validates them)."""
    return scenario.with_overrides({"policy.kind": "custom", "policy.class": class_path})


def parse_tolerances(items: Sequence[str], default: float) -> tuple[float, dict[str, float]]:
    """``["0.05", "p99_ttft_ms=0.1"]`` -> (0.05, {"p99_ttft_ms": 0.1}); fractions >= 0."""
    per: dict[str, float] = {}
    for item in items:
        name, _, raw = item.rpartition("=")
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not value >= 0:
            raise ConfigError(
                f"'{item}' must be a fraction >= 0 (0.05 is 5 %), alone or as metric=0.05",
                field="--tolerance",
            )
        if name:
            per[name] = value
        else:
            default = value
    return default, per


Baseline = Scenario | dict[str, list[float]]
"""A baseline scenario to run, or its stored values (metric -> values by seed)."""


def check_scenarios(
    pairs: Sequence[tuple[Baseline, Scenario]],
    seeds: int,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    tolerance: float = 0.05,
    tolerances: dict[str, float] | None = None,
    executor: Executor | None = None,
    strict: bool = False,
) -> CheckReport:
    """Run each (baseline, candidate) pair under ``seeds`` paired seeds (the baseline's seed
    and the next ones, or the candidate's for a stored baseline) and compare them. A stored
    baseline is not run again."""
    checks: list[MetricCheck] = []
    for base, cand in pairs:
        chosen = seeds_for(base if isinstance(base, Scenario) else cand, seeds)
        base_values = (
            per_metric(run_seeds(base, chosen, executor)) if isinstance(base, Scenario) else base
        )
        cand_values = per_metric(run_seeds(cand, chosen, executor))
        checks += compare(
            cand.name, base_values, cand_values, metrics, tolerances or {}, tolerance, strict
        )
    return CheckReport(checks, seeds)
