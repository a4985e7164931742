"""Kernel-time formulas of the calibrated cost model, one per operator family.

Each formula takes its parameters as a flat sequence in the order of the family's ``NAMES``
(the fields of the matching model in :mod:`llmsim.hardware_calibration`) and works on plain
floats and on numpy arrays alike, so the cost model prices one step with them and calibration
fits them on thousands of measurements with the very same code. Times are seconds; sizes are
elements or bytes as named; ``peak`` is FLOP/s and ``bandwidth`` bytes/s from the datasheet.

Every formula grows with tokens (``m``, ``tokens``) and with context, so predictions stay
monotone beyond the measured range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

Num = Any  # a float, or a numpy array of them (one value per measurement row)

GEMM = (
    "flops_efficiency",
    "m_half",
    "n_half",
    "k_half",
    "bandwidth_efficiency",
    "n_bandwidth_half",
    "launch_us",
    "smoothness",
    "wave_exponent",
)
ELEMENTWISE = (
    "launch_us",
    "norm_efficiency",
    "rope_efficiency",
    "activation_efficiency",
    "add_efficiency",
    "embedding_efficiency",
)
ELEMENTWISE_KINDS = ("norm", "rope", "activation", "add", "embedding")
# Operator names (the kinds themselves, and Vidur's) -> index into ELEMENTWISE_KINDS.
ELEMENTWISE_OPS = {
    **{kind: i for i, kind in enumerate(ELEMENTWISE_KINDS)},
    "input_layernorm": 0,
    "post_attention_layernorm": 0,
    "attn_rope": 1,
    "mlp_act": 2,
    "emb": 4,
}
PREFILL_ATTENTION = (
    "flops_efficiency",
    "seq_half",
    "tiles_half",
    "head_dim_half",
    "bandwidth_efficiency",
    "per_seq_head_ns",
    "launch_us",
)
DECODE_ATTENTION = (
    "bandwidth_efficiency",
    "parallel_half",
    "per_seq_ns",
    "per_seq_kv_head_ns",
    "launch_us",
)
ALL_REDUCE = ("latency_us", "bus_bandwidth_gbps")
SEND_RECV = ("latency_us", "bandwidth_gbps")
HOST = ("step_overhead_ms", "seq_overhead_us", "tp_overhead_ms")

QUERY_BLOCK = 128  # query rows per attention work item (FlashAttention's usual tile)
# Output tile shapes (rows x columns) a GEMM library chooses among; wave quantisation takes the
# one that wastes least (cuBLAS and CUTLASS heuristics pick among similar sizes).
GEMM_TILES = (
    (64, 64),
    (64, 128),
    (128, 64),
    (128, 128),
    (128, 256),
    (256, 128),
    (64, 256),
    (256, 64),
)


def theta(params: BaseModel, names: Sequence[str]) -> tuple[float, ...]:
    """A parameter model's values in the order a formula expects."""
    return tuple(float(getattr(params, n)) for n in names)


def wave_padded(m: Num, n: Num, sms: float) -> Num:
    """Output elements a GEMM effectively computes on ``sms`` multiprocessors: the ``m x n``
    output in tiles of ``GEMM_TILES``, in whole waves of ``sms`` tiles (the last wave is
    partly idle), for the tile shape that wastes least. Non-decreasing in ``m`` and ``n``."""
    if isinstance(m, (int, float)) and isinstance(n, (int, float)):  # one GEMM: no numpy
        return min(
            math.ceil(math.ceil(m / tm) * math.ceil(n / tn) / sms) * sms * tm * tn
            for tm, tn in GEMM_TILES
        )
    best: Num = None
    for tm, tn in GEMM_TILES:
        tiles = np.ceil(m / tm) * np.ceil(n / tn)
        work = np.ceil(tiles / sms) * sms * tm * tn
        best = work if best is None else np.minimum(best, work)
    return best


def gemm_time(
    th: Sequence[float],
    m: Num,
    n: Num,
    k: Num,
    *,
    peak: Num,
    bandwidth: float,
    weight_bytes: Num = 2.0,
    act_bytes: Num = 2.0,
    sms: float = 0.0,
) -> Num:
    """``m x k`` activations times a ``k x n`` weight on a GPU with ``sms`` multiprocessors
    (0: no wave quantisation).

    Compute time is a geometric blend, by ``wave_exponent``, of a smooth efficiency curve in
    M, N and K and of the wave-quantised work (:func:`wave_padded`); both grow with ``m`` and
    ``n``, so their blend does too.
    """
    eff, m_half, n_half, k_half, bw_eff, nb_half, launch_us, s, wave = th
    per_mn = 2.0 * k / (peak * eff) * (1.0 + k_half / k)
    tc = per_mn * (m + m_half) * (n + n_half)
    if sms > 0 and wave > 0:
        tc = tc ** (1.0 - wave) * (per_mn * wave_padded(m, n, sms)) ** wave
    nbytes = weight_bytes * k * n + act_bytes * m * (k + n)
    tm = nbytes / (bandwidth * bw_eff) * (1.0 + nb_half / n)
    out: Num = (tc**s + tm**s) ** (1.0 / s) + launch_us * 1e-6
    return out


def elementwise_time(th: Sequence[float], nbytes: Num, *, bandwidth: float, kind: Num = 0) -> Num:
    """A kernel that streams ``nbytes`` (reads plus writes) once; ``kind`` indexes
    ``ELEMENTWISE_KINDS`` (an int, or an int array with one kind per row)."""
    launch_us = th[0]
    if isinstance(kind, int):
        eff: Num = th[1 + kind]
    else:
        eff = np.asarray(th[1:])[kind]
    out: Num = launch_us * 1e-6 + nbytes / (bandwidth * eff)
    return out


def prefill_attention_time(
    th: Sequence[float],
    tokens: Num,
    seqs: Num,
    pairs: Num,
    kv_tokens: Num,
    heads: Num,
    kv_heads: Num,
    head_dim: Num,
    *,
    peak: float,
    bandwidth: float,
    elem_bytes: float = 2.0,
) -> Num:
    """Causal attention of ``tokens`` new query tokens in ``seqs`` sequences over ``pairs``
    (query, key) pairs, reading ``kv_tokens`` cached-plus-new keys and values."""
    eff, seq_half, tiles_half, hd_half, bw_eff, per_seq_head_ns, launch_us = th
    flops = 4.0 * heads * head_dim * pairs
    length = 2.0 * pairs / tokens
    tiles = heads * (tokens + 0.5 * QUERY_BLOCK * seqs) / QUERY_BLOCK
    tc = flops / (peak * eff) * (1.0 + seq_half / length) * (1.0 + tiles_half / tiles)
    tc = tc * (1.0 + hd_half / head_dim)
    nbytes = elem_bytes * head_dim * (2.0 * tokens * heads + 2.0 * kv_tokens * kv_heads)
    tm = nbytes / (bandwidth * bw_eff)
    out: Num = tc + tm + seqs * heads * per_seq_head_ns * 1e-9 + launch_us * 1e-6
    return out


def prefill_attention_uniform(
    th: Sequence[float],
    seqs: Num,
    length: Num,
    heads: Num,
    kv_heads: Num,
    head_dim: Num,
    *,
    peak: float,
    bandwidth: float,
    elem_bytes: float = 2.0,
) -> Num:
    """:func:`prefill_attention_time` of ``seqs`` fresh prompts of ``length`` tokens each."""
    tokens = seqs * length
    return prefill_attention_time(
        th,
        tokens,
        seqs,
        tokens * (length + 1.0) / 2.0,
        tokens,
        heads,
        kv_heads,
        head_dim,
        peak=peak,
        bandwidth=bandwidth,
        elem_bytes=elem_bytes,
    )


def decode_attention_time(
    th: Sequence[float],
    seqs: Num,
    context: Num,
    heads: Num,
    kv_heads: Num,
    head_dim: Num,
    *,
    bandwidth: float,
    kv_bytes: float = 2.0,
) -> Num:
    """One query token for each of ``seqs`` sequences over ``context`` cached tokens in all."""
    base = decode_attention_base(th, seqs, kv_heads)
    out: Num = (
        base
        + decode_attention_slope(
            th, seqs, kv_heads, head_dim, bandwidth=bandwidth, kv_bytes=kv_bytes
        )
        * context
    )
    return out


def decode_attention_base(th: Sequence[float], seqs: Num, kv_heads: Num) -> Num:
    """The part of decode attention that does not depend on the context length (a cost per
    sequence and per sequence and KV head: paged-cache bookkeeping, partial blocks)."""
    _, _, per_seq_ns, per_kv_head_ns, launch_us = th
    out: Num = launch_us * 1e-6 + seqs * (per_seq_ns + kv_heads * per_kv_head_ns) * 1e-9
    return out


def decode_attention_slope(
    th: Sequence[float],
    seqs: Num,
    kv_heads: Num,
    head_dim: Num,
    *,
    bandwidth: float,
    kv_bytes: float = 2.0,
) -> Num:
    """Seconds per cached token of decode attention, for a batch of ``seqs`` sequences."""
    bw_eff, parallel_half = th[0], th[1]
    per_token = 2.0 * kv_heads * head_dim * kv_bytes / (bandwidth * bw_eff)
    out: Num = per_token * (1.0 + parallel_half / (seqs * kv_heads))
    return out


def all_reduce_time(th: Sequence[float], nbytes: Num, gpus: Num) -> Num:
    """Ring all-reduce of ``nbytes`` over ``gpus`` GPUs."""
    latency_us, bus_gbps = th
    out: Num = latency_us * 1e-6 + 2.0 * (gpus - 1.0) / gpus * nbytes / (bus_gbps * 1e9)
    return out


def send_recv_time(th: Sequence[float], nbytes: Num) -> Num:
    """A point-to-point transfer of ``nbytes`` between two GPUs (pipeline stages)."""
    latency_us, gbps = th
    out: Num = latency_us * 1e-6 + nbytes / (gbps * 1e9)
    return out


def host_time(th: Sequence[float], seqs: Num, tp: Num) -> Num:
    """Host work of one engine step with ``seqs`` sequences on ``tp`` GPUs."""
    step_ms, seq_us, tp_ms = th
    multi = (tp > 1) * 1.0
    out: Num = step_ms * 1e-3 + seq_us * 1e-6 * seqs + tp_ms * 1e-3 * multi
    return out
