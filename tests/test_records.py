"""Finished requests kept as columns: the engine lets the request objects go as it accounts
for them, and the requests table built from the columns is the one the objects give."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import llmsim
from llmsim.engine import Simulation
from llmsim.request import Request
from tests.conftest import make_scenario


def _scenario(n: int = 2000, **overrides: object) -> llmsim.Scenario:
    base: dict[str, object] = {
        "engine": llmsim.EngineConfig(
            cost=llmsim.ConstantConfig(step_s=0.01), max_model_len=2048, kv_blocks=400
        ),
        "policy": llmsim.ContinuousConfig(max_num_seqs=32, max_num_batched_tokens=2048),
        "workload": llmsim.WorkloadConfig(
            arrival=llmsim.PoissonArrivals(rate=40.0),
            prompt_tokens=llmsim.UniformLength(low=16, high=400),
            output_tokens=llmsim.UniformLength(low=1, high=200),
            num_requests=n,
        ),
    }
    return make_scenario(**{**base, **overrides})


def _live_requests() -> int:
    gc.collect()
    return sum(type(o) is Request for o in gc.get_objects())  # no __class__ lookups


@pytest.mark.parametrize("replicas", [1, 3])
def test_a_run_lets_its_requests_go(replicas: int) -> None:
    before = _live_requests()
    sim = Simulation(_scenario(data_parallel=replicas))
    res = sim.run()
    assert res.summary["preemptions"] > 0  # preempted requests left the decode sets too
    assert len(sim.records) == len(res.requests) == 2000
    assert all(not rep.policy.finished for rep in sim.replicas)
    assert _live_requests() - before < 100  # the few still in a policy's queues at the end
    kept = Simulation(_scenario(data_parallel=replicas))
    kept.keep_requests = True
    kept.run()
    assert _live_requests() - before >= 2000


def test_requests_table_from_the_columns_equals_the_objects() -> None:
    sim = Simulation(_scenario(600, data_parallel=2))
    sim.keep_requests = True
    req = sim.run().requests
    objects = sorted((r for rep in sim.replicas for r in rep.policy.finished), key=lambda r: r.id)
    assert req["request_id"].tolist() == [r.id for r in objects]
    for column, attribute in [
        ("replica", "replica"),
        ("arrival", "arrival"),
        ("finish", "finish"),
        ("first_token", "first_token"),
        ("prompt_tokens", "prompt_tokens"),
        ("output_tokens", "num_output"),
        ("preemptions", "preemptions"),
        ("recomputed_tokens", "recomputed_tokens"),
        ("queue_time", "queue_time"),
    ]:
        want = np.array([getattr(r, attribute) for r in objects])
        np.testing.assert_array_equal(req[column].to_numpy(), want, err_msg=column)
    assert req["status"].tolist() == [r.status.name.lower() for r in objects]
