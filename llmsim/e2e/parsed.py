"""What a run file holds once read: the workload it sent and what its client measured, with
the notes on what the replay cannot model; shared by the readers of each format."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from llmsim.config_io import validate_data
from llmsim.workload import WorkloadConfig

TimeUnit = Literal["s", "ms"]


@dataclass
class ParsedRun:
    """A run file's workload, its measured metrics (whole run) and the notes on what the replay
    does not model."""

    workload: WorkloadConfig
    measured: dict[str, float]
    notes: list[str] = field(default_factory=list)


def count_requests(n: int) -> str:
    return f"{n} request{'s' if n != 1 else ''}"


def fmt_number(x: float) -> str:
    return f"{x:.6g}"


def short_value(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def workload_config(data: dict[str, Any], src: str) -> WorkloadConfig:
    return validate_data(WorkloadConfig, data, src)
