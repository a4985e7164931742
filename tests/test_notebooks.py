"""Every notebook under notebooks/ executes top to bottom without an error (slow), and the
numbers their stored outputs show are what the code gives today (fast: a few runs, no kernel)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import llmsim
from llmsim.sweep import saturation_throughput

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ should hold at least the quickstart"


def stored_text(name: str, contains: str) -> str:
    """The stored plain-text output (a result or printed stream) of the code cell whose source
    contains ``contains``."""
    nb = json.loads((ROOT / "notebooks" / name).read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and contains in "".join(cell["source"]):
            texts = []
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream":
                    texts.append("".join(out["text"]))
                elif "text/plain" in out.get("data", {}):
                    texts.append("".join(out["data"]["text/plain"]))
            return "\n".join(texts)
    raise AssertionError(f"{name}: no code cell with {contains!r}")


def test_quickstart_summary_is_what_a_fresh_run_gives() -> None:
    text = stored_text("quickstart.ipynb", "result.summary_frame")
    scenario = llmsim.load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    fresh = llmsim.simulate(scenario).summary_frame.round(1)
    for metric in ("ttft", "tpot", "itl", "e2el", "queue"):
        row = re.search(rf"^{metric}\s+(.*)$", text, flags=re.M)
        assert row is not None, f"{metric} missing from the stored output:\n{text}"
        stored = [float(v) for v in row.group(1).split()]
        assert stored == fresh.loc[metric, ["mean", "p50", "p90", "p99"]].tolist(), metric


def test_tradeoffs_saturation_is_what_a_fresh_run_gives() -> None:
    text = stored_text("tradeoffs.ipynb", 'load("load_hockey_stick")')
    found = re.search(r"saturation: ([\d.]+) req/s", text)
    assert found is not None, text
    sc = llmsim.load_scenario(ROOT / "scenarios" / "tradeoffs" / "load_hockey_stick.yaml")
    assert float(found.group(1)) == round(saturation_throughput(sc), 2)


def test_readme_quotes_the_notebooks_crossover_and_capacities() -> None:
    text = stored_text("tradeoffs.ipynb", "crossover_rate(spec, plain")
    found = re.search(r"crossover at ([\d.]+) req/s; capacity ([\d.]+) \(plain\) vs ([\d.]+)", text)
    assert found is not None, text
    crossover, plain, spec = found.groups()
    readme = (ROOT / "README.md").read_text()
    assert f"crossover at {crossover} req/s; capacity {spec} vs {plain} req/s" in readme


def test_capacity_plan_is_what_a_fresh_fleet_gives() -> None:
    """The stored recommendation: the smallest H100 fleet passing under both seeds."""
    from llmsim.hardware import get_hardware
    from llmsim.plan import judge, parse_slo

    text = stored_text("capacity_planning.ipynb", "recommendation(plans)")
    found = re.search(r"Recommended: H100, (\d+) replicas \(\d+ GPUs\), \$([\d.]+)/hour", text)
    assert found is not None, text
    n, price = int(found.group(1)), float(found.group(2))
    assert price == pytest.approx(n * get_hardware("H100-SXM").price_per_gpu_hour_usd)
    scenario = llmsim.load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    slos = [parse_slo("ttft:p99<2000"), parse_slo("tpot:p99<100")]

    def passes(replicas: int, seed: int) -> bool:
        sc = scenario.with_overrides(
            {"data_parallel": replicas, "workload.arrival.rate": 20, "seed": seed}
        )
        return judge(llmsim.simulate(sc).summary, slos, 20)[0]

    seeds = (scenario.seed, scenario.seed + 1)
    assert all(passes(n, s) for s in seeds)
    assert not all(passes(n - 1, s) for s in seeds)


def test_policy_check_verdict_is_what_a_fresh_check_gives() -> None:
    from llmsim.check import check_scenarios

    text = stored_text("policy_check.ipynb", "ttft.describe()")
    found = re.search(
        r"exit status (\d)\np99_ttft_ms: (.+) (regression|no significant change)", text
    )
    assert found is not None, text
    base = llmsim.load_scenario(ROOT / "scenarios" / "quickstart.yaml").with_overrides(
        {"workload.num_requests": 600}
    )
    cand = base.with_overrides({"policy.max_num_seqs": 8})
    report = check_scenarios([(base, cand)], seeds=5, tolerance=0.05)
    ttft = next(c for c in report.checks if c.metric == "p99_ttft_ms")
    assert found.groups() == (str(int(not report.passed)), ttft.describe(), ttft.verdict)


def test_trace_replay_ttft_is_what_a_fresh_replay_gives() -> None:
    text = stored_text("trace_replay.ipynb", "overloaded: {bool(")
    scenario = llmsim.load_scenario(ROOT / "scenarios" / "azure_conv_replay.yaml")
    for speed in (1, 4):
        found = re.search(rf"^{speed}x: p99 TTFT ([\d.]+) ms, overloaded: (\w+)$", text, re.M)
        assert found is not None, text
        s = llmsim.simulate(scenario.with_overrides({"workload.trace.time_scale": speed})).summary
        assert float(found.group(1)) == round(s["p99_ttft_ms"], 1)
        assert found.group(2) == str(bool(s["overloaded"]))
