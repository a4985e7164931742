"""Continuous (iteration-level) batching with a paged KV cache, as in vLLM 0.6's default mode.

Each step the scheduler first tries to admit waiting requests, in FCFS order, as one prefill
batch: it stops at the first request that would exceed the token budget
(``max_num_batched_tokens``), the sequence cap (``max_num_seqs``, running ones included) or the
free KV blocks (keeping a 1 % watermark free). A step with prefills runs no decodes. Otherwise
every running request decodes one token; when the step needs more KV blocks than are free, the
most recently admitted running request is preempted by recompute (its blocks are freed and it
goes back to the front of the queue, to be prefilled again with the tokens it had generated).
"""

from __future__ import annotations

from collections import deque
from itertools import accumulate
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmsim.cost.base import BatchShape
from llmsim.kv_cache import BlockPool, blocks_for
from llmsim.policies.base import Plan, StepStats
from llmsim.policies.decode_set import DecodeSet
from llmsim.request import Request, Status


class ContinuousConfig(BaseModel):
    """Scenario section ``policy`` with ``kind: continuous``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["continuous"] = "continuous"
    max_num_seqs: int = Field(default=256, gt=0, description="Running sequences at most.")
    max_num_batched_tokens: int | None = Field(
        default=None,
        gt=0,
        description="Token budget per step; default: the engine's max_model_len (vLLM's rule "
        "without chunked prefill).",
    )
    preemption: Literal["recompute"] = "recompute"
    watermark: float = Field(
        default=0.01, ge=0, lt=1, description="Fraction of KV blocks kept free at admission."
    )

    @model_validator(mode="after")
    def _budget_covers_seqs(self) -> ContinuousConfig:
        if (
            self.max_num_batched_tokens is not None
            and self.max_num_batched_tokens < self.max_num_seqs
        ):
            raise ValueError(
                f"max_num_batched_tokens ({self.max_num_batched_tokens}) must be >= "
                f"max_num_seqs ({self.max_num_seqs})"
            )
        return self

    def token_budget(self, max_model_len: int) -> int:
        return self.max_num_batched_tokens or max(max_model_len, self.max_num_seqs)

    def build(self, pool: BlockPool, block_size: int, max_model_len: int) -> ContinuousPolicy:
        return ContinuousPolicy(self, pool, block_size, max_model_len)


class ContinuousPolicy:
    def __init__(
        self, cfg: ContinuousConfig, pool: BlockPool, block_size: int, max_model_len: int
    ) -> None:
        self.cfg = cfg
        self.pool = pool
        self.block_size = block_size
        self.max_model_len = max_model_len
        self.max_seqs = cfg.max_num_seqs
        self.budget = cfg.token_budget(max_model_len)
        self.waiting: deque[Request] = deque()
        self.decode = DecodeSet(block_size)
        self.last_decode_end = 0.0
        self._finished: list[Request] = []

    # --- arrivals --------------------------------------------------------------------------

    def add(self, r: Request, now: float) -> None:
        total = r.prompt_tokens + r.max_output_tokens
        if (
            total > self.max_model_len
            or r.prompt_tokens > self.budget
            or blocks_for(total, self.block_size) > self.pool.total - self.pool.watermark
        ):
            r.status = Status.REJECTED
            r.finish = now
            self._finished.append(r)
            return
        r.queue_enter = now
        self.waiting.append(r)

    @property
    def finished(self) -> list[Request]:
        return self._finished

    def wake_at(self, now: float) -> float | None:
        return None

    @property
    def num_running(self) -> int:
        return self.decode.n

    # --- scheduling ------------------------------------------------------------------------

    def schedule(self, now: float) -> Plan | None:
        if self.waiting:
            plan = self._admit(now)
            if plan is not None:
                return plan
        if not self.decode.n:
            return None
        self._make_room(now)
        ds = self.decode
        if not ds.n:  # everything was preempted: admit again
            return self._admit(now)
        steps = ds.steps_to_finish()
        steps = ds.steps_within(self.pool.free, steps)
        return Plan(shape=BatchShape.decode(ds.n, ds.context), decode_steps=steps)

    def _admit(self, now: float) -> Plan | None:
        budget = self.budget
        seqs = self.decode.n
        pool = self.pool
        bs = self.block_size
        chunks: list[tuple[Request, int]] = []
        waiting = self.waiting
        while waiting:
            r = waiting[0]
            tokens = r.num_tokens - r.num_computed
            if tokens > budget or seqs >= self.max_seqs:
                break
            blocks = blocks_for(tokens, bs)
            if not pool.can_admit(blocks):
                break
            waiting.popleft()
            pool.allocate(blocks)
            r.status = Status.RUNNING
            r.queue_time += now - r.queue_enter
            if r.first_scheduled < 0:
                r.first_scheduled = now
            budget -= tokens
            seqs += 1
            chunks.append((r, tokens))
        if not chunks:
            return None
        return Plan(
            shape=BatchShape.prefill([(q, r.num_computed) for r, q in chunks]),
            prefills=chunks,
        )

    def _make_room(self, now: float) -> None:
        """Preempt the latest-admitted requests until the next decode step's blocks fit."""
        ds = self.decode
        while ds.n and ds.blocks_needed() > self.pool.free:
            self._preempt(ds.pop_last(), now)

    def _preempt(self, r: Request, now: float) -> None:
        ds = self.decode
        if ds.counter > r.seg_start_decode:
            r.last_emit = self.last_decode_end
        r.segments.append((r.seg_start_decode, ds.counter, r.seg_emit))
        self.pool.release(blocks_for(r.num_computed, self.block_size))
        r.num_computed = 0
        r.status = Status.WAITING
        r.preemptions += 1
        r.queue_enter = now
        self.waiting.appendleft(r)

    # --- outcome ---------------------------------------------------------------------------

    def update(self, plan: Plan, start: float, durations: list[float]) -> StepStats:
        if plan.is_decode_run:
            return self._update_decode(start, durations)
        end = start + durations[0]
        ds = self.decode
        running = ds.n + len(plan.prefills)
        used = self.pool.used  # during the step, before finished requests free their blocks
        for r, granted in plan.prefills:
            r.num_computed += granted
            r.num_output += 1
            if r.first_token < 0:
                r.first_token = end
            else:  # resumed after preemption: the gap since its previous token
                r.extra_gaps.append(end - r.last_emit)
            r.last_emit = end
            if r.num_output >= r.max_output_tokens:
                self._finish(r, end)
            else:
                r.seg_start_decode = ds.counter
                r.seg_emit = end
                ds.join(r)
        return StepStats([used], len(self.waiting), running)

    def _update_decode(self, start: float, durations: list[float]) -> StepStats:
        ds = self.decode
        pool = self.pool
        running = ds.n
        kv = list(accumulate(ds.advance(len(durations)), initial=pool.used))
        del kv[0]
        pool.allocate(kv[-1] - pool.used)
        end = start + sum(durations)
        self.last_decode_end = end
        for r in ds.pop_finished():
            r.last_emit = end
            r.segments.append((r.seg_start_decode, ds.counter, r.seg_emit))
            self._finish(r, end)
        return StepStats(kv, len(self.waiting), running)

    def _finish(self, r: Request, now: float) -> None:
        r.status = Status.FINISHED
        r.finish = now
        self.pool.release(blocks_for(r.num_computed, self.block_size))
        self._finished.append(r)
