"""Every YAML example in docs/workloads.md is a valid piece of a workload section."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter

from llmsim.workload import ArrivalConfig, ClassRule, DatasetLengths, TraceConfig, WorkloadConfig

DOC = Path(__file__).resolve().parent.parent / "docs" / "workloads.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)


def check(data: dict[str, Any]) -> None:
    if "workload" in data:
        WorkloadConfig.model_validate(data["workload"])
        return
    for key, value in data.items():
        if key == "arrival":
            TypeAdapter(ArrivalConfig).validate_python(value)
        elif key == "trace":
            TraceConfig.model_validate(value)
        elif key == "classes":
            for rule in value:
                ClassRule.model_validate(rule)
        elif key == "lengths":
            DatasetLengths.model_validate(value)
        elif key not in ("num_requests", "duration_s"):
            raise AssertionError(f"unexpected key {key!r} in a docs example")


def test_docs_have_examples() -> None:
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_docs_yaml_example_is_valid(block: str) -> None:
    # a block of alternatives ("lengths: ..." several times) is checked line by line
    lines = block.strip().splitlines()
    if len(lines) > 1 and all(line.startswith(lines[0].split(":")[0] + ":") for line in lines):
        for line in lines:
            check(yaml.safe_load(line))
        return
    check(yaml.safe_load(block))
