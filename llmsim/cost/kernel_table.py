"""Measured kernel times that travel with a calibrated profile, and how a measurement's
correction carries over to shapes that were not measured.

A calibrated profile may name a Parquet file next to it (``calibration.kernel_table``) with the
GEMM, prefill-attention and decode-attention measurements it was fitted on, one row per timed
kernel, in the columns of :data:`COLUMNS` (the llmsim operator format; unused columns empty):

* ``gemm``: ``dtype``, ``m``, ``n``, ``k``;
* ``prefill_attention``: ``batch`` prompts of ``seq_len`` tokens, ``heads``, ``kv_heads``,
  ``head_dim``;
* ``decode_attention``: ``batch`` sequences of ``seq_len`` cached tokens (the new one included),
  ``heads``, ``kv_heads``, ``head_dim``.

The fitted formulas of :mod:`llmsim.cost.kernels` then price a shape, and the measurements
correct them: :mod:`llmsim.cost.gemm_table` and :mod:`llmsim.cost.attention_table`. The
correction of a shape is the measured/formula ratio of its nearest measured shapes
(:class:`Neighbours`), so a model nobody profiled gets its neighbours' corrections.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from llmsim.errors import ConfigError

FAMILIES = ("gemm", "prefill_attention", "decode_attention")
SHAPE = {
    "gemm": ("m", "n", "k"),
    "prefill_attention": ("batch", "seq_len", "heads", "kv_heads", "head_dim"),
    "decode_attention": ("batch", "seq_len", "heads", "kv_heads", "head_dim"),
}
COLUMNS = ("family", "dtype", "m", "n", "k", "batch", "seq_len", "heads", "kv_heads", "head_dim")

NEIGHBOURS = 4
DISTANCE_FLOOR = 0.25  # added to each (log2) distance before inverting it into a weight


class Neighbours:
    """Log measured/formula ratios of measured shapes, looked up by nearness.

    ``features`` are the shapes' log2 sizes, each column scaled by how far apart a step in it
    counts. A query gets the inverse-distance weighted mean of the ``NEIGHBOURS`` nearest
    ratios (weights ``1 / (distance + DISTANCE_FLOOR)``), or exactly the ratio of a shape that
    was measured itself.
    """

    def __init__(self, features: np.ndarray, log_ratio: np.ndarray) -> None:
        self._tree = cKDTree(features)
        self._log_ratio = log_ratio

    def __len__(self) -> int:
        return len(self._log_ratio)

    def at(self, features: np.ndarray) -> np.ndarray:
        count = min(NEIGHBOURS, len(self._log_ratio))
        dist, idx = self._tree.query(features, k=count)
        dist, idx = dist.reshape(len(features), count), idx.reshape(len(features), count)
        weight = 1.0 / (dist + DISTANCE_FLOOR)
        ratio = (self._log_ratio[idx] * weight).sum(axis=1) / weight.sum(axis=1)
        out: np.ndarray = np.where(dist[:, 0] < 1e-9, self._log_ratio[idx[:, 0]], ratio)
        return out


def to_table_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Measurement records of the table's families in the file's columns (``time_ms``)."""
    sub = rows[rows["family"].isin(FAMILIES)]
    out = sub.loc[:, list(COLUMNS)].copy()
    out["time_ms"] = sub["time_s"].to_numpy(dtype=float) * 1e3
    keys = ["family", "dtype", *SHAPE["gemm"], *SHAPE["decode_attention"]]
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def _bad(path: str, message: str) -> ConfigError:
    return ConfigError(message, source=path, field="calibration.kernel_table")


@lru_cache(maxsize=16)
def read_kernel_table(path: str) -> pd.DataFrame:
    """A kernel table file as measurement records with ``time_s`` (cached by path)."""
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise _bad(path, f"cannot read it ({exc}); expected a Parquet file") from None
    missing = [c for c in (*COLUMNS, "time_ms") if c not in frame.columns]
    if missing:
        raise _bad(path, f"missing columns {', '.join(missing)}")
    unknown = sorted(set(frame["family"]) - set(FAMILIES))
    if unknown:
        raise _bad(path, f"family '{unknown[0]}' unknown; valid: {', '.join(FAMILIES)}")
    frame = frame.assign(time_s=frame["time_ms"].to_numpy(dtype=float) * 1e-3)
    for family, cols in SHAPE.items():
        sub = frame[frame["family"] == family]
        values = sub[[*cols, "time_s"]].to_numpy(dtype=float)
        bad = ~(values > 0).all(axis=1)
        if bad.any():
            row = int(sub.index[np.flatnonzero(bad)[0]])
            need = ", ".join((*cols, "time_ms"))
            raise _bad(path, f"row {row} ({family}): {need} must be positive")
    return frame
