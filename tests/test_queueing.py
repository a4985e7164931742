"""Queueing theory and conservation laws the simulator must obey."""

from __future__ import annotations

import numpy as np
import pytest

import llmsim
from tests.conftest import make_scenario

STEP = 0.01


def md1_scenario(rho: float, n: int, seed: int) -> llmsim.Scenario:
    """Batch size 1, one output token, constant step time: an M/D/1 queue with service STEP."""
    return make_scenario(
        seed=seed,
        engine=llmsim.EngineConfig(cost=llmsim.ConstantConfig(step_s=STEP), max_model_len=8192),
        policy=llmsim.ContinuousConfig(max_num_seqs=1, max_num_batched_tokens=8192),
        workload=llmsim.WorkloadConfig(
            arrival=llmsim.PoissonArrivals(rate=rho / STEP),
            prompt_tokens=llmsim.FixedLength(value=8),
            output_tokens=llmsim.FixedLength(value=1),
            num_requests=n,
        ),
    )


@pytest.mark.slow
@pytest.mark.parametrize(("rho", "n"), [(0.5, 200_000), (0.8, 600_000)])
def test_md1_mean_wait_matches_pollaczek_khinchine(rho: float, n: int) -> None:
    # P-K for deterministic service S: Wq = rho * S / (2 (1 - rho)). The sample sizes make the
    # estimator's standard error about 1 % (measured over seeds), so 3 % is a 3-sigma bound.
    res = llmsim.simulate(md1_scenario(rho, n, seed=11))
    wq = (res.requests["first_scheduled"] - res.requests["arrival"]).mean()
    expected = rho * STEP / (2 * (1 - rho))
    assert wq == pytest.approx(expected, rel=0.03)
    # and the server is busy a fraction rho of the time
    busy = res.steps["duration"].sum() / res.summary["duration_s"]
    assert busy == pytest.approx(rho, rel=0.01)


def test_md1_small_sample_is_in_the_right_range() -> None:
    """A fast version of the P-K check (wide tolerance), run on every commit."""
    res = llmsim.simulate(md1_scenario(0.5, 20_000, seed=3))
    wq = (res.requests["first_scheduled"] - res.requests["arrival"]).mean()
    assert wq == pytest.approx(0.5 * STEP / (2 * 0.5), rel=0.08)


@pytest.fixture(scope="module")
def loaded_run() -> llmsim.SimulationResult:
    """Roofline costs, continuous batching near saturation, no preemption."""
    return llmsim.simulate(
        make_scenario(
            workload=llmsim.WorkloadConfig(
                arrival=llmsim.PoissonArrivals(rate=40.0),
                prompt_tokens=llmsim.LognormalLength(mean=400, cv=1.0, max=4000),
                output_tokens=llmsim.LognormalLength(mean=150, cv=1.0, max=1000),
                num_requests=3000,
            )
        )
    )


def test_every_request_finishes_once_with_its_tokens(loaded_run: llmsim.SimulationResult) -> None:
    req = loaded_run.requests
    assert req["request_id"].is_unique
    assert len(req) == 3000
    assert (req["status"] == "finished").all()
    sc = loaded_run.scenario
    sim = llmsim.Simulation(sc)  # the same draw of the workload, by seed
    np.testing.assert_array_equal(req["output_tokens"], sim.stream.output_tokens)
    np.testing.assert_array_equal(req["prompt_tokens"], sim.stream.prompt_tokens)
    steps = loaded_run.steps
    assert steps["sampled_tokens"].sum() == req["output_tokens"].sum()
    if loaded_run.summary["preemptions"] == 0:
        assert steps["prefill_tokens"].sum() == req["prompt_tokens"].sum()
        assert steps["decode_tokens"].sum() == (req["output_tokens"] - 1).sum()
    assert (req["arrival"] <= req["first_scheduled"]).all()
    assert (req["first_scheduled"] < req["first_token"]).all()
    assert (req["first_token"] <= req["finish"]).all()


def test_kv_blocks_never_exceed_capacity(loaded_run: llmsim.SimulationResult) -> None:
    assert loaded_run.steps["kv_blocks"].max() <= loaded_run.kv[0].num_blocks
    assert loaded_run.steps["batch_size"].max() <= 64


def test_littles_law_on_running_batch(loaded_run: llmsim.SimulationResult) -> None:
    # The running set changes only at step boundaries, so the time integral of the per-step
    # running count equals the summed residence times (first scheduled -> finish): L = lambda W.
    steps, req = loaded_run.steps, loaded_run.requests
    assert loaded_run.summary["preemptions"] == 0
    area = float((steps["num_running"] * steps["duration"]).sum())
    residence = float((req["finish"] - req["first_scheduled"]).sum())
    assert area == pytest.approx(residence, rel=1e-9)
    span = req["finish"].max() - req["arrival"].min()
    lam = len(req) / span
    assert area / span == pytest.approx(
        lam * (req["finish"] - req["first_scheduled"]).mean(), rel=1e-9
    )


def test_littles_law_on_waiting_queue(loaded_run: llmsim.SimulationResult) -> None:
    # The queue length sampled at step starts, weighted by step duration, estimates the time-
    # average queue, which Little's law ties to the mean queueing delay. Arrivals inside a step
    # are seen only at the next step, so this holds approximately.
    steps, req = loaded_run.steps, loaded_run.requests
    span = req["finish"].max() - req["arrival"].min()
    lq = float((steps["num_waiting"] * steps["duration"]).sum()) / span
    lam = len(req) / span
    wq = float(req["queue_time"].mean())
    assert lq == pytest.approx(lam * wq, rel=0.25)
    assert wq > 0
