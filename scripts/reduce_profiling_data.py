"""Build ``llmsim/calibration/data/`` from the third-party measurement folders.

Usage: ``python scripts/reduce_profiling_data.py PROFILING_DIR``, where PROFILING_DIR holds the
``vidur/``, ``aiconfigurator/`` and ``splitwise/`` folders described in
``llmsim/calibration/data/README.md``. Keeps only the rows and columns that calibration and
``llmsim fidelity`` read, in the upstream column names, so the same readers load the originals
and the reduced copies. Deterministic: the same input gives byte-identical output.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parent.parent / "llmsim" / "calibration" / "data"

VIDUR_OPS = [
    "emb",
    "input_layernorm",
    "attn_pre_proj",
    "attn_rope",
    "attn_post_proj",
    "post_attention_layernorm",
    "mlp_up_proj",
    "mlp_act",
    "mlp_down_proj",
    "add",
]
VIDUR_SHAPE = [
    "n_head",
    "n_kv_head",
    "n_embd",
    "n_expanded_embd",
    "vocab_size",
    "use_gated_mlp",
    "num_tokens",
    "num_tensor_parallel_workers",
]
AIC = {
    "a100_sxm": ("0.14.0", "2.27.3"),
    "h100_sxm": ("0.19.0", "2.29.2"),
    "h200_sxm": ("0.19.0", "2.29.2"),
    "b200_sxm": ("0.19.0", "2.29.2"),
}


def _csv(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps the gzip bytes independent of when the script ran.
    df.to_csv(
        path,
        index=False,
        float_format="%.6g",
        compression={"method": "gzip", "mtime": 0},
    )


def _parquet(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.reset_index(drop=True).to_parquet(path, index=False, compression="zstd")


def vidur(src: Path) -> None:
    for gpu in ("a100", "h100", "a40"):
        frames = []
        for f in sorted((src / "compute" / gpu).glob("*/*/mlp.csv")):
            d = pd.read_csv(f)
            cols = [f"time_stats.{op}.median" for op in VIDUR_OPS]
            d = d.reindex(columns=VIDUR_SHAPE + cols)  # phi-2 has no post-attention norm
            d.insert(0, "model", f"{f.parent.parent.name}/{f.parent.name}")
            frames.append(d)
        _csv(pd.concat(frames, ignore_index=True), OUT / "vidur" / f"{gpu}_mlp.csv.gz")
    att = pd.read_csv(src / "legacy" / "a100" / "attention.csv")
    keep = [
        "n_embd",
        "n_q_head",
        "n_kv_head",
        "num_tensor_parallel_workers",
        "batch_size",
        "prefill_chunk_size",
        "kv_cache_size",
        "is_prefill",
        "time_stats.attn_prefill.median",
        "time_stats.attn_decode.median",
    ]
    _csv(att[keep], OUT / "vidur" / "a100_attention.csv.gz")
    for gpu in ("a100", "a40"):
        cpu = pd.read_csv(src / "legacy" / gpu / "cpu_overheads.csv", index_col=0)
        keep = [
            "model_name",
            "batch_size",
            "tensor_parallel_degree",
            "schedule_median",
            "sampler_e2e_median",
            "prepare_inputs_e2e_median",
            "process_model_outputs_median",
            "ray_comm_time_mean",
        ]
        _csv(cpu[keep], OUT / "vidur" / f"{gpu}_cpu_overheads.csv.gz")
    for cluster in ("a100_dgx", "h100_dgx"):
        ar = pd.read_csv(src / "network" / cluster / "all_reduce.csv", index_col=0)
        ar = ar[ar["rank"] == 0]
        keep = ["num_workers", "size", "devices_per_node", "time_stats.all_reduce.median"]
        _csv(ar[keep], OUT / "vidur" / f"{cluster}_all_reduce.csv.gz")
    for cluster in ("a100_dgx", "h100_dgx", "a40_pairwise_nvlink"):
        sr = pd.read_csv(src / "network" / cluster / "send_recv.csv", index_col=0)
        sr = sr[sr["rank"] == 0]
        keep = ["num_workers", "size", "devices_per_node", "time_stats.send_recv.median"]
        _csv(sr[keep], OUT / "vidur" / f"{cluster}_send_recv.csv.gz")
    shutil.copyfile(src / "LICENSE", OUT / "LICENSE-vidur-MIT")


def aiconfigurator(src: Path) -> None:
    for gpu, (ver, nccl) in AIC.items():
        g = pd.read_parquet(src / gpu / "gemm" / "vllm" / ver / "gemm_perf.parquet")
        g = g[g.gemm_dtype.isin(["bfloat16", "fp8"]) & (g.n >= 128) & (g.k >= 128)]
        g = g.sort_values(["gemm_dtype", "m", "n", "k"])
        _parquet(
            g[["gemm_dtype", "m", "n", "k", "latency"]],
            OUT / "aiconfigurator" / f"{gpu}_gemm.parquet",
        )
        base = src / gpu / "attention" / "vllm" / ver
        for table, x in (("context", "isl"), ("generation", "step")):
            a = pd.read_parquet(base / f"{table}_attention_perf.parquet")
            a = a[(a.version == ver) & (a.kv_cache_dtype == "bfloat16")]
            if "window_size" in a:
                a = a[a.window_size == 0]
            if gpu == "h200_sxm" and table == "context":
                continue  # implausible (faster than the GPU's peak): see README.md
            cols = ["batch_size", x, "num_heads", "num_key_value_heads", "head_dim", "latency"]
            a = a.sort_values(cols[:-1])[cols]
            _parquet(a, OUT / "aiconfigurator" / f"{gpu}_{table}_attention.parquet")
        n = pd.read_parquet(src / gpu / "comm" / "nccl" / nccl / "nccl_perf.parquet")
        n = n[(n.op_name == "all_reduce") & (n.nccl_dtype == "half")]
        n = n.sort_values(["num_gpus", "message_size"])
        _parquet(
            n[["op_name", "num_gpus", "message_size", "latency"]],
            OUT / "aiconfigurator" / f"{gpu}_nccl.parquet",
        )
    shutil.copyfile(src / "LICENSE", OUT / "LICENSE-aiconfigurator-APACHE")


def splitwise(src: Path) -> None:
    d = pd.read_csv(src / "perf_model.csv")
    keep = [
        "model",
        "hardware",
        "tensor_parallel",
        "prompt_size",
        "batch_size",
        "token_size",
        "prompt_time",
        "token_time",
    ]
    _csv(d[keep], OUT / "splitwise" / "perf_model.csv.gz")
    shutil.copyfile(src / "LICENSE", OUT / "LICENSE-splitwise-MIT")


def main() -> None:
    src = Path(sys.argv[1])
    vidur(src / "vidur")
    aiconfigurator(src / "aiconfigurator")
    splitwise(src / "splitwise")


if __name__ == "__main__":
    main()
