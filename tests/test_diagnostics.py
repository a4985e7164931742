"""What a run says besides its averages: rejections as SLO misses, the overload verdict, what
priced it, every pool in the per-pool tables, extrapolation beyond the calibrated range."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import llmsim
from llmsim.cli import app
from llmsim.diagnostics import provenance
from llmsim.errors import ConfigError
from llmsim.sweep import saturation_throughput
from tests.conftest import make_scenario
from tests.test_queueing import STEP, md1_scenario


def _budget_scenario(**policy: object) -> llmsim.Scenario:
    """Prompts of 100-1,000 tokens under a 500-token budget without chunked prefill."""
    return make_scenario(
        policy=llmsim.ContinuousConfig(max_num_seqs=64, max_num_batched_tokens=500, **policy),
        workload=llmsim.WorkloadConfig(
            arrival=llmsim.PoissonArrivals(rate=5.0),
            prompt_tokens=llmsim.UniformLength(low=100, high=1000),
            output_tokens=llmsim.FixedLength(value=20),
            num_requests=300,
        ),
        metrics=llmsim.MetricsConfig(slo_ttft_ms=10_000, slo_tpot_ms=1_000),
    )


def test_rejected_requests_are_slo_misses_with_a_reason() -> None:
    res = llmsim.simulate(_budget_scenario())
    req, s = res.requests, res.summary
    too_long = req["prompt_tokens"] > 500
    assert too_long.sum() > 100
    # exactly the prompts over the budget are refused, each with its reason
    assert (req["status"] == "rejected").equals(too_long)
    assert set(req.loc[too_long, "reject_reason"]) == {"token_budget"}
    assert set(req.loc[~too_long, "reject_reason"]) == {""}
    assert s["rejected"] == s["rejected_token_budget"] == too_long.sum()
    assert s["rejected_fraction"] == pytest.approx(too_long.mean())
    # every finished request meets these loose SLOs; the rejected ones do not
    assert s["slo_attainment"] == pytest.approx(1 - too_long.mean())
    assert any("rejected" in w and "token budget" in w for w in res.warnings)


def test_chunked_prefill_rejects_nothing() -> None:
    res = llmsim.simulate(_budget_scenario(chunked_prefill=True))
    assert res.summary["rejected"] == 0
    assert res.summary["slo_attainment"] == 1.0
    assert "rejected_token_budget" not in res.summary
    assert not res.warnings


def test_cached_tokens_column_counts_prefix_hits() -> None:
    res = llmsim.simulate(
        make_scenario(
            policy=llmsim.ContinuousConfig(
                max_num_seqs=64, max_num_batched_tokens=8192, prefix_caching=True
            ),
            workload={
                "arrival": {"kind": "poisson", "rate": 5.0},
                "output_tokens": {"kind": "fixed", "value": 4},
                "num_requests": 50,
                "shared_prefix": {
                    "groups": 1,
                    "prompts_per_group": 50,
                    "system_prompt_tokens": 192,
                    "question_tokens": 64,
                },
            },
        )
    )
    cached = res.requests["cached_tokens"]
    # the first request finds nothing; later ones find the 192-token system prompt (12 blocks)
    assert cached.iloc[0] == 0
    assert (cached.iloc[5:] == 192).all()
    hit = cached.sum() / res.requests["prompt_tokens"].sum()
    assert res.summary["prefix_cache_hit_rate"] == pytest.approx(hit)


# --- overload --------------------------------------------------------------------------------


@pytest.mark.parametrize("rho", [1.25, 1.5])
def test_overload_growth_matches_the_fluid_limit(rho: float) -> None:
    # Arrivals at rho times the service rate: request k waits about k/lambda * (rho - 1), so the
    # queueing delay grows by rho - 1 seconds per second of arrivals.
    res = llmsim.simulate(md1_scenario(rho, 4000, seed=5))
    s = res.summary
    assert s["overloaded"] == 1.0
    assert s["queue_growth_rate"] == pytest.approx(rho - 1, rel=0.1)
    assert s["offered_request_rate"] == pytest.approx(rho / STEP, rel=0.05)
    assert any(w.startswith("overloaded") for w in res.warnings)


def test_a_short_overloaded_run_is_overloaded() -> None:
    # 300 requests at 1.17x capacity: the queue grows by about 1.4 s over the run, far more
    # than the 10 ms a request takes
    res = llmsim.simulate(md1_scenario(1.17, 300, seed=2))
    assert res.summary["overloaded"] == 1.0


@pytest.mark.parametrize(("rho", "seed"), [(0.5, 5), (0.9, 5), (0.9, 6), (0.95, 7)])
def test_a_stable_queue_is_not_overloaded(rho: float, seed: int) -> None:
    res = llmsim.simulate(md1_scenario(rho, 4000, seed=seed))
    s = res.summary
    assert s["overloaded"] == 0.0
    assert abs(s["queue_growth_rate"]) < 0.02
    assert s["busy_fraction"] == pytest.approx(rho, rel=0.05)
    assert not res.warnings


def test_closed_loop_clients_get_no_overload_verdict() -> None:
    res = llmsim.simulate(
        make_scenario(
            workload={
                "arrival": {"kind": "closed_loop", "clients": 8},
                "prompt_tokens": {"kind": "fixed", "value": 64},
                "output_tokens": {"kind": "fixed", "value": 8},
                "num_requests": 200,
            }
        )
    )
    assert "overloaded" not in res.summary


def test_saturation_throughput_is_not_set_by_the_last_long_request() -> None:
    # 199 requests of 10 output tokens and one of 1,000, all at t=0, batch size 1 and one step
    # per token: the capacity is one request per 10 steps, but the last finish is at
    # 199 * 10 + 1,000 steps, which would say about half that.
    n = 200
    outputs = [10] * (n - 1) + [1000]
    sc = make_scenario(
        engine=llmsim.EngineConfig(cost=llmsim.ConstantConfig(step_s=STEP), max_model_len=8192),
        policy=llmsim.ContinuousConfig(max_num_seqs=1, max_num_batched_tokens=8192),
        workload={
            "arrival": {"kind": "batch"},
            "lengths": {"inline": [(64, o) for o in outputs], "in_order": True},
            "num_requests": n,
        },
    )
    sat = saturation_throughput(sc)
    k = int(np.ceil(0.99 * n))
    assert sat == pytest.approx(k / (k * 10 * STEP), rel=0.01)


# --- configuration the engine would refuse ------------------------------------------------------


def test_vllm_without_chunked_prefill_refuses_a_budget_below_max_model_len() -> None:
    sc = make_scenario(
        engine=llmsim.EngineConfig(preset="vllm-0.6", max_model_len=8192),
        policy=llmsim.ContinuousConfig(max_num_seqs=64, max_num_batched_tokens=2048),
    )
    with pytest.raises(ConfigError, match=r"max_num_batched_tokens.*chunked_prefill: true"):
        llmsim.Simulation(sc)
    # chunked prefill makes the same budget valid
    ok = sc.with_overrides({"policy.chunked_prefill": True})
    llmsim.Simulation(ok)


def test_validate_and_run_warn_before_rejecting(tmp_path: Path, root: Path) -> None:
    runner = CliRunner()
    quick = str(root / "scenarios" / "quickstart.yaml")
    args = ["--set", "policy.max_num_batched_tokens=2048", "--set", "workload.num_requests=200"]
    res = runner.invoke(app, ["validate", quick, *args])
    assert res.exit_code == 0, res.output
    assert "prompts are longer than the token budget" in res.output
    res = runner.invoke(app, ["run", quick, *args, "-q", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "were rejected" in res.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rejected"] > 0
    assert any("rejected" in w for w in summary["warnings"])
    priced = "1x H100-SXM, roofline cost model (datasheet peaks), preset none"
    assert summary["priced_by"] == [priced]


# --- provenance and per-pool tables --------------------------------------------------------------


def test_provenance_names_cost_model_preset_and_profile() -> None:
    sc = make_scenario(
        hardware="A10G",
        engine=llmsim.EngineConfig(preset="vllm-v1", max_model_len=4096),
    )
    (line,) = provenance(sc)
    assert line == ("1x A10G, roofline cost model (datasheet peaks), preset vllm-v1")
    cal = make_scenario(engine=llmsim.EngineConfig(cost={"kind": "calibrated"}))
    assert provenance(cal) == [
        "1x H100-SXM, calibrated cost model (kernels measured 2026-11-27), preset none"
    ]


def test_disaggregated_tables_include_the_prefill_pool(root: Path) -> None:
    sc = llmsim.load_scenario(
        root / "scenarios" / "disaggregated.yaml", ["workload.num_requests=300"]
    )
    res = llmsim.simulate(sc)
    assert res.by_pool is not None and res.by_replica is not None
    assert list(res.by_pool.index) == ["prefill", "decode"]
    assert list(res.by_replica.index) == [0, 1, 2]
    # the prefill replica prefilled every request; the decode replicas split them
    assert res.by_pool.loc["prefill", "completed"] == 300
    assert res.by_replica.loc[[1, 2], "completed"].sum() == 300
    busy = res.by_replica["busy_fraction"]
    assert (busy > 0).all() and (busy < 1).all()
    assert res.summary["busy_fraction"] == pytest.approx(busy.mean())
    steps = res.steps
    window = res.window[1] - res.window[0]
    prefill_busy = steps.loc[steps["replica"] == 0, "duration"].sum() / window
    assert res.by_pool.loc["prefill", "busy_fraction"] == pytest.approx(prefill_busy)


def test_calibrated_run_beyond_the_measured_range_says_so() -> None:
    # 40,000-token prompts in one step: beyond the 32,768 tokens the H100 GEMMs were measured at
    sc = make_scenario(
        engine=llmsim.EngineConfig(cost={"kind": "calibrated"}, max_model_len=65536),
        policy=llmsim.ContinuousConfig(max_num_seqs=8, max_num_batched_tokens=65536),
        workload=llmsim.WorkloadConfig(
            arrival=llmsim.BatchArrivals(),
            prompt_tokens=llmsim.FixedLength(value=40_000),
            output_tokens=llmsim.FixedLength(value=2),
            num_requests=2,
        ),
    )
    res = llmsim.simulate(sc)
    assert any("tokens per step up to 40,000, beyond the 32,768" in w for w in res.warnings)
    assert res.summary["extrapolated"] == 1.0
    small = llmsim.simulate(
        sc.with_overrides({"workload.prompt_tokens": {"kind": "fixed", "value": 1000}})
    )
    assert not small.warnings and small.summary["extrapolated"] == 0.0


def test_a_workload_that_draws_no_requests_is_refused() -> None:
    sc = make_scenario(
        workload={
            "arrival": {"kind": "poisson", "rate": 0.01},
            "prompt_tokens": {"kind": "fixed", "value": 8},
            "output_tokens": {"kind": "fixed", "value": 8},
            "duration_s": 0.001,
        }
    )
    with pytest.raises(ConfigError, match="workload: draws no requests"):
        llmsim.Simulation(sc)
