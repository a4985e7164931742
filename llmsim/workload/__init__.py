"""Workloads: when requests arrive and how long their prompts and outputs are."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmsim.workload.arrivals import ArrivalConfig, BatchArrivals, PoissonArrivals
from llmsim.workload.lengths import (
    DATASETS,
    EmpiricalLength,
    FixedLength,
    LengthConfig,
    LognormalLength,
    UniformLength,
)


class WorkloadConfig(BaseModel):
    """Scenario section ``workload``: arrivals, lengths and how many requests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arrival: ArrivalConfig
    prompt_tokens: LengthConfig
    output_tokens: LengthConfig
    num_requests: int | None = Field(default=None, gt=0)
    duration_s: float | None = Field(default=None, gt=0, description="Arrivals stop after this.")

    @model_validator(mode="after")
    def _one_limit(self) -> WorkloadConfig:
        if (self.num_requests is None) == (self.duration_s is None):
            raise ValueError("give exactly one of num_requests or duration_s")
        if isinstance(self.arrival, BatchArrivals) and self.num_requests is None:
            raise ValueError("batch arrivals need num_requests")
        return self


@dataclass(frozen=True)
class RequestStream:
    """Sampled requests, sorted by arrival time."""

    arrival: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.arrival)


def generate(cfg: WorkloadConfig, seed: np.random.SeedSequence) -> RequestStream:
    """Draw the whole request stream; each component has its own independent RNG stream."""
    s_arrival, s_prompt, s_output = (np.random.default_rng(s) for s in seed.spawn(3))
    if cfg.num_requests is not None:
        times = cfg.arrival.times(s_arrival, cfg.num_requests)
    else:
        assert cfg.duration_s is not None
        times = cfg.arrival.times_until(s_arrival, cfg.duration_s)
    n = len(times)
    return RequestStream(
        arrival=np.asarray(times, dtype=float),
        prompt_tokens=cfg.prompt_tokens.sample(s_prompt, n).astype(np.int64),
        output_tokens=cfg.output_tokens.sample(s_output, n).astype(np.int64),
    )


__all__ = [
    "DATASETS",
    "ArrivalConfig",
    "BatchArrivals",
    "EmpiricalLength",
    "FixedLength",
    "LengthConfig",
    "LognormalLength",
    "PoissonArrivals",
    "RequestStream",
    "UniformLength",
    "WorkloadConfig",
    "generate",
]
