"""llmsim's own CSV formats for a user's measurements (documented in docs/calibration.md).

Operator level: one timed kernel per row. Required columns ``family`` and ``time_ms``, plus
the shape columns of the family:

=====================  ==========================================================
family                 columns
=====================  ==========================================================
``gemm``               ``m``, ``n``, ``k`` (``dtype``: bf16 or fp8, default bf16)
``elementwise``        ``bytes`` (read plus written); ``op``: norm (default), rope,
                       activation, add or embedding
``prefill_attention``  ``batch``, ``seq_len``, ``heads``, ``kv_heads``, ``head_dim``
                       (``past``: cached tokens per sequence, default 0)
``decode_attention``   ``batch``, ``seq_len`` (cached tokens per sequence, the new one
                       included), ``heads``, ``kv_heads``, ``head_dim``
``all_reduce``         ``bytes``, ``gpus``
``send_recv``          ``bytes`` between two GPUs; ``op``: intra-node (default) or
                       inter-node
``host``               ``batch`` (sequences in the step), ``tp`` (default 1)
=====================  ==========================================================

Step level: one timed engine step per row: ``prefill_tokens``, ``prefill_seqs``,
``decode_seqs``, ``decode_context`` (sum of the decode requests' context lengths) and
``time_ms``; optional ``prefill_cached`` (cached tokens under the prefill chunks, summed),
``model`` and ``tp``.

Optional columns in both: ``model`` (a label; fidelity holds out one model at a time) and
``source``. Lines starting with ``#`` are comments (the profiler writes its provenance there).
Sizes are per GPU, the way the kernel ran.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from llmsim.calibration.records import FAMILIES, operator_frame, step_frame
from llmsim.config_io import decode_utf8
from llmsim.cost.kernels import ELEMENTWISE_KINDS, ELEMENTWISE_OPS
from llmsim.errors import ConfigError

FAMILY_COLUMNS: dict[str, tuple[str, ...]] = {
    "gemm": ("m", "n", "k"),
    "elementwise": ("bytes",),
    "prefill_attention": ("batch", "seq_len", "heads", "kv_heads", "head_dim"),
    "decode_attention": ("batch", "seq_len", "heads", "kv_heads", "head_dim"),
    "all_reduce": ("bytes", "gpus"),
    "send_recv": ("bytes",),
    "host": ("batch",),
}
OPTIONAL_NUMBERS = {"past": 0.0, "tp": 1.0, "gpus": math.nan}
STEP_REQUIRED = ("prefill_tokens", "prefill_seqs", "decode_seqs", "decode_context", "time_ms")
OPERATOR_HEADER = (
    "family",
    "op",
    "model",
    "dtype",
    "m",
    "n",
    "k",
    "bytes",
    "batch",
    "seq_len",
    "past",
    "heads",
    "kv_heads",
    "head_dim",
    "gpus",
    "tp",
    "time_ms",
)

USER_SOURCE = "user"  # the ``source`` of rows read from a user's files


def _rows(path: str | Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (line number, row) pairs, skipping comment and blank lines."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError("file not found", source=str(p)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file ({exc.strerror})", source=str(p)) from None
    text = decode_utf8(data, str(p))
    header: list[str] | None = None
    rows: list[tuple[int, dict[str, str]]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in next(csv.reader([line]))]
        if header is None:
            header = cells
            continue
        if len(cells) != len(header):
            raise ConfigError(
                f"{len(cells)} fields where the header has {len(header)}",
                source=str(p),
                field=f"line {lineno}",
            )
        rows.append((lineno, dict(zip(header, cells, strict=True))))
    if header is None:
        raise ConfigError("empty file: expected a header line", source=str(p))
    return header, rows


def _number(row: Mapping[str, str], col: str, src: str, lineno: int, *, positive: bool) -> float:
    raw = row.get(col, "")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        valid = "a number > 0" if positive else "a number >= 0"
        shown = repr(raw) if raw else "an empty cell"
        raise ConfigError(
            f"column '{col}' has {shown}; valid: {valid}", source=src, field=f"line {lineno}"
        )
    return value


def sniff(path: str | Path) -> str:
    """``"operators"`` or ``"steps"``: which llmsim format a CSV file is in."""
    header, _ = _rows(path)
    if "family" in header:
        return "operators"
    if "decode_seqs" in header:
        return "steps"
    raise ConfigError(
        "not an llmsim measurement CSV: the header needs 'family' (operator level) or "
        f"{', '.join(STEP_REQUIRED)} (step level)",
        source=str(path),
        field="line 1",
    )


def read_operator_csv(path: str | Path, source: str = USER_SOURCE) -> pd.DataFrame:
    """Operator-level measurements as an operator table."""
    src = str(path)
    header, rows = _rows(path)
    for col in ("family", "time_ms"):
        if col not in header:
            raise ConfigError(f"missing column '{col}'", source=src, field="line 1")
    records: list[dict[str, object]] = []
    for lineno, row in rows:
        family = row["family"]
        if family not in FAMILY_COLUMNS:
            raise ConfigError(
                f"unknown family {family!r}; valid: {', '.join(FAMILIES)}",
                source=src,
                field=f"line {lineno}",
            )
        values = {
            col: _number(row, col, src, lineno, positive=True) for col in FAMILY_COLUMNS[family]
        }
        for col, default in OPTIONAL_NUMBERS.items():
            if col not in values:
                values[col] = (
                    _number(row, col, src, lineno, positive=col != "past")
                    if row.get(col, "")
                    else default
                )
        dtype = row.get("dtype", "") or "bf16"
        if dtype not in ("bf16", "fp16", "fp8"):
            raise ConfigError(
                f"column 'dtype' has {dtype!r}; valid: bf16, fp16, fp8",
                source=src,
                field=f"line {lineno}",
            )
        op = family
        if family == "send_recv":
            op = row.get("op", "") or "intra-node"
            if op not in ("intra-node", "inter-node"):
                raise ConfigError(
                    f"column 'op' has {op!r}; valid: intra-node, inter-node",
                    source=src,
                    field=f"line {lineno}",
                )
            values["gpus"] = 2.0
        if family == "elementwise":
            op = row.get("op", "") or "norm"
            if op not in ELEMENTWISE_OPS:
                raise ConfigError(
                    f"column 'op' has {op!r}; valid: {', '.join(ELEMENTWISE_KINDS)}",
                    source=src,
                    field=f"line {lineno}",
                )
        values["time_s"] = _number(row, "time_ms", src, lineno, positive=True) * 1e-3
        if "bytes" in values:
            values["nbytes"] = values.pop("bytes")
        records.append(
            {
                "family": family,
                "source": row.get("source", "") or source,
                "model": row.get("model", ""),
                "op": op,
                "dtype": "bf16" if dtype == "fp16" else dtype,
                **values,
            }
        )
    if not records:
        raise ConfigError("no measurements: the file has a header only", source=src)
    table = pd.DataFrame.from_records(records)
    return operator_frame(**{c: table[c] for c in table.columns})


def read_step_csv(path: str | Path, source: str = "user") -> pd.DataFrame:
    """Step-level measurements as a step table."""
    src = str(path)
    header, rows = _rows(path)
    missing = [c for c in STEP_REQUIRED if c not in header]
    if missing:
        raise ConfigError(f"missing column(s) {', '.join(missing)}", source=src, field="line 1")
    cols: dict[str, list[float]] = {c: [] for c in (*STEP_REQUIRED, "prefill_cached", "tp")}
    models: list[str] = []
    for lineno, row in rows:
        for col in STEP_REQUIRED:
            cols[col].append(_number(row, col, src, lineno, positive=col == "time_ms"))
        for col, default in (("prefill_cached", 0.0), ("tp", 1.0)):
            raw = row.get(col, "")
            cols[col].append(
                _number(row, col, src, lineno, positive=col == "tp") if raw else default
            )
        if cols["prefill_tokens"][-1] + cols["decode_seqs"][-1] == 0:
            raise ConfigError(
                "a step needs prefill_tokens or decode_seqs > 0",
                source=src,
                field=f"line {lineno}",
            )
        if (cols["prefill_tokens"][-1] > 0) != (cols["prefill_seqs"][-1] > 0):
            raise ConfigError(
                "prefill_tokens and prefill_seqs must both be 0 or both be > 0",
                source=src,
                field=f"line {lineno}",
            )
        models.append(row.get("model", ""))
    if not models:
        raise ConfigError("no measurements: the file has a header only", source=src)
    return step_frame(
        source=source,
        model=models,
        kind=["step"] * len(models),
        tp=cols["tp"],
        prefill_tokens=cols["prefill_tokens"],
        prefill_seqs=cols["prefill_seqs"],
        prefill_cached=cols["prefill_cached"],
        decode_seqs=cols["decode_seqs"],
        decode_context=cols["decode_context"],
        time_s=np.asarray(cols["time_ms"]) * 1e-3,
    )


def operator_csv_text(rows: Iterable[Mapping[str, object]], comments: Iterable[str] = ()) -> str:
    """Operator rows (dicts with ``OPERATOR_HEADER`` keys; missing ones left empty) as CSV."""
    buf = io.StringIO()
    for line in comments:
        buf.write(f"# {line}\n")
    writer = csv.DictWriter(buf, fieldnames=OPERATOR_HEADER, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k, "")) for k in OPERATOR_HEADER})
    return buf.getvalue()


def _fmt(value: object) -> object:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value
