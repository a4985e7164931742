"""Data files shipped with llmsim (see data/README.md for their sources and licenses)."""

from __future__ import annotations

import zlib
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from llmsim.errors import ConfigError
from llmsim.limits import MAX_TOKENS

DATA_DIR = Path(__file__).resolve().parent / "data"

DATASETS: dict[str, str] = {
    "sharegpt_multiturn": "sharegpt_llama2_lengths.csv.gz",
    "arxiv": "arxiv_summarization_lengths.csv.gz",
    "azure_conv": "azure_llm_2023_conv.csv.gz",
    "azure_code": "azure_llm_2023_code.csv.gz",
}
"""Length datasets (CSV) by the name a scenario uses."""

PAIRED_COLUMNS: dict[str, tuple[str, str]] = {
    "sharegpt_multiturn": ("num_prefill_tokens", "num_decode_tokens"),
    "arxiv": ("num_prefill_tokens", "num_decode_tokens"),
    "azure_conv": ("ContextTokens", "GeneratedTokens"),
    "azure_code": ("ContextTokens", "GeneratedTokens"),
}
"""The prompt and output columns of each length dataset."""

RENAMED_DATASETS: dict[str, str] = {"sharegpt": "sharegpt_multiturn"}
"""Former dataset names and their new ones. ``sharegpt`` was renamed because it is not the
ShareGPT_V3 single-turn set vLLM's and SGLang's benchmarks mean by that name, but Sarathi-Serve's
multi-turn conversations (prompts several times longer)."""


def check_dataset(name: str) -> None:
    """Raise ValueError naming what is valid when ``name`` is not a shipped length dataset."""
    if name in RENAMED_DATASETS:
        raise ValueError(
            f"dataset '{name}' was renamed '{RENAMED_DATASETS[name]}': it holds Sarathi-Serve's "
            "multi-turn ShareGPT conversations (mean prompt about 2,300 tokens), not the "
            "ShareGPT_V3 single-turn prompts of vLLM's benchmark; use "
            f"'{RENAMED_DATASETS[name]}', or the 'random' workload dataset for fixed lengths"
        )
    if name not in DATASETS:
        raise ValueError(f"unknown dataset '{name}'; valid: {', '.join(DATASETS)}")


TRACE_DATASETS: dict[str, tuple[str, str]] = {
    "azure_conv": ("azure_llm_2023_conv.csv.gz", "azure"),
    "azure_code": ("azure_llm_2023_code.csv.gz", "azure"),
    "mooncake_conversation": ("mooncake_conversation.jsonl.gz", "mooncake"),
}
"""Trace excerpts, by name: (file, trace format)."""


def dataset_path(name: str) -> Path:
    return DATA_DIR / DATASETS[name]


def trace_dataset_path(name: str) -> Path:
    return DATA_DIR / TRACE_DATASETS[name][0]


@cache
def read_column(path: str, column: str) -> np.ndarray:
    """A CSV column of positive integers (up to ``MAX_TOKENS``), in file order; a bad value
    names its line, and a file that cannot be read as CSV names the file."""
    if Path(path).exists() and not Path(path).is_file():
        raise ConfigError("not a regular file (a folder, device or pipe)", source=path)
    try:
        header = pd.read_csv(path, nrows=0).columns
        if column not in header:
            raise ConfigError(
                f"no column '{column}'; columns: {', '.join(map(str, header))}", source=path
            )
        col = pd.read_csv(path, usecols=[column], dtype=str, keep_default_na=False)[column]
    except FileNotFoundError:
        raise ConfigError("file not found", source=path) from None
    except IsADirectoryError:
        raise ConfigError("is a folder, not a file", source=path) from None
    except pd.errors.EmptyDataError:
        raise ConfigError("empty file: expected a header line", source=path) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save the file as UTF-8",
            source=path,
        ) from None
    except (pd.errors.ParserError, ValueError, OSError, EOFError, zlib.error) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot read the file as CSV ({reason})", source=path) from None
    values = pd.to_numeric(col, errors="coerce")
    with np.errstate(invalid="ignore"):
        bad = values.isna() | (values <= 0) | (values > MAX_TOKENS) | (values != np.floor(values))
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # header is line 1
        raise ConfigError(
            f"column '{column}' must hold positive integers up to {MAX_TOKENS:,} "
            f"(got {col.iloc[line - 2]!r})",
            source=f"{path}:{line}",
        )
    if not len(values):
        raise ConfigError(
            f"no values in column '{column}': the file has a header only", source=path
        )
    return values.to_numpy(dtype=np.int64)
