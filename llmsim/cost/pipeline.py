"""Step times of a pipeline-parallel replica.

The layers are split into ``stages`` equal stages, one GPU group each. A step's batch goes
through as ``stages`` micro-batches in a GPipe-style schedule, so a step takes
``(micro + stages - 1)`` stage-times of one micro-batch plus the activation transfers between
stages: the ``stages - 1`` slots in which some stage idles are the pipeline bubble.
"""

from __future__ import annotations

from llmsim.cost.base import BatchShape, CostModel


def split(shape: BatchShape, parts: int) -> BatchShape:
    """One of ``parts`` equal micro-batches of ``shape`` (sequences divided, rounded up)."""
    if parts == 1:
        return shape

    def part(x: int) -> int:
        return -(-x // parts)

    return BatchShape(
        prefill_tokens=part(shape.prefill_tokens),
        prefill_seqs=part(shape.prefill_seqs),
        prefill_attn_pairs=shape.prefill_attn_pairs / parts,
        prefill_kv_tokens=part(shape.prefill_kv_tokens),
        decode_seqs=part(shape.decode_seqs),
        decode_context=part(shape.decode_context),
        sampled_seqs=part(shape.sampled_seqs),
        spec_tokens=shape.spec_tokens,
    )


class PipelineCostModel:
    """``stage`` prices one stage (the model with 1/stages of its layers)."""

    def __init__(
        self, stage: CostModel, stages: int, hidden_bytes: float, link_bw: float, link_lat: float
    ) -> None:
        self.stage = stage
        self.stages = stages
        self.hidden_bytes = hidden_bytes  # activation bytes per token handed between stages
        self.link_bw = link_bw
        self.link_lat = link_lat
        self._decode: dict[tuple[int, int], float] = {}

    def _hops(self, tokens: int) -> float:
        per_hop = self.link_lat + tokens * self.hidden_bytes / self.link_bw
        return (self.stages - 1) * per_hop

    def step_time(self, shape: BatchShape) -> float:
        p = self.stages
        micro_batches = max(1, min(p, shape.seqs))
        micro = split(shape, micro_batches)
        return (micro_batches + p - 1) * self.stage.step_time(micro) + self._hops(micro.tokens)

    def decode_step_time(self, seqs: int, context: int) -> float:
        return self.step_time(BatchShape.decode(seqs, context))
