"""The running requests of a replica that are in steady decode, advanced in O(1) per step.

Every decode step computes one token for every member. Instead of touching each request every
step, the set keeps a decode-step counter ``D`` and, per request, the offset ``c`` such that its
computed-token count is ``c + D``. Aggregates answer what a step needs without a loop:

* context attended by the step: ``sum(c + D + 1) = sum_c + n * (D + 1)``;
* KV blocks the step must allocate: requests whose computed count is a multiple of the block
  size, i.e. those with ``c % block_size == -D % block_size`` (a count per residue);
* the next request to finish: a heap keyed by the counter value at which it produces its last
  token;
* the preemption victim: a heap on the policy's victim key (latest admitted by default).

With a contiguous KV layout (``paged=False``) every request reserved its blocks up front, so
decode steps allocate nothing.

A request's own counters are brought up to date only when it finishes or is preempted.
"""

from __future__ import annotations

import heapq

from llmsim.cost.base import BatchShape
from llmsim.request import Request


class VictimQueue:
    """Members in preemption order (largest victim key first), with lazy deletion: entries of
    requests that left the set are skipped when they reach the top."""

    __slots__ = ("_heap",)

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, int, Request]] = []

    def push(self, key: tuple[int, int], seq: int, r: Request) -> None:
        heapq.heappush(self._heap, (-key[0], -key[1], seq, r))

    def pop(self, members: dict[int, Request]) -> Request:
        """Remove the victim from ``members`` and return it."""
        while True:
            _, _, seq, r = heapq.heappop(self._heap)
            if members.pop(seq, None) is not None:
                return r

    def stale(self, members: dict[int, Request]) -> bool:
        """True when most entries are of requests that left: time to :meth:`compact`."""
        return len(self._heap) > 2 * len(members) + 64

    def compact(self, members: dict[int, Request]) -> None:
        """Drop the entries of requests that left (keys are distinct: the order of what
        stays is unchanged), so that a long run does not keep every request it served."""
        self._heap = [e for e in self._heap if e[2] in members]
        heapq.heapify(self._heap)

    def peek(self, members: dict[int, Request]) -> tuple[int, int] | None:
        """The victim's key, or None when ``members`` is empty."""
        heap = self._heap
        while heap and heap[0][2] not in members:
            heapq.heappop(heap)
        return (-heap[0][0], -heap[0][1]) if heap else None


class DecodeSet:
    __slots__ = (
        "_seq",
        "block_size",
        "counter",
        "heap",
        "members",
        "n",
        "paged",
        "residue",
        "sum_c",
        "victims",
    )

    emitted: int | None = None  # tokens per step: one per member

    def __init__(self, block_size: int, paged: bool = True) -> None:
        self.block_size = block_size
        self.paged = paged
        self.counter = 0
        self.n = 0
        self.sum_c = 0
        self.residue = [0] * block_size
        self.heap: list[tuple[int, int, Request]] = []
        self.victims = VictimQueue()
        self.members: dict[int, Request] = {}  # join sequence -> request
        self._seq = 0

    def join(self, r: Request, victim: tuple[int, int] = (0, 0)) -> None:
        """Add a request whose last sampled token is not yet computed; ``victim`` orders
        preemption (largest first)."""
        c = r.num_computed - self.counter
        r.lazy_offset = c
        r.finish_decode = self.counter + r.max_output_tokens - r.num_output
        self._seq += 1
        self.members[self._seq] = r
        heapq.heappush(self.heap, (r.finish_decode, self._seq, r))
        self.victims.push(victim, self._seq, r)
        if self.victims.stale(self.members):  # (the finish heap has the same entries)
            self.victims.compact(self.members)
            self.heap = [e for e in self.heap if e[1] in self.members]
            heapq.heapify(self.heap)
        self.n += 1
        self.sum_c += c
        if self.paged:
            self.residue[c % self.block_size] += 1

    def _remove(self, r: Request) -> None:
        self.n -= 1
        self.sum_c -= r.lazy_offset
        if self.paged:
            self.residue[r.lazy_offset % self.block_size] -= 1
        r.num_computed = r.lazy_offset + self.counter
        r.num_output = r.num_computed + 1 - r.prompt_tokens

    def shape(self) -> BatchShape:
        """The next decode step as the GPU sees it."""
        return BatchShape.decode(self.n, self.context)

    @property
    def context(self) -> int:
        """Tokens attended by the next decode step (sum over members)."""
        return self.sum_c + self.n * (self.counter + 1)

    def blocks_needed(self, ahead: int = 0) -> int:
        """New KV blocks the decode step ``ahead`` steps from now must allocate."""
        return self.residue[(-(self.counter + ahead)) % self.block_size]

    def steps_to_finish(self) -> int:
        """Decode steps until the next member produces its last token (>= 1)."""
        heap = self.heap
        while heap and heap[0][1] not in self.members:
            heapq.heappop(heap)
        return heap[0][0] - self.counter

    def steps_within(self, free_blocks: int, limit: int) -> int:
        """How many of the next ``limit`` steps can run on ``free_blocks`` blocks (>= 0)."""
        if not self.paged:
            return limit
        # Each member needs one block per block_size steps: a cheap sufficient check first.
        if free_blocks >= self.n * -(-limit // self.block_size):
            return limit
        need = 0
        for j in range(limit):
            need += self.residue[(-(self.counter + j)) % self.block_size]
            if need > free_blocks:
                return j
        return limit

    def advance(self, steps: int) -> list[int]:
        """Run ``steps`` decode steps; return the blocks allocated at each."""
        bs = self.block_size
        res = self.residue
        d = self.counter
        self.counter = d + steps
        if steps == 1:
            return [res[-d % bs]]
        return [res[-j % bs] for j in range(d, d + steps)]

    def pop_finished(self) -> list[Request]:
        """Members whose last token was produced by the step just advanced past."""
        done: list[Request] = []
        heap = self.heap
        while heap and heap[0][0] <= self.counter:
            _, seq, r = heapq.heappop(heap)
            if self.members.pop(seq, None) is not None:
                self._remove(r)
                done.append(r)
        return done

    def pop_last(self) -> Request:
        """Remove the preemption victim (largest victim key) and return it."""
        r = self.victims.pop(self.members)
        self._remove(r)
        return r

    def peek_victim(self) -> tuple[int, int] | None:
        """The victim key of the member ``pop_last`` would remove, or None when empty."""
        return self.victims.peek(self.members)

    def __len__(self) -> int:
        return self.n
