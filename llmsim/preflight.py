"""Checks made once the requests are drawn and before the run: a configuration under which some
request could never finish is refused here, with the reason and the field to change, instead
of a run that stops with requests left waiting.

Static batching without ``max_wait_s`` starts a batch only when ``batch_size`` requests wait:
once arrivals stop, a last batch short of that size would wait forever. (Dynamic batching
always has its queue delay, and the continuous policies admit whatever fits.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmsim.errors import ConfigError
from llmsim.policies import StaticConfig
from llmsim.scenario import ReplicaSpec, Scenario
from llmsim.workload import ClosedLoopArrivals, RequestStream


def refuse_unfinishable(
    scenario: Scenario,
    stream: RequestStream,
    specs: Sequence[ReplicaSpec],
    max_model_lens: Sequence[int],
) -> None:
    """Raise a ConfigError when a static batch could be left short forever."""
    entry = [s for s in specs if s.role != "decode"]
    for spec, max_len in zip(specs, max_model_lens, strict=True):
        pol = spec.policy
        if isinstance(pol, StaticConfig) and pol.max_wait_s is None and pol.batch_size > 1:
            why = _short_batch(scenario, stream, spec, pol.batch_size, len(entry), max_len)
            if why is not None:
                b = pol.batch_size
                raise ConfigError(
                    f"policy.batch_size {b} {why}, and without max_wait_s a batch short of {b} "
                    "never starts: set policy.max_wait_s",
                    source=scenario.source,
                    field=(f"cluster pool '{spec.pool}' " if scenario.cluster else "")
                    + "policy.max_wait_s",
                )


def _short_batch(
    scenario: Scenario, stream: RequestStream, spec: ReplicaSpec, b: int, entries: int, max_len: int
) -> str | None:
    """Why a static batch of ``b`` on this replica may never fill, or None."""
    if entries > 1:
        return f"on {entries} replicas: how many requests each gets depends on routing"
    arrival = scenario.workload.arrival
    if isinstance(arrival, ClosedLoopArrivals):
        if arrival.clients < b:
            return f"is more than the {arrival.clients} closed-loop clients"
        if stream.session_id is not None:
            return "waits on closed-loop sessions whose turns come one at a time"
    served = stream.prompt_tokens + stream.output_tokens <= max_len  # the rest are refused
    if spec.classes:
        tags = stream.request_class if stream.request_class is not None else [""] * len(served)
        served &= np.isin(np.asarray(tags, dtype=object), np.array(spec.classes, dtype=object))
    stages = stream.stage if stream.stage_starts is not None else None
    groups = [served] if stages is None else [served & (stages == k) for k in np.unique(stages)]
    for k, group in enumerate(groups):
        n = int(group.sum())
        if n % b:
            where = (
                f" of load stage {k} (drained before the next starts)" if stages is not None else ""
            )
            return f"leaves the last {n % b} of {n} requests{where} in a short batch"
    return None
