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
