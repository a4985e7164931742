"""``llmsim hardware``, ``llmsim models`` and ``llmsim presets``: the shipped hardware
profiles, model catalog and engine presets, as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Annotated, Any

import typer
from rich.table import Table

from llmsim.cli.common import print_table


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


FormatOpt = Annotated[
    Format,
    typer.Option(
        "--format", "-f", help="table (for reading), csv or json (every value, unrounded)."
    ),
]

Column = tuple[str, str, Callable[[Any], str], bool]
"""(record key, table header, how the table shows a value, right-justified)."""


def _g(v: Any) -> str:
    return "-" if v is None else f"{v:g}"


def _opt(v: Any) -> str:
    """An optional setting: '-' when the preset leaves it, yes/no for a flag."""
    if v is None:
        return "-"
    return ("yes" if v else "no") if isinstance(v, bool) else str(v)


def emit(title: str, columns: Sequence[Column], records: list[dict[str, Any]], fmt: Format) -> None:
    """Print ``records`` as a rich table, CSV or JSON on stdout. A table piped to a file or
    another program is printed at its full width: no value is cut or wrapped."""
    if fmt is Format.json:
        sys.stdout.write(json.dumps(records, indent=2) + "\n")
        return
    if fmt is Format.csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        sys.stdout.write(buf.getvalue())
        return
    t = Table(title=title)
    for i, (_, head, _, right) in enumerate(columns):
        t.add_column(head, justify="right" if right else "left", no_wrap=i == 0)
    for rec in records:
        t.add_row(*(show(rec[key]) for key, _, show, _ in columns))
    print_table(t)


def hardware(fmt: FormatOpt = Format.table) -> None:
    """List the hardware profiles.

    Example: llmsim hardware --format csv > gpus.csv
    """
    from llmsim.hardware import list_hardware

    records = [
        {
            "name": hw.name,
            "vendor": hw.vendor,
            "memory_gib": hw.memory_gib,
            "memory_bandwidth_tbps": hw.memory_bandwidth_tbps,
            "bf16_tflops": hw.peak_tflops.get("bf16", hw.peak_tflops.get("fp16")),
            "fp8_tflops": hw.peak_tflops.get("fp8"),
            "link": hw.interconnect.kind,
            "link_gbps": hw.interconnect.bandwidth_gbps,
            "price_per_gpu_hour_usd": hw.price_per_gpu_hour_usd,
            "source": "calibrated" if hw.calibrated else "datasheet",
        }
        for hw in list_hardware()
    ]
    columns: list[Column] = [
        ("name", "name", str, False),
        ("memory_gib", "memory GiB", _g, True),
        ("memory_bandwidth_tbps", "HBM TB/s", _g, True),
        ("bf16_tflops", "bf16 TFLOP/s", _g, True),
        ("fp8_tflops", "fp8 TFLOP/s", _g, True),
        ("link", "link", str, False),
        ("link_gbps", "link GB/s", _g, True),
        ("price_per_gpu_hour_usd", "$/GPU-h", lambda v: f"{v:.2f}", True),
        ("source", "source", str, False),
    ]
    emit("Hardware profiles", columns, records, fmt)


def models(fmt: FormatOpt = Format.table) -> None:
    """List the model catalog.

    Example: llmsim models --format json
    """
    from llmsim.models import list_models

    records = [
        {
            "name": m.name,
            "params_b": round(m.num_params / 1e9, 3),
            "active_params_b": round(m.num_active_params / 1e9, 3),
            "layers": m.num_layers,
            "hidden": m.hidden_size,
            "heads": m.num_heads,
            "kv_heads": m.num_kv_heads,
            "attention": m.attention,
            "moe": m.moe is not None,
            "kv_bytes_per_token": int(m.kv_bytes_per_token),
            "weights": m.weight_dtype,
        }
        for m in list_models()
    ]
    columns: list[Column] = [
        ("name", "name", str, False),
        ("params_b", "params B", lambda v: f"{v:.1f}", True),
        ("active_params_b", "active B", lambda v: f"{v:.1f}", True),
        ("layers", "layers", str, True),
        ("hidden", "hidden", str, True),
        ("heads", "heads", str, True),
        ("kv_heads", "kv heads", str, True),
        ("attention", "attention", str.upper, False),
        ("moe", "MoE", lambda v: "yes" if v else "", False),
        ("kv_bytes_per_token", "KV KiB/token", lambda v: f"{v / 1024:g}", True),
        ("weights", "weights", str, False),
    ]
    emit("Model catalog", columns, records, fmt)


def presets(fmt: FormatOpt = Format.table) -> None:
    """List the engine presets a scenario names with engine.preset.

    Example: llmsim run scenarios/quickstart.yaml --set engine.preset=sglang
    """
    from llmsim.presets import list_presets

    records = [
        {
            "name": p.name,
            "aliases": " ".join(p.aliases),
            "engine": p.engine,
            "version": p.version,
            "block_size": p.block_size,
            "step_overhead_ms": p.host.step_overhead_ms,
            "seq_overhead_us": p.host.seq_overhead_us,
            "async_scheduling": p.async_scheduling,
            "max_num_seqs": p.policy.max_num_seqs,
            "max_num_batched_tokens": p.policy.max_num_batched_tokens,
            "chunked_prefill": p.policy.chunked_prefill,
            "prefix_caching": p.policy.prefix_caching,
            "description": p.description,
        }
        for p in list_presets()
    ]
    columns: list[Column] = [
        ("name", "name", str, False),
        ("aliases", "aliases", str, False),
        ("engine", "engine", str, False),
        ("version", "version", str, False),
        ("block_size", "block", str, True),
        ("step_overhead_ms", "host ms/step", _g, True),
        ("seq_overhead_us", "host us/seq", _g, True),
        ("async_scheduling", "async", _opt, False),
        ("max_num_seqs", "max seqs", _opt, True),
        ("max_num_batched_tokens", "token budget", _opt, True),
        ("chunked_prefill", "chunked", _opt, False),
        ("prefix_caching", "prefix cache", _opt, False),
    ]
    emit("Engine presets (engine.preset)", columns, records, fmt)
