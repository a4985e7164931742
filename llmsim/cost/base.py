"""The interface every step-time model implements, and the shape of a batch it prices."""

from __future__ import annotations

from typing import NamedTuple, Protocol

from llmsim.errors import ConfigError
from llmsim.hardware import HardwareProfile
from llmsim.models import ModelSpec


class BatchShape(NamedTuple):
    """What the GPUs see in one forward pass.

    Prefill (or a prefill chunk) of request i computes ``q_i`` new tokens on top of ``p_i``
    tokens already in its KV cache; a decode request computes one token over ``c_i`` tokens of
    context (its own included).

    Immutable (a named tuple: one is built for every step, and a tuple is built about three
    times faster than a frozen dataclass); ``shape._replace(field=...)`` makes a changed copy.
    """

    prefill_tokens: int = 0  # sum q_i
    prefill_seqs: int = 0
    prefill_attn_pairs: float = 0.0  # sum q_i * (p_i + (q_i + 1) / 2): causal query-key pairs
    prefill_kv_tokens: int = 0  # sum (p_i + q_i): KV read by prefill attention
    decode_seqs: int = 0  # one new token each (1 + spec_tokens when verifying drafts)
    decode_context: int = 0  # sum c_i
    sampled_seqs: int = 0  # rows of the LM head (sequences sampling, or verified positions)
    spec_tokens: int = 0  # speculative decoding: draft tokens verified per decode sequence

    @property
    def tokens(self) -> int:
        return self.prefill_tokens + self.decode_seqs * (1 + self.spec_tokens)

    def merge(self, other: BatchShape) -> BatchShape:
        """Two parts of one step (prompt chunks and decodes) as a single batch."""
        if self.spec_tokens and other.spec_tokens and self.spec_tokens != other.spec_tokens:
            raise ValueError("cannot merge decodes with different speculative lengths")
        return BatchShape(
            prefill_tokens=self.prefill_tokens + other.prefill_tokens,
            prefill_seqs=self.prefill_seqs + other.prefill_seqs,
            prefill_attn_pairs=self.prefill_attn_pairs + other.prefill_attn_pairs,
            prefill_kv_tokens=self.prefill_kv_tokens + other.prefill_kv_tokens,
            decode_seqs=self.decode_seqs + other.decode_seqs,
            decode_context=self.decode_context + other.decode_context,
            sampled_seqs=self.sampled_seqs + other.sampled_seqs,
            spec_tokens=self.spec_tokens or other.spec_tokens,
        )

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


def gemm_dtype(model: ModelSpec, hardware: HardwareProfile, requested: str | None) -> str:
    """The data type a replica's weight GEMMs run in (``engine.cost.compute_dtype``).

    By default fp8 weights run fp8 GEMMs (activations quantised per token) on GPUs with fp8
    tensor cores (an ``fp8`` entry in the profile's ``peak_tflops``: Hopper, Ada, Blackwell,
    MI300X); on GPUs without them (Ampere: A100, A10G, A40) they are weight-only quantised,
    dequantised inside the kernel and multiplied in bf16 at the bf16 peak, as vLLM's FP8
    Marlin kernels do. Every other weight type computes in bf16 (int8/int4/fp4: weight-only).
    Asking for fp8 on a GPU without fp8 tensor cores is a ConfigError.
    """
    has_fp8 = "fp8" in hardware.peak_tflops
    if requested is None:
        return "fp8" if model.weight_dtype == "fp8" and has_fp8 else "bf16"
    if requested == "fp8" and not has_fp8:
        raise ConfigError(
            f"'fp8' needs fp8 tensor cores, which {hardware.name} lacks (its peak_tflops "
            f"lists {', '.join(hardware.peak_tflops)}); leave it unset to run fp8 weights in "
            "bf16 (weight-only), or say 'bf16'",
            field="engine.cost.compute_dtype",
        )
    return requested
