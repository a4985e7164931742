"""Fitting the kernel formulas of :mod:`llmsim.cost.kernels` to operator measurements.

Each family is fitted on its own rows with ``scipy.optimize.least_squares``: residuals are
log(predicted / measured), so every row counts by its relative error, and the soft-L1 loss keeps
a few noisy rows from pulling the fit. Each fit starts from a few fixed points and keeps the
best, within bounds that keep every parameter physical. Large tables are thinned to an evenly
spaced, deterministic subset first, which keeps a whole GPU's calibration to seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from pydantic import BaseModel
from scipy.optimize import least_squares

from llmsim.cost import gemm_table as T
from llmsim.cost import kernels as K
from llmsim.cost.attention_table import AttentionTable, family_formula
from llmsim.cost.attention_table import Formula as AttentionFormula
from llmsim.cost.kernel_table import FAMILIES as TABLE_FAMILIES
from llmsim.cost.kernel_table import Curve, elementwise_kinds
from llmsim.hardware import HardwareProfile
from llmsim.hardware_calibration import (
    AllReduceParams,
    DecodeAttentionParams,
    ElementwiseParams,
    GemmParams,
    HostParams,
    PrefillAttentionParams,
    SendRecvParams,
)

MAX_ROWS = 4000  # rows per fit after thinning
LOSS_SCALE = 0.05  # residual (in log units, ~5 %) where the soft-L1 loss turns linear

# Streaming multiprocessors (AMD: compute units) per GPU, from the vendors' datasheets and
# architecture whitepapers; GEMM wave quantisation uses them. A GPU not listed gets 0 (off).
SM_COUNT = {
    "A100-40GB": 108,
    "A100-80GB": 108,
    "A10G": 80,
    "A40": 84,
    "B200": 148,
    "H100-PCIe": 114,
    "H100-SXM": 132,
    "H200": 132,
    "L4": 58,
    "L40S": 142,
    "MI300X": 304,
}

Predict = Callable[[Sequence[float], pd.DataFrame, HardwareProfile], np.ndarray]


def _col(rows: pd.DataFrame, name: str) -> np.ndarray:
    return rows[name].to_numpy(dtype=float)


def sm_count(hw: HardwareProfile) -> int:
    """Multiprocessors of ``hw`` (0 when unknown: no wave quantisation)."""
    return SM_COUNT.get(hw.name, 0)


def predict_gemm(th: Sequence[float], rows: pd.DataFrame, hw: HardwareProfile) -> np.ndarray:
    fp8 = (rows["dtype"] == "fp8").to_numpy()
    elem = np.where(fp8, 1.0, 2.0)
    out: np.ndarray = K.gemm_time(
        th,
        _col(rows, "m"),
        _col(rows, "n"),
        _col(rows, "k"),
        peak=np.where(fp8, hw.peak_flops("fp8"), hw.peak_flops("bf16")),
        bandwidth=hw.memory_bandwidth,
        weight_bytes=elem,
        act_bytes=elem,
        sms=float(sm_count(hw)),
    )
    return out


def elementwise_kind(rows: pd.DataFrame) -> np.ndarray:
    """Kind index of each elementwise row (unknown operators count as norms)."""
    return elementwise_kinds(rows["op"])


def predict_elementwise(th: Sequence[float], rows: pd.DataFrame, hw: HardwareProfile) -> np.ndarray:
    out: np.ndarray = K.elementwise_time(
        th, _col(rows, "nbytes"), bandwidth=hw.memory_bandwidth, kind=elementwise_kind(rows)
    )
    return out


def attention_shape(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Prefill rows as the aggregate quantities of a batch (tokens, pairs, KV tokens)."""
    b, q, p = _col(rows, "batch"), _col(rows, "seq_len"), _col(rows, "past")
    return {
        "tokens": b * q,
        "seqs": b,
        "pairs": b * q * (p + (q + 1.0) / 2.0),
        "kv_tokens": b * (p + q),
    }


def predict_prefill(th: Sequence[float], rows: pd.DataFrame, hw: HardwareProfile) -> np.ndarray:
    s = attention_shape(rows)
    out: np.ndarray = K.prefill_attention_time(
        th,
        s["tokens"],
        s["seqs"],
        s["pairs"],
        s["kv_tokens"],
        _col(rows, "heads"),
        _col(rows, "kv_heads"),
        _col(rows, "head_dim"),
        peak=hw.peak_flops("bf16"),
        bandwidth=hw.memory_bandwidth,
    )
    return out


def predict_decode(th: Sequence[float], rows: pd.DataFrame, hw: HardwareProfile) -> np.ndarray:
    b = _col(rows, "batch")
    out: np.ndarray = K.decode_attention_time(
        th,
        b,
        b * _col(rows, "seq_len"),
        _col(rows, "heads"),
        _col(rows, "kv_heads"),
        _col(rows, "head_dim"),
        bandwidth=hw.memory_bandwidth,
    )
    return out


def predict_all_reduce(th: Sequence[float], rows: pd.DataFrame, hw: HardwareProfile) -> np.ndarray:
    out: np.ndarray = K.all_reduce_time(th, _col(rows, "nbytes"), _col(rows, "gpus"))
    return out


def predict_send_recv(th: Sequence[float], rows: pd.DataFrame, hw: HardwareProfile) -> np.ndarray:
    out: np.ndarray = K.send_recv_time(th, _col(rows, "nbytes"))
    return out


def predict_host(th: Sequence[float], rows: pd.DataFrame, hw: HardwareProfile) -> np.ndarray:
    out: np.ndarray = K.host_time(th, _col(rows, "batch"), _col(rows, "tp"))
    return out


@dataclass(frozen=True)
class Family:
    """How to fit one operator family."""

    names: tuple[str, ...]
    predict: Predict
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    starts: tuple[tuple[float, ...], ...]


FAMILIES: dict[str, Family] = {
    "gemm": Family(
        K.GEMM,
        predict_gemm,
        (0.05, 0.0, 0.0, 0.0, 0.05, 0.0, 0.0, 1.0, 0.0),
        (1.0, 4096.0, 8192.0, 8192.0, 1.0, 16384.0, 100.0, 20.0, 1.0),
        (
            (0.8, 32.0, 64.0, 64.0, 0.8, 64.0, 3.0, 3.0, 0.5),
            (0.7, 128.0, 16.0, 128.0, 0.9, 8.0, 6.0, 2.0, 0.5),
        ),
    ),
    "elementwise": Family(
        K.ELEMENTWISE,
        predict_elementwise,
        (0.0, 0.01, 0.01, 0.01, 0.01, 0.01),
        (50.0, 1.0, 1.0, 1.0, 1.0, 1.0),
        ((3.0, 0.5, 0.5, 0.5, 0.5, 0.5),),
    ),
    "prefill_attention": Family(
        K.PREFILL_ATTENTION,
        predict_prefill,
        (0.05, 0.0, 0.0, 0.0, 0.05, 0.0, 0.0),
        (1.0, 1e5, 1e5, 1000.0, 1.0, 1e5, 200.0),
        ((0.7, 128.0, 100.0, 10.0, 0.8, 1.0, 5.0), (0.9, 32.0, 10.0, 50.0, 0.5, 10.0, 10.0)),
    ),
    "decode_attention": Family(
        K.DECODE_ATTENTION,
        predict_decode,
        (0.05, 0.0, 0.0, 0.0, 0.0),
        (1.0, 1e5, 1e5, 1e5, 200.0),
        ((0.8, 16.0, 100.0, 10.0, 5.0), (0.6, 128.0, 10.0, 100.0, 10.0)),
    ),
    "all_reduce": Family(
        K.ALL_REDUCE, predict_all_reduce, (0.0, 1.0), (1000.0, 5000.0), ((10.0, 100.0),)
    ),
    "send_recv": Family(
        K.SEND_RECV, predict_send_recv, (0.0, 0.1), (1000.0, 5000.0), ((10.0, 50.0),)
    ),
    "host": Family(K.HOST, predict_host, (0.0, 0.0, 0.0), (100.0, 1e4, 100.0), ((1.0, 30.0, 1.0),)),
}


def thin(rows: pd.DataFrame, limit: int = MAX_ROWS) -> pd.DataFrame:
    """At most ``limit`` rows, evenly spaced through the table (deterministic)."""
    if len(rows) <= limit:
        return rows
    idx = np.unique(np.linspace(0, len(rows) - 1, limit).round().astype(int))
    return rows.iloc[idx]


def fit_family(family: str, rows: pd.DataFrame, hw: HardwareProfile) -> tuple[float, ...]:
    """Best-fitting parameters (in ``FAMILIES[family].names`` order) for ``rows``."""
    if rows.empty:
        raise ValueError(f"no {family} rows to fit")
    fam = FAMILIES[family]
    data = thin(rows)
    log_t = np.log(data["time_s"].to_numpy(dtype=float))

    def residuals(th: np.ndarray) -> np.ndarray:
        pred = fam.predict(tuple(th), data, hw)
        out: np.ndarray = np.log(np.maximum(pred, 1e-12)) - log_t
        return out

    best = None
    for start in fam.starts:
        x0 = np.clip(start, fam.lower, fam.upper)
        res = least_squares(
            residuals,
            x0,
            bounds=(fam.lower, fam.upper),
            loss="soft_l1",
            f_scale=LOSS_SCALE,
            x_scale="jac",
        )
        if best is None or res.cost < best.cost:
            best = res
    assert best is not None
    return tuple(significant(float(v)) for v in best.x)


def significant(value: float, digits: int = 5) -> float:
    """``value`` rounded to ``digits`` significant digits (tidy, stable YAML); values within
    1e-9 of zero (a parameter pushed onto its lower bound) become 0."""
    if abs(value) < 1e-9:
        return 0.0
    return float(f"{value:.{digits}g}")


def predict(
    family: str, th: Sequence[float], rows: pd.DataFrame, hw: HardwareProfile
) -> np.ndarray:
    """Predicted seconds for each row."""
    return FAMILIES[family].predict(th, rows, hw)


def attention_formula(
    family: str, th: Sequence[float], hw: HardwareProfile, heads: float, kv: float, hd: float
) -> AttentionFormula:
    """The fitted formula of an attention family for one head configuration, as a function
    of sequences and length (bf16 KV cache, as the tables are measured)."""
    return family_formula(
        family,
        tuple(th),
        heads,
        kv,
        hd,
        peak=hw.peak_flops("bf16"),
        bandwidth=hw.memory_bandwidth,
    )


def predict_with_table(
    family: str,
    th: Sequence[float],
    table: pd.DataFrame,
    rows: pd.DataFrame,
    hw: HardwareProfile,
) -> np.ndarray:
    """Seconds for ``rows`` as a profile with parameters ``th`` and the kernel table ``table``
    (measurements of ``family``, possibly none) predicts them."""
    if table.empty or family not in TABLE_FAMILIES:
        return predict(family, th, rows, hw)
    if family == "elementwise":
        return _elementwise_with_table(th, table, rows, hw)
    if family == "gemm":
        return gemm_table(th, table, hw).predict(*(_col(rows, c) for c in ("m", "n", "k")))
    measured = AttentionTable(table, predict(family, th, table, hw))
    correction = measured.correction(
        rows, lambda h, kv, d: attention_formula(family, th, hw, h, kv, d)
    )
    out: np.ndarray = predict(family, th, rows, hw) * correction
    return out


def _elementwise_with_table(
    th: Sequence[float], table: pd.DataFrame, rows: pd.DataFrame, hw: HardwareProfile
) -> np.ndarray:
    """Elementwise rows priced on each kind's measured curve (the formula where the table has
    no rows of the kind)."""
    out = predict("elementwise", th, rows, hw)
    kinds, table_kinds = elementwise_kind(rows), elementwise_kind(table)
    for kind in np.unique(kinds):
        own = table[table_kinds == kind]
        if own.empty:
            continue
        formula = partial(K.elementwise_time, th, bandwidth=hw.memory_bandwidth, kind=int(kind))
        curve = Curve.of_points(_col(own, "nbytes"), _col(own, "time_s"), formula)
        where = kinds == kind
        out[where] = curve.many(_col(rows[where], "nbytes"))
    return out


def gemm_table(th: Sequence[float], rows: pd.DataFrame, hw: HardwareProfile) -> T.GemmTable:
    """GEMM rows of one data type as a table correcting the formula with ``th``."""
    dtype = str(rows["dtype"].iloc[0])
    elem = 1.0 if dtype == "fp8" else 2.0
    formula = T.formula_for(
        tuple(th),
        peak=hw.peak_flops(dtype),
        bandwidth=hw.memory_bandwidth,
        weight_bytes=elem,
        act_bytes=elem,
        sms=float(sm_count(hw)),
    )
    return T.GemmTable(rows, formula)


def fit_all_reduce(rows: pd.DataFrame, hw: HardwareProfile) -> tuple[AllReduceParams, ...]:
    """One alpha-beta fit per GPU count."""
    out = []
    for gpus in sorted(set(rows["gpus"].to_numpy(dtype=float))):
        group = rows[rows["gpus"] == gpus]
        lat, bus = fit_family("all_reduce", group, hw)
        out.append(AllReduceParams(gpus=int(gpus), latency_us=lat, bus_bandwidth_gbps=bus))
    return tuple(out)


def fit_send_recv(rows: pd.DataFrame, hw: HardwareProfile) -> tuple[SendRecvParams, ...]:
    """One latency-bandwidth fit per scope (``op``: intra-node, inter-node)."""
    out = []
    for scope in sorted(set(rows["op"])):
        lat, gbps = fit_family("send_recv", rows[rows["op"] == scope], hw)
        out.append(SendRecvParams(scope=scope, latency_us=lat, bandwidth_gbps=gbps))
    return tuple(out)


def predict_send_recv_rows(
    fits: Sequence[SendRecvParams], rows: pd.DataFrame, hw: HardwareProfile
) -> np.ndarray:
    """Seconds for send/recv rows of the fitted scopes (NaN elsewhere)."""
    out = np.full(len(rows), np.nan)
    scopes = rows["op"].to_numpy()
    for fit in fits:
        sel = scopes == fit.scope
        out[sel] = predict_send_recv((fit.latency_us, fit.bandwidth_gbps), rows[sel], hw)
    return out


def predict_all_reduce_rows(
    fits: Sequence[AllReduceParams],
    rows: pd.DataFrame,
    hw: HardwareProfile,
    table: pd.DataFrame | None = None,
) -> np.ndarray:
    """Seconds for all-reduce rows on the fitted GPU counts (NaN elsewhere); a count with
    rows in the kernel table ``table`` is priced on their curve."""
    by_gpus = {a.gpus: (a.latency_us, a.bus_bandwidth_gbps) for a in fits}
    out = np.full(len(rows), np.nan)
    gpus = _col(rows, "gpus")
    for g, th in by_gpus.items():
        sel = gpus == g
        out[sel] = predict_all_reduce(th, rows[sel], hw)
        own = table[table["gpus"] == g] if table is not None else None
        if own is not None and len(own) and sel.any():
            formula = partial(K.all_reduce_time, th, gpus=float(g))
            curve = Curve.of_points(_col(own, "nbytes"), _col(own, "time_s"), formula)
            out[sel] = curve.many(_col(rows[sel], "nbytes"))
    return out


def params(
    family: str, th: Sequence[float], source: str, hw: HardwareProfile | None = None
) -> BaseModel:
    """The pydantic parameter model of a family from fitted values (GEMM: with ``hw``'s
    multiprocessor count, which its fit used)."""
    cls = {
        "gemm": GemmParams,
        "elementwise": ElementwiseParams,
        "prefill_attention": PrefillAttentionParams,
        "decode_attention": DecodeAttentionParams,
        "host": HostParams,
    }[family]
    values = dict(zip(FAMILIES[family].names, th, strict=True))
    if family == "gemm" and hw is not None:
        values["sms"] = sm_count(hw)
    model: BaseModel = cls(source=source, **values)
    return model
