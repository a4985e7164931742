"""Token-length distributions for prompts and outputs."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmsim.errors import ConfigError

DATA_DIR = Path(__file__).resolve().parent / "data"

DATASETS: dict[str, str] = {
    "sharegpt": "sharegpt_llama2_lengths.csv.gz",
}
"""Length datasets shipped with llmsim, by the name a scenario uses (see data/README.md)."""


class _Length(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FixedLength(_Length):
    kind: Literal["fixed"] = "fixed"
    value: int = Field(gt=0)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.value, dtype=np.int64)


class UniformLength(_Length):
    """Integers drawn uniformly from ``low`` to ``high``, both included."""

    kind: Literal["uniform"] = "uniform"
    low: int = Field(gt=0)
    high: int = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> UniformLength:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(self.low, self.high + 1, size=n, dtype=np.int64)


class LognormalLength(_Length):
    """Log-normal with the given mean and coefficient of variation, rounded, clipped."""

    kind: Literal["lognormal"] = "lognormal"
    mean: float = Field(gt=0)
    cv: float = Field(default=1.0, gt=0, description="Standard deviation / mean.")
    min: int = Field(default=1, gt=0)
    max: int | None = Field(default=None, gt=0)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        sigma2 = np.log1p(self.cv**2)
        mu = np.log(self.mean) - sigma2 / 2
        x = np.rint(rng.lognormal(mu, np.sqrt(sigma2), size=n)).astype(np.int64)
        return np.clip(x, self.min, self.max if self.max is not None else None)


class EmpiricalLength(_Length):
    """Values drawn with replacement from a column of a CSV file or a shipped dataset."""

    kind: Literal["empirical"] = "empirical"
    dataset: str | None = Field(default=None, description=f"Shipped: {', '.join(DATASETS)}.")
    path: str | None = Field(default=None, description="A CSV file of your own.")
    column: str
    max: int | None = Field(default=None, gt=0, description="Drop values above this.")

    @model_validator(mode="after")
    def _one_source(self) -> EmpiricalLength:
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give exactly one of 'dataset' or 'path'")
        if self.dataset is not None and self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset '{self.dataset}'; valid: {', '.join(DATASETS)}")
        return self

    def values(self) -> np.ndarray:
        path = DATA_DIR / DATASETS[self.dataset] if self.dataset else Path(str(self.path))
        v = _column(str(path), self.column)
        if self.max is not None:
            v = v[v <= self.max]
        if v.size == 0:
            raise ConfigError(
                f"no values <= {self.max} in column '{self.column}'", source=str(path)
            )
        return v

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.choice(self.values(), size=n, replace=True)


@cache
def _column(path: str, column: str) -> np.ndarray:
    try:
        header = pd.read_csv(path, nrows=0).columns
    except FileNotFoundError:
        raise ConfigError("file not found", source=path) from None
    if column not in header:
        raise ConfigError(
            f"no column '{column}'; columns: {', '.join(map(str, header))}", source=path
        )
    col = pd.read_csv(path, usecols=[column])[column]
    values = pd.to_numeric(col, errors="coerce")
    bad = values.isna() | (values <= 0)
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # header is line 1
        raise ConfigError(
            f"column '{column}' must hold positive integers (got {col.iloc[line - 2]!r})",
            source=f"{path}:{line}",
        )
    return values.to_numpy(dtype=np.int64)


LengthConfig = Annotated[
    FixedLength | UniformLength | LognormalLength | EmpiricalLength, Field(discriminator="kind")
]
