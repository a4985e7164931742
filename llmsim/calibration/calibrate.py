"""Calibrating one GPU: fit each operator family, measure held-out error, assemble the
``calibration:`` section of its profile.

A family with measurements of this GPU is fitted on them. One without takes, in order: the
values of a donor GPU given in ``transfers`` (fitted on the donor's own data), the values of
the profile's existing calibration (``base``), or the documented estimates in ``DEFAULTS``;
its ``source`` says which.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping

import pandas as pd
from pydantic import BaseModel

from llmsim.calibration import fit as F
from llmsim.calibration import holdout as H
from llmsim.calibration import steps as S
from llmsim.calibration.shipped import SHIPPED, SPLITWISE_TABLE, load
from llmsim.calibration.tables import table_file, table_rows, table_source
from llmsim.errors import ConfigError
from llmsim.hardware import HardwareProfile, get_hardware
from llmsim.hardware_calibration import (
    Calibration,
    CollectiveParams,
    DecodeAttentionParams,
    ElementwiseParams,
    FidelityRow,
    GemmParams,
    HostParams,
    PrefillAttentionParams,
)

KERNEL_FAMILIES = ("elementwise", "prefill_attention", "decode_attention", "host")
_EST = "estimate, not measured"
# Documented estimates for families without data: the roofline model's constants
# (llmsim/cost/roofline.py) in this model's parametrisation.
DEFAULTS: dict[str, BaseModel] = {
    "gemm": GemmParams(
        source=_EST,
        flops_efficiency=0.7,
        m_half=0.0,
        n_half=0.0,
        k_half=0.0,
        bandwidth_efficiency=0.8,
        n_bandwidth_half=0.0,
        launch_us=4.0,
        smoothness=4.0,
    ),
    "elementwise": ElementwiseParams(
        source=_EST,
        launch_us=4.0,
        norm_efficiency=0.8,
        rope_efficiency=0.8,
        activation_efficiency=0.8,
        add_efficiency=0.8,
        embedding_efficiency=0.8,
    ),
    "prefill_attention": PrefillAttentionParams(
        source=_EST,
        flops_efficiency=0.5,
        seq_half=0.0,
        tiles_half=0.0,
        head_dim_half=0.0,
        bandwidth_efficiency=0.8,
        per_seq_head_ns=0.0,
        launch_us=4.0,
    ),
    "decode_attention": DecodeAttentionParams(
        source=_EST,
        bandwidth_efficiency=0.8,
        parallel_half=0.0,
        per_seq_ns=0.0,
        per_seq_kv_head_ns=0.0,
        launch_us=4.0,
    ),
    "host": HostParams(source=_EST, step_overhead_ms=2.0, seq_overhead_us=10.0),
}


def today() -> str:
    """The calibration date: ``SOURCE_DATE_EPOCH`` when set (reproducible builds), else today."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc).date().isoformat()
    return _dt.date.today().isoformat()


def describe(rows: pd.DataFrame) -> str:
    counts = rows.groupby("source").size()
    parts = [f"{src} {n}" for src, n in counts.items()]
    return f"fitted on {len(rows)} rows ({', '.join(parts)})"


def fit_families(
    hw: HardwareProfile,
    rows: pd.DataFrame,
    transfers: Mapping[str, BaseModel] | None = None,
    base: Calibration | None = None,
) -> dict[str, BaseModel]:
    """Parameters of every family (``gemm:bf16``, ``gemm:fp8`` and the kernel families)."""
    transfers = transfers or {}
    out: dict[str, BaseModel] = {}
    for dtype in ("bf16", "fp8"):
        sub = rows[(rows["family"] == "gemm") & (rows["dtype"] == dtype)]
        if len(sub):
            th = F.fit_family("gemm", sub, hw)
            out[f"gemm:{dtype}"] = F.params("gemm", th, describe(sub), hw)
    if "gemm:bf16" not in out:
        bf16 = base.gemm.get("bf16") if base else None
        out["gemm:bf16"] = transfers.get("gemm") or bf16 or DEFAULTS["gemm"]
    if "gemm:fp8" not in out and base is not None and "fp8" in base.gemm:
        out["gemm:fp8"] = base.gemm["fp8"]
    for family in KERNEL_FAMILIES:
        sub = rows[rows["family"] == family]
        if len(sub):
            out[family] = F.params(family, F.fit_family(family, sub, hw), describe(sub))
        elif family in transfers:
            out[family] = transfers[family]
        elif base is not None:
            out[family] = getattr(base, family)
        else:
            out[family] = DEFAULTS[family]
    ar = rows[rows["family"] == "all_reduce"]
    sr = rows[rows["family"] == "send_recv"]
    if len(ar) or len(sr):
        old = base.collectives if base is not None else CollectiveParams()
        out["collectives"] = CollectiveParams(
            source=describe(pd.concat([ar, sr])),
            all_reduce=F.fit_all_reduce(ar, hw) if len(ar) else old.all_reduce,
            send_recv=F.fit_send_recv(sr, hw) if len(sr) else old.send_recv,
        )
    elif base is not None:
        out["collectives"] = base.collectives
    else:
        out["collectives"] = CollectiveParams(
            source="no measurements: the profile's interconnect figures are used"
        )
    return out


def holdout_errors(
    hw: HardwareProfile,
    rows: pd.DataFrame,
    families: Mapping[str, BaseModel],
    check: pd.DataFrame | None = None,
    preferred: str = "",
    detail: list[pd.DataFrame] | None = None,
) -> list[FidelityRow]:
    """Held-out error of every fitted family, and the error on the check-only tables;
    predictions are corrected by the kernel table of ``preferred`` (:func:`table_rows`), as
    the profile carrying that table corrects them."""
    out: list[FidelityRow] = []
    for dtype in ("bf16", "fp8"):
        sub = rows[(rows["family"] == "gemm") & (rows["dtype"] == dtype)]
        source = table_source(rows, preferred, "gemm")
        out.extend(H.family_errors("gemm", sub, hw, source, f"gemm {dtype}", detail))
    for family in (*KERNEL_FAMILIES, "all_reduce", "send_recv"):
        sub = rows[rows["family"] == family]
        if len(sub):
            source = table_source(rows, preferred, family)
            out.extend(H.family_errors(family, sub, hw, source, detail=detail))
    if check is not None:
        for family in ("prefill_attention", "decode_attention"):
            sub = check[check["family"] == family]
            if len(sub):
                th = F.FAMILIES[family].names
                params = families[family]
                checked = H.check_errors(
                    family,
                    tuple(getattr(params, n) for n in th),
                    sub,
                    hw,
                    table_rows(rows, preferred, family),
                )
                if checked is not None:
                    out.append(checked)
        sub = check[check["family"] == "all_reduce"]
        collectives = families["collectives"]
        if len(sub) and isinstance(collectives, CollectiveParams):
            sub = sub[sub["gpus"].isin([a.gpus for a in collectives.all_reduce])]
            table = table_rows(rows, preferred, "all_reduce")
            pred = F.predict_all_reduce_rows(collectives.all_reduce, sub, hw, table)
            checked = H.summary(
                "all_reduce",
                str(sub["source"].iloc[0]),
                "other source (not fitted)",
                [H.ape(pred, sub["time_s"].to_numpy(dtype=float))],
            )
            if checked is not None:
                out.append(checked)
    return out


def assemble(
    families: Mapping[str, BaseModel],
    *,
    data: str,
    engine: str,
    date: str,
    points: int,
    fidelity: tuple[FidelityRow, ...] = (),
    kernel_table: str = "",
) -> Calibration:
    gemm = {"bf16": families["gemm:bf16"]}
    if "gemm:fp8" in families:
        gemm["fp8"] = families["gemm:fp8"]
    return Calibration.model_validate(
        {
            "data": data,
            "engine": engine,
            "date": date,
            "points": points,
            "gemm": gemm,
            "kernel_table": kernel_table,
            "elementwise": families["elementwise"],
            "prefill_attention": families["prefill_attention"],
            "decode_attention": families["decode_attention"],
            "collectives": families["collectives"],
            "host": families["host"],
            "fidelity": fidelity,
        }
    )


def with_calibration(hw: HardwareProfile, cal: Calibration) -> HardwareProfile:
    return hw.model_copy(update={"calibrated": True, "calibration": cal})


# --- shipped data -------------------------------------------------------------------------


def shipped_names() -> list[str]:
    """GPU profiles that the shipped measurements calibrate."""
    return list(SHIPPED)


def _shipped_gpu(name: str) -> str:
    hw = get_hardware(name, field="gpu")
    if hw.name not in SHIPPED:
        raise ConfigError(
            f"no shipped measurements for '{hw.name}'; shipped: {', '.join(SHIPPED)} "
            "(calibrate other GPUs from your own CSV with --data)",
            field="gpu",
        )
    return hw.name


def _donor(family: str, donor: str, cache: dict[str, pd.DataFrame]) -> BaseModel:
    rows = cache.setdefault(donor, load(SHIPPED[donor].fit))
    sub = rows[rows["family"] == family]
    hw = get_hardware(donor)
    params = F.params(family, F.fit_family(family, sub, hw), describe(sub))
    fitted_on = params.model_dump().get("source", "")
    note = f"transferred from {donor}, no measurements of this GPU: {fitted_on}"
    copy: BaseModel = params.model_copy(update={"source": note})
    return copy


def calibrate_shipped(
    name: str,
    *,
    date: str | None = None,
    holdout: bool = True,
    cache: dict[str, pd.DataFrame] | None = None,
    detail: list[pd.DataFrame] | None = None,
) -> Calibration:
    """Calibrate a GPU from the measurements shipped with llmsim.

    With ``holdout`` the result records the held-out error of each family and, for GPUs that
    splitwise measured, the error on its step times (which are never fitted).
    """
    gpu = _shipped_gpu(name)
    spec = SHIPPED[gpu]
    cache = {} if cache is None else cache
    rows = cache.setdefault(gpu, load(spec.fit))
    hw = get_hardware(gpu)
    transfers = {fam: _donor(fam, donor, cache) for fam, donor in spec.transfers.items()}
    families = fit_families(hw, rows, transfers)
    fidelity: list[FidelityRow] = []
    if holdout:
        check = load(spec.check) if spec.check else None
        fidelity = holdout_errors(hw, rows, families, check, spec.kernel_table, detail)
    cal = assemble(
        families,
        data=spec.data,
        engine=spec.engine,
        date=date or today(),
        points=len(rows),
        kernel_table=table_file(rows, spec.kernel_table),
    )
    if holdout:
        steps = SPLITWISE_TABLE.load()
        fidelity.extend(S.splitwise_errors(steps, with_calibration(hw, cal)))
        cal = cal.model_copy(update={"fidelity": tuple(fidelity)})
    return cal
