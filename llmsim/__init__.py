"""llmsim: a discrete-event simulator of LLM serving systems.

>>> import llmsim
>>> scenario = llmsim.load_scenario("scenarios/quickstart.yaml")  # doctest: +SKIP
>>> result = llmsim.simulate(scenario)                             # doctest: +SKIP
>>> result.summary["p99_ttft_ms"], result.requests.head()          # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

__version__: str  # looked up on first use, as the names below

# The public names, imported on first use: ``import llmsim.errors`` (or the command line's
# ``--help``) does not pay for the simulator, its tables and their libraries.
_HOMES = {
    "llmsim.cost": ("BatchShape", "ConstantConfig", "CostModel", "RooflineConfig"),
    "llmsim.engine": ("Simulation", "build_replica", "simulate"),
    "llmsim.errors": ("ConfigError", "DoesNotFitError", "LlmsimError", "UnknownNameError"),
    "llmsim.hardware": ("HardwareProfile", "get_hardware", "list_hardware"),
    "llmsim.metrics": ("MetricsConfig",),
    "llmsim.models": ("ModelSpec", "from_hf_config", "get_model", "list_models"),
    "llmsim.policies": ("ContinuousConfig", "DynamicConfig", "SpeculativeConfig", "StaticConfig"),
    "llmsim.result": ("SimulationResult",),
    "llmsim.scenario": ("EngineConfig", "Scenario", "load_scenario"),
    "llmsim.workload": (
        "BatchArrivals",
        "EmpiricalLength",
        "FixedLength",
        "LognormalLength",
        "PoissonArrivals",
        "UniformLength",
        "WorkloadConfig",
    ),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if name == "__version__":
        value: Any = _version()
    elif module is None:
        raise AttributeError(f"module 'llmsim' has no attribute {name!r}")
    else:
        value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME_OF, "__version__"})


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llmsim")
    except PackageNotFoundError:  # running from a source tree without installing
        return "0.0.0"


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
