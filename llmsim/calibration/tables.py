"""Which measurements a calibrated profile carries as its kernel table
(:mod:`llmsim.cost.kernel_table`), and writing them to a file.

For each family a table holds, the rows come from one source: the preferred one (the software
stack the profile models) where it measured the family, else the first other source that did.
"""

from __future__ import annotations

import os
import tempfile
from functools import cache

import numpy as np
import pandas as pd

from llmsim.cost.kernel_table import FAMILIES as TABLE_FAMILIES
from llmsim.cost.kernel_table import read_kernel_table, to_table_frame


def table_source(rows: pd.DataFrame, preferred: str, family: str) -> str:
    """The source whose ``family`` rows a kernel table holds: ``preferred`` where it measured
    the family, else the first other source that did ("" with no ``preferred`` at all)."""
    if not preferred:
        return ""
    sources = sorted(set(rows.loc[rows["family"] == family, "source"]))
    if preferred in sources or not sources:
        return preferred
    return str(sources[0])


def table_rows(rows: pd.DataFrame, preferred: str, family: str | None = None) -> pd.DataFrame:
    """The rows a kernel table holds (of one ``family``, if given): for each family, the rows
    of its :func:`table_source`."""
    keep = np.zeros(len(rows), dtype=bool)
    for fam in TABLE_FAMILIES if family is None else (family,):
        source = table_source(rows, preferred, fam)
        keep |= ((rows["family"] == fam) & (rows["source"] == source)).to_numpy()
    return rows[keep]


def table_file(rows: pd.DataFrame, preferred: str, base: str = "") -> str:
    """The :func:`table_rows` as a kernel table file in a scratch folder (removed when the
    process ends; :func:`llmsim.calibration.profile_yaml.write_profile` copies it next to the
    profile), plus the rows of the ``base`` table file for the families (GEMMs: data types)
    that ``rows`` did not measure; "" when there are none."""
    table = to_table_frame(table_rows(rows, preferred))
    if base:
        old = read_kernel_table(base)
        measured = set(_table_keys(table))
        kept = [key not in measured for key in _table_keys(old)]
        table = pd.concat([table, old.loc[kept, list(table.columns)]], ignore_index=True)
    if table.empty:
        return ""
    fd, name = tempfile.mkstemp(suffix=".kernels.parquet", dir=_scratch().name)
    os.close(fd)
    table.to_parquet(name, index=False)
    return name


def _table_keys(table: pd.DataFrame) -> list[tuple[str, str]]:
    """(family, data type for GEMMs) of each row: what a calibration fits one parameter set
    on."""
    return [
        (str(fam), str(dtype) if fam == "gemm" else "")
        for fam, dtype in zip(table["family"], table["dtype"], strict=True)
    ]


@cache
def _scratch() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="llmsim-calibrate-")
