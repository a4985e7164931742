"""The scenario: one YAML file (or Python object) that says everything about a run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from llmsim.cluster import ClusterConfig, Role
from llmsim.config_io import first_error, parse_yaml, read_yaml, validate_data
from llmsim.cost import CalibratedConfig, CostConfig, RooflineConfig
from llmsim.errors import ConfigError, LlmsimError
from llmsim.hardware import get_hardware
from llmsim.limits import MAX_COUNT, MAX_TOKENS
from llmsim.metrics import MetricsConfig
from llmsim.models import KVCacheDType, ModelSpec, Quantization, get_model
from llmsim.policies import ContinuousConfig, PolicyConfig
from llmsim.presets import get_preset
from llmsim.workload import WorkloadConfig


class EngineConfig(BaseModel):
    """Scenario section ``engine``: memory settings and the step-time model of each replica.

    ``preset`` names a serving engine (``llmsim.presets``): it sets the cost model's host
    overheads (per step, per sequence and with TP > 1; the same for the roofline and the
    calibrated model, given as a mapping or an object), the block size, the KV cache and weight
    types, and the serving pipeline (async scheduling, API-server time) wherever the scenario
    leaves them unset; ``Scenario`` applies its scheduling defaults to the policy.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    preset: str | None = Field(
        default=None, description="Serving engine preset, e.g. vllm-v1, sglang, tensorrt-llm."
    )
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    block_size: int = Field(default=16, gt=0, le=MAX_TOKENS, description="Tokens per KV block.")
    kv_blocks: int | None = Field(
        default=None,
        gt=0,
        le=MAX_COUNT * 100,
        description="Override the derived KV capacity (blocks per replica).",
    )
    max_model_len: int | None = Field(
        default=None,
        gt=0,
        le=2 * MAX_TOKENS,
        description="Longest prompt + output accepted; default: the model's.",
    )
    kv_cache_dtype: KVCacheDType = Field(
        default="auto",
        description="KV cache data type, as vLLM's --kv-cache-dtype: auto (the model's, "
        "normally bf16), bf16, fp16, or fp8 (also fp8_e4m3, fp8_e5m2): one byte per element, "
        "half the KV bytes per token of bf16, so twice the blocks and half the bytes decode "
        "attention reads.",
    )
    quantization: Quantization = Field(
        default="auto",
        description="Stored weight type: auto (the model's, from its YAML or config.json), "
        "fp8 (vLLM --quantization fp8, or an FP8 checkpoint), int8 or int4 (GPTQ, AWQ, "
        "compressed-tensors checkpoints), fp4 (NVFP4/MXFP4). Sets the weight bytes (memory, "
        "KV capacity, GEMM weight reads); fp8 weights compute in fp8 on GPUs with fp8 tensor "
        "cores and in bf16 elsewhere, the other types always in bf16 (weight-only).",
    )
    cost: CostConfig = Field(default_factory=RooflineConfig)
    async_scheduling: bool = Field(
        default=False,
        description="The scheduler plans the next step while the current one runs (vLLM V1's "
        "async scheduling): a request that arrives during a step joins the step after next.",
    )
    frontend_ms: float = Field(
        default=0.0,
        ge=0,
        le=60_000,
        description="API-server time per request outside the engine beyond tokenisation "
        "(request handling, detokenisation, streaming): every token reaches the client this "
        "much later than the engine emits it.",
    )
    tokenize_us_per_token: float = Field(
        default=0.0,
        ge=0,
        le=10_000,
        description="API-server time per prompt token before the engine sees a request "
        "(tokenisation and input processing), microseconds.",
    )

    def served_model(self, model: ModelSpec) -> ModelSpec:
        """``model`` with this engine's KV cache and weight types applied."""
        return model.with_dtypes(self.kv_cache_dtype, self.quantization)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("preset"):
            return data
        try:
            preset = get_preset(str(data["preset"]))
        except LlmsimError as exc:
            raise ValueError(getattr(exc, "reason", str(exc))) from None
        data = dict(data)
        data.setdefault("block_size", preset.block_size)
        for key, value in preset.engine_defaults().items():
            data.setdefault(key, value)
        data["cost"] = _preset_cost(data.get("cost", RooflineConfig()), preset.cost_update())
        return data


# The cost models that take an engine's host overheads, by ``kind`` (the constant model is a
# fixed cost per step: a preset changes nothing there).
_HOST_COST_CONFIGS: dict[str, type[BaseModel]] = {
    "roofline": RooflineConfig,
    "calibrated": CalibratedConfig,
}


def _preset_name(name: object) -> object:
    """A preset's canonical name (aliases resolved); an unknown one as given, for the
    engine section's own validation to refuse."""
    try:
        return get_preset(str(name)).name if name else None
    except LlmsimError:
        return name


def _preset_cost(cost: Any, host: dict[str, float]) -> Any:
    """The cost section with a preset's host overheads (step, per-sequence and
    tensor-parallel) filled in wherever the scenario left them unset: the same fields, the
    same way, whether the section is a mapping or a config object and whichever cost model
    it names."""
    if isinstance(cost, BaseModel):
        kind = getattr(cost, "kind", None)
        given = {k for k in cost.model_fields_set if getattr(cost, k) is not None}
    elif isinstance(cost, dict):
        kind = cost.get("kind", "roofline")
        given = {k for k, v in cost.items() if v is not None}
    else:
        return cost
    cls = _HOST_COST_CONFIGS.get(str(kind))
    if cls is None:
        return cost
    update = {k: v for k, v in host.items() if k in cls.model_fields and k not in given}
    if isinstance(cost, BaseModel):
        return cost.model_copy(update=update)
    return {**cost, **update}


@dataclass(frozen=True)
class ReplicaSpec:
    """One replica as the engine builds it: its pool's settings, resolved."""

    pool: str
    index: int
    hardware: str
    tensor_parallel: int
    pipeline_parallel: int
    engine: EngineConfig
    policy: PolicyConfig
    role: Role
    classes: tuple[str, ...]


class Scenario(BaseModel):
    """A complete, validated description of one simulation run."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = "scenario"
    description: str = ""
    seed: int = Field(default=0, ge=0, lt=2**63)
    model: str
    hardware: str
    tensor_parallel: int = Field(default=1, ge=1, le=1024, description="GPUs per replica.")
    data_parallel: int = Field(
        default=1,
        ge=1,
        le=100_000,
        description="Identical replicas of the top-level settings behind the default router "
        "(round robin), as vLLM's --data-parallel-size; not with a cluster section, whose "
        "pools give their own replicas.",
    )
    engine: EngineConfig = Field(default_factory=EngineConfig)
    policy: PolicyConfig = Field(default_factory=ContinuousConfig)
    workload: WorkloadConfig
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    cluster: ClusterConfig | None = Field(
        default=None, description="Pools of replicas and a router; default: one replica."
    )

    _source: str | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _preset_policy(cls, data: Any) -> Any:
        """``engine.preset`` also sets the engine's scheduling defaults (token and sequence
        budgets, chunked prefill) on a continuous or speculative policy; fields the scenario
        gives explicitly win."""
        if not isinstance(data, dict):
            return data
        eng = data.get("engine")
        name = eng.get("preset") if isinstance(eng, dict) else getattr(eng, "preset", None)
        if not name:
            return data
        try:
            preset = get_preset(str(name))
        except LlmsimError:
            return data  # the engine section reports the unknown name
        pol = data.get("policy", {"kind": "continuous"})
        if isinstance(pol, dict):
            kind = pol.get("kind", "continuous")
            if kind not in ("continuous", "speculative"):
                return data
            defaults = preset.policy_defaults(kind, pol.get("kv_layout", "paged"))
            return {**data, "policy": {**defaults, **pol}}
        if isinstance(pol, ContinuousConfig):  # speculative too: the same defaults as a mapping
            return {**data, "policy": preset.policy_update(pol)}
        return data

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        # The name is the default output folder (runs/<name>): a plain file name only.
        if not v or len(v) > 128:
            raise ValueError("must be 1 to 128 characters (it names the output folder)")
        bad = [c for c in v if c in "/\\:" or ord(c) < 32 or ord(c) == 127]
        if bad or v.startswith(".") or v != v.strip():
            raise ValueError(
                f"'{v}' is not a plain file name (it names the output folder runs/<name>): "
                "no '/', '\\', ':' or control characters, no leading '.' or spaces"
            )
        return v

    @field_validator("model", "hardware")
    @classmethod
    def _known_name(cls, v: str, info: ValidationInfo) -> str:
        try:
            (get_model if info.field_name == "model" else get_hardware)(v)
        except ConfigError as exc:
            if exc.source:  # a model or profile file of the user's: its own file and field
                raise
            raise ValueError(exc.reason) from None
        return v

    @model_validator(mode="after")
    def _tp_fits_node(self) -> Scenario:
        if self.data_parallel > 1 and self.cluster is not None:
            raise ValueError(
                f"data_parallel {self.data_parallel} cannot be combined with a cluster "
                "section: give the replicas per pool (cluster.pools[].replicas) instead"
            )
        layers = get_model(self.model).num_layers
        for spec in self.replica_specs():
            hw = get_hardware(spec.hardware)
            if spec.pipeline_parallel > layers:
                raise ValueError(
                    f"pool '{spec.pool}': pipeline_parallel {spec.pipeline_parallel} exceeds "
                    f"the {layers} layers of {self.model}: every stage needs a layer"
                )
            if spec.tensor_parallel > hw.max_gpus_per_node:
                where = f"pool '{spec.pool}': " if self.cluster else ""
                raise ValueError(
                    f"{where}tensor_parallel {spec.tensor_parallel} exceeds the "
                    f"{hw.max_gpus_per_node} GPUs of one {hw.name} node"
                )
        return self

    def replica_specs(self) -> list[ReplicaSpec]:
        """Every replica of the run, pool by pool, with pool fields merged over the top level."""
        if self.cluster is None:
            return [
                ReplicaSpec(
                    "default", i, self.hardware, self.tensor_parallel, 1, self.engine,
                    self.policy, "mixed", (),
                )
                for i in range(self.data_parallel)
            ]  # fmt: skip
        specs: list[ReplicaSpec] = []
        for i, pool in enumerate(self.cluster.pools):
            if pool.hardware is not None:
                try:
                    get_hardware(pool.hardware)
                except ConfigError as exc:
                    if exc.source:
                        raise
                    raise ValueError(f"cluster.pools.{i}.hardware: {exc.reason}") from None
            engine = self.engine
            preset = pool.engine.get("preset", self.engine.preset) if pool.engine else None
            if pool.engine and _preset_name(preset) != _preset_name(self.engine.preset):
                # a preset also sets the policy's defaults, which the pools share: refused
                # rather than applied to the engine section alone
                raise ValueError(
                    f"cluster.pools.{i}.engine.preset: {preset!r} differs from the scenario's "
                    f"engine.preset {self.engine.preset!r}; pools share one preset: set it at "
                    "the top level and give a pool's own engine fields (block_size, cost ...) "
                    "directly"
                )
            if pool.engine:
                base = self.engine.model_dump(exclude_unset=True)
                if "cost" in base:  # as the object: its dump may lack the default 'kind'
                    base["cost"] = self.engine.cost
                given = dict(pool.engine)
                cost, kind = given.get("cost"), self.engine.cost.kind
                if isinstance(cost, dict) and cost.get("kind", kind) == kind:
                    # fields of the same cost model: merged over the scenario's
                    top = self.engine.cost.model_dump(exclude_unset=True)
                    given["cost"] = {**top, "kind": kind, **cost}
                try:
                    engine = EngineConfig.model_validate({**base, **given})
                except ValidationError as exc:
                    err = first_error(exc, None, pool.engine)
                    raise ValueError(f"cluster.pools.{i}.engine.{err}") from None
            for _ in range(pool.replicas):
                specs.append(
                    ReplicaSpec(
                        pool.name,
                        len(specs),
                        pool.hardware or self.hardware,
                        pool.tensor_parallel or self.tensor_parallel,
                        pool.pipeline_parallel,
                        engine,
                        pool.policy or self.policy,
                        pool.role,
                        pool.classes,
                    )
                )
        return specs

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
    key = key.strip()
    if not all(p.strip() for p in key.split(".")):
        raise ConfigError(
            f"override '{item}' names no field: the path before '=' needs a name between "
            "each pair of dots, e.g. workload.arrival.rate",
            source=source,
            field="--set",
        )
    return key, parse_value(raw)


def parse_value(raw: str) -> Any:
    """A command-line value read as YAML (numbers, booleans, null, lists); text that is not
    YAML is the text itself, and an empty value the empty string."""
    try:
        return parse_yaml(raw, "--set") if raw.strip() else ""
    except ConfigError:
        return raw


def apply_overrides(
    data: dict[str, Any], overrides: dict[str, Any] | list[str], source: str
) -> None:
    """Set dotted paths in a raw scenario mapping, in place.

    A number in the path indexes a list (``cluster.pools.0.replicas``). Setting a section's
    ``kind`` to another value starts that section afresh as ``{kind: value}``: the fields of
    the old kind do not carry over, and other overrides fill the new one whatever their order
    (``policy.kind=static`` with ``policy.batch_size=8``).
    """
    items = (
        [parse_override(o, source) for o in overrides]
        if isinstance(overrides, list)
        else list(overrides.items())
    )
    items.sort(key=lambda kv: kv[0].split(".")[-1] != "kind")  # kinds first, else in order
    for key, value in items:
        parts = key.split(".")
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            node = _child(node, part, key, ".".join(parts[:i]), source)
        last = parts[-1]
        if isinstance(node, list):
            node[_index(node, last, key, ".".join(parts[:-1]), source)] = value
        elif last == "kind" and isinstance(node.get("kind"), str) and node["kind"] != value:
            node.clear()
            node["kind"] = value
        else:
            node[last] = value


def _index(node: list[Any], part: str, key: str, where: str, source: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(
            f"cannot set '{key}': '{where}' is a list of {len(node)}; give an index from 0 "
            f"to {len(node) - 1}",
            source=source,
            field="--set",
        )
    return int(part)


def _child(node: Any, part: str, key: str, where: str, source: str) -> Any:
    """The section ``part`` of ``node`` (created when missing), for setting ``key``."""
    if isinstance(node, list):
        nxt = node[_index(node, part, key, where, source)]
    else:
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
    if not isinstance(nxt, dict | list):
        here = f"{where}.{part}" if where else part
        raise ConfigError(
            f"cannot set '{key}': '{here}' is not a section", source=source, field="--set"
        )
    return nxt
