"""Orders of the waiting queue: FCFS, priority classes (FCFS within a class), shortest job
first. Preempted requests go back in front of their peers."""

from __future__ import annotations

import heapq
from collections import deque
from typing import Literal, Protocol

from llmsim.request import Request

Order = Literal["fcfs", "priority", "sjf"]


class WaitingQueue(Protocol):
    def push(self, r: Request) -> None: ...
    def push_front(self, r: Request) -> None: ...
    def peek(self) -> Request: ...
    def pop(self) -> Request: ...
    def __len__(self) -> int: ...


class FCFSQueue:
    """Arrival order; a preempted request returns to the front (vLLM's rule)."""

    __slots__ = ("_q",)

    def __init__(self) -> None:
        self._q: deque[Request] = deque()

    def push(self, r: Request) -> None:
        self._q.append(r)

    def push_front(self, r: Request) -> None:
        self._q.appendleft(r)

    def peek(self) -> Request:
        return self._q[0]

    def pop(self) -> Request:
        return self._q.popleft()

    def __len__(self) -> int:
        return len(self._q)


class KeyedQueue:
    """A heap on (class, key, arrival, id): ``priority`` orders by the request's priority
    class then arrival; ``sjf`` by its prompt + output length (the simulator knows it; a real
    engine would use a prediction) then arrival. A preempted request keeps its key, so it
    comes back ahead of everything that arrived after it."""

    __slots__ = ("_h", "_sjf")

    def __init__(self, sjf: bool) -> None:
        self._h: list[tuple[int, int, float, int, Request]] = []
        self._sjf = sjf

    def _key(self, r: Request) -> tuple[int, int, float, int, Request]:
        size = r.prompt_tokens + r.max_output_tokens if self._sjf else 0
        return (r.priority, size, r.arrival, r.id, r)

    def push(self, r: Request) -> None:
        heapq.heappush(self._h, self._key(r))

    push_front = push

    def peek(self) -> Request:
        return self._h[0][4]

    def pop(self) -> Request:
        return heapq.heappop(self._h)[4]

    def __len__(self) -> int:
        return len(self._h)


def make_queue(order: Order) -> WaitingQueue:
    if order == "fcfs":
        return FCFSQueue()
    return KeyedQueue(sjf=order == "sjf")


def victim_key(r: Request, order: Order) -> tuple[int, int]:
    """Larger is preempted first: the lowest class (largest priority value) under priority
    scheduling, then the latest admitted."""
    return (r.priority if order == "priority" else 0, r.admit_seq)
