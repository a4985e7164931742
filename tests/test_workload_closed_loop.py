"""Closed-loop clients, driven by a toy server: never more than N requests in flight, every
request sent exactly once, a session's turns in order from one client, think times honoured."""

from __future__ import annotations

import heapq
from itertools import pairwise

import numpy as np
import pytest

from llmsim.errors import ConfigError
from llmsim.workload import (
    ClosedLoopArrivals,
    ClosedLoopClients,
    ExponentialDuration,
    FixedDuration,
    FixedLength,
    RequestStream,
    SessionConfig,
    UniformLength,
    WorkloadConfig,
    generate,
)


def drive(clients: ClosedLoopClients, service: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Serve every request in ``service[i]`` seconds from its arrival; return (arrival, finish)."""
    n = len(service)
    arrival = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    events: list[tuple[float, int]] = []
    for send in clients.initial_requests():
        arrival[send.request] = send.time
        heapq.heappush(events, (send.time + service[send.request], send.request))
    while events:
        now, i = heapq.heappop(events)
        finish[i] = now
        nxt = clients.on_finish(i, now)
        if nxt is not None:
            assert nxt.time >= now
            assert np.isnan(arrival[nxt.request]), "sent twice"
            arrival[nxt.request] = nxt.time
            heapq.heappush(events, (nxt.time + service[nxt.request], nxt.request))
        assert clients.in_flight <= clients.clients
    return arrival, finish


def max_in_flight(arrival: np.ndarray, finish: np.ndarray) -> int:
    # +1 at each arrival, -1 at each finish; a finish at the same instant goes first
    ev = sorted([(t, 1) for t in arrival] + [(t, -1) for t in finish], key=lambda e: (e[0], e[1]))
    level = peak = 0
    for _, d in ev:
        level += d
        peak = max(peak, level)
    return peak


def closed_stream(
    clients: int, n: int, think: float = 0.5, turns: int | None = None
) -> tuple[ClosedLoopArrivals, RequestStream]:
    arrival = ClosedLoopArrivals(clients=clients, think_time=ExponentialDuration(mean=think))
    cfg = WorkloadConfig(
        arrival=arrival,
        prompt_tokens=UniformLength(low=10, high=100),
        output_tokens=UniformLength(low=1, high=50),
        sessions=SessionConfig(turns=FixedLength(value=turns)) if turns else None,
        num_requests=n,
    )
    return arrival, generate(cfg, np.random.SeedSequence(3))


@pytest.mark.parametrize("clients", [1, 4, 32])
def test_never_more_than_n_in_flight_and_all_sent_once(clients: int) -> None:
    arrival_cfg, stream = closed_stream(clients, 500)
    assert stream.closed_loop and np.isnan(stream.arrival).all()
    c = ClosedLoopClients.from_config(arrival_cfg, stream)
    service = np.random.default_rng(0).exponential(2.0, size=len(stream))
    arrival, finish = drive(c, service)
    assert not np.isnan(arrival).any() and not np.isnan(finish).any()
    assert max_in_flight(arrival, finish) <= clients
    assert c.finished and c.sent == len(stream)
    # each client's next request leaves exactly think time after its previous one finished
    for client in range(clients):
        mine = [i for i in range(len(stream)) if c.client_of(i) == client]
        mine.sort(key=lambda i: arrival[i])
        for a, b in pairwise(mine):
            assert arrival[b] == pytest.approx(finish[a] + stream.think_s[a])  # type: ignore[index]


def test_full_concurrency_at_start_and_throughput_law() -> None:
    # zero think time, constant service: N clients keep N requests busy, so the run takes
    # n / N service times (Little's law for a closed system)
    stream = RequestStream(
        np.full(100, np.nan), np.ones(100, int), np.ones(100, int), think_s=np.zeros(100)
    )
    c = ClosedLoopClients(5, stream)
    arrival, finish = drive(c, np.full(100, 1.0))
    assert np.count_nonzero(arrival == 0.0) == 5
    assert finish.max() == pytest.approx(100 / 5 * 1.0)
    assert max_in_flight(arrival, finish) == 5


def test_ramp_up_staggers_first_requests() -> None:
    stream = RequestStream(
        np.full(8, np.nan), np.ones(8, int), np.ones(8, int), think_s=np.zeros(8)
    )
    c = ClosedLoopClients(4, stream, ramp_up_s=2.0)
    assert [s.time for s in c.initial_requests()] == [0.0, 0.5, 1.0, 1.5]


def test_sessions_run_in_order_on_one_client() -> None:
    arrival_cfg, stream = closed_stream(3, 60, turns=4)
    assert stream.session_id is not None and stream.turn is not None
    c = ClosedLoopClients.from_config(arrival_cfg, stream)
    arrival, finish = drive(c, np.random.default_rng(1).exponential(1.0, size=len(stream)))
    for s in np.unique(stream.session_id):
        idx = np.flatnonzero(stream.session_id == s)
        assert len({c.client_of(int(i)) for i in idx}) == 1
        # turn k+1 is sent only after turn k finished
        assert np.all(arrival[idx[1:]] >= finish[idx[:-1]])
        assert stream.turn[idx].tolist() == list(range(len(idx)))


def test_fewer_sessions_than_clients() -> None:
    stream = RequestStream(
        np.full(2, np.nan), np.ones(2, int), np.ones(2, int), think_s=np.zeros(2)
    )
    c = ClosedLoopClients(10, stream)
    assert len(c.initial_requests()) == 2
    assert c.on_finish(0, 1.0) is None and c.on_finish(1, 1.0) is None
    assert c.finished


def test_misuse_is_reported() -> None:
    stream = RequestStream(
        np.full(3, np.nan), np.ones(3, int), np.ones(3, int), think_s=np.zeros(3)
    )
    c = ClosedLoopClients(1, stream)
    c.initial_requests()
    with pytest.raises(ValueError, match="already called"):
        c.initial_requests()
    with pytest.raises(ValueError, match="never sent"):
        c.on_finish(2, 0.0)
    c.on_finish(0, 0.0)
    with pytest.raises(ValueError, match="finished twice"):
        c.on_finish(0, 0.0)


def test_think_times_are_per_request_and_seeded() -> None:
    cfg = WorkloadConfig(
        arrival=ClosedLoopArrivals(clients=2, think_time=FixedDuration(value=1.5)),
        prompt_tokens=FixedLength(value=4),
        output_tokens=FixedLength(value=2),
        num_requests=10,
    )
    s = generate(cfg, np.random.SeedSequence(0))
    assert s.think_s is not None and s.think_s.tolist() == [1.5] * 10
    _, a = closed_stream(2, 50)
    _, b = closed_stream(2, 50)
    np.testing.assert_array_equal(a.think_s, b.think_s)  # type: ignore[arg-type]


def test_closed_loop_config_rules() -> None:
    base = {"prompt_tokens": FixedLength(value=1), "output_tokens": FixedLength(value=1)}
    with pytest.raises(ValueError, match="closed_loop arrivals need num_requests"):
        WorkloadConfig(arrival=ClosedLoopArrivals(clients=2), duration_s=10.0, **base)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"remove sessions\.think_time"):
        WorkloadConfig(
            arrival=ClosedLoopArrivals(clients=2),
            sessions=SessionConfig(turns=FixedLength(value=2), think_time=FixedDuration(value=1)),
            num_requests=10,
            **base,  # type: ignore[arg-type]
        )
    with pytest.raises(ConfigError, match="decided during the run"):
        ClosedLoopArrivals(clients=2).times(np.random.default_rng(), 3)
