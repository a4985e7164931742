"""The measurements shipped in ``llmsim/calibration/data`` and which GPU profile each belongs to.

For each calibrated GPU: the operator tables its parameters are fitted on, tables used only to
check them (Vidur's all-reduce tables are noisy and bimodal at small sizes, so aiconfigurator's
NCCL tables are fitted and Vidur's only checked), and the families it has no measurements of,
with the GPU whose fitted values stand in (same architecture, or the only host-overhead data
available). Provenance strings name the
upstream repository and commit (see the data folder's README.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from llmsim.calibration import readers as R
from llmsim.calibration.records import concat

DATA_DIR = Path(__file__).resolve().parent / "data"

VIDUR = "Vidur @7d47513"
AIC = "aiconfigurator @095f58a"
SPLITWISE = "splitwise-sim @8f99e7d"


@dataclass(frozen=True)
class Table:
    """One shipped file and how to read it."""

    path: str  # relative to DATA_DIR
    read: Callable[[Path], pd.DataFrame]

    def load(self) -> pd.DataFrame:
        return self.read(DATA_DIR / self.path)


@dataclass(frozen=True)
class GpuData:
    """What calibrates one shipped GPU profile."""

    fit: tuple[Table, ...]
    check: tuple[Table, ...] = ()
    transfers: dict[str, str] = field(default_factory=dict)  # family -> donor GPU
    data: str = ""
    engine: str = ""
    kernel_table: str = ""  # the source whose rows the profile carries as its kernel table


def _vidur_mlp(gpu: str) -> Table:
    return Table(f"vidur/{gpu}_mlp.csv.gz", R.read_vidur_mlp)


def _aic(gpu: str, context: bool = True) -> tuple[Table, ...]:
    tables = [
        Table(f"aiconfigurator/{gpu}_gemm.parquet", R.read_aic_gemm),
        Table(
            f"aiconfigurator/{gpu}_generation_attention.parquet", R.read_aic_generation_attention
        ),
        Table(f"aiconfigurator/{gpu}_nccl.parquet", R.read_aic_nccl),
    ]
    if context:
        tables.append(
            Table(f"aiconfigurator/{gpu}_context_attention.parquet", R.read_aic_context_attention)
        )
    return tuple(tables)


def _vidur_attention(path: Path) -> pd.DataFrame:
    return R.read_vidur_attention(path, model="64 heads / 8 KV heads, TP2")


SHIPPED: dict[str, GpuData] = {
    "A100-80GB": GpuData(
        fit=(
            _vidur_mlp("a100"),
            *_aic("a100_sxm"),
            Table("vidur/a100_cpu_overheads.csv.gz", R.read_vidur_cpu_overheads),
            Table("vidur/a100_dgx_send_recv.csv.gz", R.read_vidur_send_recv),
        ),
        check=(
            Table("vidur/a100_attention.csv.gz", _vidur_attention),
            Table("vidur/a100_dgx_all_reduce.csv.gz", R.read_vidur_all_reduce),
        ),
        data=f"{VIDUR} (a100 mlp, a100 cpu_overheads, a100_dgx send_recv); {AIC} (a100_sxm "
        "gemm, attention, nccl)",
        engine="vLLM 0.14.0 kernels, NCCL 2.27.3 (aiconfigurator); Vidur's vLLM-based "
        "profiler (2024)",
        kernel_table="aiconfigurator",
    ),
    "H100-SXM": GpuData(
        fit=(
            _vidur_mlp("h100"),
            *_aic("h100_sxm"),
            Table("vidur/h100_dgx_send_recv.csv.gz", R.read_vidur_send_recv),
        ),
        check=(Table("vidur/h100_dgx_all_reduce.csv.gz", R.read_vidur_all_reduce),),
        transfers={"host": "A100-80GB"},
        data=f"{VIDUR} (h100 mlp, h100_dgx send_recv); {AIC} (h100_sxm gemm, attention, nccl)",
        engine="vLLM 0.19.0 kernels, NCCL 2.29.2 (aiconfigurator); Vidur's vLLM-based "
        "profiler (2024)",
        kernel_table="aiconfigurator",
    ),
    "H200": GpuData(
        fit=_aic("h200_sxm", context=False),
        transfers={"prefill_attention": "H100-SXM", "elementwise": "H100-SXM", "host": "A100-80GB"},
        data=f"{AIC} (h200_sxm gemm, generation attention, nccl)",
        engine="vLLM 0.19.0 kernels, NCCL 2.29.2 (aiconfigurator)",
        kernel_table="aiconfigurator",
    ),
    "B200": GpuData(
        fit=_aic("b200_sxm"),
        transfers={"elementwise": "H100-SXM", "host": "A100-80GB"},
        data=f"{AIC} (b200_sxm gemm, attention, nccl)",
        engine="vLLM 0.19.0 kernels, NCCL 2.29.2 (aiconfigurator)",
        kernel_table="aiconfigurator",
    ),
    "A40": GpuData(
        fit=(
            _vidur_mlp("a40"),
            Table("vidur/a40_cpu_overheads.csv.gz", R.read_vidur_cpu_overheads),
            Table("vidur/a40_pairwise_nvlink_send_recv.csv.gz", R.read_vidur_send_recv),
        ),
        transfers={"prefill_attention": "A100-80GB", "decode_attention": "A100-80GB"},
        data=f"{VIDUR} (a40 mlp, a40 cpu_overheads, a40_pairwise_nvlink send_recv)",
        engine="Vidur's vLLM-based profiler (2024)",
        kernel_table="vidur",
    ),
}

SPLITWISE_TABLE = Table("splitwise/perf_model.csv.gz", R.read_splitwise)


def load(tables: tuple[Table, ...]) -> pd.DataFrame:
    """The operator rows of several shipped tables."""
    return concat([t.load() for t in tables])
