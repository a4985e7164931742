"""Step-time models: what one forward pass of a batch costs on a replica."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from llmsim.cost.base import BatchShape, CostModel
from llmsim.cost.calibrated import CalibratedConfig, CalibratedCostModel
from llmsim.cost.constant import ConstantConfig, ConstantCostModel
from llmsim.cost.roofline import RooflineConfig, RooflineCostModel

CostConfig = Annotated[
    RooflineConfig | CalibratedConfig | ConstantConfig, Field(discriminator="kind")
]

__all__ = [
    "BatchShape",
    "CalibratedConfig",
    "CalibratedCostModel",
    "ConstantConfig",
    "ConstantCostModel",
    "CostConfig",
    "CostModel",
    "RooflineConfig",
    "RooflineCostModel",
]
