"""Engine presets: host overheads applied the same way to every cost model, the vllm-0.6
preset's provenance, and SGLang's derived running-request limit."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import llmsim
from llmsim.calibration import fit as F
from llmsim.calibration import readers as R
from llmsim.cost import CalibratedConfig, ConstantConfig, RooflineConfig
from llmsim.cost.base import BatchShape
from llmsim.hardware import get_hardware
from llmsim.models import get_model
from llmsim.policies.continuous_config import derived_max_seqs
from llmsim.presets import get_preset, list_presets
from llmsim.scenario import EngineConfig
from tests.conftest import ROOT, make_scenario

HOST = ("step_overhead_ms", "seq_overhead_us", "tp_overhead_ms")
PRESETS = [p.name for p in list_presets()]


# --- 1. every cost model takes the preset's overheads, whatever form the section has ----------


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("kind", ["roofline", "calibrated"])
def test_preset_applies_identically_to_dict_and_object(name: str, kind: str) -> None:
    host = get_preset(name).host
    obj = RooflineConfig() if kind == "roofline" else CalibratedConfig()
    forms = [
        EngineConfig(preset=name, cost=obj),
        EngineConfig.model_validate({"preset": name, "cost": {"kind": kind}}),
    ]
    if kind == "roofline":  # the default cost section
        forms.append(EngineConfig.model_validate({"preset": name}))
    for eng in forms:
        assert eng.cost == forms[0].cost
        assert all(getattr(eng.cost, f) == getattr(host, f) for f in HOST), (kind, eng.cost)


@pytest.mark.parametrize("kind", ["roofline", "calibrated"])
def test_explicit_tp_overhead_is_accepted_and_wins(kind: str) -> None:
    as_dict = EngineConfig.model_validate(
        {"preset": "vllm-v1", "cost": {"kind": kind, "tp_overhead_ms": 4.0}}
    )
    cls = RooflineConfig if kind == "roofline" else CalibratedConfig
    as_obj = EngineConfig(preset="vllm-v1", cost=cls(tp_overhead_ms=4.0))
    assert as_dict.cost == as_obj.cost
    assert as_dict.cost.tp_overhead_ms == 4.0  # type: ignore[union-attr]
    host = get_preset("vllm-v1").host
    assert as_dict.cost.step_overhead_ms == host.step_overhead_ms  # type: ignore[union-attr]


def test_constant_cost_takes_no_overheads() -> None:
    eng = EngineConfig.model_validate(
        {"preset": "vllm-v1", "cost": {"kind": "constant", "step_s": 0.01}}
    )
    assert eng.cost == ConstantConfig(step_s=0.01)


def test_roofline_tp_overhead_is_per_step_and_only_with_several_gpus() -> None:
    """Hand-worked: 3 ms of tensor-parallel host time adds exactly 3 ms to every step at
    TP 2 (prefill, decode, mixed) and nothing at TP 1; the default (0) changes nothing."""
    model, hw = get_model("Llama-3.1-8B"), get_hardware("H100-SXM")
    shapes = [
        BatchShape.decode(8, 8000),
        BatchShape.prefill([(512, 0)]),
        BatchShape.prefill([(256, 64)]).merge(BatchShape.decode(4, 900)),
    ]
    for tp, extra in ((1, 0.0), (2, 3e-3)):
        base = RooflineConfig().build(model, hw, tp)
        more = RooflineConfig(tp_overhead_ms=3.0).build(model, hw, tp)
        for shape in shapes:
            assert more.step_time(shape) - base.step_time(shape) == pytest.approx(extra, abs=1e-12)
        assert more.decode_step_time(8, 8000) == pytest.approx(
            more.step_time(BatchShape.decode(8, 8000))
        )


# --- 2. vllm-0.6: host overheads without Vidur's Ray communication ----------------------------


def test_vllm06_host_is_the_fit_of_the_engine_columns_without_ray(tmp_path: Path) -> None:
    """The preset's values are what the host fit gives on the shipped Vidur A100 table with
    its ray_comm_time_mean column left out (vLLM 0.6 does not use Ray on one node)."""
    path = ROOT / "llmsim/calibration/data/vidur/a100_cpu_overheads.csv.gz"
    frame = pd.read_csv(path).drop(columns=["ray_comm_time_mean"])
    frame.to_csv(tmp_path / "no_ray.csv", index=False)
    rows = R.read_vidur_cpu_overheads(tmp_path / "no_ray.csv")
    step, seq, tp = F.fit_family("host", rows, get_hardware("A100-80GB"))
    host = get_preset("vllm-0.6").host
    assert host.step_overhead_ms == pytest.approx(step, abs=0.005)
    assert host.seq_overhead_us == pytest.approx(seq, abs=0.05)
    assert host.tp_overhead_ms == pytest.approx(tp, abs=0.005)
    with_ray = F.fit_family("host", R.read_vidur_cpu_overheads(path), get_hardware("A100-80GB"))
    assert with_ray[2] > 5.0  # the Ray RPC, not paid by vLLM 0.6
    assert host.tp_overhead_ms < 1.0


# --- 3. sglang: running-request limit derived from the KV capacity ---------------------------


@pytest.mark.parametrize(
    ("tokens", "context", "expected"),
    [
        (448_752, 10_240, 4096),  # pool 22,437 clamped to 4,096
        (1_000_000, 200_000, 2560),  # pool 2,560 inside [2048, 4096]
        (100_000, 131_072, 2048),  # pool 390 raised to 2,048
        (3_000, 2_048, 1500),  # half the KV tokens is smaller
    ],
)
def test_derived_max_seqs_hand_worked(tokens: int, context: int, expected: int) -> None:
    assert derived_max_seqs(tokens, context) == expected


def _sglang(policy: dict[str, object]) -> llmsim.Scenario:
    data = make_scenario().model_dump(mode="json")
    data["engine"] = {"preset": "sglang", "max_model_len": 8192}
    data["policy"] = policy
    return llmsim.Scenario.model_validate(data)


def test_sglang_preset_derives_max_seqs_from_kv_capacity() -> None:
    sc = _sglang({"kind": "continuous"})
    assert sc.policy.max_num_seqs == "derive"  # type: ignore[union-attr]
    assert llmsim.Scenario.from_yaml(sc.to_yaml()) == sc
    rep = llmsim.build_replica(sc)
    tokens = rep.kv.num_blocks * sc.engine.block_size
    assert rep.policy.max_seqs == derived_max_seqs(tokens, 8192)  # type: ignore[attr-defined]
    assert rep.policy.max_seqs != 256  # type: ignore[attr-defined]
    # the KV cache is sized as before (activation estimate with 256 sequences)
    fixed = llmsim.build_replica(_sglang({"kind": "continuous", "max_num_seqs": 256}))
    assert fixed.kv.num_blocks == rep.kv.num_blocks
    assert fixed.policy.max_seqs == 256  # type: ignore[attr-defined]


def test_derived_limit_caps_a_small_kv_cache() -> None:
    """With 100 blocks of 16 tokens (1,600 tokens) SGLang's cap is 800 running requests."""
    data = _sglang({"kind": "continuous"}).model_dump(mode="json")
    data["engine"]["kv_blocks"] = 100
    rep = llmsim.build_replica(llmsim.Scenario.model_validate(data))
    assert rep.policy.max_seqs == 800  # type: ignore[attr-defined]


def test_max_num_seqs_derive_is_checked() -> None:
    with pytest.raises(ValueError, match="max_num_seqs"):
        llmsim.ContinuousConfig(max_num_seqs="automatic")  # type: ignore[arg-type]
    ok = llmsim.ContinuousConfig(max_num_seqs="derive", max_num_batched_tokens=64)
    assert ok.memory_profile(4096) == (64, 256)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_policy_defaults_same_for_mapping_and_object(name: str) -> None:
    """A preset's scheduling defaults reach a speculative or contiguous-KV policy the same way
    whether it is written as a mapping or built as an object: no prompt chunking on the
    prefill-first speculative policy, no prefix cache without pages."""
    cases = [
        ({"kind": "speculative", "draft_model": "Llama-3.2-1B"},
         llmsim.SpeculativeConfig(draft_model="Llama-3.2-1B")),
        ({"kind": "continuous", "kv_layout": "contiguous"},
         llmsim.ContinuousConfig(kv_layout="contiguous")),
    ]  # fmt: skip
    for mapping, obj in cases:
        engine = {"preset": name, "max_model_len": 4096}
        a = make_scenario(engine=engine, policy=mapping).policy
        b = make_scenario(engine=engine, policy=obj).policy
        assert a == b
        assert not a.prefix_caching or a.kv_layout == "paged"
        if a.kind == "speculative":
            assert not a.chunked_prefill and not a.mixed_prefill
