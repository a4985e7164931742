"""Whole-step measurements: predicting them with a cost model, and fitting the host overhead.

A step row (see :mod:`llmsim.calibration.records`) becomes a :class:`BatchShape`: prefill
requests are taken as equal in length (``prefill_tokens / prefill_seqs`` new tokens over
``prefill_cached / prefill_seqs`` cached ones), which is exact for the uniform batches of
benchmark tables and an approximation for mixed ones.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from llmsim.calibration.fit import significant
from llmsim.calibration.holdout import ape, summary
from llmsim.cost.base import BatchShape, CostModel
from llmsim.cost.calibrated import CalibratedConfig
from llmsim.errors import ConfigError
from llmsim.hardware import HardwareProfile
from llmsim.hardware_calibration import FidelityRow, HostParams
from llmsim.models import ModelSpec, get_model

# BLOOM-176B (bigscience/bloom config.json: 70 layers, hidden 14336, 112 heads, vocabulary
# 250880, plain GELU MLP of 4x hidden, ALiBi positions): not in the catalog, used by splitwise.
BLOOM_176B = ModelSpec(
    name="BLOOM-176B",
    hf_id="bigscience/bloom",
    num_layers=70,
    hidden_size=14336,
    num_heads=112,
    num_kv_heads=112,
    head_dim=128,
    ffn_size=4 * 14336,
    vocab_size=250880,
    gated_mlp=False,
    attention="mha",
    max_context=2048,
)
SPLITWISE_MODELS = {"llama2-70b": "Llama-2-70B", "bloom-176b": "BLOOM-176B"}
# Power-capped H100 rows ("h100-80gb-pcap") are left out: no profile describes that setting.
SPLITWISE_HARDWARE = {"a100-80gb": "A100-80GB", "h100-80gb": "H100-SXM"}

ModelFor = Callable[[str, int], CostModel]


def resolve_model(name: str) -> ModelSpec:
    """A catalog model, or BLOOM-176B, by the names step tables use."""
    key = SPLITWISE_MODELS.get(name.lower(), name)
    if key == BLOOM_176B.name:
        return BLOOM_176B
    return get_model(key)


def shape(row: pd.Series) -> BatchShape:
    """The batch a step row describes."""
    s = int(row["prefill_seqs"])
    t = int(row["prefill_tokens"])
    cached = float(row["prefill_cached"])
    d = int(row["decode_seqs"])
    if s == 0:
        return BatchShape.decode(d, round(float(row["decode_context"])))
    q, p = t / s, cached / s
    return BatchShape(
        prefill_tokens=t,
        prefill_seqs=s,
        prefill_attn_pairs=s * q * (p + (q + 1.0) / 2.0),
        prefill_kv_tokens=round(t + cached),
        decode_seqs=d,
        decode_context=round(float(row["decode_context"])),
        sampled_seqs=s + d,
    )


def predict(steps: pd.DataFrame, model_for: ModelFor, default_model: str = "") -> np.ndarray:
    """Seconds predicted for each step row."""
    out = np.empty(len(steps))
    for i, (_, row) in enumerate(steps.iterrows()):
        name = str(row["model"]) or default_model
        if not name:
            raise ConfigError(
                "step rows need a model: add a 'model' column or pass --model", field="model"
            )
        out[i] = model_for(name, int(row["tp"])).step_time(shape(row))
    return out


def cost_models(hw: HardwareProfile, cfg: CalibratedConfig | None = None) -> ModelFor:
    """Builds (and reuses) calibrated cost models of ``hw`` by model name and TP degree."""
    cache: dict[tuple[str, int], CostModel] = {}
    config = cfg or CalibratedConfig()

    def model_for(name: str, tp: int) -> CostModel:
        key = (name, tp)
        if key not in cache:
            cache[key] = config.build(resolve_model(name), hw, tp)
        return cache[key]

    return model_for


def splitwise_errors(steps: pd.DataFrame, hw: HardwareProfile) -> list[FidelityRow]:
    """Prompt and token step errors of ``hw`` (a calibrated profile) on splitwise's rows."""
    tag = {v: k for k, v in SPLITWISE_HARDWARE.items()}.get(hw.name)
    rows = steps[steps["hardware"] == tag] if tag else steps.iloc[0:0]
    out = []
    model_for = cost_models(hw)
    for kind in ("prompt", "token"):
        sel = rows[rows["kind"] == kind]
        if sel.empty:
            continue
        errs = ape(predict(sel, model_for), sel["time_s"].to_numpy(dtype=float))
        row = summary(f"step: {kind}", "splitwise", "never fitted (operator data only)", [errs])
        if row is not None:
            out.append(row)
    return out


def fit_host(
    steps: pd.DataFrame, hw: HardwareProfile, default_model: str = "", source: str = ""
) -> HostParams:
    """Host overhead that best explains step times beyond the kernels' predicted time.

    Fits ``step + seq * sequences + tp_extra * (tp > 1)`` to (measured - kernel time) by
    non-negative least squares, weighting each step by 1 / measured time (relative error).
    """
    zero = CalibratedConfig(step_overhead_ms=0.0, seq_overhead_us=0.0, tp_overhead_ms=0.0)
    kernel = predict(steps, cost_models(hw, zero), default_model)
    measured = steps["time_s"].to_numpy(dtype=float)
    seqs = (steps["prefill_seqs"] + steps["decode_seqs"]).to_numpy(dtype=float)
    multi = (steps["tp"].to_numpy(dtype=float) > 1).astype(float)
    design = np.column_stack([np.ones_like(seqs), seqs, multi]) / measured[:, None]
    coef, _ = nnls(design, (measured - kernel) / measured)
    return HostParams(
        source=source or f"fitted on {len(steps)} measured steps",
        step_overhead_ms=significant(coef[0] * 1e3),
        seq_overhead_us=significant(coef[1] * 1e6),
        tp_overhead_ms=significant(coef[2] * 1e3),
    )
