"""``llmsim hardware`` and ``llmsim models``: the shipped hardware profiles and model catalog."""

from __future__ import annotations

from rich.table import Table

from llmsim.cli.common import out_console


def hardware() -> None:
    """List the hardware profiles."""
    from llmsim.hardware import list_hardware

    t = Table(title="Hardware profiles")
    profiles = list_hardware()
    # Names are what users type: never truncate them, even on a narrow or piped console.
    t.add_column("name", no_wrap=True, min_width=max(len(hw.name) for hw in profiles))
    for col, just in [
        ("memory GiB", "right"),
        ("HBM TB/s", "right"),
        ("bf16 TFLOP/s", "right"),
        ("fp8 TFLOP/s", "right"),
        ("link", "left"),
        ("$/GPU-h", "right"),
        ("source", "left"),
    ]:
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for hw in profiles:
        fp8 = hw.peak_tflops.get("fp8")
        t.add_row(
            hw.name,
            f"{hw.memory_gib:g}",
            f"{hw.memory_bandwidth_tbps:g}",
            f"{hw.peak_tflops.get('bf16', hw.peak_tflops.get('fp16', 0)):g}",
            f"{fp8:g}" if fp8 else "-",
            f"{hw.interconnect.kind} {hw.interconnect.bandwidth_gbps:g} GB/s",
            f"{hw.price_per_gpu_hour_usd:.2f}",
            "calibrated" if hw.calibrated else "datasheet",
        )
    out_console.print(t)


def models() -> None:
    """List the model catalog."""
    from llmsim.models import list_models

    t = Table(title="Model catalog")
    specs = list_models()
    t.add_column("name", no_wrap=True, min_width=max(len(m.name) for m in specs))
    for col, just in [
        ("params B", "right"),
        ("active B", "right"),
        ("layers", "right"),
        ("hidden", "right"),
        ("heads/kv", "right"),
        ("attention", "left"),
        ("KV KiB/token", "right"),
        ("weights", "left"),
    ]:
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for m in specs:
        t.add_row(
            m.name,
            f"{m.num_params / 1e9:.1f}",
            f"{m.num_active_params / 1e9:.1f}",
            str(m.num_layers),
            str(m.hidden_size),
            f"{m.num_heads}/{m.num_kv_heads}",
            m.attention.upper() + (" + MoE" if m.moe else ""),
            f"{m.kv_bytes_per_token / 1024:g}",
            m.weight_dtype,
        )
    out_console.print(t)
