"""Start-up cost: the command line's help and a roofline run import only what they use (no
simulator for ``--help``; no scipy, matplotlib or calibrated kernel tables for a roofline run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
