"""The synthetic datasets of vLLM's serving benchmark: ``random`` and ``sonnet``.

``random`` draws each prompt and output length uniformly within ``range_ratio`` of its target
(``[floor(L * (1 - r)), ceil(L * (1 + r))]``, both ends included) and puts ``prefix_len`` tokens
shared by every request in front of the prompt. ``sonnet`` sends prompts of about one length
whose first ``prefix_len`` tokens (the poem's first lines) are the same for every request; here
they are exactly ``input_len`` tokens. Token ids are irrelevant to a simulator: what matters is
the lengths and which prefix blocks requests share, given as a :class:`HashTable`.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmsim.workload.prefix import HashTable

_PREFIX = 1 << 42  # id range of the shared prefix's blocks


def _shared_prefix(n: int, prefix_len: int, block_size: int) -> HashTable | None:
    """Every request's first ``prefix_len // block_size`` blocks, the same ids for all."""
    blocks = prefix_len // block_size
    if blocks == 0:
        return None
    ids = np.tile(_PREFIX + np.arange(blocks, dtype=np.int64), n)
    return HashTable(ids, np.arange(n + 1, dtype=np.int64) * blocks, block_size)


def _around(rng: np.random.Generator, target: int, ratio: float, n: int) -> np.ndarray:
    low = max(math.floor(target * (1 - ratio)), 1)
    high = math.ceil(target * (1 + ratio))
    if low == high:
        return np.full(n, low, dtype=np.int64)
    return rng.integers(low, high, size=n, endpoint=True, dtype=np.int64)


class _Dataset(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hash_block_size: int = Field(
        default=16, gt=0, le=1_000_000, description="Tokens per prefix hash block."
    )
    prefix_len: int = Field(default=0, ge=0, le=10_000_000)

    def prefix(self, n: int) -> HashTable | None:
        """The ids of ``n`` requests' shared prefix blocks (None without a whole block)."""
        return _shared_prefix(n, self.prefix_len, self.hash_block_size)


class RandomDataset(_Dataset):
    """vLLM's ``--dataset-name random``: lengths around a target, an optional shared prefix."""

    kind: Literal["random"] = "random"
    input_len: int = Field(default=1024, gt=0, le=10_000_000, description="Prompt target.")
    output_len: int = Field(default=128, gt=0, le=10_000_000, description="Output target.")
    range_ratio: float = Field(
        default=0.0, ge=0, lt=1, description="Lengths drawn within this fraction of the targets."
    )
    prefix_len: int = Field(
        default=0, ge=0, le=10_000_000, description="Tokens before every prompt, shared by all."
    )

    def draw(
        self, rng_prompt: np.random.Generator, rng_output: np.random.Generator, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Prompt lengths (prefix included) and output lengths."""
        prompt = self.prefix_len + _around(rng_prompt, self.input_len, self.range_ratio, n)
        return prompt, _around(rng_output, self.output_len, self.range_ratio, n)


class SonnetDataset(_Dataset):
    """vLLM's ``--dataset-name sonnet``: prompts of ``input_len`` tokens, the first
    ``prefix_len`` of them the same for every request, and ``output_len`` output tokens."""

    kind: Literal["sonnet"] = "sonnet"
    input_len: int = Field(default=550, gt=0, le=10_000_000, description="Prompt tokens.")
    output_len: int = Field(default=150, gt=0, le=10_000_000, description="Output tokens.")
    prefix_len: int = Field(
        default=200, ge=0, le=10_000_000, description="Of the prompt, shared by every request."
    )

    @model_validator(mode="after")
    def _prefix_inside(self) -> SonnetDataset:
        if self.prefix_len >= self.input_len:
            raise ValueError(
                f"prefix_len ({self.prefix_len}) must be below input_len ({self.input_len})"
            )
        return self

    def draw(
        self, rng_prompt: np.random.Generator, rng_output: np.random.Generator, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Prompt lengths and output lengths (the generators are not used)."""
        return np.full(n, self.input_len, dtype=np.int64), np.full(n, self.output_len, np.int64)


BenchDataset = Annotated[RandomDataset | SonnetDataset, Field(discriminator="kind")]
