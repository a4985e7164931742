"""Per-operator roofline step-time model.

Each operator of one transformer layer takes ``max(FLOPs / achieved FLOP/s, bytes / achieved
bandwidth) + launch``; a step adds every layer, the LM head, the tensor-parallel all-reduces and
a host overhead (scheduling, sampling, input preparation). "Achieved" is a datasheet peak times
an efficiency factor. The defaults below are documented estimates for serving engines on
data-centre GPUs; a calibrated profile replaces them with values fitted on measurements.

Default efficiency factors and where they come from:

* ``gemm_efficiency = 0.7``: large bf16 GEMMs on A100/H100 reach 60-80 % of the dense peak.
* ``memory_efficiency = 0.8``: streaming reads reach about 80 % of datasheet HBM bandwidth.
* ``attention_efficiency = 0.5``: FlashAttention-2 style prefill kernels reach 40-70 % of peak.
* ``link_efficiency = 0.7``: NCCL all-reduce bus bandwidth versus the link's datasheet figure.
* ``kernel_launch_us = 4``: the floor of a small kernel, even inside a CUDA graph.
* ``step_overhead_ms = 2`` and ``seq_overhead_us = 10``: host work per step and per sequence
  (scheduler, input preparation, sampling, detokenisation), typical of Python engines.
* ``tp_overhead_ms = 0``: extra host time per step when the replica has several GPUs
  (broadcasting the step's inputs to the workers), the same term as the calibrated model's; 0
  unless an engine preset (``engine.preset``) or the scenario sets it. The all-reduces inside
  the forward pass are priced separately, from the link.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from llmsim.cost.base import BatchShape, gemm_dtype
from llmsim.hardware import HardwareProfile
from llmsim.limits import MAX_MS
from llmsim.models import DTYPE_BYTES, ModelSpec


class RooflineConfig(BaseModel):
    """Parameters of the roofline model (scenario section ``engine.cost``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["roofline"] = "roofline"
    gemm_efficiency: float = Field(default=0.7, gt=0, le=1)
    memory_efficiency: float = Field(default=0.8, gt=0, le=1)
    attention_efficiency: float = Field(default=0.5, gt=0, le=1)
    link_efficiency: float = Field(default=0.7, gt=0, le=1)
    kernel_launch_us: float = Field(default=4.0, ge=0, le=MAX_MS)
    step_overhead_ms: float = Field(default=2.0, ge=0, le=MAX_MS)
    seq_overhead_us: float = Field(default=10.0, ge=0, le=MAX_MS)
    tp_overhead_ms: float = Field(
        default=0.0,
        ge=0,
        le=MAX_MS,
        description="Extra host time per step when tensor_parallel > 1, ms (an engine "
        "preset sets it).",
    )
    compute_dtype: Literal["bf16", "fp16", "fp8"] | None = Field(
        default=None,
        description="GEMM data type; default: fp8 for fp8 weights on a GPU with fp8 tensor "
        "cores, bf16 otherwise (weight-only quantisation).",
    )

    def build(self, model: ModelSpec, hardware: HardwareProfile, tp: int) -> RooflineCostModel:
        return RooflineCostModel(model, hardware, tp, self)


@dataclass(frozen=True, slots=True)
class _Gemm:
    """A GEMM with a fixed weight of shape K x N (per GPU); M = tokens varies."""

    n: int
    k: float


class RooflineCostModel:
    """Step times for one replica: ``model`` on ``tp`` GPUs of type ``hardware``."""

    def __init__(
        self, model: ModelSpec, hardware: HardwareProfile, tp: int, cfg: RooflineConfig
    ) -> None:
        self.model = model
        self.hardware = hardware
        self.tp = tp
        self.cfg = cfg
        dtype = gemm_dtype(model, hardware, cfg.compute_dtype)
        self.flops = hardware.peak_flops(dtype) * cfg.gemm_efficiency
        self.attn_flops = hardware.peak_flops("bf16") * cfg.attention_efficiency
        self.bw = hardware.memory_bandwidth * cfg.memory_efficiency
        self.w_bytes = model.weight_bytes_per_param
        self.a_bytes = DTYPE_BYTES["bf16"]
        self.launch = cfg.kernel_launch_us * 1e-6
        self.link_bw = hardware.interconnect.bandwidth_gbps * 1e9 * cfg.link_efficiency
        self.link_lat = hardware.interconnect.latency_us * 1e-6
        self.step_overhead = cfg.step_overhead_ms * 1e-3
        self.seq_overhead = cfg.seq_overhead_us * 1e-6
        if tp > 1:
            self.step_overhead += cfg.tp_overhead_ms * 1e-3
        self._dense_gemms = self._layer_gemms()
        self._moe_layers = model.num_moe_layers
        self._dense_mlp_layers = model.num_layers - self._moe_layers
        self._lm_head = _Gemm(n=-(-model.vocab_size // tp), k=model.hidden_size)
        # Attention per layer per GPU: FLOPs per query-key pair, KV bytes per cached token.
        heads = max(1, model.num_heads // tp)
        qk_dim = model.q_width // model.num_heads
        v_dim = model.mla.v_head_dim if model.mla else model.head_dim
        if model.mla is not None:
            # Absorbed MLA attends in the latent space: scores and values over the latent.
            qk_dim = model.mla.kv_lora_rank + model.mla.qk_rope_head_dim
            v_dim = model.mla.kv_lora_rank
        self._attn_flops_per_pair = 2.0 * heads * (qk_dim + v_dim)
        self._kv_bytes_per_token = model.kv_bytes_per_token_per_gpu(tp) / model.num_layers
        self._decode_pair = self._attn_flops_per_pair / self.attn_flops
        self._decode_byte = self._kv_bytes_per_token / self.bw
        # Decode attention is linear in total context: time = layers * (slope * ctx + launch).
        self._decode_attn_slope = model.num_layers * max(self._decode_pair, self._decode_byte)
        self._decode_base: dict[int, float] = {}
        self._linear_cache: dict[int, float] = {}

    # --- structure -------------------------------------------------------------------------

    def _layer_gemms(self) -> list[_Gemm]:
        """One layer's QKV, output, MLP up (gate and up fused) and down projections."""
        m, tp = self.model, self.tp
        h = m.hidden_size
        attn_params = m.attention_params()
        out_width = m.num_heads * (m.mla.v_head_dim if m.mla else m.head_dim)
        in_params = attn_params - out_width * h
        gemms = [
            _Gemm(n=-(-in_params // (h * tp)), k=h),  # QKV (or MLA's down/up chain)
            _Gemm(n=h, k=out_width / tp),  # output projection
        ]
        mlp = [
            _Gemm(n=(2 if m.gated_mlp else 1) * -(-m.ffn_size // tp), k=h),
            _Gemm(n=h, k=m.ffn_size / tp),
        ]
        return gemms + mlp

    # --- operator times --------------------------------------------------------------------

    def _gemm(self, tokens: int, g: _Gemm) -> float:
        flops = 2.0 * tokens * g.n * g.k
        nbytes = (tokens * g.k + tokens * g.n) * self.a_bytes + g.k * g.n * self.w_bytes
        return max(flops / self.flops, nbytes / self.bw) + self.launch

    def _moe(self, tokens: int) -> float:
        """One MoE layer: router, routed experts (weights of every expert touched), shared."""
        m = self.model
        assert m.moe is not None
        e = m.moe
        h = m.hidden_size
        per_expert = (3 if m.gated_mlp else 2) * h * e.expert_ffn_size / self.tp
        touched = e.num_experts * (1.0 - (1.0 - e.experts_per_token / e.num_experts) ** tokens)
        flops = 2.0 * tokens * e.experts_per_token * per_expert
        nbytes = touched * per_expert * self.w_bytes
        nbytes += (
            2 * tokens * e.experts_per_token * (h + e.expert_ffn_size / self.tp) * self.a_bytes
        )
        t = max(flops / self.flops, nbytes / self.bw) + 3 * self.launch
        t += self._gemm(tokens, _Gemm(n=e.num_experts, k=h))  # router
        if e.num_shared_experts:
            f = e.num_shared_experts * e.expert_ffn_size
            t += self._gemm(tokens, _Gemm(n=(2 if m.gated_mlp else 1) * -(-f // self.tp), k=h))
            t += self._gemm(tokens, _Gemm(n=h, k=f / self.tp))
        return t

    def _all_reduce(self, tokens: int) -> float:
        if self.tp == 1:
            return 0.0
        nbytes = tokens * self.model.hidden_size * self.a_bytes
        return self.link_lat + 2.0 * (self.tp - 1) / self.tp * nbytes / self.link_bw

    def _linear_layers(self, tokens: int) -> float:
        """Every layer's projections, MLP or experts and all-reduces (attention and the LM
        head are priced separately). Cached by token count."""
        cached = self._linear_cache.get(tokens)
        if cached is not None:
            return cached
        attn_proj = self._gemm(tokens, self._dense_gemms[0]) + self._gemm(
            tokens, self._dense_gemms[1]
        )
        dense_mlp = self._gemm(tokens, self._dense_gemms[2]) + self._gemm(
            tokens, self._dense_gemms[3]
        )
        per_layer = attn_proj + 2 * self._all_reduce(tokens)
        total = self.model.num_layers * per_layer + self._dense_mlp_layers * dense_mlp
        if self._moe_layers:
            total += self._moe_layers * self._moe(tokens)
        self._linear_cache[tokens] = total
        return total

    def _attention(self, shape: BatchShape) -> float:
        layers = self.model.num_layers
        t = 0.0
        if shape.prefill_seqs:
            flops = shape.prefill_attn_pairs * self._attn_flops_per_pair
            nbytes = shape.prefill_kv_tokens * self._kv_bytes_per_token
            t += layers * (max(flops / self.attn_flops, nbytes / self.bw) + self.launch)
        if shape.decode_seqs:
            # k speculative tokens: k + 1 queries per sequence over the same cached KV
            q = 1 + shape.spec_tokens
            slope = layers * max(q * self._decode_pair, self._decode_byte)
            t += slope * shape.decode_context + layers * self.launch
        return t

    def _overhead(self, seqs: int) -> float:
        return self.step_overhead + self.seq_overhead * seqs

    # --- public ----------------------------------------------------------------------------

    def step_time(self, shape: BatchShape) -> float:
        if shape.tokens == 0:
            return 0.0
        if shape.prefill_seqs == 0 and shape.spec_tokens == 0:
            return self.decode_step_time(shape.decode_seqs, shape.decode_context)
        t = self._linear_layers(shape.tokens) + self._attention(shape)
        if shape.sampled_seqs:
            t += self._gemm(shape.sampled_seqs, self._lm_head)
        return t + self._overhead(shape.seqs)

    def decode_step_time(self, seqs: int, context: int) -> float:
        base = self._decode_base.get(seqs)
        if base is None:
            base = (
                self._linear_layers(seqs)
                + self._gemm(seqs, self._lm_head)
                + self.model.num_layers * self.launch
                + self._overhead(seqs)
            )
            self._decode_base[seqs] = base
        return base + self._decode_attn_slope * context
