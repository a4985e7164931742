"""What a run must tell its user besides its averages: what priced it, whether it was overloaded,
which requests it refused and why, and where its cost model is extrapolating.

- :func:`provenance`: the cost model, engine preset and hardware profile (calibrated or
  datasheet) of each distinct replica configuration.
- :func:`overload`: the overload verdict. A deployment that cannot keep up with its arrivals
  has a queueing delay that grows with arrival time until the arrivals stop; one that keeps up
  has a queueing delay that fluctuates around a level. The verdict fits the growth of the median
  queueing delay over the second half of the arrivals (ten groups of equal count):
  ``queue_growth_rate`` is the seconds of queueing delay added per second of arrivals. A
  deployment serving rate ``mu`` under offered rate ``lambda`` grows it by ``lambda/mu - 1``, so
  ``served ~ offered / (1 + growth)``. Overloaded means a growth of at least
  :data:`OVERLOAD_GROWTH`, a last group whose median queueing delay exceeds the first half's by
  more than the first half's median TTFT (more than a stable queue fluctuates), and the queue
  still near its peak at the end. Closed-loop clients cannot
  overload a deployment (they wait for their answers); staged workloads are judged per stage.
- :func:`predicted_rejections`: before a run, how many drawn requests the engine will refuse.
- :func:`extrapolation`: where a calibrated run's steps leave the measured kernel range.
- :func:`run_warnings`: every warning of a finished run, one line each.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from llmsim.hardware import get_hardware
from llmsim.request import REJECT_REASONS

if TYPE_CHECKING:
    from llmsim.engine import Simulation
    from llmsim.result import SimulationResult
    from llmsim.scenario import ReplicaSpec, Scenario

OVERLOAD_GROWTH = 0.02
"""Queueing delay added per second of arrivals above which the queue is growing."""
OVERLOAD_MIN_REQUESTS = 50
"""Fewer finished requests (per stage) than this give no verdict."""
_GROUPS = 10


def provenance(scenario: Scenario) -> list[str]:
    """One line per distinct replica configuration: pools, GPUs, cost model, preset, profile."""
    seen: dict[tuple[str, int, str, str], list[str]] = {}
    for spec in scenario.replica_specs():
        key = _priced_by(spec)
        pools = seen.setdefault(key, [])
        if spec.pool not in pools:
            pools.append(spec.pool)
    lines = []
    for (hardware, tp, cost, preset), pools in seen.items():
        hw = get_hardware(hardware)
        if cost == "calibrated" and hw.calibration is not None:
            how = f"calibrated cost model (kernels measured {hw.calibration.date})"
        elif cost == "roofline":
            how = "roofline cost model (datasheet peaks)"
        else:
            how = f"{cost} cost model"
        where = "" if pools == ["default"] else f"pool {', '.join(pools)}: "
        lines.append(f"{where}{tp}x {hw.name}, {how}, preset {preset or 'none'}")
    return lines


def _priced_by(spec: ReplicaSpec) -> tuple[str, int, str, str]:
    return (spec.hardware, spec.tensor_parallel, spec.engine.cost.kind, spec.engine.preset or "")


# --- overload ------------------------------------------------------------------------------


def _growing(arrival: np.ndarray, queue: np.ndarray, ttft: np.ndarray) -> tuple[float, bool]:
    """(growth rate of the queueing delay over arrival time, whether it is overloaded); the
    arrays are sorted by arrival."""
    groups = np.array_split(np.arange(len(arrival)), _GROUPS)
    t = np.array([np.median(arrival[g]) for g in groups])
    q = np.array([np.median(queue[g]) for g in groups])
    half = _GROUPS // 2
    slope = float(np.polyfit(t[half:], q[half:], 1)[0]) if np.ptp(t[half:]) > 0 else 0.0
    first = len(queue) // 2
    grew = q[-1] - float(np.median(queue[:first])) > float(np.median(ttft[:first]))
    return slope, slope >= OVERLOAD_GROWTH and grew and q[-1] >= 0.5 * q.max()


def overload(requests: pd.DataFrame, closed_loop: bool) -> dict[str, float]:
    """Summary keys ``offered_request_rate``, ``queue_growth_rate`` and ``overloaded`` (1.0 or
    0.0) from the requests table; empty where no verdict can be given."""
    if closed_loop or len(requests) < 2:
        return {}
    span = float(requests["arrival"].max() - requests["arrival"].min())
    out: dict[str, float] = {}
    if span > 0:
        out["offered_request_rate"] = (len(requests) - 1) / span
    stages = requests.groupby("stage") if "stage" in requests else [(0, requests)]
    growth, verdict, judged = 0.0, False, False
    for _, part in stages:
        done = part[part["status"] == "finished"].sort_values("arrival", kind="stable")
        if len(done) < OVERLOAD_MIN_REQUESTS:
            continue
        slope, over = _growing(
            done["arrival"].to_numpy(), done["queue_time"].to_numpy(), done["ttft"].to_numpy()
        )
        growth, verdict, judged = max(growth, slope), verdict or over, True
    if not judged:
        return out
    out["queue_growth_rate"] = growth
    out["overloaded"] = float(verdict)
    return out


def overload_warning(summary: dict[str, float]) -> str | None:
    if not summary.get("overloaded"):
        return None
    offered = summary.get("offered_request_rate", float("nan"))
    growth = summary["queue_growth_rate"]
    return (
        f"overloaded: the queue grew until the arrivals stopped (queueing delay +{growth:.2f} s "
        f"per second of arrivals), so the deployment serves about {offered / (1 + growth):.2f} "
        f"of the {offered:.2f} req/s offered; latency percentiles grow with the run's length "
        "and describe no steady state (lower the rate or add capacity)"
    )


# --- rejections ----------------------------------------------------------------------------


def rejection_warning(summary: dict[str, float]) -> str | None:
    rejected = int(summary.get("rejected", 0))
    if not rejected:
        return None
    reasons = [
        f"{int(summary[f'rejected_{k}']):,} because {text}"
        for k, text in REJECT_REASONS.items()
        if summary.get(f"rejected_{k}")
    ]
    return (
        f"{rejected:,} of {int(summary['num_requests']):,} requests "
        f"({summary['rejected_fraction']:.1%}) were rejected: {'; '.join(reasons)}. They have no "
        "latency and count as SLO misses"
    )


def predicted_rejections(sim: Simulation) -> str | None:
    """Before ``sim`` runs: a warning naming the fields when its drawn requests include prompts
    the engine will refuse (longer than the token budget without chunked prefill, or prompt plus
    output beyond ``max_model_len``). Checks the first replica of each pool that takes
    requests."""
    prompt_tokens = np.asarray(sim.stream.prompt_tokens)
    output_tokens = np.asarray(sim.stream.output_tokens)
    notes: list[str] = []
    seen: set[str] = set()
    total = len(prompt_tokens)
    for rep in sim.replicas:
        if rep.pool in seen or rep.role == "decode":
            continue
        seen.add(rep.pool)
        policy = rep.policy
        where = "" if rep.pool == "default" else f"pool {rep.pool}: "
        max_len = rep.max_model_len
        if max_len:
            over = int(np.count_nonzero(prompt_tokens + output_tokens > max_len))
            if over:
                notes.append(
                    f"{where}{over:,} of {total:,} requests are longer than engine.max_model_len "
                    f"({max_len:,} tokens, prompt plus output)"
                )
        if getattr(policy, "whole_prompts", False):
            budget = int(policy.budget)  # type: ignore[attr-defined]
            over = int(np.count_nonzero(prompt_tokens > budget))
            if over:
                notes.append(
                    f"{where}{over:,} of {total:,} prompts are longer than the token budget "
                    f"(policy.max_num_batched_tokens {budget:,}) and chunked prefill is off: set "
                    f"policy.chunked_prefill: true or max_num_batched_tokens >= "
                    f"{int(prompt_tokens.max()):,}"
                )
    if not notes:
        return None
    return "; ".join(notes) + ". Those requests will be rejected"


# --- extrapolation -------------------------------------------------------------------------


@cache
def measured_range(kernel_table: str) -> dict[str, float]:
    """The largest shapes a hardware profile's kernel table measured: GEMM rows (tokens per
    step), decode batch, decode and prefill context, all-reduce GPUs."""
    from llmsim.cost.kernel_table import read_kernel_table

    rows = read_kernel_table(kernel_table)
    out: dict[str, float] = {}
    gemm = rows[rows["family"] == "gemm"]
    if len(gemm):
        out["tokens_per_step"] = float(gemm["m"].max())
    dec = rows[rows["family"] == "decode_attention"]
    if len(dec):
        out["decode_batch"] = float(dec["batch"].max())
        out["decode_context"] = float(dec["seq_len"].max())
    pre = rows[rows["family"] == "prefill_attention"]
    if len(pre):
        out["prefill_context"] = float(pre["seq_len"].max())
    ar = rows[rows["family"] == "all_reduce"]
    if len(ar):
        out["all_reduce_gpus"] = float(ar["gpus"].max())
    return out


def extrapolation(result: SimulationResult) -> list[str]:
    """Where the steps of a calibrated run leave the shapes its profile measured."""
    notes: list[str] = []
    steps, requests = result.steps, result.requests
    for spec in _first_per_pool(result.scenario.replica_specs()):
        if spec.engine.cost.kind != "calibrated":
            continue
        hw = get_hardware(spec.hardware)
        table = hw.calibration.kernel_table if hw.calibration is not None else None
        if not table:
            continue
        limits = measured_range(str(table))
        mine = steps[steps["pool"] == spec.pool] if "pool" in steps else steps
        reqs = requests[requests["pool"] == spec.pool] if "pool" in requests else requests
        tokens = float((mine["prefill_tokens"] + mine["decode_tokens"]).max()) if len(mine) else 0
        batch = float(mine["decode_tokens"].max()) if len(mine) else 0
        context = float((reqs["prompt_tokens"] + reqs["output_tokens"]).max()) if len(reqs) else 0
        checks = [
            ("tokens per step", tokens, limits.get("tokens_per_step")),
            ("decode batch", batch, limits.get("decode_batch")),
            ("context length", context, limits.get("decode_context")),
            ("tensor-parallel GPUs", float(spec.tensor_parallel), limits.get("all_reduce_gpus")),
        ]
        where = "" if spec.pool == "default" else f"pool {spec.pool}: "
        for name, value, limit in checks:
            if limit is not None and value > limit:
                notes.append(
                    f"{where}{name} up to {value:,.0f}, beyond the {limit:,.0f} that {hw.name}'s "
                    "calibration measured: the cost model extrapolates there"
                )
    return notes


def _first_per_pool(specs: Sequence[ReplicaSpec]) -> list[ReplicaSpec]:
    seen: dict[str, ReplicaSpec] = {}
    for s in specs:
        seen.setdefault(s.pool, s)
    return list(seen.values())


def run_warnings(result: SimulationResult) -> list[str]:
    """Every warning of a finished run, one line each: rejections, overload, preemption,
    skipped trace rows, extrapolation beyond the calibrated range."""
    from llmsim.metrics import preemption_warning

    s = result.summary
    notes = [rejection_warning(s), overload_warning(s), preemption_warning(s)]
    if s.get("trace_bad_rows_skipped"):
        notes.append(
            f"{int(s['trace_bad_rows_skipped']):,} trace rows were skipped as malformed "
            "(workload.trace.skip_bad_rows)"
        )
    out = [n for n in notes if n]
    if s.get("extrapolated"):  # set by the run when some step left the measured shapes
        out += extrapolation(result)
    return out
