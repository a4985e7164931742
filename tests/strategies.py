"""Hypothesis strategies of random valid scenarios, small enough to run in milliseconds.

``scenarios()`` draws any catalog model on any GPU it fits at some tensor-parallel degree, every
policy kind (static, dynamic, continuous with its schedules, admission, preemption, prefix
caching and KV layouts, speculative decoding), engine presets and pipeline settings, every
open-loop arrival kind, load stages, closed-loop clients, sessions, shared-prefix pools, trace
excerpts, request classes, and clusters (pools, heterogeneous fleets, pipeline stages, routers,
disaggregated prefill and decode, data parallel). Runs stay small: a few dozen requests of short
prompts and outputs, a constant-time or roofline cost model (now and then the calibrated one),
KV caches sized in blocks, often small enough to preempt.
"""

from __future__ import annotations

from functools import cache
from typing import Any, get_args

from hypothesis import strategies as st

from llmsim.cluster import RouterKind
from llmsim.hardware import list_hardware
from llmsim.kv_cache import blocks_for
from llmsim.models import ModelSpec, list_models

Draw = Any  # hypothesis's draw function
ROUTERS = get_args(RouterKind)
PRESETS = (None, None, "vllm-v1", "vllm-0.6", "sglang", "tensorrt-llm")


@cache
def deployments() -> tuple[tuple[str, str, int], ...]:
    """(model, GPU, smallest tensor_parallel) at which the weights take under half of each GPU."""
    out = []
    for m in list_models():
        for hw in list_hardware():
            tp = next(
                (t for t in (1, 2, 4, 8) if m.weight_bytes / t <= 0.45 * hw.memory_bytes), None
            )
            if tp is not None and tp <= hw.max_gpus_per_node:
                out.append((m.name, hw.name, tp))
    return tuple(out)


@cache
def _calibrated(hardware: str) -> bool:
    return any(hw.name == hardware and hw.calibration is not None for hw in list_hardware())


@cache
def _models() -> dict[str, ModelSpec]:
    return {m.name: m for m in list_models()}


@cache
def drafts() -> dict[str, tuple[str, ...]]:
    """Catalog models usable as a draft of each target (smaller, same vocabulary)."""
    models = _models().values()
    return {
        t.name: tuple(
            d.name
            for d in models
            if d.vocab_size == t.vocab_size and d.num_params < 0.5 * t.num_params
        )
        for t in models
    }


def lengths(draw: Draw, hi: int) -> dict[str, Any]:
    """A small length distribution with values in [1, hi]."""
    kind = draw(st.sampled_from(("fixed", "uniform", "lognormal", "target")))
    if kind == "fixed":
        return {"kind": "fixed", "value": draw(st.integers(1, hi))}
    if kind == "target":
        early = draw(st.sampled_from((0.0, 0.3)))
        return {"kind": "target", "value": draw(st.integers(1, hi)), "early_fraction": early}
    if kind == "uniform":
        low = draw(st.integers(1, hi))
        return {"kind": "uniform", "low": low, "high": draw(st.integers(low, hi))}
    mean = draw(st.integers(1, hi))
    return {
        "kind": "lognormal",
        "mean": float(mean),
        "cv": draw(st.sampled_from((0.2, 1.0, 2.0))),
        "max": draw(st.integers(mean, hi)),
    }


def fixed(draw: Draw, hi: float) -> dict[str, Any]:
    return {"kind": "fixed", "value": draw(st.sampled_from((0.0, hi / 10, hi)))}


def arrival(draw: Draw) -> tuple[dict[str, Any], str]:
    """An arrival process and how the request count is given: 'n', 'duration' or 'stages'."""
    rate = draw(st.sampled_from((0.5, 5.0, 50.0, 1000.0)))
    kind = draw(
        st.sampled_from(
            (
                "poisson",
                "gamma",
                "constant",
                "batch",
                "stages",
                "closed_loop",
                "onoff",
                "diurnal",
                "piecewise",
            )
        )
    )
    if kind in ("poisson", "constant"):
        return {"kind": kind, "rate": rate}, draw(st.sampled_from(("n", "duration")))
    if kind == "gamma":
        return {"kind": "gamma", "rate": rate, "cv": draw(st.sampled_from((0.3, 1.0, 3.0)))}, "n"
    if kind == "batch":
        return {"kind": "batch"}, "n"
    if kind == "onoff":
        return {"kind": "onoff", "rate": rate, "on_s": 0.2, "off_s": 0.3}, "n"
    if kind == "piecewise":
        quiet = {"duration_s": 0.3, "rate": 0.0}
        return {"kind": "piecewise", "schedule": [quiet, {"duration_s": 0.2, "rate": rate}]}, "n"
    if kind == "diurnal":
        return {"kind": "diurnal", "rate": rate, "period_s": 2.0, "amplitude": 0.9}, "n"
    if kind == "stages":
        stages = [
            {
                "rate": draw(st.sampled_from((2.0, 20.0))),
                "duration_s": draw(st.sampled_from((0.2, 0.5))),
            }
            for _ in range(draw(st.integers(1, 3)))
        ]
        return {
            "kind": "stages",
            "stages": stages,
            "drain": draw(st.booleans()),
            "spacing": draw(st.sampled_from(("poisson", "constant"))),
        }, "stages"
    return {
        "kind": "closed_loop",
        "clients": draw(st.integers(1, 6)),
        "think_time": fixed(draw, 0.05),
        "ramp_up_s": draw(st.sampled_from((0.0, 0.1))),
        "jitter": draw(
            st.sampled_from(
                ({"kind": "fixed", "value": 0.0}, {"kind": "exponential", "mean": 0.002})
            )
        ),
    }, "n"


def trace(draw: Draw) -> dict[str, Any]:
    """A few requests of a shipped trace excerpt (lengths as recorded: long ones are refused)."""
    return {
        "trace": {
            "dataset": draw(st.sampled_from(("azure_conv", "azure_code", "mooncake_conversation"))),
            "max_requests": draw(st.integers(1, 12)),
            "time_scale": draw(st.sampled_from((1.0, 10.0))),
            "sample": draw(st.sampled_from((1.0, 0.5))),
        }
    }


def workload(draw: Draw, max_len: int, most: int) -> dict[str, Any]:
    if draw(st.integers(0, 15)) == 0:
        return trace(draw)
    arr, count = arrival(draw)
    wl: dict[str, Any] = {"arrival": arr}
    prompt_hi = draw(st.sampled_from((8, 64, 300, max_len)))
    out_hi = draw(st.sampled_from((1, 8, 40)))
    source = draw(st.sampled_from(("plain", "plain", "sessions", "shared_prefix")))
    if source == "sessions" and count != "stages":
        wl["sessions"] = {
            "turns": {"kind": "uniform", "low": 1, "high": 3},
            "system_prompt_tokens": draw(st.sampled_from((0, 40))),
            "hash_block_size": draw(st.sampled_from((8, 16))),
            "max_context_tokens": max_len,
        }
        if arr["kind"] != "closed_loop":
            wl["sessions"]["think_time"] = fixed(draw, 0.2)
            if arr["kind"] == "batch":
                arr.clear()
                arr.update({"kind": "poisson", "rate": 20.0})
    if source == "shared_prefix":
        wl["shared_prefix"] = {
            "groups": draw(st.integers(1, 3)),
            "prompts_per_group": draw(st.integers(1, 3)),
            "system_prompt_tokens": draw(st.sampled_from((0, 32, 100))),
            "question_tokens": draw(st.integers(1, 60)),
            "hash_block_size": draw(st.sampled_from((8, 16))),
        }
    else:
        wl["prompt_tokens"] = lengths(draw, prompt_hi)
    wl["output_tokens"] = lengths(draw, out_hi)
    if count == "n":
        wl["num_requests"] = draw(st.integers(1, most))
    elif count == "duration":
        wl["duration_s"] = min(draw(st.sampled_from((0.5, 2.0))), most / arr["rate"])
    if draw(st.booleans()):
        cut = draw(st.integers(1, 200))
        wl["classes"] = [
            {"name": "short", "priority": 0, "max_prompt_tokens": cut},
            {"name": "long", "priority": 1},
        ]
    return wl


def continuous(draw: Draw, speculative: bool, target: str) -> dict[str, Any]:
    seqs = draw(st.integers(1, 32))
    pol: dict[str, Any] = {
        "kind": "speculative" if speculative else "continuous",
        "max_num_seqs": "derive" if draw(st.integers(0, 7)) == 0 else seqs,
        "max_num_batched_tokens": draw(st.integers(max(seqs, 16), 1024)),
        "admission": draw(st.sampled_from(("preempt", "preempt", "no_evict"))),
        "preemption": draw(st.sampled_from(("recompute", "swap"))),
        "swap_space_gib": draw(st.sampled_from((0.0, 1e-4, 4.0))),
        "watermark": draw(st.sampled_from((0.0, 0.01, 0.1))),
        "order": draw(st.sampled_from(("fcfs", "priority", "sjf"))),
        "kv_layout": draw(st.sampled_from(("paged", "paged", "contiguous"))),
    }
    if pol["kv_layout"] == "paged" and draw(st.booleans()):
        pol["prefix_caching"] = True
        pol["cpu_kv_offload_gib"] = draw(st.sampled_from((0.0, 0.001, 1.0)))
    if speculative:
        pol["draft_model"] = draw(st.sampled_from(drafts()[target]))
        pol["num_speculative_tokens"] = draw(st.integers(1, 5))
        pol["acceptance_rate"] = draw(st.sampled_from((0.0, 0.5, 1.0)))
        if draw(st.booleans()):
            pol["acceptance_concentration"] = 4.0
        return pol
    schedule = draw(st.sampled_from(("prefill_first", "chunked", "mixed")))
    pol["chunked_prefill"] = schedule == "chunked"
    pol["mixed_prefill"] = schedule == "mixed"
    steps = draw(st.sampled_from((1, 1, 2, 4)))
    pol["num_scheduler_steps"] = steps
    if schedule == "chunked" and steps == 1 and draw(st.booleans()):
        pol["long_prefill_token_threshold"] = draw(st.integers(1, pol["max_num_batched_tokens"]))
    return pol


def policy(draw: Draw, target: str, *, role: str = "mixed") -> dict[str, Any]:
    kinds = ["continuous", "continuous", "static", "dynamic"]
    if drafts()[target]:
        kinds.append("speculative")
    if role != "mixed":
        kinds = [k for k in kinds if k in ("continuous", "speculative")]
    kind = draw(st.sampled_from(kinds))
    if kind == "static":
        return {
            "kind": "static",
            "batch_size": draw(st.integers(1, 6)),
            "max_wait_s": draw(st.sampled_from((None, 0.01, 0.5))),
        }
    if kind == "dynamic":
        cap = draw(st.integers(1, 6))
        return {
            "kind": "dynamic",
            "max_batch_size": cap,
            "max_queue_delay_ms": draw(st.sampled_from((0.0, 5.0, 100.0))),
            "preferred_batch_sizes": draw(st.lists(st.integers(1, cap), max_size=2, unique=True)),
            "adaptive": draw(st.booleans()),
        }
    return continuous(draw, kind == "speculative", target)


def blocks_needed(pol: dict[str, Any], max_len: int, block_size: int) -> int:
    """The fewest KV blocks with which the policy can be built."""
    slot = blocks_for(max_len, block_size)
    if pol["kind"] == "static":
        return pol["batch_size"] * slot
    if pol["kind"] == "dynamic":
        return pol["max_batch_size"] * slot
    if pol.get("kv_layout") == "contiguous":  # a reservation beside the watermark
        return int(slot / (1 - pol.get("watermark", 0.0))) + 1
    return 1


def cost(draw: Draw, hardware: str) -> dict[str, Any]:
    if draw(st.integers(0, 9)) == 0 and _calibrated(hardware):
        return {"kind": "calibrated"}
    if draw(st.booleans()):
        return {"kind": "roofline"}
    return {
        "kind": "constant",
        "step_s": draw(st.sampled_from((0.001, 0.02))),
        "per_token_s": draw(st.sampled_from((0.0, 1e-5))),
    }


@st.composite
def scenarios(draw: Draw, most: int = 24) -> dict[str, Any]:
    """A random valid scenario, as the mapping a YAML file would hold, with at most about
    ``most`` requests."""
    model, hardware, tp = draw(st.sampled_from(deployments()))
    spec = _models()[model]
    max_len = min(spec.max_context, draw(st.sampled_from((64, 256, 1024, 2048))))
    block_size = draw(st.sampled_from((1, 8, 16, 32)))
    engine: dict[str, Any] = {
        "max_model_len": max_len,
        "block_size": block_size,
        "cost": cost(draw, hardware),
        "async_scheduling": draw(st.booleans()),
        "frontend_ms": draw(st.sampled_from((0.0, 0.0, 3.0))),
        "tokenize_us_per_token": draw(st.sampled_from((0.0, 0.0, 5.0))),
    }
    if preset := draw(st.sampled_from(PRESETS)):
        engine["preset"] = preset
    if draw(st.integers(0, 4)) == 0:
        engine["kv_cache_dtype"] = draw(st.sampled_from(("fp8", "bf16")))
    if draw(st.integers(0, 4)) == 0:
        engine["quantization"] = draw(st.sampled_from(("fp8", "int4")))
    data: dict[str, Any] = {
        "name": "random",
        "seed": draw(st.integers(0, 2**16)),
        "model": model,
        "hardware": hardware,
        "tensor_parallel": tp,
        "engine": engine,
        "workload": workload(draw, max_len, most),
    }
    shape = draw(st.sampled_from(("single", "single", "data_parallel", "pools", "disaggregated")))
    pol = policy(draw, model, role="prefill" if shape == "disaggregated" else "mixed")
    data["policy"] = pol
    policies = [pol]
    if shape == "data_parallel":
        data["data_parallel"] = draw(st.integers(2, 3))
    elif shape in ("pools", "disaggregated"):
        pools = []
        roles = (
            ["prefill", "decode"]
            if shape == "disaggregated"
            else ["mixed"] * draw(st.integers(1, 2))
        )
        for i, role in enumerate(roles):
            pool: dict[str, Any] = {
                "name": f"p{i}",
                "replicas": draw(st.integers(1, 2)),
                "role": role,
            }
            if draw(st.booleans()):
                pool["policy"] = policy(draw, model, role=role)
                policies.append(pool["policy"])
            if draw(st.booleans()):
                pool["engine"] = {"gpu_memory_utilization": draw(st.sampled_from((0.85, 0.93)))}
                if draw(st.booleans()):  # larger blocks: never more of them than the top level
                    sizes = [b for b in (8, 16, 32) if b >= block_size]
                    pool["engine"]["block_size"] = draw(st.sampled_from(sizes))
            if draw(st.integers(0, 3)) == 0:
                pool["pipeline_parallel"] = 2
            if role == "mixed" and i and draw(st.booleans()):
                # a pool of its own GPU type (one the model fits at the same TP)
                same = [h for m, h, t in deployments() if m == model and t <= tp]
                pool["hardware"] = draw(st.sampled_from(same))
            if role != "decode" and "classes" in data["workload"] and draw(st.booleans()):
                pool["classes"] = [draw(st.sampled_from(("short", "long")))]
            pools.append(pool)
        data["cluster"] = {
            "pools": pools,
            "router": {"kind": draw(st.sampled_from(ROUTERS))},
        }
        if shape == "disaggregated":
            data["cluster"]["kv_transfer"] = {
                "bandwidth_gbps": draw(st.sampled_from((1.0, 50.0))),
                "latency_ms": draw(st.sampled_from((0.0, 0.5))),
            }
    if draw(st.integers(0, 3)) == 0:
        data["metrics"] = {
            "warmup_s": draw(st.sampled_from((0.0, 0.05))),
            "cooldown_s": draw(st.sampled_from((0.0, 0.05))),
            "slo_ttft_ms": draw(st.sampled_from((None, 50.0))),
            "slo_tpot_ms": draw(st.sampled_from((None, 20.0))),
        }
    need = max(blocks_needed(p, max_len, block_size) for p in policies)
    if draw(st.integers(0, 4)):  # mostly a cache given in blocks, often a small one
        engine["kv_blocks"] = need + draw(st.sampled_from((0, 2, 20, 400)))
    return data
