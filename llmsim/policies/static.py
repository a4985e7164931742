"""Static batching: wait for ``batch_size`` requests, run them to completion, repeat."""

from __future__ import annotations

from collections import deque
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from llmsim.limits import MAX_COUNT, MAX_SECONDS
from llmsim.policies.base import ReplicaContext
from llmsim.policies.request_level import EPS, RequestLevelPolicy
from llmsim.request import Request


class StaticConfig(BaseModel):
    """Scenario section ``policy`` with ``kind: static``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["static"] = "static"
    batch_size: int = Field(gt=0, le=MAX_COUNT, description="Requests per batch.")
    max_wait_s: float | None = Field(
        default=None,
        gt=0,
        le=MAX_SECONDS,
        description="Run a partial batch once its oldest waited this long.",
    )

    @property
    def max_num_seqs(self) -> int:
        return self.batch_size

    def memory_profile(self, max_model_len: int) -> tuple[int, int]:
        """(tokens, sequences) of the largest step, for the activation-memory estimate."""
        return min(self.batch_size * max_model_len, 16384), self.batch_size

    def build(self, ctx: ReplicaContext) -> RequestLevelPolicy:
        b, wait = self.batch_size, self.max_wait_s

        def form(q: deque[Request], now: float) -> int:
            if len(q) >= b:
                return b
            if wait is not None and q and now - q[0].queue_enter >= wait - EPS:
                return len(q)
            return 0

        def wake(q: deque[Request]) -> float | None:
            return q[0].queue_enter + wait if wait is not None else None

        return RequestLevelPolicy(ctx, b, form, wake, "policy.batch_size")
