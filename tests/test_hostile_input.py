"""Hostile input: every malformed file or option ends in one line naming the file and the
field (or line), with exit status 2 and no traceback; and ``validate`` refuses what ``run``
refuses.

The corpus lives in tests/data/hostile/: cases.yaml lists each command and the strings its
error line must hold.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from llmsim.cli import app

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "hostile"
CASES = yaml.safe_load((CORPUS / "cases.yaml").read_text(encoding="utf-8"))


def _id(case: dict[str, object]) -> str:
    args = [str(a) for a in case["args"]]  # type: ignore[attr-defined]
    return " ".join(args)[:80]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the corpus, so that a case that wrongly succeeds writes nowhere that stays."""
    folder = tmp_path_factory.mktemp("hostile") / "corpus"
    shutil.copytree(CORPUS, folder)
    return folder


def one_line_error(result: object) -> str:
    """The single error line of a refused command (asserting that there is just one)."""
    exc = result.exception  # type: ignore[attr-defined]
    assert exc is None or isinstance(exc, SystemExit), f"traceback: {exc!r}"
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def test_corpus_covers_every_input_class() -> None:
    verbs = {c["args"][0] for c in CASES}
    assert verbs == {"run", "validate", "calibrate", "fidelity"}
    names = " ".join(str(a) for c in CASES for a in c["args"])
    names += " ".join(p.name for p in CORPUS.iterdir())
    for kind in (".config.json", ".gpu.yaml", ".csv", ".csv.gz", ".jsonl", "--set", "--out"):
        assert kind in names, kind
    assert len(CASES) > 250


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_hostile_case_ends_in_one_line(
    case: dict[str, list[str]], corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(corpus)
    result = CliRunner().invoke(app, case["args"])
    line = one_line_error(result)
    for want in case["expect"]:
        assert want in line, f"{want!r} not in {line!r}"
    assert not (corpus / "runs").exists()


def test_validate_refuses_every_scenario_run_refuses() -> None:
    """Each scenario case is listed for both verbs, with the same expected message."""
    runs = {
        (c["args"][1], tuple(c["args"][2:])): c["expect"] for c in CASES if c["args"][0] == "run"
    }
    checks = {
        (c["args"][1], tuple(c["args"][2:])): c["expect"]
        for c in CASES
        if c["args"][0] == "validate"
    }
    without_out = {k: v for k, v in runs.items() if "--out" not in k[1]}
    assert without_out == checks


def test_oversized_scenario_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("big.yaml").write_text("# " + "x" * (5 * 2**20) + "\n")
    line = one_line_error(CliRunner().invoke(app, ["validate", "big.yaml"]))
    assert "big.yaml: file too large (5,242,883 bytes; at most 4,194,304)" in line


def test_scenario_folder_and_fifo_are_refused_without_blocking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    os.mkfifo("pipe.yaml")  # reading it would wait for a writer forever
    line = one_line_error(CliRunner().invoke(app, ["validate", "pipe.yaml"]))
    assert line == "error: pipe.yaml: not a regular file (a device, pipe or socket)"
    (tmp_path / "model.json").mkdir()
    Path("s.yaml").write_text(
        "model: model.json\nhardware: H100-SXM\nworkload: {num_requests: 1}\n"
    )
    line = one_line_error(CliRunner().invoke(app, ["validate", "s.yaml"]))
    assert "model.json: is a folder, not a file" in line


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def test_subprocess_binary_scenario_and_ascii_console(tmp_path: Path) -> None:
    """As a user's shell sees them: a non-UTF-8 scenario on an ASCII-only console."""
    (tmp_path / "bin.yaml").write_bytes(b"name: caf\xe9\n")
    env = _env(PYTHONIOENCODING="ascii")
    done = subprocess.run(
        [sys.executable, "-m", "llmsim", "validate", "bin.yaml"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: bin.yaml: line 1: not UTF-8 text (byte 0xe9 at offset 9); save the file as UTF-8"
    ]
    listing = subprocess.run(
        [sys.executable, "-m", "llmsim", "hardware"],
        cwd=tmp_path, env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    assert b"H100-SXM" in listing.stdout and b"Traceback" not in listing.stderr


def test_subprocess_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """``llmsim run ... | head -2``: the command ends as ``cat`` would, killed by SIGPIPE,
    with nothing on stderr; the run's files are written before the summary is printed."""
    shutil.copy(CORPUS / "ok.yaml", tmp_path / "ok.yaml")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmsim", "run", "ok.yaml", "--out", "out"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader goes away before the summary is printed, as head does
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == -13  # SIGPIPE
    assert err == b""
    assert (tmp_path / "out" / "summary.json").is_file()
