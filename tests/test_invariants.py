"""Property-based checks: random valid scenarios keep the simulator's invariants
(tests/invariants.py) over every policy, KV layout, preemption mode, arrival kind and cluster
shape (tests/strategies.py). Each failure they found is kept as an explicit example or test."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings

from llmsim import simulate
from llmsim.errors import ConfigError
from llmsim.scenario import Scenario
from tests.conftest import ROOT
from tests.invariants import check_scenario, load
from tests.strategies import scenarios

CI_EXAMPLES = 200
SLOW_EXAMPLES = int(os.environ.get("LLMSIM_INVARIANT_EXAMPLES", "300"))
# The suite draws the same examples on every run; LLMSIM_INVARIANT_EXPLORE=1 draws new ones.
EXPLORE = os.environ.get("LLMSIM_INVARIANT_EXPLORE", "") not in ("", "0")
COMMON: dict[str, Any] = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}


def scenario(
    model: str,
    hardware: str,
    policy: dict[str, Any],
    workload: dict[str, Any],
    *,
    tp: int = 1,
    engine: dict[str, Any] | None = None,
    cluster: dict[str, Any] | None = None,
    **top: Any,
) -> dict[str, Any]:
    eng = {"max_model_len": 256, "cost": {"kind": "constant", "step_s": 0.02}} | (engine or {})
    data = {"model": model, "hardware": hardware, "tensor_parallel": tp, "engine": eng}
    data |= {"policy": policy, "workload": workload} | top
    if cluster is not None:
        data["cluster"] = cluster
    return data


def lengths(prompt: int, output: int, n: int | None, arrival: dict[str, Any]) -> dict[str, Any]:
    wl = {
        "arrival": arrival,
        "prompt_tokens": {"kind": "fixed", "value": prompt},
        "output_tokens": {"kind": "fixed", "value": output},
    }
    return wl if n is None else wl | {"num_requests": n}


CONTINUOUS = {"kind": "continuous", "max_num_seqs": 16, "max_num_batched_tokens": 512}
SPECULATIVE = {"kind": "speculative", "draft_model": "Llama-3.2-1B", "num_speculative_tokens": 3}
DISAGG = {
    "pools": [{"name": "prefill", "role": "prefill"}, {"name": "decode", "role": "decode"}],
    "kv_transfer": {"bandwidth_gbps": 1.0},
}
BATCH = {"kind": "batch"}

# Runs that broke an invariant before, each kept as an example of the random test.
FOUND = [
    # output throughput x duration lost a token: the last step's end rounded past the finish
    scenario(
        "DeepSeek-V3",
        "MI300X",
        {
            "kind": "dynamic",
            "max_batch_size": 6,
            "max_queue_delay_ms": 5.0,
            "preferred_batch_sizes": [1, 2],
        },
        lengths(69, 8, 1, {"kind": "gamma", "rate": 0.5, "cv": 3.0}),
        tp=8,
        engine={"cost": {"kind": "roofline"}, "preset": "sglang", "kv_blocks": 496},
        data_parallel=3,
        seed=15063,
    ),
    # contiguous KV on a decode replica released the prefill side's reservation: negative use
    scenario(
        "Llama-3.1-8B",
        "A100-80GB",
        CONTINUOUS | {"kv_layout": "contiguous"},
        lengths(21, 3, 24, BATCH),
        engine={"kv_blocks": 64},
        cluster=DISAGG,
    ),
    # speculative steps on contiguous KV allocated blocks that were never released
    scenario(
        "Llama-3.1-8B",
        "H100-SXM",
        SPECULATIVE | {"kv_layout": "contiguous"},
        lengths(4, 21, 6, BATCH),
        engine={"kv_blocks": 64},
    ),
    # speculative prefill replica and a one-block cache: the request waited forever
    scenario(
        "Llama-3.1-8B",
        "H100-SXM",
        SPECULATIVE | {"num_speculative_tokens": 3, "acceptance_rate": 1.0},
        lengths(7, 15, 1, BATCH),
        engine={"kv_blocks": 1, "block_size": 32},
        cluster=DISAGG,
    ),
    # a decode replica whose cache cannot hold a request the prefill replica took
    scenario(
        "Llama-3.1-8B",
        "H100-SXM",
        CONTINUOUS,
        lengths(76, 30, 4, BATCH),
        engine={"kv_blocks": 3, "block_size": 32},
        cluster={
            **DISAGG,
            "pools": [
                {"name": "prefill", "role": "prefill", "engine": {"kv_blocks": 100}},
                {"name": "decode", "role": "decode"},
            ],
        },
    ),
    # a prefilled request that fits the decode cache exactly waited for one block more
    scenario(
        "Llama-3.1-8B",
        "H100-SXM",
        CONTINUOUS,
        lengths(44, 2, 6, BATCH),
        engine={"kv_blocks": 3, "block_size": 16},
        cluster=DISAGG,
    ),
    # a closed-loop client's next request, stamped with a finish in a step another replica had
    # already waited out, cut this replica's decode run before the step under way
    {
        "seed": 7658,
        "model": "CodeLlama-34B",
        "hardware": "A100-40GB",
        "tensor_parallel": 4,
        "data_parallel": 2,
        "engine": {
            "max_model_len": 64,
            "block_size": 1,
            "kv_blocks": 65,
            "cost": {"kind": "constant", "step_s": 0.001, "per_token_s": 0.0},
            "async_scheduling": True,
            "frontend_ms": 0.0,
            "tokenize_us_per_token": 0.0,
        },
        "workload": {
            "arrival": {
                "kind": "closed_loop",
                "clients": 5,
                "think_time": {"kind": "fixed", "value": 0.0},
                "ramp_up_s": 0.0,
                "jitter": {"kind": "fixed", "value": 0.0},
            },
            "sessions": {
                "turns": {"kind": "uniform", "low": 1, "high": 3},
                "system_prompt_tokens": 0,
                "hash_block_size": 8,
                "max_context_tokens": 64,
            },
            "prompt_tokens": {"kind": "fixed", "value": 1},
            "output_tokens": {"kind": "uniform", "low": 1, "high": 15},
            "num_requests": 12,
        },
        "policy": CONTINUOUS
        | {
            "max_num_seqs": "derive",
            "max_num_batched_tokens": 16,
            "admission": "preempt",
            "preemption": "recompute",
            "kv_layout": "contiguous",
            "chunked_prefill": False,
            "mixed_prefill": False,
        },
    },
    # a contiguous reservation of the whole cache can never be admitted beside the watermark:
    # refused before the run
    scenario(
        "Llama-3.1-8B",
        "H100-SXM",
        CONTINUOUS | {"kv_layout": "contiguous", "watermark": 0.1},
        lengths(7, 1, 8, BATCH),
        engine={"kv_blocks": 16, "block_size": 16},
    ),
]


@settings(max_examples=CI_EXAMPLES, derandomize=True, **COMMON)
@given(scenarios())
def test_random_scenarios_keep_invariants(data: dict[str, Any]) -> None:
    check_scenario(data)


for found in FOUND:
    test_random_scenarios_keep_invariants = example(found)(test_random_scenarios_keep_invariants)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, derandomize=not EXPLORE, **COMMON)
@given(scenarios())
def test_many_random_scenarios_keep_invariants(data: dict[str, Any]) -> None:
    check_scenario(data)


@settings(max_examples=3, derandomize=True, **COMMON)
@given(data=scenarios())
def test_same_bytes_from_the_command_line(data: dict[str, Any], tmp_path_factory: Any) -> None:
    """``llmsim run`` in a new process writes the very bytes a run in this process saves."""
    s = load(data)
    try:
        result = simulate(s)
    except ConfigError:
        return
    tmp = tmp_path_factory.mktemp("run")
    here = result.save(tmp / "here")
    (tmp / "s.yaml").write_text(s.to_yaml())
    subprocess.run(
        [sys.executable, "-m", "llmsim", "run", str(tmp / "s.yaml"), "--out", str(tmp / "cli"),
         "--quiet"],
        cwd=ROOT, capture_output=True, check=True,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
    )  # fmt: skip
    for path in here.values():
        assert (tmp / "cli" / path.name).read_bytes() == path.read_bytes(), path.name


def test_disaggregated_contiguous_kv_stays_in_range() -> None:
    """The reported case: Llama-3.1-8B at TP4 on A40s, prefill and decode pools, contiguous KV,
    30 batch arrivals of about 1,850-token prompts and 26 output tokens."""
    data = scenario(
        "Llama-3.1-8B", "A40", CONTINUOUS | {"kv_layout": "contiguous",
        "max_num_batched_tokens": 4096}, lengths(1850, 26, 30, BATCH), tp=4,
        engine={"max_model_len": 4096}, cluster=DISAGG,
    )  # fmt: skip
    result = check_scenario(data)
    assert result is not None
    assert result.summary["completed"] == 30
    assert result.steps["kv_blocks"].min() >= 0


@pytest.mark.parametrize(
    ("top", "arrival", "n", "why"),
    [
        ({}, BATCH, 10, "leaves the last 2 of 10 requests in a short batch"),
        ({"data_parallel": 2}, BATCH, 8, "on 2 replicas"),
        ({}, {"kind": "closed_loop", "clients": 2}, 8, "more than the 2 closed-loop clients"),
    ],
)
def test_static_batch_that_never_fills_is_refused_before_the_run(
    top: dict[str, Any], arrival: dict[str, Any], n: int, why: str
) -> None:
    data = scenario(
        "Llama-3.1-8B", "H100-SXM", {"kind": "static", "batch_size": 4},
        lengths(16, 4, n, arrival), **top,
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"set policy\.max_wait_s") as err:
        simulate(Scenario.model_validate(data))
    assert why in str(err.value) and "\n" not in str(err.value)
    assert err.value.field == "policy.max_wait_s"


def test_static_batch_runs_when_every_batch_fills_or_a_timer_is_set() -> None:
    full = scenario(
        "Llama-3.1-8B", "H100-SXM", {"kind": "static", "batch_size": 4}, lengths(16, 4, 12, BATCH)
    )
    assert check_scenario(full).summary["completed"] == 12  # type: ignore[union-attr]
    timed = full | {"policy": {"kind": "static", "batch_size": 4, "max_wait_s": 0.1}}
    timed["workload"] = lengths(16, 4, 10, BATCH)
    assert check_scenario(timed).summary["completed"] == 10  # type: ignore[union-attr]
    # a drained load stage must fill its batches before the next stage starts: 4 requests
    # each run, 3 each are refused
    stages = {"kind": "stages", "stages": [{"rate": 10, "duration_s": 0.4}] * 2}
    staged = full | {"workload": lengths(16, 4, None, stages)}
    assert check_scenario(staged).summary["completed"] == 8  # type: ignore[union-attr]
    stages["stages"] = [{"rate": 10, "duration_s": 0.3}] * 2
    with pytest.raises(ConfigError, match="last 3 of 3 requests of load stage 0"):
        simulate(Scenario.model_validate(full | {"workload": lengths(16, 4, None, stages)}))


def test_contiguous_reservation_beside_the_watermark_is_refused() -> None:
    """A contiguous reservation of the whole cache was never admitted (the watermark stays
    free): the run waited forever; now it is refused before the run, in one line."""
    with pytest.raises(ConfigError, match="less the watermark's 1") as err:
        simulate(Scenario.model_validate(FOUND[-1]))
    assert err.value.field == "policy" and "\n" not in str(err.value)


def test_recompute_over_the_token_budget_finishes() -> None:
    """A request preempted after more tokens than max_num_batched_tokens is prefilled again
    over the budget, alone, instead of waiting forever."""
    data = scenario(
        "Llama-3.1-8B", "H100-SXM", {"kind": "continuous", "max_num_seqs": 4,
        "max_num_batched_tokens": 128, "watermark": 0.0}, lengths(100, 200, 3, BATCH),
        engine={"kv_blocks": 20, "block_size": 16, "max_model_len": 1024},
    )  # fmt: skip
    result = check_scenario(data)
    assert result is not None
    req = result.requests
    assert req["preemptions"].sum() > 0
    assert (req["status"] == "finished").all() and (req["output_tokens"] == 200).all()
    assert result.steps["prefill_tokens"].max() > 128  # the recompute ran over the budget


def test_pool_engine_override_merges_with_the_scenario_engine() -> None:
    text = yaml.safe_dump(
        scenario(
            "Llama-3.1-8B", "H100-SXM", CONTINUOUS, lengths(16, 4, 8, BATCH),
            engine={"preset": "vllm-v1", "cost": {"kind": "constant", "step_s": 0.01}},
            cluster={"pools": [
                {"name": "a", "engine": {"gpu_memory_utilization": 0.93}},
                {"name": "b", "engine": {"cost": {"per_token_s": 0.001}}},
            ]},
        )
    )  # fmt: skip
    s = Scenario.from_yaml(text)
    a, b = (spec.engine for spec in s.replica_specs())
    assert a.gpu_memory_utilization == 0.93 and a.cost == s.engine.cost
    assert b.cost.kind == "constant" and b.cost.step_s == 0.01 and b.cost.per_token_s == 0.001
    assert Scenario.from_yaml(s.to_yaml()) == s
    assert check_scenario(s.model_dump(mode="json")) is not None
