"""What a simulation returns, and how it is written to disk."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from llmsim.atomic import atomic_folder, check_folder
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

    @cached_property
    def provenance(self) -> list[str]:
        """What priced the run: per replica configuration, the GPUs, whether their hardware
        profile is calibrated, the cost model and the engine preset."""
        from llmsim.diagnostics import provenance

        return provenance(self.scenario)

    @cached_property
    def warnings(self) -> list[str]:
        """What the averages do not say, one line each: rejected requests, overload, preemption,
        skipped trace rows, a calibrated cost model extrapolating beyond its measurements."""
        from llmsim.diagnostics import run_warnings

        return run_warnings(self)

    def summary_json(self) -> str:
        """summary.json's text: the summary (NaN as null), with ``priced_by`` and ``warnings``
        as lists of lines, keys sorted."""
        record: dict[str, Any] = {**json_ready(self.summary), "priced_by": self.provenance}
        record["warnings"] = self.warnings
        return json.dumps(record, indent=2, sort_keys=True) + "\n"

    @property
    def summary_frame(self) -> pd.DataFrame:
        """Latency metrics as rows (ttft, tpot, itl, e2el, queue) x (mean, p50, p90, p99), ms."""
        return summary_frame(self.summary)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write requests.parquet, steps.parquet, summary.json (the summary, plus ``priced_by``
        and ``warnings`` as lists of lines) and scenario.yaml (and pools.csv and replicas.csv
        for runs of several replicas) as one folder, swapped in whole: an interrupted save
        leaves the previous run's folder as it was. A folder holding other files is refused (a
        ConfigError), before anything is written."""
        out = Path(out_dir)
        names = {
            "requests": "requests.parquet",
            "steps": "steps.parquet",
            "summary": "summary.json",
            "scenario": "scenario.yaml",
        }
        tables = {"pools": self.by_pool, "replicas": self.by_replica}
        names.update({k: f"{k}.csv" for k, t in tables.items() if t is not None})

        def write(folder: Path) -> None:
            self.requests.to_parquet(folder / names["requests"], index=False)
            self.steps.to_parquet(folder / names["steps"], index=False)
            (folder / names["summary"]).write_text(self.summary_json(), encoding="utf-8")
            (folder / names["scenario"]).write_text(self.scenario.to_yaml(), encoding="utf-8")
            for key, table in tables.items():
                if table is not None:
                    table.to_csv(folder / names[key])

        atomic_folder(out, write, RUN_FILES)
        return {k: out / v for k, v in names.items()}


RUN_FILES = (
    "requests.parquet",
    "steps.parquet",
    "summary.json",
    "scenario.yaml",
    "pools.csv",
    "replicas.csv",
)
"""Every file a run's output folder may hold: a folder with only these can be replaced."""


def check_output_folder(out_dir: str | Path) -> None:
    """Refuse, before a run, an output folder that ``SimulationResult.save`` would refuse."""
    check_folder(Path(out_dir), RUN_FILES)


def json_ready(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary as JSON can hold it: NaN (which JSON lacks) as None, other values as they are."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()}
