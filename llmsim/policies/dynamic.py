"""Dynamic batching, as in Triton's dynamic batcher, with runs to completion.

A batch closes as soon as the queue reaches ``max_batch_size``, or a preferred size, or when
its oldest request has waited ``max_queue_delay_ms``. The adaptive variant does not wait: it
takes whatever is queued (up to the maximum) whenever the GPU is free, so batches are small
under light load and large under heavy load.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmsim.limits import MAX_COUNT, MAX_MS
from llmsim.policies.base import ReplicaContext
from llmsim.policies.request_level import EPS, RequestLevelPolicy
from llmsim.request import Request


class DynamicConfig(BaseModel):
    """Scenario section ``policy`` with ``kind: dynamic``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["dynamic"] = "dynamic"
    max_batch_size: int = Field(default=32, gt=0, le=MAX_COUNT)
    max_queue_delay_ms: float = Field(default=50.0, ge=0, le=MAX_MS)
    preferred_batch_sizes: tuple[int, ...] = ()
    adaptive: bool = False

    @model_validator(mode="after")
    def _preferred_in_range(self) -> DynamicConfig:
        bad = [p for p in self.preferred_batch_sizes if not 0 < p <= self.max_batch_size]
        if bad:
            raise ValueError(
                f"preferred_batch_sizes {bad} must be between 1 and max_batch_size "
                f"({self.max_batch_size})"
            )
        return self

    @property
    def max_num_seqs(self) -> int:
        return self.max_batch_size

    def memory_profile(self, max_model_len: int) -> tuple[int, int]:
        """(tokens, sequences) of the largest step, for the activation-memory estimate."""
        return min(self.max_batch_size * max_model_len, 16384), self.max_batch_size

    def build(self, ctx: ReplicaContext) -> RequestLevelPolicy:
        cap = self.max_batch_size
        delay = self.max_queue_delay_ms / 1e3
        preferred = sorted(self.preferred_batch_sizes)
        adaptive = self.adaptive

        def form(q: deque[Request], now: float) -> int:
            n = len(q)
            if n == 0:
                return 0
            if n >= cap or adaptive:
                return min(n, cap)
            fits = [p for p in preferred if p <= n]
            if fits:
                return fits[-1]
            return n if now - q[0].queue_enter >= delay - EPS else 0

        def wake(q: deque[Request]) -> float | None:
            return None if adaptive else q[0].queue_enter + delay

        return RequestLevelPolicy(ctx, cap, form, wake, "policy.max_batch_size")
