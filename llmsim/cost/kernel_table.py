"""Measured kernel times that travel with a calibrated profile, and how a measurement's
correction carries over to shapes that were not measured.

A calibrated profile may name a Parquet file next to it (``calibration.kernel_table``) with the
kernel measurements it was fitted on, one row per timed kernel, in the columns of
:data:`COLUMNS` plus ``time_ms`` (the llmsim operator format; unused columns empty):

* ``gemm``: ``dtype``, ``m``, ``n``, ``k``;
* ``prefill_attention``: ``batch`` prompts of ``seq_len`` tokens, ``heads``, ``kv_heads``,
  ``head_dim``;
* ``decode_attention``: ``batch`` sequences of ``seq_len`` cached tokens (the new one included),
  ``heads``, ``kv_heads``, ``head_dim``;
* ``elementwise``: ``op`` (the kind: norm, rope, activation, add, embedding, or an operator
  name of :data:`llmsim.cost.kernels.ELEMENTWISE_OPS`) streaming ``nbytes``;
* ``all_reduce``: ``nbytes`` over ``gpus`` GPUs.

The fitted formulas of :mod:`llmsim.cost.kernels` then price a shape, and the measurements
correct them: :mod:`llmsim.cost.gemm_table` and :mod:`llmsim.cost.attention_table` carry the
correction of a GEMM or attention shape over from its nearest measured shapes
(:class:`Neighbours`), so a model nobody profiled gets its neighbours' corrections; an
elementwise kernel of one kind and an all-reduce on one GPU count are priced on a
:class:`Curve` through the measurements by size.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from llmsim.cost import kernels as K
from llmsim.errors import ConfigError

FAMILIES = ("gemm", "prefill_attention", "decode_attention", "elementwise", "all_reduce")
SHAPE = {
    "gemm": ("m", "n", "k"),
    "prefill_attention": ("batch", "seq_len", "heads", "kv_heads", "head_dim"),
    "decode_attention": ("batch", "seq_len", "heads", "kv_heads", "head_dim"),
    "elementwise": ("nbytes",),
    "all_reduce": ("nbytes", "gpus"),
}
COLUMNS = (
    "family",
    "dtype",
    "op",
    "m",
    "n",
    "k",
    "batch",
    "seq_len",
    "heads",
    "kv_heads",
    "head_dim",
    "nbytes",
    "gpus",
)

NEIGHBOURS = 4
DISTANCE_FLOOR = 0.25  # added to each (log2) distance before inverting it into a weight


class Curve:
    """Measured time as a function of one size ``x`` (GEMM rows, message or tensor bytes).

    The measured points are made non-decreasing (isotonic regression of their logarithms: a
    dip and the spike before it are averaged) and joined linearly. Beyond the largest ``x``
    the time is the fitted ``formula`` times its ratio at that point, never below the point;
    below the smallest, likewise and never above it. So time never falls as ``x`` grows, and
    stays finite where nothing was measured.
    """

    __slots__ = ("_formula", "_hi", "_lo", "_t", "_x")

    def __init__(self, x: np.ndarray, t: np.ndarray, formula: Callable[[Any], Any]) -> None:
        from scipy.optimize import isotonic_regression  # scipy only for calibrated runs

        self._formula = formula
        self._x = [float(v) for v in x]
        self._t = [float(v) for v in np.exp(isotonic_regression(np.log(t)).x)]
        f_lo, f_hi = (float(v) for v in formula(np.array([x[0], x[-1]], dtype=float)))
        self._lo = self._t[0] / f_lo
        self._hi = self._t[-1] / f_hi

    def __call__(self, x: float) -> float:
        xs, ts = self._x, self._t
        if x > xs[-1]:
            return max(ts[-1], self._hi * float(self._formula(np.array([x]))[0]))
        if x < xs[0]:
            return min(ts[0], self._lo * float(self._formula(np.array([x]))[0]))
        i = min(bisect_right(xs, x), len(xs) - 1)
        if i == 0:  # one measured point
            return ts[0]
        x0, x1, t0, t1 = xs[i - 1], xs[i], ts[i - 1], ts[i]
        return t0 + (t1 - t0) * (x - x0) / (x1 - x0)

    def many(self, x: np.ndarray) -> np.ndarray:
        """:meth:`__call__` for an array."""
        xs, ts = np.asarray(self._x), np.asarray(self._t)
        x = np.asarray(x, dtype=float)
        out = np.interp(x, xs, ts)
        form = self._formula(x)
        out = np.where(x > xs[-1], np.maximum(ts[-1], self._hi * form), out)
        out = np.where(x < xs[0], np.minimum(ts[0], self._lo * form), out)
        result: np.ndarray = out
        return result

    @classmethod
    def of_points(cls, x: np.ndarray, t: np.ndarray, formula: Callable[[Any], Any]) -> Curve:
        """A curve through measurements (the median of repeated ``x``)."""
        points = pd.Series(t).groupby(np.asarray(x, dtype=float)).median()
        return cls(points.index.to_numpy(dtype=float), points.to_numpy(dtype=float), formula)


class Neighbours:
    """Log measured/formula ratios of measured shapes, looked up by nearness.

    ``features`` are the shapes' log2 sizes, each column scaled by how far apart a step in it
    counts. A query gets the inverse-distance weighted mean of the ``NEIGHBOURS`` nearest
    ratios (weights ``1 / (distance + DISTANCE_FLOOR)``), or exactly the ratio of a shape that
    was measured itself.
    """

    def __init__(self, features: np.ndarray, log_ratio: np.ndarray) -> None:
        from scipy.spatial import cKDTree  # scipy only for calibrated runs

        self._tree = cKDTree(features)
        self._log_ratio = log_ratio

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
    keys = ["family", "dtype", "op", *SHAPE["gemm"], *SHAPE["decode_attention"], "gpus", "nbytes"]
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


@lru_cache(maxsize=64)
def size_points(
    path: str, family: str, kind: int | None = None, gpus: int | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """(sizes, median seconds) of ``path``'s elementwise rows of one kind or all-reduce rows
    on one GPU count; None when there are none."""
    rows = read_kernel_table(path)
    rows = rows[rows["family"] == family]
    if kind is not None:
        rows = rows[elementwise_kinds(rows["op"]) == kind]
    if gpus is not None:
        rows = rows[rows["gpus"] == gpus]
    if rows.empty:
        return None
    points = rows.groupby("nbytes")["time_s"].median()
    return points.index.to_numpy(dtype=float), points.to_numpy(dtype=float)


def elementwise_kinds(ops: pd.Series) -> np.ndarray:
    """Kind index (into :data:`llmsim.cost.kernels.ELEMENTWISE_KINDS`) of operator names;
    unknown operators count as norms."""
    out: np.ndarray = ops.map(K.ELEMENTWISE_OPS).fillna(0).to_numpy(dtype=int)
    return out
