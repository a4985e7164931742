"""The ``calibration:`` section of a hardware profile: kernel-time parameters fitted on
measurements, and where they came from.

Each operator family has its own small parameter set; the formulas that use them live in
:mod:`llmsim.cost.kernels`. A family is either fitted on measurements of this GPU (``source``
names the data) or transferred from a similar GPU when this one has no measurements of that
kind (``source`` says so). ``fidelity`` records the held-out error measured when the profile
was calibrated, so a later change that degrades it can be caught.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

GemmDType = Literal["bf16", "fp8"]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class GemmParams(_Params):
    """``time = (tc^p + tm^p)^(1/p) + launch``: a smoothed maximum of compute and memory time.

    ``tc = 2mnk / (peak * flops_efficiency) * (1 + m_half/m)(1 + n_half/n)(1 + k_half/k)``: a
    large GEMM reaches ``flops_efficiency`` of the datasheet peak; each dimension below its
    "half" size loses efficiency (small M: under-filled tiles; small N: few thread blocks;
    small K: pipeline start-up). ``tm = bytes / (bandwidth * bandwidth_efficiency) *
    (1 + n_bandwidth_half/n)``: weight and activation traffic, slower when few thread blocks
    share the read.

    With ``sms`` (the GPU's multiprocessor count, from its datasheet) the compute time is
    ``tc^(1 - wave_exponent) * tw^wave_exponent``, where ``tw`` prices the output padded to
    whole tiles and whole waves of ``sms`` tiles (wave quantisation: a GEMM with 133 tiles on
    132 multiprocessors takes two waves); ``sms: 0`` turns this off.
    """

    source: str = Field(default="", description="what these values were fitted on")
    flops_efficiency: float = Field(gt=0, le=1, description="fraction of peak FLOP/s, large GEMMs")
    m_half: float = Field(ge=0, description="rows (tokens) at which compute efficiency halves")
    n_half: float = Field(ge=0, description="output columns at which compute efficiency halves")
    k_half: float = Field(ge=0, description="inner dimension at which compute efficiency halves")
    bandwidth_efficiency: float = Field(gt=0, le=1, description="fraction of HBM bandwidth")
    n_bandwidth_half: float = Field(ge=0, description="output columns at which bandwidth halves")
    launch_us: float = Field(ge=0, description="fixed time per GEMM kernel, microseconds")
    smoothness: float = Field(ge=1, le=20, description="exponent of the smoothed maximum")
    wave_exponent: float = Field(
        default=0.0, ge=0, le=1, description="weight of the wave-quantised compute time"
    )
    sms: int = Field(
        default=0, ge=0, description="multiprocessors, for wave quantisation (datasheet; 0: off)"
    )


class ElementwiseParams(_Params):
    """Norms, rotary embedding, activations, residual adds and the embedding lookup:
    ``launch + bytes / (bandwidth * efficiency of the kind)``."""

    source: str = Field(default="", description="what these values were fitted on")
    launch_us: float = Field(ge=0, description="fixed time per elementwise kernel, microseconds")
    norm_efficiency: float = Field(gt=0, le=1, description="fraction of HBM bandwidth, norms")
    rope_efficiency: float = Field(gt=0, le=1, description="fraction of HBM bandwidth, rotary")
    activation_efficiency: float = Field(
        gt=0, le=1, description="fraction of HBM bandwidth, MLP activation"
    )
    add_efficiency: float = Field(gt=0, le=1, description="fraction of HBM bandwidth, adds")
    embedding_efficiency: float = Field(
        gt=0, le=1, description="fraction of HBM bandwidth, embedding lookup"
    )


class PrefillAttentionParams(_Params):
    """Causal attention over new tokens (FlashAttention-style prefill).

    ``tc = FLOPs / (peak * flops_efficiency) * (1 + seq_half/L)(1 + tiles_half/tiles)
    (1 + head_dim_half/d)`` with ``L`` the mean attended length per query token and ``tiles``
    the (head, 128-query block) work items; plus Q/K/V/O traffic at ``bandwidth_efficiency``,
    a per (sequence, head) cost and a launch time.
    """

    source: str = Field(default="", description="what these values were fitted on")
    flops_efficiency: float = Field(gt=0, le=1, description="fraction of peak bf16 FLOP/s")
    seq_half: float = Field(ge=0, description="sequence length at which efficiency halves")
    tiles_half: float = Field(ge=0, description="parallel work items at which efficiency halves")
    head_dim_half: float = Field(ge=0, description="head size at which efficiency halves")
    bandwidth_efficiency: float = Field(gt=0, le=1, description="fraction of HBM bandwidth")
    per_seq_head_ns: float = Field(ge=0, description="cost per (sequence, head), nanoseconds")
    launch_us: float = Field(ge=0, description="fixed time per attention kernel, microseconds")


class DecodeAttentionParams(_Params):
    """One query token per sequence over its KV cache: a bandwidth-bound read.

    ``time = launch + seqs * (per_seq + kv_heads * per_seq_kv_head) + KV bytes / (bandwidth *
    bandwidth_efficiency) * (1 + parallel_half / (seqs * kv_heads))``.
    """

    source: str = Field(default="", description="what these values were fitted on")
    bandwidth_efficiency: float = Field(gt=0, le=1, description="fraction of HBM bandwidth")
    parallel_half: float = Field(ge=0, description="sequence x KV-head pairs at half bandwidth")
    per_seq_ns: float = Field(ge=0, description="cost per sequence, nanoseconds")
    per_seq_kv_head_ns: float = Field(ge=0, description="cost per (sequence, KV head), ns")
    launch_us: float = Field(ge=0, description="fixed time per attention kernel, microseconds")


class AllReduceParams(_Params):
    """Alpha-beta all-reduce on ``gpus`` GPUs: ``latency + 2(n-1)/n * bytes / bus bandwidth``."""

    gpus: int = Field(ge=2, description="GPUs taking part")
    latency_us: float = Field(ge=0, description="fixed time of one all-reduce, microseconds")
    bus_bandwidth_gbps: float = Field(gt=0, description="NCCL bus bandwidth, GB/s")


class SendRecvParams(_Params):
    """Point-to-point transfer between two GPUs (activations between pipeline stages):
    ``latency + bytes / bandwidth``."""

    scope: Literal["intra-node", "inter-node"] = Field(description="GPUs in one server or two")
    latency_us: float = Field(ge=0, description="fixed time of one transfer, microseconds")
    bandwidth_gbps: float = Field(gt=0, description="achieved bandwidth, GB/s")


class CollectiveParams(_Params):
    """All-reduce parameters per GPU count (other counts use the nearest fitted one), and
    point-to-point transfers within a server and between servers."""

    source: str = Field(default="", description="what these values were fitted on")
    all_reduce: tuple[AllReduceParams, ...] = ()
    send_recv: tuple[SendRecvParams, ...] = ()

    def transfer(self, scope: str = "intra-node") -> SendRecvParams | None:
        """The fitted point-to-point transfer of ``scope``, if any."""
        return next((p for p in self.send_recv if p.scope == scope), None)


class HostParams(_Params):
    """Host work per engine step (scheduling, input preparation, sampling, output handling):
    ``step_overhead + seq_overhead * sequences (+ tp_overhead when tensor-parallel)``."""

    source: str = Field(default="", description="what these values were fitted on")
    step_overhead_ms: float = Field(ge=0, description="fixed host time per step, ms")
    seq_overhead_us: float = Field(ge=0, description="host time per sequence in the step, us")
    tp_overhead_ms: float = Field(
        default=0.0, ge=0, description="extra host time per step with several GPUs, ms"
    )


class FidelityRow(_Params):
    """Prediction error on measurements held out of the fit."""

    family: str = Field(description="operator family or step kind")
    data: str = Field(description="data set the rows come from")
    holdout: str = Field(description="how the rows were held out")
    points: int = Field(ge=0, description="held-out rows")
    median_ape: float = Field(ge=0, description="median absolute percentage error, %")
    p90_ape: float = Field(ge=0, description="90th percentile absolute percentage error, %")


class Calibration(_Params):
    """Fitted kernel parameters of one GPU, with provenance."""

    data: str = Field(description="measurements the parameters were fitted on")
    engine: str = Field(default="", description="serving engine and version of the kernels")
    date: str = Field(description="calibration date, YYYY-MM-DD")
    points: int = Field(ge=0, description="measurements used in the fit")
    gemm: dict[GemmDType, GemmParams]
    kernel_table: str = Field(
        default="",
        description="Parquet file next to the profile with the measured GEMM and attention "
        "kernels that correct the formulas shape by shape (llmsim.cost.kernel_table); empty: "
        "the formulas alone",
    )
    elementwise: ElementwiseParams
    prefill_attention: PrefillAttentionParams
    decode_attention: DecodeAttentionParams
    collectives: CollectiveParams
    host: HostParams
    fidelity: tuple[FidelityRow, ...] = ()

    def all_reduce(self, gpus: int) -> AllReduceParams | None:
        """The fitted all-reduce for ``gpus`` GPUs, or the nearest fitted count above it
        (else below it); None when no count was fitted."""
        fits = sorted(self.collectives.all_reduce, key=lambda a: a.gpus)
        if not fits:
            return None
        above = [a for a in fits if a.gpus >= gpus]
        return above[0] if above else fits[-1]
