"""Per-request and per-step records, their DataFrames, and the run summary.

Metric definitions follow the serving benchmarks (vLLM's ``benchmark_serving``, MLPerf):

* TTFT: first token time minus arrival.
* TPOT: per request, ``(E2E - TTFT) / (output tokens - 1)``; requests with one output token have
  none. Summary statistics are over requests.
* ITL: every gap between consecutive tokens of a request, pooled over requests. It is computed
  exactly without storing a timestamp per token: while a request decodes, its gap at a decode
  step is the time since the replica's previous decode step, so the pooled gaps are the decode
  steps' gaps weighted by how many measured requests each step served (plus, per request, the
  gap to its first decode step and the gap across each preemption).
* E2E latency: finish minus arrival.
* Throughput: the requests that finish inside the measurement window, with all their prompt
  and output tokens, divided by the window's length. Without warm-up/cool-down the window runs
  from the first arrival to the last finish (vLLM's benchmark duration), so output throughput x
  duration is the output tokens of every finished request.
* Rejected requests (``rejected``, ``rejected_fraction``, ``rejected_<reason>`` for each reason
  that occurred) have no latency; they count as SLO misses in ``slo_attainment``.
* Preemption, over the whole run: ``preemptions_per_request`` (over all requests) and
  ``recompute_fraction``, the share of the tokens the GPU computed (prompt and decode) that
  computed again what a preemption by recompute had dropped. A run above either threshold of
  :func:`preemption_warning` is one whose prediction is driven by preemption.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmsim.limits import MAX_MS, MAX_SECONDS
from llmsim.policies.base import Plan, StepStats

PERCENTILES = (50, 90, 99)

PREEMPTION_WARN_PER_REQUEST = 0.1
"""Preemptions per request above which a run's latencies are driven by preemption."""
PREEMPTION_WARN_RECOMPUTE = 0.05
"""Share of computed tokens spent recomputing above which the same is said."""


class MetricsConfig(BaseModel):
    """Scenario section ``metrics``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    warmup_s: float = Field(
        default=0.0, ge=0, le=MAX_SECONDS, description="Exclude requests arriving earlier."
    )
    cooldown_s: float = Field(
        default=0.0, ge=0, description="Exclude the last seconds before the final finish."
    )
    slo_ttft_ms: float | None = Field(
        default=None, gt=0, le=MAX_MS, description="Goodput TTFT target."
    )
    slo_tpot_ms: float | None = Field(
        default=None, gt=0, le=MAX_MS, description="Goodput TPOT target."
    )
    slo_e2el_ms: float | None = Field(
        default=None, gt=0, le=MAX_MS, description="Goodput end-to-end latency target."
    )
    percentiles: tuple[float, ...] = Field(
        default=(),
        description="More percentiles to report (vLLM's --metric-percentiles), e.g. [25, 75, "
        "99.9]: keys p25_ttft_ms..., beside the median, p90 and p99 always reported.",
    )

    @field_validator("percentiles")
    @classmethod
    def _in_range(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        for p in v:
            if not 0 < p < 100:
                raise ValueError(f"percentile {p:g} must be above 0 and below 100")
        return v


class StepLog:
    """Per-step records, appended by the engine as columns of plain numbers (no object is kept
    per step). One entry per event: its start, and :data:`EVENT_FIELDS` as one row of integers;
    one per step: its duration and KV blocks in use. A run of decode steps shares everything
    but its durations and KV usage; it becomes one row per step when the table is built."""

    EVENT_FIELDS = (
        "replica",
        "steps",
        "seqs",
        "prefill_tokens",
        "decode_seqs",
        "sampled",
        "num_waiting",
        "num_running",
    )

    def __init__(self) -> None:
        self._start = array("d")
        self._events = array("q")  # len(EVENT_FIELDS) integers per event
        self._duration = array("d")
        self._kv_blocks = array("q")

    def record(
        self, replica: int, start: float, durations: list[float], plan: Plan, stats: StepStats
    ) -> None:
        shape = plan.shape
        self._start.append(start)
        self._events.extend(
            (
                replica,
                len(durations),
                shape.seqs,
                shape.prefill_tokens,
                shape.decode_seqs,
                shape.sampled_seqs if stats.emitted is None else stats.emitted,
                stats.num_waiting,
                stats.num_running,
            )
        )
        self._duration.extend(durations)
        self._kv_blocks.extend(stats.kv_blocks)

    def __len__(self) -> int:
        return len(self._duration)

    def frame(self, kv_total: Sequence[int]) -> pd.DataFrame:
        """The steps table; the log is spent (its durations and KV counts become the table's
        columns without a copy; nothing can be recorded after)."""
        events = np.frombuffer(self._events, dtype=np.int64).reshape(-1, len(self.EVENT_FIELDS))
        col = dict(zip(self.EVENT_FIELDS, events.T, strict=True))
        counts = col["steps"]
        n = int(counts.sum())

        def per_event(name: str, dtype: type) -> np.ndarray:
            return np.repeat(col[name].astype(dtype), counts)

        duration = np.frombuffer(self._duration, dtype=float)
        # start of each step: its run's start plus the durations before it within the run
        run_first = np.concatenate(([0], np.cumsum(counts)[:-1]))
        offsets = np.cumsum(duration)
        offsets -= duration
        offsets -= np.repeat(offsets[run_first] if n else offsets, counts)
        start = np.repeat(np.frombuffer(self._start, dtype=float), counts)
        start += offsets
        del offsets
        df = pd.DataFrame(
            {
                "replica": per_event("replica", np.int32),
                "start": start,
                "duration": duration,
                "batch_size": per_event("seqs", np.int32),
                "prefill_tokens": per_event("prefill_tokens", np.int64),
                "decode_tokens": per_event("decode_seqs", np.int32),
                "sampled_tokens": per_event("sampled", np.int32),
                "kv_blocks": np.frombuffer(self._kv_blocks, dtype=np.int64),
                "num_waiting": per_event("num_waiting", np.int32),
                "num_running": per_event("num_running", np.int32),
            },
            copy=False,  # new arrays, or the log's own: no second copy of the table
        )
        df["end"] = df["start"] + df["duration"]
        totals = np.asarray(kv_total, dtype=float)
        df["kv_usage"] = df["kv_blocks"] / totals[df["replica"].to_numpy()]
        self._start, self._events = array("d"), array("q")  # in the table now
        return df


@dataclass(frozen=True)
class Weighted:
    """A sample given as distinct values with integer weights (a compressed multiset)."""

    values: np.ndarray
    weights: np.ndarray

    def expand(self) -> np.ndarray:
        """Every sample, sorted (memory grows with the count: for small runs and tests)."""
        return np.sort(np.repeat(self.values, self.weights))

    def mean(self) -> float:
        n = self.weights.sum()
        return float(np.dot(self.values, self.weights) / n) if n else float("nan")

    def std(self) -> float:
        """Population standard deviation (``np.std``), NaN when empty."""
        n = self.weights.sum()
        if not n:
            return float("nan")
        mean = np.dot(self.values, self.weights) / n
        dev = self.values - mean
        np.multiply(dev, dev, out=dev)  # squared in place (one array of the sample's size)
        return float(np.sqrt(np.dot(dev, self.weights) / n))

    def percentile(self, q: float) -> float:
        """Equal to ``np.percentile(np.repeat(values, weights), q)`` (linear method)."""
        return self.percentiles((q,))[0]

    def percentiles(self, qs: Sequence[float]) -> list[float]:
        """:meth:`percentile` of each of ``qs``, from one sort."""
        n = int(self.weights.sum())
        if n == 0:
            return [float("nan")] * len(qs)
        order = np.argsort(self.values)  # the order of equal values changes no percentile
        v = self.values[order]
        cum = self.weights[order]
        del order
        np.cumsum(cum, out=cum)
        out = []
        for q in qs:
            h = (n - 1) * q / 100.0
            lo = int(np.floor(h))
            hi = min(lo + 1, n - 1)
            x_lo = v[np.searchsorted(cum, lo, side="right")]
            x_hi = v[np.searchsorted(cum, hi, side="right")]
            out.append(float(x_lo + (h - lo) * (x_hi - x_lo)))
        return out


def _stats(name: str, seconds: np.ndarray | Weighted, out: dict[str, float]) -> None:
    """mean / median / p90 / p99 in milliseconds, with vLLM's key names."""
    if isinstance(seconds, Weighted):
        mean = seconds.mean()
        pct = seconds.percentiles(PERCENTILES)
    else:
        x = seconds[~np.isnan(seconds)]
        mean = float(x.mean()) if x.size else float("nan")
        pct = np.percentile(x, PERCENTILES).tolist() if x.size else [math.nan] * len(PERCENTILES)
    out[f"mean_{name}_ms"] = mean * 1e3
    for p, v in zip(PERCENTILES, pct, strict=True):
        out[f"{'median' if p == 50 else f'p{p}'}_{name}_ms"] = float(v) * 1e3


def summarize(
    requests: pd.DataFrame,
    steps: pd.DataFrame,
    itl: Weighted,
    window: tuple[float, float],
    cfg: MetricsConfig,
) -> dict[str, float]:
    """The run summary: counts, throughput over ``window``, latency statistics."""
    lo, hi = window
    length = max(hi - lo, 1e-12)
    req = {name: col.to_numpy() for name, col in requests.items() if name in _REQUEST_COLUMNS}
    status = requests["status"].cat.codes.to_numpy()
    states = list(requests["status"].cat.categories)
    finished = status == states.index("finished")
    rejected = status == states.index("rejected")
    arrival, finish = req["arrival"], req["finish"]
    measured = (arrival >= lo) & (arrival <= hi)
    done = measured & finished
    refused = measured & rejected
    # Throughputs count the requests that finish inside the window, each once, with all its
    # tokens: request, output and total throughput describe the same requests, and without
    # warm-up or cool-down output throughput x duration is every finished request's output.
    fin_in = (finish >= lo) & (finish <= hi) & finished
    prompt, output = req["prompt_tokens"], req["output_tokens"]
    out_tokens = float(output[fin_in].sum())
    n = len(status)
    s: dict[str, float] = {
        "num_requests": float(n),
        "completed": float(finished.sum()),
        "rejected": float(rejected.sum()),
        "rejected_fraction": float(rejected.mean()) if n else 0.0,
        "measured_requests": float(done.sum()),
        "duration_s": float(length),
        "request_throughput": int(fin_in.sum()) / length,
        "output_throughput": out_tokens / length,
        "total_token_throughput": (float(prompt[fin_in].sum()) + out_tokens) / length,
        "total_input_tokens": float(prompt[done].sum()),
        "total_output_tokens": float(output[done].sum()),
    }
    samples = {name: req[col][done] for name, col in _SAMPLE_COLUMNS.items()}
    for name in SUMMARY_ROWS:
        _stats(name, itl if name == "itl" else samples[name], s)
    reasons = requests["reject_reason"].cat
    counts = np.bincount(reasons.codes.to_numpy() + 1, minlength=len(reasons.categories) + 1)
    for code, reason in enumerate(reasons.categories, start=1):  # code 0: missing
        if reason and counts[code]:
            s[f"rejected_{reason}"] = int(counts[code])
    if cfg.slo_ttft_ms is not None or cfg.slo_tpot_ms is not None or cfg.slo_e2el_ms is not None:
        ok = np.ones(int(done.sum()), dtype=bool)
        if cfg.slo_ttft_ms is not None:
            ok &= samples["ttft"] * 1e3 <= cfg.slo_ttft_ms
        if cfg.slo_tpot_ms is not None:
            tpot = samples["tpot"]
            ok &= np.where(np.isnan(tpot), 0.0, tpot) * 1e3 <= cfg.slo_tpot_ms
        if cfg.slo_e2el_ms is not None:
            ok &= samples["e2el"] * 1e3 <= cfg.slo_e2el_ms
        s["goodput"] = float(ok.sum()) / length
        # a rejected request misses its SLOs: attainment is over every measured request
        total = len(ok) + int(refused.sum())
        s["slo_attainment"] = float(ok.sum()) / total if total else float("nan")
    dur = steps["duration"].to_numpy()
    batch = steps["batch_size"].to_numpy()
    decode = steps["decode_tokens"].to_numpy()
    kv = steps["kv_usage"].to_numpy()
    busy = float(dur.sum())
    s["num_steps"] = float(len(dur))
    s["mean_batch_size"] = float(batch.mean()) if len(batch) else 0.0
    dec = decode[decode > 0]
    s["mean_decode_batch_size"] = float(dec.mean()) if len(dec) else 0.0
    s["mean_kv_usage"] = float(np.dot(kv, dur) / busy) if busy else 0.0
    s["max_kv_usage"] = float(kv.max()) if len(kv) else 0.0
    s["preemptions"] = float(req["preemptions"].sum())
    s["preemptions_per_request"] = s["preemptions"] / n if n else 0.0
    computed = float(steps["prefill_tokens"].to_numpy().sum() + decode.sum())
    s["recomputed_tokens"] = float(req["recomputed_tokens"].sum())
    s["recompute_fraction"] = s["recomputed_tokens"] / computed if computed else 0.0
    _benchmark_keys(s, samples, itl, cfg)
    return s


_SAMPLE_COLUMNS = {"ttft": "ttft", "tpot": "tpot", "e2el": "e2e", "queue": "queue_time"}
"""Summary rows measured per request, and their column in the requests table."""
_REQUEST_COLUMNS = {
    "arrival",
    "finish",
    "prompt_tokens",
    "output_tokens",
    "preemptions",
    "recomputed_tokens",
    *_SAMPLE_COLUMNS.values(),
}


COUNT_KEYS = (
    "num_requests",
    "completed",
    "rejected",
    "failed",
    "measured_requests",
    "total_input_tokens",
    "total_output_tokens",
    "num_steps",
    "preemptions",
    "recomputed_tokens",
)
"""Summary keys that count things: integers in the summary (and its JSON), as in vLLM's."""


GOODPUT_KEYS = {"ttft": "slo_ttft_ms", "tpot": "slo_tpot_ms", "e2el": "slo_e2el_ms"}
"""vLLM's ``--goodput`` metric names and the ``metrics`` fields they set."""


def parse_goodput(text: str) -> dict[str, float]:
    """vLLM's ``--goodput`` argument, e.g. ``"ttft:2000 tpot:100"`` (milliseconds), as
    ``metrics`` fields (``{"slo_ttft_ms": 2000.0, "slo_tpot_ms": 100.0}``).

    Raises ValueError naming the bad pair and what is valid.
    """
    out: dict[str, float] = {}
    for pair in text.replace(",", " ").split():
        name, sep, value = pair.partition(":")
        try:
            ms = float(value)
        except ValueError:
            ms = math.nan
        if not sep or name not in GOODPUT_KEYS or not ms > 0 or math.isinf(ms):
            raise ValueError(
                f"'{pair}': give KEY:MILLISECONDS pairs with KEY one of "
                f"{', '.join(GOODPUT_KEYS)} and a positive number, e.g. 'ttft:2000 tpot:100'"
            )
        out[GOODPUT_KEYS[name]] = ms
    if not out:
        raise ValueError("empty: give e.g. 'ttft:2000 tpot:100'")
    return out


def percentile_key(p: float, name: str) -> str:
    """vLLM's key for percentile ``p`` of metric ``name``: p99_ttft_ms, p99.9_itl_ms."""
    return f"p{int(p) if p == int(p) else p}_{name}_ms"


def _benchmark_keys(
    s: dict[str, float], samples: dict[str, np.ndarray], itl: Weighted, cfg: MetricsConfig
) -> None:
    """Add what a reader of vLLM's ``benchmark_serving`` results expects beside llmsim's own
    keys: ``duration``, ``failed``, ``request_goodput`` (null without SLOs), ``std_*_ms``,
    the extra ``metrics.percentiles``, and counts as integers."""
    s["duration"] = s["duration_s"]
    s["failed"] = s["rejected"]
    s["request_goodput"] = s.get("goodput", math.nan)
    for name in SUMMARY_ROWS:
        if name == "itl":
            sample = itl
        else:
            x = samples[name]
            sample = Weighted(x[~np.isnan(x)], np.ones(int((~np.isnan(x)).sum()), np.int64))
        s[f"std_{name}_ms"] = sample.std() * 1e3
        for p in cfg.percentiles:
            s[percentile_key(p, name)] = sample.percentile(p) * 1e3
    for key in COUNT_KEYS:
        s[key] = int(s[key])


def preemption_warning(summary: dict[str, float]) -> str | None:
    """One line when preemption drives the run (more than 0.1 preemption per request or more
    than 5 % of computed tokens recomputed), else None. Summaries without the keys (a policy
    that never preempts) give None."""
    per_request = summary.get("preemptions_per_request", 0.0)
    share = summary.get("recompute_fraction", 0.0)
    if per_request <= PREEMPTION_WARN_PER_REQUEST and share <= PREEMPTION_WARN_RECOMPUTE:
        return None
    return (
        f"preemption drives this prediction: {per_request:.2f} preemptions per request, "
        f"{share:.1%} of computed tokens recompute preempted work; the KV cache is "
        "oversubscribed at this load (an engine that never evicts admits fewer requests "
        "instead: policy.admission no_evict)"
    )


SUMMARY_ROWS = ("ttft", "tpot", "itl", "e2el", "queue")


def summary_frame(summary: dict[str, float]) -> pd.DataFrame:
    """Latency metrics as a table: one row per metric, columns mean / p50 / p90 / p99 (ms)."""
    rows = {
        name: {
            "mean": summary[f"mean_{name}_ms"],
            "p50": summary[f"median_{name}_ms"],
            "p90": summary[f"p90_{name}_ms"],
            "p99": summary[f"p99_{name}_ms"],
        }
        for name in SUMMARY_ROWS
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("metric (ms)")
