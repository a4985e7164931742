"""The engine (lazy decode set, multi-step decode runs, SimPy) against a naive per-token
reference implementation of the same schedule, on random workloads."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmsim
from llmsim.engine import Simulation
from llmsim.workload import RequestStream
from tests.conftest import make_scenario
from tests.reference import reference_run, reference_run_chunked


def _compare(scenario: llmsim.Scenario, stream: RequestStream) -> None:
    sim = Simulation(scenario, stream)
    rep = sim.replicas[0]
    result = sim.run()
    pol = scenario.policy
    assert isinstance(pol, llmsim.ContinuousConfig)
    common = dict(
        total_blocks=rep.kv.num_blocks,
        block_size=scenario.engine.block_size,
        max_seqs=pol.max_num_seqs,
        budget=pol.token_budget(scenario.engine.max_model_len or 8192),
        watermark=pol.watermark,
        max_model_len=scenario.engine.max_model_len or 8192,
    )
    lists = (stream.arrival.tolist(), stream.prompt_tokens.tolist(), stream.output_tokens.tolist())
    if pol.chunked_prefill:
        cap = pol.long_prefill_token_threshold or common["budget"]
        ref = reference_run_chunked(*lists, rep.cost, chunk_cap=cap, **common)
    else:
        ref = reference_run(*lists, rep.cost, **common)
    df = result.requests.set_index("request_id")
    ref_gaps: list[float] = []
    for r in ref:
        row = df.loc[r.id]
        assert row["status"] == r.status
        if r.status != "finished":
            continue
        assert row["output_tokens"] == r.max_out
        assert row["preemptions"] == r.preemptions
        assert np.isclose(row["first_scheduled"], r.first_scheduled, rtol=0, atol=1e-9)
        assert np.isclose(row["first_token"], r.emits[0], rtol=0, atol=1e-9)
        assert np.isclose(row["finish"], r.emits[-1], rtol=0, atol=1e-9)
        ref_gaps.extend(np.diff(r.emits))
    assert result.itl is not None
    got = result.itl.expand()
    assert len(got) == len(ref_gaps)
    np.testing.assert_allclose(got, np.sort(ref_gaps), rtol=0, atol=1e-9)
    # tokens are conserved: every sampled token belongs to exactly one request's output
    assert (
        result.steps["sampled_tokens"].sum()
        == df.loc[df["status"] == "finished", "output_tokens"].sum()
    )
    assert result.steps["kv_blocks"].max() <= rep.kv.num_blocks
    assert rep.policy.pool.used == 0


workloads = st.integers(min_value=1, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(0.0, 0.2), min_size=n, max_size=n),
        st.lists(st.integers(1, 300), min_size=n, max_size=n),
        st.lists(st.integers(1, 60), min_size=n, max_size=n),
    )
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    workload=workloads,
    max_seqs=st.integers(1, 8),
    kv_blocks=st.integers(30, 200),
    block_size=st.sampled_from([1, 4, 16]),
    constant_cost=st.booleans(),
    chunk=st.sampled_from([None, 0, 32, 100]),
)
def test_engine_matches_reference(
    workload: tuple[list[float], list[int], list[int]],
    max_seqs: int,
    kv_blocks: int,
    block_size: int,
    constant_cost: bool,
    chunk: int | None,
) -> None:
    """``chunk``: None for prefill-first, else chunked prefill with that per-request cap
    (0: no cap)."""
    gaps, prompts, outputs = workload
    stream = RequestStream(
        arrival=np.cumsum(gaps), prompt_tokens=np.array(prompts), output_tokens=np.array(outputs)
    )
    cost = (
        llmsim.ConstantConfig(step_s=0.01, per_token_s=1e-5)
        if constant_cost
        else llmsim.RooflineConfig()
    )
    scenario = make_scenario(
        engine=llmsim.EngineConfig(
            kv_blocks=kv_blocks * (16 // block_size if block_size < 16 else 1),
            block_size=block_size,
            max_model_len=8192,
            cost=cost,
        ),
        policy=llmsim.ContinuousConfig(
            max_num_seqs=max_seqs,
            max_num_batched_tokens=max(512, max_seqs) if chunk is None else max(128, max_seqs),
            chunked_prefill=chunk is not None,
            long_prefill_token_threshold=chunk or None,
        ),
    )
    _compare(scenario, stream)


@pytest.mark.parametrize("chunked", [False, True])
def test_engine_matches_reference_under_memory_pressure(chunked: bool) -> None:
    """A larger run where the KV cache is small enough that preemption is frequent."""
    rng = np.random.default_rng(7)
    n = 400
    stream = RequestStream(
        arrival=np.cumsum(rng.exponential(0.02, n)),
        prompt_tokens=rng.integers(50, 1500, n),
        output_tokens=rng.integers(1, 400, n),
    )
    scenario = make_scenario(
        engine=llmsim.EngineConfig(kv_blocks=400, block_size=16, max_model_len=8192),
        policy=llmsim.ContinuousConfig(
            max_num_seqs=48,
            max_num_batched_tokens=1024 if chunked else 4096,
            chunked_prefill=chunked,
        ),
    )
    _compare(scenario, stream)
    sim = Simulation(scenario, stream)
    assert sim.run().summary["preemptions"] > 20
