"""Arrival processes: when requests come.

Every open-loop process draws its times up front, vectorised, from the Generator it is given:
``times(rng, n)`` gives the first ``n`` arrivals and ``times_until(rng, duration)`` every
arrival in ``[0, duration)``. Renewal processes (Poisson, gamma, constant) live here; processes
whose rate changes with time are in :mod:`llmsim.workload.time_varying`, and closed-loop clients,
whose arrivals depend on when earlier requests finish, in :mod:`llmsim.workload.closed_loop`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from llmsim.limits import MAX_RATE
from llmsim.workload.closed_loop import ClosedLoopArrivals
from llmsim.workload.stages import StagedArrivals
from llmsim.workload.time_varying import DiurnalArrivals, OnOffArrivals, PiecewiseArrivals


class _Renewal(BaseModel):
    """Independent, identically distributed gaps between arrivals; the first at its gap."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    rate: float = Field(gt=0, le=MAX_RATE, description="Requests per second.")

    @property
    def mean_rate(self) -> float:
        return self.rate

    def _gaps(self, rng: np.random.Generator, n: int) -> np.ndarray:
        raise NotImplementedError

    def times(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """The first ``n`` arrival times, starting from 0 (the first arrival is at its gap)."""
        return np.cumsum(self._gaps(rng, n))

    def times_until(self, rng: np.random.Generator, duration: float) -> np.ndarray:
        """All arrival times in ``[0, duration)``."""
        chunk = max(16, int(self.rate * duration * 1.2) + 16)
        parts: list[np.ndarray] = []
        t = 0.0
        while True:
            ts = np.cumsum(self._gaps(rng, chunk)) + t
            if ts[-1] >= duration:
                parts.append(ts[ts < duration])
                return np.concatenate(parts)
            parts.append(ts)
            t = float(ts[-1])


class PoissonArrivals(_Renewal):
    """A Poisson process: independent exponential gaps with mean ``1 / rate``."""

    kind: Literal["poisson"] = "poisson"

    def _gaps(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.exponential(1.0 / self.rate, size=n)


class GammaArrivals(_Renewal):
    """Gamma-distributed gaps with mean ``1 / rate`` and coefficient of variation ``cv``.

    ``cv`` measures burstiness: 1 is a Poisson process, above 1 requests come in clumps
    separated by lulls, below 1 they are more regular than random.
    """

    kind: Literal["gamma"] = "gamma"
    cv: float = Field(
        gt=0, le=100, description="Standard deviation / mean of the gaps (1 = Poisson)."
    )

    def _gaps(self, rng: np.random.Generator, n: int) -> np.ndarray:
        shape = 1.0 / self.cv**2
        return rng.gamma(shape, 1.0 / (self.rate * shape), size=n)


class ConstantArrivals(_Renewal):
    """One request every ``1 / rate`` seconds, the first at ``1 / rate``. Draws nothing."""

    kind: Literal["constant"] = "constant"

    def _gaps(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, 1.0 / self.rate)

    def times(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.arange(1, n + 1, dtype=float) / self.rate

    def times_until(self, rng: np.random.Generator, duration: float) -> np.ndarray:
        ts = np.arange(1, int(np.ceil(duration * self.rate)) + 2, dtype=float) / self.rate
        return ts[ts < duration]


class BatchArrivals(BaseModel):
    """Every request present at time 0: an offline (throughput) run."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["batch"] = "batch"

    def times(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.zeros(n)

    def times_until(self, rng: np.random.Generator, duration: float) -> np.ndarray:
        raise ValueError("batch arrivals need workload.num_requests, not duration_s")


OpenLoopArrivals = (
    PoissonArrivals
    | GammaArrivals
    | ConstantArrivals
    | OnOffArrivals
    | PiecewiseArrivals
    | DiurnalArrivals
    | BatchArrivals
    | StagedArrivals
)
"""Processes whose arrival times are drawn before the run."""

ArrivalConfig = Annotated[OpenLoopArrivals | ClosedLoopArrivals, Field(discriminator="kind")]
