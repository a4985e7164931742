"""Held-out prediction error: fit a family without some rows, predict exactly those rows.

Splits:

* leave-one-model-out, for tables measured on several models (Vidur's operator and host
  tables, a user's table with a ``model`` column): fit on the other models' rows (and every
  other source), predict every row of the held-out model; pooled over models;
* held-out shapes, for grids (aiconfigurator's GEMM and attention tables, a user's table
  without models): every fourth distinct shape (GEMM: its (n, k) weight; attention: its
  heads, KV heads, head size and length; collectives: message size and GPU count) is held out
  together with all its rows; attention also holds out every fourth head configuration with
  all its lengths and batches;
* another source, for tables used only as a check (Vidur's A100 attention table): predicted by
  the fit on the other tables.

GEMM and attention predictions are made as the calibrated profile makes them: the formula
fitted on the training rows, corrected by the training rows of the profile's kernel-table source
(:mod:`llmsim.cost.kernel_table`); rows of another source are labelled with that table's
source.

Errors are absolute percentage errors, |predicted / measured - 1| x 100, summarised by median
and 90th percentile.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel

from llmsim.calibration import fit as F
from llmsim.calibration.records import operator_frame
from llmsim.cost import kernels as K
from llmsim.cost.kernel_table import FAMILIES as TABLE_FAMILIES
from llmsim.cost.kernel_table import read_kernel_table
from llmsim.errors import ConfigError
from llmsim.hardware import HardwareProfile
from llmsim.hardware_calibration import FidelityRow

HOLDOUT_EVERY = 4
SHAPE_KEYS = {
    "gemm": ("dtype", "n", "k"),
    "elementwise": ("op", "nbytes"),
    "prefill_attention": ("heads", "kv_heads", "head_dim", "seq_len"),
    "decode_attention": ("heads", "kv_heads", "head_dim", "seq_len"),
    "all_reduce": ("gpus", "nbytes"),
    "send_recv": ("op", "nbytes"),
    "host": ("batch", "tp"),
}
# Attention is also held out by whole head configuration (every length and batch of it): the
# harder case of a model whose heads nobody measured.
HEAD_CONFIGURATIONS = {
    "prefill_attention": ("heads", "kv_heads", "head_dim"),
    "decode_attention": ("heads", "kv_heads", "head_dim"),
}


def ape(pred: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Absolute percentage errors."""
    out: np.ndarray = np.abs(pred / measured - 1.0) * 100.0
    return out


def summary(
    family: str, data: str, holdout: str, errors: Sequence[np.ndarray]
) -> FidelityRow | None:
    errs = np.concatenate(errors) if errors else np.array([])
    errs = errs[np.isfinite(errs)]
    if errs.size == 0:
        return None
    return FidelityRow(
        family=family,
        data=data,
        holdout=holdout,
        points=int(errs.size),
        median_ape=F.significant(float(np.median(errs)), 3),
        p90_ape=F.significant(float(np.percentile(errs, 90)), 3),
    )


def fit_and_predict(
    family: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    hw: HardwareProfile,
    table_source: str = "",
) -> np.ndarray:
    """Seconds predicted for ``test`` by a fit on ``train``; with ``table_source``, as a
    profile whose kernel table holds that source's training rows predicts them."""
    table = train[train["source"] == table_source]
    if family == "send_recv":
        return F.predict_send_recv_rows(F.fit_send_recv(train, hw), test, hw)
    if family == "all_reduce":
        return F.predict_all_reduce_rows(F.fit_all_reduce(train, hw), test, hw, table)
    th = F.fit_family(family, train, hw)
    return F.predict_with_table(family, th, table, test, hw)


def model_splits(rows: pd.DataFrame, source: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train, test) masks holding out one model of ``source`` at a time."""
    own = (rows["source"] == source).to_numpy()
    for model in sorted(set(rows.loc[own, "model"])):
        test = own & (rows["model"] == model).to_numpy()
        yield ~test, test


def shape_splits(
    rows: pd.DataFrame, source: str, family: str, keys_: Sequence[str] | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One (train, test) split holding out every fourth distinct shape of ``source`` (its
    ``keys_``, by default the family's :data:`SHAPE_KEYS`)."""
    own = (rows["source"] == source).to_numpy()
    keys = list(keys_ or SHAPE_KEYS[family])
    shapes = rows.loc[own, keys].drop_duplicates().sort_values(keys)
    held = shapes.iloc[1::HOLDOUT_EVERY]
    marker = rows[keys].merge(held.assign(_held=True), on=keys, how="left")["_held"]
    test = own & marker.fillna(False).to_numpy(dtype=bool)
    yield ~test, test


GEMM_REGIMES = ("m <= 16", "m 17-256", "m 257-2048", "m > 2048")
BATCH_REGIMES = ("batch <= 4", "batch 5-64", "batch > 64")
LENGTH_REGIMES = ("length <= 1K", "length 1K-16K", "length > 16K")
BYTES_REGIMES = ("<= 64 KiB", "64 KiB-4 MiB", "> 4 MiB")
REGIMES = (
    *GEMM_REGIMES,
    *(f"{b}, {n}" for b in BATCH_REGIMES for n in LENGTH_REGIMES),
    *BYTES_REGIMES,
    *BATCH_REGIMES,
)


def size_regime(family: str, rows: pd.DataFrame) -> pd.Series:
    """A coarse size label for each row, for error by regime (small batches, long contexts,
    small messages)."""

    def cut(col: str, edges: Sequence[float], names: Sequence[str]) -> pd.Series:
        bins = [-np.inf, *edges, np.inf]
        return pd.cut(rows[col].astype(float), bins=bins, labels=list(names)).astype(str)

    if family == "gemm":
        return cut("m", (16, 256, 2048), GEMM_REGIMES)
    if family in ("prefill_attention", "decode_attention"):
        batch = cut("batch", (4, 64), BATCH_REGIMES)
        return batch + ", " + cut("seq_len", (1024, 16384), LENGTH_REGIMES)
    if family in ("elementwise", "all_reduce", "send_recv"):
        return cut("nbytes", (2**16, 2**22), BYTES_REGIMES)
    return cut("batch", (4, 64), BATCH_REGIMES)


def family_errors(
    family: str,
    rows: pd.DataFrame,
    hw: HardwareProfile,
    table_source: str = "",
    name: str = "",
    detail: list[pd.DataFrame] | None = None,
) -> list[FidelityRow]:
    """Held-out error of one family (reported as ``name``, default the family), per source in
    its rows (GEMMs of one data type: corrected by ``table_source``'s training rows, as the
    calibrated profile is). With ``detail``, each held-out row's error and size regime is
    appended to it."""
    out: list[FidelityRow] = []
    for source in sorted(set(rows["source"])):
        own = rows[rows["source"] == source]
        models = set(own["model"]) - {""}
        if len(models) >= 2:
            plans = [(model_splits(rows, source), "leave-one-model-out")]
        else:
            plans = [(shape_splits(rows, source, family), f"1 in {HOLDOUT_EVERY} shapes")]
            if family in HEAD_CONFIGURATIONS:
                whole = shape_splits(rows, source, family, HEAD_CONFIGURATIONS[family])
                plans.append((whole, f"1 in {HOLDOUT_EVERY} head configurations"))
        for splits, label in plans:
            if family in TABLE_FAMILIES and table_source and source != table_source:
                label += f", {table_source} kernel table"
            errors = []
            for train, test in splits:
                if not test.any() or not train.any():
                    continue
                if family == "all_reduce":
                    # Every GPU count needs training rows of its own.
                    counts = set(rows.loc[test, "gpus"]) - set(rows.loc[train, "gpus"])
                    if counts:
                        continue
                pred = fit_and_predict(family, rows[train], rows[test], hw, table_source)
                errors.append(ape(pred, rows.loc[test, "time_s"].to_numpy(dtype=float)))
                if detail is not None:
                    held = rows[test]
                    detail.append(
                        pd.DataFrame(
                            {
                                "family": name or family,
                                "data": source,
                                "holdout": label,
                                "regime": size_regime(family, held).to_numpy(),
                                "measured_s": held["time_s"].to_numpy(dtype=float),
                                "predicted_s": pred,
                                "ape": errors[-1],
                            }
                        )
                    )
            row = summary(name or family, source, label, errors)
            if row is not None:
                out.append(row)
    return out


def check_errors(
    family: str,
    th: Sequence[float],
    rows: pd.DataFrame,
    hw: HardwareProfile,
    table: pd.DataFrame | None = None,
) -> FidelityRow | None:
    """Error on a table that was not fitted at all (predicted as a profile with the kernel
    table ``table`` predicts it)."""
    table = rows.iloc[0:0] if table is None else table
    pred = F.predict_with_table(family, th, table, rows, hw)
    source = str(rows["source"].iloc[0]) if len(rows) else ""
    return summary(
        family,
        source,
        "other source (not fitted)",
        [ape(pred, rows["time_s"].to_numpy(dtype=float))],
    )


def profile_errors(hw: HardwareProfile, rows: pd.DataFrame, data: str) -> list[FidelityRow]:
    """How well a calibrated profile predicts measurements it was not fitted on: each family
    of ``rows`` priced with the profile's parameters and kernel table, nothing refitted."""
    cal = hw.calibration
    if cal is None:
        raise ConfigError(
            f"hardware '{hw.name}' has no calibration section to check (calibrated profiles "
            "are listed by llmsim hardware)",
            field="gpu",
        )
    # The kernel table as measurement records (its prefill rows are fresh prompts).
    records = (
        read_kernel_table(cal.kernel_table).assign(past=0.0)
        if cal.kernel_table
        else operator_frame(family=[])
    )
    kernels = ("elementwise", "prefill_attention", "decode_attention", "host")
    params: dict[str, BaseModel] = {f: getattr(cal, f) for f in kernels}
    label = f"predicted by the {hw.name} profile (not fitted)"
    out: list[FidelityRow] = []
    for family in F.FAMILIES:
        own = rows[rows["family"] == family]
        if own.empty:
            continue
        groups = [("", own)]
        if family == "gemm":
            groups = [(str(d), own[own["dtype"] == d]) for d in sorted(set(own["dtype"]))]
        for dtype, sub in groups:
            ref = records[records["family"] == family]
            if family == "all_reduce":
                pred = F.predict_all_reduce_rows(cal.collectives.all_reduce, sub, hw, ref)
            elif family == "send_recv":
                pred = F.predict_send_recv_rows(cal.collectives.send_recv, sub, hw)
            elif family == "gemm":
                if dtype not in cal.gemm:
                    continue
                th = K.theta(cal.gemm[dtype], K.GEMM)
                ref = ref[ref["dtype"] == dtype]
                pred = F.predict_with_table(family, th, ref, sub, hw)
            else:
                th = K.theta(params[family], F.FAMILIES[family].names)
                pred = F.predict_with_table(family, th, ref, sub, hw)
            measured = sub["time_s"].to_numpy(dtype=float)
            name = f"gemm {dtype}" if family == "gemm" else family
            row = summary(name, data, label, [ape(pred, measured)])
            if row is not None:
                out.append(row)
    return out
