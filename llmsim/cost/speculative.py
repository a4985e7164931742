"""Step times with a draft model beside the target (speculative decoding)."""

from __future__ import annotations

from llmsim.cost.base import BatchShape, CostModel


class SpeculativeCostModel:
    """The target's step plus the draft's work in the same step.

    A verification step (``spec_tokens = k``) adds k draft decode passes over the same
    sequences; prompt tokens are prefilled by both models.
    """

    def __init__(self, target: CostModel, draft: CostModel) -> None:
        self.target = target
        self.draft = draft

    def step_time(self, shape: BatchShape) -> float:
        t = self.target.step_time(shape)
        if shape.prefill_seqs:
            prompt_only = shape._replace(
                decode_seqs=0,
                decode_context=0,
                spec_tokens=0,
                sampled_seqs=shape.prefill_seqs,
            )
            t += self.draft.step_time(prompt_only)
        if shape.decode_seqs and shape.spec_tokens:
            t += shape.spec_tokens * self.draft.decode_step_time(
                shape.decode_seqs, shape.decode_context
            )
        return t

    def decode_step_time(self, seqs: int, context: int) -> float:
        return self.step_time(BatchShape.decode(seqs, context))
