"""Readers for published GPU measurement tables, into the tidy tables of
:mod:`llmsim.calibration.records`.

Formats:

* Vidur (github.com/microsoft/vidur) per-operator profiles: ``mlp.csv`` (every non-attention
  operator of one layer by token count and tensor-parallel degree), the legacy
  ``attention.csv``, ``all_reduce.csv`` and ``cpu_overheads.csv``. Times in milliseconds.
* aiconfigurator (github.com/ai-dynamo/aiconfigurator) parquet tables: ``gemm_perf``,
  ``context_attention_perf``, ``generation_attention_perf``, ``nccl_perf``. Milliseconds.
* splitwise-sim (github.com/Mutinifni/splitwise-sim) ``perf_model.csv``: step-level prompt and
  per-token times in milliseconds.

Each reader needs only the columns it uses, so reduced copies of these files (as shipped in
``llmsim/calibration/data``) read the same way. A malformed file raises a ConfigError naming the
file, the line (CSV; the header is line 1) or row (parquet), the column and the bad value.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from llmsim.calibration.records import operator_frame, step_frame
from llmsim.errors import ConfigError

MS = 1e-3
BF16 = 2.0  # bytes per element of the activations and KV caches these tables measured


def read_table(path: str | Path) -> tuple[pd.DataFrame, str]:
    """A CSV (optionally gzip-compressed) or parquet file, and the word for its rows."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("file not found", source=str(p))
    try:
        if p.suffix == ".parquet":
            return pd.read_parquet(p), "row"
        return pd.read_csv(p, skip_blank_lines=False), "line"
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot read the table: {reason}", source=str(p)) from None


def require(
    frame: pd.DataFrame,
    columns: Sequence[str],
    source: str,
    unit: str,
    *,
    positive: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """Check that ``columns`` exist and hold finite numbers >= 0 (> 0 for ``positive``)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        where = "line 1" if unit == "line" else "columns"
        raise ConfigError(
            f"missing column(s) {', '.join(missing)}; this format needs {', '.join(columns)}",
            source=source,
            field=where,
        )
    out: dict[str, np.ndarray] = {}
    for col in columns:
        raw = frame[col]
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values) | (values < 0)
        if col in positive:
            bad |= values <= 0
        if bad.any():
            i = int(np.argmax(bad))
            row = i + 2 if unit == "line" else i
            valid = "a number > 0" if col in positive else "a number >= 0"
            raise ConfigError(
                f"column '{col}' has {raw.iloc[i]!r}; valid: {valid}",
                source=source,
                field=f"{unit} {row}",
            )
        out[col] = values
    return out


# --- Vidur --------------------------------------------------------------------------------

VIDUR_GEMMS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
VIDUR_ELEMENTWISE = (
    "emb",
    "input_layernorm",
    "post_attention_layernorm",
    "attn_rope",
    "mlp_act",
    "add",
)
_VIDUR_SHAPE = (
    "n_head",
    "n_kv_head",
    "n_embd",
    "n_expanded_embd",
    "num_tokens",
    "num_tensor_parallel_workers",
)


def read_vidur_mlp(path: str | Path, model: str | None = None) -> pd.DataFrame:
    """Vidur ``mlp.csv``: GEMM and elementwise operator rows.

    The model name comes from a ``model`` column, else ``model``, else the file's folder
    (``<org>/<model>/mlp.csv``). Operators without a ``time_stats.<op>.median`` column (or with
    an empty cell, as Phi-2's missing post-attention norm) are skipped.
    """
    frame, unit = read_table(path)
    src = str(path)
    shape = require(frame, _VIDUR_SHAPE, src, unit, positive=_VIDUR_SHAPE)
    gated = frame.get("use_gated_mlp", pd.Series(True, index=frame.index))
    gated_v = gated.astype(str).str.lower().isin(["true", "1", "1.0"]).to_numpy()
    if "model" in frame.columns:
        names = frame["model"].astype(str).to_numpy()
    else:
        names = np.full(len(frame), model or Path(path).parent.name)
    h = shape["n_embd"]
    tp = shape["num_tensor_parallel_workers"]
    hd = h / shape["n_head"]
    q = shape["n_head"] * hd / tp
    kv = shape["n_kv_head"] * hd / tp
    f = shape["n_expanded_embd"] / tp
    m = shape["num_tokens"]
    gemm_nk = {
        "attn_pre_proj": (q + 2 * kv, h),
        "attn_post_proj": (h, q),
        "mlp_up_proj": (np.where(gated_v, 2 * f, f), h),
        "mlp_down_proj": (h, f),
    }
    ew_bytes = {
        "emb": 2 * h,
        "input_layernorm": 2 * h,
        "post_attention_layernorm": 2 * h,
        "attn_rope": 2 * (q + kv),
        "mlp_act": np.where(gated_v, 3 * f, 2 * f),
        "add": 3 * h,
    }
    frames = []
    for op in (*VIDUR_GEMMS, *VIDUR_ELEMENTWISE):
        col = f"time_stats.{op}.median"
        if col not in frame.columns:
            continue
        t = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
        keep = np.isfinite(t) & (t > 0)
        common = {
            "source": "vidur",
            "model": names[keep],
            "op": op,
            "dtype": "bf16",
            "m": m[keep],
            "tp": tp[keep],
            "time_s": t[keep] * MS,
        }
        if op in gemm_nk:
            n, k = gemm_nk[op]
            n = np.broadcast_to(n, m.shape)
            frames.append(
                operator_frame(
                    family="gemm", n=n[keep], k=np.broadcast_to(k, m.shape)[keep], **common
                )
            )
        else:
            nbytes = np.broadcast_to(ew_bytes[op], m.shape) * m * BF16
            frames.append(operator_frame(family="elementwise", nbytes=nbytes[keep], **common))
    if not frames:
        ops = ", ".join(f"time_stats.{op}.median" for op in VIDUR_GEMMS[:2])
        raise ConfigError(
            f"no operator time columns (such as {ops}, ...)", source=src, field="line 1"
        )
    return pd.concat(frames, ignore_index=True)


def read_vidur_attention(path: str | Path, model: str = "") -> pd.DataFrame:
    """Vidur's legacy ``attention.csv``: prefill chunks over a KV cache, and decode batches."""
    frame, unit = read_table(path)
    src = str(path)
    cols = (
        "n_embd",
        "n_q_head",
        "n_kv_head",
        "num_tensor_parallel_workers",
        "batch_size",
        "prefill_chunk_size",
        "kv_cache_size",
    )
    v = require(frame, cols, src, unit)
    if "is_prefill" not in frame.columns:
        raise ConfigError("missing column is_prefill", source=src, field="line 1")
    prefill = frame["is_prefill"].astype(str).str.lower().isin(["true", "1", "1.0"]).to_numpy()
    tp = v["num_tensor_parallel_workers"]
    heads = v["n_q_head"] / tp
    kv = np.maximum(v["n_kv_head"] / tp, 1.0)
    hd = v["n_embd"] / v["n_q_head"]
    out = []
    for is_prefill, col, fam in (
        (True, "time_stats.attn_prefill.median", "prefill_attention"),
        (False, "time_stats.attn_decode.median", "decode_attention"),
    ):
        if col not in frame.columns:
            continue
        t = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
        keep = (prefill == is_prefill) & np.isfinite(t) & (t > 0)
        seq = v["prefill_chunk_size"] if is_prefill else v["kv_cache_size"]
        out.append(
            operator_frame(
                family=fam,
                source="vidur",
                model=model,
                op=fam,
                dtype="bf16",
                batch=v["batch_size"][keep],
                seq_len=seq[keep],
                past=v["kv_cache_size"][keep] if is_prefill else 0.0,
                heads=heads[keep],
                kv_heads=kv[keep],
                head_dim=hd[keep],
                tp=tp[keep],
                time_s=t[keep] * MS,
            )
        )
    return pd.concat(out, ignore_index=True)


def read_vidur_all_reduce(path: str | Path) -> pd.DataFrame:
    """Vidur ``all_reduce.csv``: time by message size (bytes) and number of GPUs."""
    frame, unit = read_table(path)
    v = require(
        frame,
        ("num_workers", "size", "time_stats.all_reduce.median"),
        str(path),
        unit,
        positive=("num_workers", "size"),
    )
    return operator_frame(
        family="all_reduce",
        source="vidur",
        op="all_reduce",
        nbytes=v["size"],
        gpus=v["num_workers"],
        time_s=v["time_stats.all_reduce.median"] * MS,
    )


def read_vidur_send_recv(path: str | Path) -> pd.DataFrame:
    """Vidur ``send_recv.csv``: a transfer between two GPUs by size (bytes), within one
    server (``devices_per_node`` >= 2, ``op`` intra-node) or between two (inter-node)."""
    frame, unit = read_table(path)
    v = require(
        frame,
        ("num_workers", "size", "devices_per_node", "time_stats.send_recv.median"),
        str(path),
        unit,
        positive=("num_workers", "size", "devices_per_node"),
    )
    same = v["devices_per_node"] >= v["num_workers"]
    return operator_frame(
        family="send_recv",
        source="vidur",
        op=np.where(same, "intra-node", "inter-node"),
        nbytes=v["size"],
        gpus=v["num_workers"],
        time_s=v["time_stats.send_recv.median"] * MS,
    )


VIDUR_HOST = (
    "schedule_median",
    "sampler_e2e_median",
    "prepare_inputs_e2e_median",
    "process_model_outputs_median",
)


def read_vidur_cpu_overheads(path: str | Path) -> pd.DataFrame:
    """Vidur ``cpu_overheads.csv``: host time per engine step (scheduling, sampling, input
    preparation, output processing, plus the workers' communication when present)."""
    frame, unit = read_table(path)
    cols = ("batch_size", "tensor_parallel_degree", *VIDUR_HOST)
    v = require(frame, cols, str(path), unit, positive=("batch_size", "tensor_parallel_degree"))
    total = sum(v[c] for c in VIDUR_HOST)
    if "ray_comm_time_mean" in frame.columns:
        total = (
            total + require(frame, ("ray_comm_time_mean",), str(path), unit)["ray_comm_time_mean"]
        )
    names = frame["model_name"].astype(str) if "model_name" in frame.columns else ""
    return operator_frame(
        family="host",
        source="vidur",
        model=names,
        op="host",
        batch=v["batch_size"],
        tp=v["tensor_parallel_degree"],
        time_s=np.asarray(total) * MS,
    )


# --- aiconfigurator -----------------------------------------------------------------------

_AIC_DTYPES = {"bfloat16": "bf16", "float16": "bf16", "fp8": "fp8"}


def read_aic_gemm(path: str | Path) -> pd.DataFrame:
    """aiconfigurator ``gemm_perf``: bf16 and fp8 GEMM latency over an m x n x k grid (other
    data types are skipped)."""
    frame, unit = read_table(path)
    v = require(frame, ("m", "n", "k", "latency"), str(path), unit, positive=("m", "n", "k"))
    if "gemm_dtype" not in frame.columns:
        raise ConfigError("missing column gemm_dtype", source=str(path), field="columns")
    dtype = frame["gemm_dtype"].astype(str).map(_AIC_DTYPES)
    keep = dtype.notna().to_numpy() & (v["latency"] > 0)
    return operator_frame(
        family="gemm",
        source="aiconfigurator",
        op="gemm",
        dtype=dtype[keep].to_numpy(),
        m=v["m"][keep],
        n=v["n"][keep],
        k=v["k"][keep],
        tp=1.0,
        time_s=v["latency"][keep] * MS,
    )


def _aic_attention(path: str | Path, length: str, family: str) -> pd.DataFrame:
    frame, unit = read_table(path)
    cols = ("batch_size", length, "num_heads", "num_key_value_heads", "head_dim", "latency")
    v = require(frame, cols, str(path), unit, positive=cols[:-1])
    keep = v["latency"] > 0
    for col, wanted in (("kv_cache_dtype", "bfloat16"), ("window_size", 0)):
        if col in frame.columns:
            keep &= (frame[col] == wanted).to_numpy()
    # Decode rows give the past length; the new token's key is attended too.
    seq = v[length] + (1.0 if family == "decode_attention" else 0.0)
    return operator_frame(
        family=family,
        source="aiconfigurator",
        op=family,
        dtype="bf16",
        batch=v["batch_size"][keep],
        seq_len=seq[keep],
        past=0.0,
        heads=v["num_heads"][keep],
        kv_heads=v["num_key_value_heads"][keep],
        head_dim=v["head_dim"][keep],
        tp=1.0,
        time_s=v["latency"][keep] * MS,
    )


def read_aic_context_attention(path: str | Path) -> pd.DataFrame:
    """aiconfigurator ``context_attention_perf``: prefill of ``batch_size`` prompts of ``isl``
    tokens (bf16 KV cache, full attention rows only)."""
    return _aic_attention(path, "isl", "prefill_attention")


def read_aic_generation_attention(path: str | Path) -> pd.DataFrame:
    """aiconfigurator ``generation_attention_perf``: one decode token for ``batch_size``
    sequences with ``step`` tokens already cached (bf16 KV cache, full attention only)."""
    return _aic_attention(path, "step", "decode_attention")


def read_aic_nccl(path: str | Path) -> pd.DataFrame:
    """aiconfigurator ``nccl_perf``: all-reduce rows (fp16/bf16 ``half`` messages;
    ``message_size`` counts elements)."""
    frame, unit = read_table(path)
    v = require(
        frame,
        ("num_gpus", "message_size", "latency"),
        str(path),
        unit,
        positive=("num_gpus", "message_size"),
    )
    keep = v["latency"] > 0
    if "op_name" in frame.columns:
        keep &= (frame["op_name"] == "all_reduce").to_numpy()
    if "nccl_dtype" in frame.columns:
        keep &= (frame["nccl_dtype"] == "half").to_numpy()
    return operator_frame(
        family="all_reduce",
        source="aiconfigurator",
        op="all_reduce",
        nbytes=v["message_size"][keep] * BF16,
        gpus=v["num_gpus"][keep],
        time_s=v["latency"][keep] * MS,
    )


# --- splitwise ----------------------------------------------------------------------------


def read_splitwise(path: str | Path) -> pd.DataFrame:
    """splitwise-sim ``perf_model.csv`` as step rows.

    ``prompt_time`` is one prefill step of ``batch_size`` prompts of ``prompt_size`` tokens.
    ``token_time`` is the mean decode step while ``batch_size`` requests generate
    ``token_size`` tokens after their prompts: the decode context of the mean step is taken
    at the midpoint of generation (decode time is linear in context).
    """
    frame, unit = read_table(path)
    cols = (
        "tensor_parallel",
        "prompt_size",
        "batch_size",
        "token_size",
        "prompt_time",
        "token_time",
    )
    v = require(frame, cols, str(path), unit, positive=cols)
    for col in ("model", "hardware"):
        if col not in frame.columns:
            raise ConfigError(f"missing column {col}", source=str(path), field="line 1")
    b = v["batch_size"]
    common = {
        "source": "splitwise",
        "model": np.concatenate([frame["model"].astype(str).to_numpy()] * 2),
        "hardware": np.concatenate([frame["hardware"].astype(str).to_numpy()] * 2),
        "tp": np.concatenate([v["tensor_parallel"]] * 2),
    }
    n = len(frame)
    context = b * (v["prompt_size"] + (v["token_size"] + 1.0) / 2.0)
    return step_frame(
        kind=np.array(["prompt"] * n + ["token"] * n),
        prefill_tokens=np.concatenate([b * v["prompt_size"], np.zeros(n)]),
        prefill_seqs=np.concatenate([b, np.zeros(n)]),
        decode_seqs=np.concatenate([np.zeros(n), b]),
        decode_context=np.concatenate([np.zeros(n), context]),
        time_s=np.concatenate([v["prompt_time"], v["token_time"]]) * MS,
        **common,
    )
