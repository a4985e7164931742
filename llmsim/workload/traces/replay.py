"""Replaying a trace: read it chunk by chunk and keep the requests the options select."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmsim.errors import ConfigError
from llmsim.limits import MAX_SECONDS
from llmsim.workload.prefix import HashTable
from llmsim.workload.stream import RequestStream, TraceStats
from llmsim.workload.traces import fields as conv
from llmsim.workload.traces.config import FIELDS, TraceConfig
from llmsim.workload.traces.files import RawChunk, csv_chunks, jsonl_chunks


@dataclass
class _Columns:
    """Kept requests, accumulated chunk by chunk."""

    parts: dict[str, list[np.ndarray]] = field(default_factory=dict)
    hashes: list[list[int]] = field(default_factory=list)

    def add(self, name: str, values: np.ndarray) -> None:
        self.parts.setdefault(name, []).append(values)

    def get(self, name: str, dtype: Any) -> np.ndarray | None:
        parts = self.parts.get(name)
        if parts is None:
            return None
        return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


@dataclass
class _Reader:
    """State carried from one chunk to the next."""

    cfg: TraceConfig
    rng: np.random.Generator
    source: str
    t0: Any = None  # raw timestamp of the first valid row
    latest: Any = None  # largest raw timestamp so far
    sessions: dict[str, int] = field(default_factory=dict)
    turns: list[int] = field(default_factory=list)  # turns seen so far, per session
    stats: dict[str, Any] = field(default_factory=dict)
    out: _Columns = field(default_factory=_Columns)
    kept: int = 0
    rows: int = 0  # rows looked at
    done: bool = False

    def bump(self, key: str, by: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + by

    def chunk(self, raw: RawChunk) -> None:
        cfg = self.cfg
        unit = cfg.unit
        n = len(raw)
        present = [f for f in FIELDS if f in raw.values]
        cols: dict[str, Any] = {}
        bad: dict[str, np.ndarray] = {}
        for f in present:
            v = raw.values[f]
            if f == "timestamp":
                cols[f], bad[f] = conv.timestamps(v, unit)
            elif f in ("prompt_tokens", "output_tokens"):
                cols[f], bad[f] = conv.counts(v)
            elif f == "priority":
                cols[f], bad[f] = conv.integers(v)
            elif f == "session_id":
                cols[f], bad[f] = conv.labels(v, empty_ok=False)
            elif f == "request_class":
                cols[f], bad[f] = conv.labels(v, empty_ok=True)
            else:
                cols[f], bad[f] = conv.id_lists(v)
        any_bad = np.zeros(n, dtype=bool)
        for m in bad.values():
            any_bad |= m
        for pos in raw.problems:
            any_bad[pos] = True
        # Rows must come in time order: compare each valid row with the latest before it.
        t = cols["timestamp"]
        ok = np.flatnonzero(~any_bad)
        late = np.zeros(n, dtype=bool)
        if len(ok):
            tv = t[ok]
            before = np.maximum.accumulate(tv)
            prev = np.concatenate(([tv[0] if self.latest is None else self.latest], before[:-1]))
            late[ok[tv < prev]] = True
            any_bad |= late
        ok = np.flatnonzero(~any_bad)
        if len(ok) and self.t0 is None:
            self.t0 = t[ok[0]]
        rel = (t[ok] - self.t0) / conv.SECONDS_PER[unit] if len(ok) else np.empty(0)
        # Rows are in time order: the first one past the window's end ends the replay, and
        # so does the row that reaches the cap. Rows after that point are not looked at.
        limit = n
        window = rel >= cfg.start_s
        outside = ~window
        if cfg.end_s is not None:
            past = rel >= cfg.end_s
            if past.any():
                cut = int(np.argmax(past))
                limit = int(ok[cut]) + 1
                window[cut:] = False
                outside[cut] = True
                self.done = True
        keep = window.copy()
        if cfg.sample < 1:
            keep[window] = self.rng.random(int(window.sum())) < cfg.sample
        idx = np.flatnonzero(keep)
        if cfg.max_requests is not None and self.kept + len(idx) >= cfg.max_requests:
            idx = idx[: cfg.max_requests - self.kept]
            if len(idx):
                limit = min(limit, int(ok[idx[-1]]) + 1)
            self.done = True
        before = ok < limit
        self.rows += limit
        if any_bad[:limit].any():
            self._bad(raw, np.flatnonzero(any_bad[:limit]), bad, late)
        self.bump("outside_window", int((outside & before).sum()))
        self.bump("sampled_out", int((window & ~keep & before).sum()))
        if not before.any():
            return
        tv = t[ok[before]]
        self.latest = tv.max() if self.latest is None else max(self.latest, tv.max())
        session = turn = None
        if "session_id" in cols:
            session, turn = self._sessions(cols["session_id"][ok[before]])
        self.kept += len(idx)
        out = self.out
        arrival = (rel[idx] - cfg.start_s) / cfg.time_scale
        if len(arrival) and arrival[-1] > MAX_SECONDS:
            late_row = raw.lines[int(ok[idx[np.argmax(arrival > MAX_SECONDS)]])]
            raise ConfigError(
                f"arrives {arrival[-1]:.4g} s into the replay, past the {MAX_SECONDS:g} s a "
                "run may span; check workload.trace.time_unit, or set end_s or time_scale",
                source=f"{self.source}:{late_row}",
                field=self.cfg.column_map()["timestamp"],
            )
        out.add("arrival", arrival)
        rows = ok[idx]
        out.add("prompt_tokens", cols["prompt_tokens"][rows])
        out.add("output_tokens", cols["output_tokens"][rows])
        if session is not None and turn is not None:
            out.add("session_id", session[idx])
            out.add("turn", turn[idx])
        for f in ("request_class", "priority"):
            if f in cols:
                out.add(f, cols[f][rows])
        if "hash_ids" in cols:
            lists = cols["hash_ids"]
            out.hashes.extend(lists[i] for i in rows.tolist())
            out.parts.setdefault("hash_ids", [])

    def _sessions(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Session number (in order of first appearance) and turn index of each row."""
        sid = np.empty(len(labels), dtype=np.int64)
        turn = np.empty(len(labels), dtype=np.int64)
        ids, turns = self.sessions, self.turns
        for i, label in enumerate(labels.tolist()):
            s = ids.setdefault(label, len(ids))
            if s == len(turns):
                turns.append(0)
            sid[i], turn[i] = s, turns[s]
            turns[s] += 1
        return sid, turn

    def _bad(
        self, raw: RawChunk, rows: np.ndarray, bad: dict[str, np.ndarray], late: np.ndarray
    ) -> None:
        first = int(rows[0])
        column, reason = self._reason(raw, first, bad, late)
        where = f"{self.source}:{raw.lines[first]}"
        if not self.cfg.skip_bad_rows:
            hint = "; set workload.trace.skip_bad_rows to skip such rows"
            raise ConfigError(reason + hint, source=where, field=column or None)
        self.bump("bad_rows", len(rows))
        self.stats.setdefault("first_bad", f"{where}: {column + ': ' if column else ''}{reason}")

    def _reason(
        self, raw: RawChunk, pos: int, bad: dict[str, np.ndarray], late: np.ndarray
    ) -> tuple[str, str]:
        if pos in raw.problems:
            return raw.problems[pos]
        cmap = self.cfg.column_map()
        for f in FIELDS:
            if f in bad and bad[f][pos]:
                return cmap[f], conv.describe(f, raw.values[f][pos], self.cfg.unit)
        return cmap["timestamp"], (
            f"{raw.values['timestamp'][pos]!r} is earlier than a previous row; "
            "rows must be in time order"
        )


def read_trace(cfg: TraceConfig, rng: np.random.Generator | None = None) -> RequestStream:
    """Replay a trace as a request stream, reading the file in chunks.

    ``rng`` draws the rows kept by ``sample`` (default: a generator seeded with 0). Invalid
    rows raise a ConfigError naming the file and line, or are skipped and counted with
    ``skip_bad_rows``; the stream's ``trace`` field reports what was read and kept.
    """
    source = cfg.file
    if not Path(source).is_file():
        what = "not a regular file" if Path(source).exists() else "file not found"
        raise ConfigError(what, source=source, field="workload.trace.path")
    reader = _Reader(cfg, rng if rng is not None else np.random.default_rng(0), source)
    cmap = cfg.column_map()
    optional = {f for f in cmap if cfg.optional(f)}
    if cfg.preset.reader == "csv":
        chunks = csv_chunks(source, cmap, optional, cfg.delimiter)
    else:
        chunks = jsonl_chunks(source, cmap)
    for raw in chunks:
        reader.chunk(raw)
        if reader.done:
            break
    out = reader.out
    arrival = out.get("arrival", float)
    arrival = arrival if arrival is not None else np.empty(0)
    n = len(arrival)
    if n == 0:
        st = reader.stats
        why = (
            f"all {st.get('bad_rows', 0):,} rows are bad (first: {st['first_bad']})"
            if st.get("first_bad")
            else "the file has no data rows"
            if reader.rows == 0
            else "no row falls in the window start_s/end_s or survives sample"
        )
        raise ConfigError(f"no requests to replay: {why}", source=source)
    prompt = out.get("prompt_tokens", np.int64)
    output = out.get("output_tokens", np.int64)
    st = reader.stats
    stats = TraceStats(
        source=source,
        rows=reader.rows,
        bad_rows=st.get("bad_rows", 0),
        first_bad=st.get("first_bad"),
        outside_window=st.get("outside_window", 0),
        sampled_out=st.get("sampled_out", 0),
        kept=n,
        stopped_early=reader.done,
    )
    block = cfg.block_size
    return RequestStream(
        arrival=arrival,
        prompt_tokens=prompt if prompt is not None else np.empty(0, dtype=np.int64),
        output_tokens=output if output is not None else np.empty(0, dtype=np.int64),
        session_id=out.get("session_id", np.int64),
        turn=out.get("turn", np.int64),
        prefix=(
            HashTable.from_lists(out.hashes, block)
            if "hash_ids" in out.parts and block is not None
            else None
        ),
        request_class=out.get("request_class", object),
        priority=out.get("priority", np.int64),
        trace=stats,
    )
