"""Scenario objects: built in Python, YAML round trips, immutability, overrides, the public API
surface, and the scenario files shipped in ``scenarios/``."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pydantic
import pytest

import llmsim

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"

EXPECTED_ALL = [
    "BatchArrivals",
    "BatchShape",
    "ConfigError",
    "ConstantConfig",
    "ContinuousConfig",
    "CostModel",
    "DoesNotFitError",
    "DynamicConfig",
    "EmpiricalLength",
    "EngineConfig",
    "FixedLength",
    "HardwareProfile",
    "LlmsimError",
    "LognormalLength",
    "MetricsConfig",
    "ModelSpec",
    "PoissonArrivals",
    "RooflineConfig",
    "Scenario",
    "Simulation",
    "SimulationResult",
    "SpeculativeConfig",
    "StaticConfig",
    "UniformLength",
    "UnknownNameError",
    "WorkloadConfig",
    "__version__",
    "build_replica",
    "from_hf_config",
    "get_hardware",
    "get_model",
    "list_hardware",
    "list_models",
    "load_scenario",
    "simulate",
]


def python_scenario(**workload: object) -> llmsim.Scenario:
    """Four requests at t=0, 100 prompt + 10 output tokens, 10 ms per step: easy by hand."""
    wl: dict[str, object] = {
        "arrival": llmsim.BatchArrivals(),
        "prompt_tokens": llmsim.FixedLength(value=100),
        "output_tokens": llmsim.FixedLength(value=10),
        "num_requests": 4,
    }
    wl.update(workload)
    return llmsim.Scenario(
        name="by-hand",
        seed=5,
        model="Llama-3.1-8B",
        hardware="H100-SXM",
        engine=llmsim.EngineConfig(cost=llmsim.ConstantConfig(step_s=0.01), max_model_len=4096),
        policy=llmsim.ContinuousConfig(max_num_seqs=16, max_num_batched_tokens=2048),
        workload=llmsim.WorkloadConfig(**wl),  # type: ignore[arg-type]
        metrics=llmsim.MetricsConfig(slo_ttft_ms=100),
    )


# --- built in Python ----------------------------------------------------------------------------


def test_python_scenario_simulates_by_hand_numbers() -> None:
    sc = python_scenario()
    assert sc.source == "<scenario>"
    res = llmsim.simulate(sc)
    req = res.requests
    assert len(req) == 4
    # one prefill step of all four prompts (first token at 10 ms), then nine decode steps
    assert req["ttft"].tolist() == pytest.approx([0.01] * 4)
    assert req["e2e"].tolist() == pytest.approx([0.10] * 4)
    assert req["tpot"].tolist() == pytest.approx([0.01] * 4)
    assert req["output_tokens"].tolist() == [10] * 4
    steps = res.steps
    assert len(steps) == 10
    assert steps["prefill_tokens"].tolist() == [400] + [0] * 9
    assert steps["decode_tokens"].tolist() == [0] + [4] * 9
    assert steps["batch_size"].tolist() == [4] * 10
    assert res.summary["mean_ttft_ms"] == pytest.approx(10.0)
    assert res.summary["mean_e2el_ms"] == pytest.approx(100.0)
    assert res.summary["request_throughput"] == pytest.approx(40.0)
    assert res.summary["preemptions"] == 0


def test_python_scenario_with_poisson_and_simulation_class() -> None:
    sc = python_scenario(arrival=llmsim.PoissonArrivals(rate=20.0), num_requests=50)
    sim = llmsim.Simulation(sc)
    assert len(sim.stream) == 50
    res = sim.run()
    assert isinstance(res, llmsim.SimulationResult)
    assert len(res.requests) == 50
    arrivals = res.requests.sort_values("request_id")["arrival"].to_numpy()
    assert np.all(np.diff(arrivals) >= 0) and arrivals[0] > 0
    # ~50 requests at 20/s: the last arrival is a couple of seconds in
    assert 1.0 < arrivals[-1] < 5.0
    assert (res.requests["ttft"] >= 0.01 - 1e-12).all()


def test_python_scenario_equals_yaml_scenario() -> None:
    sc = python_scenario()
    assert llmsim.Scenario.from_yaml(sc.to_yaml()) == sc


def test_invalid_python_scenario_raises() -> None:
    with pytest.raises(pydantic.ValidationError):
        llmsim.PoissonArrivals(rate=0)
    with pytest.raises(pydantic.ValidationError):
        llmsim.UniformLength(low=10, high=5)
    with pytest.raises(pydantic.ValidationError, match="H100-SMX"):
        llmsim.Scenario(
            model="Llama-3.1-8B",
            hardware="H100-SMX",
            workload=python_scenario().workload,
        )


# --- YAML round trips ---------------------------------------------------------------------------


def test_quickstart_round_trip() -> None:
    sc = llmsim.load_scenario(QUICKSTART)
    text = sc.to_yaml()
    back = llmsim.Scenario.from_yaml(text)
    assert back == sc
    assert back.to_yaml() == text
    assert back.source == "<yaml>"
    assert sc.source == str(QUICKSTART)
    assert back.model == "Llama-3.1-8B" and back.hardware == "H100-SXM"
    assert back.workload.arrival.rate == 4.0
    assert back.workload.num_requests == 2000
    assert back.policy.max_num_seqs == 256


LENGTHS = {
    "fixed": {"kind": "fixed", "value": 64},
    "uniform": {"kind": "uniform", "low": 8, "high": 32},
    "lognormal": {"kind": "lognormal", "mean": 50, "cv": 0.5, "min": 4, "max": 200},
    "empirical": {
        "kind": "empirical",
        "dataset": "sharegpt_multiturn",
        "column": "num_decode_tokens",
        "max": 300,
    },
}


def _yaml_with(prompt: dict[str, object], output: dict[str, object]) -> str:
    def flow(d: dict[str, object]) -> str:
        return "{" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}"

    return f"""\
name: lengths
seed: 11
model: Llama-3.1-8B
hardware: H100-SXM
engine:
  max_model_len: 4096
  cost: {{kind: constant, step_s: 0.01}}
policy: {{kind: continuous, max_num_seqs: 32}}
workload:
  arrival: {{kind: poisson, rate: 50}}
  prompt_tokens: {flow(prompt)}
  output_tokens: {flow(output)}
  num_requests: 60
"""


@pytest.mark.parametrize(
    ("prompt", "output"),
    [
        ("fixed", "uniform"),
        ("lognormal", "empirical"),
        ("empirical", "fixed"),
        ("uniform", "lognormal"),
    ],
)
def test_every_length_kind_round_trips_and_simulates(prompt: str, output: str) -> None:
    sc = llmsim.Scenario.from_yaml(_yaml_with(LENGTHS[prompt], LENGTHS[output]), "lengths.yaml")
    assert sc.source == "lengths.yaml"
    assert sc.engine.cost == llmsim.ConstantConfig(step_s=0.01)
    assert sc.workload.prompt_tokens.kind == prompt
    assert sc.workload.output_tokens.kind == output
    back = llmsim.Scenario.from_yaml(sc.to_yaml())
    assert back == sc
    assert back.to_yaml() == sc.to_yaml()

    res = llmsim.simulate(sc)
    assert len(res.requests) == 60
    for column, kind in (("prompt_tokens", prompt), ("output_tokens", output)):
        values = res.requests[column].to_numpy()
        spec = LENGTHS[kind]
        if kind == "fixed":
            assert (values == spec["value"]).all()
        elif kind == "uniform":
            assert values.min() >= spec["low"] and values.max() <= spec["high"]
            assert len(set(values.tolist())) > 5
        elif kind == "lognormal":
            assert values.min() >= spec["min"] and values.max() <= spec["max"]
            assert 30 < values.mean() < 75
        else:
            assert values.min() >= 1 and values.max() <= spec["max"]
            assert len(set(values.tolist())) > 10
    # the constant cost model: every step takes exactly step_s
    assert res.steps["duration"].to_numpy() == pytest.approx(0.01)


def test_from_yaml_errors_name_the_source() -> None:
    with pytest.raises(llmsim.ConfigError) as info:
        llmsim.Scenario.from_yaml("model: [unclosed", "mine.yaml")
    assert (
        str(info.value) == "mine.yaml: line 1: invalid YAML: expected ',' or ']', but got "
        "'<stream end>'"
    )
    with pytest.raises(llmsim.ConfigError, match=r"^mine\.yaml: expected a mapping"):
        llmsim.Scenario.from_yaml("- 1", "mine.yaml")
    text = _yaml_with(LENGTHS["fixed"], {"kind": "fixed", "value": 0})
    with pytest.raises(llmsim.ConfigError) as info:
        llmsim.Scenario.from_yaml(text, "mine.yaml")
    assert str(info.value).startswith("mine.yaml: workload.output_tokens.value: ")
    assert "(got 0)" in str(info.value)


# --- immutability and overrides -----------------------------------------------------------------


def test_scenario_is_frozen() -> None:
    sc = llmsim.load_scenario(QUICKSTART)
    with pytest.raises(pydantic.ValidationError):
        sc.seed = 3  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        sc.workload.num_requests = 5  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        sc.policy.max_num_seqs = 1  # type: ignore[misc]
    assert sc.seed == 42
    assert sc.workload.num_requests == 2000
    assert hash(sc) == hash(llmsim.load_scenario(QUICKSTART))


def test_with_overrides_returns_new_scenario() -> None:
    sc = llmsim.load_scenario(QUICKSTART)
    new = sc.with_overrides({"seed": 3})
    assert new is not sc
    assert new.seed == 3
    assert sc.seed == 42
    assert new != sc
    assert new.model_dump(exclude={"seed"}) == sc.model_dump(exclude={"seed"})
    assert new.source == sc.source
    assert sc.with_overrides(["seed=3"]) == new
    nested = sc.with_overrides({"workload.rate": 9, "policy.max_num_seqs": 8})
    assert nested.workload.arrival.rate == 9.0
    assert nested.policy.max_num_seqs == 8
    assert sc.workload.arrival.rate == 4.0


def test_with_overrides_validates() -> None:
    sc = llmsim.load_scenario(QUICKSTART)
    with pytest.raises(llmsim.ConfigError, match=r"seed: .*greater than or equal to 0"):
        sc.with_overrides({"seed": -1})
    with pytest.raises(llmsim.ConfigError, match="unknown field 'bogus'"):
        sc.with_overrides({"policy.bogus": 1})


def test_with_overrides_switches_a_kind_as_set_does(tmp_path: Path) -> None:
    """Setting a section's kind starts it afresh, in any order of the overrides, in Python as
    on the command line; the old kind's fields do not carry over."""
    sc = llmsim.load_scenario(QUICKSTART)
    cheap = sc.with_overrides({"engine.cost.step_s": 0.01, "engine.cost.kind": "constant"})
    assert cheap.engine.cost == llmsim.ConstantConfig(step_s=0.01)
    static = sc.with_overrides(["policy.batch_size=8", "policy.kind=static"])
    assert static.policy == llmsim.StaticConfig(batch_size=8)
    same = sc.with_overrides({"policy.kind": "continuous"})  # the same kind keeps its fields
    assert same == sc
    assert llmsim.load_scenario(QUICKSTART, ["policy.kind=static", "policy.batch_size=8"]) == static
    with pytest.raises(llmsim.ConfigError, match=r"policy\.batch_size: required field is missing"):
        sc.with_overrides({"policy.kind": "static"})


def test_overrides_index_lists(tmp_path: Path) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text(
        QUICKSTART.read_text()
        + "cluster:\n  pools: [{name: a}, {name: b, engine: {gpu_memory_utilization: 0.85}}]\n"
    )
    sc = llmsim.load_scenario(path, ["cluster.pools.1.replicas=3"])
    assert [p.replicas for p in sc.cluster.pools] == [1, 3]  # type: ignore[union-attr]
    again = sc.with_overrides({"cluster.pools.0.engine.gpu_memory_utilization": 0.93})
    assert again.cluster.pools[0].engine == {"gpu_memory_utilization": 0.93}  # type: ignore[union-attr]
    assert again.cluster.pools[1].replicas == 3  # type: ignore[union-attr]
    with pytest.raises(llmsim.ConfigError, match=r"'cluster.pools' is a list of 2; give an index"):
        sc.with_overrides(["cluster.pools.2.replicas=1"])
    with pytest.raises(llmsim.ConfigError, match=r"'cluster.pools' is a list of 2; give an index"):
        sc.with_overrides(["cluster.pools.first.replicas=1"])


# --- public surface ------------------------------------------------------------------------------


def test_public_names() -> None:
    assert llmsim.__all__ == EXPECTED_ALL
    for name in EXPECTED_ALL:
        assert hasattr(llmsim, name), name
    ns: dict[str, object] = {}
    exec("from llmsim import *", ns)
    assert set(EXPECTED_ALL) <= set(ns)
    assert isinstance(llmsim.__version__, str) and llmsim.__version__
    assert issubclass(llmsim.ConfigError, llmsim.LlmsimError)
    assert issubclass(llmsim.UnknownNameError, llmsim.ConfigError)
    assert issubclass(llmsim.DoesNotFitError, llmsim.ConfigError)


@pytest.mark.parametrize("name", [n for n in EXPECTED_ALL if n != "__version__"])
def test_public_name_importable(name: str) -> None:
    module = importlib.import_module("llmsim")
    obj = getattr(module, name)
    assert obj is not None
    assert getattr(obj, "__module__", "llmsim").startswith("llmsim")


# --- shipped scenario files ---------------------------------------------------------------------

# The recommendations manifest lists scenarios rather than being one (tests/test_recommend.py).
MANIFESTS = {ROOT / "scenarios" / "recommendations" / "recommendations.yaml"}
SCENARIO_FILES = sorted(
    p
    for p in [*ROOT.glob("scenarios/**/*.yaml"), *ROOT.glob("scenarios/**/*.yml")]
    if p not in MANIFESTS
)


def test_scenarios_folder_has_files() -> None:
    assert QUICKSTART in SCENARIO_FILES


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_scenario_validates(path: Path) -> None:
    sc = llmsim.load_scenario(path)
    replica = llmsim.build_replica(sc)  # memory fit, policy and cost model
    assert replica.kv.num_blocks > 0
    assert llmsim.Scenario.from_yaml(sc.to_yaml()) == sc


def test_engine_preset_sets_policy_defaults_unless_given() -> None:
    base = llmsim.load_scenario(QUICKSTART)
    data = base.model_dump(mode="json")
    data["engine"]["preset"] = "vllm-v1"
    data["policy"] = {"kind": "continuous", "max_num_seqs": 64}
    sc = llmsim.Scenario.model_validate(data)
    assert sc.policy.chunked_prefill is True
    assert sc.policy.max_num_batched_tokens == 8192
    assert sc.policy.max_num_seqs == 64  # explicit wins
    assert llmsim.Scenario.from_yaml(sc.to_yaml()) == sc
    data["engine"]["preset"] = "vllm-0.6"
    data["policy"] = {"kind": "continuous"}
    assert llmsim.Scenario.model_validate(data).policy.chunked_prefill is False
