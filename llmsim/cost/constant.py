"""A step-time model with fixed costs, for queueing-theory checks and hand-worked schedules."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from llmsim.cost.base import BatchShape
from llmsim.limits import MAX_SECONDS


class ConstantConfig(BaseModel):
    """``step_s + per_token_s * tokens``: every step costs the same plus a per-token term."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["constant"] = "constant"
    step_s: float = Field(gt=0, le=MAX_SECONDS, description="Seconds per step.")
    per_token_s: float = Field(
        default=0.0, ge=0, le=MAX_SECONDS, description="Extra seconds per token computed."
    )

    def build(self, *_: object) -> ConstantCostModel:
        return ConstantCostModel(self.step_s, self.per_token_s)


class ConstantCostModel:
    def __init__(self, step_s: float, per_token_s: float = 0.0) -> None:
        self.step_s = step_s
        self.per_token_s = per_token_s

    def step_time(self, shape: BatchShape) -> float:
        return self.step_s + self.per_token_s * shape.tokens

    def decode_step_time(self, seqs: int, context: int) -> float:
        return self.step_s + self.per_token_s * seqs
