"""Trace replay settings: which file, which format, how its columns map, what to keep."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmsim.limits import MAX_COUNT, MAX_SECONDS, MAX_TIME_SCALE, MAX_TOKENS
from llmsim.workload.datasets import TRACE_DATASETS, trace_dataset_path

TraceFormat = Literal["azure", "mooncake", "burstgpt", "csv", "jsonl"]
TimeUnit = Literal["s", "ms", "us", "ns", "datetime"]

FIELDS = (
    "timestamp",
    "prompt_tokens",
    "output_tokens",
    "session_id",
    "request_class",
    "priority",
    "hash_ids",
)
"""What a trace row can carry, in the order problems in a row are reported."""

REQUIRED = ("timestamp", "prompt_tokens", "output_tokens")


class TraceColumns(BaseModel):
    """Names of the trace's columns (CSV header names, or JSON keys) for each request field.

    Left out (or ``null``), a field takes its format's column (see ``PRESETS``); an empty
    string ignores a column the format would read.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    timestamp: str | None = None
    prompt_tokens: str | None = None
    output_tokens: str | None = None
    session_id: str | None = Field(default=None, description="Conversation id (any string).")
    request_class: str | None = Field(default=None, description="A tag, e.g. 'batch'.")
    priority: str | None = Field(default=None, description="Integer, lower served first.")
    hash_ids: str | None = Field(
        default=None, description="Prefix block ids: a JSON list, or integers in one CSV field."
    )


@dataclass(frozen=True)
class Preset:
    """How one trace format is laid out."""

    reader: Literal["csv", "jsonl"]
    columns: dict[str, str]
    time_unit: TimeUnit
    optional: frozenset[str] = frozenset()
    """Fields read only when the file has the column."""
    hash_block_size: int | None = None


PRESETS: dict[str, Preset] = {
    # Azure LLM inference traces, 2023 and 2024: TIMESTAMP, ContextTokens, GeneratedTokens.
    "azure": Preset(
        "csv",
        {
            "timestamp": "TIMESTAMP",
            "prompt_tokens": "ContextTokens",
            "output_tokens": "GeneratedTokens",
        },
        "datetime",
    ),
    # Mooncake (Kimi) JSONL: timestamp (ms), input_length, output_length, hash_ids (512 tokens).
    "mooncake": Preset(
        "jsonl",
        {
            "timestamp": "timestamp",
            "prompt_tokens": "input_length",
            "output_tokens": "output_length",
            "hash_ids": "hash_ids",
        },
        "ms",
        hash_block_size=512,
    ),
    # BurstGPT: Timestamp (s), Model, Request tokens, Response tokens, Total tokens, Log Type;
    # later releases add Session ID and Elapsed time.
    "burstgpt": Preset(
        "csv",
        {
            "timestamp": "Timestamp",
            "prompt_tokens": "Request tokens",
            "output_tokens": "Response tokens",
            "session_id": "Session ID",
        },
        "s",
        optional=frozenset({"session_id"}),
    ),
    "csv": Preset(
        "csv",
        {
            "timestamp": "timestamp",
            "prompt_tokens": "prompt_tokens",
            "output_tokens": "output_tokens",
        },
        "s",
    ),
    "jsonl": Preset(
        "jsonl",
        {
            "timestamp": "timestamp",
            "prompt_tokens": "prompt_tokens",
            "output_tokens": "output_tokens",
        },
        "s",
    ),
}


class TraceConfig(BaseModel):
    """Workload section ``trace``: replay a recorded trace instead of drawing arrivals.

    Times are measured from the first row's timestamp; rows must be in time order. The
    replay keeps rows whose time falls in ``[start_s, end_s)``, keeps each with probability
    ``sample``, stops after ``max_requests``, and divides times (from ``start_s``) by
    ``time_scale``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    format: TraceFormat | None = Field(default=None, description="Implied by a dataset.")
    path: str | None = Field(default=None, description="A trace file (.gz is read as gzip).")
    dataset: str | None = Field(
        default=None, description=f"A shipped excerpt: {', '.join(TRACE_DATASETS)}."
    )
    columns: TraceColumns = Field(default_factory=TraceColumns)
    time_unit: TimeUnit | None = Field(default=None, description="Default: the format's.")
    time_scale: float = Field(
        default=1.0, gt=0, le=MAX_TIME_SCALE, description="Replay k times faster."
    )
    start_s: float = Field(
        default=0.0, ge=0, le=MAX_SECONDS, description="Window start, trace seconds."
    )
    end_s: float | None = Field(
        default=None, gt=0, le=MAX_SECONDS, description="Window end, trace seconds."
    )
    sample: float = Field(default=1.0, gt=0, le=1, description="Fraction of rows kept.")
    max_requests: int | None = Field(
        default=None, gt=0, le=MAX_COUNT, description="Stop after this many."
    )
    skip_bad_rows: bool = Field(default=False, description="Skip and count invalid rows.")
    hash_block_size: int | None = Field(
        default=None,
        gt=0,
        le=MAX_TOKENS,
        description="Tokens per hash block; default: the format's.",
    )
    delimiter: str = Field(default=",", min_length=1, max_length=1, description="CSV only.")

    @model_validator(mode="after")
    def _consistent(self) -> TraceConfig:
        if (self.path is None) == (self.dataset is None):
            raise ValueError("give exactly one of 'path' or 'dataset'")
        if self.dataset is not None:
            if self.dataset not in TRACE_DATASETS:
                raise ValueError(
                    f"unknown dataset '{self.dataset}'; valid: {', '.join(TRACE_DATASETS)}"
                )
            fmt = TRACE_DATASETS[self.dataset][1]
            if self.format is not None and self.format != fmt:
                raise ValueError(
                    f"dataset '{self.dataset}' is in format '{fmt}', not '{self.format}'"
                )
        elif self.format is None:
            raise ValueError(f"a trace path needs a format; valid: {', '.join(PRESETS)}")
        missing = [f for f in REQUIRED if f not in self.column_map()]
        if missing:
            raise ValueError(f"columns.{missing[0]} cannot be empty: every request needs it")
        if self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must be > start_s ({self.start_s})")
        if self.uses("hash_ids") and self.block_size is None:
            raise ValueError("reading hash_ids needs hash_block_size (tokens per block)")
        return self

    @property
    def trace_format(self) -> str:
        if self.dataset is not None:
            return TRACE_DATASETS[self.dataset][1]
        assert self.format is not None
        return self.format

    @property
    def preset(self) -> Preset:
        return PRESETS[self.trace_format]

    @property
    def file(self) -> str:
        return str(trace_dataset_path(self.dataset)) if self.dataset else str(self.path)

    @property
    def unit(self) -> TimeUnit:
        return self.time_unit or self.preset.time_unit

    @property
    def block_size(self) -> int | None:
        return self.hash_block_size or self.preset.hash_block_size

    def column_map(self) -> dict[str, str]:
        """Field -> column for every field to read (the format's, overridden by ``columns``)."""
        out = dict(self.preset.columns)
        for name in FIELDS:
            value = getattr(self.columns, name)
            if value == "":
                out.pop(name, None)
            elif value is not None:
                out[name] = value
        return out

    def uses(self, field: str) -> bool:
        return field in self.column_map()

    def optional(self, field: str) -> bool:
        """A field read only if the file has it (a format default the user did not set)."""
        return field in self.preset.optional and getattr(self.columns, field) is None
