"""Engine presets (``llmsim/engine_presets/*.yaml``): what a serving engine implies for a
simulation, beyond the GPU.

A preset holds the engine's per-step host overhead (fitted where measurements exist, otherwise
a documented estimate), its KV block size, its default KV cache and weight types, its serving
pipeline (async scheduling, API-server time) and its scheduling defaults (sequence and token
budgets, chunked prefill, prefix caching, admission). ``engine.preset`` in a scenario applies
the host overhead to the cost model and the block size, data types and pipeline to the engine;
:meth:`EnginePreset.policy_update` applies the scheduling defaults to a policy config, setting
only the fields that config has.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmsim.config_io import find, load_catalog, shipped_dir, unknown_name
from llmsim.errors import UnknownNameError
from llmsim.hardware_calibration import HostParams
from llmsim.models import KVCacheDType, Quantization


class PresetPolicy(BaseModel):
    """Scheduling defaults of an engine; ``None`` leaves the policy's own default."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    max_num_seqs: Annotated[int, Field(gt=0)] | Literal["derive"] | None = Field(
        default=None, description="An integer, or 'derive': from the KV capacity, as SGLang does."
    )
    max_num_batched_tokens: int | None = Field(default=None, gt=0)
    chunked_prefill: bool | None = None
    prefix_caching: bool | None = None
    mixed_prefill: bool | None = None
    long_prefill_token_threshold: int | None = Field(default=None, gt=0)
    num_scheduler_steps: int | None = Field(default=None, ge=1)
    cpu_kv_offload_gib: float | None = Field(default=None, ge=0)
    admission: Literal["preempt", "no_evict"] | None = Field(
        default=None, description="Admission rule of the continuous policy (policy.admission)."
    )


class EnginePreset(BaseModel):
    """One serving engine's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    aliases: tuple[str, ...] = ()
    engine: str
    version: str
    description: str = ""
    host: HostParams
    block_size: int = Field(gt=0)
    async_scheduling: bool = False
    frontend_ms: float = Field(default=0.0, ge=0)
    tokenize_us_per_token: float = Field(default=0.0, ge=0)
    kv_cache_dtype: KVCacheDType = Field(
        default="auto", description="The engine's default KV cache type (auto: the model's)."
    )
    quantization: Quantization = Field(
        default="auto", description="The engine's default weight type (auto: the checkpoint's)."
    )
    policy: PresetPolicy = Field(default_factory=PresetPolicy)

    def cost_update(self) -> dict[str, float]:
        """The host-overhead fields a cost config takes from this preset."""
        return {
            "step_overhead_ms": self.host.step_overhead_ms,
            "seq_overhead_us": self.host.seq_overhead_us,
            "tp_overhead_ms": self.host.tp_overhead_ms,
        }

    def engine_defaults(self) -> dict[str, Any]:
        """Engine-section fields this preset sets besides the cost model's: the data types,
        the step pipeline and the API server."""
        return {
            "kv_cache_dtype": self.kv_cache_dtype,
            "quantization": self.quantization,
            "async_scheduling": self.async_scheduling,
            "frontend_ms": self.frontend_ms,
            "tokenize_us_per_token": self.tokenize_us_per_token,
        }

    def policy_defaults(self, kind: str = "continuous", kv_layout: str = "paged") -> dict[str, Any]:
        """Scheduling defaults this preset sets on a policy of ``kind`` (``None`` entries left
        out): a speculative policy runs prefill-first, so it takes no prompt-chunking defaults,
        and a contiguous KV layout has no prefix cache."""
        out = {k: v for k, v in self.policy.model_dump().items() if v is not None}
        if kind == "speculative":
            for key in ("chunked_prefill", "mixed_prefill", "long_prefill_token_threshold"):
                out.pop(key, None)
        if kv_layout == "contiguous":
            out.pop("prefix_caching", None)
        return out

    def policy_update(self, config: BaseModel) -> BaseModel:
        """A copy of a policy config with this preset's defaults for the fields it has and
        that were not set explicitly (e.g. ``chunked_prefill`` once the continuous policy
        has it)."""
        fields = type(config).model_fields
        defaults = self.policy_defaults(
            getattr(config, "kind", "continuous"), getattr(config, "kv_layout", "paged")
        )
        update = {
            k: v for k, v in defaults.items() if k in fields and k not in config.model_fields_set
        }
        return type(config).model_validate({**config.model_dump(), **update})


def presets_dir() -> Path:
    return shipped_dir("engine_presets")


@cache
def _catalog() -> dict[str, EnginePreset]:
    return load_catalog(EnginePreset, presets_dir())


def list_presets() -> list[EnginePreset]:
    """All shipped engine presets, sorted by name."""
    return list(_catalog().values())


def get_preset(name: str, *, field: str = "engine.preset") -> EnginePreset:
    """A preset by name or alias (case-insensitive)."""
    found = find(_catalog(), name)
    if found is not None:
        return found
    msg = unknown_name("engine preset", name, _catalog())
    raise UnknownNameError(msg, field=field)
