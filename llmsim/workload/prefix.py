"""Prefix identity: which blocks of tokens two requests share, without the tokens themselves.

A request's token sequence (its prompt, then its output) is cut into blocks of ``block_size``
tokens. ``ids(i)[b]`` names the content of tokens ``[0, (b + 1) * block_size)`` of request ``i``:
two requests with equal ids at position ``b`` have the same first ``b + 1`` blocks, so a prefix
cache may reuse them. Ids are chained (an id names the whole prefix up to its block, not just
the block), which is how both Mooncake's ``hash_ids`` and vLLM's block hashes behave.

How far a request's list goes depends on where it came from:

- Mooncake traces: ``ceil(prompt / 512)`` ids covering the prompt; the last one names a partial
  block when the prompt is not a multiple of 512 tokens.
- Generated sessions: every *full* block of prompt and output, so the blocks a turn's answer
  fills during decode have ids too, and the next turn (whose prompt repeats that answer) can
  find them.

The hash block size need not be the KV cache's block size: a prefix cache keys each KV block
by the id of the hash block holding its last token and its offset inside that hash block
(``llmsim.kv_cache.prompt_block_keys``), which works for any pair of sizes. A ``Request``
carries one request's ids as ``prefix_hashes`` (a tuple) and the size as ``hash_block_tokens``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


class PrefixHashes(ABC):
    """Per-request prefix block ids, all with the same ``block_size``."""

    block_size: int

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def ids(self, i: int) -> np.ndarray:
        """Block ids of request ``i`` (int64), one per block from the start."""

    @abstractmethod
    def counts(self) -> np.ndarray:
        """How many ids each request has."""

    @abstractmethod
    def take(self, idx: np.ndarray) -> PrefixHashes:
        """The ids of requests ``idx``, in that order."""

    def lists(self) -> list[list[int]]:
        """Every request's ids as a Python list (for tests and small streams)."""
        return [self.ids(i).tolist() for i in range(len(self))]


@dataclass(frozen=True)
class HashTable(PrefixHashes):
    """Explicit ids (as read from a trace): request ``i`` has ``flat[offsets[i]:offsets[i+1]]``."""

    flat: np.ndarray
    offsets: np.ndarray
    block_size: int

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def ids(self, i: int) -> np.ndarray:
        return self.flat[self.offsets[i] : self.offsets[i + 1]]

    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, idx: np.ndarray) -> HashTable:
        idx = np.asarray(idx, dtype=np.int64)
        starts = self.offsets[idx]
        lens = self.offsets[idx + 1] - starts
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        # Position of every kept id in ``flat``: its request's start plus its rank within it.
        rank = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], lens)
        return HashTable(self.flat[np.repeat(starts, lens) + rank], offsets, self.block_size)

    @classmethod
    def from_lists(cls, lists: list[list[int]], block_size: int) -> HashTable:
        lens = np.fromiter((len(x) for x in lists), np.int64, len(lists))
        offsets = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        flat = np.fromiter((v for x in lists for v in x), np.int64, int(offsets[-1]))
        return cls(flat, offsets, block_size)


@dataclass(frozen=True)
class SessionHashes(PrefixHashes):
    """Ids of generated conversations, computed on demand instead of stored.

    Request ``i`` has ``count[i]`` ids: the first ``shared`` blocks (a system prompt common to
    every session) are ``0 .. shared - 1``; block ``b >= shared`` is ``base[i] + b``, where
    ``base`` is the same for every turn of a session and disjoint between sessions.
    """

    base: np.ndarray
    count: np.ndarray
    shared: int
    block_size: int

    def __len__(self) -> int:
        return len(self.count)

    def ids(self, i: int) -> np.ndarray:
        b = np.arange(self.count[i], dtype=np.int64)
        return np.where(b < self.shared, b, self.base[i] + b)

    def counts(self) -> np.ndarray:
        return self.count

    def take(self, idx: np.ndarray) -> SessionHashes:
        return SessionHashes(self.base[idx], self.count[idx], self.shared, self.block_size)
