"""Speculative decoding on top of continuous batching.

Each decode step, a draft model proposes ``num_speculative_tokens`` (k) tokens per request,
one forward pass each; the target model then verifies all k + 1 positions in one pass. Each
draft token is accepted with probability ``acceptance_rate`` (the same for every request, or
drawn per request from a Beta distribution); the accepted tokens form a prefix, and the target
adds one token of its own. So a step emits 1 to k + 1 tokens per request, and costs the k draft
passes plus one wider target pass. Both models' weights and KV caches share the GPU memory.

Inter-token latency counts one gap per step in which a request receives tokens, as a
streaming client sees them (several tokens may arrive together).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from llmsim.cost.base import BatchShape
from llmsim.kv_cache import blocks_for
from llmsim.policies.base import ReplicaContext
from llmsim.policies.continuous import ContinuousPolicy
from llmsim.policies.continuous_config import ContinuousConfig
from llmsim.policies.decode_set import VictimQueue
from llmsim.request import Request


class SpeculativeConfig(ContinuousConfig):
    """Scenario section ``policy`` with ``kind: speculative``: continuous batching fields plus
    the draft model and its acceptance."""

    kind: Literal["speculative"] = "speculative"  # type: ignore[assignment]
    draft_model: str = Field(description="A catalog model smaller than the target.")
    num_speculative_tokens: int = Field(default=4, gt=0, le=16)
    acceptance_rate: float = Field(default=0.7, ge=0, le=1)
    acceptance_concentration: float | None = Field(
        default=None,
        gt=0,
        description="When set, each request's rate ~ Beta(rate * c, (1 - rate) * c).",
    )

    @model_validator(mode="after")
    def _prefill_first_only(self) -> SpeculativeConfig:
        if self.chunked_prefill or self.mixed_prefill:
            raise ValueError(
                "speculative decoding is modelled with chunked_prefill: false and "
                "mixed_prefill: false"
            )
        if self.num_scheduler_steps > 1:
            raise ValueError("speculative decoding runs with num_scheduler_steps: 1 (as in vLLM)")
        return self

    def build(self, ctx: ReplicaContext) -> SpeculativePolicy:
        return SpeculativePolicy(self, ctx)


class SpeculativePolicy(ContinuousPolicy):
    cfg: SpeculativeConfig

    def _decode_set(self) -> SpeculativeDecodeSet:  # type: ignore[override]
        c = self.cfg
        assert isinstance(c, SpeculativeConfig)
        return SpeculativeDecodeSet(
            self.block_size,
            c.num_speculative_tokens,
            c.acceptance_rate,
            c.acceptance_concentration,
            self.ctx.rng,
            paged=self.paged,
        )

    def _reserve_extra_tokens(self) -> int:
        """A verification step checks k positions past a request's last token."""
        assert isinstance(self.cfg, SpeculativeConfig)
        return self.cfg.num_speculative_tokens


class SpeculativeDecodeSet:
    """Decoding requests, advanced eagerly: every step draws each request's accepted tokens.

    Same interface as ``DecodeSet``; a step's KV need includes the k + 1 verified positions.
    With a contiguous KV layout (``paged=False``) every request reserved its blocks up front,
    so steps allocate nothing.
    """

    def __init__(
        self,
        block_size: int,
        k: int,
        rate: float,
        concentration: float | None,
        rng: np.random.Generator,
        *,
        paged: bool = True,
    ) -> None:
        self.block_size = block_size
        self.paged = paged
        self.k = k
        self.rate = rate
        self.concentration = concentration
        self.rng = rng
        self.counter = 0
        self.members: dict[int, Request] = {}
        self.victims = VictimQueue()
        self.rates: dict[int, float] = {}  # request id -> its acceptance rate
        self.emitted: int | None = 0
        self._seq = 0

    @property
    def n(self) -> int:
        return len(self.members)

    def __len__(self) -> int:
        return len(self.members)

    @property
    def context(self) -> int:
        return sum(r.num_computed + 1 for r in self.members.values())

    def shape(self) -> BatchShape:
        n = self.n
        return BatchShape(
            decode_seqs=n,
            decode_context=self.context,
            sampled_seqs=n * (self.k + 1),
            spec_tokens=self.k,
        )

    def join(self, r: Request, victim: tuple[int, int] = (0, 0)) -> None:
        if r.id not in self.rates:
            if self.concentration is None:
                self.rates[r.id] = self.rate
            else:
                c = self.concentration
                a = max(self.rate * c, 1e-6)
                b = max((1 - self.rate) * c, 1e-6)
                self.rates[r.id] = float(self.rng.beta(a, b))
        self._seq += 1
        self.members[self._seq] = r
        self.victims.push(victim, self._seq, r)
        if self.victims.stale(self.members):
            self.victims.compact(self.members)

    def blocks_needed(self, ahead: int = 0) -> int:
        if not self.paged:
            return 0
        bs, k = self.block_size, self.k
        return sum(
            blocks_for(r.num_computed + k + 1, bs) - blocks_for(r.num_computed, bs)
            for r in self.members.values()
        )

    def steps_to_finish(self) -> int:
        return 1

    def steps_within(self, free_blocks: int, limit: int) -> int:
        return 1 if self.blocks_needed() <= free_blocks else 0

    def advance(self, steps: int) -> list[int]:
        """One verification step: draw acceptances, move every request forward."""
        assert steps == 1
        rs = list(self.members.values())
        rates = np.fromiter((self.rates[r.id] for r in rs), float, len(rs))
        accept = self.rng.random((len(rs), self.k)) < rates[:, None]
        gained = np.cumprod(accept, axis=1).sum(axis=1) + 1
        bs = self.block_size
        alloc = 0
        total = 0
        for r, g in zip(rs, gained.tolist(), strict=True):
            g = min(g, r.max_output_tokens - r.num_output)
            before = blocks_for(r.num_computed, bs)
            r.num_computed += g
            r.num_output += g
            alloc += blocks_for(r.num_computed, bs) - before
            total += g
        self.emitted = total
        self.counter += 1
        return [alloc if self.paged else 0]

    def pop_finished(self) -> list[Request]:
        done = [(s, r) for s, r in self.members.items() if r.num_output >= r.max_output_tokens]
        for s, _ in done:
            del self.members[s]
        return [r for _, r in done]

    def pop_last(self) -> Request:
        return self.victims.pop(self.members)

    def peek_victim(self) -> tuple[int, int] | None:
        return self.victims.peek(self.members)
