"""Schedules worked out by hand, with a constant 10 ms step."""

from __future__ import annotations

import numpy as np
import pytest

import llmsim
from llmsim.engine import Simulation
from llmsim.workload import RequestStream
from tests.conftest import make_scenario

STEP = 0.010


def run(arrivals, prompts, outputs, **engine):  # type: ignore[no-untyped-def]
    stream = RequestStream(np.array(arrivals), np.array(prompts), np.array(outputs))
    policy = engine.pop(
        "policy", llmsim.ContinuousConfig(max_num_seqs=2, max_num_batched_tokens=64)
    )
    scenario = make_scenario(
        engine=llmsim.EngineConfig(
            cost=llmsim.ConstantConfig(step_s=STEP), max_model_len=64, **engine
        ),
        policy=policy,
    )
    return Simulation(scenario, stream).run()


def test_prefill_first_schedule_by_hand() -> None:
    # R0 at 0 ms (4 prompt, 3 output), R1 at 5 ms (4, 2), R2 at 25 ms (4, 1); max 2 sequences.
    #  0-10  prefill R0            -> R0 token 1 at 10
    # 10-20  prefill R1            -> R1 token 1 at 20
    # 20-30  decode R0, R1         -> R0 token 2, R1 token 2 (R1 done) at 30; R2 arrived at 25
    # 30-40  prefill R2            -> R2 token 1 (done) at 40
    # 40-50  decode R0             -> R0 token 3 (done) at 50
    res = run([0.0, 0.005, 0.025], [4, 4, 4], [3, 2, 1])
    df = res.requests.set_index("request_id")
    np.testing.assert_allclose(df["first_scheduled"], [0.0, 0.010, 0.030], atol=1e-12)
    np.testing.assert_allclose(df["ttft"], [0.010, 0.015, 0.015], atol=1e-12)
    np.testing.assert_allclose(df["e2e"], [0.050, 0.025, 0.015], atol=1e-12)
    np.testing.assert_allclose(df["tpot"].iloc[:2], [0.020, 0.010], atol=1e-12)
    assert np.isnan(df["tpot"].iloc[2])  # one output token: no TPOT
    assert res.itl is not None
    np.testing.assert_allclose(res.itl.expand(), [0.010, 0.020, 0.020], atol=1e-12)
    steps = res.steps
    assert steps["batch_size"].tolist() == [1, 1, 2, 1, 1]
    assert steps["prefill_tokens"].tolist() == [4, 4, 0, 4, 0]
    assert steps["decode_tokens"].tolist() == [0, 0, 2, 0, 1]
    s = res.summary
    assert s["mean_ttft_ms"] == pytest.approx(40 / 3)
    assert s["mean_itl_ms"] == pytest.approx(50 / 3)
    assert s["duration_s"] == pytest.approx(0.050)
    assert s["request_throughput"] == pytest.approx(3 / 0.050)
    assert s["output_throughput"] == pytest.approx(6 / 0.050)


def test_preemption_by_recompute_by_hand() -> None:
    # Block size 2, 4 blocks, no watermark. R0 and R1 arrive at 0 with 2 prompt, 4 output.
    #  0-10  prefill R0, R1 (1 block each)             tokens 1 at 10
    # 10-20  decode both: each needs its 2nd block     tokens 2 at 20 (4 blocks used)
    # 20-30  decode both (positions 3 fit the blocks)  tokens 3 at 30
    # 30     both need a 3rd block, none free: preempt R1 (latest admitted), free its 2
    # 30-40  decode R0 (3rd block)                     token 4 at 40, R0 done, frees 3
    # 40-50  recompute R1: 5 tokens (2 prompt + 3 generated), 3 blocks -> token 4 at 50, done
    res = run(
        [0.0, 0.0],
        [2, 2],
        [4, 4],
        block_size=2,
        kv_blocks=4,
        policy=llmsim.ContinuousConfig(max_num_seqs=2, max_num_batched_tokens=64, watermark=0.0),
    )
    df = res.requests.set_index("request_id")
    assert df["preemptions"].tolist() == [0, 1]
    np.testing.assert_allclose(df["finish"], [0.040, 0.050], atol=1e-12)
    np.testing.assert_allclose(df["first_token"], [0.010, 0.010], atol=1e-12)
    assert res.steps["prefill_tokens"].tolist() == [4, 0, 0, 0, 5]
    assert res.steps["kv_blocks"].tolist() == [2, 4, 4, 3, 3]
    assert res.itl is not None
    # R0: 10, 10, 10; R1: 10, 10, then 20 across the preemption (token 3 at 30, token 4 at 50)
    np.testing.assert_allclose(res.itl.expand(), [0.01] * 5 + [0.02], atol=1e-12)
    assert res.summary["preemptions"] == 1


def test_rejects_request_longer_than_max_model_len() -> None:
    res = run([0.0, 0.001], [60, 4], [10, 2])
    df = res.requests.set_index("request_id")
    assert df["status"].tolist() == ["rejected", "finished"]
    assert res.summary["rejected"] == 1
    assert res.summary["completed"] == 1
