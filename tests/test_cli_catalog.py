"""The catalog verbs' formats (table, csv, json), ``--version``, ``presets``, an example in every
verb's help, and progress lines of long commands."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from typer.testing import CliRunner

import llmsim
from llmsim.cli import app
from llmsim.cli.common import Steps

runner = CliRunner()
VERBS = ["run", "validate", "hardware", "models", "presets", "calibrate", "fidelity", "profile"]


def test_version() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.stdout == f"llmsim {llmsim.__version__}\n"


@pytest.mark.parametrize("verb", VERBS)
def test_help_has_an_example(verb: str) -> None:
    res = runner.invoke(app, [verb, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert re.search(rf"Examples?: llmsim {verb if verb != 'presets' else 'run'}\b", res.stdout)


def test_every_verb_is_registered() -> None:
    res = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    for verb in VERBS:
        assert re.search(rf"│ {verb}\s", res.stdout), verb


@pytest.mark.parametrize(
    ("verb", "names", "key"),
    [
        ("hardware", lambda: [h.name for h in llmsim.list_hardware()], "memory_gib"),
        ("models", lambda: [m.name for m in llmsim.list_models()], "kv_bytes_per_token"),
        ("presets", lambda: ["sglang", "tensorrt-llm", "vllm-0.6", "vllm-v1"], "block_size"),
    ],
)
def test_csv_and_json_hold_every_entry(verb: str, names, key: str) -> None:  # type: ignore[no-untyped-def]
    as_json = json.loads(runner.invoke(app, [verb, "--format", "json"]).stdout)
    as_csv = list(csv.DictReader(io.StringIO(runner.invoke(app, [verb, "-f", "csv"]).stdout)))
    assert [r["name"] for r in as_json] == [r["name"] for r in as_csv] == names()
    assert [str(r[key]) for r in as_json] == [r[key] for r in as_csv]


def test_json_values_are_unrounded() -> None:
    rows = {r["name"]: r for r in json.loads(runner.invoke(app, ["models", "-f", "json"]).stdout)}
    m = llmsim.get_model("Llama-3.1-8B")
    assert rows["Llama-3.1-8B"]["kv_bytes_per_token"] == m.kv_bytes_per_token == 131072
    assert rows["Llama-3.1-8B"]["params_b"] == round(m.num_params / 1e9, 3)


@pytest.mark.parametrize("verb", ["hardware", "models", "presets"])
def test_piped_table_is_not_cut(verb: str) -> None:
    # CliRunner's stdout is not a terminal: the table keeps its full width, one line per row
    out = runner.invoke(app, [verb]).stdout
    rows = json.loads(runner.invoke(app, [verb, "-f", "json"]).stdout)
    lines = out.splitlines()
    assert "…" not in out
    for r in rows:
        (line,) = [ln for ln in lines if re.match(rf"│ {re.escape(r['name'])}\s", ln)]
        assert len(line) > 0
    assert max(len(ln) for ln in lines) > 80  # wider than a piped console's default


def test_steps_print_progress_lines(capsys: pytest.CaptureFixture[str]) -> None:
    steps = Steps(2)
    steps("fitting A")
    steps("fitting B")
    err = capsys.readouterr().err
    assert re.search(r"\[1/2\] fitting A \(\d+ s\)", err)
    assert re.search(r"\[2/2\] fitting B \(\d+ s\)", err)
