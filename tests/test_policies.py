"""Policies driven by hand: ``add`` / ``schedule`` / ``update`` on hand-built states, no SimPy."""

from __future__ import annotations

import numpy as np
import pytest

import llmsim
from llmsim.errors import ConfigError
from llmsim.kv_cache import BlockPool
from llmsim.policies import (
    ContinuousConfig,
    DynamicConfig,
    ReplicaContext,
    SpeculativeConfig,
    StaticConfig,
)
from llmsim.request import Request, Status
from tests.conftest import make_scenario

STEP = 0.01


def ctx(blocks: int = 1000, bs: int = 4, max_len: int = 4096, **kw: object) -> ReplicaContext:
    return ReplicaContext(
        pool=BlockPool(blocks, watermark=0.0),
        block_size=bs,
        max_model_len=max_len,
        kv_block_bytes=1e6,
        host_bandwidth=1e9,
        rng=np.random.default_rng(0),
        **kw,  # type: ignore[arg-type]
    )


def req(i: int, prompt: int, out: int, arrival: float = 0.0, **kw: object) -> Request:
    return Request(i, arrival, prompt, out, **kw)  # type: ignore[arg-type]


def step(policy, now: float):  # type: ignore[no-untyped-def]
    """Schedule and complete one step of STEP seconds (every step of a decode run)."""
    plan = policy.schedule(now)
    if plan is None:
        return None, now
    k = plan.decode_steps or 1
    policy.update(plan, now, [STEP] * k)
    return plan, now + STEP * k


# --- continuous: prefill-first ---------------------------------------------------------------


def test_prefill_first_admits_in_order_within_budget_and_seq_cap() -> None:
    pol = ContinuousConfig(max_num_seqs=3, max_num_batched_tokens=100).build(ctx())
    for i, p in enumerate([40, 50, 20, 5]):
        pol.add(req(i, p, 5), 0.0)
    plan = pol.schedule(0.0)
    # 40 + 50 fit the 100-token budget; 20 would exceed it, so FCFS stops there
    assert [(r.id, q) for r, q in plan.prefills] == [(0, 40), (1, 50)]
    pol.update(plan, 0.0, [STEP])
    plan = pol.schedule(STEP)
    assert [(r.id, q) for r, q in plan.prefills] == [(2, 20)]  # seq cap 3 leaves one slot
    pol.update(plan, STEP, [STEP])
    plan = pol.schedule(2 * STEP)
    assert not plan.prefills and plan.shape.decode_seqs == 3  # request 3 waits for a slot


def test_prefill_first_preempts_the_latest_admitted() -> None:
    pol = ContinuousConfig(max_num_seqs=4, max_num_batched_tokens=64, watermark=0.0).build(
        ctx(blocks=6, bs=4)
    )
    for i in range(3):
        pol.add(req(i, 4, 20), 0.0)
    _, t = step(pol, 0.0)  # three prompts of one block each; three blocks left
    plan = pol.schedule(t)
    # each request needs a second block to decode its first token: 3 needed, 3 free
    assert plan.shape.decode_seqs == 3
    pol.update(plan, t, [STEP] * plan.decode_steps)
    t += STEP * plan.decode_steps
    plan = pol.schedule(t)  # all three need a third block and none is free
    # preempting the latest admitted (2) frees its two blocks, enough for the other two
    assert [r.id for r in pol.decode.members.values()] == [0, 1]
    assert pol.waiting.peek().id == 2 and pol.waiting.peek().preemptions == 1
    assert plan.shape.decode_seqs == 2 and plan.decode_steps == 1


def test_recompute_prefills_prompt_plus_generated_tokens() -> None:
    pol = ContinuousConfig(max_num_seqs=2, max_num_batched_tokens=64, watermark=0.0).build(
        ctx(blocks=4, bs=2)
    )
    pol.add(req(0, 2, 4), 0.0)
    pol.add(req(1, 2, 4), 0.0)
    t = 0.0
    for _ in range(3):  # prefill; two decode steps; preempt request 1 and finish request 0
        _, t = step(pol, t)
    plan = pol.schedule(t)
    assert [(r.id, q) for r, q in plan.prefills] == [(1, 5)]  # 2 prompt + 3 generated


# --- continuous: chunked prefill ---------------------------------------------------------------


def test_chunked_prefill_splits_prompts_and_keeps_decodes_first() -> None:
    cfg = ContinuousConfig(
        max_num_seqs=8,
        max_num_batched_tokens=64,
        chunked_prefill=True,
        long_prefill_token_threshold=48,
    )
    pol = cfg.build(ctx())
    pol.add(req(0, 8, 10), 0.0)
    _, t = step(pol, 0.0)  # request 0 prefilled, now decoding
    pol.add(req(1, 100, 5), t)
    pol.add(req(2, 30, 5), t)
    plan = pol.schedule(t)
    # budget 64: 1 decode token, then request 1 gets min(100, 63, cap 48) = 48, then
    # request 2 the remaining 15
    assert plan.shape.decode_seqs == 1
    assert [(r.id, q) for r, q in plan.prefills] == [(1, 48), (2, 15)]
    pol.update(plan, t, [STEP])
    plan = pol.schedule(t + STEP)
    # continuing prompts first, in admission order: 1 gets 48 more (4 left), 2 its last 15
    assert [(r.id, q) for r, q in plan.prefills] == [(1, 48), (2, 15)]
    assert plan.shape.decode_seqs == 1
    assert plan.shape.sampled_seqs == 2  # the decode and request 2's first token


def test_chunked_prefill_threshold_above_budget_is_rejected() -> None:
    with pytest.raises(ValueError, match="exceeds the token budget"):
        ContinuousConfig(
            chunked_prefill=True, max_num_batched_tokens=256, long_prefill_token_threshold=512
        )


# --- continuous: orders ----------------------------------------------------------------------


def test_priority_classes_then_fcfs() -> None:
    pol = ContinuousConfig(max_num_seqs=1, order="priority").build(ctx())
    pol.add(req(0, 10, 2, arrival=0.0, priority=1), 0.0)
    pol.add(req(1, 10, 2, arrival=0.1, priority=0), 0.1)
    pol.add(req(2, 10, 2, arrival=0.2, priority=0), 0.2)
    pol.add(req(3, 10, 2, arrival=0.3, priority=1), 0.3)
    order = []
    t = 0.3
    while len(order) < 4:
        plan, t = step(pol, t)
        order += [r.id for r, _ in plan.prefills]
    assert order == [1, 2, 0, 3]


def test_shortest_job_first() -> None:
    pol = ContinuousConfig(max_num_seqs=1, order="sjf").build(ctx())
    for i, (p, o) in enumerate([(100, 100), (10, 10), (50, 5), (10, 1)]):
        pol.add(req(i, p, o, arrival=i * 0.01), 0.0)
    order = []
    t = 0.0
    while len(order) < 4:
        plan, t = step(pol, t)
        order += [r.id for r, _ in plan.prefills]
    assert order == [3, 1, 2, 0]  # by prompt + output: 11, 20, 55, 200


# --- continuous: prefix caching --------------------------------------------------------------


def test_prefix_cache_hits_shared_blocks_and_counts_hit_rate() -> None:
    pol = ContinuousConfig(max_num_seqs=4, prefix_caching=True).build(ctx(bs=4))
    shared = (11, 12, 13)  # three 8-token hash blocks: a 24-token shared prefix
    a = req(0, 24 + 6, 2, prefix_hashes=(*shared, 100), hash_block_tokens=8)
    pol.add(a, 0.0)
    _, t = step(pol, 0.0)
    b = req(1, 24 + 10, 2, prefix_hashes=(*shared, 200, 201), hash_block_tokens=8)
    pol.add(b, t)
    plan = pol.schedule(t)
    # b finds the 6 full 4-token blocks of the shared 24 tokens: computes only 10
    assert [(r.id, q) for r, q in plan.prefills] == [(1, 10)]
    assert b.cached_tokens == 24
    assert pol.pool.hit_rate == pytest.approx(24 / (30 + 34))


def test_prefix_cache_keeps_unreferenced_blocks_until_evicted() -> None:
    pool_ctx = ctx(blocks=12, bs=4)
    pol = ContinuousConfig(max_num_seqs=4, prefix_caching=True).build(pool_ctx)
    pol.add(req(0, 16, 1, prefix_hashes=(1, 2), hash_block_tokens=8), 0.0)
    _, t = step(pol, 0.0)  # finishes at once (one output token)
    pool = pool_ctx.pool
    assert pool.used == 0 and len(pool.evictable) == 4  # cached, reclaimable
    pol.add(req(1, 16, 1, prefix_hashes=(1, 2), hash_block_tokens=8), t)
    plan = pol.schedule(t)
    # all 16 tokens are cached, but the last token is always recomputed: 3 blocks hit
    assert [(r.id, q) for r, q in plan.prefills] == [(1, 4)]
    # a request with other content evicts the least recently used cached blocks
    pol.update(plan, t, [STEP])
    pol.add(req(2, 44, 1, prefix_hashes=(7, 8, 9, 10, 11, 12), hash_block_tokens=8), t)
    step(pol, t + STEP)
    assert pool.used == 0 and pool.used + len(pool.evictable) <= 12


# --- continuous: swap ------------------------------------------------------------------------


def test_swap_preemption_charges_pcie_transfers() -> None:
    c = ctx(blocks=6, bs=4)
    pol = ContinuousConfig(
        max_num_seqs=4, max_num_batched_tokens=64, preemption="swap", watermark=0.0
    ).build(c)
    for i in range(3):
        pol.add(req(i, 4, 20), 0.0)
    t = 0.0
    for _ in range(2):
        _, t = step(pol, t)
    plan = pol.schedule(t)  # needs 3 blocks, none free: swap out request 2 (2 blocks)
    assert [r.id for r in pol.swapped] == [2]
    assert all(r.status == Status.WAITING and r.num_computed == 8 for r in pol.swapped)
    # 2 blocks of 1 MB over 1 GB/s, added to this step
    assert plan.extra_s == pytest.approx(2 * 1e6 / 1e9)


def test_swapped_requests_come_back_without_recomputation() -> None:
    sc = make_scenario(
        engine=llmsim.EngineConfig(kv_blocks=400, max_model_len=8192),
        policy=ContinuousConfig(max_num_seqs=64, preemption="swap"),
        workload=llmsim.WorkloadConfig(
            arrival=llmsim.PoissonArrivals(rate=40.0),
            prompt_tokens=llmsim.UniformLength(low=100, high=600),
            output_tokens=llmsim.UniformLength(low=50, high=400),
            num_requests=300,
        ),
    )
    res = llmsim.simulate(sc)
    req, steps = res.requests, res.steps
    assert (req["status"] == "finished").all()
    assert res.summary["preemptions"] > 10
    # swapped KV is restored, not recomputed: prompts are prefilled exactly once
    assert steps["prefill_tokens"].sum() == req["prompt_tokens"].sum()
    assert steps["sampled_tokens"].sum() == req["output_tokens"].sum()
    recompute = llmsim.simulate(sc.with_overrides({"policy.preemption": "recompute"}))
    assert recompute.steps["prefill_tokens"].sum() > req["prompt_tokens"].sum()


# --- contiguous layout -----------------------------------------------------------------------


def test_contiguous_layout_reserves_max_model_len_per_request() -> None:
    c = ctx(blocks=100, bs=4, max_len=64)  # 16 blocks per request: 6 requests fit
    pol = ContinuousConfig(
        max_num_seqs=32, max_num_batched_tokens=4096, kv_layout="contiguous"
    ).build(c)
    for i in range(10):
        pol.add(req(i, 8, 4), 0.0)
    plan = pol.schedule(0.0)
    assert len(plan.prefills) == 6
    assert c.pool.used == 96


# --- static and dynamic ----------------------------------------------------------------------


def test_static_waits_for_a_full_batch_and_pads_it() -> None:
    pol = StaticConfig(batch_size=3).build(ctx(blocks=10_000))
    pol.add(req(0, 10, 2), 0.0)
    pol.add(req(1, 30, 5), 0.1)
    assert pol.schedule(0.1) is None and pol.wake_at(0.1) is None
    pol.add(req(2, 20, 1), 0.2)
    plan = pol.schedule(0.2)
    assert plan.shape.prefill_tokens == 3 * 30  # padded to the longest prompt
    pol.update(plan, 0.2, [STEP])
    t = 0.2 + STEP
    plan = pol.schedule(t)
    assert plan.shape.decode_seqs == 3  # the finished request keeps its slot
    assert plan.decode_steps == 1  # request 0 finishes after one decode step
    pol.update(plan, t, [STEP])
    t += STEP
    plan = pol.schedule(t)
    assert plan.shape.decode_seqs == 3 and plan.decode_steps == 3
    pol.update(plan, t, [STEP] * 3)
    assert [r.id for r in pol.finished] == [2, 0, 1]
    assert pol.batch == [] and pol.pool.used == 0


def test_static_max_wait_runs_a_partial_batch() -> None:
    pol = StaticConfig(batch_size=4, max_wait_s=0.5).build(ctx(blocks=10_000))
    pol.add(req(0, 10, 2), 1.0)
    assert pol.wake_at(1.0) == pytest.approx(1.5)
    assert pol.schedule(1.2) is None
    plan = pol.schedule(1.5)
    assert len(plan.prefills) == 1


def test_dynamic_preferred_sizes_and_delay() -> None:
    pol = DynamicConfig(
        max_batch_size=8, max_queue_delay_ms=100, preferred_batch_sizes=(2, 4)
    ).build(ctx(blocks=10_000))
    for i in range(3):
        pol.add(req(i, 10, 2), 0.0)
    assert len(pol.schedule(0.0).prefills) == 2  # the largest preferred size that is ready


def test_dynamic_adaptive_takes_what_is_queued() -> None:
    pol = DynamicConfig(max_batch_size=8, adaptive=True).build(ctx(blocks=10_000))
    for i in range(5):
        pol.add(req(i, 10, 2), 0.0)
    assert len(pol.schedule(0.0).prefills) == 5
    assert pol.wake_at(0.0) is None


def test_request_level_batch_that_kv_cannot_hold_is_rejected() -> None:
    with pytest.raises(ValueError, match="more than the cache"):
        StaticConfig(batch_size=64).build(ctx(blocks=100, bs=16, max_len=4096))
    sc = make_scenario(
        policy=StaticConfig(batch_size=512), engine=llmsim.EngineConfig(max_model_len=8192)
    )
    with pytest.raises(ConfigError, match=r"policy: policy.batch_size 512 needs"):
        llmsim.build_replica(sc)


# --- speculative -----------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "per_step"), [(1.0, 5), (0.0, 1)])
def test_speculative_emits_accepted_prefix_plus_one(rate: float, per_step: int) -> None:
    cfg = SpeculativeConfig(
        draft_model="Llama-3.2-1B", num_speculative_tokens=4, acceptance_rate=rate
    )
    pol = cfg.build(ctx())
    pol.add(req(0, 8, 21), 0.0)
    _, t = step(pol, 0.0)
    plan = pol.schedule(t)
    assert plan.shape.spec_tokens == 4 and plan.shape.sampled_seqs == 5
    stats = pol.update(plan, t, [STEP])
    assert stats.emitted == per_step
    r = pol.decode.members[1]
    assert r.num_output == 1 + per_step


def test_speculative_acceptance_fraction_matches_the_rate() -> None:
    cfg = SpeculativeConfig(
        draft_model="Llama-3.2-1B", num_speculative_tokens=3, acceptance_rate=0.5
    )
    pol = cfg.build(ctx(blocks=5000, max_len=8192))
    pol.add(req(0, 8, 8000), 0.0)
    _, t = step(pol, 0.0)
    emitted = []
    for _ in range(3000):
        plan = pol.schedule(t)
        emitted.append(pol.update(plan, t, [STEP]).emitted)
        t += STEP
    # E[tokens per step] = 1 + a + a^2 + a^3 for k = 3
    assert np.mean(emitted) == pytest.approx(1 + 0.5 + 0.25 + 0.125, rel=0.03)


def test_speculative_rejects_a_draft_larger_than_the_target() -> None:
    sc = make_scenario(model="Llama-3.2-1B", policy=SpeculativeConfig(draft_model="Llama-3.1-8B"))
    with pytest.raises(ConfigError, match="must be smaller than the target"):
        llmsim.build_replica(sc)
    sc = make_scenario(policy=SpeculativeConfig(draft_model="Qwen2.5-0.5B"))
    with pytest.raises(ConfigError, match="vocabulary"):
        llmsim.build_replica(sc)


def test_speculative_charges_draft_memory() -> None:
    plain = llmsim.build_replica(make_scenario())
    spec = llmsim.build_replica(make_scenario(policy=SpeculativeConfig(draft_model="Llama-3.2-1B")))
    assert spec.kv.weights > plain.kv.weights
    assert spec.kv.kv_bytes_per_token > plain.kv.kv_bytes_per_token
    assert spec.kv.num_blocks < plain.kv.num_blocks
