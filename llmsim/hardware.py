"""GPU hardware profiles, read from ``hardware_profiles/*.yaml``.

A profile holds datasheet figures: peak dense FLOP/s per data type, HBM capacity and bandwidth,
GPU-to-GPU interconnect and PCIe bandwidth, and an on-demand price. Cost models turn these into
step times; calibration (when present) adds the achieved fractions measured on real kernels,
in the ``calibration:`` section (:mod:`llmsim.hardware_calibration`).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmsim.config_io import find, load_catalog, load_model_file, shipped_dir, unknown_name
from llmsim.errors import ConfigError, UnknownNameError
from llmsim.hardware_calibration import Calibration
from llmsim.limits import MAX_BANDWIDTH_GBPS, MAX_MEMORY_GIB, MAX_TFLOPS

DType = Literal["fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4"]

GiB = 1024**3


class Interconnect(BaseModel):
    """The link between GPUs of one server, used by tensor-parallel collectives."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["nvlink", "infinity-fabric", "pcie"]
    bandwidth_gbps: float = Field(
        gt=0,
        le=MAX_BANDWIDTH_GBPS,
        description="Per-GPU bandwidth in one direction, GB/s (1e9 bytes/s).",
    )
    latency_us: float = Field(
        default=8.0,
        ge=0,
        le=1e6,
        description="Fixed latency of one small collective, microseconds.",
    )


class HardwareProfile(BaseModel):
    """One GPU model's datasheet figures."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    aliases: tuple[str, ...] = ()
    vendor: Literal["NVIDIA", "AMD", "Intel", "Google", "other"]
    memory_gib: float = Field(gt=0, le=MAX_MEMORY_GIB, description="Device memory, GiB.")
    memory_bandwidth_tbps: float = Field(
        gt=0, le=MAX_BANDWIDTH_GBPS / 1e3, description="HBM/GDDR bandwidth, TB/s (1e12)."
    )
    peak_tflops: dict[DType, float] = Field(
        description="Peak dense (no sparsity) TFLOP/s by data type."
    )
    interconnect: Interconnect
    pcie_bandwidth_gbps: float = Field(
        gt=0, le=MAX_BANDWIDTH_GBPS, description="Host link bandwidth, one direction, GB/s."
    )
    price_per_gpu_hour_usd: float = Field(ge=0, le=1e6, description="On-demand cloud price, USD.")
    max_gpus_per_node: int = Field(default=8, ge=1, le=1024)
    calibrated: bool = Field(
        default=False, description="True when efficiency factors were fitted on measurements."
    )
    calibration: Calibration | None = Field(
        default=None, description="Kernel parameters fitted on measurements (llmsim calibrate)."
    )

    @model_validator(mode="after")
    def _needs_half_precision(self) -> HardwareProfile:
        if "bf16" not in self.peak_tflops and "fp16" not in self.peak_tflops:
            raise ValueError("peak_tflops needs at least a bf16 or fp16 entry")
        for dtype, value in self.peak_tflops.items():
            if not 0 < value <= MAX_TFLOPS:
                raise ValueError(
                    f"peak_tflops.{dtype} must be > 0 and <= {MAX_TFLOPS:g} (got {value!r})"
                )
        if self.calibrated != (self.calibration is not None):
            raise ValueError(
                "calibrated: true goes with a calibration section (and false without one)"
            )
        return self

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * GiB

    @property
    def memory_bandwidth(self) -> float:
        """Bytes per second."""
        return self.memory_bandwidth_tbps * 1e12

    def peak_flops(self, dtype: str) -> float:
        """Peak FLOP/s for a data type, falling back to the closest wider type available
        (fp8 on a GPU without fp8 tensor cores: the bf16 peak, never the int8 one)."""
        order = {
            "fp4": ("fp4", "fp8", "bf16", "fp16"),
            "fp8": ("fp8", "bf16", "fp16"),
            "int8": ("int8", "fp8", "bf16", "fp16"),
            "bf16": ("bf16", "fp16"),
            "fp16": ("fp16", "bf16"),
            "tf32": ("tf32", "bf16", "fp16"),
            "fp32": ("fp32", "tf32", "bf16", "fp16"),
        }
        for candidate in order.get(dtype, (dtype, "bf16", "fp16")):
            if candidate in self.peak_tflops:
                return self.peak_tflops[candidate] * 1e12
        raise KeyError(dtype)  # unreachable: the validator guarantees bf16 or fp16


def profiles_dir() -> Path:
    return shipped_dir("hardware_profiles")


def with_files(profile: HardwareProfile, folder: Path, source: str) -> HardwareProfile:
    """``profile`` with the file its calibration names (its kernel table) made absolute against
    ``folder``, the profile's own folder; a ConfigError when such a file is missing."""
    cal = profile.calibration
    if cal is None or not cal.kernel_table or Path(cal.kernel_table).is_absolute():
        return profile
    full = folder / cal.kernel_table
    if not full.is_file():
        raise ConfigError(
            f"file '{cal.kernel_table}' not found next to the profile (re-run llmsim calibrate, "
            "or delete the field to use the GEMM formula alone)",
            source=source,
            field="calibration.kernel_table",
        )
    calibration = cal.model_copy(update={"kernel_table": str(full)})
    return profile.model_copy(update={"calibration": calibration})


@cache
def _catalog() -> dict[str, HardwareProfile]:
    folder = profiles_dir()
    catalog = load_catalog(HardwareProfile, folder)
    return {name: with_files(hw, folder, name) for name, hw in catalog.items()}


def list_hardware() -> list[HardwareProfile]:
    """All shipped hardware profiles, sorted by name."""
    return list(_catalog().values())


def get_hardware(
    name: str, *, source: str | None = None, field: str = "hardware"
) -> HardwareProfile:
    """A shipped profile by name or alias (case-insensitive), or a YAML file path."""
    catalog = _catalog()
    found = find(catalog, name)
    if found is not None:
        return found
    if name.endswith((".yaml", ".yml")):
        path = Path(name)
        return with_files(load_model_file(HardwareProfile, path), path.parent, name)
    msg = unknown_name("hardware", name, catalog, " (or a path to a profile .yaml)")
    raise UnknownNameError(msg, source=source, field=field)
