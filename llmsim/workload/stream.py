"""The request stream: every request of a run, as columns."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from llmsim.workload.prefix import PrefixHashes


@dataclass(frozen=True)
class TraceStats:
    """What a trace reader did with the rows of one file."""

    source: str
    rows: int = 0
    """Data rows read (the header and blank lines not counted)."""
    bad_rows: int = 0
    """Invalid rows skipped (only with ``skip_bad_rows``)."""
    first_bad: str | None = None
    """``file:line: reason`` of the first skipped row."""
    outside_window: int = 0
    sampled_out: int = 0
    kept: int = 0
    stopped_early: bool = False
    """Reading stopped at the end of the time window or at the request cap."""


@dataclass(frozen=True)
class RequestStream:
    """Sampled or replayed requests, one entry per request.

    Open-loop streams are sorted by ``arrival``. Closed-loop streams (``think_s`` present) have
    no arrival times yet (``arrival`` is NaN): their clients decide them while the run goes on,
    see :class:`llmsim.workload.closed_loop.ClosedLoopClients`; their entries are grouped by
    session, turns in order.

    The optional columns are ``None`` when the workload does not define them; a consumer then
    uses the defaults given in each field's description.
    """

    arrival: np.ndarray
    """Arrival times in seconds (float64)."""
    prompt_tokens: np.ndarray
    """Prompt tokens (int64); for a session turn, the whole conversation so far."""
    output_tokens: np.ndarray
    """Tokens to generate (int64)."""
    session_id: np.ndarray | None = None
    """Conversation of each request (int64, from 0); default: every request on its own."""
    turn: np.ndarray | None = None
    """Turn index within the conversation (int64, from 0); default 0."""
    prefix: PrefixHashes | None = None
    """Prefix block ids and their block size; default: nothing shared."""
    request_class: np.ndarray | None = None
    """Request class or tag (str, object array), e.g. "interactive"; default "default"."""
    priority: np.ndarray | None = None
    """Scheduling priority (int64), lower served first (vLLM's convention); default 0."""
    think_s: np.ndarray | None = None
    """Closed loop only: seconds a client waits after this request finishes."""
    send_delay_s: np.ndarray | None = None
    """Closed loop only: seconds from the client sending this request to its arrival at the
    engine (client and front-end jitter); default 0."""
    trace: TraceStats | None = None
    """Replayed traces only: what the reader read, kept and skipped."""
    stage: np.ndarray | None = None
    """Load stage of each request (int64, from 0, non-decreasing); default: one stage."""
    stage_starts: np.ndarray | None = None
    """Drained stages only: the nominal start of each stage (seconds). Stage ``k + 1`` starts
    once every request of the stages before it has finished, and its arrivals move later by
    however much that is after its nominal start."""

    def __post_init__(self) -> None:
        n = len(self.arrival)
        for name in ("prompt_tokens", "output_tokens", "session_id", "turn", "request_class",
                     "priority", "think_s", "send_delay_s", "prefix", "stage"):  # fmt: skip
            col = getattr(self, name)
            if col is not None and len(col) != n:
                raise ValueError(f"RequestStream.{name} has {len(col)} entries, arrival has {n}")

    def __len__(self) -> int:
        return len(self.arrival)

    @property
    def closed_loop(self) -> bool:
        """True when arrival times are decided during the run by closed-loop clients."""
        return self.think_s is not None

    @property
    def hash_block_size(self) -> int | None:
        """Tokens per prefix hash block, or None without prefix ids."""
        return self.prefix.block_size if self.prefix is not None else None

    def take(self, idx: np.ndarray) -> RequestStream:
        """The requests at positions ``idx``, in that order, every column kept together."""
        idx = np.asarray(idx, dtype=np.int64)

        def pick(col: np.ndarray | None) -> np.ndarray | None:
            return None if col is None else col[idx]

        return replace(
            self,
            arrival=self.arrival[idx],
            prompt_tokens=self.prompt_tokens[idx],
            output_tokens=self.output_tokens[idx],
            session_id=pick(self.session_id),
            turn=pick(self.turn),
            prefix=None if self.prefix is None else self.prefix.take(idx),
            request_class=pick(self.request_class),
            priority=pick(self.priority),
            think_s=pick(self.think_s),
            stage=pick(self.stage),
            send_delay_s=pick(self.send_delay_s),
        )
