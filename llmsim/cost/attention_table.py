"""Measured attention times that correct the fitted prefill and decode attention formulas.

The formulas of :mod:`llmsim.cost.kernels` follow how attention time grows with sequences,
length and heads, but not the kernel's own choices (work partitioning, split-KV, tile sizes),
which move single shapes by 10-40 %. With a kernel table (:mod:`llmsim.cost.kernel_table`), a
:class:`Surface` gives, for one head configuration (heads, KV heads and head size per GPU), the
time of a batch of ``b`` sequences of length ``L`` (prefill: new tokens per prompt; decode:
cached tokens per sequence, the new one included):

* on the grid of the table's batch sizes and lengths: the formula's time times the
  measured/formula ratio of the nearest measured shapes
  (:class:`~llmsim.cost.kernel_table.Neighbours` in log2 batch, length, heads, KV heads and
  head size; a step in the head configuration counts ``HEAD_SCALE`` times as far, so
  neighbours share it where the table has it);
* made non-decreasing in ``L`` for every ``b`` (isotonic regression of the logarithms), then
  in ``b`` for every ``L`` (a running maximum, which keeps the first property);
* between grid points: bilinear in (log b, log L) on log time, so non-decreasing in each;
* beyond the largest batch or length: the time at the nearest grid point times the formula's
  growth from there; below the shortest length: the time there times the formula's shrinkage
  at the smallest batch (the same factor for every batch, so time still grows with the
  batch); below the smallest batch: the time there. Predictions stay monotone and finite
  for any batch and length.

A step whose sequences differ in length, or (prefill) have cached tokens already, is priced by
the formula for its real shape times the correction (surface / formula) of the uniform batch
with the same sequences and tokens.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any

import numpy as np
import pandas as pd

from llmsim.cost import kernels as K
from llmsim.cost.kernel_table import Neighbours, read_kernel_table

HEAD_SCALE = 3.0
HEADS = ("heads", "kv_heads", "head_dim")

# Seconds of the fitted formula for ``b`` sequences of length ``L`` (floats or arrays), for
# one head configuration.
Formula = Callable[[Any, Any], Any]


def family_formula(
    family: str,
    th: tuple[float, ...],
    heads: Any,
    kv_heads: Any,
    head_dim: Any,
    *,
    peak: float,
    bandwidth: float,
    kv_bytes: float = 2.0,
) -> Formula:
    """The fitted formula of ``family`` (``prefill_attention``: fresh prompts;
    ``decode_attention``) for a head configuration, as a function of sequences and length."""
    if family == "prefill_attention":
        return partial(
            K.prefill_attention_uniform,
            th,
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            peak=peak,
            bandwidth=bandwidth,
            elem_bytes=kv_bytes,
        )
    return lambda b, length: K.decode_attention_time(
        th, b, b * length, heads, kv_heads, head_dim, bandwidth=bandwidth, kv_bytes=kv_bytes
    )


def _features(b: Any, length: Any, heads: Any, kv_heads: Any, head_dim: Any) -> np.ndarray:
    cols = [np.log2(b), np.log2(length)]
    cols += [
        HEAD_SCALE * np.log2(np.broadcast_to(x, np.shape(b))) for x in (heads, kv_heads, head_dim)
    ]
    return np.column_stack(cols)


class SurfaceRow:
    """A :class:`Surface` at one batch size: time as a function of the length alone (the
    decode hot path: one call per simulated step)."""

    __slots__ = (
        "_b",
        "_b0",
        "_bc",
        "_formula",
        "_hi",
        "_inside",
        "_l",
        "_last",
        "_lo",
        "_lt",
        "_slope",
    )

    def __init__(self, surface: Surface, b: float) -> None:
        self._b0 = surface.b_range[0]
        self._b = max(b, self._b0)
        self._bc = min(self._b, surface.b_range[1])
        self._lo, self._hi = surface.l_range
        grid, lt = surface.log_l, surface.log_times_at(self._bc)
        if len(grid) == 1:  # one measured length: flat between it and itself
            grid, lt = [grid[0], grid[0] + 1.0], [lt[0], lt[0]]
        self._l, self._lt = grid, lt
        self._slope = [(lt[i + 1] - lt[i]) / (grid[i + 1] - grid[i]) for i in range(len(lt) - 1)]
        self._last = len(grid) - 2
        self._inside = self._b == self._bc
        self._formula = surface.formula

    def _log_time(self, length: float) -> float:
        x = math.log(length)
        i = min(bisect_right(self._l, x) - 1, self._last)
        return self._lt[i] + self._slope[i] * (x - self._l[i])

    def __call__(self, length: float) -> float:
        if self._inside and self._lo <= length <= self._hi:  # the hot path, inlined
            x = math.log(length)
            i = min(bisect_right(self._l, x) - 1, self._last)
            return math.exp(self._lt[i] + self._slope[i] * (x - self._l[i]))
        lc = min(max(length, self._lo), self._hi)
        t = math.exp(self._log_time(lc))
        f = self._formula
        if length > lc or not self._inside:
            t *= float(f(self._b, max(length, lc))) / float(f(self._bc, lc))
        if length < lc:
            t *= float(f(self._b0, length)) / float(f(self._b0, lc))
        return t


class Surface:
    """Measured-and-corrected attention time of one head configuration, by batch and length."""

    def __init__(self, b: np.ndarray, length: np.ndarray, times: np.ndarray, formula: Formula):
        from scipy.optimize import isotonic_regression  # scipy only for calibrated runs

        log_t = np.log(times)
        log_t = np.vstack([isotonic_regression(row).x for row in log_t])
        log_t = np.maximum.accumulate(log_t, axis=0)
        self.formula = formula
        self.log_b = [math.log(x) for x in b]
        self.log_l = [math.log(x) for x in length]
        self.b_range = (float(b[0]), float(b[-1]))
        self.l_range = (float(length[0]), float(length[-1]))
        self._log_t = log_t

    def log_times_at(self, b: float) -> list[float]:
        """Log times over the length grid at batch ``b`` (inside the batch range): linear in
        log b between the two nearest measured batch sizes."""
        lt = self._log_t
        if len(self.log_b) == 1:
            return [float(x) for x in lt[0]]
        x = math.log(b)
        i = min(max(bisect_right(self.log_b, x) - 1, 0), len(self.log_b) - 2)
        w = (x - self.log_b[i]) / (self.log_b[i + 1] - self.log_b[i])
        return [float(v) for v in (1.0 - w) * lt[i] + w * lt[i + 1]]

    def row(self, b: float) -> SurfaceRow:
        return SurfaceRow(self, b)

    def __call__(self, b: float, length: float) -> float:
        return self.row(b)(length)

    def many(self, b: np.ndarray, length: np.ndarray) -> np.ndarray:
        """:meth:`__call__` for arrays (one :class:`SurfaceRow` per distinct batch size)."""
        rows: dict[float, SurfaceRow] = {}
        out = np.empty(len(b))
        for i, (bv, lv) in enumerate(zip(b, length, strict=True)):
            row = rows.get(bv)
            if row is None:
                row = rows[bv] = self.row(float(bv))
            out[i] = row(float(lv))
        return out


class AttentionTable:
    """Measured attention kernels of one family and their ratios to the fitted formula.

    ``rows`` has ``batch, seq_len, heads, kv_heads, head_dim, time_s``; ``predicted`` the
    formula's seconds for each row."""

    def __init__(self, rows: pd.DataFrame, predicted: np.ndarray) -> None:
        shape = [rows[c].to_numpy(dtype=float) for c in ("batch", "seq_len", *HEADS)]
        measured = rows["time_s"].to_numpy(dtype=float)
        self._ratios = Neighbours(_features(*shape), np.log(measured / predicted))
        self._b = np.unique(shape[0])
        self._l = np.unique(shape[1])

    def surface(self, heads: float, kv_heads: float, head_dim: float, formula: Formula) -> Surface:
        """The corrected time of a head configuration, priced by ``formula`` off the grid."""
        bb, ll = np.meshgrid(self._b, self._l, indexing="ij")
        b, length = bb.ravel(), ll.ravel()
        ratio = self._ratios.at(_features(b, length, heads, kv_heads, head_dim))
        times = (formula(b, length) * np.exp(ratio)).reshape(bb.shape)
        return Surface(self._b, self._l, times, formula)

    def correction(
        self, rows: pd.DataFrame, formula_for: Callable[[float, float, float], Formula]
    ) -> np.ndarray:
        """Surface / formula of each row's uniform batch (``batch`` x ``seq_len``), one surface
        per head configuration; ``formula_for(heads, kv_heads, head_dim)``."""
        out = np.empty(len(rows))
        b = rows["batch"].to_numpy(dtype=float)
        length = rows["seq_len"].to_numpy(dtype=float)
        heads = rows.loc[:, list(HEADS)].to_numpy(dtype=float)
        unique, which = np.unique(heads, axis=0, return_inverse=True)
        for i, (h, kv, d) in enumerate(unique):
            where = which.ravel() == i
            formula = formula_for(float(h), float(kv), float(d))
            surface = self.surface(float(h), float(kv), float(d), formula)
            out[where] = surface.many(b[where], length[where]) / formula(b[where], length[where])
        return out


@lru_cache(maxsize=32)
def measured(
    path: str, family: str, th: tuple[float, ...], peak: float, bandwidth: float
) -> AttentionTable | None:
    """The table of ``path``'s ``family`` rows against the formula with ``th`` (cached: every
    replica of a cluster shares one), or None when the file has no rows of that family."""
    rows = read_kernel_table(path)
    rows = rows[rows["family"] == family]
    if rows.empty:
        return None
    heads = [rows[c].to_numpy(dtype=float) for c in HEADS]
    formula = family_formula(family, th, *heads, peak=peak, bandwidth=bandwidth)
    b, length = (rows[c].to_numpy(dtype=float) for c in ("batch", "seq_len"))
    return AttentionTable(rows, formula(b, length))
