"""``llmsim fidelity``: held-out prediction error of the calibrated profiles, by family and by
size, with plots; or one profile's error on a user's own measurements (registered in
:mod:`llmsim.cli`)."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from llmsim.atomic import atomic_write, atomic_write_text, check_writable_folder
from llmsim.cli.calibrate import fidelity_table
from llmsim.cli.common import Steps, fail, out_console
from llmsim.cli.serving import serving_fidelity
from llmsim.errors import ConfigError, LlmsimError

if TYPE_CHECKING:  # the simulator and fitting code load when a command runs
    import pandas as pd

    from llmsim.hardware import HardwareProfile
    from llmsim.hardware_calibration import FidelityRow


def _check_profile(
    hw: HardwareProfile, data: list[Path], model: str | None, preset: str | None
) -> list[FidelityRow]:
    """A calibrated profile's error on operator and step measurements, nothing refitted."""
    import pandas as pd

    from llmsim.calibration import steps as S
    from llmsim.calibration.holdout import ape, profile_errors, summary
    from llmsim.calibration.llmsim_csv import read_operator_csv, read_step_csv, sniff
    from llmsim.calibration.records import concat
    from llmsim.cost.calibrated import CalibratedConfig
    from llmsim.presets import get_preset
    from llmsim.scenario import EngineConfig

    ops = [p for p in data if sniff(p) == "operators"]
    steps = [p for p in data if p not in ops]
    out: list[FidelityRow] = []
    if ops:
        measured = concat([read_operator_csv(p) for p in ops])
        out += profile_errors(hw, measured, ", ".join(p.name for p in ops))
    if steps:
        table = pd.concat([read_step_csv(p) for p in steps], ignore_index=True)
        if preset:
            get_preset(preset, field="--preset")
        engine = EngineConfig.model_validate({"preset": preset, "cost": {"kind": "calibrated"}})
        cost = engine.cost if isinstance(engine.cost, CalibratedConfig) else None
        pred = S.predict(table, S.cost_models(hw, cost), model or "")
        label = f"predicted by the {hw.name} profile (not fitted)"
        if preset:
            label += f", {preset} host overhead"
        names = ", ".join(p.name for p in steps)
        row = summary("step", names, label, [ape(pred, table["time_s"].to_numpy(dtype=float))])
        if row is not None:
            out.append(row)
    return out


def fidelity(
    gpus: Annotated[
        list[str] | None,
        typer.Argument(
            help="GPU profile names or profile .yaml paths (default: every GPU with shipped data).",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data",
            "-d",
            help="Operator or step measurements (llmsim CSV) to predict with one calibrated "
            "profile, nothing refitted: how well it predicts your GPU. Repeatable.",
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model of step rows without a model column.")
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(help="Engine preset whose host overhead prices step rows (llmsim presets)."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for fidelity.csv and fidelity.md.")
    ] = Path("fidelity"),
    plots: Annotated[
        bool,
        typer.Option(
            "--plots", help="Also draw predicted against measured, one PNG per GPU (held out)."
        ),
    ] = False,
    serving: Annotated[
        bool,
        typer.Option(
            "--serving",
            help="End to end instead: replay real serving runs (the shipped vLLM H100 runs, or "
            "yours with --run) and compare TTFT, E2E and ITL with what the client measured.",
        ),
    ] = False,
    run: Annotated[
        Path | None,
        typer.Option(
            help="--serving: your own run, a vLLM benchmark_serving result JSON or a "
            "per-request CSV/JSONL (needs --scenario)."
        ),
    ] = None,
    scenario: Annotated[
        Path | None,
        typer.Option(
            help="--serving --run: scenario with the deployment (model, hardware, engine, policy)."
        ),
    ] = None,
    serving_data: Annotated[
        Path | None,
        typer.Option(
            help="--serving: a folder of runs in the shipped layout (experiments.csv, "
            "measured.csv, model_configs/)."
        ),
    ] = None,
    cost: Annotated[
        str, typer.Option(help="--serving: cost model, calibrated or roofline.")
    ] = "calibrated",
    cross_validate: Annotated[
        bool,
        typer.Option(
            "--cross-validate",
            help="--serving: refit the engine's host and API-server terms with each model held "
            "out in turn, and report only held-out predictions (several minutes).",
        ),
    ] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="--serving: processes.")] = 1,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="--serving: FIELD=VALUE applied to every replayed run's scenario (repeatable), "
            "e.g. engine.async_scheduling=false.",
        ),
    ] = None,
) -> None:
    """Prediction error of the cost model: per GPU and kernel, or end to end with --serving.

    Without --serving: held-out error per GPU and operator family on the shipped data (about
    4 minutes), or one profile's error on your measurements with --data. With --serving: TTFT,
    ITL and E2E latency against real serving runs.

    Examples: llmsim fidelity --plots; llmsim fidelity H100-SXM --data ops.csv;
    llmsim fidelity --serving --plots --out fidelity/serving;
    llmsim fidelity --serving --run result.json --scenario my_deployment.yaml
    """
    import pandas as pd

    from llmsim.calibration import calibrate as C
    from llmsim.hardware import get_hardware

    serving_only = {
        "--run": run is not None,
        "--scenario": scenario is not None,
        "--serving-data": serving_data is not None,
        "--cross-validate": cross_validate,
        "--set": bool(overrides),
        "--cost": cost != "calibrated",
        "--jobs": jobs != 1,
    }
    if not serving and any(serving_only.values()):
        given = ", ".join(k for k, v in serving_only.items() if v)
        raise fail(ConfigError("end-to-end options: add --serving to use them", field=given))
    if serving and (gpus or data or model):
        raise fail(
            ConfigError(
                "replays whole runs: GPU names, --data and --model belong to the "
                "kernel-level check (drop --serving, or drop them)",
                field="--serving",
            )
        )
    try:
        check_writable_folder(out)
    except LlmsimError as exc:
        raise fail(exc) from None
    if serving:
        if cost not in ("calibrated", "roofline"):
            raise fail(
                ConfigError(
                    f"unknown cost model '{cost}'; valid: calibrated, roofline", field="--cost"
                )
            )
        try:
            serving_fidelity(
                out, data=serving_data, run=run, scenario=scenario, cost=cost,
                preset=preset or "vllm-v1", cross=cross_validate, jobs=jobs, plots=plots,
                overrides=overrides or [],
            )  # fmt: skip
        except LlmsimError as exc:
            raise fail(exc) from None
        return
    started = time.perf_counter()
    by_size: list[pd.DataFrame] = []
    try:
        if data:
            if len(gpus or []) != 1:
                raise ConfigError("--data checks one profile: name exactly one", field="gpu")
            hw = get_hardware((gpus or [""])[0], field="gpu")
            rows = [(hw.name, r) for r in _check_profile(hw, data, model, preset)]
        else:
            hws = [get_hardware(g, field="gpu").name for g in (gpus or C.shipped_names())]
            cache: dict[str, pd.DataFrame] = {}
            rows = []
            steps = Steps(len(hws))
            for name in hws:
                steps(f"fitting {name} and predicting its held-out measurements")
                detail: list[pd.DataFrame] = []
                cal = C.calibrate_shipped(name, cache=cache, detail=detail)
                rows.extend((name, r) for r in cal.fidelity)
                by_size.extend(d.assign(gpu=name) for d in detail)
    except LlmsimError as exc:
        raise fail(exc) from None
    table = pd.DataFrame([{"gpu": g, **r.model_dump()} for g, r in rows])
    out.mkdir(parents=True, exist_ok=True)
    written = _write_table(table, out, "fidelity")
    if by_size:
        held = pd.concat(by_size, ignore_index=True)
        written += _write_by_size(held, out)
        if plots:
            written += _plot_fidelity(held, out)
    out_console.print(fidelity_table("Held-out prediction error", rows))
    took = time.perf_counter() - started
    out_console.print(f"wrote {', '.join(str(p) for p in written)} in {took:.1f} s")


def _plot_fidelity(detail: pd.DataFrame, out: Path) -> list[Path]:
    """``<gpu>.png`` per GPU: predicted against measured for each held-out family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llmsim import plots

    written = []
    for gpu, rows in detail.groupby("gpu", sort=False):
        groups = list(rows.groupby(["family", "data", "holdout"], sort=False))
        axes = plots.grid(len(groups), cols=4, size=(4.2, 3.8))
        for ax, ((family, data, holdout), sub) in zip(axes, groups, strict=True):
            plots.fidelity(sub, ax=ax, title=f"{family}, {data}\n{holdout}")
        fig = axes[0].get_figure(root=True)
        assert fig is not None
        fig.suptitle(f"{gpu}: held-out kernel times, predicted against measured")
        path = out / f"{gpu}.png"
        atomic_write(path, partial(fig.savefig, format="png", dpi=110))
        plt.close(fig)
        written.append(path)
    return written


def _write_by_size(detail: pd.DataFrame, out: Path) -> list[Path]:
    """Held-out error by size regime (``fidelity_by_size.csv`` and ``.md``)."""
    import pandas as pd

    from llmsim.calibration.holdout import REGIMES

    keys = ["gpu", "family", "data", "holdout", "regime"]
    grouped = detail.groupby(keys, sort=False)["ape"]
    table = pd.DataFrame(
        {
            "points": grouped.size(),
            "median_ape": grouped.median().round(1),
            "p90_ape": grouped.quantile(0.9).round(1),
        }
    ).reset_index()
    order = {r: i for i, r in enumerate(REGIMES)}
    table = table.sort_values("regime", key=lambda r: r.map(order), kind="stable")
    table = table.sort_values(keys[:4], kind="stable")
    return _write_table(table, out, "fidelity_by_size")


# Markdown headings of the fidelity tables' columns, in order; numbers are right-aligned.
HEADINGS = {
    "gpu": "GPU",
    "family": "family",
    "data": "data",
    "holdout": "held out",
    "regime": "sizes",
    "points": "rows",
    "median_ape": "median APE %",
    "p90_ape": "p90 APE %",
}


def _write_table(table: pd.DataFrame, out: Path, stem: str) -> list[Path]:
    """``<stem>.csv`` (every column) and ``<stem>.md`` (the :data:`HEADINGS` columns)."""
    cols = [c for c in HEADINGS if c in table.columns]
    numbers = {"points", "median_ape", "p90_ape"}
    md = [
        "| " + " | ".join(HEADINGS[c] for c in cols) + " |",
        "|" + "|".join("---:" if c in numbers else "---" for c in cols) + "|",
    ]
    for row in table[cols].itertuples(index=False):
        cells = [
            f"{v:,}" if c == "points" else f"{v:.1f}" if c in numbers else str(v)
            for c, v in zip(cols, row, strict=True)
        ]
        md.append("| " + " | ".join(cells) + " |")
    csv, text = out / f"{stem}.csv", out / f"{stem}.md"
    atomic_write_text(csv, table.to_csv(index=False))
    atomic_write_text(text, "\n".join(md) + "\n")
    return [csv, text]
