"""Measuring a model's kernels with torch (``llmsim profile``, extra ``llmsim[profile]``).

For one model at a tensor-parallel degree it times: the GEMMs of one layer and the LM head
(per-GPU shapes) for each token count; an RMS norm and the MLP activation; causal prefill
attention (``torch.nn.functional.scaled_dot_product_attention``) for each length; decode
attention (one query over a KV cache) for each batch size and context; and, with ``--gpus``
above 1, all-reduce over that many processes (NCCL on CUDA, Gloo on CPU). Each shape runs a few
times untimed, then ``repeats`` timed runs; the median is kept. The result is the llmsim
operator CSV, with the device, torch version and date as comment lines.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from llmsim.atomic import atomic_write_text
from llmsim.calibration.llmsim_csv import operator_csv_text
from llmsim.errors import ConfigError
from llmsim.models import ModelSpec, get_model

WARMUP = 2
ALL_REDUCE_BYTES = (2**12, 2**16, 2**20, 2**24)


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) <= 0:
        raise ConfigError(
            f"expected comma-separated positive integers, got {text!r}", field=f"--{option}"
        )
    return values


@dataclass(frozen=True)
class ProfileSpec:
    """What to measure."""

    model: ModelSpec
    tp: int
    device: str
    tokens: tuple[int, ...]
    contexts: tuple[int, ...]
    batches: tuple[int, ...]
    gpus: int = 1
    repeats: int = 10

    @staticmethod
    def parse(
        model: str,
        *,
        tp: int,
        device: str,
        tokens: str,
        contexts: str,
        batches: str,
        gpus: int,
        repeats: int,
    ) -> ProfileSpec:
        return ProfileSpec(
            get_model(model, field="model"),
            tp,
            device,
            _ints(tokens, "tokens"),
            _ints(contexts, "contexts"),
            _ints(batches, "batches"),
            gpus,
            repeats,
        )


def import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ConfigError(
            "llmsim profile needs torch: pip install 'llmsim[profile]'", field="profile"
        ) from None
    return torch


def _timer(torch: Any, device: str, repeats: int) -> Callable[[Callable[[], object]], float]:
    cuda = device.startswith("cuda")

    def measure(fn: Callable[[], object]) -> float:
        for _ in range(WARMUP):
            fn()
        times = []
        for _ in range(repeats):
            if cuda:
                start, end = (
                    torch.cuda.Event(enable_timing=True),
                    torch.cuda.Event(enable_timing=True),
                )
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) * 1e-3)
            else:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        return float(statistics.median(times))

    return measure


def _gemm_shapes(m: ModelSpec, tp: int) -> list[tuple[str, int, int]]:
    h = m.hidden_size
    out_width = m.num_heads * m.head_dim
    qkv = -(-(m.attention_params() - out_width * h) // (h * tp))
    f = -(-m.ffn_size // tp)
    return [
        ("qkv", qkv, h),
        ("out", h, -(-out_width // tp)),
        ("up", (2 if m.gated_mlp else 1) * f, h),
        ("down", h, f),
        ("lm_head", -(-m.vocab_size // tp), h),
    ]


def _sdpa(torch: Any, q: Any, k: Any, v: Any, causal: bool) -> Any:
    if k.shape[1] != q.shape[1]:
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)


def _rms_norm(torch: Any, x: Any) -> Any:
    return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(x.dtype)


def _silu_mul(torch: Any, g: Any, f: int) -> Any:
    return torch.nn.functional.silu(g[:, :f]) * g[:, f:]


def measure_kernels(
    spec: ProfileSpec, progress: Callable[[str], None] | None = None
) -> list[dict[str, object]]:
    """Rows of the operator CSV for every GEMM, elementwise and attention shape;
    ``progress`` is told each group of shapes as it starts."""
    say = progress or (lambda _: None)
    torch = import_torch()
    dev, dt = torch.device(spec.device), torch.bfloat16
    timed = _timer(torch, spec.device, spec.repeats)
    m, tp = spec.model, spec.tp
    rows: list[dict[str, object]] = []
    with torch.inference_mode():
        for name, n, k in _gemm_shapes(m, tp):
            say(f"GEMM {name} ({n} x {k})")
            w = torch.randn(k, n, device=dev, dtype=dt)
            for t in spec.tokens:
                a = torch.randn(t, k, device=dev, dtype=dt)
                sec = timed(partial(torch.matmul, a, w))
                rows.append(
                    {
                        "family": "gemm",
                        "model": m.name,
                        "dtype": "bf16",
                        "m": t,
                        "n": n,
                        "k": k,
                        "tp": tp,
                        "time_ms": sec * 1e3,
                    }
                )
        h, f = m.hidden_size, -(-m.ffn_size // tp)
        say("norm and activation")
        for t in spec.tokens:
            x = torch.randn(t, h, device=dev, dtype=dt)
            sec = timed(partial(_rms_norm, torch, x))
            rows.append(
                {
                    "family": "elementwise",
                    "op": "norm",
                    "model": m.name,
                    "bytes": 2 * t * h * 2,
                    "tp": tp,
                    "time_ms": sec * 1e3,
                }
            )
            g = torch.randn(t, 2 * f, device=dev, dtype=dt)
            sec = timed(partial(_silu_mul, torch, g, f))
            rows.append(
                {
                    "family": "elementwise",
                    "op": "activation",
                    "model": m.name,
                    "bytes": 3 * t * f * 2,
                    "tp": tp,
                    "time_ms": sec * 1e3,
                }
            )
        heads = max(1, m.num_heads // tp)
        kvh = max(1, -(-m.num_kv_heads // tp))
        hd = m.head_dim
        shape = {"model": m.name, "heads": heads, "kv_heads": kvh, "head_dim": hd, "tp": tp}
        say("prefill attention")
        for t in spec.tokens:
            q = torch.randn(1, heads, t, hd, device=dev, dtype=dt)
            kv = torch.randn(1, kvh, t, hd, device=dev, dtype=dt)
            sec = timed(partial(_sdpa, torch, q, kv, kv, True))
            rows.append(
                {
                    "family": "prefill_attention",
                    "batch": 1,
                    "seq_len": t,
                    "time_ms": sec * 1e3,
                    **shape,
                }
            )
        say("decode attention")
        for b in spec.batches:
            for c in spec.contexts:
                q = torch.randn(b, heads, 1, hd, device=dev, dtype=dt)
                kv = torch.randn(b, kvh, c, hd, device=dev, dtype=dt)
                sec = timed(partial(_sdpa, torch, q, kv, kv, False))
                rows.append(
                    {
                        "family": "decode_attention",
                        "batch": b,
                        "seq_len": c,
                        "time_ms": sec * 1e3,
                        **shape,
                    }
                )
    return rows


def _all_reduce_worker(
    rank: int, world: int, init: str, device: str, repeats: int, result: str
) -> None:
    torch = import_torch()
    cuda = device.startswith("cuda")
    torch.distributed.init_process_group(
        "nccl" if cuda else "gloo", init_method=init, rank=rank, world_size=world
    )
    dev = torch.device(f"cuda:{rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(dev)
    timed = _timer(torch, str(dev), repeats)
    lines = []
    for nbytes in ALL_REDUCE_BYTES:
        x = torch.ones(nbytes // 2, device=dev, dtype=torch.bfloat16)
        sec = timed(partial(torch.distributed.all_reduce, x))
        lines.append(f"all_reduce,{nbytes},{sec * 1e3:.6g}")
    # Point to point, as between pipeline stages: rank 0 sends, rank 1 receives, both call
    # the timed function equally often; the others wait.
    for nbytes in ALL_REDUCE_BYTES:
        x = torch.ones(nbytes // 2, device=dev, dtype=torch.bfloat16)
        if rank < 2:
            op = torch.distributed.send if rank == 0 else torch.distributed.recv
            sec = timed(partial(_transfer, torch, op, x, 1 - rank, cuda))
            lines.append(f"send_recv,{nbytes},{sec * 1e3:.6g}")
        torch.distributed.barrier()
    torch.distributed.barrier()
    if rank == 0:
        Path(result).write_text("\n".join(lines), encoding="utf-8")
    torch.distributed.destroy_process_group()


def _transfer(torch: Any, op: Callable[..., object], x: Any, peer: int, cuda: bool) -> None:
    op(x, peer)
    if cuda:
        torch.cuda.synchronize()


def measure_all_reduce(spec: ProfileSpec) -> list[dict[str, object]]:
    """All-reduce rows over ``spec.gpus`` processes, and send/recv rows between two of them
    (none when ``gpus`` is 1)."""
    if spec.gpus < 2:
        return []
    torch = import_torch()
    if spec.device.startswith("cuda") and torch.cuda.device_count() < spec.gpus:
        raise ConfigError(
            f"--gpus {spec.gpus} needs {spec.gpus} CUDA devices, found {torch.cuda.device_count()}",
            field="--gpus",
        )
    with tempfile.TemporaryDirectory() as tmp:
        init = "file://" + os.path.join(tmp, "rendezvous")
        result = os.path.join(tmp, "result.csv")
        torch.multiprocessing.spawn(
            _all_reduce_worker,
            args=(spec.gpus, init, spec.device, spec.repeats, result),
            nprocs=spec.gpus,
            join=True,
        )
        lines = [ln.split(",") for ln in Path(result).read_text(encoding="utf-8").splitlines()]
    return [
        {
            "family": family,
            "op": "intra-node" if family == "send_recv" else "",
            "bytes": int(b),
            "gpus": spec.gpus if family == "all_reduce" else 2,
            "time_ms": float(t),
        }
        for family, b, t in lines
    ]


def provenance(spec: ProfileSpec) -> list[str]:
    torch = import_torch()
    if spec.device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(spec.device))
        device = f"{props.name}, CUDA {torch.version.cuda}"
    else:
        device = f"CPU {platform.processor() or platform.machine()}"
    return [
        f"llmsim profile: {spec.model.name}, TP {spec.tp}",
        f"device: {device}; torch {torch.__version__}",
        f"date: {_dt.date.today().isoformat()}",
    ]


def run_profile(spec: ProfileSpec, out: Path, progress: Callable[[str], None] | None = None) -> int:
    """Measure and write the CSV atomically; returns the number of rows. ``progress`` is told
    each group of shapes as it starts."""
    rows = measure_kernels(spec, progress)
    if spec.gpus > 1 and progress is not None:
        progress(f"all-reduce and send/recv over {spec.gpus} processes")
    rows += measure_all_reduce(spec)
    atomic_write_text(out, operator_csv_text(rows, provenance(spec)))
    return len(rows)
