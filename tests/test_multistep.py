"""Multi-step scheduling (vLLM V0 ``num_scheduler_steps``), driven by hand and end to end."""

from __future__ import annotations

import pytest

import llmsim
from llmsim.policies import ContinuousConfig, SpeculativeConfig
from llmsim.request import Status
from tests.conftest import make_scenario
from tests.test_policies import STEP, ctx, req


def run(pol, plan, now: float, steps: int) -> float:  # type: ignore[no-untyped-def]
    """Execute the first ``steps`` steps of ``plan`` (the engine may stop a run early)."""
    pol.update(plan, now, [STEP] * steps)
    return now + STEP * steps


@pytest.mark.parametrize(("n", "admitted_after"), [(1, 1), (4, 4), (3, 3)])
def test_arrival_waits_for_the_next_scheduling_point(n: int, admitted_after: int) -> None:
    pol = ContinuousConfig(max_num_seqs=8, max_num_batched_tokens=100, num_scheduler_steps=n)
    pol = pol.build(ctx())
    pol.add(req(0, 8, 20), 0.0)
    plan = pol.schedule(0.0)
    assert [r.id for r, _ in plan.prefills] == [0]  # a prompt step runs alone: one step
    t = run(pol, plan, 0.0, 1)
    plan = pol.schedule(t)  # scheduling point: a decode run of request 0 (19 tokens to go)
    assert not plan.prefills and plan.decode_steps == 19
    t = run(pol, plan, t, 1)  # request 1 arrives during the first decode step: run cut there
    pol.add(req(1, 8, 5), t)
    decodes = 1
    while True:
        plan = pol.schedule(t)
        if plan.prefills:
            break
        # inside the window: decodes only, never past its end
        assert plan.decode_steps == n - decodes
        t = run(pol, plan, t, plan.decode_steps)
        decodes += plan.decode_steps
    # by hand: the window opened with the decode run; request 1 is admitted at its end
    assert [r.id for r, _ in plan.prefills] == [1]
    assert decodes == admitted_after
    assert t == pytest.approx(STEP * (1 + admitted_after))


def test_finished_request_frees_its_slot_at_the_next_scheduling_point() -> None:
    pol = ContinuousConfig(max_num_seqs=2, max_num_batched_tokens=100, num_scheduler_steps=4)
    c = ctx(bs=4)
    pol = pol.build(c)
    a, long, b = req(0, 8, 3), req(1, 8, 20), req(2, 8, 5)
    for r in (a, long, b):
        pol.add(r, 0.0)
    plan = pol.schedule(0.0)
    assert [r.id for r, _ in plan.prefills] == [0, 1]  # two seats: request 2 waits
    t = run(pol, plan, 0.0, 1)
    plan = pol.schedule(t)
    assert plan.decode_steps == 2  # request 0 has 2 tokens to go
    t = run(pol, plan, t, 2)
    assert a.finish == pytest.approx(3 * STEP)  # its last token reaches the client now
    # ... but its seat and its 3 blocks (10 tokens computed) stay until the window ends
    assert c.pool.used == 3 + 3
    plan = pol.schedule(t)
    assert not plan.prefills and plan.shape.decode_seqs == 1 and plan.decode_steps == 2
    t = run(pol, plan, t, 2)
    plan = pol.schedule(t)  # step 4 of the window done: schedule, free a's blocks, admit b
    assert [r.id for r, _ in plan.prefills] == [2]
    assert c.pool.used == 3 + 2  # request 1 (12 tokens computed) + b's prompt
    assert t == pytest.approx(5 * STEP)


def test_finished_request_frees_its_slot_at_once_without_multi_step() -> None:
    pol = ContinuousConfig(max_num_seqs=2, max_num_batched_tokens=100).build(ctx(bs=4))
    for r in (req(0, 8, 3), req(1, 8, 20), req(2, 8, 5)):
        pol.add(r, 0.0)
    t = run(pol, pol.schedule(0.0), 0.0, 1)
    t = run(pol, pol.schedule(t), t, 2)
    assert [r.id for r, _ in pol.schedule(t).prefills] == [2]


def test_chunked_multi_step_runs_prompts_then_decodes_and_never_chunks() -> None:
    pol = ContinuousConfig(
        max_num_seqs=8, max_num_batched_tokens=64, chunked_prefill=True, num_scheduler_steps=3
    ).build(ctx())
    pol.add(req(0, 40, 10), 0.0)
    pol.add(req(1, 40, 10), 0.0)
    plan = pol.schedule(0.0)
    # 40 + 40 > 64: request 1 is not chunked into the 24 tokens left, it waits whole
    assert [(r.id, q) for r, q in plan.prefills] == [(0, 40)]
    t = run(pol, plan, 0.0, 1)
    plan = pol.schedule(t)  # steps 2 and 3 of the window: decodes of request 0 only
    assert not plan.prefills and plan.decode_steps == 2
    t = run(pol, plan, t, 2)
    plan = pol.schedule(t)  # next window: request 0 decodes, request 1's whole prompt
    assert [(r.id, q) for r, q in plan.prefills] == [(1, 40)]
    assert plan.shape.decode_seqs == 1


def test_prompts_over_the_budget_are_rejected_when_not_chunked() -> None:
    pol = ContinuousConfig(
        max_num_seqs=8, max_num_batched_tokens=64, chunked_prefill=True, num_scheduler_steps=2
    ).build(ctx())
    r = req(0, 100, 4)
    pol.add(r, 0.0)
    assert r.status == Status.REJECTED and pol.schedule(0.0) is None


def test_multi_step_refuses_a_prefill_chunk_cap() -> None:
    with pytest.raises(ValueError, match="num_scheduler_steps"):
        ContinuousConfig(
            chunked_prefill=True, long_prefill_token_threshold=512, num_scheduler_steps=8
        )


def test_multi_step_delays_first_tokens_end_to_end() -> None:
    base = make_scenario()
    one = llmsim.simulate(base)
    same = llmsim.simulate(base.with_overrides({"policy.num_scheduler_steps": 1}))
    assert same.summary == one.summary  # the default is single-step scheduling
    eight = llmsim.simulate(base.with_overrides({"policy.num_scheduler_steps": 8}))
    assert (eight.requests["status"] == "finished").all()
    assert eight.summary["mean_ttft_ms"] > one.summary["mean_ttft_ms"]
    # every output token is still produced exactly once
    assert eight.steps["sampled_tokens"].sum() == eight.requests["output_tokens"].sum()


def test_speculative_decoding_refuses_multi_step() -> None:
    with pytest.raises(ValueError, match="num_scheduler_steps"):
        SpeculativeConfig(draft_model="Llama-3.2-1B", num_scheduler_steps=4)
