"""``data_parallel``: N identical replicas behind the default router, without a cluster."""

from __future__ import annotations

import pandas as pd
import pytest

import llmsim
from llmsim.cluster import ClusterConfig
from llmsim.errors import ConfigError
from tests.conftest import make_scenario


def test_data_parallel_builds_identical_replicas() -> None:
    sc = make_scenario(data_parallel=3, tensor_parallel=2)
    specs = sc.replica_specs()
    assert [s.index for s in specs] == [0, 1, 2]
    assert {(s.pool, s.tensor_parallel, s.hardware) for s in specs} == {("default", 2, "H100-SXM")}
    assert [s.index for s in make_scenario().replica_specs()] == [0]


def test_data_parallel_is_a_pool_of_replicas_behind_round_robin() -> None:
    """Same run, request for request, as the cluster section it stands for."""
    dp = llmsim.simulate(make_scenario(data_parallel=2))
    pool = ClusterConfig.model_validate({"pools": [{"name": "default", "replicas": 2}]})
    cl = llmsim.simulate(make_scenario(cluster=pool))
    pd.testing.assert_frame_equal(dp.requests, cl.requests)
    # round robin: request i on replica i % 2
    reps = dp.requests.sort_values("arrival")["replica"].to_numpy()
    assert list(reps[:6]) == [0, 1, 0, 1, 0, 1]
    assert dp.by_replica is not None and len(dp.by_replica) == 2


def test_data_parallel_serves_twice_as_many_at_once() -> None:
    """Hand-worked: 4 requests at t=0, one running sequence per replica, every step 10 ms.
    Each request is one prefill step (its first token) and 2 decode steps: 30 ms. One
    replica serves them back to back (last finishes at 120 ms); two replicas take two each
    (last at 60 ms)."""
    fixed = {
        "engine": llmsim.EngineConfig(max_model_len=8192, cost=llmsim.ConstantConfig(step_s=0.01)),
        "policy": llmsim.ContinuousConfig(max_num_seqs=1, max_num_batched_tokens=64),
        "workload": llmsim.WorkloadConfig(
            arrival=llmsim.BatchArrivals(),
            prompt_tokens=llmsim.FixedLength(value=16),
            output_tokens=llmsim.FixedLength(value=3),
            num_requests=4,
        ),
    }
    one = llmsim.simulate(make_scenario(**fixed)).requests
    two = llmsim.simulate(make_scenario(data_parallel=2, **fixed)).requests
    assert sorted(one["finish"]) == pytest.approx([0.03, 0.06, 0.09, 0.12])
    assert sorted(two["finish"]) == pytest.approx([0.03, 0.03, 0.06, 0.06])


def test_data_parallel_with_cluster_is_refused() -> None:
    pool = ClusterConfig.model_validate({"pools": [{"name": "a", "replicas": 2}]})
    with pytest.raises(ValueError, match="data_parallel 2 cannot be combined with a cluster"):
        make_scenario(data_parallel=2, cluster=pool)


def test_data_parallel_bad_value_names_the_field(tmp_path: object) -> None:
    text = llmsim.load_scenario("scenarios/quickstart.yaml").to_yaml()
    with pytest.raises(ConfigError, match="data_parallel"):
        llmsim.Scenario.from_yaml(text.replace("data_parallel: 1", "data_parallel: 0"), "x.yaml")
