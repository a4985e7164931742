"""Arrival processes: when requests come."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class PoissonArrivals(BaseModel):
    """A Poisson process: independent exponential gaps with mean ``1 / rate``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["poisson"] = "poisson"
    rate: float = Field(gt=0, description="Requests per second.")

    def times(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """The first ``n`` arrival times, starting from 0 (the first arrival is at its gap)."""
        return np.cumsum(rng.exponential(1.0 / self.rate, size=n))

    def times_until(self, rng: np.random.Generator, duration: float) -> np.ndarray:
        """All arrival times in ``[0, duration)``."""
        chunk = max(16, int(self.rate * duration * 1.2) + 16)
        parts: list[np.ndarray] = []
        t = 0.0
        while True:
            gaps = np.cumsum(rng.exponential(1.0 / self.rate, size=chunk)) + t
            if gaps[-1] >= duration:
                parts.append(gaps[gaps < duration])
                return np.concatenate(parts)
            parts.append(gaps)
            t = float(gaps[-1])


class BatchArrivals(BaseModel):
    """Every request present at time 0: an offline (throughput) run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["batch"] = "batch"

    def times(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.zeros(n)

    def times_until(self, rng: np.random.Generator, duration: float) -> np.ndarray:
        raise ValueError("batch arrivals need workload.num_requests, not duration_s")


ArrivalConfig = Annotated[PoissonArrivals | BatchArrivals, Field(discriminator="kind")]
