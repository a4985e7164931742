"""The process around a run: the command line's help and a roofline run import only what they
use (no simulator for ``--help``; no scipy or matplotlib for a roofline run), ``llmsim run``
ends with everything printed and written, and a run leaves the garbage collector as it was."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

import llmsim

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("numpy", "pandas", "pyarrow", "scipy", "matplotlib", "simpy", "pydantic")


def _imported_after(code: str) -> set[str]:
    """Top-level packages among HEAVY imported by a fresh interpreter running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT)},
    ).stdout
    modules = json.loads(out.splitlines()[-1])
    return {m for m in modules if m in HEAVY} | {m for m in modules if m.startswith("llmsim.")}


def test_help_imports_no_simulator() -> None:
    code = (
        "import sys\nfrom llmsim.cli import app\nsys.argv = ['llmsim', '--help']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass"
    )
    loaded = _imported_after(code)
    assert not loaded & set(HEAVY), loaded
    assert "llmsim.engine" not in loaded and "llmsim.scenario" not in loaded


def test_roofline_run_needs_no_scipy_or_plots() -> None:
    code = (
        "import llmsim\nsc = llmsim.load_scenario('scenarios/quickstart.yaml', "
        "['workload.num_requests=5'])\nllmsim.simulate(sc)"
    )
    loaded = _imported_after(code)
    assert {"numpy", "pandas", "simpy"} <= loaded  # the probe did run the simulator
    assert not loaded & {"scipy", "matplotlib"}, loaded


def _llmsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmsim", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT)},
    )


def test_run_ends_with_its_output_and_files_complete(tmp_path: Path) -> None:
    """``llmsim run`` ends the process without the interpreter's teardown: what it printed and
    wrote must all be there."""
    done = _llmsim(
        "run", "scenarios/quickstart.yaml", "-s", "workload.num_requests=20", "-o", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    assert "Latency (ms)" in done.stdout and "wrote requests.parquet" in done.stdout
    assert done.stdout.rstrip().endswith("/")  # the last line, flushed before the exit
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["num_requests"] == 20
    assert len(pd.read_parquet(tmp_path / "requests.parquet")) == 20
    bad = _llmsim("run", "scenarios/quickstart.yaml", "-s", "workload.num_requests=-1")
    assert bad.returncode == 2 and "workload.num_requests" in bad.stderr


def test_run_leaves_the_garbage_collector_as_it_found_it() -> None:
    sc = llmsim.load_scenario(ROOT / "scenarios" / "quickstart.yaml", ["workload.num_requests=5"])
    assert gc.isenabled()
    llmsim.simulate(sc)
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()
    try:
        llmsim.simulate(sc)
        assert not gc.isenabled()
    finally:
        gc.enable()
