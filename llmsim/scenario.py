"""The scenario: one YAML file (or Python object) that says everything about a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from llmsim.config_io import parse_yaml, read_yaml, validate_data
from llmsim.cost import CostConfig, RooflineConfig
from llmsim.errors import ConfigError, LlmsimError
from llmsim.hardware import get_hardware
from llmsim.metrics import MetricsConfig
from llmsim.models import get_model
from llmsim.policies import ContinuousConfig, PolicyConfig
from llmsim.workload import WorkloadConfig


class EngineConfig(BaseModel):
    """Scenario section ``engine``: memory settings and the step-time model of each replica."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    block_size: int = Field(default=16, gt=0, description="Tokens per KV block.")
    kv_blocks: int | None = Field(
        default=None, gt=0, description="Override the derived KV capacity (blocks per replica)."
    )
    max_model_len: int | None = Field(
        default=None, gt=0, description="Longest prompt + output accepted; default: the model's."
    )
    cost: CostConfig = Field(default_factory=RooflineConfig)


class Scenario(BaseModel):
    """A complete, validated description of one simulation run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "scenario"
    description: str = ""
    seed: int = Field(default=0, ge=0)
    model: str
    hardware: str
    tensor_parallel: int = Field(default=1, ge=1, description="GPUs per replica.")
    engine: EngineConfig = Field(default_factory=EngineConfig)
    policy: PolicyConfig = Field(default_factory=ContinuousConfig)
    workload: WorkloadConfig
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    _source: str | None = PrivateAttr(default=None)

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        try:
            get_model(v)
        except LlmsimError as exc:
            raise ValueError(getattr(exc, "reason", str(exc))) from None
        return v

    @field_validator("hardware")
    @classmethod
    def _known_hardware(cls, v: str) -> str:
        try:
            get_hardware(v)
        except LlmsimError as exc:
            raise ValueError(getattr(exc, "reason", str(exc))) from None
        return v

    @model_validator(mode="after")
    def _tp_fits_node(self) -> Scenario:
        hw = get_hardware(self.hardware)
        if self.tensor_parallel > hw.max_gpus_per_node:
            raise ValueError(
                f"tensor_parallel {self.tensor_parallel} exceeds the {hw.max_gpus_per_node} "
                f"GPUs of one {hw.name} node"
            )
        return self

    def __eq__(self, other: object) -> bool:
        # Equal settings make equal scenarios, wherever they were read from: pydantic's
        # default would also compare the private ``_source``.
        if not isinstance(other, Scenario):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    @property
    def source(self) -> str:
        """Where the scenario came from: its file, or '<scenario>' when built in Python."""
        return self._source or "<scenario>"

    def to_yaml(self) -> str:
        """The scenario as YAML, every field spelled out; ``from_yaml`` reads it back."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str, source: str = "<yaml>") -> Scenario:
        return _validate(parse_yaml(text, source), source)

    def with_overrides(self, overrides: dict[str, Any] | list[str]) -> Scenario:
        """A copy with dotted-path fields replaced, validated again."""
        data = self.model_dump(mode="json")
        apply_overrides(data, overrides, self.source)
        return _validate(data, self.source)


def _validate(data: Any, source: str) -> Scenario:
    _move_rate_shorthand(data)
    scenario = validate_data(Scenario, data, source)
    scenario._source = source
    return scenario


def _move_rate_shorthand(data: Any) -> None:
    """``workload.rate`` is shorthand for ``workload.arrival.rate``."""
    if not isinstance(data, dict):
        return
    wl = data.get("workload")
    if isinstance(wl, dict) and "rate" in wl and isinstance(wl.get("arrival"), dict):
        wl["arrival"] = {**wl["arrival"], "rate": wl.pop("rate")}


def load_scenario(
    path: str | Path, overrides: dict[str, Any] | list[str] | None = None
) -> Scenario:
    """Read and validate a scenario file, applying ``--set``-style overrides first."""
    data = read_yaml(path)
    if overrides:
        if not isinstance(data, dict):
            raise ConfigError("expected a mapping of fields", source=str(path))
        apply_overrides(data, overrides, str(path))
    return _validate(data, str(path))


def parse_override(item: str, source: str) -> tuple[str, Any]:
    """``"a.b=3"`` -> ``("a.b", 3)``; the value is read as YAML (numbers, booleans, null)."""
    if "=" not in item:
        raise ConfigError(
            f"override '{item}' must look like field.path=value", source=source, field="--set"
        )
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def apply_overrides(
    data: dict[str, Any], overrides: dict[str, Any] | list[str], source: str
) -> None:
    """Set dotted paths in a raw scenario mapping, in place."""
    items = (
        [parse_override(o, source) for o in overrides]
        if isinstance(overrides, list)
        else list(overrides.items())
    )
    for key, value in items:
        parts = key.split(".")
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part) if isinstance(node, dict) else None
            if nxt is None:
                nxt = {}
                node[part] = nxt
            if not isinstance(nxt, dict):
                raise ConfigError(
                    f"cannot set '{key}': '{'.'.join(parts[: i + 1])}' is not a section",
                    source=source,
                    field="--set",
                )
            node = nxt
        node[parts[-1]] = value
