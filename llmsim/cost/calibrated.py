"""Calibrated step-time model: the kernels of one forward pass, priced with parameters fitted
on measurements (the ``calibration:`` section of a hardware profile).

A step is every layer's kernels (two fused residual-add + norm kernels, the QKV projection,
rotary embedding, attention, the output projection, the MLP or experts with their activation,
and two all-reduces under tensor parallelism), then the embedding lookup, final norm and LM
head, plus the engine's host work. Each kernel's time comes from :mod:`llmsim.cost.kernels`:
GEMM efficiency by shape, achieved HBM bandwidth, prefill attention efficiency by sequence
length, decode attention bandwidth, launch times, alpha-beta all-reduce per GPU count, and a
per-step and per-sequence host overhead.

The ``roofline`` model does not read the calibration section: it stays the datasheet model with
its documented constants, so existing scenarios keep their numbers when a profile gains a
calibration, and the two can be compared. Select this model with
``engine: {cost: {kind: calibrated}}``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmsim.cost import attention_table as A
from llmsim.cost import gemm_table as T
from llmsim.cost import kernels as K
from llmsim.cost.base import BatchShape, gemm_dtype
from llmsim.cost.kernel_table import Curve, size_points
from llmsim.errors import ConfigError
from llmsim.hardware import HardwareProfile, list_hardware
from llmsim.hardware_calibration import Calibration
from llmsim.limits import MAX_MS
from llmsim.models import DTYPE_BYTES, ModelSpec

NORM, ROPE, ACTIVATION, ADD, EMBEDDING = range(len(K.ELEMENTWISE_KINDS))

# Without a fitted all-reduce for the GPU count, the link's datasheet figures are used with
# this fraction of its bandwidth (NCCL bus bandwidth versus the NVLink datasheet figure).
DATASHEET_LINK_EFFICIENCY = 0.7


class CalibratedConfig(BaseModel):
    """Scenario section ``engine.cost`` for the calibrated model.

    The host overheads default to the profile's calibrated values; an engine preset
    (``engine.preset``) or the fields here replace them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["calibrated"] = "calibrated"
    step_overhead_ms: float | None = Field(
        default=None, ge=0, le=MAX_MS, description="Host time per step, ms; default: the profile's."
    )
    seq_overhead_us: float | None = Field(
        default=None,
        ge=0,
        le=MAX_MS,
        description="Host time per sequence, us; default: the profile's.",
    )
    tp_overhead_ms: float | None = Field(
        default=None,
        ge=0,
        le=MAX_MS,
        description="Extra host time per step with several GPUs, ms; default: the profile's.",
    )
    compute_dtype: Literal["bf16", "fp16", "fp8"] | None = Field(
        default=None,
        description="GEMM data type; default: fp8 for fp8 weights on a GPU with fp8 tensor "
        "cores, bf16 otherwise (weight-only quantisation).",
    )
    kernel_table: bool = Field(
        default=True,
        description="Correct the fitted formulas with the profile's measured kernels (its "
        "kernel table); false: the formulas alone.",
    )

    def build(self, model: ModelSpec, hardware: HardwareProfile, tp: int) -> CalibratedCostModel:
        return CalibratedCostModel(model, hardware, tp, self)


def require_calibration(hardware: HardwareProfile) -> Calibration:
    """The profile's calibration, or a ConfigError that lists the calibrated profiles."""
    if hardware.calibration is not None:
        return hardware.calibration
    names = [hw.name for hw in list_hardware() if hw.calibration is not None]
    raise ConfigError(
        f"hardware '{hardware.name}' has no calibration section; calibrated profiles: "
        f"{', '.join(names) or 'none'} (or use cost kind 'roofline', or fit this GPU with "
        "llmsim calibrate)",
        field="engine.cost.kind",
    )


def _size_curve(
    path: str,
    family: str,
    formula: Callable[[Any], Any],
    kind: int | None = None,
    gpus: int | None = None,
) -> Curve | None:
    """The kernel table's curve of one elementwise kind or all-reduce GPU count."""
    points = size_points(path, family, kind=kind, gpus=gpus)
    return None if points is None else Curve(points[0], points[1], formula)


class CalibratedCostModel:
    """Step times for one replica: ``model`` on ``tp`` GPUs of a calibrated ``hardware``."""

    def __init__(
        self, model: ModelSpec, hardware: HardwareProfile, tp: int, cfg: CalibratedConfig
    ) -> None:
        cal = require_calibration(hardware)
        self.model = model
        self.hardware = hardware
        self.tp = tp
        self.cfg = cfg
        dtype = gemm_dtype(model, hardware, cfg.compute_dtype)
        gemm = cal.gemm.get("fp8") if dtype == "fp8" else None
        gemm_params = gemm or cal.gemm["bf16"]
        self._gemm_dtype = "fp8" if gemm is not None else "bf16"  # the fitted (and measured)
        self._gemm_th = K.theta(gemm_params, K.GEMM)
        self._sms = float(gemm_params.sms)
        self._peak = hardware.peak_flops(dtype)
        self._peak16 = hardware.peak_flops("bf16")
        self._bw = hardware.memory_bandwidth
        self._w_bytes = model.weight_bytes_per_param
        self._a_bytes = DTYPE_BYTES["bf16"]
        self._gemm_act = 1.0 if dtype == "fp8" else self._a_bytes  # fp8 GEMMs quantise inputs
        self._kv_bytes = model.kv_bytes_per_element
        self._gemm_formula = T.formula_for(
            self._gemm_th,
            peak=self._peak,
            bandwidth=self._bw,
            weight_bytes=self._w_bytes,
            act_bytes=self._gemm_act,
            sms=self._sms,
        )
        self._ew_th = K.theta(cal.elementwise, K.ELEMENTWISE)
        self._pa_th = K.theta(cal.prefill_attention, K.PREFILL_ATTENTION)
        self._da_th = K.theta(cal.decode_attention, K.DECODE_ATTENTION)
        host = cal.host
        self._host_th = (
            host.step_overhead_ms if cfg.step_overhead_ms is None else cfg.step_overhead_ms,
            host.seq_overhead_us if cfg.seq_overhead_us is None else cfg.seq_overhead_us,
            host.tp_overhead_ms if cfg.tp_overhead_ms is None else cfg.tp_overhead_ms,
        )
        fitted = cal.all_reduce(tp)
        link = hardware.interconnect
        self._ar_th = (
            (fitted.latency_us, fitted.bus_bandwidth_gbps)
            if fitted is not None
            else (link.latency_us, link.bandwidth_gbps * DATASHEET_LINK_EFFICIENCY)
        )
        self._structure()
        self._measured(cal, fitted_gpus=fitted.gpus if fitted is not None else 0)
        self._linear_cache: dict[int, float] = {}
        self._decode_cache: dict[int, tuple[float, float, A.SurfaceRow | None]] = {}

    # --- structure -------------------------------------------------------------------------

    def _measured(self, cal: Calibration, fitted_gpus: int) -> None:
        """The kernel table's corrections for this model (:mod:`llmsim.cost.kernel_table`):
        a curve per GEMM weight (built on first use), an attention surface per phase (none for
        MLA, which the tables do not measure), a curve per elementwise kind and one for the
        all-reduce when its GPU count was measured. Without a table: none of them."""
        path = cal.kernel_table if self.cfg.kernel_table else ""
        self._gemm_table: T.GemmTable | None = None
        self._gemm_curves: dict[tuple[float, float], Curve] = {}
        self._prefill_surface = self._surface(path, "prefill_attention", self._pa_th)
        self._decode_surface = self._surface(path, "decode_attention", self._da_th)
        self._prefill_rows: dict[int, A.SurfaceRow] = {}
        self._ar_curve: Curve | None = None
        self._ew_curves: list[Curve | None] = [None] * len(K.ELEMENTWISE_KINDS)
        if not path:
            return
        self._gemm_table = T.measured(
            path,
            self._gemm_dtype,
            self._gemm_th,
            self.hardware.peak_flops(self._gemm_dtype),
            self._bw,
            self._sms,
        )
        for kind in range(len(K.ELEMENTWISE_KINDS)):
            formula = partial(K.elementwise_time, self._ew_th, bandwidth=self._bw, kind=kind)
            self._ew_curves[kind] = _size_curve(path, "elementwise", formula, kind=kind)
        if fitted_gpus == self.tp > 1:
            formula = partial(K.all_reduce_time, self._ar_th, gpus=float(self.tp))
            self._ar_curve = _size_curve(path, "all_reduce", formula, gpus=self.tp)

    def _structure(self) -> None:
        m, tp = self.model, self.tp
        h = m.hidden_size
        out_width = m.num_heads * (m.mla.v_head_dim if m.mla else m.head_dim)
        in_params = m.attention_params() - out_width * h
        self._qkv = (float(-(-in_params // (h * tp))), float(h))
        self._out = (float(h), out_width / tp)
        gate = 2 if m.gated_mlp else 1
        self._up = (float(gate * -(-m.ffn_size // tp)), float(h))
        self._down = (float(h), m.ffn_size / tp)
        self._lm_head = (float(-(-m.vocab_size // tp)), float(h))
        self._heads = float(max(1, m.num_heads // tp))
        if m.mla is not None:
            qk = m.mla.kv_lora_rank + m.mla.qk_rope_head_dim
            self._head_dim = (qk + m.mla.kv_lora_rank) / 2.0
        else:
            self._head_dim = float(m.head_dim)
        kv_token = m.kv_bytes_per_token_per_gpu(tp) / m.num_layers
        self._kv_heads = kv_token / (2.0 * self._head_dim * self._kv_bytes)
        # Elementwise bytes per token and layer: two fused residual-add + norm kernels (read
        # x and residual, write both), rotary embedding (read and write q and k), activation.
        rope = 2.0 * (m.q_width / tp + self._kv_heads * self._head_dim)
        act = (3.0 if m.gated_mlp else 2.0) * m.ffn_size / tp
        self._norm_bytes = 4.0 * h * self._a_bytes
        self._rope_bytes = rope * self._a_bytes
        self._act_bytes = act * self._a_bytes
        self._moe_act_bytes = 0.0
        if m.moe is not None:
            e = m.moe
            self._moe_act_bytes = (
                (3.0 if m.gated_mlp else 2.0) * e.expert_ffn_size / tp * e.experts_per_token
            ) * self._a_bytes
        self._layers = m.num_layers
        self._moe_layers = m.num_moe_layers
        self._dense_layers = m.num_layers - m.num_moe_layers

    # --- operators -------------------------------------------------------------------------

    def _gemm(self, tokens: float, nk: tuple[float, float]) -> float:
        if self._gemm_table is None:
            return float(self._gemm_formula(tokens, nk[0], nk[1]))
        curve = self._gemm_curves.get(nk)
        if curve is None:
            curve = self._gemm_table.curve(nk[0], nk[1], self._gemm_formula)
            self._gemm_curves[nk] = curve
        return curve(tokens)

    def _ew(self, nbytes: float, kind: int = NORM) -> float:
        curve = self._ew_curves[kind]
        if curve is not None:
            return curve(nbytes)
        return float(K.elementwise_time(self._ew_th, nbytes, bandwidth=self._bw, kind=kind))

    def _grouped(self, rows: float, nk: tuple[float, float], groups: float) -> float:
        """Experts as one grouped GEMM: ``groups`` weights, ``rows / groups`` rows each, one
        launch. Priced by the formula alone: a kernel table measures dense GEMMs, whose times
        include the launch and tail that a grouped kernel pays once."""
        per = max(rows / groups, 1.0)
        launch = self._gemm_th[6] * 1e-6
        dense = float(self._gemm_formula(per, nk[0], nk[1]))
        return groups * (dense - launch) + launch

    def _moe(self, tokens: int) -> float:
        m = self.model
        assert m.moe is not None
        e = m.moe
        h = float(m.hidden_size)
        gate = 2 if m.gated_mlp else 1
        f = e.expert_ffn_size / self.tp
        touched = e.num_experts * (1.0 - (1.0 - e.experts_per_token / e.num_experts) ** tokens)
        rows = float(tokens * e.experts_per_token)
        t = self._gemm(tokens, (float(e.num_experts), h))  # router
        t += self._grouped(rows, (gate * f, h), touched)
        t += self._grouped(rows, (h, f), touched)
        t += self._ew(tokens * self._moe_act_bytes, ACTIVATION)
        if e.num_shared_experts:
            fs = e.num_shared_experts * e.expert_ffn_size / self.tp
            t += self._gemm(tokens, (gate * fs, h)) + self._gemm(tokens, (h, fs))
            t += self._ew(tokens * (3.0 if m.gated_mlp else 2.0) * fs * self._a_bytes, ACTIVATION)
        return t

    def _all_reduce(self, tokens: int) -> float:
        if self.tp == 1:
            return 0.0
        nbytes = tokens * self.model.hidden_size * self._a_bytes
        if self._ar_curve is not None:
            return self._ar_curve(nbytes)
        return float(K.all_reduce_time(self._ar_th, nbytes, float(self.tp)))

    def _linear_layers(self, tokens: int) -> float:
        """Every layer's kernels except attention, plus embedding and final norm; cached."""
        cached = self._linear_cache.get(tokens)
        if cached is not None:
            return cached
        per_layer = (
            2.0 * self._ew(tokens * self._norm_bytes)
            + self._gemm(tokens, self._qkv)
            + self._ew(tokens * self._rope_bytes, ROPE)
            + self._gemm(tokens, self._out)
            + 2.0 * self._all_reduce(tokens)
        )
        dense_mlp = (
            self._gemm(tokens, self._up)
            + self._ew(tokens * self._act_bytes, ACTIVATION)
            + self._gemm(tokens, self._down)
        )
        total = self._layers * per_layer + self._dense_layers * dense_mlp
        if self._moe_layers:
            total += self._moe_layers * self._moe(tokens)
        h_bytes = self.model.hidden_size * self._a_bytes
        total += self._ew(tokens * 2.0 * h_bytes, EMBEDDING) + self._ew(tokens * 4.0 * h_bytes)
        self._linear_cache[tokens] = total
        return total

    def _surface(self, path: str, family: str, th: tuple[float, ...]) -> A.Surface | None:
        """The measured surface of an attention family for this model's heads per GPU, or
        None (no kernel table, no rows of the family, or MLA attention, which the tables do
        not measure)."""
        if not path or self.model.mla is not None:
            return None
        table = A.measured(path, family, th, self._peak16, self._bw)
        if table is None:
            return None
        formula = A.family_formula(
            family,
            th,
            self._heads,
            self._kv_heads,
            self._head_dim,
            peak=self._peak16,
            bandwidth=self._bw,
            kv_bytes=self._kv_bytes,
        )
        return table.surface(self._heads, self._kv_heads, self._head_dim, formula)

    def _decode_attention(self, seqs: int, context: float) -> float:
        """Decode attention of every layer: ``seqs`` sequences, ``context`` tokens in all."""
        if self._decode_surface is None:
            return self._layers * float(
                K.decode_attention_time(
                    self._da_th,
                    float(seqs),
                    float(context),
                    self._heads,
                    self._kv_heads,
                    self._head_dim,
                    bandwidth=self._bw,
                    kv_bytes=self._kv_bytes,
                )
            )
        row = self._decode_terms(seqs)[2]
        assert row is not None
        return self._layers * row(context / seqs)

    def _prefill_attention(self, shape: BatchShape) -> float:
        t = self._layers * float(
            K.prefill_attention_time(
                self._pa_th,
                float(shape.prefill_tokens),
                float(shape.prefill_seqs),
                shape.prefill_attn_pairs,
                float(shape.prefill_kv_tokens),
                self._heads,
                self._kv_heads,
                self._head_dim,
                peak=self._peak16,
                bandwidth=self._bw,
                elem_bytes=self._kv_bytes,
            )
        )
        surface = self._prefill_surface
        if surface is None:
            return t
        # The measured correction of the uniform batch with these sequences and tokens.
        seqs = shape.prefill_seqs
        row = self._prefill_rows.get(seqs)
        if row is None:
            row = self._prefill_rows[seqs] = surface.row(float(seqs))
        length = shape.prefill_tokens / seqs
        return t * row(length) / float(surface.formula(float(seqs), length))

    def _decode_terms(self, seqs: int) -> tuple[float, float, A.SurfaceRow | None]:
        """(seconds independent of context, seconds per cached token, measured attention row)
        of a decode step of ``seqs`` sequences, cached. With a measured decode-attention
        surface the row prices attention and the first two leave it out; without one the row
        is None."""
        cached = self._decode_cache.get(seqs)
        if cached is not None:
            return cached
        s = float(seqs)
        base = float(
            self._linear_layers(seqs)
            + self._gemm(s, self._lm_head)
            + K.host_time(self._host_th, s, float(self.tp))
        )
        slope, row = 0.0, None
        if self._decode_surface is not None:
            row = self._decode_surface.row(s)
        else:
            base += self._layers * float(K.decode_attention_base(self._da_th, s, self._kv_heads))
            slope = self._layers * float(
                K.decode_attention_slope(
                    self._da_th,
                    s,
                    self._kv_heads,
                    self._head_dim,
                    bandwidth=self._bw,
                    kv_bytes=self._kv_bytes,
                )
            )
        cached = self._decode_cache[seqs] = (base, slope, row)
        return cached

    # --- public ----------------------------------------------------------------------------

    def step_time(self, shape: BatchShape) -> float:
        if shape.tokens == 0:
            return 0.0
        if shape.prefill_seqs == 0:
            return self.decode_step_time(shape.decode_seqs, shape.decode_context)
        t = self._linear_layers(shape.tokens) + self._prefill_attention(shape)
        if shape.decode_seqs:
            t += self._decode_attention(shape.decode_seqs, shape.decode_context)
        if shape.sampled_seqs:
            t += self._gemm(float(shape.sampled_seqs), self._lm_head)
        return t + float(K.host_time(self._host_th, float(shape.seqs), float(self.tp)))

    def decode_step_time(self, seqs: int, context: int) -> float:
        base, slope, row = self._decode_cache.get(seqs) or self._decode_terms(seqs)
        if row is None:
            return base + slope * context
        return base + self._layers * row(context / seqs)
