"""A check's verdicts as Markdown (a pull-request comment) and JUnit XML (CI test reports)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from llmsim.check import CONFIDENCE, CheckReport, MetricCheck
from llmsim.render import markdown_table


def headline(report: CheckReport) -> str:
    """``PASS: no significant regression`` or ``FAIL: 2 regressions (...)``."""
    bad = report.regressions
    if not bad:
        return "PASS: no significant regression"
    names = ", ".join(f"{c.scenario} {c.metric}" for c in bad)
    return f"FAIL: {len(bad)} regression{'s' if len(bad) > 1 else ''} ({names})"


def method(report: CheckReport) -> str:
    return (
        f"{report.seeds} paired runs per side (the scenario's seed and the next ones); "
        f"change of the mean with a "
        f"{CONFIDENCE:.0%} paired bootstrap interval; a regression is an interval wholly "
        "worse than the tolerance; failed or rejected requests regress on any increase."
    )


def mean(values: tuple[float, ...]) -> str:
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if not x.size:
        return "-"
    m = float(x.mean())
    return f"{m:,.3g}" if abs(m) < 100 else f"{m:,.0f}"


def tolerance(c: MetricCheck) -> str:
    return "any increase" if c.failures else f"{c.tolerance:.1%}"


def to_markdown(report: CheckReport) -> str:
    head = ("scenario", "metric", "baseline", "candidate", "change [CI]", "tolerance", "verdict")
    rows = [
        [c.scenario, f"`{c.metric}`", mean(c.baseline), mean(c.candidate), c.describe(),
         tolerance(c), f"**{c.verdict}**" if c.regressed else c.verdict]
        for c in report.checks
    ]  # fmt: skip
    lines = [f"### llmsim check: {headline(report)}", "", method(report), ""]
    return "\n".join(lines + markdown_table(head, rows, right=(2, 3, 5))) + "\n"


def to_junit(report: CheckReport) -> str:
    """One test case per scenario and metric; a regression is a failure."""
    suite = ET.Element(
        "testsuite",
        name="llmsim check",
        tests=str(len(report.checks)),
        failures=str(len(report.regressions)),
        errors="0",
        skipped=str(sum(1 for c in report.checks if c.verdict == "no data")),
    )
    for c in report.checks:
        cls = f"llmsim.check.{c.scenario}"
        case = ET.SubElement(suite, "testcase", classname=cls, name=c.metric)
        text = (
            f"baseline {mean(c.baseline)}, candidate {mean(c.candidate)}: {c.describe()}, "
            f"tolerance {tolerance(c)}: {c.verdict}"
        )
        if c.regressed:
            ET.SubElement(case, "failure", message=text, type="regression").text = method(report)
        elif c.verdict == "no data":
            ET.SubElement(case, "skipped", message=text)
        else:
            ET.SubElement(case, "system-out").text = text
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
