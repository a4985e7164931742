"""``llmsim calibrate`` and ``llmsim profile``: hardware profiles from kernel measurements."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from llmsim.atomic import check_writable_folder
from llmsim.cli.common import Steps, fail, out_console, warn
from llmsim.errors import ConfigError, LlmsimError

if TYPE_CHECKING:  # the simulator and fitting code load when a command runs
    import pandas as pd

    from llmsim.hardware import HardwareProfile
    from llmsim.hardware_calibration import Calibration, FidelityRow


def _datasheet(hw: HardwareProfile, given: str) -> tuple[str, str]:
    """(profile text, file name) of a hardware profile given by name or path."""
    from llmsim.calibration.profile_yaml import profile_path
    from llmsim.config_io import parse_yaml, read_text

    path = Path(given) if given.endswith((".yaml", ".yml")) else profile_path(hw.name)
    text = read_text(path)
    parse_yaml(text, str(path))  # a missing or broken file becomes a ConfigError here
    return text, path.name


def fidelity_table(title: str, rows: list[tuple[str, FidelityRow]]) -> Table:
    t = Table(title=title, title_justify="left")
    for col, just in [
        ("gpu", "left"),
        ("family", "left"),
        ("data", "left"),
        ("held out", "left"),
        ("rows", "right"),
        ("median %", "right"),
        ("p90 %", "right"),
    ]:
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for gpu, r in rows:
        t.add_row(
            gpu,
            r.family,
            r.data,
            r.holdout,
            f"{r.points:,}",
            f"{r.median_ape:.1f}",
            f"{r.p90_ape:.1f}",
        )
    return t


def _kernel_table(hw: HardwareProfile, rows: pd.DataFrame) -> str:
    """The user's measurements as the profile's kernel table, with the profile's own rows
    for the families they did not measure (whose fitted values the profile keeps too)."""
    from llmsim.calibration.llmsim_csv import USER_SOURCE
    from llmsim.calibration.tables import table_file

    base = hw.calibration.kernel_table if hw.calibration is not None else ""
    return table_file(rows, USER_SOURCE, base) if len(rows) else base


def _user_calibration(
    hw: HardwareProfile, data: list[Path], model: str | None, engine: str, date: str
) -> Calibration:
    import pandas as pd

    from llmsim.calibration import calibrate as C
    from llmsim.calibration import steps as S
    from llmsim.calibration.holdout import ape, summary
    from llmsim.calibration.llmsim_csv import USER_SOURCE, read_operator_csv, read_step_csv, sniff
    from llmsim.calibration.records import concat

    ops: list[Path] = []
    steps: list[Path] = []
    for path in data:
        kind = sniff(path)
        (ops if kind == "operators" else steps).append(path)
    rows = concat([read_operator_csv(p) for p in ops])
    families = C.fit_families(hw, rows, base=hw.calibration)
    fidelity = C.holdout_errors(hw, rows, families, preferred=USER_SOURCE) if len(rows) else []
    names = ", ".join(p.name for p in data)
    cal = C.assemble(
        families,
        data=names,
        engine=engine,
        date=date,
        points=len(rows),
        kernel_table=_kernel_table(hw, rows),
    )
    if steps:
        table: pd.DataFrame = pd.concat([read_step_csv(p) for p in steps], ignore_index=True)
        host = S.fit_host(
            table,
            C.with_calibration(hw, cal),
            model or "",
            source=f"fitted on {len(table)} measured steps ({names})",
        )
        cal = cal.model_copy(update={"host": host, "points": cal.points + len(table)})
        pred = S.predict(table, S.cost_models(C.with_calibration(hw, cal)), model or "")
        row = summary(
            "step",
            "user",
            "fitted (host overhead only)",
            [ape(pred, table["time_s"].to_numpy(dtype=float))],
        )
        if row is not None:
            fidelity.append(row)
    return cal.model_copy(update={"fidelity": tuple(fidelity)})


def calibrate(
    gpus: Annotated[
        list[str] | None,
        typer.Argument(
            help="GPU profile names or profile .yaml paths (default with --all: "
            "every GPU with shipped measurements).",
            show_default=False,
        ),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every GPU with shipped data.")] = False,
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data",
            "-d",
            help="Your measurements: an llmsim operator or step CSV "
            "(docs/calibration.md). Repeatable; needs exactly one GPU.",
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model of step-level rows without a model column.")
    ] = None,
    engine: Annotated[
        str, typer.Option(help="Engine and version the data was measured with.")
    ] = "",
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the profile YAML files.")
    ] = Path("."),
    date: Annotated[str | None, typer.Option(help="Calibration date (default: today).")] = None,
) -> None:
    """Fit a GPU's cost-model parameters and write its calibrated hardware profile.

    Examples: llmsim calibrate --all --out hardware_profiles/ (every shipped GPU, about 3
    minutes); llmsim calibrate H100-SXM --data my_ops.csv --out my_profiles/
    """

    from llmsim.calibration import calibrate as C
    from llmsim.calibration.profile_yaml import write_profile
    from llmsim.hardware import get_hardware

    started = time.perf_counter()
    try:
        check_writable_folder(out)
        names = list(gpus or [])
        if all_:
            names = names or C.shipped_names()
        if not names:
            raise ConfigError("name a GPU, or pass --all", field="gpu")
        if data and len(names) != 1:
            raise ConfigError("--data calibrates one GPU: name exactly one", field="gpu")
        cache: dict[str, pd.DataFrame] = {}
        report: list[tuple[str, FidelityRow]] = []
        written = []
        steps = Steps(len(names)) if len(names) > 1 else None
        for name in names:
            hw = get_hardware(name, field="gpu")
            if steps is not None:
                steps(f"fitting {hw.name}")
            text, file_name = _datasheet(hw, name)
            day = date or C.today()
            if data:
                cal = _user_calibration(hw, data, model, engine, day)
            else:
                cal = C.calibrate_shipped(hw.name, date=day, cache=cache)
            written.append(write_profile(text, cal, out / file_name))
            report.extend((hw.name, r) for r in cal.fidelity)
    except LlmsimError as exc:
        raise fail(exc) from None
    out_console.print(fidelity_table("Held-out error of the fitted parameters", report))
    took = time.perf_counter() - started
    out_console.print(f"wrote {', '.join(str(p) for p in written)} in {took:.1f} s")
    for gpu, row in report:
        if row.median_ape > CALIBRATION_WARN_APE:
            warn(
                f"{gpu} {row.family}: median error {row.median_ape:.0f} % "
                f"({row.holdout}; over {CALIBRATION_WARN_APE:.0f} %): the measurements "
                f"do not follow the {gpu} kernel model (were they taken on another device, "
                "e.g. a CPU?); the profile was written, and its predictions carry this error"
            )


CALIBRATION_WARN_APE = 25.0
"""Held-out median error (%) of a fitted family above which ``calibrate`` warns."""


def profile(
    model: Annotated[str, typer.Argument(help="Catalog model name or model .yaml path.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV file to write.")] = Path(
        "measurements.csv"
    ),
    tp: Annotated[int, typer.Option(help="Tensor-parallel degree of the shapes.", min=1)] = 1,
    device: Annotated[str, typer.Option(help="torch device: cuda, cuda:1, cpu.")] = "cuda",
    tokens: Annotated[
        str, typer.Option(help="Comma-separated token counts (GEMM rows, prefill lengths).")
    ] = "1,8,32,128,512,2048",
    contexts: Annotated[
        str, typer.Option(help="Comma-separated decode context lengths.")
    ] = "128,1024,4096",
    batches: Annotated[str, typer.Option(help="Comma-separated decode batch sizes.")] = "1,16,64",
    gpus: Annotated[
        int, typer.Option(help="Processes for the all-reduce measurement (1: skip).", min=1)
    ] = 1,
    repeats: Annotated[int, typer.Option(help="Timed runs per shape (median kept).", min=1)] = 10,
) -> None:
    """Measure a model's kernels with torch and write the llmsim operator CSV.

    Example: llmsim profile Llama-3.1-8B --tp 2 --out llama8b_tp2.csv (needs llmsim[profile];
    then llmsim calibrate H100-SXM --data llama8b_tp2.csv)
    """
    from llmsim.calibration.profiler import ProfileSpec, run_profile

    try:
        spec = ProfileSpec.parse(
            model,
            tp=tp,
            device=device,
            tokens=tokens,
            contexts=contexts,
            batches=batches,
            gpus=gpus,
            repeats=repeats,
        )
        n = run_profile(spec, out, progress=Steps())
    except LlmsimError as exc:
        raise fail(exc) from None
    out_console.print(f"wrote {n} measurements to {out}")
