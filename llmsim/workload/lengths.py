"""Token-length distributions for prompts and outputs."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmsim.errors import ConfigError
from llmsim.limits import MAX_TOKENS
from llmsim.workload.datasets import DATA_DIR as DATA_DIR
from llmsim.workload.datasets import (
    DATASETS,
    PAIRED_COLUMNS,
    check_dataset,
    dataset_path,
    read_column,
)


class _Length(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FixedLength(_Length):
    kind: Literal["fixed"] = "fixed"
    value: int = Field(gt=0, le=MAX_TOKENS)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.value, dtype=np.int64)


class TargetLength(_Length):
    """A target length that most requests reach, and a fraction that stop early.

    Benchmark clients ask for a fixed output length (``ignore_eos``), yet some models' servers end
    part of the answers before it; ``early_fraction`` of the requests stop at a point drawn
    uniformly from 1 to ``value``. The mean is ``value * (1 - early_fraction / 2)`` (about), the
    p10 about ``value * 0.1 / early_fraction`` when that fraction is above 0.1.
    """

    kind: Literal["target"] = "target"
    value: int = Field(gt=0, le=MAX_TOKENS)
    early_fraction: float = Field(default=0.0, ge=0, le=1, description="Requests stopping early.")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        early = rng.random(n) < self.early_fraction
        cut = rng.integers(1, self.value, size=n, endpoint=True)
        return np.where(early, cut, self.value).astype(np.int64)


class UniformLength(_Length):
    """Integers drawn uniformly from ``low`` to ``high``, both included."""

    kind: Literal["uniform"] = "uniform"
    low: int = Field(gt=0, le=MAX_TOKENS)
    high: int = Field(gt=0, le=MAX_TOKENS)

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
    mean: float = Field(gt=0, le=MAX_TOKENS)
    cv: float = Field(default=1.0, gt=0, le=100, description="Standard deviation / mean.")
    min: int = Field(default=1, gt=0, le=MAX_TOKENS)
    max: int | None = Field(default=None, gt=0, le=MAX_TOKENS)

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
    max: int | None = Field(
        default=None, gt=0, le=MAX_TOKENS, description="Drop values above this."
    )

    @model_validator(mode="after")
    def _one_source(self) -> EmpiricalLength:
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give exactly one of 'dataset' or 'path'")
        if self.dataset is not None:
            check_dataset(self.dataset)
        return self

    def values(self) -> np.ndarray:
        path = dataset_path(self.dataset) if self.dataset else str(self.path)
        v = read_column(str(path), self.column)
        if self.max is not None:
            v = v[v <= self.max]
        if v.size == 0:
            raise ConfigError(
                f"no values <= {self.max} in column '{self.column}'", source=str(path)
            )
        return v

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.choice(self.values(), size=n, replace=True)


LengthConfig = Annotated[
    FixedLength | TargetLength | UniformLength | LognormalLength | EmpiricalLength,
    Field(discriminator="kind"),
]


class DatasetLengths(BaseModel):
    """Prompt and output lengths drawn together: each request takes both from one dataset row.

    Drawing the two columns independently would lose their correlation (long documents with
    short summaries, short questions with long answers); drawing rows keeps every pair intact.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    dataset: str | None = Field(default=None, description=f"Shipped: {', '.join(DATASETS)}.")
    path: str | None = Field(default=None, description="A CSV file of your own.")
    inline: tuple[tuple[int, int], ...] | None = Field(
        default=None,
        description="(prompt, output) rows given inline, e.g. a benchmark result's requests.",
    )
    in_order: bool = Field(
        default=False,
        description="Request i takes row i (from the first again after the last); "
        "default: rows drawn at random, with replacement.",
    )
    prompt_column: str | None = Field(default=None, description="Default: the dataset's.")
    output_column: str | None = Field(default=None, description="Default: the dataset's.")
    max_prompt_tokens: int | None = Field(default=None, gt=0, description="Drop longer rows.")
    max_output_tokens: int | None = Field(default=None, gt=0, description="Drop longer rows.")
    max_total_tokens: int | None = Field(default=None, gt=0, description="Drop longer rows.")

    @model_validator(mode="after")
    def _one_source(self) -> DatasetLengths:
        sources = [s for s in (self.dataset, self.path, self.inline) if s is not None]
        if len(sources) != 1:
            raise ValueError("give exactly one of 'dataset', 'path' or 'inline'")
        if self.dataset is not None:
            check_dataset(self.dataset)
        if self.path is not None and (self.prompt_column is None or self.output_column is None):
            raise ValueError("a CSV path needs prompt_column and output_column")
        if self.inline is not None:
            if not self.inline:
                raise ValueError("inline is empty: give at least one [prompt, output] row")
            for i, (p, o) in enumerate(self.inline):
                if p <= 0 or o <= 0:
                    raise ValueError(f"inline[{i}] = [{p}, {o}]: token counts must be positive")
        return self

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The (prompt, output) rows that pass the filters, in file (or list) order."""
        if self.inline is not None:
            arr = np.asarray(self.inline, dtype=np.int64)
            return self._filter(arr[:, 0], arr[:, 1], "<inline>")
        if self.dataset is not None:
            path = str(dataset_path(self.dataset))
            p_col, o_col = PAIRED_COLUMNS[self.dataset]
        else:
            path, p_col, o_col = str(self.path), "", ""
        p_col = self.prompt_column or p_col
        o_col = self.output_column or o_col
        return self._filter(read_column(path, p_col), read_column(path, o_col), path)

    def _filter(
        self, prompt: np.ndarray, output: np.ndarray, path: str
    ) -> tuple[np.ndarray, np.ndarray]:
        keep = np.ones(len(prompt), dtype=bool)
        if self.max_prompt_tokens is not None:
            keep &= prompt <= self.max_prompt_tokens
        if self.max_output_tokens is not None:
            keep &= output <= self.max_output_tokens
        if self.max_total_tokens is not None:
            keep &= prompt + output <= self.max_total_tokens
        if not keep.any():
            raise ConfigError("no row passes the max_*_tokens filters", source=path)
        return prompt[keep], output[keep]

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` rows (prompt tokens, output tokens): drawn with replacement, or in order."""
        prompt, output = self.pairs()
        rows = np.arange(n) % len(prompt) if self.in_order else rng.integers(0, len(prompt), size=n)
        return prompt[rows], output[rows]
