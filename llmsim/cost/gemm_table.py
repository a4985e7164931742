"""Measured GEMM times that correct the fitted GEMM formula shape by shape.

The formula of :func:`llmsim.cost.kernels.gemm_time` follows how efficiency grows with the
shape, but not which kernel, tile shape and split-K the GEMM library picks for each shape, and
those choices move single shapes by 10-20 %. A calibrated profile can therefore carry the GEMM
measurements it was fitted on (:mod:`llmsim.cost.kernel_table`). For a weight of ``n x k`` the
model then prices ``m`` rows as follows:

* at every row count ``m_i`` in the table: the formula's time times the measured/formula ratio
  of the nearest measured shapes (:class:`~llmsim.cost.kernel_table.Neighbours` in log2 m, n
  and k, a step in m counted ``M_SCALE`` times as far as a step in n or k, so neighbours share
  the row count); a shape that was measured itself gets exactly its own ratio;
* those times made non-decreasing in ``m`` (isotonic regression of their logarithms: a dip
  and the spike before it are averaged), so more rows never take less time;
* between two table row counts: linear in ``m``;
* beyond the largest row count: the formula scaled by the ratio there, never below the last
  point; below the smallest: likewise, never above the first point. Predictions stay finite
  and monotone where nothing was measured, and a model nobody profiled gets its shapes'
  neighbours' corrections.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any

import numpy as np
import pandas as pd

from llmsim.cost import kernels as K
from llmsim.cost.kernel_table import Curve, Neighbours, read_kernel_table

M_SCALE = 3.0

# Seconds of the fitted formula for row counts ``m`` of an ``n x k`` weight (arrays or floats).
Formula = Callable[[Any, Any, Any], Any]


def _features(m: np.ndarray, n: np.ndarray, k: np.ndarray) -> np.ndarray:
    return np.column_stack([M_SCALE * np.log2(m), np.log2(n), np.log2(k)])


def formula_for(
    th: tuple[float, ...],
    *,
    peak: float,
    bandwidth: float,
    weight_bytes: float,
    act_bytes: float,
    sms: float,
) -> Formula:
    """The fitted GEMM formula with parameters ``th`` as a function of ``(m, n, k)``."""
    return partial(
        K.gemm_time,
        th,
        peak=peak,
        bandwidth=bandwidth,
        weight_bytes=weight_bytes,
        act_bytes=act_bytes,
        sms=sms,
    )


class GemmTable:
    """Measured GEMMs of one data type (``m, n, k, time_s``) and the formula they correct.

    ``formula`` is the one the measurements are compared with; :meth:`curve` may apply the
    resulting corrections to another one (weights of a different width than measured).
    """

    def __init__(self, rows: pd.DataFrame, formula: Formula) -> None:
        m, n, k = (rows[c].to_numpy(dtype=float) for c in ("m", "n", "k"))
        measured = rows["time_s"].to_numpy(dtype=float)
        self._formula = formula
        self._ratios = Neighbours(_features(m, n, k), np.log(measured / formula(m, n, k)))
        self._m = np.unique(m)

    def curve(self, n: float, k: float, formula: Formula | None = None) -> Curve:
        """The corrected time of an ``n x k`` weight, by row count."""
        f = formula or self._formula
        m = self._m
        nn, kk = np.full_like(m, float(n)), np.full_like(m, float(k))
        ratio = self._ratios.at(_features(m, nn, kk))
        return Curve(m, f(m, nn, kk) * np.exp(ratio), lambda rows: f(rows, float(n), float(k)))

    def predict(self, m: np.ndarray, n: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Corrected seconds of many GEMMs (one curve per distinct weight shape)."""
        rows = np.asarray(m, dtype=float)
        shapes = np.column_stack([n, k]).astype(float)
        unique, which = np.unique(shapes, axis=0, return_inverse=True)
        out = np.empty(len(rows))
        for i, (nv, kv) in enumerate(unique):
            where = which.ravel() == i
            out[where] = self.curve(float(nv), float(kv)).many(rows[where])
        return out


@lru_cache(maxsize=32)
def measured(
    path: str, dtype: str, th: tuple[float, ...], peak: float, bandwidth: float, sms: float
) -> GemmTable | None:
    """The table of ``path``'s ``dtype`` rows against the formula with ``th`` (cached: every
    replica of a cluster shares one), or None when the file has no rows of that type."""
    rows = read_kernel_table(path)
    rows = rows[(rows["family"] == "gemm") & (rows["dtype"] == dtype)]
    if rows.empty:
        return None
    elem = 1.0 if dtype == "fp8" else 2.0
    formula = formula_for(
        th, peak=peak, bandwidth=bandwidth, weight_bytes=elem, act_bytes=elem, sms=sms
    )
    return GemmTable(rows, formula)
