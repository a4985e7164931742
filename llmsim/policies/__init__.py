"""Batching policies. A policy is one module with a pydantic config (``kind: ...``) and a class
with ``add`` / ``schedule`` / ``update``; adding one means adding its config to
``PolicyConfig``. A policy from outside the package is ``kind: custom`` (``custom.py``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from llmsim.policies.base import Plan, Policy, ReplicaContext, StepStats
from llmsim.policies.continuous import ContinuousPolicy
from llmsim.policies.continuous_config import ContinuousConfig
from llmsim.policies.custom import CustomConfig
from llmsim.policies.dynamic import DynamicConfig
from llmsim.policies.request_level import RequestLevelPolicy
from llmsim.policies.speculative import SpeculativeConfig, SpeculativePolicy
from llmsim.policies.static import StaticConfig

PolicyConfig = Annotated[
    ContinuousConfig | SpeculativeConfig | StaticConfig | DynamicConfig | CustomConfig,
    Field(discriminator="kind"),
]

__all__ = [
    "ContinuousConfig",
    "ContinuousPolicy",
    "CustomConfig",
    "DynamicConfig",
    "Plan",
    "Policy",
    "PolicyConfig",
    "ReplicaContext",
    "RequestLevelPolicy",
    "SpeculativeConfig",
    "SpeculativePolicy",
    "StaticConfig",
    "StepStats",
]
