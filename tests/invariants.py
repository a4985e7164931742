"""Invariants every simulated run must satisfy, checked on one run of a scenario.

``check_scenario(data)`` validates a scenario mapping, runs it, and asserts: every request
finishes exactly once with exactly its requested output tokens, or is rejected for a reason
its replica states; time never goes backwards (per request and per replica); KV blocks in use
stay within [0, capacity] at every step and return to zero, with no prefix-cache reference,
reservation or swap space left held; summary, per-pool tables and tables agree; and the same
scenario and seed give the same bytes again. A configuration that cannot run must be refused
before the run, in one line.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import numpy as np

from llmsim.engine import Simulation
from llmsim.errors import LlmsimError
from llmsim.kv_cache import blocks_for
from llmsim.request import Request
from llmsim.result import SimulationResult
from llmsim.scenario import Scenario

EPS = 1e-9


def fingerprint(result: SimulationResult) -> str:
    """A digest of everything a run writes: its tables (columns, types, values) and summary."""
    h = hashlib.sha256()
    for table in (result.requests, result.steps, result.by_pool, result.by_replica):
        if table is None:
            continue
        h.update(repr(table.index.tolist()).encode())
        for name, col in table.items():
            h.update(f"{name}:{col.dtype}".encode())
            values = col.to_numpy()
            numeric = values.dtype.kind in "biuf"
            h.update(values.tobytes() if numeric else "\0".join(map(str, values)).encode())
    summary = {k: (None if math.isnan(v) else v) for k, v in result.summary.items()}
    h.update(json.dumps(summary, sort_keys=True).encode())
    return h.hexdigest()


def load(data: dict[str, Any]) -> Scenario:
    """The scenario validated; its own dump validates back to an equal scenario (what
    ``with_overrides`` and saved ``scenario.yaml`` files rely on)."""
    scenario = Scenario.model_validate(data)
    assert Scenario.model_validate(scenario.model_dump(mode="json")) == scenario
    return scenario


def run(scenario: Scenario) -> tuple[Simulation, SimulationResult] | None:
    """Run once; None when the scenario is refused before the run (with a one-line reason)."""
    try:
        sim = Simulation(scenario)
    except LlmsimError as exc:
        assert "\n" not in str(exc), str(exc)
        return None
    return sim, sim.run()


def check_scenario(data: dict[str, Any]) -> SimulationResult | None:
    scenario = load(data)
    ran = run(scenario)
    if ran is None:
        return None
    sim, result = ran
    check_requests(sim, result)
    check_steps(sim, result)
    check_kv_released(sim)
    check_summary(sim, result)
    again = run(scenario)
    assert again is not None
    assert fingerprint(again[1]) == fingerprint(result), "same scenario and seed, other bytes"
    return result


def rejection_reason(policy: Any, prompt: int, output: int) -> str | None:
    """Why ``policy`` refuses a request of these lengths at arrival, or None."""
    total = prompt + output
    if total > policy.max_model_len:
        return "longer than max_model_len"
    if getattr(policy, "whole_prompts", False) and prompt > policy.budget:
        return "prompt over the token budget"
    pool = policy.pool
    if (
        hasattr(policy, "budget")
        and blocks_for(total, policy.block_size) > pool.total - pool.watermark
    ):
        return "more blocks than the cache"
    res = getattr(policy, "reservations", None)
    if res is not None and res.need(Request(0, 0.0, prompt, output)) > pool.total:
        return "reservation larger than the cache"
    return None


def check_requests(sim: Simulation, result: SimulationResult) -> None:
    req = result.requests
    n = len(sim.stream)
    ids = req["request_id"].to_numpy()
    assert sorted(ids.tolist()) == list(range(n)), "every request reported exactly once"
    status = req["status"].astype(str).to_numpy()
    assert set(status) <= {"finished", "rejected"}, set(status)
    asked = sim.stream.output_tokens[ids]
    prompts = sim.stream.prompt_tokens[ids]
    assert (req["prompt_tokens"].to_numpy() == prompts).all()
    done = status == "finished"
    reasons = req["reject_reason"].astype(str).to_numpy()
    assert (reasons[done] == "").all() and (reasons[~done] != "").all(), "a reason per rejection"
    got = req["output_tokens"].to_numpy()
    assert (got[done] == asked[done]).all(), "a finished request has its requested tokens"
    for i in np.flatnonzero(~done):
        replica = int(req["replica"].iloc[i])
        if replica < 0:  # no pool serves its class, or no decode replica could hold it
            decoders = [rep.policy for rep in sim.replicas if rep.role == "decode"]
            classes = sim.stream.request_class
            tag = str(classes[ids[i]]) if classes is not None else ""
            probe = Request(0, 0.0, int(prompts[i]), int(asked[i]), tag=tag)
            assert (
                not decoders
                or not all(d.can_serve(probe) for d in decoders)
                or (not sim._candidates(probe, sim._entry))
            )
            continue
        policy = sim.replicas[replica].policy
        assert rejection_reason(policy, int(prompts[i]), int(asked[i])), (
            f"request {ids[i]} rejected with no reason"
        )
        assert got[i] == 0
    arrival = req["arrival"].to_numpy()
    first = req["first_token"].to_numpy()
    sched = req["first_scheduled"].to_numpy()
    finish = req["finish"].to_numpy()
    assert (finish >= arrival - EPS).all()
    assert (sched[done] >= arrival[done] - EPS).all()
    assert (first[done] >= sched[done] - EPS).all()
    assert (finish[done] >= first[done] - EPS).all()
    assert (req["queue_time"].to_numpy()[done] >= -EPS).all()


def check_steps(sim: Simulation, result: SimulationResult) -> None:
    steps = result.steps
    assert (steps["duration"] > 0).all()
    for rep in sim.replicas:
        mine = steps[steps["replica"] == rep.index]
        start = mine["start"].to_numpy()
        end = mine["end"].to_numpy()
        assert (start[1:] >= end[:-1] - EPS).all(), f"replica {rep.index}: steps overlap"
        kv = mine["kv_blocks"].to_numpy()
        assert (kv >= 0).all() and (kv <= rep.kv.num_blocks).all(), (
            f"replica {rep.index}: KV blocks {kv.min()}..{kv.max()} of {rep.kv.num_blocks}"
        )
    req = result.requests
    done = req["status"] == "finished"
    assert steps["sampled_tokens"].sum() == req.loc[done, "output_tokens"].sum(), (
        "tokens sampled by steps != output tokens of finished requests"
    )


def check_kv_released(sim: Simulation) -> None:
    for rep in sim.replicas:
        policy = rep.policy
        pool = policy.pool  # type: ignore[attr-defined]
        assert pool.used == 0, f"replica {rep.index}: {pool.used} KV blocks held after the run"
        assert all(v == 0 for v in pool.refs.values()), "prefix-cache references left"
        assert len(pool.evictable) == len(pool.refs)
        res = getattr(policy, "reservations", None)
        assert res is None or res.outstanding == 0, f"reserved blocks left: {res.outstanding}"
        assert getattr(policy, "swap_used", 0) == 0


def check_summary(sim: Simulation, result: SimulationResult) -> None:
    s = result.summary
    req = result.requests
    done = req[req["status"] == "finished"]
    assert s["num_requests"] == len(sim.stream) == len(req)
    assert s["completed"] == len(done)
    assert s["rejected"] == len(req) - len(done)
    m = sim.scenario.metrics
    if m.warmup_s == 0 and m.cooldown_s == 0:
        out = float(done["output_tokens"].sum())
        assert s["total_output_tokens"] == out
        assert s["measured_requests"] == len(done)
        assert math.isclose(s["output_throughput"] * s["duration_s"], out, rel_tol=1e-9), (
            f"output throughput x duration {s['output_throughput'] * s['duration_s']} != {out}"
        )
        assert math.isclose(s["request_throughput"] * s["duration_s"], len(done), rel_tol=1e-9)
    for name in (
        "max_kv_usage",
        "mean_kv_usage",
        "recompute_fraction",
        "slo_attainment",
        "prefix_cache_hit_rate",
        "host_cache_hit_rate",
    ):
        v = s.get(name, 0.0)
        assert math.isnan(v) or 0 <= v <= 1 + 1e-12, (name, v)
    if "goodput" in s:
        assert s["goodput"] <= s["completed"] / s["duration_s"] * (1 + 1e-9)
    for name in ("ttft", "tpot", "itl", "e2el", "queue"):
        for stat in ("mean", "median", "p90", "p99"):
            v = s[f"{stat}_{name}_ms"]
            assert math.isnan(v) or v >= -1e-6, (stat, name, v)
    # A row is credited with the requests its replicas served (where they finished) and, in
    # disaggregated serving, those they prefilled; every placed request is in some row.
    pool_of = {rep.index: rep.pool for rep in sim.replicas}
    served = req["replica"].map(pool_of)
    prefilled = req["prefill_replica"].map(pool_of)
    finished = req["status"] == "finished"
    for table, key in ((result.by_pool, "pool"), (result.by_replica, "replica")):
        if table is None or not len(req):
            continue
        here, pre = (
            (served, prefilled) if key == "pool" else (req["replica"], req["prefill_replica"])
        )
        for name, row in table.iterrows():
            mine = (here == name) | (pre == name)
            assert row["num_requests"] == mine.sum(), (key, name)
            assert row["completed"] == (mine & finished).sum(), (key, name)
        placed = req["replica"] >= 0
        assert (here[placed].isin(table.index)).all(), key
