"""Reading trace files in chunks of rows: CSV with a header, or JSON Lines.

Nothing here holds more than one chunk of rows: each chunk carries the raw values of the
fields asked for, the line number of every row, and the problems found while splitting rows
(a wrong number of fields, a line that is not a JSON object). Converting the values is
:mod:`llmsim.workload.traces.fields`'s job.
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from operator import itemgetter
from typing import IO, Any

import numpy as np

from llmsim.errors import ConfigError

CHUNK_ROWS = 65536


@dataclass
class RawChunk:
    """Consecutive data rows of a file."""

    lines: list[int]
    """Line number (from 1) of each row."""
    values: dict[str, list[Any]]
    """Raw value of each field, by field name; only fields the file has."""
    problems: dict[int, tuple[str, str]] = field(default_factory=dict)
    """Row position -> (column, reason) for rows that could not be split into fields."""

    def __len__(self) -> int:
        return len(self.lines)


def csv_chunks(
    path: str,
    columns: dict[str, str],
    optional: frozenset[str] | set[str],
    delimiter: str = ",",
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[RawChunk]:
    """Rows of a CSV file with a header line; ``columns`` maps field names to header names.

    A column listed in ``optional`` may be missing from the header (that field is then not
    read); any other missing column is an error naming the columns the file has.
    """
    return _guarded(path, _csv_chunks(path, columns, optional, delimiter, chunk_rows))


def jsonl_chunks(
    path: str, columns: dict[str, str], chunk_rows: int = CHUNK_ROWS
) -> Iterator[RawChunk]:
    """Rows of a JSON Lines file (one object per line); ``columns`` maps fields to keys.

    A missing key, a value of the wrong JSON type, or a line that is not a JSON object is a
    problem of that row. ``hash_ids`` must be a list; every other field a number or string.
    """
    return _guarded(path, _jsonl_chunks(path, columns, chunk_rows))


def _guarded(path: str, chunks: Iterator[RawChunk]) -> Iterator[RawChunk]:
    """``chunks``, with a file that cannot be decoded (a truncated or corrupt .gz, bytes that
    are not UTF-8) reported as a ConfigError naming the file and the rows read before it."""
    rows = 0
    try:
        for chunk in chunks:
            rows = chunk.lines[-1] if chunk.lines else rows
            yield chunk
    except UnicodeDecodeError as exc:
        where = f" after line {rows}" if rows else ""
        raise ConfigError(
            f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x}){where}; save the trace as UTF-8",
            source=path,
        ) from None
    except (EOFError, OSError, zlib.error) as exc:
        what = "truncated" if isinstance(exc, EOFError) else "corrupt"
        reason = str(exc) or type(exc).__name__
        where = f" after line {rows}" if rows else ""
        raise ConfigError(
            f"{what} file ({reason}){where}; the trace must be read whole",
            source=path,
        ) from None


def open_text(path: str, newline: str | None = None) -> IO[str]:
    """A text file, gunzipped when its name ends in .gz; a missing file is a ConfigError."""
    try:
        if path.endswith(".gz"):
            return gzip.open(path, "rt", encoding="utf-8-sig", newline=newline)
        return open(path, encoding="utf-8-sig", newline=newline)
    except FileNotFoundError:
        raise ConfigError("file not found", source=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file ({exc.strerror})", source=path) from None


def _csv_chunks(
    path: str,
    columns: dict[str, str],
    optional: frozenset[str] | set[str],
    delimiter: str,
    chunk_rows: int,
) -> Iterator[RawChunk]:
    with open_text(path, newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ConfigError("empty file: expected a header line", source=path) from None
        except csv.Error as exc:
            raise ConfigError(f"not valid CSV ({exc})", source=f"{path}:1") from None
        index: dict[str, int] = {}
        for name, col in columns.items():
            if col in header:
                index[name] = header.index(col)
            elif name not in optional:
                raise ConfigError(
                    f"no column '{col}' (workload.trace.columns.{name}); "
                    f"columns: {', '.join(header)}",
                    source=f"{path}:1",
                )
        width = len(header)
        start = reader.line_num  # lines consumed so far
        while True:
            try:
                rows = list(islice(reader, chunk_rows))
            except csv.Error as exc:
                where = f"{path}:{reader.line_num}"
                raise ConfigError(f"not valid CSV ({exc})", source=where) from None
            if not rows:
                return
            end = reader.line_num
            if end - start == len(rows):  # one line per row: the usual case
                lines = list(range(start + 1, end + 1))
            else:  # quoted line breaks inside fields: a row starts after the previous one's
                spans = [1 + sum(v.count("\n") for v in row) for row in rows]
                lines = (start + 1 + np.cumsum(spans) - spans).tolist()
            start = end
            if not all(rows):  # drop blank lines
                kept = [i for i, row in enumerate(rows) if row]
                rows = [rows[i] for i in kept]
                lines = [lines[i] for i in kept]
                if not rows:
                    continue
            yield _split(rows, lines, index, width)


def _split(rows: list[list[str]], lines: list[int], index: dict[str, int], width: int) -> RawChunk:
    problems: dict[int, tuple[str, str]] = {}
    widths = np.fromiter(map(len, rows), np.int64, len(rows))
    for i in np.flatnonzero(widths != width).tolist():
        problems[i] = ("", f"expected {width} fields, found {len(rows[i])}")
        rows[i] = [""] * width
    values = {name: list(map(itemgetter(j), rows)) for name, j in index.items()}
    return RawChunk(lines, values, problems)


_SCALAR = (int, float, str)


def _jsonl_chunks(path: str, columns: dict[str, str], chunk_rows: int) -> Iterator[RawChunk]:
    names = list(columns)
    keys = [columns[n] for n in names]
    lines: list[int] = []
    values: dict[str, list[Any]] = {n: [] for n in names}
    problems: dict[int, tuple[str, str]] = {}
    with open_text(path) as f:
        for lineno, text in enumerate(f, start=1):
            if not text.strip():
                continue
            pos = len(lines)
            lines.append(lineno)
            try:
                obj = json.loads(text)
            except ValueError:
                obj = None
            if not isinstance(obj, dict):
                problems[pos] = ("", "expected a JSON object on this line")
                obj = {}
            for name, key in zip(names, keys, strict=True):
                v = obj.get(key)
                if pos not in problems:
                    want_list = name == "hash_ids"
                    if v is None:
                        problems[pos] = (key, "missing")
                    elif (
                        isinstance(v, bool)
                        or (want_list and not isinstance(v, list))
                        or (not want_list and not isinstance(v, _SCALAR))
                    ):
                        kind = "a list" if want_list else "a number or string"
                        problems[pos] = (key, f"must be {kind} (got {_short(v)})")
                values[name].append(v)
            if len(lines) == chunk_rows:
                yield RawChunk(lines, values, problems)
                lines, values, problems = [], {n: [] for n in names}, {}
    if lines:
        yield RawChunk(lines, values, problems)


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
