"""The host-memory tier of the prefix cache (vLLM ``--kv-offloading-size``)."""

from __future__ import annotations

import pytest

import llmsim
from llmsim.hardware import GiB
from llmsim.kv_cache import BlockPool, HostTier
from llmsim.policies import ContinuousConfig
from tests.test_policies import STEP, ctx, req, step


def offload_gib(blocks: int, block_bytes: float = 1e6) -> float:
    """A tier size in GiB that holds exactly ``blocks`` blocks of ``block_bytes``."""
    return (blocks + 0.5) * block_bytes / GiB


def check_pool(pool: BlockPool) -> None:
    """Block conservation: every cached key is referenced or evictable, never both, and the
    referenced-or-held blocks plus the evictable ones fit the pool."""
    assert all(v >= 0 for v in pool.refs.values())
    assert set(pool.evictable) == {k for k, v in pool.refs.items() if v == 0}
    assert pool.used >= 0 and pool.used + len(pool.evictable) <= pool.total


def test_host_tier_is_an_lru_of_its_capacity() -> None:
    tier = HostTier(4)
    tier.touch(["a", "b", "c", "d"])
    tier.touch(["a"])  # refreshed: now the most recently used
    tier.touch(["e", "f"])  # over capacity: the two least recent (b, c) go
    assert list(tier.keys) == ["d", "a", "e", "f"]
    assert tier.match(["d", "a", "b"]) == 2 and tier.match(["b"]) == 0


def test_capacity_counts_blocks_of_all_gpus() -> None:
    cfg = ContinuousConfig(prefix_caching=True, cpu_kv_offload_gib=offload_gib(10))
    assert cfg.build(ctx()).host.capacity == 10  # type: ignore[union-attr]
    # the size is summed over the GPUs, each storing its share of every block
    assert cfg.build(ctx(num_gpus=2)).host.capacity == 5  # type: ignore[union-attr]


def test_capacity_of_a_real_replica() -> None:
    # Llama-3.1-8B: 32 layers x 8 KV heads x 128 x (K, V) x 2 bytes = 128 KiB per token;
    # a 16-token block is 2 MiB summed over the GPUs, so 8 GiB holds 4096 blocks at any TP
    for tp in (1, 2):
        sc = make_offload_scenario(8.0, tensor_parallel=tp)
        rep = llmsim.build_replica(sc)
        assert rep.policy.host.capacity == 4096  # type: ignore[attr-defined]


def test_prompt_evicted_from_the_gpu_is_loaded_from_the_host() -> None:
    c = ctx(blocks=12, bs=4)
    pool = c.pool
    pol = ContinuousConfig(
        max_num_seqs=4, prefix_caching=True, cpu_kv_offload_gib=offload_gib(8)
    ).build(c)
    pol.add(req(0, 16, 1, prefix_hashes=(1, 2), hash_block_tokens=8), 0.0)
    _, t = step(pol, 0.0)  # 4 blocks computed, cached on the GPU and copied to the host
    assert len(pool.evictable) == 4 and len(pol.host) == 4  # type: ignore[arg-type]
    pol.add(req(1, 44, 1), t)  # 11 unkeyed blocks: evicts 3 of the 4 cached ones
    _, t = step(pol, t)
    assert len(pool.evictable) == 1 and pool.match([(1, 0)]) == 0
    again = req(2, 16, 2, prefix_hashes=(1, 2), hash_block_tokens=8)
    pol.add(again, t)
    plan = pol.schedule(t)
    # by hand: the GPU has no leading block; the host has all 4, but the last token is always
    # computed, so 3 blocks (12 tokens) are loaded and 4 tokens computed
    assert [(r.id, q) for r, q in plan.prefills] == [(2, 4)]
    assert again.cached_tokens == 12 and pol.host.hit_tokens == 12  # type: ignore[union-attr]
    assert pool.hit_tokens == 0  # the GPU tier's own hits
    # 3 blocks of 1 MB over the 1 GB/s link, charged to this step
    assert plan.extra_s == pytest.approx(3 * 1e6 / 1e9)
    assert pool.used == 4  # the loaded blocks take GPU room like computed ones
    pol.update(plan, t, [STEP])
    check_pool(pool)
    # loaded blocks are cached on the GPU again: a fourth request hits them there
    pol.add(req(3, 16, 1, prefix_hashes=(1, 2), hash_block_tokens=8), t + STEP)
    plan = pol.schedule(t + STEP)
    assert [(r.id, q) for r, q in plan.prefills] == [(3, 4)] and plan.extra_s == 0.0
    pol.update(plan, t + STEP, [STEP])
    while (plan := pol.schedule(t)) is not None:
        pol.update(plan, t, [STEP] * (plan.decode_steps or 1))
    check_pool(pool)
    assert pool.used == 0


def test_without_the_tier_the_evicted_prompt_is_recomputed() -> None:
    pol = ContinuousConfig(max_num_seqs=4, prefix_caching=True).build(ctx(blocks=12, bs=4))
    pol.add(req(0, 16, 1, prefix_hashes=(1, 2), hash_block_tokens=8), 0.0)
    _, t = step(pol, 0.0)
    pol.add(req(1, 44, 1), t)
    _, t = step(pol, t)
    pol.add(req(2, 16, 2, prefix_hashes=(1, 2), hash_block_tokens=8), t)
    plan = pol.schedule(t)
    assert [(r.id, q) for r, q in plan.prefills] == [(2, 16)] and plan.extra_s == 0.0


def test_host_tier_drops_the_least_recent_prompt() -> None:
    c = ctx(blocks=12, bs=4)
    pol = ContinuousConfig(
        max_num_seqs=4, prefix_caching=True, cpu_kv_offload_gib=offload_gib(6)
    ).build(c)
    t = 0.0
    for i, h in enumerate([(1, 2), (3, 4)]):  # two 4-block prompts: 8 stored, 6 kept
        pol.add(req(i, 16, 1, prefix_hashes=h, hash_block_tokens=8), t)
        _, t = step(pol, t)
    assert len(pol.host) == 6  # type: ignore[arg-type]
    pol.add(req(2, 44, 1), t)  # evict the GPU copies
    _, t = step(pol, t)
    second = req(3, 16, 1, prefix_hashes=(3, 4), hash_block_tokens=8)
    pol.add(second, t)
    plan = pol.schedule(t)
    assert second.cached_tokens == 12 and [q for _, q in plan.prefills] == [4]
    pol.update(plan, t, [STEP])
    first = req(4, 16, 1, prefix_hashes=(1, 2), hash_block_tokens=8)
    pol.add(first, t + STEP)
    plan = pol.schedule(t + STEP)
    # the first prompt's two leading blocks were dropped: no leading run left to load
    assert first.cached_tokens == 0 and [q for _, q in plan.prefills] == [16]
    check_pool(c.pool)


def test_offload_needs_prefix_caching() -> None:
    with pytest.raises(ValueError, match="needs prefix_caching"):
        ContinuousConfig(cpu_kv_offload_gib=8)


def make_offload_scenario(gib: float, **over: object) -> llmsim.Scenario:
    """Multi-turn chats on a GPU cache too small to keep every conversation's earlier turns."""
    sc = llmsim.load_scenario("scenarios/chat_sessions.yaml")
    return sc.with_overrides(
        {
            "policy.cpu_kv_offload_gib": gib,
            "engine.kv_blocks": 5000,
            "workload.duration_s": 120,
            **over,
        }
    )


def test_offload_saves_recomputation_end_to_end() -> None:
    off = llmsim.simulate(make_offload_scenario(0.0))
    sim = llmsim.Simulation(make_offload_scenario(32.0))
    sim.keep_requests = True
    on = sim.run()
    policy = sim.replicas[0].policy
    host = policy.host  # type: ignore[attr-defined]
    assert (on.requests["status"] == "finished").all() and on.summary["preemptions"] == 0
    cached = sum(r.cached_tokens for r in policy.finished)
    # every prompt token was computed once, found on the GPU or loaded from the host
    prompts = on.requests["prompt_tokens"].sum()
    assert on.steps["prefill_tokens"].sum() + cached == prompts
    assert host.hit_tokens > 0.2 * prompts
    # the summary says how much of the prompts came from each tier
    gpu, tier = on.summary["prefix_cache_hit_rate"], on.summary["host_cache_hit_rate"]
    assert tier == pytest.approx(host.hit_tokens / prompts)
    assert gpu + tier == pytest.approx(cached / prompts)
    assert "host_cache_hit_rate" not in off.summary
    assert on.steps["prefill_tokens"].sum() < 0.7 * off.steps["prefill_tokens"].sum()
    assert on.summary["mean_ttft_ms"] < off.summary["mean_ttft_ms"]
    check_pool(policy.pool)  # type: ignore[attr-defined]
    assert policy.pool.used == 0  # type: ignore[attr-defined]
