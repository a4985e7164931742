"""llmsim.plots: readable labels, legends for every series, a note for lines that coincide, a
layout whose panels do not overlap, and the model and GPU on the figure."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.layout_engine import ConstrainedLayoutEngine

import llmsim
from llmsim import plots

ROOT = Path(__file__).resolve().parent.parent
SWEEP = pd.DataFrame({"policy.batch_size": [1, 2, 4], "request_throughput": [1.0, 1.8, 3.1]})


@pytest.fixture(autouse=True)
def _close() -> None:
    yield
    plt.close("all")


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("p99_ttft_ms", "p99 TTFT (ms)"),
        ("median_e2el_ms", "median E2E latency (ms)"),
        ("p99.9_itl_ms", "p99.9 ITL (ms)"),
        ("policy.batch_size", "batch size (requests)"),
        ("engine.block_size", "block size"),
        ("workload.rate", "offered load (req/s)"),
    ],
)
def test_labels_are_readable(key: str, text: str) -> None:
    assert plots.label(key) == text


def test_a_single_series_keeps_its_label_and_the_axes_a_title() -> None:
    ax = plots.curves({"offline": SWEEP}, "policy.batch_size", "request_throughput")
    legend = ax.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["offline"]
    assert ax.get_title() == "throughput (req/s) vs batch size (requests)"
    assert ax.get_xlabel() == "batch size (requests)"


def test_coinciding_lines_are_said_so() -> None:
    other = SWEEP.assign(request_throughput=SWEEP["request_throughput"] * 1.5)
    sweeps = {"dynamic": SWEEP, "static": SWEEP.copy(), "continuous": other}
    ax = plots.curves(sweeps, "policy.batch_size", "request_throughput")
    names = [t.get_text() for t in ax.get_legend().get_texts()]
    assert names == ["dynamic", "static (same as dynamic)", "continuous"]
    styles = [line.get_linestyle() for line in ax.get_lines()]
    assert styles == ["-", "--", "-"]


def test_scenario_names_model_and_gpu() -> None:
    sc = llmsim.load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    axes = plots.grid(2, cols=2, title="Load sweep", scenario=sc)
    fig = axes[0].get_figure(root=True)
    assert fig is not None and fig._suptitle is not None
    assert fig._suptitle.get_text() == "Load sweep\nLlama-3.1-8B on 1x H100-SXM"
    ax = plots.bars({"a": 1.0, "b": 2.0}, "mean_batch_size", scenario=sc)
    assert "H100-SXM" in ax.get_title() and "Llama-3.1-8B" in ax.get_title()


def test_grid_panels_do_not_overlap() -> None:
    long = "throughput (req/s)"
    axes = plots.grid(6, cols=3, size=(3.0, 2.2), title="six panels")
    for ax in axes:
        ax.plot([0, 1e6], [0, 1e6])
        ax.set_ylabel(long)
        ax.set_xlabel("x label")
        ax.set_title("panel title")
    fig = axes[0].get_figure(root=True)
    assert fig is not None and isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    boxes = [ax.get_tightbbox(renderer) for ax in axes]
    for a, b in combinations(boxes, 2):
        assert not a.overlaps(b)


def test_over_time_draws_each_windows_quantile() -> None:
    # Two windows of 10 s: TTFTs 0.1..0.4 s, then 1..3 s; a rejected request (NaN) left out.
    frame = pd.DataFrame({"arrival": [1, 2, 3, 4, 12, 15, 19, 18],
                          "ttft": [0.1, 0.2, 0.3, 0.4, 1.0, 2.0, 3.0, float("nan")]})  # fmt: skip
    ax = plots.over_time({"1x": frame}, quantile=0.5, window_s=10)
    (line,) = ax.get_lines()
    assert line.get_xdata().tolist() == [5.0, 15.0]
    assert line.get_ydata().tolist() == pytest.approx([250.0, 2000.0])  # medians, in ms
    assert ax.get_ylabel() == "p50 TTFT (ms), 10 s windows"
    assert ax.get_title() == "p50 TTFT over time" and ax.get_legend() is not None
