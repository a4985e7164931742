"""Workloads: when requests arrive, how long their prompts and outputs are, and what they share.

A workload is either synthetic (an arrival process plus length distributions, optionally in
multi-turn sessions) or a replayed trace. :func:`generate` turns a :class:`WorkloadConfig` and a
seed into a :class:`RequestStream`; the same seed always gives the same stream.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmsim.limits import MAX_COUNT, MAX_SECONDS
from llmsim.workload.arrivals import (
    ArrivalConfig,
    BatchArrivals,
    ConstantArrivals,
    GammaArrivals,
    PoissonArrivals,
)
from llmsim.workload.bench_datasets import BenchDataset, RandomDataset, SonnetDataset
from llmsim.workload.classes import ClassRule, assign_classes
from llmsim.workload.closed_loop import ClosedLoopArrivals, ClosedLoopClients, Send
from llmsim.workload.datasets import DATASETS, TRACE_DATASETS
from llmsim.workload.durations import (
    DurationConfig,
    ExponentialDuration,
    FixedDuration,
    LognormalDuration,
    UniformDuration,
)
from llmsim.workload.lengths import (
    DatasetLengths,
    EmpiricalLength,
    FixedLength,
    LengthConfig,
    LognormalLength,
    TargetLength,
    UniformLength,
)
from llmsim.workload.prefix import HashTable, PrefixHashes, SessionHashes
from llmsim.workload.sessions import SessionConfig, session_stream
from llmsim.workload.shared_prefix import SharedPrefixConfig
from llmsim.workload.stages import Stage, StagedArrivals
from llmsim.workload.stream import RequestStream, TraceStats
from llmsim.workload.time_varying import (
    DiurnalArrivals,
    OnOffArrivals,
    PiecewiseArrivals,
    RateSegment,
)
from llmsim.workload.traces import TraceColumns, TraceConfig, read_trace


class WorkloadConfig(BaseModel):
    """Scenario section ``workload``: where requests come from, and how many.

    Exactly one source: ``arrival`` (synthetic, with ``prompt_tokens`` and ``output_tokens``,
    or ``lengths`` drawn in pairs from a dataset) or ``trace``. Synthetic workloads need exactly
    one of ``num_requests`` and ``duration_s``; with a trace both are optional limits on the
    replay (at most that many requests; arrivals in the first ``duration_s`` seconds).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    arrival: ArrivalConfig | None = None
    trace: TraceConfig | None = None
    prompt_tokens: LengthConfig | None = None
    output_tokens: LengthConfig | None = None
    lengths: DatasetLengths | None = Field(
        default=None, description="Prompt and output drawn together from one dataset row."
    )
    dataset: BenchDataset | None = Field(
        default=None,
        description="vLLM benchmark dataset (random or sonnet) giving prompt and output lengths "
        "and a shared prefix (instead of prompt_tokens, output_tokens or lengths).",
    )
    sessions: SessionConfig | None = None
    shared_prefix: SharedPrefixConfig | None = Field(
        default=None,
        description="Prompts from a cycled pool of system prompts and questions (instead of "
        "prompt_tokens).",
    )
    classes: tuple[ClassRule, ...] = Field(
        default=(), description="Rules naming request classes, first match wins."
    )
    num_requests: int | None = Field(default=None, gt=0, le=MAX_COUNT)
    max_concurrency: int | None = Field(
        default=None,
        gt=0,
        le=MAX_COUNT,
        description="At most this many requests in flight (vLLM benchmark's --max-concurrency): "
        "a request due while that many are out waits at the client until one finishes, and "
        "its latency counts from when it is sent.",
    )
    duration_s: float | None = Field(
        default=None, gt=0, le=MAX_SECONDS, description="Arrivals stop after this."
    )

    @model_validator(mode="after")
    def _one_source(self) -> WorkloadConfig:
        if (self.arrival is None) == (self.trace is None):
            raise ValueError("give exactly one of 'arrival' or 'trace'")
        if self.trace is not None:
            for name in (
                "prompt_tokens",
                "output_tokens",
                "lengths",
                "dataset",
                "sessions",
                "shared_prefix",
            ):
                if getattr(self, name) is not None:
                    raise ValueError(f"'{name}' cannot be used with a trace: the trace has them")
            return self
        arrival = self.arrival
        given = self.prompt_tokens is not None or self.output_tokens is not None
        if self.dataset is not None:
            for name in ("prompt_tokens", "output_tokens", "lengths", "sessions", "shared_prefix"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"dataset {self.dataset.kind} sets the prompts and outputs: remove '{name}'"
                    )
        elif self.shared_prefix is not None:
            for name in ("prompt_tokens", "lengths", "sessions"):
                if getattr(self, name) is not None:
                    raise ValueError(f"shared_prefix sets the prompts: remove '{name}'")
            if self.output_tokens is None:
                raise ValueError("shared_prefix needs output_tokens")
        elif given == (self.lengths is not None):
            raise ValueError("give either prompt_tokens and output_tokens, lengths or dataset")
        elif given and (self.prompt_tokens is None or self.output_tokens is None):
            raise ValueError("give both prompt_tokens and output_tokens")
        if isinstance(arrival, ClosedLoopArrivals) and self.max_concurrency is not None:
            raise ValueError(
                "closed-loop clients already cap the requests in flight at arrival.clients: "
                "remove max_concurrency"
            )
        if isinstance(arrival, StagedArrivals):
            if self.num_requests is not None or self.duration_s is not None:
                raise ValueError(
                    "stages set the requests (rate x duration_s each): remove num_requests "
                    "and duration_s"
                )
            if self.sessions is not None:
                raise ValueError("stages cannot be combined with sessions")
            if arrival.num_requests > MAX_COUNT:
                raise ValueError(
                    f"the stages send {arrival.num_requests:,} requests (rate x duration_s "
                    f"each); a run holds at most {MAX_COUNT:,}"
                )
            return self
        if (self.num_requests is None) == (self.duration_s is None):
            raise ValueError("give exactly one of num_requests or duration_s")
        peak = getattr(arrival, "max_rate", None) or getattr(arrival, "mean_rate", None)
        if self.duration_s is not None and peak and peak * self.duration_s > MAX_COUNT:
            raise ValueError(
                f"a rate of up to {peak:g} req/s for duration_s {self.duration_s:g} makes about "
                f"{peak * self.duration_s:,.0f} requests; a run holds at most {MAX_COUNT:,}"
            )
        if isinstance(arrival, BatchArrivals | ClosedLoopArrivals) and self.num_requests is None:
            raise ValueError(f"{arrival.kind} arrivals need num_requests")
        if (
            isinstance(arrival, PiecewiseArrivals)
            and self.num_requests is not None
            and arrival.mean_rate <= 0
        ):
            raise ValueError(
                "the schedule ends at rate 0, so num_requests is never reached: "
                "give duration_s or repeat: true"
            )
        if self.sessions is not None:
            closed = isinstance(arrival, ClosedLoopArrivals)
            if closed and self.sessions.think_time is not None:
                raise ValueError(
                    "closed-loop clients think for arrival.think_time between turns: "
                    "remove sessions.think_time"
                )
            if not closed and self.sessions.think_time is None:
                raise ValueError("open-loop sessions need sessions.think_time between turns")
            if isinstance(arrival, BatchArrivals):
                raise ValueError("sessions need an arrival process for session starts, not batch")
        return self


def generate(cfg: WorkloadConfig, seed: np.random.SeedSequence) -> RequestStream:
    """Draw (or replay) the whole request stream.

    Arrivals, prompt lengths, output lengths, sessions, classes and trace sampling each have
    their own random stream spawned from ``seed``, so changing one leaves the others alone.
    """
    s_arrival, s_prompt, s_output, s_session, s_class, s_trace = seed.spawn(6)
    if cfg.trace is not None:
        stream = read_trace(_replay_limits(cfg, cfg.trace), np.random.default_rng(s_trace))
    else:
        stream = _synthetic(cfg, s_arrival, s_prompt, s_output, s_session)
    if cfg.classes:
        stream = assign_classes(stream, cfg.classes, np.random.default_rng(s_class))
    return stream


def _replay_limits(cfg: WorkloadConfig, trace: TraceConfig) -> TraceConfig:
    """The trace settings with ``num_requests`` and ``duration_s`` folded in."""
    cap = trace.max_requests
    if cfg.num_requests is not None:
        cap = cfg.num_requests if cap is None else min(cap, cfg.num_requests)
    end = trace.end_s
    if cfg.duration_s is not None:
        stop = trace.start_s + cfg.duration_s * trace.time_scale
        end = stop if end is None else min(end, stop)
    return trace.model_copy(update={"max_requests": cap, "end_s": end})


def _synthetic(
    cfg: WorkloadConfig,
    s_arrival: np.random.SeedSequence,
    s_prompt: np.random.SeedSequence,
    s_output: np.random.SeedSequence,
    s_session: np.random.SeedSequence,
) -> RequestStream:
    arrival = cfg.arrival
    assert arrival is not None

    def lengths(
        rng_prompt: np.random.Generator, rng_output: np.random.Generator, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        if cfg.dataset is not None:
            p, o = cfg.dataset.draw(rng_prompt, rng_output, n)
        elif cfg.lengths is not None:
            p, o = cfg.lengths.sample(rng_prompt, n)
        elif cfg.shared_prefix is not None:
            assert cfg.output_tokens is not None
            p = np.full(n, cfg.shared_prefix.prompt_tokens, dtype=np.int64)
            o = cfg.output_tokens.sample(rng_output, n)
        else:
            assert cfg.prompt_tokens is not None and cfg.output_tokens is not None
            p = cfg.prompt_tokens.sample(rng_prompt, n)
            o = cfg.output_tokens.sample(rng_output, n)
        return p.astype(np.int64), o.astype(np.int64)

    if cfg.sessions is not None:
        stream = session_stream(
            cfg.sessions,
            None if isinstance(arrival, ClosedLoopArrivals) else arrival,
            lengths,
            (s_arrival, s_prompt, s_output),
            s_session,
            num_requests=cfg.num_requests,
            duration_s=cfg.duration_s,
        )
    else:
        rng_arrival = np.random.default_rng(s_arrival)
        stage = starts = None
        if isinstance(arrival, StagedArrivals):
            times, stage, starts = arrival.draw(rng_arrival)
            starts = starts if arrival.drain else None
        elif isinstance(arrival, ClosedLoopArrivals):
            assert cfg.num_requests is not None
            times = np.full(cfg.num_requests, np.nan)
        elif cfg.num_requests is not None:
            times = arrival.times(rng_arrival, cfg.num_requests)
        else:
            assert cfg.duration_s is not None
            times = arrival.times_until(rng_arrival, cfg.duration_s)
        rng_prompt = np.random.default_rng(s_prompt)
        p, o = lengths(rng_prompt, np.random.default_rng(s_output), len(times))
        prefix = None
        if cfg.shared_prefix is not None:
            prefix = cfg.shared_prefix.draw(rng_prompt, len(times))
        elif cfg.dataset is not None:
            prefix = cfg.dataset.prefix(len(times))
        stream = RequestStream(
            np.asarray(times, dtype=float), p, o, prefix=prefix, stage=stage, stage_starts=starts
        )
    if isinstance(arrival, ClosedLoopArrivals):
        # Think times belong to requests, not to the order they finish in: drawn here, every
        # policy run on this seed sees the same ones.
        rng = np.random.default_rng(s_arrival)
        think = arrival.think_time.sample(rng, len(stream))
        delay = arrival.jitter.sample(rng, len(stream))  # after the think times: they stay
        stream = replace(
            stream,
            think_s=np.asarray(think, dtype=float),
            send_delay_s=np.asarray(delay, dtype=float),
        )
    return stream


__all__ = [
    "DATASETS",
    "TRACE_DATASETS",
    "ArrivalConfig",
    "BatchArrivals",
    "BenchDataset",
    "ClassRule",
    "ClosedLoopArrivals",
    "ClosedLoopClients",
    "ConstantArrivals",
    "DatasetLengths",
    "DiurnalArrivals",
    "DurationConfig",
    "EmpiricalLength",
    "ExponentialDuration",
    "FixedDuration",
    "FixedLength",
    "GammaArrivals",
    "HashTable",
    "LengthConfig",
    "LognormalDuration",
    "LognormalLength",
    "OnOffArrivals",
    "PiecewiseArrivals",
    "PoissonArrivals",
    "PrefixHashes",
    "RandomDataset",
    "RateSegment",
    "RequestStream",
    "Send",
    "SessionConfig",
    "SessionHashes",
    "SharedPrefixConfig",
    "SonnetDataset",
    "Stage",
    "StagedArrivals",
    "TargetLength",
    "TraceColumns",
    "TraceConfig",
    "TraceStats",
    "UniformDuration",
    "UniformLength",
    "WorkloadConfig",
    "generate",
    "read_trace",
]
