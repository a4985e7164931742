"""Request-level batching: a batch is formed, then runs to completion before the next.

This is how servers worked before iteration-level scheduling. A batch's prompts are padded to
the longest one, and every slot decodes until the longest request is done: a request that
finishes early streams its last token then but keeps its slot (padding). Each slot reserves
KV for ``max_model_len`` tokens. The static and dynamic policies differ only in when a batch
closes, which each gives as a plain function of the queue and the clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from llmsim.cost.base import BatchShape
from llmsim.kv_cache import blocks_for
from llmsim.policies.base import Plan, ReplicaContext, StepStats
from llmsim.request import Request, Status

EPS = 1e-9  # timers fire within this of their deadline (float rounding of the clock)

FormRule = Callable[[deque[Request], float], int]
"""(queue, now) -> size of the batch to start now, 0 to keep waiting."""
WakeRule = Callable[[deque[Request]], float | None]
"""queue -> when the rule may fire although nothing arrives (None: only on arrival)."""


def check_fits(batch: int, ctx: ReplicaContext, field: str) -> int:
    """KV blocks one batch slot reserves; ValueError when ``batch`` slots do not fit."""
    per_slot = blocks_for(ctx.max_model_len, ctx.block_size)
    if batch * per_slot > ctx.pool.total:
        raise ValueError(
            f"{field} {batch} needs {batch} x max_model_len {ctx.max_model_len} = "
            f"{batch * ctx.max_model_len:,} KV tokens, more than the cache's "
            f"{ctx.pool.total * ctx.block_size:,}; lower {field} or engine.max_model_len"
        )
    return per_slot


class RequestLevelPolicy:
    def __init__(
        self, ctx: ReplicaContext, max_batch: int, form: FormRule, wake: WakeRule, field: str
    ) -> None:
        self.pool = ctx.pool
        self.max_model_len = ctx.max_model_len
        self.slot_blocks = check_fits(max_batch, ctx, field)
        self.form = form
        self.wake = wake
        self.waiting: deque[Request] = deque()
        self.batch: list[Request] = []
        self.padded_prompt = 0
        self.prefilled = False
        self.counter = 0  # decode steps run, over all batches (for inter-token gaps)
        self.batch_start = 0  # counter when the current batch started decoding
        self._finished: list[Request] = []

    @property
    def finished(self) -> list[Request]:
        return self._finished

    @property
    def num_running(self) -> int:
        return len(self.batch)

    def add(self, r: Request, now: float) -> None:
        if r.prompt_tokens + r.max_output_tokens > self.max_model_len:
            r.reject(now, "max_model_len")
            self._finished.append(r)
            return
        r.queue_enter = now
        self.waiting.append(r)

    def wake_at(self, now: float) -> float | None:
        return None if self.batch or not self.waiting else self.wake(self.waiting)

    def schedule(self, now: float) -> Plan | None:
        if not self.batch:
            size = self.form(self.waiting, now)
            if size <= 0:
                return None
            self.batch = [self.waiting.popleft() for _ in range(min(size, len(self.waiting)))]
            self.pool.allocate(len(self.batch) * self.slot_blocks)
            self.padded_prompt = max(r.prompt_tokens for r in self.batch)
            self.prefilled = False
            for r in self.batch:
                r.status = Status.RUNNING
                r.first_scheduled = now
                r.queue_time = now - r.queue_enter
            chunks = [(self.padded_prompt, 0)] * len(self.batch)
            return Plan(shape=BatchShape.prefill(chunks), prefills=[(r, 0) for r in self.batch])
        b = len(self.batch)
        done = self.counter - self.batch_start
        context = b * (self.padded_prompt + done + 1)
        live = [r for r in self.batch if r.status == Status.RUNNING]
        next_finish = min(r.max_output_tokens - r.num_output for r in live)
        return Plan(shape=BatchShape.decode(b, context), decode_steps=next_finish)

    def update(self, plan: Plan, start: float, durations: list[float]) -> StepStats:
        end = start + sum(durations)
        b = len(self.batch)
        kv = [self.pool.used] * len(durations)
        if not self.prefilled:
            self.prefilled = True
            self.batch_start = self.counter
            for r in self.batch:
                r.num_computed = r.prompt_tokens
                r.num_output = 1
                r.first_token = r.last_emit = r.seg_emit = end
                r.seg_start_decode = self.counter
                if r.max_output_tokens == 1:
                    self._done(r, end)
            emitted = b
        else:
            steps = len(durations)
            live = [r for r in self.batch if r.status == Status.RUNNING]
            emitted = len(live)  # per step: nobody finishes before the run's last step
            self.counter += steps
            for r in live:
                r.num_output += steps
                r.num_computed += steps
                r.last_emit = end
                if r.num_output >= r.max_output_tokens:
                    r.segments.append((r.seg_start_decode, self.counter, r.seg_emit))
                    self._done(r, end)
        stats = StepStats(kv, len(self.waiting), b, emitted)
        if all(r.status == Status.FINISHED for r in self.batch):
            self.pool.release(b * self.slot_blocks)
            self.batch = []
        return stats

    def _done(self, r: Request, now: float) -> None:
        r.status = Status.FINISHED
        r.finish = now
        self._finished.append(r)
