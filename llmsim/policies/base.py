"""What a policy hands the engine each step, and the interface every policy implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from llmsim.cost.base import BatchShape
from llmsim.request import Request


@dataclass(slots=True)
class Plan:
    """One step, or a run of identical-kind decode steps, chosen by a policy.

    ``prefills`` lists the requests granted prompt tokens this step, with the count granted.
    ``decode_steps > 0`` marks a run of pure-decode steps over the same set of requests: the
    engine may execute any number from 1 to ``decode_steps`` of them as one event (it stops
    early when a request arrives), each step still priced on its own shape.
    """

    shape: BatchShape
    prefills: list[tuple[Request, int]] = field(default_factory=list)
    decode_steps: int = 0

    @property
    def is_decode_run(self) -> bool:
        return self.decode_steps > 0


@dataclass(slots=True)
class StepStats:
    """What the engine records about each executed step (filled by ``Policy.update``)."""

    kv_blocks: list[int]
    num_waiting: int
    num_running: int


class Policy(Protocol):
    """A batching policy. Plain Python: no SimPy, testable by calling methods by hand."""

    def add(self, request: Request, now: float) -> None:
        """A request arrives at this replica."""
        ...

    def schedule(self, now: float) -> Plan | None:
        """The next step, or None when there is nothing to run until something arrives."""
        ...

    def update(self, plan: Plan, start: float, durations: list[float]) -> StepStats:
        """Apply the outcome of ``len(durations)`` executed steps of ``plan``."""
        ...

    def wake_at(self, now: float) -> float | None:
        """A time at which ``schedule`` may have work although nothing arrived (timers)."""
        ...

    @property
    def finished(self) -> list[Request]:
        """Requests finished or rejected so far, in order of completion."""
        ...
