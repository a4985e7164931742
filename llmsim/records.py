"""Finished and rejected requests kept as columns of plain numbers.

The engine appends each request here as it accounts for it (finished, or rejected) and lets
the :class:`~llmsim.request.Request` object go: a run holds a few numbers per request instead
of a Python object with its lists (about a fifth of the memory per request). The
requests table, and the inter-token gaps of any group of requests, are built from these
columns once the run is over.
"""

from __future__ import annotations

from array import array

import numpy as np
import pandas as pd

from llmsim.decode_spans import DecodeSpans
from llmsim.request import REJECT_REASONS, Request, Status

_INTS = (
    "id",
    "replica",
    "prefill_replica",
    "prompt_tokens",
    "num_output",
    "cached_tokens",
    "preemptions",
    "recomputed_tokens",
    "status",
    "reason",
)
_FLOATS = ("arrival", "first_scheduled", "first_token", "finish", "queue_time")
_REASON_CODE = {reason: code for code, reason in enumerate(["", *REJECT_REASONS])}
_STATUS = pd.CategoricalDtype([s.name.lower() for s in Status])
_REASON = pd.CategoricalDtype(list(_REASON_CODE))


class RequestRecords:
    """What the requests table needs of each request, and its decode spans (see
    :mod:`llmsim.decode_spans`), appended one request at a time."""

    def __init__(self) -> None:
        self._ints = array("q")  # len(_INTS) per request
        self._floats = array("d")  # len(_FLOATS) per request
        self._tags: list[str] = []
        self._owner = array("q")  # per span or lone gap: the request's record number
        self._start = array("q")  # first decode step of a span (-1: a lone gap)
        self._stop = array("q")
        self._value = array("d")  # the emission that opened the span, or the lone gap

    def __len__(self) -> int:
        return len(self._tags)

    def add(self, r: Request) -> None:
        """Record ``r``, finished or rejected."""
        k = len(self._tags)
        self._ints.extend(
            (
                r.id,
                r.replica,
                r.prefill_replica,
                r.prompt_tokens,
                r.num_output,
                r.cached_tokens,
                r.preemptions,
                r.recomputed_tokens,
                r.status,
                _REASON_CODE[r.reject_reason],
            )
        )
        self._floats.extend((r.arrival, r.first_scheduled, r.first_token, r.finish, r.queue_time))
        self._tags.append(r.tag)
        for gap in r.extra_gaps:
            self._owner.append(k)
            self._start.append(-1)
            self._stop.append(-1)
            self._value.append(gap)
        for s, e, emit in r.segments:
            self._owner.append(k)
            self._start.append(s)
            self._stop.append(e)
            self._value.append(emit)

    def columns(self) -> dict[str, np.ndarray]:
        """Every recorded field as an array, in record order."""
        ints = np.frombuffer(self._ints, dtype=np.int64).reshape(-1, len(_INTS))
        floats = np.frombuffer(self._floats, dtype=float).reshape(-1, len(_FLOATS))
        out = dict(zip(_INTS, ints.T, strict=True))
        out.update(zip(_FLOATS, floats.T, strict=True))
        return out

    def spans(self, members: np.ndarray) -> DecodeSpans:
        """The decode spans of the records ``members``, numbered by their place in it."""
        place = np.full(len(self), -1, dtype=np.int64)
        place[members] = np.arange(len(members))
        owner = place[np.frombuffer(self._owner, dtype=np.int64)]
        keep = owner >= 0
        return DecodeSpans(
            self.columns()["replica"][members],
            owner[keep],
            np.frombuffer(self._start, dtype=np.int64)[keep],
            np.frombuffer(self._stop, dtype=np.int64)[keep],
            np.frombuffer(self._value, dtype=float)[keep],
        )

    def frame(self) -> pd.DataFrame:
        """One row per request, sorted by id, with its latency metrics in seconds."""
        col = self.columns()
        order = np.argsort(col["id"], kind="stable")

        def take(name: str, dtype: type) -> np.ndarray:
            return col[name][order].astype(dtype, copy=False)

        tags = self._tags
        df = pd.DataFrame(
            {
                "request_id": take("id", np.int64),
                "replica": take("replica", np.int32),
                "prefill_replica": take("prefill_replica", np.int32),
                "request_class": [tags[i] for i in order.tolist()],
                "status": pd.Categorical.from_codes(take("status", np.int8), dtype=_STATUS),
                "arrival": take("arrival", float),
                "first_scheduled": take("first_scheduled", float),
                "first_token": take("first_token", float),
                "finish": take("finish", float),
                "prompt_tokens": take("prompt_tokens", np.int64),
                "output_tokens": take("num_output", np.int64),
                "reject_reason": pd.Categorical.from_codes(take("reason", np.int8), dtype=_REASON),
                "cached_tokens": take("cached_tokens", np.int64),
                "preemptions": take("preemptions", np.int32),
                "recomputed_tokens": take("recomputed_tokens", np.int64),
                "queue_time": take("queue_time", float),
            },
            copy=False,  # the arrays are new: no second copy of the table
        )
        done = df["status"] == "finished"
        for name in ("first_scheduled", "first_token", "finish"):
            df.loc[df[name] < 0, name] = np.nan
        df["ttft"] = (df["first_token"] - df["arrival"]).where(done)
        df["e2e"] = (df["finish"] - df["arrival"]).where(done)
        gen = (df["output_tokens"] - 1).where(df["output_tokens"] > 1)
        df["tpot"] = ((df["e2e"] - df["ttft"]) / gen).where(done)
        return df
