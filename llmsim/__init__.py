"""llmsim: a discrete-event simulator of LLM serving systems.

>>> import llmsim
>>> scenario = llmsim.load_scenario("scenarios/quickstart.yaml")  # doctest: +SKIP
>>> result = llmsim.simulate(scenario)                             # doctest: +SKIP
>>> result.summary["p99_ttft_ms"], result.requests.head()          # doctest: +SKIP
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from llmsim.cost import BatchShape, ConstantConfig, CostModel, RooflineConfig
from llmsim.engine import Simulation, build_replica, simulate
from llmsim.errors import ConfigError, DoesNotFitError, LlmsimError, UnknownNameError
from llmsim.hardware import HardwareProfile, get_hardware, list_hardware
from llmsim.metrics import MetricsConfig
from llmsim.models import ModelSpec, from_hf_config, get_model, list_models
from llmsim.policies import ContinuousConfig, DynamicConfig, SpeculativeConfig, StaticConfig
from llmsim.result import SimulationResult
from llmsim.scenario import EngineConfig, Scenario, load_scenario
from llmsim.workload import (
    BatchArrivals,
    EmpiricalLength,
    FixedLength,
    LognormalLength,
    PoissonArrivals,
    UniformLength,
    WorkloadConfig,
)

try:
    __version__ = version("llmsim")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = [
    "BatchArrivals",
    "BatchShape",
    "ConfigError",
    "ConstantConfig",
    "ContinuousConfig",
    "CostModel",
    "DoesNotFitError",
    "DynamicConfig",
    "EmpiricalLength",
    "EngineConfig",
    "FixedLength",
    "HardwareProfile",
    "LlmsimError",
    "LognormalLength",
    "MetricsConfig",
    "ModelSpec",
    "PoissonArrivals",
    "RooflineConfig",
    "Scenario",
    "Simulation",
    "SimulationResult",
    "SpeculativeConfig",
    "StaticConfig",
    "UniformLength",
    "UnknownNameError",
    "WorkloadConfig",
    "__version__",
    "build_replica",
    "from_hf_config",
    "get_hardware",
    "get_model",
    "list_hardware",
    "list_models",
    "load_scenario",
    "simulate",
]
