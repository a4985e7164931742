"""Clusters: routers, pools, request classes, pipeline parallelism, disaggregated serving,
closed-loop clients."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

import llmsim
from llmsim.cluster import ClusterConfig, LinkConfig
from llmsim.cost.base import BatchShape
from llmsim.cost.pipeline import PipelineCostModel, split
from llmsim.errors import ConfigError
from llmsim.models import get_model
from llmsim.request import Request
from llmsim.routing import Router
from llmsim.workload.arrivals import ConstantArrivals
from tests.conftest import make_scenario


@dataclass
class FakeReplica:
    index: int
    pool: str = "p"
    outstanding: int = 0
    pending_tokens: int = 0
    usage: float = 0.0

    @property
    def kv_usage(self) -> float:
        return self.usage


def router(kind: str, seed: int = 0) -> Router:
    return Router(kind, np.random.default_rng(seed))  # type: ignore[arg-type]


def req(i: int = 0) -> Request:
    return Request(i, 0.0, 10, 10)


# --- routers ---------------------------------------------------------------------------------


def test_round_robin_cycles() -> None:
    reps = [FakeReplica(i) for i in range(3)]
    rt = router("round_robin")
    assert [rt.choose(req(), reps).index for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_random_is_seeded_and_uniform() -> None:
    reps = [FakeReplica(i) for i in range(4)]
    picks = [router("random", 5).choose(req(), reps).index for _ in range(1)]
    assert picks == [router("random", 5).choose(req(), reps).index]
    rt = router("random", 1)
    counts = np.bincount([rt.choose(req(), reps).index for _ in range(4000)], minlength=4)
    assert counts.min() > 900 and counts.max() < 1100


def test_least_outstanding_least_kv_and_shortest_queue() -> None:
    reps = [
        FakeReplica(0, outstanding=5, pending_tokens=100, usage=0.1),
        FakeReplica(1, outstanding=2, pending_tokens=9000, usage=0.9),
        FakeReplica(2, outstanding=3, pending_tokens=50, usage=0.5),
    ]
    assert router("least_outstanding").choose(req(), reps).index == 1
    assert router("least_kv").choose(req(), reps).index == 0
    assert router("shortest_queue_tokens").choose(req(), reps).index == 2


@pytest.mark.parametrize("kind", ["prefix_affinity", "session_affinity"])
def test_affinity_sticks_to_the_first_choice(kind: str) -> None:
    reps = [FakeReplica(0, outstanding=1), FakeReplica(1, outstanding=0)]
    rt = router(kind)
    first = rt.choose(req(), reps, key="conversation-7")
    assert first.index == 1  # least outstanding at first
    reps[1].outstanding = 50
    assert rt.choose(req(), reps, key="conversation-7").index == 1  # still there
    assert rt.choose(req(), reps, key="conversation-8").index == 0  # a new key balances
    assert rt.choose(req(), reps, key=None).index == 0  # no key: least outstanding


# --- pools, classes, heterogeneous fleets ----------------------------------------------------


def cluster_scenario(cluster: dict[str, object], **kw: object) -> llmsim.Scenario:
    return make_scenario(cluster=ClusterConfig.model_validate(cluster), **kw)


def test_request_classes_go_to_their_pools() -> None:
    sc = cluster_scenario(
        {
            "pools": [
                {"name": "interactive", "replicas": 2, "classes": ["interactive"]},
                {"name": "batch", "replicas": 1, "classes": ["batch"], "hardware": "A100-80GB"},
            ],
            "router": {"kind": "least_outstanding"},
        }
    )
    sc = sc.with_overrides(
        {
            "workload.classes": [
                {"name": "batch", "min_prompt_tokens": 300},
                {"name": "interactive"},
            ]
        }
    )
    res = llmsim.simulate(sc)
    req = res.requests
    long = req["prompt_tokens"] >= 300
    assert (req.loc[long, "pool"] == "batch").all()
    assert (req.loc[~long, "pool"] == "interactive").all()
    assert set(req.loc[~long, "replica"]) == {0, 1}
    assert res.by_pool is not None and res.by_replica is not None
    assert res.by_pool["completed"].sum() == len(req)
    assert res.by_replica.index.tolist() == [0, 1, 2]


def test_class_without_a_pool_is_rejected_at_arrival() -> None:
    sc = cluster_scenario({"pools": [{"name": "only", "classes": ["interactive"]}]})
    sc = sc.with_overrides({"workload.classes": [{"name": "batch"}]})
    res = llmsim.simulate(sc)
    assert (res.requests["status"] == "rejected").all()


def test_faster_replicas_serve_more_under_least_outstanding() -> None:
    sc = cluster_scenario(
        {
            "pools": [
                {"name": "h200", "hardware": "H200"},
                {"name": "a100", "hardware": "A100-80GB"},
            ],
            "router": {"kind": "least_outstanding"},
        },
        workload=llmsim.WorkloadConfig(
            arrival=llmsim.PoissonArrivals(rate=30.0),
            prompt_tokens=llmsim.UniformLength(low=200, high=800),
            output_tokens=llmsim.UniformLength(low=50, high=300),
            num_requests=1500,
        ),
    )
    res = llmsim.simulate(sc)
    served = res.requests["pool"].value_counts()
    assert served["h200"] > 1.2 * served["a100"]


def test_pool_validation() -> None:
    with pytest.raises(ValueError, match="unique"):
        ClusterConfig.model_validate({"pools": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(ValueError, match="kv_transfer"):
        ClusterConfig.model_validate(
            {"pools": [{"name": "p", "role": "prefill"}, {"name": "d", "role": "decode"}]}
        )
    with pytest.raises(ValueError, match="prefill pool and a decode pool"):
        ClusterConfig.model_validate(
            {"pools": [{"name": "p", "role": "prefill"}], "kv_transfer": {"bandwidth_gbps": 1}}
        )
    with pytest.raises(ConfigError, match="unknown hardware"):
        llmsim.Scenario.from_yaml(
            make_scenario().to_yaml().replace("cluster: null\n", "")
            + "cluster: {pools: [{name: x, hardware: H100-SMX}]}\n"
        )


# --- disaggregated prefill / decode ----------------------------------------------------------


def test_disaggregated_ttft_exceeds_colocated_by_the_transfer_time() -> None:
    # Requests far apart, constant step time: each TTFT is exactly one prefill step, plus the
    # KV transfer when prefill and decode run on different replicas.
    workload = llmsim.WorkloadConfig(
        arrival=ConstantArrivals(rate=0.5),
        prompt_tokens=llmsim.UniformLength(low=100, high=3000),
        output_tokens=llmsim.FixedLength(value=20),
        num_requests=40,
    )
    engine = llmsim.EngineConfig(cost=llmsim.ConstantConfig(step_s=0.02), max_model_len=8192)
    colo = llmsim.simulate(make_scenario(workload=workload, engine=engine))
    link = {"bandwidth_gbps": 10.0, "latency_ms": 2.0}
    disagg = llmsim.simulate(
        cluster_scenario(
            {
                "pools": [{"name": "p", "role": "prefill"}, {"name": "d", "role": "decode"}],
                "kv_transfer": link,
            },
            workload=workload,
            engine=engine,
        )
    )
    kv = get_model("Llama-3.1-8B").kv_bytes_per_token
    expected = np.array(
        [LinkConfig(**link).transfer_s(p * kv) for p in colo.requests["prompt_tokens"]]
    )
    np.testing.assert_allclose(
        disagg.requests["ttft"] - colo.requests["ttft"], expected, rtol=0, atol=1e-9
    )
    assert (disagg.requests["pool"] == "d").all()
    assert (disagg.requests["prefill_replica"] == 0).all()
    # decoding is unaffected: the same number of equal steps after the first token
    np.testing.assert_allclose(disagg.requests["tpot"], colo.requests["tpot"], atol=1e-9)


def test_disaggregated_conserves_requests_and_tokens_under_load() -> None:
    sc = cluster_scenario(
        {
            "pools": [
                {"name": "p", "role": "prefill", "replicas": 2},
                {"name": "d", "role": "decode", "replicas": 2},
            ],
            "kv_transfer": {"bandwidth_gbps": 50.0},
            "router": {"kind": "least_outstanding"},
        },
        workload=llmsim.WorkloadConfig(
            arrival=llmsim.PoissonArrivals(rate=40.0),
            prompt_tokens=llmsim.UniformLength(low=100, high=2000),
            output_tokens=llmsim.UniformLength(low=1, high=300),
            num_requests=1500,
        ),
    )
    res = llmsim.simulate(sc)
    req, steps = res.requests, res.steps
    assert (req["status"] == "finished").all()
    assert steps["sampled_tokens"].sum() == req["output_tokens"].sum()
    decode_pool = steps["pool"] == "d"
    assert steps.loc[decode_pool, "prefill_tokens"].sum() == 0  # no preemption: no recompute
    assert steps.loc[~decode_pool, "decode_tokens"].sum() == 0


# --- pipeline parallelism --------------------------------------------------------------------


def test_pipeline_step_costs_the_bubble() -> None:
    class Flat:
        def step_time(self, shape: BatchShape) -> float:
            return 0.001 * shape.seqs

        def decode_step_time(self, seqs: int, context: int) -> float:
            return 0.001 * seqs

    pp = PipelineCostModel(Flat(), stages=4, hidden_bytes=0.0, link_bw=1e9, link_lat=0.0)
    # 8 sequences in 4 micro-batches of 2: (4 + 4 - 1) stage-times of 2 ms
    assert pp.step_time(BatchShape.decode(8, 800)) == pytest.approx(7 * 0.002)
    assert split(BatchShape.decode(9, 900), 4).decode_seqs == 3


def test_pipeline_parallel_splits_weights_and_kv() -> None:
    one = llmsim.build_replica(make_scenario(model="Llama-3.1-70B", tensor_parallel=4))
    sc = cluster_scenario(
        {"pools": [{"name": "pp", "pipeline_parallel": 2}]},
        model="Llama-3.1-70B",
        tensor_parallel=4,
    )
    two = llmsim.build_replica(sc)
    assert two.kv.weights == pytest.approx(one.kv.weights / 2)
    assert two.kv.kv_bytes_per_token == pytest.approx(one.kv.kv_bytes_per_token / 2)
    res = llmsim.simulate(sc.with_overrides({"workload.num_requests": 50}))
    assert (res.requests["status"] == "finished").all()


# --- closed loop -----------------------------------------------------------------------------


def test_closed_loop_never_exceeds_its_clients() -> None:
    sc = make_scenario().with_overrides(
        {
            "workload.arrival": {
                "kind": "closed_loop",
                "clients": 8,
                "think_time": {"kind": "exponential", "mean": 0.5},
            },
            "workload.num_requests": 300,
        }
    )
    res = llmsim.simulate(sc)
    req = res.requests
    assert (req["status"] == "finished").all() and len(req) == 300
    events = sorted(
        [(t, 1) for t in req["arrival"]] + [(t, -1) for t in req["finish"]],
        key=lambda e: (e[0], e[1]),
    )
    in_flight = np.cumsum([d for _, d in events])
    assert in_flight.max() == 8
    # the offered load adapts to the service: throughput is bounded by clients / (E2E + think)
    s = res.summary
    bound = 8 / (s["mean_e2el_ms"] / 1e3 + 0.5)
    assert s["request_throughput"] == pytest.approx(bound, rel=0.15)


def test_a_pool_cannot_name_another_engine_preset() -> None:
    # a preset also sets the policy's defaults, which every pool shares: another preset in one
    # pool would apply to its engine section alone, so it is refused (an alias of the same one
    # is fine)
    base = {
        "model": "Llama-3.1-8B",
        "hardware": "H100-SXM",
        "engine": {"preset": "vllm-v1"},
        "workload": {
            "arrival": {"kind": "poisson", "rate": 2.0},
            "prompt_tokens": {"kind": "fixed", "value": 32},
            "output_tokens": {"kind": "fixed", "value": 8},
            "num_requests": 10,
        },
    }

    def pools(engine: dict[str, object]) -> dict[str, object]:
        return {"pools": [{"name": "a"}, {"name": "b", "engine": engine}]}

    with pytest.raises(ValueError, match=r"pools\.1\.engine\.preset: .tensorrt-llm."):
        llmsim.Scenario.model_validate({**base, "cluster": pools({"preset": "tensorrt-llm"})})
    same = llmsim.Scenario.model_validate(
        {**base, "cluster": pools({"preset": "vllm", "block_size": 32})}
    )
    assert [s.engine.block_size for s in same.replica_specs()] == [16, 32]
