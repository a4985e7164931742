"""Distributions of durations in seconds: client think times and gaps between session turns."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmsim.limits import MAX_SECONDS


class _Duration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FixedDuration(_Duration):
    """Always ``value`` seconds."""

    kind: Literal["fixed"] = "fixed"
    value: float = Field(ge=0, le=MAX_SECONDS)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.value, dtype=float)


class ExponentialDuration(_Duration):
    """Exponential with the given mean (memoryless: the usual model of user think time)."""

    kind: Literal["exponential"] = "exponential"
    mean: float = Field(gt=0, le=MAX_SECONDS)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.exponential(self.mean, size=n)


class UniformDuration(_Duration):
    """Uniform between ``low`` and ``high`` seconds."""

    kind: Literal["uniform"] = "uniform"
    low: float = Field(ge=0, le=MAX_SECONDS)
    high: float = Field(ge=0, le=MAX_SECONDS)

    @model_validator(mode="after")
    def _ordered(self) -> UniformDuration:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.uniform(self.low, self.high, size=n)


class LognormalDuration(_Duration):
    """Log-normal with the given mean and coefficient of variation."""

    kind: Literal["lognormal"] = "lognormal"
    mean: float = Field(gt=0, le=MAX_SECONDS)
    cv: float = Field(default=1.0, gt=0, le=100, description="Standard deviation / mean.")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        sigma2 = np.log1p(self.cv**2)
        return rng.lognormal(np.log(self.mean) - sigma2 / 2, np.sqrt(sigma2), size=n)


DurationConfig = Annotated[
    FixedDuration | ExponentialDuration | UniformDuration | LognormalDuration,
    Field(discriminator="kind"),
]
