"""The tables and summary of a finished run: the requests and steps tables, the latency and
throughput summary with its diagnostics (overload, extrapolation), and the same summary per
pool and per replica. Plain pandas and numpy on what the engine recorded; no SimPy."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from llmsim.decode_spans import DecodeSpans
from llmsim.diagnostics import extrapolation, overload
from llmsim.metrics import summarize
from llmsim.result import SimulationResult

if TYPE_CHECKING:
    from llmsim.engine import Simulation


def assemble(sim: Simulation) -> SimulationResult:
    """The tables and summary of ``sim``, a finished run."""
    records = sim.records
    unfinished = len(sim.stream) - len(records)
    if unfinished:  # cannot happen with work-conserving policies; guard the invariant
        raise RuntimeError(f"{unfinished} requests never finished")
    req_df = records.frame()
    pools = {rep.index: rep.pool for rep in sim.replicas}
    req_df["pool"] = req_df["replica"].map(pools).fillna("")
    if sim.stream.stage is not None:  # load stage of each request (staged workloads)
        req_df["stage"] = sim.stream.stage[req_df["request_id"].to_numpy()]
    steps_df = sim.log.frame([rep.kv.num_blocks for rep in sim.replicas])
    steps_df["pool"] = steps_df["replica"].map(pools)
    n = len(sim.replicas)
    step_rows = _rows_by(steps_df["replica"].to_numpy(), n)
    decode = steps_df["decode_tokens"].to_numpy() > 0
    end = steps_df["end"].to_numpy()
    ends = [end[rows[decode[rows]]] for rows in step_rows]
    mcfg = sim.scenario.metrics
    lo = float(req_df["arrival"].min()) + mcfg.warmup_s if len(req_df) else 0.0
    last = req_df["finish"].max()
    hi = (float(last) if not np.isnan(last) else lo) - mcfg.cooldown_s
    window = (lo, max(hi, lo))
    # the requests in the window, in order of id (as in the requests table)
    col = records.columns()
    by_id = np.argsort(col["id"], kind="stable")
    arrival = col["arrival"][by_id]
    measured = by_id[(window[0] <= arrival) & (arrival <= window[1])]
    spans = records.spans(measured)
    itl = spans.gaps(ends)
    whole = summarize(req_df, steps_df, itl, window, mcfg)
    summary = dict(whole)
    hits = [rep.policy.pool for rep in sim.replicas]  # type: ignore[attr-defined]
    if any(p.query_tokens for p in hits):
        queried = sum(p.query_tokens for p in hits)
        summary["prefix_cache_hit_rate"] = sum(p.hit_tokens for p in hits) / queried
        tiers = [t for rep in sim.replicas if (t := getattr(rep.policy, "host", None)) is not None]
        if tiers:  # prompt tokens loaded from the host tier (vLLM KV offloading)
            summary["host_cache_hit_rate"] = sum(t.hit_tokens for t in tiers) / queried
    if sim.stream.trace is not None:
        summary["trace_bad_rows_skipped"] = float(sim.stream.trace.bad_rows)
    summary.update(overload(req_df, closed_loop=sim.clients is not None))
    length = window[1] - window[0]
    busy = float(steps_df["duration"].sum())
    summary["busy_fraction"] = busy / length / len(sim.replicas) if length > 0 else 0.0
    groups = (
        _groups(sim, req_df, steps_df, step_rows, col["id"][measured], spans, ends, window, whole)
        if len(pools) > 1
        else {}
    )
    result = SimulationResult(
        sim.scenario,
        req_df,
        steps_df,
        summary,
        [rep.kv for rep in sim.replicas],
        itl,
        window,
        groups.get("pool"),
        groups.get("replica"),
    )
    if any(spec.engine.cost.kind == "calibrated" for spec in sim.scenario.replica_specs()):
        # 1.0 when some step left the shapes the profile measured (result.warnings says which)
        summary["extrapolated"] = float(bool(extrapolation(result)))
    return result


def _groups(
    sim: Simulation,
    req_df: pd.DataFrame,
    steps_df: pd.DataFrame,
    step_rows: list[np.ndarray],
    measured: np.ndarray,  # ids of the requests in the window, in the order ``spans`` has
    spans: DecodeSpans,
    ends: list[np.ndarray],
    window: tuple[float, float],
    whole: dict[str, float],
) -> dict[str, pd.DataFrame]:
    """The summary per pool and per replica. A prefill replica (disaggregated serving) is
    credited with the requests it prefilled, a decode or mixed one with those it served.
    ``step_rows[i]``: the rows of ``steps_df`` that are replica i's steps; ``whole``: the
    summary of every request and step (a group of them all is summarized the same way)."""
    mcfg = sim.scenario.metrics
    length = window[1] - window[0]
    ids = req_df["request_id"].to_numpy()
    # position in ``measured`` of each request, by id (-1: outside the measured window)
    position = np.full(len(ids) and int(ids.max()) + 1, -1, dtype=np.int64)
    position[measured] = np.arange(len(measured))
    n = len(sim.replicas)
    served = _rows_by(req_df["replica"].to_numpy(), n)
    prefilled = _rows_by(req_df["prefill_replica"].to_numpy(), n)
    # (rows of req_df, rows of steps_df) of each replica and each pool, in table order
    members: dict[str, dict[Hashable, tuple[np.ndarray, np.ndarray]]] = {
        "replica": {i: (np.union1d(served[i], prefilled[i]), step_rows[i]) for i in range(n)},
        "pool": {},
    }
    for pool in dict.fromkeys(rep.pool for rep in sim.replicas):
        mine = [rep.index for rep in sim.replicas if rep.pool == pool]
        rows = [members["replica"][i] for i in mine]
        members["pool"][pool] = (
            np.unique(np.concatenate([r for r, _ in rows])),
            np.sort(np.concatenate([st for _, st in rows])),
        )
    out = {}
    for key, groups in members.items():
        table = {}
        for name, (req_rows, st_rows) in groups.items():
            st = _take(steps_df, st_rows)
            if len(req_rows) == len(req_df) and len(st_rows) == len(steps_df):
                row = dict(whole)  # a pool of every replica: the run's own summary
            else:
                mine = position[ids[req_rows]]
                itl = spans.gaps(ends, mine[mine >= 0])
                row = summarize(_take(req_df, req_rows), st, itl, window, mcfg)
            count = sum(1 for rep in sim.replicas if rep.pool == name) if key == "pool" else 1
            busy = float(st["duration"].sum())
            row["busy_fraction"] = busy / length / count if length > 0 else 0.0
            table[name] = row
        out[key] = pd.DataFrame.from_dict(table, orient="index").rename_axis(key)
    return out


def _rows_by(keys: np.ndarray, n: int) -> list[np.ndarray]:
    """For each value 0..n-1, the positions in ``keys`` that hold it, ascending (one sort for
    all values instead of one comparison of the whole column per value)."""
    order = np.argsort(keys, kind="stable")
    bounds = np.searchsorted(keys[order], np.arange(n + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(n)]


def _take(table: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """``table.iloc[rows]`` for ascending, distinct ``rows``; the table itself, not a copy,
    when they are all of its rows (a pool that is the whole fleet)."""
    return table if len(rows) == len(table) else table.iloc[rows]
