"""Runs of decode steps on a fleet: each replica's run ends at the next arrival for that replica,
not at the next arrival anywhere, and an arrival that becomes known during a run (a KV transfer
from a prefill replica) still ends the run at the step it lands in."""

from __future__ import annotations

import numpy as np
import pytest

import llmsim
from llmsim.engine import Simulation
from llmsim.workload.stream import RequestStream
from tests.conftest import make_scenario

STEP = 0.01


def _scenario(**overrides: object) -> llmsim.Scenario:
    base: dict[str, object] = {
        "engine": llmsim.EngineConfig(cost=llmsim.ConstantConfig(step_s=STEP), max_model_len=8192),
        "policy": llmsim.ContinuousConfig(max_num_seqs=8, max_num_batched_tokens=8192),
        "workload": llmsim.WorkloadConfig(
            arrival=llmsim.PoissonArrivals(rate=6.0),
            prompt_tokens=llmsim.UniformLength(low=8, high=64),
            output_tokens=llmsim.UniformLength(low=20, high=200),
            num_requests=400,
        ),
    }
    return make_scenario(**{**base, **overrides})


def test_a_replica_runs_as_if_alone_with_its_own_arrivals() -> None:
    # Round robin over two replicas: replica 0 serves requests 0, 2, 4, ... Simulated alone on
    # just those requests, one replica runs exactly the same steps at the same times.
    fleet = Simulation(_scenario(data_parallel=2))
    both = fleet.run()
    s = fleet.stream
    mine = np.arange(0, len(s.arrival), 2)
    alone_stream = RequestStream(s.arrival[mine], s.prompt_tokens[mine], s.output_tokens[mine])
    alone = Simulation(_scenario(), alone_stream).run()
    ours = both.steps[both.steps["replica"] == 0].reset_index(drop=True)
    cols = ["start", "duration", "batch_size", "prefill_tokens", "decode_tokens", "kv_blocks"]
    assert len(ours) == len(alone.steps)
    for col in cols:
        np.testing.assert_allclose(ours[col], alone.steps[col], rtol=0, atol=1e-9, err_msg=col)
    finish = both.requests.set_index("request_id").loc[mine, "finish"].to_numpy()
    np.testing.assert_allclose(finish, alone.requests["finish"], rtol=0, atol=1e-9)


def test_a_kv_transfer_landing_mid_run_joins_at_the_next_step() -> None:
    # Disaggregated: a prefilled request reaches its decode replica while that replica is in a
    # run of decode steps. It must join the batch at the first step boundary after it lands,
    # not when the run would have ended.
    sc = _scenario(
        policy=llmsim.ContinuousConfig(max_num_seqs=256, max_num_batched_tokens=8192),
        cluster={
            "pools": [
                {"name": "p", "replicas": 1, "role": "prefill"},
                {"name": "d", "replicas": 1, "role": "decode"},
            ],
            "kv_transfer": {"bandwidth_gbps": 50.0, "latency_ms": 0.0},
        },
    )
    req = llmsim.simulate(sc).requests
    # every step costs STEP, so a request decodes its other tokens in (n - 1) steps from the
    # first decode step it joins: what is left of its time after landing is the wait to join
    n = req["output_tokens"].to_numpy()
    wait = (req["finish"] - req["first_token"]).to_numpy() - (n - 1) * STEP
    assert wait.min() >= -1e-9
    assert wait.max() <= STEP + 1e-9  # joined at the end of the step it landed in


@pytest.mark.parametrize("router", ["round_robin", "least_outstanding", "least_kv"])
def test_fleet_runs_conserve_requests_and_tokens(router: str) -> None:
    res = llmsim.simulate(
        _scenario(
            cluster={"pools": [{"name": "a", "replicas": 3}], "router": {"kind": router}},
        )
    )
    req = res.requests
    assert (req["status"] == "finished").all()
    assert res.steps["sampled_tokens"].sum() == req["output_tokens"].sum()


@pytest.mark.parametrize("at", [9, 10, 11, 25, 26, 27])
def test_an_arrival_at_a_priced_chunk_boundary_cuts_the_run_there(at: int) -> None:
    # A fleet's run of decode steps is priced a chunk at a time (8 steps after its first, then
    # 16...). Steps of 1/8 s add up exactly, so arrivals can land exactly on a chunk's end, on
    # either side of it, or inside the next chunk: replica 0 must run the same steps as alone.
    step = 0.125
    sc = _scenario(engine=llmsim.EngineConfig(cost=llmsim.ConstantConfig(step_s=step)))
    arrival = np.array([0.0, 0.0, at * step, at * step, 60 * step, 60 * step])
    prompt = np.full(6, 16)
    output = np.array([100, 100, 30, 30, 5, 5])
    stream = RequestStream(arrival, prompt, output)
    both = Simulation(sc.with_overrides(["data_parallel=2"]), stream).run()
    mine = np.arange(0, 6, 2)
    alone_stream = RequestStream(arrival[mine], prompt[mine], output[mine])
    alone = Simulation(sc, alone_stream).run()
    ours = both.steps[both.steps["replica"] == 0].reset_index(drop=True)
    for col in ["start", "duration", "batch_size", "prefill_tokens", "decode_tokens"]:
        np.testing.assert_array_equal(ours[col], alone.steps[col], err_msg=col)
    finish = both.requests.set_index("request_id").loc[mine, "finish"].to_numpy()
    np.testing.assert_array_equal(finish, alone.requests["finish"])
