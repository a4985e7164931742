"""Fit what no kernel table sees on serving runs, and check it on models held out.

Five physical terms, each with what it stands for:

- ``step_overhead_ms``: host time per engine step (scheduling, input preparation, sampling and
  output processing not hidden behind the GPU);
- ``seq_overhead_us``: host time per sequence in the step;
- ``tp_overhead_ms``: synchronisation of the tensor-parallel workers per step (broadcast of the
  step's inputs, gathering of results), with more than one GPU;
- ``frontend_ms``: the API server's time per request outside the engine (HTTP handling,
  detokenisation and streaming);
- ``tokenize_us_per_token``: the API server's time per prompt token before the engine sees the
  request (tokenisation and input processing).

The step pipeline (``async_scheduling``) is structural, not fitted: it is what the engine does.
The fit is two linear least-squares solves on top of simulations, since each term adds linearly
to what the client measures: the relative ITL gaps of the runs against (1, mean batch, TP > 1)
give the host terms; then, simulated again with those, the relative TTFT gaps against (1, prompt
tokens) give the front-end terms. Both are robust fits (soft L1 on relative error, so one run
that queues over does not drag the rest), with every term kept non-negative.

:func:`cross_validate` holds out one model at a time: the terms are fitted on the other models'
runs and the held-out runs are predicted with them, so no error is reported on a run its terms
were fitted to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from llmsim.e2e.replay import compare, predict
from llmsim.e2e.runs import ServingRun, whole_run

HOST = ("step_overhead_ms", "seq_overhead_us", "tp_overhead_ms")
FRONTEND = ("frontend_ms", "tokenize_us_per_token")


@dataclass(frozen=True)
class Terms:
    """Values of the fitted terms (see the module docstring). The defaults are the starting
    point of a fit: estimates made before any serving run was seen."""

    step_overhead_ms: float = 0.5
    seq_overhead_us: float = 15.0
    tp_overhead_ms: float = 0.3
    frontend_ms: float = 0.0
    tokenize_us_per_token: float = 0.0

    def overrides(self) -> dict[str, float]:
        """The scenario fields (dotted paths) that carry these values."""
        d = asdict(self)
        out = {f"engine.cost.{k}": d[k] for k in HOST}
        out.update({f"engine.{k}": d[k] for k in FRONTEND})
        return out


def with_terms(run: ServingRun, terms: Terms) -> ServingRun:
    return replace(run, scenario=run.scenario.with_overrides(terms.overrides()))


Progress = Callable[[str], None]


_CACHE: dict[str, pd.DataFrame] = {}  # predictions of this process, by resolved scenario


def predict_all(
    runs: Sequence[ServingRun], jobs: int = 1, progress: Progress | None = None
) -> list[pd.DataFrame]:
    """Every run predicted, in order (on ``jobs`` processes). A scenario predicted before in this
    process is not simulated again (a run is deterministic given its scenario)."""
    keys = [r.scenario.to_yaml() for r in runs]
    work: dict[str, ServingRun] = {}
    for key, run in zip(keys, runs, strict=True):
        if key not in _CACHE:
            work.setdefault(key, run)
    todo = list(work.values())
    parallel = jobs > 1 and len(todo) > 1
    with ProcessPoolExecutor(max_workers=jobs) if parallel else nullcontext() as pool:
        tables = pool.map(predict, todo) if pool is not None else map(predict, todo)
        for key, run, table in zip(work, todo, tables, strict=True):  # as each one finishes
            _CACHE[key] = table
            if progress:
                progress(run.key)
    return [_CACHE[k] for k in keys]


def _value(table: pd.DataFrame, metric: str) -> float:
    return whole_run(table).get(metric, float("nan"))


def _solve(a: np.ndarray, gap: np.ndarray, measured: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """``x >= lower`` that makes ``a x`` close the relative gaps ``gap / measured``, robustly:
    a run far off for another reason (a queue that overflows, a kernel the tables misprice)
    weighs like a run 5 % off, not like a hundred of them."""
    scale = a / measured[:, None]
    target = gap / measured
    x0 = np.maximum(lower, 0.0) + 1e-6  # inside the bounds: a start on one can stay stuck there
    fit = least_squares(
        lambda x: scale @ x - target,
        x0,
        bounds=(lower, np.inf),
        loss="soft_l1",
        f_scale=0.05,
        method="dogbox",
    )
    return np.asarray(fit.x)


def fit_terms(
    runs: Sequence[ServingRun],
    start: Terms = Terms(),
    jobs: int = 1,
    progress: Progress | None = None,
) -> Terms:
    """The terms that best explain ``runs``' measured ITL and TTFT (see the module docstring)."""
    base = replace(start, frontend_ms=0.0, tokenize_us_per_token=0.0)
    first = predict_all([with_terms(r, base) for r in runs], jobs, progress)
    itl = np.array([r.value("itl_mean") for r in runs])
    pred = np.array([_value(t, "itl_mean") for t in first])
    batch = np.array([_value(t, "mean_batch_size") for t in first])
    multi = np.array([float(r.scenario.tensor_parallel > 1) for r in runs])
    ok = np.isfinite(itl) & np.isfinite(pred)
    a = np.column_stack([np.ones_like(batch), batch * 1e-3, multi])[ok]  # ms, us, ms
    now = np.array([base.step_overhead_ms, base.seq_overhead_us, base.tp_overhead_ms])
    host = now + _solve(a, (itl - pred)[ok], itl[ok], -now)
    fitted = replace(
        base, step_overhead_ms=host[0], seq_overhead_us=host[1], tp_overhead_ms=host[2]
    )
    second = predict_all([with_terms(r, fitted) for r in runs], jobs, progress)
    ttft = np.array([r.value("ttft_mean") for r in runs])
    pred = np.array([_value(t, "ttft_mean") for t in second])
    prompt = np.array([_value(t, "prompt_len_mean") for t in second])
    ok = np.isfinite(ttft) & np.isfinite(pred)
    a = np.column_stack([np.ones_like(prompt), prompt * 1e-3])[ok]  # ms, us
    front = _solve(a, (ttft - pred)[ok], ttft[ok], np.zeros(2))
    return replace(fitted, frontend_ms=float(front[0]), tokenize_us_per_token=float(front[1]))


def cross_validate(
    runs: Sequence[ServingRun],
    start: Terms = Terms(),
    jobs: int = 1,
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Leave one model out: (every held-out run's comparison table, the terms of each fold)."""
    groups = sorted({r.group for r in runs})
    tables, folds = [], []
    for g in groups:
        train = [r for r in runs if r.group != g]
        test = [r for r in runs if r.group == g]
        terms = fit_terms(train, start, jobs, progress)
        folds.append({"held_out": g, "train_runs": len(train), **asdict(terms)})
        held = [with_terms(r, terms) for r in test]
        for r, p in zip(held, predict_all(held, jobs, progress), strict=True):
            tables.append(compare(r, p).assign(fold=g))
    return pd.concat(tables, ignore_index=True), pd.DataFrame(folds)
