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
    # each client's next request arrives exactly think time (after its previous one
    # finished) plus its own send delay
    delay = stream.send_delay_s
    assert delay is not None and (delay > 0).all()
    for client in range(clients):
        mine = [i for i in range(len(stream)) if c.client_of(i) == client]
        mine.sort(key=lambda i: arrival[i])
        for a, b in pairwise(mine):
            assert arrival[b] == pytest.approx(finish[a] + stream.think_s[a] + delay[b])  # type: ignore[index]


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


def test_send_delay_is_added_to_every_send() -> None:
    """Hand-worked: ramp 2 s over 2 clients, think 1 s, delays 0.1, 0.2, 0.3, 0.4 s."""
    stream = RequestStream(
        np.full(4, np.nan), np.ones(4, int), np.ones(4, int), think_s=np.ones(4),
        send_delay_s=np.array([0.1, 0.2, 0.3, 0.4]),
    )  # fmt: skip
    c = ClosedLoopClients(2, stream, ramp_up_s=2.0)
    assert [(s.time, s.request, s.client) for s in c.initial_requests()] == [
        (0.1, 0, 0), (1.2, 1, 1)
    ]  # fmt: skip
    nxt = c.on_finish(0, 5.0)
    assert nxt is not None and (nxt.time, nxt.request, nxt.client) == (6.3, 2, 0)


def test_default_ramp_and_jitter_are_benchmark_like() -> None:
    from llmsim.workload.closed_loop import DEFAULT_JITTER_S, DEFAULT_RAMP_UP_S

    arrival = ClosedLoopArrivals(clients=4)
    assert arrival.ramp_up_s == DEFAULT_RAMP_UP_S == 1.0
    assert arrival.jitter == ExponentialDuration(mean=DEFAULT_JITTER_S)
    cfg = WorkloadConfig(
        arrival=arrival, prompt_tokens=FixedLength(value=4), output_tokens=FixedLength(value=2),
        num_requests=4000,
    )  # fmt: skip
    s = generate(cfg, np.random.SeedSequence(0))
    assert s.send_delay_s is not None
    assert s.send_delay_s.mean() == pytest.approx(DEFAULT_JITTER_S, rel=0.1)
    off = cfg.model_copy(update={"arrival": ClosedLoopArrivals(
        clients=4, ramp_up_s=0.0, jitter=FixedDuration(value=0.0))})  # fmt: skip
    s0 = generate(off, np.random.SeedSequence(0))
    assert s0.send_delay_s is not None and not s0.send_delay_s.any()
    np.testing.assert_array_equal(s0.think_s, s.think_s)  # type: ignore[arg-type]
    c = ClosedLoopClients.from_config(off.arrival, s0)  # type: ignore[arg-type]
    assert [x.time for x in c.initial_requests()] == [0.0] * 4


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


def _equal_length_run(arrival: ClosedLoopArrivals) -> tuple[np.ndarray, float]:
    """16 clients, every request 256 prompt + 32 output tokens, prefill-first scheduling:
    prefills per step (steps with any, after the first third of the run) and mean TTFT."""
    import llmsim
    from tests.conftest import make_scenario

    sc = make_scenario(
        policy=llmsim.ContinuousConfig(max_num_seqs=64),
        workload=WorkloadConfig(
            arrival=arrival,
            prompt_tokens=FixedLength(value=256),
            output_tokens=FixedLength(value=32),
            num_requests=16 * 10,
        ),
    )
    r = llmsim.simulate(sc)
    st = r.steps[r.steps.start > r.steps.end.max() / 3]
    prefills = (st.prefill_tokens[st.prefill_tokens > 0] // 256).to_numpy()
    return prefills, float(r.summary["mean_ttft_ms"])


def test_equal_lengths_do_not_stay_in_lock_step() -> None:
    """Started together without jitter, 16 equal clients come back together every round: all
    16 prefills in one step, then only decodes. With the default ramp and jitter they are
    spread out, as benchmark clients are, and wait far less for their first token."""
    lock, lock_ttft = _equal_length_run(
        ClosedLoopArrivals(clients=16, ramp_up_s=0.0, jitter=FixedDuration(value=0.0))
    )
    assert (lock == 16).all()
    spread, ttft = _equal_length_run(ClosedLoopArrivals(clients=16))
    assert spread.mean() < 4 and (spread < 16).all()
    assert ttft < lock_ttft / 2
