"""The field note's claims, reproduced as numbers: direction and rough size of each effect.

Each test starts from a scenario in scenarios/tradeoffs/ and changes only what the claim is
about.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import llmsim
from llmsim.sweep import crossover_rate, max_rate_under, run_with, saturation_throughput

TRADEOFFS = Path(__file__).resolve().parent.parent / "scenarios" / "tradeoffs"


def load(name: str) -> llmsim.Scenario:
    return llmsim.load_scenario(TRADEOFFS / f"{name}.yaml")


def test_1_larger_static_batch_raises_throughput_and_latency() -> None:
    sc = load("static_batch_size")
    offline = {"workload.arrival": {"kind": "batch"}}
    thr = {}
    tpot = {}
    for b in (1, 4, 16, 64):
        s = run_with(sc, {**offline, "policy.batch_size": b}).summary
        thr[b], tpot[b] = s["request_throughput"], s["median_tpot_ms"]
    assert thr[1] < thr[4] < thr[16] < thr[64]
    assert thr[64] > 4 * thr[1]
    assert tpot[1] < tpot[16] < tpot[64]  # each step serves more sequences, so takes longer
    # Under a light load, each request waits for its batch to fill.
    light = {"workload.rate": 0.05 * thr[1], "workload.num_requests": 96}
    ttft = {b: run_with(sc, {**light, "policy.batch_size": b}).summary for b in (1, 8)}
    assert ttft[8]["median_ttft_ms"] > 5 * ttft[1]["median_ttft_ms"]
    assert ttft[8]["mean_e2el_ms"] > ttft[1]["mean_e2el_ms"]


def test_2_queueing_delay_is_a_hockey_stick() -> None:
    sc = load("load_hockey_stick")
    sat = saturation_throughput(sc)
    ttft = {
        f: run_with(sc, {"workload.rate": f * sat}).summary["mean_ttft_ms"]
        for f in (0.5, 0.8, 0.95, 1.05)
    }
    # flat at moderate load ...
    assert ttft[0.8] < 1.5 * ttft[0.5]
    # ... then sharply up near saturation: the slope from 0.8 to 0.95 is several times the
    # slope from 0.5 to 0.8, and past saturation the queue dominates
    slope_low = (ttft[0.8] - ttft[0.5]) / 0.3
    slope_high = (ttft[0.95] - ttft[0.8]) / 0.15
    assert slope_high > 5 * slope_low
    assert ttft[1.05] > 10 * ttft[0.5]


def _output_cv(cv: float) -> dict[str, object]:
    if cv == 0:
        return {"workload.output_tokens": {"kind": "fixed", "value": 256}}
    return {"workload.output_tokens": {"kind": "lognormal", "mean": 256, "cv": cv, "max": 3000}}


DYNAMIC = {"policy": {"kind": "dynamic", "max_batch_size": 64, "max_queue_delay_ms": 100}}
STATIC = {"policy": {"kind": "static", "batch_size": 64, "max_wait_s": 1.0}}


def test_3_continuous_beats_request_level_batching_more_with_variance() -> None:
    sc = load("continuous_vs_request_level")
    ratios = {}
    for cv in (0.0, 1.0, 2.0):
        cont = saturation_throughput(sc, fixed=_output_cv(cv))
        dyn = saturation_throughput(sc, fixed={**_output_cv(cv), **DYNAMIC})
        ratios[cv] = cont / dyn
    assert 1.1 < ratios[0.0] < ratios[1.0] < ratios[2.0]
    assert ratios[2.0] > 3

    # At the same offered load, continuous batching serves at least as much with a far lower
    # p99 end-to-end latency than static or dynamic batching.
    fixed = _output_cv(1.0)
    rate = 0.7 * saturation_throughput(sc, fixed={**fixed, **DYNAMIC})
    at_load = {**fixed, "workload.rate": rate}
    cont = run_with(sc, at_load).summary
    for other in (DYNAMIC, STATIC):
        s = run_with(sc, {**at_load, **other}).summary
        assert cont["request_throughput"] >= 0.98 * s["request_throughput"]
        assert cont["p99_e2el_ms"] < 0.7 * s["p99_e2el_ms"]

    # And at one p99 latency target, continuous batching sustains the higher rate.
    target = 1.2 * s["p99_e2el_ms"]
    hi = 1.2 * saturation_throughput(sc, fixed=fixed)
    best_cont = max_rate_under(sc, "p99_e2el_ms", target, lo=0.2, hi=hi, fixed=fixed)
    best_dyn = max_rate_under(sc, "p99_e2el_ms", target, lo=0.2, hi=hi, fixed={**fixed, **DYNAMIC})
    assert best_cont > 2 * best_dyn


@pytest.mark.slow
def test_4_speculative_decoding_has_a_crossover_load() -> None:
    spec = load("speculative_crossover")
    p = spec.policy
    plain = spec.with_overrides(
        {
            "policy": {
                "kind": "continuous",
                "max_num_seqs": p.max_num_seqs,
                "max_num_batched_tokens": p.max_num_batched_tokens,
            }
        }
    )
    low = {"workload.rate": 1.0}
    assert (
        run_with(spec, low).summary["median_tpot_ms"]
        < 0.8 * run_with(plain, low).summary["median_tpot_ms"]
    )
    sat_spec, sat_plain = saturation_throughput(spec), saturation_throughput(plain)
    assert sat_spec < 0.95 * sat_plain
    x = crossover_rate(spec, plain, "median_tpot_ms", lo=1.0, hi=0.95 * sat_spec)
    assert x is not None
    assert 0.2 * sat_plain < x < sat_spec
    # below the crossover speculation helps, above it hurts
    below = {"workload.rate": 0.8 * x}
    above = {"workload.rate": min(1.2 * x, 0.95 * sat_spec)}
    assert (
        run_with(spec, below).summary["median_tpot_ms"]
        < run_with(plain, below).summary["median_tpot_ms"]
    )
    assert (
        run_with(spec, above).summary["median_tpot_ms"]
        > run_with(plain, above).summary["median_tpot_ms"]
    )


def test_5_paged_kv_holds_larger_batches_than_contiguous() -> None:
    sc = load("paged_vs_contiguous")
    paged = run_with(sc).summary
    contiguous = run_with(sc, {"policy.kv_layout": "contiguous"}).summary
    assert paged["mean_decode_batch_size"] > 2 * contiguous["mean_decode_batch_size"]
    assert paged["request_throughput"] > 1.3 * contiguous["request_throughput"]


def test_6_dynamic_batches_grow_with_load() -> None:
    sc = load("dynamic_batch_by_load")
    size = {
        r: run_with(sc, {"workload.rate": r}).summary["mean_batch_size"] for r in (0.2, 1.0, 4.0)
    }
    assert size[0.2] < 2
    assert size[0.2] < size[1.0] < size[4.0]
    assert size[4.0] > 0.75 * 32  # near the maximum batch under heavy load


def test_7_chunked_prefill_lowers_p99_itl_at_some_ttft_cost() -> None:
    sc = load("chunked_prefill_itl")
    chunked = run_with(sc).summary
    prefill_first = run_with(
        sc, {"policy.chunked_prefill": False, "policy.max_num_batched_tokens": 4096}
    ).summary
    assert chunked["p99_itl_ms"] < 0.5 * prefill_first["p99_itl_ms"]
    assert chunked["median_ttft_ms"] > prefill_first["median_ttft_ms"]
    # throughput is the same: the load is below saturation for both
    assert chunked["request_throughput"] == pytest.approx(
        prefill_first["request_throughput"], rel=0.05
    )
