"""A measured serving run, and the client-side metrics computed from a simulated one."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from llmsim.scenario import Scenario

WHOLE_RUN = -1
"""The stage index of the whole-run rows."""

LATENCY_METRICS = (
    "e2e_mean", "e2e_p90", "e2e_p99", "ttft_mean", "ttft_p90", "ttft_p99", "itl_mean",
)  # fmt: skip
"""The metrics every run is checked on (ms). ``itl_mean`` is (E2E mean - TTFT mean) / (mean
output tokens - 1): a time per output token from aggregate means, as the serving data defines it."""


@dataclass(frozen=True)
class ServingRun:
    """One deployment under one workload, as measured at the client.

    ``measured`` maps (stage, metric) to a value: stage ``-1`` is the whole run, ``0, 1, ...`` the
    load stages in order; latencies in ms, throughputs per second, lengths in tokens. ``group``
    names what the run is held out by (its model) in cross-validation.
    """

    key: str
    group: str
    scenario: Scenario
    measured: dict[tuple[int, str], float]
    source: str = ""
    notes: tuple[str, ...] = field(default=())

    def value(self, metric: str, stage: int = WHOLE_RUN) -> float:
        return self.measured.get((stage, metric), float("nan"))


def client_metrics(requests: pd.DataFrame) -> pd.DataFrame:
    """What a benchmark client reports, from per-request rows (seconds) of finished requests.

    ``requests`` needs ``arrival``, ``first_token``, ``finish`` (seconds), ``prompt_tokens`` and
    ``output_tokens``, and may have ``stage`` (each request's load stage, as a simulation's
    requests table of a staged workload has; default: one stage). Returns one row per (stage,
    metric), stage -1 being the whole run.
    """
    ok = requests["finish"].notna() & requests["first_token"].notna()
    done = requests[ok]
    stage = done["stage"] if "stage" in done.columns else pd.Series(0, index=done.index)
    rows = [(WHOLE_RUN, k, v) for k, v in _metrics(done, int((~ok).sum()))]
    for s, sub in done.groupby(stage, sort=True):
        rows += [(int(s), k, v) for k, v in _metrics(sub, 0)]
    return pd.DataFrame(rows, columns=["stage", "metric", "value"])


def whole_run(table: pd.DataFrame) -> dict[str, float]:
    """The whole-run rows of a :func:`client_metrics` table, by metric."""
    rows = table[table["stage"] == WHOLE_RUN]
    return dict(zip(rows["metric"].astype(str), rows["value"].astype(float), strict=True))


def _metrics(sub: pd.DataFrame, failed: int) -> list[tuple[str, float]]:
    if sub.empty:
        return [("n_success", 0.0), ("n_failed", float(failed))]
    ttft = (sub["first_token"] - sub["arrival"]).to_numpy() * 1e3
    e2e = (sub["finish"] - sub["arrival"]).to_numpy() * 1e3
    out_mean = float(sub["output_tokens"].mean())
    span = float(sub["finish"].max() - sub["arrival"].min())
    out: list[tuple[str, float]] = []
    for name, x in (("e2e", e2e), ("ttft", ttft)):
        out.append((f"{name}_mean", float(x.mean())))
        for q in (50, 90, 99):
            out.append((f"{name}_p{q}", float(np.percentile(x, q))))
    itl = (e2e.mean() - ttft.mean()) / (out_mean - 1) if out_mean > 1 else float("nan")
    per_s = 1.0 / span if span > 0 else float("nan")
    out += [
        ("itl_mean", float(itl)),
        ("requests_per_sec", len(sub) * per_s),
        ("output_tokens_per_sec", float(sub["output_tokens"].sum()) * per_s),
        ("input_tokens_per_sec", float(sub["prompt_tokens"].sum()) * per_s),
        ("prompt_len_mean", float(sub["prompt_tokens"].mean())),
        ("output_len_mean", out_mean),
        ("n_success", float(len(sub))),
        ("n_failed", float(failed)),
    ]
    return out
