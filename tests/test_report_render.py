"""The plan's HTML report (and the recommendations report) opened in headless Chromium: every
image decodes, every table lays out with its rows, and a screenshot is not blank. Skipped
where no Chromium is installed (Debian: ``apt-get install chromium``; ``.ci/run`` installs it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import llmsim
from llmsim.plan import Candidate, plan_capacity
from llmsim.recommend_report import to_html as recommendations_html
from llmsim.report import Question, to_html
from tests.test_plan import LOOSE, SCENARIO
from tests.test_recommend import _result, _summary

BROWSERS = ("chromium", "chromium-browser", "google-chrome")

# Appended to a copy of the page: after the load event, what the browser made of each image
# and table, as JSON in a <pre> that --dump-dom prints.
PROBE = """<script>window.addEventListener("load", () => {
  const imgs = [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]);
  const tables = [...document.querySelectorAll("table")].map(
    t => [t.rows.length, t.rows[0].cells.length, t.getBoundingClientRect().height]);
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({imgs, tables});
  document.body.appendChild(pre);
});</script>"""


@pytest.fixture(scope="module")
def chromium() -> str:
    found = next((p for b in BROWSERS if (p := shutil.which(b))), None)
    if found is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")
    return found


def _browse(browser: str, *args: str) -> str:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def _rendered(browser: str, page: str, folder: Path) -> dict[str, list[list[float]]]:
    probe = folder / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    dom = _browse(browser, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom)
    assert m is not None, dom[-2000:]
    out: dict[str, list[list[float]]] = json.loads(m.group(1))
    return out


def _screenshot(browser: str, page: Path, shot: Path) -> np.ndarray:
    _browse(browser, "--window-size=1280,1800", f"--screenshot={shot}", page.as_uri())
    return np.asarray(Image.open(shot).convert("L"), dtype=float)


def _check(browser: str, html: str, folder: Path, images: int, tables: list[int]) -> None:
    seen = _rendered(browser, html, folder)
    assert len(seen["imgs"]) == images
    for complete, width, height in seen["imgs"]:
        assert complete and width > 300 and height > 200  # decoded, at the figure's size
    assert [int(rows) for rows, _, _ in seen["tables"]] == tables
    for _rows, cells, height in seen["tables"]:
        assert cells >= 4 and height > 40
    page = folder / "report.html"
    page.write_text(html)
    pixels = _screenshot(browser, page, folder / "report.png")
    assert pixels.shape == (1800, 1280)
    # Text, table borders and plotted lines: far from a blank page.
    assert (pixels < 128).mean() > 0.01 and pixels.std() > 20


def test_plan_report_renders(chromium: str, tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text(SCENARIO)
    scenario = llmsim.load_scenario(tmp_path / "fleet.yaml")
    cands = [
        Candidate("H100", {"hardware": "H100-SXM"}),
        Candidate("A100", {"hardware": "A100-80GB"}),
    ]
    plans = plan_capacity(scenario, cands, LOOSE, 15.0, seeds=1)
    html = to_html(plans, Question("fleet", "Llama-3.1-8B", 15.0, LOOSE, 1, "constant"))
    _check(chromium, html, tmp_path, images=2, tables=[3])  # a header and two candidates


def test_recommendations_report_renders(chromium: str, tmp_path: Path) -> None:
    r = _result([
        ("note", ["a", "b"], [_summary(300), _summary(320)]),
        ("best", ["b"], [_summary(100), _summary(120)]),
        ("misses", ["c"], [_summary(600), _summary(900)]),
    ])  # fmt: skip
    _check(chromium, recommendations_html([r]), tmp_path, images=1, tables=[2, 4])
