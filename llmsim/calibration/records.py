"""The tidy tables every reader produces and every fitter consumes.

Operator measurements: one row per timed kernel, with ``family`` (``gemm``, ``elementwise``,
``prefill_attention``, ``decode_attention``, ``all_reduce``, ``host``), where it came from
(``source``, ``model``, ``op``) and the shape columns its family uses; unused columns are NaN.
Sizes are per GPU; ``time_s`` is seconds.

Step measurements: one row per timed engine step (a batch's prefill tokens, decode requests and
context lengths), for checking or fitting whole-step predictions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FAMILIES = (
    "gemm",
    "elementwise",
    "prefill_attention",
    "decode_attention",
    "all_reduce",
    "send_recv",
    "host",
)

OPERATOR_COLUMNS = (
    "family",
    "source",
    "model",
    "op",
    "dtype",
    "m",
    "n",
    "k",
    "nbytes",
    "batch",
    "seq_len",
    "past",
    "heads",
    "kv_heads",
    "head_dim",
    "gpus",
    "tp",
    "time_s",
)
_TEXT = ("family", "source", "model", "op", "dtype")

STEP_COLUMNS = (
    "source",
    "model",
    "hardware",
    "kind",
    "tp",
    "prefill_tokens",
    "prefill_seqs",
    "prefill_cached",
    "decode_seqs",
    "decode_context",
    "time_s",
)


def operator_frame(**columns: object) -> pd.DataFrame:
    """An operator table from column values (scalars broadcast); missing columns are NaN."""
    lengths = [len(v) for v in columns.values() if isinstance(v, (pd.Series, np.ndarray, list))]
    n = max(lengths) if lengths else 1
    data: dict[str, object] = {}
    for col in OPERATOR_COLUMNS:
        value = columns.get(col)
        if value is None:
            value = "" if col in _TEXT else np.nan
        if isinstance(value, pd.Series):
            value = value.to_numpy()
        data[col] = value
    unknown = set(columns) - set(OPERATOR_COLUMNS)
    if unknown:
        raise KeyError(f"unknown operator columns: {sorted(unknown)}")
    frame = pd.DataFrame(data, index=pd.RangeIndex(n))
    for col in OPERATOR_COLUMNS:
        if col not in _TEXT:
            frame[col] = frame[col].astype(float)
        else:
            frame[col] = frame[col].astype(str)
    return frame


def concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Stack operator tables (an empty list gives an empty table with every column)."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return operator_frame().iloc[0:0]
    return pd.concat(frames, ignore_index=True)


def step_frame(**columns: object) -> pd.DataFrame:
    """A step table from column values; ``prefill_cached`` defaults to 0."""
    data = {c: columns.get(c) for c in STEP_COLUMNS}
    if data["prefill_cached"] is None:
        data["prefill_cached"] = 0.0
    for c in ("source", "model", "hardware", "kind"):
        if data[c] is None:
            data[c] = ""
    return pd.DataFrame(data)
