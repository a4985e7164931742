"""Routers: which replica gets a request. Plain Python over the replicas' live counters."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from llmsim.cluster import RouterKind
from llmsim.request import Request


class Routable(Protocol):
    """What a router may read of a replica."""

    index: int
    pool: str
    outstanding: int  # requests waiting or running
    pending_tokens: int  # prompt + output tokens of the requests it holds, not yet finished

    @property
    def kv_usage(self) -> float: ...


@dataclass
class Router:
    """Chooses among candidate replicas by one rule (see ``RouterConfig``)."""

    kind: RouterKind
    rng: np.random.Generator
    _turn: dict[str, int] = field(default_factory=dict)
    _sticky: dict[Hashable, int] = field(default_factory=dict)

    def choose(self, r: Request, candidates: Sequence[Routable], key: Hashable = None) -> Routable:
        """``key``: the prefix or session identity for the affinity rules (None: no affinity)."""
        if len(candidates) == 1:
            return candidates[0]
        kind = self.kind
        if kind == "round_robin":
            group = candidates[0].pool
            i = self._turn.get(group, 0)
            self._turn[group] = i + 1
            return candidates[i % len(candidates)]
        if kind == "random":
            return candidates[int(self.rng.integers(len(candidates)))]
        if kind == "least_kv":
            return min(candidates, key=lambda c: (c.kv_usage, c.outstanding, c.index))
        if kind == "shortest_queue_tokens":
            return min(candidates, key=lambda c: (c.pending_tokens, c.index))
        if kind in ("prefix_affinity", "session_affinity") and key is not None:
            chosen = self._sticky.get(key)
            for c in candidates:
                if c.index == chosen:
                    return c
            best = self._least_outstanding(candidates)
            self._sticky[key] = best.index
            return best
        return self._least_outstanding(candidates)

    @staticmethod
    def _least_outstanding(candidates: Sequence[Routable]) -> Routable:
        return min(candidates, key=lambda c: (c.outstanding, c.index))
