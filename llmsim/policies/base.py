"""What a policy hands the engine each step, and the interface every policy implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from llmsim.cost.base import BatchShape
from llmsim.kv_cache import BlockPool
from llmsim.request import Request


@dataclass(frozen=True)
class ReplicaContext:
    """What a policy may know about the replica it schedules."""

    pool: BlockPool
    block_size: int
    max_model_len: int
    kv_block_bytes: float = 0.0  # bytes of one KV block on one GPU
    host_bandwidth: float = 0.0  # bytes/s between GPU and host memory (KV swap)
    num_gpus: int = 1  # GPUs of the replica (tensor x pipeline parallel), each holding a share
    role: Literal["mixed", "prefill", "decode"] = "mixed"  # disaggregated serving
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))


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
    extra_s: float = 0.0  # added to the first step (e.g. KV swapped over PCIe)


@dataclass(slots=True)
class StepStats:
    """What the engine records about each executed step (filled by ``Policy.update``)."""

    kv_blocks: list[int]
    num_waiting: int
    num_running: int
    emitted: int | None = None  # tokens emitted by the step, when not shape.sampled_seqs


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
        """Requests finished or rejected, in order of completion: the policy appends them;
        the engine removes them as it accounts for them (unless this returns a new list on
        every read)."""
        ...
