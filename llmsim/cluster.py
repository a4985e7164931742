"""Scenario section ``cluster``: pools of replicas, how requests reach them, and how KV moves
between prefill and decode pools.

Without a ``cluster`` section a scenario is one replica built from its top-level fields. With
one, each pool is ``replicas`` identical replicas; a pool field left out takes the top-level
value, so a heterogeneous fleet only spells out what differs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmsim.limits import MAX_BANDWIDTH_GBPS, MAX_MS
from llmsim.policies import PolicyConfig

Role = Literal["mixed", "prefill", "decode"]

RouterKind = Literal[
    "round_robin",
    "random",
    "least_outstanding",
    "least_kv",
    "shortest_queue_tokens",
    "prefix_affinity",
    "session_affinity",
]


class RouterConfig(BaseModel):
    """Which replica of the eligible pool(s) gets a request.

    * ``round_robin``: in turn; ``random``: uniformly (seeded);
    * ``least_outstanding``: fewest requests waiting or running;
    * ``least_kv``: lowest KV-cache usage;
    * ``shortest_queue_tokens``: fewest tokens still to compute (prompt and output of the
      requests it holds);
    * ``prefix_affinity``: requests whose prompts start with the same prefix block go to the
      same replica (the first one chosen by least outstanding), so its prefix cache hits;
    * ``session_affinity``: every turn of a conversation goes to the same replica.

    Requests with a class go only to pools that list the class (or list none).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: RouterKind = "round_robin"


class PoolConfig(BaseModel):
    """A group of identical replicas."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(min_length=1)
    replicas: int = Field(default=1, ge=1, le=100_000)
    hardware: str | None = None
    tensor_parallel: int | None = Field(default=None, ge=1, le=1024)
    pipeline_parallel: int = Field(
        default=1, ge=1, le=1024, description="Pipeline stages per replica."
    )
    engine: dict[str, object] | None = Field(
        default=None, description="Fields of the top-level engine section to change here."
    )
    policy: PolicyConfig | None = None
    role: Role = "mixed"
    classes: tuple[str, ...] = Field(
        default=(), description="Request classes this pool serves; empty: any class."
    )


class LinkConfig(BaseModel):
    """The network that carries a request's KV cache from a prefill to a decode replica."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    bandwidth_gbps: float = Field(
        gt=0, le=MAX_BANDWIDTH_GBPS, description="GB/s (1e9 bytes/s) per transfer."
    )
    latency_ms: float = Field(default=0.0, ge=0, le=MAX_MS)

    def transfer_s(self, nbytes: float) -> float:
        return self.latency_ms / 1e3 + nbytes / (self.bandwidth_gbps * 1e9)


class ClusterConfig(BaseModel):
    """Scenario section ``cluster``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    pools: tuple[PoolConfig, ...] = Field(min_length=1)
    router: RouterConfig = Field(default_factory=RouterConfig)
    kv_transfer: LinkConfig | None = None

    @model_validator(mode="after")
    def _roles(self) -> ClusterConfig:
        names = [p.name for p in self.pools]
        if len(set(names)) != len(names):
            raise ValueError(f"pool names must be unique (got {names})")
        roles = {p.role for p in self.pools}
        if "prefill" in roles or "decode" in roles:
            if not {"prefill", "decode"} <= roles:
                raise ValueError("disaggregated serving needs a prefill pool and a decode pool")
            if "mixed" in roles:
                raise ValueError("pools are either all mixed or prefill/decode, not both")
            if self.kv_transfer is None:
                raise ValueError("prefill and decode pools need kv_transfer (link bandwidth)")
            for p in self.pools:
                if p.role == "decode" and p.classes:
                    raise ValueError(f"decode pool '{p.name}': classes route prefill pools only")
        elif self.kv_transfer is not None:
            raise ValueError("kv_transfer is only used with prefill and decode pools")
        return self

    @property
    def disaggregated(self) -> bool:
        return any(p.role == "prefill" for p in self.pools)
