"""Batching policies. A policy is one module with a pydantic config (``kind: ...``) and a class
with ``add`` / ``schedule`` / ``update``; adding one means adding it to ``PolicyConfig``."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from llmsim.policies.base import Plan, Policy, StepStats
from llmsim.policies.continuous import ContinuousConfig, ContinuousPolicy

PolicyConfig = Annotated[Union[ContinuousConfig], Field(discriminator="kind")]  # noqa: UP007

__all__ = ["ContinuousConfig", "ContinuousPolicy", "Plan", "Policy", "PolicyConfig", "StepStats"]
