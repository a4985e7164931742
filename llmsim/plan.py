"""Capacity planning: the smallest fleet of each candidate deployment that meets the SLOs at
the target load, found by simulating the fleet, and what it costs.

For each candidate (a set of overrides: GPU type, tensor parallelism, precision, preset,
policy knobs), the planner

1. estimates from one replica: the highest arrival rate one replica serves within the SLOs
   (bisection on the rate, the first seed), so ``ceil(target / that)`` replicas;
2. simulates the whole fleet (``data_parallel`` replicas behind the router) at the target
   load under every seed, and searches the replica count from that estimate: down while the
   fleet still passes, up (doubling) while it fails, then by bisection, assuming more replicas
   never make the SLOs harder to meet. A fleet passes when every seed meets every SLO with
   no rejected request and no saturation.

A replica's share of a fleet's load is burstier than a dedicated load at the same rate is
not: the per-replica estimate is only where the search starts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmsim.errors import ConfigError, LlmsimError
from llmsim.executors import Executor, LocalExecutor
from llmsim.hardware import get_hardware
from llmsim.metric_names import LATENCIES, STATISTICS, metric_key
from llmsim.scenario import Scenario
from llmsim.search import bisection, offline
from llmsim.sweep import SATURATION_RATIO, run_many, run_seeds, seed_mean, seed_values, seeds_for

MAX_REPLICAS = 4096
GROWTH_CAP = 8
"""The search gives up above this many times the per-replica estimate."""
NEAR_EDGE = 0.1
"""A fleet whose worst seed is within this share of an SLO limit sits near its edge."""


@dataclass(frozen=True)
class SLO:
    """``metric`` (a summary key) must stay below (``upper``) or above ``limit``."""

    text: str
    metric: str
    limit: float
    upper: bool

    def met(self, value: float | None) -> bool:
        if value is None or math.isnan(value):
            return False
        return value <= self.limit if self.upper else value >= self.limit

    def margin(self, value: float) -> float:
        """How far inside the limit ``value`` is, as a share of the limit (< 0: violated)."""
        return (
            (self.limit - value) / self.limit if self.upper else (value - self.limit) / self.limit
        )


_SLO = re.compile(r"^\s*([A-Za-z_0-9:.]+?)\s*(<=|>=|<|>)\s*([0-9.eE+-]+)\s*$")


def parse_slo(text: str) -> SLO:
    """``ttft:p99<2000`` (ms), ``tpot:p50<50``, ``e2e:p90<30000``, ``goodput>18``,
    ``slo_attainment>=0.99`` or any summary key: ``p99_itl_ms<200``."""
    m = _SLO.match(text)
    if m is None:
        raise ConfigError(
            f"'{text}' must look like metric:percentile<limit, e.g. ttft:p99<2000",
            field="--slo",
        )
    name, op, raw = m.groups()
    try:
        limit = float(raw)
    except ValueError:
        raise ConfigError(f"limit '{raw}' of '{text}' is not a number", field="--slo") from None
    if ":" in name:
        lat, _, pct = name.partition(":")
        if lat not in LATENCIES or pct not in STATISTICS:
            raise ConfigError(
                f"unknown SLO metric '{name}'; valid: {'/'.join(LATENCIES)} with "
                f":{'/'.join(STATISTICS)}, goodput, slo_attainment or a summary key",
                field="--slo",
            )
        metric = metric_key(lat, pct)
    else:
        metric = name
    return SLO(text.strip(), metric, limit, op.startswith("<"))


@dataclass(frozen=True)
class Candidate:
    """A deployment to size: a label and the overrides that make it."""

    label: str
    overrides: dict[str, Any]


def parse_candidate(text: str) -> Candidate:
    """``"hardware=H100-SXM,tensor_parallel=4"`` -> a candidate with those overrides."""
    from llmsim.scenario import parse_override

    items = [p for p in text.split(",") if p.strip()]
    if not items:
        raise ConfigError("an empty candidate; e.g. hardware=H100-SXM,tensor_parallel=2",
                          field="--candidate")  # fmt: skip
    return Candidate(text, dict(parse_override(p, "--candidate") for p in items))


@dataclass
class FleetRun:
    """A fleet size simulated under every seed."""

    replicas: int
    summaries: list[dict[str, Any]]
    passed: list[bool]
    reasons: list[str]

    @property
    def passes(self) -> bool:
        return all(self.passed)


@dataclass
class CandidatePlan:
    """The answer for one candidate."""

    candidate: Candidate
    scenario: Scenario  # the candidate at the target load, one replica
    gpus_per_replica: int
    price_per_gpu_hour: float
    per_replica_rate: float
    estimate: int  # replicas the per-replica rate asks for
    fleets: dict[int, FleetRun] = field(default_factory=dict)
    replicas: int | None = None  # the smallest passing fleet; None: none up to the cap
    error: str | None = None

    @property
    def chosen(self) -> FleetRun | None:
        return self.fleets.get(self.replicas) if self.replicas is not None else None

    @property
    def gpus(self) -> int:
        return (self.replicas or 0) * self.gpus_per_replica

    @property
    def dollars_per_hour(self) -> float:
        return self.gpus * self.price_per_gpu_hour if self.replicas else math.nan

    def mean(self, key: str) -> float:
        run = self.chosen
        return seed_mean(run.summaries, key) if run is not None else math.nan

    @property
    def output_tokens_per_s(self) -> float:
        return self.mean("output_throughput")

    @property
    def dollars_per_million_output(self) -> float:
        tps = self.output_tokens_per_s
        return self.dollars_per_hour / (tps * 3600) * 1e6 if tps > 0 else math.nan

    @property
    def tokens_per_gpu(self) -> float:
        return self.output_tokens_per_s / self.gpus if self.gpus else math.nan

    @property
    def tokens_per_user(self) -> float:
        """Per-user decode speed: 1000 / mean TPOT (output tokens per second per request)."""
        tpot = self.mean("mean_tpot_ms")
        return 1e3 / tpot if tpot > 0 else math.nan


def pareto(plans: Sequence[CandidatePlan]) -> list[CandidatePlan]:
    """The sized plans no other beats on both output tokens/s per GPU and per-user speed."""
    ok = [p for p in plans if p.replicas is not None]
    return [
        p
        for p in ok
        if not any(
            q.tokens_per_gpu >= p.tokens_per_gpu
            and q.tokens_per_user >= p.tokens_per_user
            and (q.tokens_per_gpu, q.tokens_per_user) != (p.tokens_per_gpu, p.tokens_per_user)
            for q in ok
        )
    ]


def judge(summary: dict[str, Any], slos: Sequence[SLO], rate: float) -> tuple[bool, str]:
    """Whether one run meets every SLO, and if not why (the first reason)."""
    if summary.get("rejected"):
        return False, f"{int(summary['rejected'])} requests rejected"
    for key in summary:
        if "overload" in key and summary[key]:
            return False, f"{key} = {summary[key]:g}"
    served = summary.get("request_throughput") or 0.0
    if rate and served < SATURATION_RATIO * rate:
        return False, f"saturated: {served:.2f} of {rate:g} req/s served"
    for slo in slos:
        value = summary.get(slo.metric)
        if not slo.met(value):
            return False, f"{slo.metric} = {value if value is None else round(value, 2)}"
    return True, ""


def sustained_rate(
    scenario: Scenario,
    slos: Sequence[SLO],
    executor: Executor,
    *,
    replicas: int = 1,
    seeds: Sequence[int] | None = None,
    rel_tol: float = 0.05,
    max_runs: int = 10,
) -> float:
    """The highest Poisson rate a fleet of ``replicas`` serves within the SLOs under every
    seed (default: the scenario's), by bisection between a 64th of the fleet's offline
    capacity and that capacity; 0 when even the lowest fails."""
    fleet = {**offline(scenario), "data_parallel": replicas}
    first = run_many([scenario.with_overrides(fleet)], executor)[0]
    for slo in slos:
        if slo.metric not in first:
            needs_slo = slo.metric in ("goodput", "slo_attainment")
            hint = " (it needs metrics.slo_ttft_ms or slo_tpot_ms)" if needs_slo else ""
            raise ConfigError(
                f"'{slo.text}': the summary has no '{slo.metric}'{hint}; valid: "
                f"{', '.join(sorted(first))}",
                field="--slo",
            )
    cap = float(first["request_throughput"])
    seed_list = list(seeds) if seeds is not None else [scenario.seed]

    def ok(rate: float) -> bool:
        base = {"workload.arrival.rate": rate, "data_parallel": replicas}
        runs = run_seeds(scenario.with_overrides(base), seed_list, executor)
        return all(judge(s, slos, rate)[0] for s in runs)

    if not ok(cap / 64):
        return 0.0
    return bisection(ok, cap / 64, cap, rel_tol=rel_tol, max_runs=max_runs)[0]


def per_replica_rate(scenario: Scenario, slos: Sequence[SLO], executor: Executor) -> float:
    """The highest rate one replica serves within the SLOs under the first seed: where the
    fleet search starts."""
    return sustained_rate(scenario, slos, executor)


def size_fleet(
    plan: CandidatePlan,
    slos: Sequence[SLO],
    rate: float,
    seeds: Sequence[int],
    executor: Executor,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Find ``plan.replicas``: the smallest fleet passing under every seed."""

    def fleet(n: int) -> FleetRun:
        if n not in plan.fleets:
            if progress:
                progress(f"{plan.candidate.label}: {n} replicas x {len(seeds)} seeds")
            base = {"data_parallel": n, "workload.arrival.rate": rate}
            runs = run_seeds(plan.scenario.with_overrides(base), seeds, executor)
            verdicts = [judge(s, slos, rate) for s in runs]
            plan.fleets[n] = FleetRun(n, runs, [v[0] for v in verdicts], [v[1] for v in verdicts])
        return plan.fleets[n]

    n = max(1, plan.estimate)
    if fleet(n).passes:
        lo, hi = 0, n  # lo fails (no replica at all), hi passes
    else:
        lo = n
        hi = n * 2
        while not fleet(hi).passes:
            lo = hi
            hi *= 2
            if hi > GROWTH_CAP * n:
                plan.error = (
                    f"no fleet up to {lo} replicas ({GROWTH_CAP}x the per-replica estimate) "
                    f"passes: {next(r for r in fleet(lo).reasons if r)}"
                )
                return
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fleet(mid).passes else (mid, hi)
    plan.replicas = hi


def prepare(
    base: Scenario, candidate: Candidate, rate: float, prices: dict[str, float]
) -> CandidatePlan:
    """The candidate's scenario (one replica at the target rate) and its price."""
    if base.cluster is not None:
        raise ConfigError(
            "plan sizes identical replicas (data_parallel); a scenario with a cluster section "
            "is not supported",
            source=base.source,
            field="cluster",
        )
    if not hasattr(base.workload.arrival, "rate"):
        raise ConfigError(
            "plan needs an arrival process with a rate (poisson, gamma, constant) to set the "
            "target load",
            source=base.source,
            field="workload.arrival",
        )
    sc = base.with_overrides({**candidate.overrides, "workload.arrival.rate": rate})
    hw = get_hardware(sc.hardware)
    price = prices.get(hw.name, prices.get(sc.hardware, hw.price_per_gpu_hour_usd))
    return CandidatePlan(candidate, sc, sc.tensor_parallel, price, math.nan, 0)


def plan_capacity(
    base: Scenario,
    candidates: Sequence[Candidate],
    slos: Sequence[SLO],
    rate: float,
    *,
    seeds: int = 3,
    prices: dict[str, float] | None = None,
    executor: Executor | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[CandidatePlan]:
    """Size every candidate; the plans ranked by dollars per hour (candidates without an
    answer last). A candidate whose runs fail is kept with its error."""
    if rate <= 0:
        raise ConfigError(f"the target rate must be > 0 (got {rate:g})", field="--rate")
    if not slos:
        raise ConfigError("give at least one SLO, e.g. --slo ttft:p99<2000", field="--slo")
    executor = executor or LocalExecutor()
    plans = []
    for cand in candidates:
        plan = prepare(base, cand, rate, prices or {})
        seed_list = seeds_for(plan.scenario, seeds)
        try:
            if progress:
                progress(f"{cand.label}: one replica's rate within the SLOs")
            plan.per_replica_rate = r1 = per_replica_rate(plan.scenario, slos, executor)
            if r1 <= 0:
                plan.error = "one replica misses the SLOs even at a 64th of its capacity"
            elif math.ceil(rate / r1) > MAX_REPLICAS:
                plan.error = f"more than {MAX_REPLICAS} replicas ({r1:.3g} req/s each)"
            else:
                plan.estimate = math.ceil(rate / r1)
                size_fleet(plan, slos, rate, seed_list, executor, progress)
        except LlmsimError as exc:
            if isinstance(exc, ConfigError) and exc.field == "--slo":
                raise  # the question is wrong, not this candidate
            plan.error = str(exc)
        plans.append(plan)
    return sorted(plans, key=lambda p: (p.replicas is None, p.dollars_per_hour, p.gpus))


def warnings(plan: CandidatePlan, slos: Sequence[SLO]) -> list[str]:
    """What to know before trusting the answer: near an SLO edge, seed-dependent, priced beyond
    the calibrated range of its profile."""
    out: list[str] = []
    run = plan.chosen
    if run is None:
        return out
    for slo in slos:
        values = seed_values(run.summaries, slo.metric)
        worst = min((slo.margin(v) for v in values), default=math.nan)
        if worst < NEAR_EDGE:
            out.append(f"{slo.text}: the worst seed is {worst:.0%} inside the limit")
    if any(s.get("extrapolated") for s in run.summaries):
        out.append(
            "the calibrated cost model priced some steps beyond the kernel shapes its profile "
            "measured (llmsim run on the chosen fleet names them)"
        )
    smaller = plan.fleets.get(run.replicas - 1)
    if smaller is not None and any(smaller.passed):
        k = sum(smaller.passed)
        out.append(
            f"{run.replicas - 1} replicas pass under {k} of {len(smaller.passed)} seeds: "
            "the answer depends on the seed"
        )
    return out
