"""``llmsim fidelity --serving``: llmsim against real serving runs measured at the client.

Replays the shipped vLLM runs (or a user's own run, with ``--run`` and ``--scenario``) and writes,
per run and stage, predicted against measured TTFT, E2E and ITL, the median |error| and signed bias
per metric, and a predicted-vs-measured plot. ``--cross-validate`` refits the engine's host and
API-server terms with one model held out at a time and reports only held-out predictions.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from llmsim.atomic import atomic_write, atomic_write_text
from llmsim.cli.common import err_console, out_console, warn
from llmsim.errors import ConfigError

if TYPE_CHECKING:  # the simulator and fitting code load when a command runs
    import pandas as pd

    from llmsim.e2e.runs import ServingRun

PLOTTED = ("e2e_mean", "ttft_mean", "ttft_p99", "itl_mean")


def _runs(
    data: Path | None,
    run: Path | None,
    scenario: Path | None,
    cost: str,
    preset: str,
    overrides: list[str],
) -> list[ServingRun]:
    import warnings

    from llmsim.e2e.serving_data import DATA_DIR, load_serving_runs

    if run is not None:
        from llmsim.e2e.user_runs import load_user_run  # only when checking a user's run

        if scenario is None:
            raise ConfigError(
                "--run needs --scenario: a scenario file with the deployment's model, hardware, "
                "engine and policy",
                field="--scenario",
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = load_user_run(run, scenario)
        for w in caught:  # one line each, as the run's notes
            warn(str(w.message))
        if overrides:
            loaded = replace(loaded, scenario=loaded.scenario.with_overrides(overrides))
        return [loaded]
    return load_serving_runs(data or DATA_DIR, cost=cost, preset=preset, overrides=overrides)


def serving_fidelity(
    out: Path,
    *,
    data: Path | None = None,
    run: Path | None = None,
    scenario: Path | None = None,
    cost: str = "calibrated",
    preset: str = "vllm-v1",
    cross: bool = False,
    jobs: int = 1,
    plots: bool = False,
    overrides: list[str] | None = None,
) -> None:
    import pandas as pd

    from llmsim.e2e.fit import Terms, cross_validate, fit_terms, predict_all
    from llmsim.e2e.replay import compare, error_summary
    from llmsim.presets import get_preset

    started = time.perf_counter()
    get_preset(preset, field="--preset")
    if run is not None:
        # the deployment is the user's scenario: its own engine, preset and cost model
        mine = {"--serving-data": data is not None, "--cost": cost != "calibrated",
                "--preset": preset != "vllm-v1", "--cross-validate": cross}  # fmt: skip
        if any(mine.values()):
            given = ", ".join(k for k, v in mine.items() if v)
            raise ConfigError(
                "not with --run: the scenario file says the deployment (set its engine there), "
                "and one run cannot be held out from itself",
                field=given,
            )
    runs = _runs(data, run, scenario, cost, preset, overrides or [])
    done = [0]
    total = len(runs) * (len({r.group for r in runs}) + 2 if cross else 1)

    def progress(key: str) -> None:
        done[0] += 1
        err_console.print(f"  [{done[0]}/~{total}] {key}", highlight=False)

    folds = None
    if cross:
        start = Terms()  # a fixed start, not the preset's values (fitted on these runs)
        table, folds = cross_validate(runs, start, jobs, progress)
        every = fit_terms(runs, start, jobs, progress)  # what a preset fitted on all runs holds
        row = {"held_out": "none (fitted on every run)", "train_runs": len(runs), **asdict(every)}
        folds = pd.concat([folds, pd.DataFrame([row])], ignore_index=True)
        label = "held out by model (terms refitted without the run's model)"
    else:
        preds = predict_all(runs, jobs, progress)
        table = pd.concat([compare(r, p) for r, p in zip(runs, preds, strict=True)])
        label = (
            f"the {preset} preset as shipped (its terms were fitted on these runs: see "
            "--cross-validate)"
            if run is None
            else f"the deployment of {scenario}"
        )
    summary = error_summary(table)
    out.mkdir(parents=True, exist_ok=True)
    written = _write(table, summary, folds, out)
    if plots:
        gpus = ", ".join(sorted({r.scenario.hardware for r in runs}))
        written.append(_plot(table, out, label, gpus))
    _print(summary, label, len(runs))
    took = time.perf_counter() - started
    out_console.print(f"wrote {', '.join(str(p) for p in written)} in {took:.1f} s")


def _write(
    table: pd.DataFrame, summary: pd.DataFrame, folds: pd.DataFrame | None, out: Path
) -> list[Path]:
    paths = [out / "serving_runs.csv", out / "serving_summary.csv", out / "serving_summary.md"]
    atomic_write_text(paths[0], table.to_csv(index=False))
    atomic_write_text(paths[1], summary.to_csv(index=False))
    md = [
        "| scope | metric | runs | median abs % | bias % | p90 abs % | max abs % |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in summary.itertuples(index=False):
        md.append(
            f"| {r.scope} | {r.metric} | {r.runs} | {r.median_abs_pct:.1f} | "
            f"{r.bias_pct:+.1f} | {r.p90_abs_pct:.1f} | {r.max_abs_pct:.1f} |"
        )
    atomic_write_text(paths[2], "\n".join(md) + "\n")
    if folds is not None:
        paths.append(out / "serving_terms.csv")
        atomic_write_text(paths[-1], folds.to_csv(index=False))
    return paths


def _print(summary: pd.DataFrame, label: str, n: int) -> None:
    from rich.table import Table

    t = Table(title=f"End-to-end error over {n} serving runs: {label}")
    for c in ("scope", "metric", "runs", "median |err| %", "bias %", "p90 |err| %", "max |err| %"):
        t.add_column(c, justify="left" if c in ("scope", "metric") else "right")
    for r in summary.itertuples(index=False):
        t.add_row(
            str(r.scope), str(r.metric), str(r.runs), f"{r.median_abs_pct:.1f}",
            f"{r.bias_pct:+.1f}", f"{r.p90_abs_pct:.1f}", f"{r.max_abs_pct:.1f}",
        )  # fmt: skip
    out_console.print(t)


def _plot(table: pd.DataFrame, out: Path, label: str, gpus: str) -> Path:
    """``serving.png``: predicted against measured, one panel per metric, one colour per model."""
    import matplotlib

    from llmsim.e2e.runs import WHOLE_RUN

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    from llmsim import plots

    axes = plots.grid(len(PLOTTED), cols=2, size=(5.2, 4.4))
    whole = table[table["stage"] == WHOLE_RUN]
    for ax, metric in zip(axes, PLOTTED, strict=True):
        rows = whole[whole["metric"] == metric]
        vals = np.concatenate([rows["measured"].to_numpy(), rows["predicted"].to_numpy()])
        vals = vals[np.isfinite(vals) & (vals > 0)]
        if not vals.size:
            ax.set_title(f"{metric}: not measured", fontsize=9)
            ax.set_axis_off()
            continue
        for group, sub in rows.groupby("group", sort=True):
            ax.scatter(sub["measured"], sub["predicted"], s=28, label=str(group), alpha=0.85)
        lo, hi = float(vals.min()) * 0.8, float(vals.max()) * 1.25
        line = np.array([lo, hi])
        ax.plot(line, line, color="black", lw=0.8)
        for f in (0.9, 1.1):
            ax.plot(line, line * f, color="grey", lw=0.6, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        err = (rows["error"].abs() * 100).to_numpy()
        ax.set_title(
            f"{metric} (ms): median |error| {np.nanmedian(err):.1f} %, max {np.nanmax(err):.1f} %",
            fontsize=9,
        )
        ax.set_xlabel("measured (ms)")
        ax.set_ylabel("predicted (ms)")
        ax.grid(alpha=0.3, which="both")
    fig = axes[0].get_figure(root=True)
    assert fig is not None
    labelled = [ax for ax in axes if ax.get_legend_handles_labels()[0]]
    if labelled:
        handles, names = labelled[0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside lower center", ncol=3, fontsize=8, title="model")
    fig.suptitle(
        f"Serving runs on {gpus}, whole run, predicted against measured (dashed: +-10 %)\n{label}",
        fontsize=10,
    )
    path = out / "serving.png"
    atomic_write(path, partial(fig.savefig, format="png", dpi=110))
    plt.close(fig)
    return path


__all__ = ["serving_fidelity"]
