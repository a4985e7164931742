"""Finished runs kept on disk, keyed by the scenario that produced them.

A key is the SHA-256 of the resolved scenario (every field spelled out) and the llmsim version, so
two runs share a key exactly when they would give the same result. Each record is one small JSON
file written atomically: a run interrupted at any moment leaves every finished record whole and
none half-written. What the scenario refers to by name (a trace file, a custom policy's code) is
not part of the key: after changing those, start from an empty folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from llmsim.atomic import atomic_write_text
from llmsim.scenario import Scenario


def scenario_digest(scenario: Scenario, *, seed: bool = True, prefix: str = "") -> str:
    """SHA-256 (hex) of ``prefix`` and the resolved scenario as JSON, every field, keys
    sorted; ``seed=False`` leaves the seed out (what a check baseline was computed for, whatever
    its seeds)."""
    data = scenario.model_dump(mode="json")
    if not seed:
        data.pop("seed", None)
    text = prefix + json.dumps(data, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def scenario_key(scenario: Scenario) -> str:
    """The cache key of a resolved scenario: its digest with the llmsim version."""
    from llmsim import __version__

    return scenario_digest(scenario, prefix=f"llmsim {__version__}\n")


class RunCache:
    """Records in ``folder``, one ``<key>.json`` each."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key``, or None (also for an unreadable file, which the
        next ``put`` replaces)."""
        try:
            record = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        text = json.dumps(record, indent=1) + "\n"  # key order kept: it orders the columns
        atomic_write_text(self.path(key), text)
