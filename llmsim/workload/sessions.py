"""Multi-turn conversations: later turns carry the earlier ones as a shared prefix.

A session is one growing token sequence: an optional system prompt shared by every session,
then user message, answer, user message, answer, ... Turn ``k`` sends everything up to its own
user message as its prompt and generates its answer, so its prompt is

    system_prompt_tokens + sum(user_j + answer_j for j < k) + user_k

and the first turns' tokens are a prefix of every later turn's. The workload's
``prompt_tokens`` / ``output_tokens`` (or ``lengths``) give ``user_k`` and ``answer_k``.

Prefix identity follows from that (see :mod:`llmsim.workload.prefix`): with blocks of
``hash_block_size`` tokens, a block inside the system prompt has the same id in every session,
any other block has an id of its own session, equal in every turn that contains it. Ids cover
the full blocks of prompt and answer, so turn ``k`` finds both turn ``k - 1``'s prompt and its
answer in a prefix cache.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from llmsim.errors import ConfigError
from llmsim.limits import MAX_TOKENS
from llmsim.workload.arrivals import OpenLoopArrivals
from llmsim.workload.durations import DurationConfig
from llmsim.workload.lengths import LengthConfig
from llmsim.workload.prefix import SessionHashes
from llmsim.workload.stages import StagedArrivals
from llmsim.workload.stream import RequestStream

LengthSampler = Callable[
    [np.random.Generator, np.random.Generator, int], tuple[np.ndarray, np.ndarray]
]
"""(prompt rng, output rng, n) -> (user tokens, answer tokens) of n turns."""


class SessionConfig(BaseModel):
    """Workload section ``sessions``: conversations of several turns.

    Open loop, the arrival process gives each session's start and ``think_time`` the gap from
    one turn's arrival to the next (the answer's own latency is not waited for: drawn before
    the run, turns cannot know it). With closed-loop clients the client's think time applies
    after each answer instead, and ``think_time`` must be left out.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    turns: LengthConfig = Field(description="Turns per session.")
    think_time: DurationConfig | None = Field(
        default=None, description="Open loop: seconds from a turn's arrival to the next turn's."
    )
    system_prompt_tokens: int = Field(
        default=0, ge=0, le=MAX_TOKENS, description="Shared by all sessions."
    )
    hash_block_size: int = Field(
        default=16, gt=0, le=MAX_TOKENS, description="Tokens per prefix hash block."
    )
    max_context_tokens: int | None = Field(
        default=None, gt=0, description="End a session before a turn longer than this."
    )


class _Turns:
    """The turns of ``S`` sessions, session by session, before any arrival times."""

    def __init__(
        self,
        cfg: SessionConfig,
        sessions: int,
        lengths: LengthSampler,
        rng_prompt: np.random.Generator,
        rng_output: np.random.Generator,
        rng_turns: np.random.Generator,
    ) -> None:
        per = np.maximum(cfg.turns.sample(rng_turns, sessions).astype(np.int64), 1)
        m = int(per.sum())
        first = np.cumsum(per) - per  # index of each session's first turn
        session = np.repeat(np.arange(sessions, dtype=np.int64), per)
        turn = np.arange(m, dtype=np.int64) - np.repeat(first, per)
        user, answer = lengths(rng_prompt, rng_output, m)
        user = np.asarray(user, dtype=np.int64)
        answer = np.asarray(answer, dtype=np.int64)
        step = user + answer
        done = np.cumsum(step) - step  # tokens of all earlier turns, any session
        earlier = done - np.repeat(done[first], per)  # ... of earlier turns in this session
        prompt = cfg.system_prompt_tokens + earlier + user
        keep = np.ones(m, dtype=bool)
        if cfg.max_context_tokens is not None:
            # Contexts only grow within a session, so this cuts each session at one turn.
            keep = prompt + answer <= cfg.max_context_tokens
        # Prefix ids: the first `shared` blocks are the system prompt; each session owns a
        # disjoint id range for its other blocks (sized by its longest turn).
        block = cfg.hash_block_size
        shared = cfg.system_prompt_tokens // block
        count = (prompt + answer) // block
        own = count[first + per - 1] - shared
        start = shared + np.cumsum(own) - own
        self.per, self.first, self.session, self.turn = per, first, session, turn
        self.prompt, self.answer, self.keep = prompt, answer, keep
        self.count, self.base, self.shared = count, np.repeat(start - shared, per), shared

    def stream(self, arrival: np.ndarray, block_size: int) -> RequestStream:
        return RequestStream(
            arrival=arrival,
            prompt_tokens=self.prompt,
            output_tokens=self.answer,
            session_id=self.session,
            turn=self.turn,
            prefix=SessionHashes(self.base, self.count, self.shared, block_size),
        )


def session_stream(
    cfg: SessionConfig,
    arrival: OpenLoopArrivals | None,
    lengths: LengthSampler,
    seeds: tuple[np.random.SeedSequence, np.random.SeedSequence, np.random.SeedSequence],
    session_seed: np.random.SeedSequence,
    *,
    num_requests: int | None,
    duration_s: float | None,
) -> RequestStream:
    """Draw whole sessions and return their turns as one stream.

    ``arrival`` gives session starts (open loop; the result is sorted by arrival and holds the
    first ``num_requests`` turns, or every turn before ``duration_s``); ``None`` means closed
    loop: the first ``num_requests`` turns, session by session, with NaN arrival times.
    ``seeds`` are the (arrival, prompt, output) seeds of the workload.
    """
    s_turns, s_think = session_seed.spawn(2)

    def rngs() -> list[np.random.Generator]:
        # Fresh generators from the same seeds: a redraw with more sessions is reproducible.
        return [np.random.default_rng(s) for s in (*seeds, s_turns, s_think)]

    assert not isinstance(arrival, StagedArrivals)  # refused by the workload's validation
    if duration_s is not None:
        assert arrival is not None
        r_arr, r_p, r_o, r_t, r_k = rngs()
        starts = arrival.times_until(r_arr, duration_s)
        turns = _Turns(cfg, len(starts), lengths, r_p, r_o, r_t)
        times = _turn_times(cfg, turns, starts, r_k)
        s = turns.stream(times, cfg.hash_block_size)
        s = s.take(np.flatnonzero(turns.keep & (times < duration_s)))
        return s.take(np.argsort(s.arrival, kind="stable"))

    assert num_requests is not None
    n = num_requests
    mean_turns = max(float(cfg.turns.sample(np.random.default_rng(s_turns), 256).mean()), 1.0)
    sessions = int(n / mean_turns * 1.2) + 8
    while True:
        r_arr, r_p, r_o, r_t, r_k = rngs()
        turns = _Turns(cfg, sessions, lengths, r_p, r_o, r_t)
        if arrival is None:
            if turns.keep.sum() >= n:
                s = turns.stream(np.full(len(turns.keep), np.nan), cfg.hash_block_size)
                return s.take(np.flatnonzero(turns.keep)[:n])
        else:
            starts = arrival.times(r_arr, sessions + 1)
            times = _turn_times(cfg, turns, starts[:-1], r_k)
            # Sessions not drawn start after starts[-1]: every turn before it is final.
            if (turns.keep & (times < starts[-1])).sum() >= n:
                s = turns.stream(times, cfg.hash_block_size)
                s = s.take(np.flatnonzero(turns.keep))
                return s.take(np.argsort(s.arrival, kind="stable")[:n])
        if sessions > 64 and not turns.keep.any():
            raise ConfigError(
                "every session's first turn exceeds max_context_tokens",
                field="workload.sessions.max_context_tokens",
            )
        sessions *= 2


def _turn_times(
    cfg: SessionConfig, turns: _Turns, starts: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Open loop: each session's first turn at its start, later turns after think times."""
    assert cfg.think_time is not None
    gaps = cfg.think_time.sample(rng, len(turns.turn))
    gaps[turns.first] = 0.0
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[turns.first], turns.per)
    out: np.ndarray = np.repeat(starts, turns.per) + elapsed
    return out
