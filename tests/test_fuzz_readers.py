"""Fuzzed readers: random mutations of valid inputs either load or raise LlmsimError.

Each reader (scenario YAML, trace CSV and JSON Lines, plain and gzipped, length CSVs,
calibration CSVs, model config.json) gets valid files broken at random, byte by byte and value
by value. A reader may accept a mutation that is still valid; any exception other than an
LlmsimError (a traceback for the user) fails the test.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmsim.calibration.llmsim_csv import read_operator_csv, read_step_csv, sniff
from llmsim.calibration.readers import read_aic_gemm, read_vidur_all_reduce, read_vidur_mlp
from llmsim.engine import Simulation
from llmsim.errors import LlmsimError
from llmsim.models import from_hf_config
from llmsim.scenario import Scenario, load_scenario
from llmsim.workload.datasets import read_column
from llmsim.workload.traces import TraceConfig, read_trace

ROOT = Path(__file__).resolve().parent.parent
FUZZ = settings(
    # A few hundred examples per reader in the suite; LLMSIM_FUZZ_EXAMPLES=5000 for a long hunt.
    max_examples=int(os.environ.get("LLMSIM_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Values that break readers: out of range, wrong type, not finite, odd text.
HOSTILE_SCALARS = st.one_of(
    st.sampled_from(
        [
            0,
            -1,
            1e19,
            10**30,
            1e308,
            float("inf"),
            float("-inf"),
            float("nan"),
            2**63,
            -(2**63),
            "",
            " ",
            "abc",
            "1e400",
            "nan",
            "inf",
            "0x10",
            "\x00",
            "\u202e",
            "../../x",
            True,
            None,
            [],
            {},
            [1, 2],
            {"a": 1},
            1.5,
            "1,000",
        ]
    ),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)


def byte_mutations(data: bytes) -> st.SearchStrategy[bytes]:
    """``data`` with a few bytes replaced, inserted or deleted, or cut short."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
            pos = draw(st.integers(0, max(len(out) - 1, 0)))
            if op == "replace" and out:
                out[pos] = draw(st.integers(0, 255))
            elif op == "insert":
                out[pos:pos] = draw(st.binary(min_size=1, max_size=8))
            elif op == "delete" and out:
                del out[pos : pos + draw(st.integers(1, 8))]
            elif op == "truncate":
                del out[pos:]
        return bytes(out)

    return mutate()


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every value in a nest of dicts and lists."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def value_mutations(doc: Any) -> st.SearchStrategy[Any]:
    """``doc`` with a few values replaced by hostile ones, or removed."""
    paths = _paths(doc)

    @st.composite
    def mutate(draw: st.DrawFn) -> Any:
        new = json.loads(json.dumps(doc))
        for _ in range(draw(st.integers(1, 3))):
            path = draw(st.sampled_from(paths))
            node = new
            try:
                for p in path[:-1]:
                    node = node[p]
                if draw(st.booleans()) and isinstance(node, dict):
                    node.pop(path[-1], None)
                else:
                    node[path[-1]] = draw(HOSTILE_SCALARS)
            except (KeyError, IndexError, TypeError):
                continue  # an earlier mutation removed or replaced the way there
        return new

    return mutate()


def loads_or_refuses(read: Any, *args: Any) -> None:
    try:
        read(*args)
    except LlmsimError as exc:
        assert "\n" not in str(exc) or "\\n" in repr(str(exc))
    except RecursionError:
        pytest.fail("RecursionError")


# --- scenarios --------------------------------------------------------------------------------

SCENARIO_FILES = ["quickstart.yaml", "disaggregated.yaml", "chat_sessions.yaml", "diurnal_day.yaml"]
SCENARIO_TEXT = {n: (ROOT / "scenarios" / n).read_bytes() for n in SCENARIO_FILES}


@FUZZ
@given(data=st.data(), name=st.sampled_from(SCENARIO_FILES))
def test_scenario_bytes(data: st.DataObject, name: str, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(data.draw(byte_mutations(SCENARIO_TEXT[name])))
    loads_or_refuses(load_scenario, path)


@FUZZ
@given(data=st.data(), name=st.sampled_from(SCENARIO_FILES))
def test_scenario_values(data: st.DataObject, name: str) -> None:
    doc = yaml.safe_load(SCENARIO_TEXT[name])
    text = yaml.safe_dump(data.draw(value_mutations(doc)))
    loads_or_refuses(Scenario.from_yaml, text, "s.yaml")


def _prepared(text: str) -> None:
    """What ``llmsim validate`` does: load, then build the replicas and draw the requests."""
    sc = Scenario.from_yaml(text, "s.yaml")
    wl = sc.workload
    rate = getattr(wl.arrival, "max_rate", None) or getattr(wl.arrival, "mean_rate", 1.0)
    if (wl.num_requests or 0) > 500 or (wl.duration_s or 0) * rate > 500:
        return  # large but valid: drawing it is a run's work, not a reader's
    Simulation(sc)


SMALL = {
    "quickstart.yaml": ("num_requests", 60),
    "disaggregated.yaml": ("num_requests", 60),
    "chat_sessions.yaml": ("duration_s", 20),
}


@FUZZ
@given(data=st.data(), name=st.sampled_from(sorted(SMALL)))
def test_scenario_values_prepared(data: st.DataObject, name: str) -> None:
    doc = yaml.safe_load(SCENARIO_TEXT[name])
    key, value = SMALL[name]
    doc["workload"][key] = value
    text = yaml.safe_dump(data.draw(value_mutations(doc)))
    loads_or_refuses(_prepared, text)


@FUZZ
@given(
    key=st.sampled_from(["workload.arrival.rate", "name", "seed", "policy.max_num_seqs",
                         "engine.block_size", "workload.num_requests", "cluster.pools",
                         "metrics.warmup_s", "policy.kind", "model", "hardware"]),
    raw=st.one_of(st.text(max_size=30), HOSTILE_SCALARS.map(lambda v: json.dumps(v))),
)  # fmt: skip
def test_set_values(key: str, raw: str) -> None:
    loads_or_refuses(load_scenario, ROOT / "scenarios" / "quickstart.yaml", [f"{key}={raw}"])


# --- traces -----------------------------------------------------------------------------------

CSV_TRACE = b"timestamp,prompt_tokens,output_tokens\n" + b"".join(
    f"{i * 0.25},{100 + i},{5 + i % 7}\n".encode() for i in range(40)
)
JSONL_TRACE = b"".join(
    json.dumps({"timestamp": i * 250, "input_length": 100 + i, "output_length": 5,
                "hash_ids": [i, i + 1]}).encode() + b"\n"
    for i in range(40)
)  # fmt: skip
TRACES = {
    "csv": (CSV_TRACE, {"format": "csv"}),
    "mooncake": (JSONL_TRACE, {"format": "mooncake"}),
}


@FUZZ
@given(
    data=st.data(),
    kind=st.sampled_from(sorted(TRACES)),
    gz=st.booleans(),
    skip=st.booleans(),
)
def test_trace_bytes(data: st.DataObject, kind: str, gz: bool, skip: bool, tmp_path: Path) -> None:
    raw, opts = TRACES[kind]
    if gz:  # mutate the compressed bytes: truncated and corrupt archives
        raw = gzip.compress(raw, mtime=0)
    path = tmp_path / ("t.gz" if gz else "t.txt")
    path.write_bytes(data.draw(byte_mutations(raw)))
    cfg = TraceConfig(path=str(path), skip_bad_rows=skip, **opts)
    loads_or_refuses(read_trace, cfg)


@FUZZ
@given(rows=st.lists(st.lists(HOSTILE_SCALARS, min_size=3, max_size=3), min_size=1, max_size=6))
def test_trace_values(rows: list[list[Any]], tmp_path: Path) -> None:
    text = "timestamp,prompt_tokens,output_tokens\n" + "".join(
        ",".join(str(v) for v in row) + "\n" for row in rows
    )
    (tmp_path / "t.csv").write_text(text, encoding="utf-8", errors="surrogatepass")
    loads_or_refuses(read_trace, TraceConfig(path=str(tmp_path / "t.csv"), format="csv"))
    lines = "".join(
        json.dumps(dict(zip(["timestamp", "prompt_tokens", "output_tokens"], row, strict=True)))
        + "\n"
        for row in rows
    )
    (tmp_path / "t.jsonl").write_text(lines, encoding="utf-8", errors="surrogatepass")
    loads_or_refuses(read_trace, TraceConfig(path=str(tmp_path / "t.jsonl"), format="jsonl"))


# --- length and calibration CSVs ----------------------------------------------------------------

LENGTHS = b"tokens,other\n" + b"".join(f"{10 + i},{i}\n".encode() for i in range(30))
OPERATORS = (ROOT / "tests" / "data" / "hostile" / "cal_time_text.csv").read_bytes().replace(
    b"slow", b"0.25"
) + b"gemm,128,128,128,0.5\n"
STEPS = (
    b"prefill_tokens,prefill_seqs,decode_seqs,decode_context,time_ms\n"
    b"512,1,0,0,12.5\n0,0,8,4096,6.25\n256,2,4,2048,9.0\n"
)


@FUZZ
@given(data=st.data())
def test_length_csv_bytes(data: st.DataObject, tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_bytes(data.draw(byte_mutations(LENGTHS)))
    loads_or_refuses(read_column, str(path), "tokens")


@FUZZ
@given(data=st.data(), steps=st.booleans())
def test_calibration_csv_bytes(data: st.DataObject, steps: bool, tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(data.draw(byte_mutations(STEPS if steps else OPERATORS)))
    loads_or_refuses(sniff, path)
    loads_or_refuses(read_step_csv if steps else read_operator_csv, path)


DATA = ROOT / "llmsim" / "calibration" / "data"
PUBLISHED = {  # the first rows of shipped tables, and their readers
    "mlp": (
        gzip.decompress((DATA / "vidur" / "a100_mlp.csv.gz").read_bytes())[:3000],
        read_vidur_mlp,
    ),
    "all_reduce": (
        gzip.decompress((DATA / "vidur" / "a100_dgx_all_reduce.csv.gz").read_bytes())[:3000],
        read_vidur_all_reduce,
    ),
    "gemm": ((DATA / "aiconfigurator" / "h100_sxm_gemm.parquet").read_bytes(), read_aic_gemm),
}


@FUZZ
@given(data=st.data(), name=st.sampled_from(sorted(PUBLISHED)))
def test_published_table_bytes(data: st.DataObject, name: str, tmp_path: Path) -> None:
    raw, read = PUBLISHED[name]
    path = tmp_path / ("t.parquet" if name == "gemm" else "t.csv")
    path.write_bytes(data.draw(byte_mutations(raw)))
    loads_or_refuses(read, path)


# --- model config.json ----------------------------------------------------------------------------

HF = ["Llama-3.1-8B", "DeepSeek-V3", "Mixtral-8x7B", "Llama-4-Scout-17B-16E-FP8", "Phi-2"]
HF_TEXT = {n: (ROOT / "tests" / "data" / "hf_configs" / n / "config.json").read_bytes() for n in HF}


@FUZZ
@given(data=st.data(), name=st.sampled_from(HF))
def test_model_config_values(data: st.DataObject, name: str, tmp_path: Path) -> None:
    doc = json.loads(HF_TEXT[name])
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data.draw(value_mutations(doc))), encoding="utf-8")
    loads_or_refuses(from_hf_config, path)


@FUZZ
@given(data=st.data(), name=st.sampled_from(HF))
def test_model_config_bytes(data: st.DataObject, name: str, tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(data.draw(byte_mutations(HF_TEXT[name])))
    loads_or_refuses(from_hf_config, path)
