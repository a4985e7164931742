"""Closed-loop clients: N users, each sending its next request after the previous one finishes.

This is how most serving benchmarks drive an engine (a fixed concurrency). Arrival times depend
on finish times, so they cannot be drawn before the run: the workload draws everything else
(lengths, sessions, and each request's think time, so that every policy compared on the same
seed sees the same think times), and the engine drives a :class:`ClosedLoopClients` as requests
finish::

    clients = ClosedLoopClients.from_config(scenario.workload.arrival, stream)
    for send in clients.initial_requests():       # one per client, over the ramp
        schedule_arrival(send.time, send.request)
    ...
    # whenever request i leaves the system (finished or rejected) at time `now`:
    send = clients.on_finish(i, now)
    if send is not None:
        schedule_arrival(send.time, send.request)   # send.time >= now

Each client has at most one request in flight, so the system never holds more than
``clients`` requests. A client runs whole sessions: the turns of a conversation go out in order
from one client; when its conversation ends it starts the next one nobody has taken.

Like a benchmark's clients, they start over a ramp (``ramp_up_s``) rather than all at one
instant, and each request goes out a little after its client is ready to send it (``jitter``:
the client's own event loop, before the client starts timing the request, so not part of its
latency; the server's time, which is, is the engine's ``tokenize_us_per_token`` and
``frontend_ms``). Started together,
clients of equal-length requests would stay in lock-step waves (every prefill in one step,
then only decodes) that real clients do not show.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from llmsim.errors import ConfigError
from llmsim.limits import MAX_COUNT
from llmsim.workload.durations import DurationConfig, ExponentialDuration, FixedDuration
from llmsim.workload.stream import RequestStream

# Benchmark-like defaults. A benchmark's clients do not start in one instant: each is set up
# in turn by the client's event loop (tasks, connections), so a burst of clients starts spread
# over about a second; clients start evenly over ``DEFAULT_RAMP_UP_S``. Afterwards each request
# goes out a few milliseconds after its client is ready, by an amount that varies from request
# to request (the client's event loop): exponential with mean ``DEFAULT_JITTER_S``. The ramp is
# what matters for equal lengths: started together, clients finish together and come back
# together (docs/workloads.md has the measurement).
DEFAULT_JITTER_S = 0.002
DEFAULT_RAMP_UP_S = 1.0


class ClosedLoopArrivals(BaseModel):
    """``clients`` concurrent users; each waits ``think_time`` after a reply before sending again.

    Needs ``workload.num_requests`` (the total sent by all clients together). Client ``c``
    sends its first request at ``c * ramp_up_s / clients``; every request reaches the engine
    ``jitter`` after it is sent.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["closed_loop"] = "closed_loop"
    clients: int = Field(
        gt=0, le=MAX_COUNT, description="Concurrent users (the maximum requests in flight)."
    )
    think_time: DurationConfig = Field(default_factory=lambda: FixedDuration(value=0.0))
    ramp_up_s: float = Field(
        default=DEFAULT_RAMP_UP_S,
        ge=0,
        description="Clients start spread evenly over this many seconds (0: all at once).",
    )
    jitter: DurationConfig = Field(
        default_factory=lambda: ExponentialDuration(mean=DEFAULT_JITTER_S),
        description="Seconds from a client being ready to send a request to the request going "
        "out, drawn per request (the client's event loop; not part of the request's latency: "
        "the server's own time is engine.tokenize_us_per_token and engine.frontend_ms); "
        "{kind: fixed, value: 0} turns it off.",
    )

    def times(self, rng: np.random.Generator, n: int) -> np.ndarray:
        raise ConfigError(
            "closed-loop arrival times are decided during the run (see ClosedLoopClients)",
            field="workload.arrival",
        )

    def times_until(self, rng: np.random.Generator, duration: float) -> np.ndarray:
        raise ConfigError(
            "closed-loop arrivals need workload.num_requests, not duration_s",
            field="workload.duration_s",
        )


class Send(NamedTuple):
    """Request ``request`` (its position in the stream), sent by ``client``, reaches the
    engine at ``time`` (when it was sent plus its delay)."""

    time: float
    request: int
    client: int


class ClosedLoopClients:
    """Hands out a closed-loop stream's requests to its clients as earlier requests finish.

    Plain Python, no simulation clock of its own: the caller reports finishes in time order
    and schedules the returned sends. Every request is sent exactly once.
    """

    def __init__(self, clients: int, stream: RequestStream, ramp_up_s: float = 0.0) -> None:
        if clients <= 0:
            raise ValueError(f"clients must be positive (got {clients})")
        n = len(stream)
        self.clients = clients
        self.ramp_up_s = ramp_up_s
        self._n = n
        self._think: list[float] = (
            stream.think_s.tolist() if stream.think_s is not None else [0.0] * n
        )
        self._delay: list[float] = (
            stream.send_delay_s.tolist() if stream.send_delay_s is not None else [0.0] * n
        )
        # Request i ends its session when the next entry belongs to another session.
        if stream.session_id is not None and n:
            sid = stream.session_id
            last = np.append(sid[1:] != sid[:-1], True)
        else:
            last = np.ones(n, dtype=bool)
        self._ends_session: list[bool] = last.tolist()
        stops = np.flatnonzero(last) + 1  # one past the end of each session
        starts = np.concatenate(([0], stops[:-1])) if n else np.empty(0, dtype=np.int64)
        self._session_stop = dict(zip(starts.tolist(), stops.tolist(), strict=True))
        self._next = 0  # first request of the next session no client has taken
        self._client: list[int] = [-1] * n
        self._done: list[bool] = [False] * n
        self.in_flight = 0
        self.sent = 0

    @classmethod
    def from_config(cls, cfg: ClosedLoopArrivals, stream: RequestStream) -> ClosedLoopClients:
        return cls(cfg.clients, stream, cfg.ramp_up_s)

    def client_of(self, index: int) -> int:
        """The client that sent (or will send) request ``index``; -1 if none yet."""
        return self._client[index]

    @property
    def finished(self) -> bool:
        """Every request has been sent and has finished."""
        return self.sent == self._n and self.in_flight == 0

    def _take_session(self) -> int | None:
        if self._next >= self._n:
            return None
        first = self._next
        self._next = self._session_stop[first]
        return first

    def _send(self, time: float, index: int, client: int) -> Send:
        """Client ``client`` sends request ``index`` at ``time``; it arrives after its delay."""
        self._client[index] = client
        self.in_flight += 1
        self.sent += 1
        return Send(time + self._delay[index], index, client)

    def initial_requests(self) -> list[Send]:
        """Each client's first request (fewer if there are fewer sessions), sent in client
        order over the ramp.

        Called once, before any ``on_finish``.
        """
        if self.sent:
            raise ValueError("initial_requests() was already called")
        out: list[Send] = []
        for c in range(self.clients):
            first = self._take_session()
            if first is None:
                break
            out.append(self._send(c * self.ramp_up_s / self.clients, first, c))
        return out

    def on_finish(self, index: int, now: float) -> Send | None:
        """Request ``index`` left the system at ``now``: its client's next send, if any.

        The next request is the following turn of the same session, or else the first turn of
        the next untaken session, sent after the finished request's think time (and arriving
        after its own delay). None when no requests are left for this client.
        """
        c = self._client[index]
        if c < 0:
            raise ValueError(f"request {index} was never sent")
        if self._done[index]:
            raise ValueError(f"request {index} finished twice")
        self._done[index] = True
        self.in_flight -= 1
        nxt = index + 1 if not self._ends_session[index] else self._take_session()
        if nxt is None:
            return None
        return self._send(now + self._think[index], nxt, c)
