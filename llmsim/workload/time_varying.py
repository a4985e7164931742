"""Arrival processes whose rate changes with time: on/off bursts, a schedule, a daily curve.

Each is a non-homogeneous Poisson process with rate ``rate_at(t)``, sampled exactly by thinning
(Lewis and Shedler): candidates come from a Poisson process at the curve's maximum rate and each
is kept with probability ``rate_at(t) / max_rate``. Everything is drawn in vectorised chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmsim.errors import ConfigError
from llmsim.limits import MAX_RATE, MAX_SECONDS

RateFn = Callable[[np.ndarray], np.ndarray]

_MAX_CHUNK = 1 << 20


def thinned_times(
    rng: np.random.Generator,
    rate_at: RateFn,
    max_rate: float,
    *,
    n: int | None = None,
    until: float | None = None,
    mean_rate: float | None = None,
) -> np.ndarray:
    """Arrival times of a Poisson process with rate ``rate_at(t) <= max_rate``, by thinning.

    Gives the first ``n`` arrivals, or every arrival in ``[0, until)``. ``rate_at`` receives
    increasing candidate times, chunk by chunk, in time order.
    """
    if until is not None:
        chunk = int(max_rate * until * 1.1) + 16
    else:
        assert n is not None
        chunk = int(n * max_rate / (mean_rate or max_rate) * 1.1) + 16
    chunk = min(chunk, _MAX_CHUNK)
    parts: list[np.ndarray] = []
    kept = 0
    t = 0.0
    while True:
        cand = t + np.cumsum(rng.exponential(1.0 / max_rate, size=chunk))
        ts = cand[rng.random(chunk) * max_rate < rate_at(cand)]
        if until is not None and cand[-1] >= until:
            parts.append(ts[ts < until])
            break
        parts.append(ts)
        kept += len(ts)
        if n is not None and kept >= n:
            break
        t = float(cand[-1])
    out = np.concatenate(parts)
    return out if n is None else out[:n]


class _RateCurve(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @property
    def max_rate(self) -> float:
        raise NotImplementedError

    @property
    def mean_rate(self) -> float:
        """Long-run requests per second."""
        raise NotImplementedError

    def _rate_fn(self, rng: np.random.Generator) -> RateFn:
        """The rate curve used for one draw (random for on/off with random periods)."""
        return self.rate_at

    def rate_at(self, t: np.ndarray) -> np.ndarray:
        """Requests per second at times ``t``."""
        raise NotImplementedError

    def times(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """The first ``n`` arrival times."""
        if self.mean_rate <= 0:
            raise ConfigError(
                "the rate stays 0 after the schedule ends, so the requests never all arrive; "
                "give workload.duration_s instead of num_requests",
                field="workload.arrival.schedule",
            )
        fn = self._rate_fn(rng)
        return thinned_times(rng, fn, self.max_rate, n=n, mean_rate=self.mean_rate)

    def times_until(self, rng: np.random.Generator, duration: float) -> np.ndarray:
        """All arrival times in ``[0, duration)``."""
        return thinned_times(rng, self._rate_fn(rng), self.max_rate, until=duration)


class OnOffArrivals(_RateCurve):
    """Bursts: Poisson at ``rate`` for ``on_s`` seconds, then ``off_rate`` for ``off_s``, repeated.

    The run starts with an on-period. With ``periods: exponential`` the period lengths are
    drawn from exponential distributions with means ``on_s`` and ``off_s`` (a two-state
    Markov-modulated Poisson process) instead of being fixed.
    """

    kind: Literal["onoff"] = "onoff"
    rate: float = Field(gt=0, le=MAX_RATE, description="Requests per second during an on-period.")
    on_s: float = Field(gt=0, le=MAX_SECONDS)
    off_s: float = Field(gt=0, le=MAX_SECONDS)
    off_rate: float = Field(
        default=0.0, ge=0, le=MAX_RATE, description="Requests per second while off."
    )
    periods: Literal["fixed", "exponential"] = "fixed"

    @model_validator(mode="after")
    def _burst(self) -> OnOffArrivals:
        if self.off_rate > self.rate:
            raise ValueError(f"off_rate ({self.off_rate}) must be <= rate ({self.rate})")
        return self

    @property
    def max_rate(self) -> float:
        return self.rate

    @property
    def mean_rate(self) -> float:
        return (self.rate * self.on_s + self.off_rate * self.off_s) / (self.on_s + self.off_s)

    def rate_at(self, t: np.ndarray) -> np.ndarray:
        if self.periods != "fixed":
            raise ValueError("random on/off periods have no fixed rate curve")
        phase = np.mod(t, self.on_s + self.off_s)
        return np.where(phase < self.on_s, self.rate, self.off_rate)

    def _rate_fn(self, rng: np.random.Generator) -> RateFn:
        if self.periods == "fixed":
            return self.rate_at
        return _RandomPeriods(
            np.random.default_rng(int(rng.integers(2**63))), self.on_s, self.off_s,
            self.rate, self.off_rate,
        )  # fmt: skip


class _RandomPeriods:
    """An alternating on/off rate whose period ends are drawn as far as they are asked for."""

    def __init__(
        self, rng: np.random.Generator, on_s: float, off_s: float, hi: float, lo: float
    ) -> None:
        self.rng = rng
        self.on_s, self.off_s, self.hi, self.lo = on_s, off_s, hi, lo
        self.ends = np.empty(0)  # end of the k-th period; even k are on-periods

    def __call__(self, t: np.ndarray) -> np.ndarray:
        last = float(t.max(initial=0.0))
        while len(self.ends) == 0 or self.ends[-1] <= last:
            k = max(64, len(self.ends) // 2)
            d = np.empty(2 * k)
            d[0::2] = self.rng.exponential(self.on_s, size=k)
            d[1::2] = self.rng.exponential(self.off_s, size=k)
            start = self.ends[-1] if len(self.ends) else 0.0
            self.ends = np.concatenate([self.ends, start + np.cumsum(d)])
        idx = np.searchsorted(self.ends, t, side="right")
        return np.where(idx % 2 == 0, self.hi, self.lo)


class RateSegment(BaseModel):
    """``rate`` requests per second for ``duration_s`` seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    duration_s: float = Field(gt=0, le=MAX_SECONDS)
    rate: float = Field(ge=0, le=MAX_RATE)


class PiecewiseArrivals(_RateCurve):
    """A Poisson process whose rate follows a schedule of constant segments.

    After the last segment the schedule starts again (``repeat: true``) or its last rate holds.
    """

    kind: Literal["piecewise"] = "piecewise"
    schedule: tuple[RateSegment, ...] = Field(min_length=1)
    repeat: bool = False

    @model_validator(mode="after")
    def _some_traffic(self) -> PiecewiseArrivals:
        if self.max_rate <= 0:
            raise ValueError("every segment has rate 0; give at least one positive rate")
        return self

    @property
    def _ends(self) -> np.ndarray:
        return np.cumsum([s.duration_s for s in self.schedule])

    @property
    def max_rate(self) -> float:
        return max(s.rate for s in self.schedule)

    @property
    def mean_rate(self) -> float:
        if not self.repeat:
            return self.schedule[-1].rate
        return sum(s.rate * s.duration_s for s in self.schedule) / float(self._ends[-1])

    def rate_at(self, t: np.ndarray) -> np.ndarray:
        ends = self._ends
        tt = np.mod(t, ends[-1]) if self.repeat else np.asarray(t)
        idx = np.minimum(np.searchsorted(ends, tt, side="right"), len(ends) - 1)
        return np.array([s.rate for s in self.schedule])[idx]


class DiurnalArrivals(_RateCurve):
    """A daily cycle, compressed into ``period_s``: a cosine around a mean rate.

    ``rate_at(t) = rate * (1 + amplitude * cos(2 pi (t / period_s - peak_at)))``: the busiest
    moment is at ``peak_at`` of each period, the quietest half a period later, and the peak is
    ``(1 + amplitude) / (1 - amplitude)`` times the trough.
    """

    kind: Literal["diurnal"] = "diurnal"
    rate: float = Field(gt=0, le=MAX_RATE, description="Mean requests per second over a period.")
    amplitude: float = Field(default=0.5, ge=0, le=1, description="Swing relative to the mean.")
    period_s: float = Field(gt=0, le=MAX_SECONDS, description="Length of one compressed day.")
    peak_at: float = Field(default=0.5, ge=0, lt=1, description="Peak, as a fraction of a day.")

    @property
    def max_rate(self) -> float:
        return self.rate * (1 + self.amplitude)

    @property
    def mean_rate(self) -> float:
        return self.rate

    def rate_at(self, t: np.ndarray) -> np.ndarray:
        phase = 2 * np.pi * (np.asarray(t) / self.period_s - self.peak_at)
        return self.rate * (1 + self.amplitude * np.cos(phase))
