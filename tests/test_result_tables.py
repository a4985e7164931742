"""The result tables built with one sort per column: percentiles of a weighted sample, the
inter-token gaps of any group of requests, and the per-pool and per-replica summaries, against
direct computations (every sample expanded; gaps request by request; each group's rows selected
by comparing the whole column with its name)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import llmsim
from llmsim.engine import Simulation
from llmsim.metrics import PERCENTILES, Weighted, summarize
from llmsim.request import Request

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("seed", range(5))
def test_weighted_percentiles_equal_the_expanded_sample(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 20, size=200).astype(float) / 7  # many ties
    weights = rng.integers(0, 5, size=200)
    w = Weighted(values, weights)
    qs = (0, 1, 50, 90, 99, 99.9, 100)
    expected = np.percentile(np.repeat(values, weights), qs)
    assert w.percentiles(qs) == pytest.approx(expected, rel=0, abs=1e-12)
    assert [w.percentile(q) for q in qs] == w.percentiles(qs)
    assert np.isnan(Weighted(values[:0], weights[:0]).percentiles(PERCENTILES)).all()


def _gaps_by_loop(requests: list[Request], decode_ends: list[np.ndarray]) -> Weighted:
    """Inter-token gaps request by request: each replica's step gaps weighted by the spans
    covering them (counted step by step), then every lone and first gap, replica by replica."""
    by_replica: dict[int, list[Request]] = {}
    for r in requests:
        by_replica.setdefault(r.replica, []).append(r)
    values, weights, lone = [], [], []
    for replica, rs in by_replica.items():
        ends = decode_ends[replica]
        cover = np.zeros(len(ends), dtype=np.int64)
        for r in rs:
            lone.extend(r.extra_gaps)
            for s, e, emit in r.segments:
                if e > s:
                    lone.append(float(ends[s]) - emit)
                    for k in range(s + 1, e):  # gap between steps k - 1 and k
                        cover[k] += 1
        if len(ends) > 1:
            values.append(np.diff(ends))
            weights.append(cover[1:])
    values.append(np.asarray(lone, dtype=float))
    weights.append(np.ones(len(lone), dtype=np.int64))
    v, w = np.concatenate(values), np.concatenate(weights)
    return Weighted(v[w > 0], w[w > 0])


def _by_masks(sim: Simulation, res: llmsim.SimulationResult, key: str) -> pd.DataFrame:
    """The per-group summary by boolean masks over the whole tables (quadratic, plain)."""
    req, steps = res.requests, res.steps
    measured = {
        r.id: r
        for rep in sim.replicas
        for r in rep.policy.finished
        if res.window[0] <= r.arrival <= res.window[1]
    }
    decode = steps[steps["decode_tokens"] > 0]
    ends = [decode.loc[decode["replica"] == rep.index, "end"].to_numpy() for rep in sim.replicas]
    rows = {}
    for name in dict.fromkeys(
        getattr(rep, "pool" if key == "pool" else "index") for rep in sim.replicas
    ):
        members = [
            rep.index for rep in sim.replicas if (rep.pool if key == "pool" else rep.index) == name
        ]
        mask = req["replica"].isin(members) | req["prefill_replica"].isin(members)
        mine = [measured[i] for i in req.loc[mask, "request_id"] if i in measured]
        st = steps[steps["replica"].isin(members)]
        row = summarize(req[mask], st, _gaps_by_loop(mine, ends), res.window, sim.scenario.metrics)
        length = res.window[1] - res.window[0]
        row["busy_fraction"] = float(st["duration"].sum()) / length / len(members)
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(key)


@pytest.mark.parametrize("scenario", ["disaggregated", "mixed_workload_pools"])
def test_group_tables_equal_the_masked_computation(scenario: str) -> None:
    sc = llmsim.load_scenario(
        ROOT / "scenarios" / f"{scenario}.yaml", ["workload.num_requests=300"]
    )
    sim = Simulation(sc)
    sim.keep_requests = True
    res = sim.run()
    assert res.by_pool is not None and res.by_replica is not None
    pd.testing.assert_frame_equal(res.by_pool, _by_masks(sim, res, "pool"), check_exact=True)
    pd.testing.assert_frame_equal(res.by_replica, _by_masks(sim, res, "replica"), check_exact=True)


@pytest.mark.parametrize(
    ("scenario", "overrides"),
    [
        ("disaggregated", []),
        ("mixed_workload_pools", []),
        # preemptions by recompute leave gaps no span covers
        ("quickstart", ["engine.kv_blocks=300", "workload.arrival.rate=12", "data_parallel=3"]),
    ],
)
def test_gaps_of_any_group_equal_the_request_by_request_loop(
    scenario: str, overrides: list[str]
) -> None:
    sc = llmsim.load_scenario(
        ROOT / "scenarios" / f"{scenario}.yaml", ["workload.num_requests=300", *overrides]
    )
    sim = Simulation(sc)
    sim.keep_requests = True
    res = sim.run()
    requests = sorted((r for rep in sim.replicas for r in rep.policy.finished), key=lambda r: r.id)
    decode = res.steps[res.steps["decode_tokens"] > 0]
    ends = [decode.loc[decode["replica"] == rep.index, "end"].to_numpy() for rep in sim.replicas]
    # the spans as the engine kept them (appended as each request finished), numbered here
    # by id, as ``requests`` is
    spans = sim.records.spans(np.argsort(sim.records.columns()["id"], kind="stable"))
    rng = np.random.default_rng(0)
    groups = [np.arange(len(requests)), rng.permutation(len(requests))]
    groups += [np.sort(rng.choice(len(requests), size=k, replace=False)) for k in (1, 7, 150)]
    for members in groups:
        want = _gaps_by_loop([requests[i] for i in members], ends)
        got = spans.gaps(ends, members)
        np.testing.assert_array_equal(got.values, want.values)
        np.testing.assert_array_equal(got.weights, want.weights)
    if "kv_blocks" in " ".join(overrides):
        assert any(r.extra_gaps for r in requests)  # the lone gaps were exercised
