"""Multi-turn sessions: each turn's prompt is the conversation so far, and prefix block ids
agree with that (turn k's ids start with all of turn k-1's; sessions share only the system
prompt)."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from llmsim import kv_cache
from llmsim.workload import (
    ClosedLoopArrivals,
    DatasetLengths,
    ExponentialDuration,
    FixedDuration,
    FixedLength,
    PoissonArrivals,
    SessionConfig,
    SessionHashes,
    UniformLength,
    WorkloadConfig,
    generate,
)
from llmsim.workload.stream import RequestStream


def chat(
    *,
    n: int | None = 400,
    duration: float | None = None,
    system: int = 100,
    block: int = 16,
    max_ctx: int | None = None,
    seed: int = 1,
) -> RequestStream:
    cfg = WorkloadConfig(
        arrival=PoissonArrivals(rate=2.0),
        prompt_tokens=UniformLength(low=5, high=300),
        output_tokens=UniformLength(low=1, high=200),
        sessions=SessionConfig(
            turns=UniformLength(low=1, high=6),
            think_time=ExponentialDuration(mean=10.0),
            system_prompt_tokens=system,
            hash_block_size=block,
            max_context_tokens=max_ctx,
        ),
        num_requests=n,
        duration_s=duration,
    )
    return generate(cfg, np.random.SeedSequence(seed))


def by_session(s: RequestStream) -> dict[int, np.ndarray]:
    assert s.session_id is not None and s.turn is not None
    out = {}
    for sid in np.unique(s.session_id):
        idx = np.flatnonzero(s.session_id == sid)
        out[int(sid)] = idx[np.argsort(s.turn[idx])]
    return out


def test_turns_carry_the_conversation_so_far() -> None:
    s = chat()
    assert len(s) == 400 and np.all(np.diff(s.arrival) >= 0)
    multi = 0
    for idx in by_session(s).values():
        assert s.turn is not None and s.turn[idx].tolist() == list(range(len(idx)))
        assert s.prompt_tokens[idx[0]] > 100  # system prompt plus the first message
        for a, b in pairwise(idx):
            multi += 1
            # the next prompt holds this prompt and its answer, plus a new message (5-300)
            new = s.prompt_tokens[b] - s.prompt_tokens[a] - s.output_tokens[a]
            assert 5 <= new <= 300
            assert s.arrival[b] >= s.arrival[a]
    assert multi > 100


def test_turn_prefix_hashes_start_with_previous_turns_full_hashes() -> None:
    s = chat()
    assert s.prefix is not None and s.hash_block_size == 16
    for idx in by_session(s).values():
        for a, b in pairwise(idx):
            prev, cur = s.prefix.ids(int(a)), s.prefix.ids(int(b))
            # ids cover every full block of prompt + answer
            assert len(prev) == (s.prompt_tokens[a] + s.output_tokens[a]) // 16
            assert len(cur) >= len(prev)
            np.testing.assert_array_equal(cur[: len(prev)], prev)


def test_sessions_share_only_the_system_prompt_blocks() -> None:
    s = chat(system=100)  # 6 full blocks of 16 tokens
    assert s.prefix is not None
    owner: dict[int, int] = {}
    for i in range(len(s)):
        ids = s.prefix.ids(i)
        np.testing.assert_array_equal(ids[:6], np.arange(6))
        for h in ids[6:].tolist():
            assert owner.setdefault(h, int(s.session_id[i])) == s.session_id[i]  # type: ignore[index]


def test_mooncake_style_block_size_works_too() -> None:
    s = chat(block=512, system=0)
    assert s.prefix is not None and s.hash_block_size == 512
    for idx in by_session(s).values():
        for a, b in pairwise(idx):
            prev = s.prefix.ids(int(a))
            np.testing.assert_array_equal(s.prefix.ids(int(b))[: len(prev)], prev)


def test_prefix_cache_keys_of_a_turn_extend_the_previous_turn() -> None:
    keys_of = getattr(kv_cache, "prompt_block_keys", None)
    if keys_of is None:
        pytest.skip("no prefix-cache keys in this build")
    s = chat()
    assert s.prefix is not None
    found = 0
    for idx in by_session(s).values():
        for a, b in pairwise(idx):
            ka = keys_of(tuple(s.prefix.ids(int(a))), 16, int(s.prompt_tokens[a]), 16)
            kb = keys_of(tuple(s.prefix.ids(int(b))), 16, int(s.prompt_tokens[b]), 16)
            assert kb[: len(ka)] == ka
            found += len(ka)
    assert found > 0


def test_max_context_ends_sessions() -> None:
    s = chat(max_ctx=700)
    assert len(s) == 400
    assert np.all(s.prompt_tokens + s.output_tokens <= 700)


def test_duration_limits_turns_too() -> None:
    s = chat(n=None, duration=120.0)
    assert s.arrival.max() < 120.0
    assert s.turn is not None and s.turn.max() >= 1


def test_closed_loop_sessions_are_grouped_without_times() -> None:
    cfg = WorkloadConfig(
        arrival=ClosedLoopArrivals(clients=4, think_time=FixedDuration(value=2.0)),
        prompt_tokens=FixedLength(value=50),
        output_tokens=FixedLength(value=20),
        sessions=SessionConfig(turns=FixedLength(value=3)),
        num_requests=10,
    )
    s = generate(cfg, np.random.SeedSequence(0))
    assert s.session_id is not None and s.turn is not None
    assert s.session_id.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
    assert s.turn.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    assert s.prompt_tokens.tolist()[:3] == [50, 120, 190]
    assert np.isnan(s.arrival).all()


def test_joint_lengths_in_sessions() -> None:
    cfg = WorkloadConfig(
        arrival=PoissonArrivals(rate=1.0),
        lengths=DatasetLengths(dataset="sharegpt_multiturn", max_total_tokens=1000),
        sessions=SessionConfig(turns=FixedLength(value=2), think_time=FixedDuration(value=5)),
        num_requests=50,
    )
    s = generate(cfg, np.random.SeedSequence(0))
    p, o = DatasetLengths(dataset="sharegpt_multiturn", max_total_tokens=1000).pairs()
    rows = set(zip(p.tolist(), o.tolist(), strict=True))
    first = s.turn == 0
    assert all(
        pair in rows
        for pair in zip(
            s.prompt_tokens[first].tolist(), s.output_tokens[first].tolist(), strict=True
        )
    )


def test_session_hashes_take_and_lists() -> None:
    h = SessionHashes(np.array([10, 10, 50]), np.array([3, 5, 4]), 2, 16)
    assert h.lists() == [[0, 1, 12], [0, 1, 12, 13, 14], [0, 1, 52, 53]]
    assert h.take(np.array([2, 0])).lists() == [[0, 1, 52, 53], [0, 1, 12]]


def test_sessions_are_deterministic() -> None:
    a, b = chat(seed=9), chat(seed=9)
    for f in ("arrival", "prompt_tokens", "output_tokens", "session_id", "turn"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert a.prefix is not None and b.prefix is not None
    assert a.prefix.lists() == b.prefix.lists()
    assert not np.array_equal(a.arrival, chat(seed=10).arrival)
