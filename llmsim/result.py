"""What a simulation returns, and how it is written to disk."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from llmsim.atomic import atomic_write, atomic_write_text
from llmsim.kv_cache import KVBudget
from llmsim.metrics import Weighted, summary_frame
from llmsim.scenario import Scenario


@dataclass(frozen=True)
class SimulationResult:
    """Tables and summary of one run.

    ``requests``: one row per request; ``steps``: one row per engine step (all replicas);
    ``summary``: flat dict of metrics with the names serving benchmarks use (``mean_ttft_ms``,
    ``p99_itl_ms``, ``request_throughput``...); ``itl``: the pooled inter-token gaps of the
    measured requests, in seconds, as distinct values with counts; ``window``: the measurement
    window (seconds); ``by_pool`` / ``by_replica``: the same summary per pool and per replica
    (a row each), for runs with more than one replica.
    """

    scenario: Scenario
    requests: pd.DataFrame
    steps: pd.DataFrame
    summary: dict[str, float]
    kv: list[KVBudget] = field(default_factory=list)
    itl: Weighted | None = None
    window: tuple[float, float] = (0.0, 0.0)
    by_pool: pd.DataFrame | None = None
    by_replica: pd.DataFrame | None = None

    @property
    def provenance(self) -> list[str]:
        """What priced the run: per replica configuration, the GPUs, whether their hardware
        profile is calibrated, the cost model and the engine preset."""
        from llmsim.diagnostics import provenance

        return provenance(self.scenario)

    @property
    def warnings(self) -> list[str]:
        """What the averages do not say, one line each: rejected requests, overload, preemption,
        skipped trace rows, a calibrated cost model extrapolating beyond its measurements."""
        from llmsim.diagnostics import run_warnings

        return run_warnings(self)

    def summary_json(self) -> str:
        """summary.json's text: the summary (NaN as null), with ``priced_by`` and ``warnings``
        as lists of lines, keys sorted."""
        record: dict[str, Any] = {**_json_ready(self.summary), "priced_by": self.provenance}
        record["warnings"] = self.warnings
        return json.dumps(record, indent=2, sort_keys=True) + "\n"

    @property
    def summary_frame(self) -> pd.DataFrame:
        """Latency metrics as rows (ttft, tpot, itl, e2el, queue) x (mean, p50, p90, p99), ms."""
        return summary_frame(self.summary)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write requests.parquet, steps.parquet, summary.json (the summary, plus ``priced_by``
        and ``warnings`` as lists of lines) and scenario.yaml atomically."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "requests": out / "requests.parquet",
            "steps": out / "steps.parquet",
            "summary": out / "summary.json",
            "scenario": out / "scenario.yaml",
        }
        atomic_write(paths["requests"], lambda p: self.requests.to_parquet(p, index=False))
        atomic_write(paths["steps"], lambda p: self.steps.to_parquet(p, index=False))
        atomic_write_text(paths["summary"], self.summary_json())
        atomic_write_text(paths["scenario"], self.scenario.to_yaml())
        for name, table in (("pools", self.by_pool), ("replicas", self.by_replica)):
            if table is not None:
                paths[name] = out / f"{name}.csv"
                atomic_write(paths[name], table.to_csv)
        return paths


def _json_ready(summary: dict[str, float]) -> dict[str, Any]:
    """NaN is not JSON: write it as null."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()}
