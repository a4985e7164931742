"""The points of a sweep: ``--vary`` axes, each a range or a list, and their product.

An axis is written ``path=values`` with the same dotted paths as ``--set``:

* ``workload.rate=1:40:20``: 20 evenly spaced values from 1 to 40, both ends included
  (integers when both ends are integers and the step is whole);
* ``policy.max_num_seqs=64,128,256``: a list; each item is read as YAML like a ``--set``
  value (numbers, booleans, names);
* a single value (``policy.chunked_prefill=true``) is an axis of one point.

Several axes make every combination, the first axis varying slowest.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmsim.errors import ConfigError
from llmsim.scenario import parse_value

MAX_POINTS = 100_000
"""More points than this is a typo (``1:40:2000``), not a sweep."""


@dataclass(frozen=True)
class Axis:
    """One varied field and its values, in order."""

    path: str
    values: tuple[Any, ...]


def _number(raw: str, spec: str, what: str) -> float:
    value = parse_value(raw)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            f"{what} '{raw}' of '{spec}' is not a number; a range is start:stop:num, "
            "e.g. workload.rate=1:40:20",
            field="--vary",
        )
    return float(value)


def _range(raw: str, spec: str) -> tuple[Any, ...]:
    parts = raw.split(":")
    if len(parts) != 3:
        raise ConfigError(
            f"range '{raw}' of '{spec}' must be start:stop:num, e.g. workload.rate=1:40:20",
            field="--vary",
        )
    start = _number(parts[0], spec, "start")
    stop = _number(parts[1], spec, "stop")
    num_value = parse_value(parts[2])
    if isinstance(num_value, bool) or not isinstance(num_value, int) or num_value < 1:
        raise ConfigError(
            f"num '{parts[2]}' of '{spec}' must be a whole number of points, at least 1",
            field="--vary",
        )
    num = int(num_value)
    values = np.linspace(start, stop, num)
    whole = all(isinstance(parse_value(p), int) for p in parts[:2])
    if whole and (num == 1 or (stop - start) % (num - 1) == 0):
        return tuple(round(float(v)) for v in values)
    return tuple(float(v) for v in values)


def parse_axis(spec: str) -> Axis:
    """``"path=1:40:20"`` or ``"path=a,b,c"`` -> an :class:`Axis`."""
    if "=" not in spec:
        raise ConfigError(
            f"'{spec}' must look like field.path=start:stop:num or field.path=a,b,c",
            field="--vary",
        )
    path, raw = (s.strip() for s in spec.split("=", 1))
    if not path or not raw:
        raise ConfigError(
            f"'{spec}' needs a field path and values, e.g. workload.rate=1:40:20",
            field="--vary",
        )
    if ":" in raw and "," not in raw and not raw.lstrip().startswith(("{", "[")):
        values = _range(raw, spec)
    else:
        values = tuple(parse_value(item) for item in raw.split(","))
    return Axis(path, values)


def parse_axes(specs: list[str]) -> list[Axis]:
    """Every ``--vary``; the same path twice is refused."""
    axes = [parse_axis(s) for s in specs]
    seen: set[str] = set()
    for axis in axes:
        if axis.path in seen:
            raise ConfigError(
                f"'{axis.path}' is varied twice; give all its values in one --vary",
                field="--vary",
            )
        seen.add(axis.path)
    total = int(np.prod([len(a.values) for a in axes])) if axes else 0
    if total > MAX_POINTS:
        raise ConfigError(
            f"{total:,} points is more than {MAX_POINTS:,}; use fewer values per --vary",
            field="--vary",
        )
    return axes


def points(axes: list[Axis]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, as dotted-path overrides, first axis slowest."""
    if not axes:
        return [{}]
    return [
        dict(zip((a.path for a in axes), combo, strict=True))
        for combo in itertools.product(*(a.values for a in axes))
    ]
