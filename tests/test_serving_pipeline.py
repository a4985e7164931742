"""The engine's serving pipeline, by hand with a constant 10 ms step: async scheduling (a step
planned while the previous one runs), API-server time per request and per prompt token, and
drained load stages."""

from __future__ import annotations

import numpy as np
import pytest

import llmsim
from llmsim.engine import Simulation
from llmsim.workload import RequestStream
from tests.conftest import make_scenario

STEP = 0.010
CHUNKED = llmsim.ContinuousConfig(max_num_seqs=4, max_num_batched_tokens=64, chunked_prefill=True)


def run(arrivals, prompts, outputs, stream_kw=None, **engine):  # type: ignore[no-untyped-def]
    stream = RequestStream(
        np.array(arrivals, dtype=float), np.array(prompts), np.array(outputs), **(stream_kw or {})
    )
    scenario = make_scenario(
        engine=llmsim.EngineConfig(
            cost=llmsim.ConstantConfig(step_s=STEP), max_model_len=256, **engine
        ),
        policy=CHUNKED,
    )
    return Simulation(scenario, stream).run().requests.set_index("request_id")


def test_async_scheduling_joins_the_step_after_next() -> None:
    # R0 at 0 (16 prompt, 10 output); R1 arrives at 15 ms, during step 2 (10-20 ms).
    # Synchronous: step 3 (20-30) is planned at 20 with R1 -> first token at 30 (TTFT 15 ms).
    # Async: step 3 was planned while step 2 ran, without R1 -> R1 prefills in step 4 (30-40),
    # first token at 40 (TTFT 25 ms). R0 arrived at an idle engine: scheduled at once either way.
    sync = run([0.0, 0.015], [16, 16], [10, 3])
    ahead = run([0.0, 0.015], [16, 16], [10, 3], async_scheduling=True)
    np.testing.assert_allclose(sync["ttft"], [0.010, 0.015], atol=1e-12)
    np.testing.assert_allclose(ahead["ttft"], [0.010, 0.025], atol=1e-12)
    np.testing.assert_allclose(ahead["first_scheduled"], [0.0, 0.030], atol=1e-12)
    # Both requests finish; R0 decodes one token a step throughout.
    np.testing.assert_allclose(ahead["finish"], [0.100, 0.060], atol=1e-12)


def test_frontend_time_moves_every_token_not_the_gaps() -> None:
    base = run([0.0, 0.015], [16, 16], [10, 3])
    slow = run([0.0, 0.015], [16, 16], [10, 3], frontend_ms=4.0)
    np.testing.assert_allclose(slow["ttft"], base["ttft"] + 0.004, atol=1e-12)
    np.testing.assert_allclose(slow["e2e"], base["e2e"] + 0.004, atol=1e-12)
    np.testing.assert_allclose(slow["tpot"], base["tpot"], atol=1e-12)


def test_tokenisation_delays_the_engine_by_prompt_length() -> None:
    # 500 us per prompt token: R0 (16 tokens) reaches the engine at 8 ms, R1 (40) at 20 + 20 ms.
    res = run([0.0, 0.020], [16, 40], [2, 2], tokenize_us_per_token=500.0)
    np.testing.assert_allclose(res["first_scheduled"], [0.008, 0.040], atol=1e-12)
    np.testing.assert_allclose(res["ttft"], [0.018, 0.030], atol=1e-12)


def test_drained_stage_starts_after_the_last_request_of_the_one_before() -> None:
    # Stage 0: R0 at 0 (output 20: busy until 200 ms). Stage 1 is drawn to start at 50 ms with
    # R1 at 60 ms: drained, it starts at 200 ms, so R1 arrives at 210 ms.
    kw = {"stage": np.array([0, 1]), "stage_starts": np.array([0.0, 0.050])}
    res = run([0.0, 0.060], [16, 16], [20, 2], stream_kw=kw)
    assert res.loc[0, "finish"] == pytest.approx(0.200)
    assert res.loc[1, "arrival"] == pytest.approx(0.210)
    # Without the drain (no stage starts) R1 arrives as drawn.
    res = run([0.0, 0.060], [16, 16], [20, 2], stream_kw={"stage": np.array([0, 1])})
    assert res.loc[1, "arrival"] == pytest.approx(0.060)


def test_drain_never_moves_a_stage_earlier() -> None:
    # Stage 0 ends (drawn) at 500 ms but its only request finishes at 20 ms: stage 1 keeps its
    # drawn start, and its arrival at 510 ms stays.
    kw = {"stage": np.array([0, 1]), "stage_starts": np.array([0.0, 0.500])}
    res = run([0.0, 0.510], [16, 16], [2, 2], stream_kw=kw)
    assert res.loc[1, "arrival"] == pytest.approx(0.510)
