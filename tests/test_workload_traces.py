"""Trace replay: the readers reproduce a trace's times and lengths exactly, the replay options
(time scale, window, sample, cap) do what they say, and bad rows are reported by file and line
or skipped and counted."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from llmsim.errors import ConfigError
from llmsim.workload import (
    ClassRule,
    TraceColumns,
    TraceConfig,
    WorkloadConfig,
    generate,
    read_trace,
)
from llmsim.workload.datasets import trace_dataset_path
from llmsim.workload.traces import replay
from llmsim.workload.traces.files import RawChunk, csv_chunks

AZURE = trace_dataset_path("azure_conv")
MOONCAKE = trace_dataset_path("mooncake_conversation")


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# --- exact replay ----------------------------------------------------------------------------


def test_azure_replay_is_exact() -> None:
    df = pd.read_csv(AZURE)
    ns = pd.to_datetime(df["TIMESTAMP"]).to_numpy().view(np.int64)
    s = read_trace(TraceConfig(dataset="azure_conv"))
    assert len(s) == len(df) == 2000
    np.testing.assert_array_equal(s.arrival, (ns - ns[0]) / 1e9)
    np.testing.assert_array_equal(s.prompt_tokens, df["ContextTokens"])
    np.testing.assert_array_equal(s.output_tokens, df["GeneratedTokens"])
    assert s.trace is not None and s.trace.rows == 2000 and s.trace.kept == 2000
    assert s.arrival[1] == pytest.approx(4.314579)  # 18:15:46.6805900 -> 18:15:50.9951690


def test_mooncake_replay_is_exact_and_keeps_hash_ids() -> None:
    with gzip.open(MOONCAKE, "rt") as f:
        rows = [json.loads(line) for line in f]
    s = read_trace(TraceConfig(dataset="mooncake_conversation"))
    ts = np.array([r["timestamp"] for r in rows], dtype=float)
    np.testing.assert_array_equal(s.arrival, (ts - ts[0]) / 1000.0)
    assert s.prompt_tokens.tolist() == [r["input_length"] for r in rows]
    assert s.output_tokens.tolist() == [r["output_length"] for r in rows]
    assert s.prefix is not None and s.hash_block_size == 512
    assert s.prefix.lists() == [r["hash_ids"] for r in rows]


def test_azure_2024_style_timestamps_with_offsets(tmp_path: Path) -> None:
    f = write(
        tmp_path / "a.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2024-05-10 00:00:00.0095510+00:00,4808,10\n"
        "2024-05-10 00:00:01.5095510+00:00,3180,8\n",
    )
    s = read_trace(TraceConfig(format="azure", path=f))
    np.testing.assert_allclose(s.arrival, [0.0, 1.5])


# --- replay options --------------------------------------------------------------------------


def test_time_scale_divides_gaps() -> None:
    base = read_trace(TraceConfig(dataset="azure_code"))
    fast = read_trace(TraceConfig(dataset="azure_code", time_scale=4.0))
    np.testing.assert_allclose(np.diff(fast.arrival), np.diff(base.arrival) / 4.0, rtol=1e-12)
    np.testing.assert_array_equal(fast.prompt_tokens, base.prompt_tokens)


def test_window_selects_and_restarts_the_clock() -> None:
    base = read_trace(TraceConfig(dataset="azure_conv"))
    s = read_trace(TraceConfig(dataset="azure_conv", start_s=60.0, end_s=120.0, time_scale=2.0))
    inside = (base.arrival >= 60.0) & (base.arrival < 120.0)
    np.testing.assert_allclose(s.arrival, (base.arrival[inside] - 60.0) / 2.0)
    np.testing.assert_array_equal(s.prompt_tokens, base.prompt_tokens[inside])
    assert s.trace is not None and s.trace.stopped_early
    # rows before the window, and the first row past it, which ended the replay
    last = int(np.argmax(base.arrival >= 120.0))
    assert s.trace.outside_window == int((base.arrival < 60.0).sum()) + 1
    assert s.trace.rows == last + 1


def test_window_end_stops_reading_early(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = "".join(f"{i},{i % 50 + 1},3\n" for i in range(10_000))
    f = write(tmp_path / "t.csv", "timestamp,prompt_tokens,output_tokens\n" + lines + "x,y,z\n")
    chunks = list(csv_chunks(f, {"timestamp": "timestamp"}, set(), chunk_rows=1000))
    assert len(chunks) == 11 and chunks[3].lines[0] == 3002
    pulled: list[int] = []

    def small_chunks(*args: Any, **kw: Any) -> Iterator[RawChunk]:
        for chunk in csv_chunks(*args, **kw, chunk_rows=1000):
            pulled.append(len(chunk))
            yield chunk

    monkeypatch.setattr(replay, "csv_chunks", small_chunks)
    s = read_trace(TraceConfig(format="csv", path=f, end_s=2500))
    assert len(s) == 2500 and s.trace is not None and s.trace.stopped_early
    assert s.trace.rows == 2501  # up to the first row past the window
    assert len(pulled) == 3  # the rest of the file (and its bad last row) never read
    with pytest.raises(ConfigError, match=r"t\.csv:10002"):
        read_trace(TraceConfig(format="csv", path=f))


def test_sample_fraction_is_seeded() -> None:
    cfg = TraceConfig(dataset="azure_conv", sample=0.3)
    a = read_trace(cfg, np.random.default_rng(1))
    b = read_trace(cfg, np.random.default_rng(1))
    c = read_trace(cfg, np.random.default_rng(2))
    np.testing.assert_array_equal(a.arrival, b.arrival)
    assert not np.array_equal(a.arrival, c.arrival[: len(a)])
    assert len(a) == pytest.approx(600, abs=5 * np.sqrt(2000 * 0.3 * 0.7))
    assert a.trace is not None and a.trace.sampled_out == 2000 - len(a)
    base = read_trace(TraceConfig(dataset="azure_conv"))
    assert set(a.arrival.tolist()) <= set(base.arrival.tolist())  # a subset, times unchanged


def test_cap_on_requests() -> None:
    s = read_trace(TraceConfig(dataset="mooncake_conversation", max_requests=25))
    assert len(s) == 25 and s.trace is not None and s.trace.stopped_early
    full = read_trace(TraceConfig(dataset="mooncake_conversation"))
    np.testing.assert_array_equal(s.arrival, full.arrival[:25])
    assert s.prefix is not None and full.prefix is not None
    assert s.prefix.lists() == full.prefix.lists()[:25]


def test_workload_limits_apply_to_traces() -> None:
    cfg = WorkloadConfig(trace=TraceConfig(dataset="azure_conv", time_scale=2.0), num_requests=40)
    assert len(generate(cfg, np.random.SeedSequence(0))) == 40
    cfg = WorkloadConfig(trace=TraceConfig(dataset="azure_conv", time_scale=2.0), duration_s=30.0)
    s = generate(cfg, np.random.SeedSequence(0))
    base = read_trace(TraceConfig(dataset="azure_conv", time_scale=2.0))
    assert len(s) == int((base.arrival < 30.0).sum()) and s.arrival.max() < 30.0


# --- formats and column mapping ----------------------------------------------------------------


BURST = (
    "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
    "5,ChatGPT,472,18,490,Conversation log\n"
    "45,ChatGPT,1087,230,1317,Conversation log\n"
    "118,GPT-4,417,276,693,API log\n"
)


def test_burstgpt_columns(tmp_path: Path) -> None:
    s = read_trace(TraceConfig(format="burstgpt", path=write(tmp_path / "b.csv", BURST)))
    assert s.arrival.tolist() == [0.0, 40.0, 113.0]
    assert s.prompt_tokens.tolist() == [472, 1087, 417]
    assert s.output_tokens.tolist() == [18, 230, 276]
    assert s.session_id is None and s.request_class is None


def test_burstgpt_tag_column_and_class_rules(tmp_path: Path) -> None:
    trace = TraceConfig(
        format="burstgpt",
        path=write(tmp_path / "b.csv", BURST),
        columns=TraceColumns(request_class="Log Type"),
    )
    cfg = WorkloadConfig(
        trace=trace, classes=(ClassRule(name="batch", tags=("API log",), priority=1),)
    )
    s = generate(cfg, np.random.SeedSequence(0))
    assert s.request_class is not None and s.priority is not None
    assert s.request_class.tolist() == ["Conversation log", "Conversation log", "batch"]
    assert s.priority.tolist() == [0, 0, 1]


def test_burstgpt_session_column_gives_turns(tmp_path: Path) -> None:
    text = (
        "Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,"
        "Log Type\n"
        "0.5,aa,1,ChatGPT,10,5,15,Conversation log\n"
        "1.0,bb,1,ChatGPT,11,5,16,Conversation log\n"
        "2.0,aa,1,ChatGPT,30,5,35,Conversation log\n"
        "3.0,aa,1,ChatGPT,50,5,55,Conversation log\n"
    )
    s = read_trace(TraceConfig(format="burstgpt", path=write(tmp_path / "b3.csv", text)))
    assert s.session_id is not None and s.turn is not None
    assert s.session_id.tolist() == [0, 1, 0, 0]
    assert s.turn.tolist() == [0, 0, 1, 2]


def test_burstgpt_failed_requests_are_bad_rows(tmp_path: Path) -> None:
    f = write(tmp_path / "b.csv", BURST + "120,GPT-4,300,0,300,API log\n")
    with pytest.raises(ConfigError, match=r"b\.csv:5: Response tokens: must be a positive"):
        read_trace(TraceConfig(format="burstgpt", path=f))
    s = read_trace(TraceConfig(format="burstgpt", path=f, skip_bad_rows=True))
    assert len(s) == 3 and s.trace is not None and s.trace.bad_rows == 1


def test_generic_csv_with_mapping(tmp_path: Path) -> None:
    text = (
        "t_ms;in;out;conv;kind;prio;blocks\n"
        "1000;40;4;c1;chat;0;7 8 9\n"
        "1250;60;6;c1;chat;0;7 8 9 10\n"
        "1500;30;3;c2;batch;2;[11, 12]\n"
    )
    cfg = TraceConfig(
        format="csv",
        path=write(tmp_path / "g.csv", text),
        delimiter=";",
        time_unit="ms",
        hash_block_size=16,
        columns=TraceColumns(
            timestamp="t_ms",
            prompt_tokens="in",
            output_tokens="out",
            session_id="conv",
            request_class="kind",
            priority="prio",
            hash_ids="blocks",
        ),
    )
    s = read_trace(cfg)
    assert s.arrival.tolist() == [0.0, 0.25, 0.5]
    assert s.prompt_tokens.tolist() == [40, 60, 30]
    assert s.session_id.tolist() == [0, 0, 1]  # type: ignore[union-attr]
    assert s.turn.tolist() == [0, 1, 0]  # type: ignore[union-attr]
    assert s.request_class.tolist() == ["chat", "chat", "batch"]  # type: ignore[union-attr]
    assert s.priority.tolist() == [0, 0, 2]  # type: ignore[union-attr]
    assert s.prefix is not None and s.prefix.lists() == [[7, 8, 9], [7, 8, 9, 10], [11, 12]]


def test_generic_jsonl_with_dates_and_gzip(tmp_path: Path) -> None:
    rows = [
        {"when": "2024-01-01T00:00:00", "p": 5, "o": 2},
        {"when": "2024-01-01T00:00:02.5", "p": 6, "o": 3},
    ]
    f = tmp_path / "r.jsonl.gz"
    with gzip.open(f, "wt") as out:
        out.write("\n".join(json.dumps(r) for r in rows) + "\n\n")
    cfg = TraceConfig(
        format="jsonl",
        path=str(f),
        time_unit="datetime",
        columns=TraceColumns(timestamp="when", prompt_tokens="p", output_tokens="o"),
    )
    s = read_trace(cfg)
    assert s.arrival.tolist() == [0.0, 2.5] and s.output_tokens.tolist() == [2, 3]


def test_default_generic_column_names(tmp_path: Path) -> None:
    f = write(tmp_path / "d.csv", "timestamp,prompt_tokens,output_tokens\n0.5,3,4\n1,5,6\n")
    s = read_trace(TraceConfig(format="csv", path=f))
    assert s.arrival.tolist() == [0.0, 0.5]


def test_ignoring_a_format_column() -> None:
    s = read_trace(
        TraceConfig(
            dataset="mooncake_conversation", max_requests=3, columns=TraceColumns(hash_ids="")
        )
    )
    assert s.prefix is None


# --- bad input -------------------------------------------------------------------------------

HEADER = "timestamp,prompt_tokens,output_tokens\n"


@pytest.mark.parametrize(
    ("body", "line", "match"),
    [
        (
            "0,10,2\n1,abc,2\n",
            3,
            r"prompt_tokens: must be a positive integer up to 100,000,000 \(got 'abc'\)",
        ),
        (
            "0,10,2\n1,10,2.5\n",
            3,
            r"output_tokens: must be a positive integer up to 100,000,000 \(got '2\.5'\)",
        ),
        ("0,10,2\n1,-4,2\n", 3, r"prompt_tokens: must be a positive"),
        ("0,10,2\nsoon,10,2\n", 3, r"timestamp: not a timestamp in s \(got 'soon'\)"),
        ("0,10,2\n\n1,10\n", 4, r"expected 3 fields, found 2"),
        ("5,10,2\n6,10,2\n4,10,2\n", 4, r"timestamp: '4' is earlier than a previous row"),
    ],
)
def test_bad_csv_row_names_file_and_line(tmp_path: Path, body: str, line: int, match: str) -> None:
    f = write(tmp_path / "bad.csv", HEADER + body)
    with pytest.raises(ConfigError, match=rf"bad\.csv:{line}: {match}") as exc:
        read_trace(TraceConfig(format="csv", path=f))
    assert "\n" not in str(exc.value) and "skip_bad_rows" in str(exc.value)


def test_line_numbers_count_quoted_line_breaks(tmp_path: Path) -> None:
    text = 'timestamp,prompt_tokens,output_tokens,note\n0,5,1,"two\nlines"\n1,5,1,x\n2,?,1,y\n'
    f = write(tmp_path / "q.csv", text)
    with pytest.raises(ConfigError, match=r"q\.csv:5: prompt_tokens"):
        read_trace(TraceConfig(format="csv", path=f))


def test_skip_bad_rows_counts_them(tmp_path: Path) -> None:
    body = "0,10,2\n1,x,2\n2,10,2\n3,10\n2.5,10,2\n1.5,10,2\n4,10,0\n5,7,7\n"
    f = write(tmp_path / "bad.csv", HEADER + body)
    s = read_trace(TraceConfig(format="csv", path=f, skip_bad_rows=True))
    assert s.arrival.tolist() == [0.0, 2.0, 2.5, 5.0]
    assert s.trace is not None
    assert s.trace.bad_rows == 4 and s.trace.rows == 8 and s.trace.kept == 4
    assert s.trace.first_bad is not None and s.trace.first_bad.startswith(f"{f}:3: prompt_tokens")


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ('{"timestamp": 1, "input_length": 5}', r"output_length: missing"),
        ("not json", r"expected a JSON object"),
        (
            '{"timestamp": 1, "input_length": true, "output_length": 2, "hash_ids": []}',
            r"input_length: must be a number or string \(got true\)",
        ),
        (
            '{"timestamp": 1, "input_length": 5, "output_length": 2, "hash_ids": 3}',
            r"hash_ids: must be a list \(got 3\)",
        ),
        (
            '{"timestamp": 1, "input_length": 5, "output_length": 2, "hash_ids": ["a"]}',
            r"hash_ids: must be a list of integers",
        ),
    ],
)
def test_bad_jsonl_row_names_file_and_line(tmp_path: Path, line: str, match: str) -> None:
    good = '{"timestamp": 0, "input_length": 5, "output_length": 2, "hash_ids": [1]}\n'
    f = write(tmp_path / "bad.jsonl", good + line + "\n" + good)
    with pytest.raises(ConfigError, match=rf"bad\.jsonl:2: {match}"):
        read_trace(TraceConfig(format="mooncake", path=f))
    s = read_trace(TraceConfig(format="mooncake", path=f, skip_bad_rows=True))
    assert len(s) == 2 and s.trace is not None and s.trace.bad_rows == 1


def test_missing_column_lists_the_columns(tmp_path: Path) -> None:
    f = write(tmp_path / "m.csv", "time,prompt_tokens,output_tokens\n0,1,1\n")
    with pytest.raises(
        ConfigError,
        match=r"m\.csv:1: no column 'timestamp' "
        r"\(workload\.trace\.columns\.timestamp\); columns: time, ",
    ):
        read_trace(TraceConfig(format="csv", path=f))


def test_missing_file_and_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"workload\.trace\.path: file not found"):
        read_trace(TraceConfig(format="csv", path=str(tmp_path / "none.csv")))
    with pytest.raises(ValueError, match="needs a format"):
        TraceConfig(path="x.csv")
    with pytest.raises(ValueError, match="is in format 'azure'"):
        TraceConfig(dataset="azure_conv", format="mooncake")
    with pytest.raises(ValueError, match="hash_block_size"):
        TraceConfig(format="csv", path="x.csv", columns=TraceColumns(hash_ids="h"))
    with pytest.raises(ValueError, match="end_s"):
        TraceConfig(dataset="azure_conv", start_s=5, end_s=5)


def test_empty_trace(tmp_path: Path) -> None:
    # A run of no requests would print empty tables: a trace that yields none is refused.
    with pytest.raises(ConfigError, match=r"e\.csv: no requests to replay: the file has no data"):
        read_trace(TraceConfig(format="csv", path=write(tmp_path / "e.csv", HEADER)))
    late = write(tmp_path / "w.csv", HEADER + "0,10,2\n")
    with pytest.raises(ConfigError, match="no row falls in the window"):
        read_trace(TraceConfig(format="csv", path=late, start_s=5))
    with pytest.raises(ConfigError, match="empty file"):
        read_trace(TraceConfig(format="csv", path=write(tmp_path / "z.csv", "")))


@pytest.mark.slow
def test_large_csv_streams_quickly(tmp_path: Path) -> None:
    n = 250_000
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "Timestamp": np.cumsum(rng.exponential(0.1, n)).round(3),
            "Model": "ChatGPT",
            "Request tokens": rng.integers(1, 4000, n),
            "Response tokens": rng.integers(1, 500, n),
            "Total tokens": 0,
            "Log Type": "Conversation log",
        }
    )
    f = tmp_path / "big.csv"
    df.to_csv(f, index=False)
    s = read_trace(TraceConfig(format="burstgpt", path=str(f)))
    assert len(s) == n
    np.testing.assert_array_equal(s.prompt_tokens, df["Request tokens"])
