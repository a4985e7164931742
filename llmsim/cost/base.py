"""The interface every step-time model implements, and the shape of a batch it prices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class BatchShape:
    """What the GPUs see in one forward pass.

    Prefill (or a prefill chunk) of request i computes ``q_i`` new tokens on top of ``p_i``
    tokens already in its KV cache; a decode request computes one token over ``c_i`` tokens of
    context (its own included).
    """

    prefill_tokens: int = 0  # sum q_i
    prefill_seqs: int = 0
    prefill_attn_pairs: float = 0.0  # sum q_i * (p_i + (q_i + 1) / 2): causal query-key pairs
    prefill_kv_tokens: int = 0  # sum (p_i + q_i): KV read by prefill attention
    decode_seqs: int = 0  # one new token each
    decode_context: int = 0  # sum c_i
    sampled_seqs: int = 0  # sequences that sample a token (LM head rows)

    @property
    def tokens(self) -> int:
        return self.prefill_tokens + self.decode_seqs

    @property
    def seqs(self) -> int:
        return self.prefill_seqs + self.decode_seqs

    @staticmethod
    def prefill(chunks: list[tuple[int, int]], sampled: int | None = None) -> BatchShape:
        """A prefill-only batch from (new tokens, cached tokens) pairs."""
        q_sum = kv = 0
        pairs = 0.0
        for q, p in chunks:
            q_sum += q
            kv += q + p
            pairs += q * (p + (q + 1) / 2)
        n = len(chunks)
        return BatchShape(
            prefill_tokens=q_sum,
            prefill_seqs=n,
            prefill_attn_pairs=pairs,
            prefill_kv_tokens=kv,
            sampled_seqs=n if sampled is None else sampled,
        )

    @staticmethod
    def decode(seqs: int, context: int) -> BatchShape:
        return BatchShape(decode_seqs=seqs, decode_context=context, sampled_seqs=seqs)


class CostModel(Protocol):
    """Predicts the wall time of one forward pass (one engine step) on one replica."""

    def step_time(self, shape: BatchShape) -> float:
        """Seconds for a step of any shape."""
        ...

    def decode_step_time(self, seqs: int, context: int) -> float:
        """Seconds for a pure-decode step; must equal ``step_time(BatchShape.decode(...))``.

        Called once per simulated decode step, so implementations should make it cheap.
        """
        ...
