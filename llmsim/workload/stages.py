"""Load stages: constant-rate stages run one after another, as benchmark clients run them.

A client such as inference-perf sends each stage's ``rate x duration`` requests, waits until every
one of them has finished (the drain), and only then starts the next stage. The times drawn here
place each stage right after the previous one's nominal end; the engine holds a stage back until
the requests before it have drained (:attr:`RequestStream.stage_starts`), shifting the whole stage
later by the time the drain took.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class Stage(BaseModel):
    """One load stage: ``round(rate x duration_s)`` requests."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    rate: float = Field(gt=0, le=1e6, description="Requests per second.")
    duration_s: float = Field(gt=0, le=1e7, description="Seconds the stage sends for.")

    @property
    def num_requests(self) -> int:
        return max(1, round(self.rate * self.duration_s))


class StagedArrivals(BaseModel):
    """Workload ``arrival`` with ``kind: stages``: stages of exactly ``rate x duration_s``
    requests each, in order; with ``drain`` a stage starts once the previous one has finished."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["stages"] = "stages"
    stages: tuple[Stage, ...] = Field(min_length=1, description="The load stages, in order.")
    spacing: Literal["poisson", "constant"] = Field(
        default="poisson",
        description="Gaps within a stage: exponential (what inference-perf's 'constant' load "
        "shows in practice) or exactly 1 / rate.",
    )
    drain: bool = Field(
        default=True, description="Wait for every request of a stage to finish before the next."
    )

    @property
    def mean_rate(self) -> float:
        return self.num_requests / sum(s.duration_s for s in self.stages)

    @property
    def num_requests(self) -> int:
        return sum(s.num_requests for s in self.stages)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(arrival times, stage of each request, nominal start of each stage), seconds.

        A stage's requests are spread over its duration: ``n`` exponential gaps scaled so the
        last arrival falls inside the stage (``spacing: poisson``), or one every ``1 / rate``.
        """
        times: list[np.ndarray] = []
        stage: list[np.ndarray] = []
        starts: list[float] = []
        t0 = 0.0
        for k, s in enumerate(self.stages):
            n = s.num_requests
            if self.spacing == "constant":
                local = np.arange(n, dtype=float) / s.rate
            else:
                gaps = rng.exponential(1.0, size=n + 1)
                local = np.cumsum(gaps)[:-1] / gaps.sum() * s.duration_s
            starts.append(t0)
            times.append(t0 + local)
            stage.append(np.full(n, k, dtype=np.int64))
            t0 += s.duration_s
        return np.concatenate(times), np.concatenate(stage), np.asarray(starts)
