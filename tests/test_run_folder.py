"""A run's output folder appears whole or not at all (llmsim.atomic.atomic_folder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from llmsim.atomic import atomic_folder, check_folder
from llmsim.engine import Simulation
from llmsim.errors import ConfigError
from llmsim.result import RUN_FILES, SimulationResult
from tests.conftest import make_scenario


@pytest.fixture(scope="module")
def result() -> SimulationResult:
    return Simulation(make_scenario(name="folder")).run()


def test_save_replaces_a_previous_run_whole(result: SimulationResult, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result.save(out)
    (out / "pools.csv").write_text("stale table of an earlier cluster run\n")
    paths = result.save(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths.values())
    assert "pools.csv" not in {p.name for p in out.iterdir()}  # not left from the older run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no hidden leftovers


def test_interrupted_save_leaves_the_previous_run(
    result: SimulationResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    result.save(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []

    def dies_on_second_table(self: pd.DataFrame, path: object, **kw: object) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as Ctrl-C between two files
        Path(str(path)).write_bytes(b"new")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", dies_on_second_table)
    with pytest.raises(KeyboardInterrupt):
        result.save(out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_partial_folders_of_dead_writers_are_removed(
    result: SimulationResult, tmp_path: Path
) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    stale = tmp_path / f".run.partial-{pid}-abc123"
    stale.mkdir()
    (stale / "requests.parquet").write_bytes(b"half")
    live = tmp_path / f".run.partial-{os.getpid()}-def456"  # a save in progress: kept
    live.mkdir()
    result.save(tmp_path / "run")
    assert not stale.exists()
    assert live.exists()


def test_a_folder_holding_other_files_is_refused_before_writing(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me\n")
    (out / "summary.json").write_text("{}")

    def never(_: Path) -> None:
        raise AssertionError("nothing may be written")

    with pytest.raises(
        ConfigError, match=r"mine: --out: holds files a run does not write \(notes\.txt\)"
    ):
        atomic_folder(out, never, RUN_FILES)
    assert (out / "notes.txt").read_text() == "keep me\n"
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_folder(out / "notes.txt", RUN_FILES)
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_folder(out / "notes.txt" / "below", RUN_FILES)


def test_saved_summary_is_the_run_summary(result: SimulationResult, tmp_path: Path) -> None:
    paths = result.save(tmp_path / "run")
    summary = json.loads(paths["summary"].read_text())
    assert summary["completed"] == result.summary["completed"] == 200
    assert oct(paths["summary"].stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
