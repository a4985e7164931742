"""KV cache dtype and weight quantisation as scenario fields (``engine.kv_cache_dtype``,
``engine.quantization``): KV capacity, weight memory, step times, and fp8 on GPUs without fp8
tensor cores."""

from __future__ import annotations

import numpy as np
import pytest

import llmsim
from llmsim.cost import BatchShape, CalibratedConfig, RooflineConfig
from llmsim.cost.base import gemm_dtype
from llmsim.errors import ConfigError
from llmsim.hardware import GiB, get_hardware
from llmsim.kv_cache import kv_budget
from llmsim.models import get_model
from llmsim.replica import build_replica
from tests.conftest import make_scenario

COSTS = [RooflineConfig(), CalibratedConfig()]


def budget(model: llmsim.ModelSpec, hw: str = "H100-SXM", tp: int = 1) -> object:
    return kv_budget(
        model,
        get_hardware(hw),
        tp,
        gpu_memory_utilization=0.9,
        block_size=16,
        max_batched_tokens=8192,
        max_seqs=256,
    )


# --- the model as served ---------------------------------------------------------------------


def test_with_dtypes_maps_vllm_names_and_auto_keeps_the_model():
    m = get_model("Llama-3.1-8B")
    assert m.with_dtypes() is m
    for name in ("fp8", "fp8_e4m3", "fp8_e5m2"):
        assert m.with_dtypes(kv_cache_dtype=name).kv_dtype == "fp8"
    assert m.with_dtypes(quantization="int4").weight_dtype == "int4"
    assert m.with_dtypes(quantization="int4").kv_dtype == "bf16"


# --- KV capacity: hand-worked ----------------------------------------------------------------


def test_fp8_kv_doubles_the_blocks_llama31_8b_h100():
    """H100-SXM 79.6 GiB x 0.9 = 76,922,864,271 B usable; weights 8,029,995,008 x 2 B =
    16,059,990,016; activations 8,192 tokens x (4 x 4,096 + 6,144 + 2 x 14,336) x 2 B +
    256 x 128,256 x 4 B of logits = 970,194,944; runtime 1 GiB. KV room 58,818,937,487 B.
    bf16 KV: 32 layers x 2 x 8 heads x 128 x 2 B = 131,072 B a token, 2,097,152 a 16-token
    block -> 28,047 blocks. fp8 KV: 65,536 B a token -> 56,094 blocks."""
    m = get_model("Llama-3.1-8B")
    room = 79.6 * GiB * 0.9 - 16_059_990_016 - 970_194_944 - GiB
    assert room == pytest.approx(58_818_937_487, abs=1)
    bf16, fp8 = budget(m), budget(m.with_dtypes(kv_cache_dtype="fp8"))
    assert (bf16.kv_bytes_per_token, bf16.num_blocks) == (131_072, 28_047)
    assert (fp8.kv_bytes_per_token, fp8.num_blocks) == (65_536, 56_094)
    assert fp8.weights == bf16.weights


def test_fp8_weights_halve_the_weight_memory_and_grow_the_kv_cache():
    m = get_model("Llama-3.1-8B")
    bf16, fp8 = budget(m), budget(m.with_dtypes(quantization="fp8"))
    assert fp8.weights == 8_029_995_008  # one byte a parameter
    # the 8,029,995,008 bytes saved go to the KV cache: 3,828 more 2 MiB blocks
    assert fp8.num_blocks == int((bf16.kv_bytes + 8_029_995_008) // 2_097_152) == 31_876


def test_scenario_fields_reach_the_replica():
    base = build_replica(make_scenario())
    fp8kv = build_replica(make_scenario(engine=llmsim.EngineConfig(kv_cache_dtype="fp8")))
    w8 = build_replica(make_scenario(engine=llmsim.EngineConfig(quantization="fp8")))
    assert fp8kv.kv.kv_bytes_per_token == base.kv.kv_bytes_per_token / 2
    assert fp8kv.kv.num_blocks >= 2 * base.kv.num_blocks - 1
    assert fp8kv.model.kv_dtype == "fp8" and w8.model.weight_dtype == "fp8"
    assert w8.kv.weights == base.kv.weights / 2
    # the policy's KV block size (swap traffic) follows the cache type too
    assert fp8kv.policy.pool.total == fp8kv.kv.num_blocks  # type: ignore[attr-defined]
    # decode reads half the KV bytes: at long context the fp8-KV step is shorter
    ctx = 64 * 4096
    assert fp8kv.cost.decode_step_time(64, ctx) < base.cost.decode_step_time(64, ctx)
    # fp8 weights on an H100 compute in fp8: a long prefill is faster
    shape = BatchShape.prefill([(4096, 0)])
    assert w8.cost.step_time(shape) < 0.8 * base.cost.step_time(shape)


def test_presets_default_to_auto_and_explicit_fields_win():
    for preset in ("vllm-v1", "sglang", "tensorrt-llm", "vllm-0.6"):
        eng = llmsim.EngineConfig(preset=preset)
        assert (eng.kv_cache_dtype, eng.quantization) == ("auto", "auto")
    eng = llmsim.EngineConfig(preset="vllm-v1", kv_cache_dtype="fp8", quantization="int4")
    assert (eng.kv_cache_dtype, eng.quantization) == ("fp8", "int4")


def test_pool_engine_overrides_apply_per_pool():
    sc = make_scenario(
        engine=llmsim.EngineConfig(preset="vllm-v1", max_model_len=8192),
        cluster={
            "pools": [
                {"name": "a", "replicas": 1},
                {"name": "b", "replicas": 1, "engine": {"kv_cache_dtype": "fp8"}},
            ]
        },
    )
    a, b = (build_replica(sc, s.index, spec=s) for s in sc.replica_specs())
    assert a.model.kv_dtype == "bf16" and b.model.kv_dtype == "fp8"
    assert b.kv.kv_bytes_per_token == a.kv.kv_bytes_per_token / 2


def test_disaggregated_transfer_ships_the_prefill_pools_kv_bytes():
    workload = llmsim.WorkloadConfig(
        arrival=llmsim.PoissonArrivals(rate=0.5),
        prompt_tokens=llmsim.FixedLength(value=1000),
        output_tokens=llmsim.FixedLength(value=4),
        num_requests=5,
    )
    link = {"bandwidth_gbps": 1.0, "latency_ms": 0.0}
    ttft = {}
    for kv in ("auto", "fp8"):
        engine = llmsim.EngineConfig(
            cost=llmsim.ConstantConfig(step_s=0.01), max_model_len=8192, kv_cache_dtype=kv
        )
        cluster = {
            "pools": [{"name": "p", "role": "prefill"}, {"name": "d", "role": "decode"}],
            "kv_transfer": link,
        }
        res = llmsim.simulate(make_scenario(workload=workload, engine=engine, cluster=cluster))
        ttft[kv] = res.requests["ttft"].to_numpy()
    # 1,000 tokens x 131,072 B over 1 GB/s = 131.072 ms in bf16, half of it in fp8
    np.testing.assert_allclose(ttft["auto"] - ttft["fp8"], 0.065536, atol=1e-9)


@pytest.mark.parametrize(
    "field, value, valid", [("kv_cache_dtype", "fp7", "fp8_e4m3"), ("quantization", "int3", "int4")]
)
def test_bad_values_name_the_file_field_value_and_the_choices(field, value, valid):
    with pytest.raises(ConfigError) as info:
        llmsim.Scenario.from_yaml(
            f"model: Llama-3.1-8B\nhardware: H100-SXM\nengine: {{{field}: {value}}}\n"
            "workload: {arrival: {kind: poisson, rate: 1}, num_requests: 1}\n",
            source="s.yaml",
        )
    msg = str(info.value)
    assert "s.yaml" in msg and f"engine.{field}" in msg and value in msg and valid in msg
    assert "\n" not in msg


# --- fp8 without fp8 tensor cores ------------------------------------------------------------


@pytest.mark.parametrize("cfg", COSTS, ids=lambda c: c.kind)
def test_fp8_on_a100_is_weight_only_and_never_faster_compute_bound(cfg):
    """Regression: a 4,096-token prefill of Llama-3.1-8B on A100 was priced at the int8 peak
    in fp8 (162 ms roofline, 166 ms calibrated, against 293 and 275 ms in bf16). Ampere has no
    fp8 tensor cores: fp8 weights are dequantised and multiplied in bf16."""
    hw = get_hardware("A100-80GB")
    m = get_model("Llama-3.1-8B")
    fp8 = m.with_dtypes(quantization="fp8")
    assert gemm_dtype(fp8, hw, None) == "bf16"
    bf16_cost, fp8_cost = cfg.build(m, hw, 1), cfg.build(fp8, hw, 1)
    chunk = BatchShape.prefill([(4096, 0)], sampled=0)  # every GEMM compute-bound
    # (the calibrated GEMM blends its compute and memory times smoothly: fewer weight bytes
    # shave a millionth off a compute-bound GEMM)
    assert fp8_cost.step_time(chunk) >= bf16_cost.step_time(chunk) * (1 - 1e-5)
    # with the LM head's one row (memory-bound: fp8 weights read faster) within 0.5 %
    full = BatchShape.prefill([(4096, 0)])
    assert fp8_cost.step_time(full) >= 0.995 * bf16_cost.step_time(full)
    # decode is weight-bandwidth bound: fp8 weights still help there
    assert fp8_cost.decode_step_time(8, 8 * 512) < bf16_cost.decode_step_time(8, 8 * 512)


@pytest.mark.parametrize("cfg", COSTS, ids=lambda c: c.kind)
def test_fp8_on_h100_computes_in_fp8_and_is_faster(cfg):
    hw = get_hardware("H100-SXM")
    m = get_model("Llama-3.1-8B")
    fp8 = m.with_dtypes(quantization="fp8")
    assert gemm_dtype(fp8, hw, None) == "fp8"
    shape = BatchShape.prefill([(4096, 0)])
    assert cfg.build(fp8, hw, 1).step_time(shape) < 0.8 * cfg.build(m, hw, 1).step_time(shape)


def test_int_weights_are_weight_only_everywhere():
    for hw in ("A100-80GB", "H100-SXM"):
        m = get_model("Llama-3.1-8B").with_dtypes(quantization="int4")
        assert gemm_dtype(m, get_hardware(hw), None) == "bf16"


def test_explicit_fp8_compute_on_a100_is_refused():
    sc = make_scenario(
        hardware="A100-80GB", engine=llmsim.EngineConfig(cost=RooflineConfig(compute_dtype="fp8"))
    )
    with pytest.raises(ConfigError) as info:
        build_replica(sc)
    msg = str(info.value)
    assert "engine.cost.compute_dtype" in msg and "A100" in msg and "fp8 tensor cores" in msg


def test_peak_flops_fp8_never_falls_back_to_int8():
    a100 = get_hardware("A100-80GB")
    assert a100.peak_flops("fp8") == a100.peak_flops("bf16") == 312e12
    assert get_hardware("H100-SXM").peak_flops("fp8") == pytest.approx(1978.9e12)


@pytest.mark.parametrize("cfg", COSTS, ids=lambda c: c.kind)
def test_fp8_kv_halves_decode_attention_bytes(cfg):
    """Decode attention at long context is KV-read bound: going from 2 to 1 byte per element
    cuts the context-dependent part of the step. The part that does not depend on context
    (weights, host) is unchanged."""
    hw = get_hardware("H100-SXM")
    m = get_model("Llama-3.1-8B")
    bf16, fp8 = cfg.build(m, hw, 1), cfg.build(m.with_dtypes(kv_cache_dtype="fp8"), hw, 1)
    seqs, short, long = 64, 64 * 256, 64 * 8192
    extra16 = bf16.decode_step_time(seqs, long) - bf16.decode_step_time(seqs, short)
    extra8 = fp8.decode_step_time(seqs, long) - fp8.decode_step_time(seqs, short)
    assert extra8 == pytest.approx(extra16 / 2, rel=0.15)
    if cfg.kind == "roofline":  # exactly: the bytes-per-token slope halves
        assert extra8 == pytest.approx(extra16 / 2, rel=1e-9)
