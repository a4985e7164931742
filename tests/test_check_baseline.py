"""The project's own regression gate: the shipped scenarios, simulated now, against the committed
baseline (``benchmarks/check_baseline.json``, rewritten with ``make check-baseline`` when a change
of results is deliberate)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from llmsim.cli import app

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("quickstart", "bursty_gamma")


def test_shipped_scenarios_match_the_committed_baseline(tmp_path: Path) -> None:
    args = [str(ROOT / "scenarios" / f"{name}.yaml") for name in SCENARIOS]
    baseline = ROOT / "benchmarks" / "check_baseline.json"
    result = CliRunner().invoke(
        app, ["check", *args, "--baseline", str(baseline), "--seeds", "5", "-j", "1"]
    )
    assert result.exit_code == 0, result.output
