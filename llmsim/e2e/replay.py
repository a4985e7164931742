"""Replay a serving run in llmsim and set its predictions beside what was measured."""

from __future__ import annotations

import numpy as np
import pandas as pd

from llmsim.e2e.runs import LATENCY_METRICS, WHOLE_RUN, ServingRun, client_metrics
from llmsim.engine import Simulation


def predict(run: ServingRun) -> pd.DataFrame:
    """The run's scenario simulated, measured the way its client measured: one row per (stage,
    metric), plus the simulation's own diagnostics for the whole run."""
    result = Simulation(run.scenario).run()
    table = client_metrics(result.requests)
    s = result.summary
    extra = [
        (WHOLE_RUN, "preemptions_per_request", s["preemptions_per_request"]),
        (WHOLE_RUN, "prefix_cache_hit_rate", float(s.get("prefix_cache_hit_rate", np.nan))),
        (WHOLE_RUN, "mean_batch_size", float(s.get("mean_batch_size", np.nan))),
    ]
    return pd.concat([table, pd.DataFrame(extra, columns=table.columns)], ignore_index=True)


def compare(run: ServingRun, predicted: pd.DataFrame) -> pd.DataFrame:
    """Predicted against measured for every metric the run measured: one row per (stage, metric)
    with the signed relative error ``predicted / measured - 1``."""
    pred = {
        (int(s), str(m)): float(v)
        for s, m, v in zip(predicted["stage"], predicted["metric"], predicted["value"], strict=True)
    }
    names = {m for _, m in pred}
    rows = []
    for (stage, metric), measured in sorted(run.measured.items()):
        if metric not in names:
            continue
        p = pred.get((stage, metric), np.nan)
        rows.append(
            {
                "run": run.key,
                "group": run.group,
                "stage": stage,
                "metric": metric,
                "measured": measured,
                "predicted": p,
                "error": p / measured - 1 if measured else np.nan,
            }
        )
    return pd.DataFrame(rows)


def error_summary(table: pd.DataFrame, metrics: tuple[str, ...] = LATENCY_METRICS) -> pd.DataFrame:
    """Per metric and scope (whole run, or per stage): runs, median |error|, signed bias (median
    error), p90 and max |error|, in percent."""
    t = table[table["metric"].isin(metrics)].copy()
    t["scope"] = np.where(t["stage"] == WHOLE_RUN, "run", "stage")
    t["abs"] = t["error"].abs()
    g = t.groupby(["scope", "metric"], sort=False)
    out = pd.DataFrame(
        {
            "runs": g.size(),
            "median_abs_pct": g["abs"].median() * 100,
            "bias_pct": g["error"].median() * 100,
            "p90_abs_pct": g["abs"].quantile(0.9) * 100,
            "max_abs_pct": g["abs"].max() * 100,
        }
    ).reset_index()
    order = {m: i for i, m in enumerate(metrics)}
    out["_o"] = out["metric"].map(order)
    return out.sort_values(["scope", "_o"]).drop(columns="_o").reset_index(drop=True)
