"""Shared-prefix prompts from a fixed pool, as benchmark clients generate them.

inference-perf's shared-prefix generator builds a pool of prompts once: ``groups`` groups of users,
each group sharing one system prompt of ``system_prompt_tokens``, each user with a question of its
own of ``question_tokens``. The pool is shuffled and request ``i`` sends prompt ``i mod pool size``,
so after the first pass whole prompts come back and a prefix cache finds all of them (while they
stay cached), not only the system prompts.

``extra_tokens`` are the tokens the client adds around each prompt (measured prompts are that much
longer than system prompt plus question); they count as part of the user's own question.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from llmsim.workload.prefix import HashTable

_SYSTEM = 1 << 40  # id ranges of system-prompt blocks and of a user's own blocks
_USER = 1 << 41


class SharedPrefixConfig(BaseModel):
    """Workload section ``shared_prefix``: prompts from a cycled pool of groups x users."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    groups: int = Field(gt=0, le=100_000, description="Groups, one system prompt each.")
    prompts_per_group: int = Field(gt=0, le=100_000, description="Users (questions) per group.")
    system_prompt_tokens: int = Field(ge=0, le=10_000_000, description="Shared within a group.")
    question_tokens: int = Field(gt=0, le=10_000_000, description="Each user's own question.")
    extra_tokens: int = Field(
        default=0, ge=0, le=100_000, description="Tokens the client adds to every prompt."
    )
    shuffle: bool = Field(default=True, description="Shuffle the pool once before cycling it.")
    hash_block_size: int = Field(
        default=16, gt=0, le=1_000_000, description="Tokens per hash block."
    )

    @property
    def pool_size(self) -> int:
        return self.groups * self.prompts_per_group

    @property
    def prompt_tokens(self) -> int:
        return self.system_prompt_tokens + self.question_tokens + self.extra_tokens

    def draw(self, rng: np.random.Generator, n: int) -> HashTable:
        """Prefix ids of ``n`` requests cycling through the pool (every prompt is
        :attr:`prompt_tokens` long)."""
        bs = self.hash_block_size
        length = self.prompt_tokens
        blocks = -(-length // bs)
        shared = self.system_prompt_tokens // bs  # blocks made only of system-prompt tokens
        b = np.arange(blocks, dtype=np.int64)
        order = rng.permutation(self.pool_size) if self.shuffle else np.arange(self.pool_size)
        prompt = order[np.arange(n) % self.pool_size]
        group = prompt // self.prompts_per_group
        ids = np.where(
            b[None, :] < shared,
            _SYSTEM + group[:, None] * blocks + b[None, :],
            _USER + prompt[:, None] * blocks + b[None, :],
        )
        offsets = np.arange(n + 1, dtype=np.int64) * blocks
        return HashTable(ids.ravel(), offsets, bs)
