"""The simulation engine: the only module that uses SimPy.

Each replica is one SimPy process that loops: ask its policy for a plan, price it with the
cost model, wait that long, apply the outcome. One event per step, per arrival and per KV
transfer; a run of pure decode steps over an unchanged batch is one event (each step still
priced on its own shape), ending at the step in which the next request for that replica
arrives (with one replica, or under least_kv routing, the next request anywhere). The tables
and summary of a finished run are built by :mod:`llmsim.assemble`.

Requests reach replicas through the router: by class to the pools that serve it, then by the
router's rule among that pool's replicas. With prefill and decode pools, a request is
prefilled in one, its KV cache crosses the link, and it decodes in the other; its first token
reaches the client with the KV cache. Closed-loop clients send their next request when the
previous one finishes, after a think time.

The serving pipeline around the steps, per replica (``engine`` section): with
``async_scheduling`` a step is planned while the previous one runs, so a request that arrives
during a step waits for the step after next (it is held in the replica's inbox until the next
plan is made); the API server reads a request's prompt before the engine sees it
(``tokenize_us_per_token``) and hands every token to the client ``frontend_ms`` after the
engine emits it. Open-loop streams with drained load stages start each stage only once every
request before it has finished.
"""

from __future__ import annotations

import gc
import heapq
import math
from bisect import bisect_left
from collections.abc import Callable, Generator, Hashable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import numpy as np
import simpy

from llmsim.assemble import assemble
from llmsim.cost.base import BatchShape
from llmsim.errors import ConfigError
from llmsim.metrics import StepLog
from llmsim.policies.base import Plan
from llmsim.preflight import refuse_unfinishable
from llmsim.records import RequestRecords
from llmsim.replica import Replica, build_replica
from llmsim.request import Request, Status
from llmsim.result import SimulationResult
from llmsim.routing import Router
from llmsim.scenario import Scenario
from llmsim.workload import RequestStream, generate
from llmsim.workload.closed_loop import ClosedLoopArrivals, ClosedLoopClients

ProgressFn = Callable[[int, int], None]

__all__ = ["ProgressFn", "Replica", "Simulation", "build_replica", "simulate"]


class Simulation:
    """A prepared run: replicas built, requests drawn. ``run()`` executes it once."""

    def __init__(self, scenario: Scenario, stream: RequestStream | None = None) -> None:
        self.scenario = scenario
        seed = np.random.SeedSequence(scenario.seed)
        workload_seed, policy_seed, router_seed = seed.spawn(3)
        specs = scenario.replica_specs()
        policy_rngs = [np.random.default_rng(s) for s in policy_seed.spawn(len(specs))]
        self.replicas = [build_replica(scenario, s.index, policy_rngs[s.index], s) for s in specs]
        cluster = scenario.cluster
        self.router = Router(
            cluster.router.kind if cluster else "round_robin",
            np.random.default_rng(router_seed),
        )
        self.link = cluster.kv_transfer if cluster else None
        self.stream = stream if stream is not None else generate(scenario.workload, workload_seed)
        if not len(self.stream):
            raise ConfigError(
                "draws no requests: nothing to simulate (raise workload.duration_s or the "
                "rate, or set workload.num_requests)",
                source=scenario.source,
                field="workload",
            )
        refuse_unfinishable(scenario, self.stream, specs, [r.max_model_len for r in self.replicas])
        arrival = scenario.workload.arrival
        self.clients = (
            ClosedLoopClients.from_config(arrival, self.stream)
            if isinstance(arrival, ClosedLoopArrivals) and self.stream.closed_loop
            else None
        )
        self.env = simpy.Environment()
        self.log = StepLog()
        # Each finished or rejected request as columns; the Request objects are let go unless
        # ``keep_requests`` (tests that inspect them after the run set it)
        self.records = RequestRecords()
        self.keep_requests = False
        # a policy whose ``finished`` is its own list (not a copy made on each read) has it
        # emptied as the engine accounts for its requests
        self._owned = [rep.policy.finished is rep.policy.finished for rep in self.replicas]
        self._idle: dict[int, simpy.Event] = {}
        self._open_next = math.inf  # next open-loop arrival time
        self._pending: list[float] = []  # other scheduled arrivals (closed loop, KV transfers)
        self._entry = [r for r in self.replicas if r.role != "decode"]
        self._classes = any(r.classes for r in self.replicas)  # pools named for request classes
        self._decoders = [r for r in self.replicas if r.role == "decode"]
        self._sent = 0
        self._progress: ProgressFn | None = None
        self._tick = max(1, len(self.stream) // 100)
        self._done = 0  # requests finished, handed back to their client or rejected
        self._drained: simpy.Event | None = None  # a drained stage's wait for ``_done``
        self._drain_target = 0
        # Runs of decode steps end at the next arrival for their own replica (cut short when it
        # comes), except with one replica, where the next arrival anywhere is the next for it,
        # and under least_kv routing, which reads every replica's KV usage at each arrival.
        self._cut_runs = len(self.replicas) > 1 and self.router.kind != "least_kv"
        self._running: list[_Run | None] = [None] * len(self.replicas)
        self._procs: list[simpy.Process] = []
        # --max-concurrency: requests in flight as the client counts them, and a wait for one
        self._cap = scenario.workload.max_concurrency if self.clients is None else None
        self._in_flight = 0
        self._slot: simpy.Event | None = None

    # --- arrivals ----------------------------------------------------------------------------

    @property
    def next_arrival(self) -> float:
        """When anything next arrives at any replica (bounds runs of decode steps)."""
        pending = self._pending
        now = self.env.now
        while pending and pending[0] < now:
            heapq.heappop(pending)
        return min(self._open_next, pending[0]) if pending else self._open_next

    def _request(self, i: int, t: float) -> Request:
        s = self.stream
        prefix = s.prefix
        return Request(
            i,
            t,
            int(s.prompt_tokens[i]),
            int(s.output_tokens[i]),
            priority=int(s.priority[i]) if s.priority is not None else 0,
            tag=str(s.request_class[i]) if s.request_class is not None else "",
            prefix_hashes=tuple(prefix.ids(i).tolist()) if prefix is not None else None,
            hash_block_tokens=prefix.block_size if prefix is not None else 0,
        )

    def _affinity(self, r: Request) -> Hashable:
        kind = self.router.kind
        if kind == "prefix_affinity" and r.prefix_hashes:
            return ("prefix", r.prefix_hashes[0])
        if kind == "session_affinity" and self.stream.session_id is not None:
            return ("session", int(self.stream.session_id[r.id]))
        return None

    def _candidates(self, r: Request, replicas: list[Replica]) -> list[Replica]:
        """Replicas of the pools that serve this request's class (or serve any class)."""
        if not self._classes:
            return replicas
        tag = r.tag
        named = [rep for rep in replicas if rep.classes and tag in rep.classes]
        return named or [rep for rep in replicas if not rep.classes]

    def _arrive(self, i: int, t: float) -> None:
        r = self._request(i, t)
        candidates = self._candidates(r, self._entry)
        if not candidates:
            reason = "no_pool"
        elif self._decoders and not self._decoders_for(r):
            # no decode replica could ever run it: the first one's reason
            reason = self._decoders[0].policy.refusal(r)  # type: ignore[attr-defined]
        else:
            reason = ""
        if reason:
            r.reject(t, reason)
            self._on_finish(r, t)
            self.records.add(r)
            return
        rep = self.router.choose(r, candidates, self._affinity(r))
        assert isinstance(rep, Replica)
        r.replica = rep.index
        self._hold(rep, r, 1)
        if rep.tokenize_s:  # the API server reads the prompt before the engine sees it
            ready = t + rep.tokenize_s * r.prompt_tokens
            self._at(ready, lambda: self._enter(rep, r, ready))
        else:
            self._enter(rep, r, t)
        self._sent += 1
        if self._progress is not None and self._sent % self._tick == 0:
            self._progress(self._sent, len(self.stream))

    def _enter(self, rep: Replica, r: Request, now: float) -> None:
        """The request reaches the replica's scheduler."""
        self._cut(rep, now)
        if rep.busy and rep.async_scheduling:
            rep.inbox.append((r, now))  # the next step is already planned: join the one after
        else:
            rep.policy.add(r, now)
            self._wake(rep)
            self._collect(rep)

    def _open_loop(self) -> Generator[Any, Any, None]:
        env = self.env
        times = self.stream.arrival.tolist()
        n = len(times)
        stage, starts = self.stream.stage, self.stream.stage_starts
        shift = 0.0  # how much later drained stages start than drawn
        for i in range(n):
            if starts is not None and stage is not None and i and stage[i] != stage[i - 1]:
                # A drained stage starts once every earlier request has finished.
                self._open_next = math.inf
                if self._done < i:
                    self._drain_target = i
                    self._drained = env.event()
                    yield self._drained
                shift = max(shift, env.now - float(starts[stage[i]]))
            t = times[i] + shift
            if t > env.now:
                self._open_next = t
                yield env.timeout(t - env.now)
            if self._cap is not None:
                if self._in_flight >= self._cap:  # wait for a reply, then send at once
                    self._open_next = math.inf
                    self._slot = env.event()
                    yield self._slot
                t = max(t, env.now)  # sent late when earlier sends waited for a reply
                self._in_flight += 1
            self._open_next = times[i + 1] + shift if i + 1 < n else math.inf
            if self._cap is not None and self._in_flight >= self._cap:
                self._open_next = math.inf  # the next send waits for a finish
            self._arrive(i, t)

    def _at(self, t: float, action: Callable[[], None]) -> None:
        """Run ``action`` at time ``t`` (>= now): a bare timeout with a callback."""
        heapq.heappush(self._pending, t)
        ev = self.env.timeout(max(t - self.env.now, 0.0))
        ev.callbacks.append(lambda _: action())

    def _send(self, i: int, t: float) -> None:
        self._at(t, lambda: self._arrive(i, t))

    # --- finishes and hand-offs --------------------------------------------------------------

    def _collect(self, rep: Replica) -> None:
        """Account for what the replica's policy finished or handed off since last time."""
        done = rep.policy.finished
        if rep.seen < len(done):
            new = done[rep.seen :]
            for r in new:
                if rep.frontend_s and r.status == Status.FINISHED:  # via the API server
                    r.finish += rep.frontend_s
                    r.first_token += rep.frontend_s
                self._hold(rep, r, -1)
                self._on_finish(r, r.finish)
                self.records.add(r)
            rep.seen += len(new)
            if self._owned[rep.index] and not self.keep_requests:
                del done[: rep.seen]
                rep.seen = 0
        if rep.role == "prefill" and (handoffs := rep.policy.handoffs):  # type: ignore[attr-defined]
            for r in handoffs:
                self._hold(rep, r, -1)
                self._ship(r, r.last_emit)
            handoffs.clear()

    @staticmethod
    def _hold(rep: Replica, r: Request, sign: int) -> None:
        """Count a request in (+1) or out of (-1) the load a router sees on ``rep``."""
        rep.outstanding += sign
        rep.pending_tokens += sign * (r.prompt_tokens + r.max_output_tokens)

    def _on_finish(self, r: Request, now: float) -> None:
        self._done += 1
        if self._drained is not None and self._done >= self._drain_target:
            self._drained.succeed()
            self._drained = None
        if self._cap is not None:
            self._at(now, self._release)
        if self.clients is not None:
            nxt = self.clients.on_finish(r.id, now)
            if nxt is not None:
                self._send(nxt.request, nxt.time)

    def _release(self) -> None:
        """A reply reached the client: one request fewer in flight (--max-concurrency)."""
        self._in_flight -= 1
        slot, self._slot = self._slot, None
        if slot is not None:
            slot.succeed()

    def _ship(self, r: Request, now: float) -> None:
        """Carry a prefilled request's KV cache to a decode replica."""
        assert self.link is not None
        r.prefill_replica = r.replica
        kv_bytes = self.replicas[r.replica].model.kv_bytes_per_token  # the prefill side's type
        t = now + self.link.transfer_s(r.num_computed * kv_bytes)
        self._at(t, lambda: self._to_decoder(r, t))

    def _decoders_for(self, r: Request) -> list[Replica]:
        return [d for d in self._decoders if d.policy.can_serve(r)]  # type: ignore[attr-defined]

    def _to_decoder(self, r: Request, t: float) -> None:
        rep = self.router.choose(r, self._decoders_for(r), self._affinity(r))
        assert isinstance(rep, Replica)
        r.replica = rep.index
        r.first_token = r.last_emit = t  # the first token reaches the client with the KV
        self._hold(rep, r, 1)
        self._cut(rep, t)
        rep.policy.add_prefilled(r, t)  # type: ignore[attr-defined]
        self._wake(rep)

    # --- replicas ----------------------------------------------------------------------------

    def _wake(self, rep: Replica) -> None:
        ev = self._idle.get(rep.index)
        if ev is not None and not ev.triggered:
            ev.succeed()

    def _replica(self, rep: Replica) -> Generator[Any, Any, None]:
        env = self.env
        policy = rep.policy
        log = self.log
        step_time = rep.cost.step_time
        decode_time = rep.cost.decode_step_time
        while True:
            plan = policy.schedule(env.now)
            joined = bool(rep.inbox)
            if joined:  # requests that arrived during the last step join the one after this
                for r, entered in rep.inbox:
                    policy.add(r, entered)
                rep.inbox.clear()
                self._collect(rep)  # any it refused at once
                if plan is None:
                    continue
            if plan is None:
                idle = self._idle[rep.index] = env.event()
                wake = policy.wake_at(env.now)
                if wake is None:
                    yield idle
                else:
                    yield idle | env.timeout(max(wake - env.now, 0.0))
                continue
            start = env.now
            shape = plan.shape
            if plan.decode_steps and not shape.spec_tokens:  # pure decode: the cheap path
                total = decode_time(shape.decode_seqs, shape.decode_context) + plan.extra_s
            else:
                total = step_time(shape) + plan.extra_s
            durations = [total]
            rep.busy = True
            if plan.decode_steps > 1 and not joined and self._cut_runs:
                # a run of pure-decode steps until an arrival for this replica cuts it short
                durations = yield from self._decode_run(rep, start, total, plan)
            else:
                horizon = 0.0 if joined else self.next_arrival - start
                if plan.decode_steps > 1 and total < horizon:
                    # the rest of a run of pure-decode steps, until the step a request arrives in
                    total = _price_decode(
                        decode_time, shape, durations, total, plan.decode_steps, horizon
                    )
                yield env.timeout(total)
            rep.busy = False
            stats = policy.update(plan, start, durations)
            log.record(rep.index, start, durations, plan, stats)
            self._collect(rep)

    def _decode_run(
        self, rep: Replica, start: float, first: float, plan: Plan
    ) -> Generator[Any, Any, list[float]]:
        """Run up to ``plan.decode_steps`` decode steps, the first taking ``first``; an arrival
        for this replica during the run (see :meth:`_cut`) ends it with the step the arrival
        falls in. Steps are priced as the run reaches them, a chunk at a time (most runs are
        cut short long before their last step). Returns the steps run."""
        env = self.env
        decode_time = rep.cost.decode_step_time
        steps = plan.decode_steps
        durations = [first]
        run = self._running[rep.index] = _Run(start, durations, 0, first)
        chunk = _FIRST_CHUNK
        try:
            while True:
                upto = min(len(durations) + chunk, steps)
                run.end = _price_decode(decode_time, plan.shape, durations, run.end, upto)
                chunk *= 2
                run.last = len(durations) - 1
                # the first wait is the run's end itself, so that the run ends at start + end
                # exactly as a run priced whole would
                yield env.timeout(run.end if env.now == start else start + run.end - env.now)
                if run.cut or len(durations) >= steps:
                    break
        except simpy.Interrupt:
            yield env.timeout(start + run.end - env.now)
        finally:
            self._running[rep.index] = None
        return durations[: run.last + 1]

    def _cut(self, rep: Replica, now: float) -> None:
        """Something arrived for ``rep`` at ``now``: a run of decode steps in progress ends with
        the step ``now`` falls in, as if the run had been planned up to this arrival."""
        run = self._running[rep.index]
        if run is None or run.cut:
            return
        # A closed-loop client's next request is stamped with the finish that prompted it,
        # which can lie in a step of another replica's run that has already been waited out:
        # this run can end no earlier than the step under way.
        now = max(now, self.env.now)
        # the end of each step priced so far: the same sums as the run's end
        ends = list(accumulate(run.durations))
        k = bisect_left(ends, now - run.start)  # first step whose end reaches ``now``
        if k <= run.last:  # (at or before the last step priced so far: no more are priced)
            run.cut = True
            if k < run.last:
                run.last = k
                run.end = ends[k]
                self._procs[rep.index].interrupt()

    # --- run ---------------------------------------------------------------------------------

    def run(self, progress: ProgressFn | None = None) -> SimulationResult:
        env = self.env
        if self._sent:
            raise RuntimeError("a Simulation runs once; build a new one to run again")
        self._progress = progress
        self._procs = [env.process(self._replica(rep)) for rep in self.replicas]
        if self.clients is not None:
            for s in self.clients.initial_requests():
                self._send(s.request, s.time)
        else:
            env.process(self._open_loop())
        # The run and its tables allocate millions of small objects and free none of them in
        # cycles; the cyclic garbage collector pauses meanwhile instead of rescanning them all.
        collecting = gc.isenabled()
        gc.disable()
        try:
            env.run()
            return assemble(self)
        finally:
            _age_objects()
            if collecting:
                gc.enable()


def _age_objects() -> None:
    """Move every object the collector tracks into its oldest generation without scanning
    them: a freeze moves them out of its reach, an unfreeze back into the oldest generation.
    Otherwise the first collections after a run traverse all of its objects, once per
    generation (more than a second at a million requests). Skipped when the program has frozen
    objects itself (an unfreeze would release those too)."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


_FIRST_CHUNK = 8  # decode steps priced ahead at the start of a run; doubled each time after


def _price_decode(
    decode_time: Callable[[int, int], float],
    shape: BatchShape,
    durations: list[float],
    total: float,
    upto: int,
    horizon: float = math.inf,
) -> float:
    """Price the steps ``len(durations)`` to ``upto - 1`` of a run of pure-decode steps whose
    first step has ``shape`` (step j attends ``j`` more tokens per sequence), appending each
    one's duration; ``total``: the sum of the durations so far. Stops after the step whose
    end (relative to the run's start) reaches ``horizon``; returns the new total."""
    n = shape.decode_seqs
    ctx = shape.decode_context + (len(durations) - 1) * n
    for _ in range(len(durations), upto):
        ctx += n
        d = decode_time(n, ctx)
        durations.append(d)
        total += d
        if total >= horizon:
            break
    return total


@dataclass
class _Run:
    """A run of decode steps in progress: its start, the duration of each step priced so far,
    the index of its last step and that step's end (relative to the start)."""

    start: float
    durations: list[float]
    last: int
    end: float
    cut: bool = False  # an arrival ended the run at ``last``


def simulate(scenario: Scenario, *, progress: ProgressFn | None = None) -> SimulationResult:
    """Run a scenario and return its tables and summary."""
    return Simulation(scenario).run(progress)
