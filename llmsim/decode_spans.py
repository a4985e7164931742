"""Inter-token gaps of many requests, and of any group of them, from one pass over the requests.

A request decodes in spans (``Request.segments``: first and one-past-last decode step of its
replica, and when the token that opened the span was emitted) with, after a preemption, gaps
the spans do not cover (``Request.extra_gaps``). Each span's first gap is its first step's end
less that emission; its later gaps are the step-to-step gaps of the replica it ran on. The gaps
of a group of requests are therefore each replica's step gaps weighted by how many of the
group's spans cover them, plus the group's first and extra gaps: :class:`DecodeSpans` holds
the spans flattened into arrays (by :class:`llmsim.records.RequestRecords`, as each request
finishes), and :meth:`DecodeSpans.gaps` answers for any group with array operations (the
per-pool and per-replica tables ask once per group).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llmsim.metrics import Weighted


@dataclass(frozen=True)
class DecodeSpans:
    """The decode spans and lone gaps of a list of requests, flat; the entries of each
    request in its own order (its extra gaps first, then its spans)."""

    replica: np.ndarray  # per request
    owner: np.ndarray  # per entry: the request's position in the list
    start: np.ndarray  # per entry: first decode step of a span (-1: a lone gap)
    stop: np.ndarray  # per entry: one past its last step
    value: np.ndarray  # per entry: the emission that opened the span, or the lone gap

    def gaps(
        self, decode_ends: Sequence[np.ndarray], members: np.ndarray | None = None
    ) -> Weighted:
        """All inter-token gaps of the requests at positions ``members`` (in that order; every
        request by default), pooled. ``decode_ends[i]``: the end times of replica i's decode
        steps, indexed by its decode-step counter. The gaps come replica by replica, in the
        order the members first name them, then the lone and first gaps, replica by replica
        and member by member."""
        n = len(self.replica)
        if members is None:
            members = np.arange(n)
        rank = np.full(n, -1, dtype=np.int64)  # each member's place in ``members``
        rank[members] = np.arange(len(members))
        # replicas in the order members first name them (a rejected request names -1, which,
        # as a list index, is the last replica: its spans are none, so it adds no gap)
        named = self.replica[members]
        _, first = np.unique(named, return_index=True)
        order = named[np.sort(first)]
        place = np.zeros(len(decode_ends) + 1, dtype=np.int64)  # by replica + 1
        place[order + 1] = np.arange(len(order))
        entry = np.flatnonzero(rank[self.owner] >= 0)
        owner = self.owner[entry]
        replica = self.replica[owner]
        start, stop, value = self.start[entry], self.stop[entry], self.value[entry]
        values: list[np.ndarray] = []
        weights: list[np.ndarray] = []
        lone = np.zeros(len(entry), dtype=bool)
        lone_value = np.zeros(len(entry))
        for rep in order.tolist():
            ends = decode_ends[rep]
            mine = replica == rep
            s, e = start[mine], stop[mine]
            span = s >= 0
            opened = span & (e > s)
            idx = np.flatnonzero(mine)
            lone[idx] = ~span | opened
            lone_value[idx[~span]] = value[mine][~span]
            lone_value[idx[opened]] = ends[s[opened]] - value[mine][opened]
            if len(ends) > 1:
                run = opened & (e - s >= 2)
                cover = np.bincount(s[run] + 1, minlength=len(ends) + 1)
                cover -= np.bincount(e[run], minlength=len(ends) + 1)
                values.append(np.diff(ends))
                weights.append(np.cumsum(cover[:-1])[1:])
        # lone and first gaps: by replica (first named first), then member, then own order
        sort = np.lexsort((np.arange(len(entry)), rank[owner], place[replica + 1]))
        sort = sort[lone[sort]]
        values.append(lone_value[sort])
        weights.append(np.ones(len(sort), dtype=np.int64))
        v = np.concatenate(values)
        w = np.concatenate(weights)
        keep = w > 0
        return Weighted(v[keep], w[keep])
