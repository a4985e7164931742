"""Admission that never evicts (TensorRT-LLM's GUARANTEED_NO_EVICT), the preemption summary
and its warning, and the recompute that outgrows the token budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import llmsim
from llmsim.cli import app
from llmsim.engine import Simulation
from llmsim.metrics import preemption_warning
from llmsim.policies import ContinuousConfig, SpeculativeConfig
from llmsim.request import Status
from llmsim.workload import RequestStream
from tests.conftest import make_scenario
from tests.test_policies import ctx, req, step

STEP = 0.01
ROOT = Path(__file__).resolve().parent.parent


def run(arrivals, prompts, outputs, policy, **engine):  # type: ignore[no-untyped-def]
    stream = RequestStream(np.array(arrivals), np.array(prompts), np.array(outputs))
    engine.setdefault("max_model_len", 64)
    scenario = make_scenario(
        engine=llmsim.EngineConfig(cost=llmsim.ConstantConfig(step_s=STEP), **engine),
        policy=policy,
    )
    return Simulation(scenario, stream).run()


# --- admission: hand-worked schedules -------------------------------------------------------------


def test_no_evict_admits_only_what_can_be_reserved_by_hand() -> None:
    # 10 blocks of 4 tokens. Whole needs (prompt + output): R0, R1 16 tokens = 4 blocks,
    # R2 8 = 2, R3 12 = 3.
    # step 0: R0 reserves 4 (holds 2 after its prompt: 2 outstanding), R1 4 + 2 <= 10 free
    #         -> 4 outstanding, 4 used; R2 2 + 4 <= 6 free -> 5 outstanding, 5 used;
    #         R3 3 + 5 > 5 free: waits (its prompt's one block is free: preempt admits it)
    # decodes 1-3: R0, R1, R2 each take a block (outstanding 2, used 8); R2 finishes holding
    #         all it reserved: used 6, free 4, and R3 needs 3 + 2 > 4: still waits
    # decodes 4-7: R0, R1 take their last blocks and finish; R3 is admitted at 8 steps
    cfg = ContinuousConfig(max_num_seqs=8, max_num_batched_tokens=64, admission="no_evict")
    pol = cfg.build(ctx(blocks=10, bs=4))
    rs = [req(0, 8, 8), req(1, 8, 8), req(2, 4, 4), req(3, 4, 8)]
    for r in rs:
        pol.add(r, 0.0)
    plan, t = step(pol, 0.0)
    assert [(r.id, q) for r, q in plan.prefills] == [(0, 8), (1, 8), (2, 4)]
    assert pol.reservations.outstanding == 5 and pol.pool.used == 5
    plan, t = step(pol, t)
    assert plan.decode_steps == 3 and rs[2].status == Status.FINISHED
    assert pol.reservations.outstanding == 2 and pol.pool.used == 6
    plan, t = step(pol, t)
    assert not plan.prefills and plan.decode_steps == 4
    assert rs[3].first_scheduled < 0
    plan, t = step(pol, t)
    assert [(r.id, q) for r, q in plan.prefills] == [(3, 4)]
    assert rs[3].first_scheduled == pytest.approx(8 * STEP)
    assert pol.reservations.outstanding == 2  # 3 reserved, 1 held

    # the same requests under preempt: all four prompts fit the free blocks at once
    pol = ContinuousConfig(max_num_seqs=8, max_num_batched_tokens=64).build(ctx(blocks=10, bs=4))
    for r in [req(0, 8, 8), req(1, 8, 8), req(2, 4, 4), req(3, 4, 8)]:
        pol.add(r, 0.0)
    plan = pol.schedule(0.0)
    assert [r.id for r, _ in plan.prefills] == [0, 1, 2, 3]


def test_no_evict_never_preempts_where_preempt_does_by_hand() -> None:
    # test_handworked's preemption case: block size 2, 4 blocks, R0 and R1 with 2 prompt and
    # 4 output tokens (3 blocks each). Preempt admits both and preempts R1 at 30 ms. No-evict
    # admits R0 (3 of 4 blocks reserved) and R1 only when R0 has finished:
    #  0-10  prefill R0 (1 block)            token 1 at 10
    # 10-40  decode R0: blocks 2, 2, 3       tokens 2, 3, 4 at 20, 30, 40: done, frees 3
    # 40-50  prefill R1                      token 1 at 50
    # 50-80  decode R1                       done at 80
    res = run(
        [0.0, 0.0],
        [2, 2],
        [4, 4],
        ContinuousConfig(max_num_seqs=2, max_num_batched_tokens=64, admission="no_evict"),
        block_size=2,
        kv_blocks=4,
    )
    df = res.requests.set_index("request_id")
    assert df["preemptions"].tolist() == [0, 0]
    np.testing.assert_allclose(df["first_scheduled"], [0.0, 0.040], atol=1e-12)
    np.testing.assert_allclose(df["first_token"], [0.010, 0.050], atol=1e-12)
    np.testing.assert_allclose(df["finish"], [0.040, 0.080], atol=1e-12)
    assert res.steps["prefill_tokens"].tolist() == [2, 0, 0, 0, 2, 0, 0, 0]
    assert res.steps["kv_blocks"].tolist() == [1, 2, 2, 3, 1, 2, 2, 3]
    assert res.summary["preemptions"] == 0 and res.summary["recompute_fraction"] == 0


def test_preemption_summary_by_hand() -> None:
    # The same case under preempt (tests/test_handworked.py): R1 is preempted at 30 ms holding
    # 4 computed tokens (2 prompt + 2 decoded) and prefilled again over 5 tokens, 4 of which
    # recompute dropped work. Computed tokens: prefill 4 + 5, decode 2 + 2 + 1 = 14.
    res = run(
        [0.0, 0.0],
        [2, 2],
        [4, 4],
        ContinuousConfig(max_num_seqs=2, max_num_batched_tokens=64, watermark=0.0),
        block_size=2,
        kv_blocks=4,
    )
    s = res.summary
    assert s["preemptions"] == 1
    assert s["preemptions_per_request"] == pytest.approx(0.5)
    assert s["recomputed_tokens"] == 4
    assert s["recompute_fraction"] == pytest.approx(4 / 14)
    assert res.requests["recomputed_tokens"].tolist() == [0, 4]
    warning = preemption_warning(s)
    assert warning is not None and "0.50 preemptions per request" in warning


def test_preemption_warning_thresholds() -> None:
    assert preemption_warning({"preemptions_per_request": 0.1, "recompute_fraction": 0.05}) is None
    assert preemption_warning({"preemptions_per_request": 0.11, "recompute_fraction": 0.0})
    assert preemption_warning({"preemptions_per_request": 0.0, "recompute_fraction": 0.051})
    assert preemption_warning({}) is None


# --- admission: invariants under overload ---------------------------------------------------------


def _overload(cfg: ContinuousConfig, *, caching: bool = False, n: int = 120):  # type: ignore[no-untyped-def]
    """Drive a policy by hand through a heavy overload on a small cache; check the
    reservation invariant after every step. Returns the requests and the policy."""
    rng = np.random.default_rng(7)
    pol = cfg.build(ctx(blocks=60, bs=4, max_len=200))
    rs = []
    for i in range(n):
        kw = {}
        if caching:  # four shared system prompts of 32 tokens, hashed in blocks of 8
            kw = {"prefix_hashes": (i % 4, 100 + i % 4, 200 + i % 4, 300 + i % 4, 1000 + i)}
            kw["hash_block_tokens"] = 8
        r = req(i, int(rng.integers(33, 60)), int(rng.integers(1, 80)), **kw)
        rs.append(r)
        pol.add(r, 0.0)
    t = 0.0
    for _ in range(20_000):
        plan, t = step(pol, t)
        if plan is None:
            break
        res = pol.reservations
        if res is not None:
            assert res.outstanding >= 0
            assert pol.pool.used + res.outstanding <= pol.pool.total
    return rs, pol


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("caching", [False, True])
def test_no_evict_under_overload_never_preempts_and_returns_every_block(
    chunked: bool, caching: bool
) -> None:
    kw = {"chunked_prefill": chunked, "prefix_caching": caching, "max_num_seqs": 32}
    if chunked:
        kw |= {"max_num_batched_tokens": 48, "long_prefill_token_threshold": 16}
    preempting, _ = _overload(ContinuousConfig(**kw), caching=caching)
    assert sum(r.preemptions for r in preempting) > 30  # the overload is real
    rs, pol = _overload(ContinuousConfig(admission="no_evict", **kw), caching=caching)
    assert all(r.status == Status.FINISHED for r in rs)
    assert sum(r.preemptions for r in rs) == 0
    assert all(r.num_output == r.max_output_tokens for r in rs)
    assert pol.pool.used == 0 and pol.reservations.outstanding == 0
    if caching:
        assert pol.pool.hit_tokens > 0


def test_no_evict_speculative_reserves_the_draft_positions_by_hand() -> None:
    # k = 4 draft tokens, blocks of 4, 5 blocks. R0 and R1: 4 prompt, 4 output tokens. A
    # verification step needs positions up to computed + k + 1, so each reserves
    # ceil((4 + 4 + 4) / 4) = 3 blocks: R0 is admitted (1 block held, 2 outstanding), R1 needs
    # 3 + 2 > 4 free and waits. Reserving only prompt + output (2 blocks each) would admit
    # both, and their first verification step (2 blocks each, 3 free) would preempt.
    cfg = SpeculativeConfig(
        draft_model="Llama-3.2-1B", max_num_seqs=4, max_num_batched_tokens=64, admission="no_evict"
    )
    pol = cfg.build(ctx(blocks=5, bs=4))
    rs = [req(0, 4, 4), req(1, 4, 4)]
    for r in rs:
        pol.add(r, 0.0)
    plan, t = step(pol, 0.0)
    assert [r.id for r, _ in plan.prefills] == [0]
    for _ in range(10):
        plan, t = step(pol, t)
    assert [r.status for r in rs] == [Status.FINISHED, Status.FINISHED]
    assert [r.preemptions for r in rs] == [0, 0]
    assert pol.pool.used == 0 and pol.reservations.outstanding == 0


def test_no_evict_speculative_run_never_preempts() -> None:
    sc = make_scenario(
        engine=llmsim.EngineConfig(
            cost=llmsim.ConstantConfig(step_s=STEP), max_model_len=1024, block_size=16, kv_blocks=60
        ),
        policy=SpeculativeConfig(
            draft_model="Llama-3.2-1B",
            max_num_seqs=64,
            max_num_batched_tokens=512,
            admission="no_evict",
        ),
    )
    res = llmsim.simulate(sc)
    assert res.summary["preemptions"] == 0
    assert res.summary["completed"] == sc.workload.num_requests
    preempting = llmsim.simulate(sc.with_overrides({"policy.admission": "preempt"}))
    assert preempting.summary["preemptions"] > 0


# --- configuration --------------------------------------------------------------------------------


def test_tensorrt_llm_preset_never_evicts_and_vllm_presets_preempt() -> None:
    def admission(preset: str, **policy: object) -> str:
        sc = llmsim.Scenario.model_validate(
            {
                **make_scenario().model_dump(exclude={"engine", "policy"}),
                "engine": {"preset": preset, "max_model_len": 4096},
                "policy": {"kind": "continuous", **policy},
            }
        )
        return sc.policy.admission

    assert admission("tensorrt-llm") == "no_evict"
    assert admission("tensorrt-llm", admission="preempt") == "preempt"  # explicit wins
    assert admission("vllm-v1") == "preempt" and admission("sglang") == "preempt"
    # TensorRT-LLM's own names for capacity_scheduler_policy
    assert ContinuousConfig(admission="GUARANTEED_NO_EVICT").admission == "no_evict"  # type: ignore[arg-type]
    assert ContinuousConfig(admission="max_utilization").admission == "preempt"  # type: ignore[arg-type]


def test_bad_admission_is_a_one_line_error() -> None:
    text = (ROOT / "scenarios" / "quickstart.yaml").read_text()
    text = text.replace("  kind: continuous\n", "  kind: continuous\n  admission: evict\n")
    with pytest.raises(llmsim.ConfigError) as info:
        llmsim.Scenario.from_yaml(text, "mine.yaml")
    msg = str(info.value)
    assert msg.startswith("mine.yaml: policy") and "admission" in msg
    assert "'evict'" in msg and "no_evict" in msg and "\n" not in msg


# --- recompute that outgrows the token budget (a stall before) ------------------------------------


def test_recompute_longer_than_the_token_budget_still_runs() -> None:
    # Prefill-first with a 16-token budget below max_model_len. Two 12-token prompts with 20
    # output tokens on 14 blocks of 4: request 1 is preempted once it has generated enough
    # that prompt + generated > 16, so its recompute can never fit the budget. It used to
    # wait at the head of the queue forever ("1 requests never finished"); it now runs alone.
    res = run(
        [0.0, 0.0],
        [12, 12],
        [20, 20],
        ContinuousConfig(max_num_seqs=2, max_num_batched_tokens=16, watermark=0.0),
        block_size=4,
        kv_blocks=14,
    )
    df = res.requests.set_index("request_id")
    assert df["status"].tolist() == ["finished", "finished"]
    assert df["preemptions"].tolist() == [0, 1]
    assert res.steps["prefill_tokens"].max() > 16  # the recompute, over the budget


# --- the CLI says when preemption drives a run ----------------------------------------------------


def test_cli_warns_when_preemption_drives_the_run(tmp_path: Path) -> None:
    quick = ROOT / "scenarios" / "quickstart.yaml"
    base = ["run", str(quick), "--set", "workload.num_requests=200"]
    res = CliRunner().invoke(
        app, [*base, "--out", str(tmp_path / "a"), "--set", "engine.kv_blocks=400"]
    )
    assert res.exit_code == 0, res.output
    assert "preemption drives this prediction" in res.stderr
    assert "per request" in res.stdout
    res = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert "preemption" not in res.stderr


# --- in-flight batching of whole prompts (TensorRT-LLM without chunked context) -------------------


def test_mixed_prefill_schedule_by_hand() -> None:
    # test_handworked's prefill-first case with mixed steps. R0 at 0 ms (4 prompt, 3 output),
    # R1 at 5 ms (4, 2), R2 at 25 ms (4, 1); max 2 sequences; 10 ms per step.
    #  0-10  prefill R0                    -> R0 token 1 at 10
    # 10-20  decode R0 + prefill R1        -> R0 token 2, R1 token 1 at 20
    # 20-30  decode R0, R1                 -> R0 token 3, R1 token 2: both done at 30
    # 30-40  prefill R2                    -> done at 40
    # (prefill-first runs R1's prefill alone at 10-20 and finishes R0 at 50)
    policy = ContinuousConfig(max_num_seqs=2, max_num_batched_tokens=64, mixed_prefill=True)
    res = run([0.0, 0.005, 0.025], [4, 4, 4], [3, 2, 1], policy)
    df = res.requests.set_index("request_id")
    np.testing.assert_allclose(df["first_token"], [0.010, 0.020, 0.040], atol=1e-12)
    np.testing.assert_allclose(df["finish"], [0.030, 0.030, 0.040], atol=1e-12)
    assert res.steps["prefill_tokens"].tolist() == [4, 4, 0, 4]
    assert res.steps["decode_tokens"].tolist() == [0, 1, 2, 0]


def test_mixed_prefill_admits_whole_prompts_within_the_budget_left() -> None:
    # Budget 64 with 8 requests decoding leaves 56 tokens. A 60-token prompt does not fit
    # whole and is not chunked, so it waits, and the 50-token prompt behind it waits too
    # (queue order, as TensorRT-LLM's micro-batch scheduler stops at the first misfit).
    # Alone, the 50-token prompt joins the 8 decodes.
    cfg = ContinuousConfig(max_num_seqs=16, max_num_batched_tokens=64, mixed_prefill=True)
    pol = cfg.build(ctx())
    for i in range(8):
        pol.add(req(i, 4, 50), 0.0)
    _, t = step(pol, 0.0)
    pol.add(req(8, 60, 5), t)
    pol.add(req(9, 50, 5), t)
    plan = pol.schedule(t)
    assert plan.shape.decode_seqs == 8 and not plan.prefills
    pol = cfg.build(ctx())
    for i in range(8):
        pol.add(req(i, 4, 50), 0.0)
    _, t = step(pol, 0.0)
    pol.add(req(9, 50, 5), t)
    plan = pol.schedule(t)
    assert plan.shape.decode_seqs == 8 and [(r.id, q) for r, q in plan.prefills] == [(9, 50)]


def test_tensorrt_llm_preset_mixes_whole_prompts() -> None:
    sc = llmsim.Scenario.model_validate(
        {
            **make_scenario().model_dump(exclude={"engine", "policy"}),
            "engine": {"preset": "tensorrt-llm", "max_model_len": 4096},
        }
    )
    assert sc.policy.mixed_prefill and not sc.policy.chunked_prefill
    with pytest.raises(ValueError, match="mixed_prefill"):
        SpeculativeConfig(draft_model="Llama-3.2-1B", mixed_prefill=True)


def test_quiet_run_keeps_the_preemption_warning(tmp_path: Path) -> None:
    quick = ROOT / "scenarios" / "quickstart.yaml"
    args = ["run", str(quick), "-q", "--set", "workload.num_requests=200"]
    args += ["--out", str(tmp_path), "--set", "engine.kv_blocks=400"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert res.stdout == ""
    assert "preemption drives this prediction" in res.stderr
