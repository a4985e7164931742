"""llmsim plan: SLO parsing, the per-replica bisection, fleet sizing by simulation, ranking by
cost, the reports and the command line. Constant-time steps make the answers known."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import llmsim
from llmsim.cli import app
from llmsim.errors import ConfigError
from llmsim.executors import LocalExecutor
from llmsim.plan import Candidate, parse_slo, per_replica_rate, plan_capacity
from llmsim.report import Question, to_html, to_markdown

runner = CliRunner()

# One sequence at a time, 10 output tokens, 10 ms per step: a replica serves at most 10 req/s.
SCENARIO = """
name: fleet
seed: 2
model: Llama-3.1-8B
hardware: H100-SXM
engine:
  max_model_len: 2048
  cost: {kind: constant, step_s: 0.01}
policy: {kind: continuous, max_num_seqs: 1}
workload:
  arrival: {kind: poisson, rate: 5}
  prompt_tokens: {kind: fixed, value: 32}
  output_tokens: {kind: fixed, value: 10}
  num_requests: 300
"""
LOOSE = [parse_slo("ttft:p99<100000")]  # only the saturation rule binds


@pytest.fixture
def scenario(tmp_path: Path) -> llmsim.Scenario:
    (tmp_path / "fleet.yaml").write_text(SCENARIO)
    return llmsim.load_scenario(tmp_path / "fleet.yaml")


def test_slo_spellings() -> None:
    s = parse_slo("ttft:p99<2000")
    assert (s.metric, s.limit, s.upper) == ("p99_ttft_ms", 2000.0, True)
    assert parse_slo("e2e:p50 < 9000").metric == "median_e2el_ms"
    assert parse_slo("tpot:mean<=50").metric == "mean_tpot_ms"
    g = parse_slo("goodput>18")
    assert (g.metric, g.upper) == ("goodput", False)
    assert g.met(18.5) and not g.met(17.0) and not g.met(None)
    for bad in ("ttft<", "ttft:p95<10", "latency:p99<5", "ttft:p99<fast"):
        with pytest.raises(ConfigError, match="--slo"):
            parse_slo(bad)


def test_bisection_finds_the_known_saturation_point(scenario: llmsim.Scenario) -> None:
    rate = per_replica_rate(scenario, LOOSE, LocalExecutor())
    # capacity 10 req/s; a rate passes while at least 90 % of it is served
    assert 9.0 <= rate <= 10.0 / 0.9


def test_fleet_is_the_smallest_that_serves_the_load(scenario: llmsim.Scenario) -> None:
    # 35 req/s: 4 replicas serve 8.75 each; 3 would need 11.7, above their capacity of 10
    (plan,) = plan_capacity(scenario, [Candidate("h100", {})], LOOSE, 35.0, seeds=2)
    assert plan.replicas == 4
    assert not plan.fleets[3].passes and plan.fleets[4].passes
    assert plan.replicas <= plan.estimate  # never larger than the per-replica estimate
    assert plan.gpus == 4 and plan.dollars_per_hour == pytest.approx(4 * 2.99)
    assert plan.output_tokens_per_s == pytest.approx(350, rel=0.05)
    per_m = plan.dollars_per_hour / (plan.output_tokens_per_s * 3600) * 1e6
    assert plan.dollars_per_million_output == pytest.approx(per_m)


def test_the_cheaper_of_two_equal_candidates_wins(scenario: llmsim.Scenario) -> None:
    # constant step time: the same fleet on either GPU; the A100 costs less per hour
    cands = [
        Candidate("H100", {"hardware": "H100-SXM"}),
        Candidate("A100", {"hardware": "A100-80GB"}),
    ]
    plans = plan_capacity(
        scenario, cands, LOOSE, 15.0, seeds=1, prices={"H100-SXM": 3.0, "A100-80GB": 1.5}
    )
    assert [p.candidate.label for p in plans] == ["A100", "H100"]
    assert plans[0].replicas == plans[1].replicas == 2
    assert plans[0].dollars_per_hour == 3.0 and plans[1].dollars_per_hour == 6.0
    q = Question("fleet", "Llama-3.1-8B", 15.0, LOOSE, 1, "constant")
    md = to_markdown(plans, q)
    assert "Recommended: A100, 2 replicas (2 GPUs), $3.00/hour" in md
    assert "Runner-up: H100" in md and "(+100%)" in md
    page = to_html(plans, q)
    assert page.count("<tr>") == 3 and page.count('src="data:image/png;base64,') == 2
    assert "http" not in page.replace("http-equiv", "")  # self-contained


@pytest.fixture
def same_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "ext").mkdir()
    (tmp_path / "ext" / "plan_team.py").write_text(
        "from llmsim.policies import ContinuousConfig, ContinuousPolicy\n\n\n"
        "class SamePolicy(ContinuousPolicy):\n    Config = ContinuousConfig\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "ext"))
    yield "plan_team:SamePolicy"
    sys.modules.pop("plan_team", None)


def test_custom_policy_plans_like_the_builtin(scenario: llmsim.Scenario, same_policy: str) -> None:
    # a section whose kind changes starts afresh: its fields come with it
    custom = Candidate(
        "custom",
        {"policy.kind": "custom", "policy.class": same_policy, "policy.max_num_seqs": 1},
    )
    plans = plan_capacity(scenario, [Candidate("builtin", {}), custom], LOOSE, 35.0, seeds=1)
    assert [p.replicas for p in plans] == [4, 4]
    assert plans[0].chosen.summaries == plans[1].chosen.summaries  # type: ignore[union-attr]


def test_cli_writes_reports(tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text(SCENARIO)
    res = runner.invoke(
        app,
        ["plan", str(tmp_path / "fleet.yaml"), "--rate", "15", "--slo", "ttft:p99<100000",
         "-c", "hardware=A100-80GB", "-n", "1", "-o", str(tmp_path / "out"), "-j", "1"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "Recommended: hardware=A100-80GB, 2 replicas" in res.output
    assert (tmp_path / "out" / "plan.html").read_text().startswith("<!DOCTYPE html>")
    assert "# Capacity plan" in (tmp_path / "out" / "plan.md").read_text()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--slo", "ttft:p95<1"], "unknown SLO metric 'ttft:p95'"),
        (["--slo", "ttft:p99<1", "--price", "H100-SXM=cheap"], "--price"),
        (["--slo", "ttft:p99<1", "-c", "hardware=H100-SMX"], "did you mean 'H100-SXM'"),
        (["--slo", "ttft:p99<1", "--set", "workload.arrival={kind: batch}"], "with a rate"),
    ],
)
def test_cli_bad_input_exit_2(tmp_path: Path, extra: list[str], words: str) -> None:
    (tmp_path / "fleet.yaml").write_text(SCENARIO)
    res = runner.invoke(app, ["plan", str(tmp_path / "fleet.yaml"), "--rate", "15", *extra])
    assert res.exit_code == 2, res.output
    assert words in res.output and "Traceback" not in res.output


def test_warnings_near_an_slo_edge_and_when_seeds_disagree(scenario: llmsim.Scenario) -> None:
    from llmsim.plan import CandidatePlan, FleetRun, warnings

    slo = parse_slo("ttft:p99<1000")
    plan = CandidatePlan(Candidate("h100", {}), scenario, 1, 2.99, 10.0, 3)
    plan.fleets[2] = FleetRun(
        2, [{"p99_ttft_ms": 900.0}, {"p99_ttft_ms": 1200.0}], [True, False], ["", "x"]
    )
    plan.fleets[3] = FleetRun(
        3, [{"p99_ttft_ms": 500.0}, {"p99_ttft_ms": 950.0}], [True, True], ["", ""]
    )
    plan.replicas = 3
    said = warnings(plan, [slo])
    assert said == [
        "ttft:p99<1000: the worst seed is 5% inside the limit",
        "2 replicas pass under 1 of 2 seeds: the answer depends on the seed",
    ]
    plan.fleets[3] = FleetRun(
        3, [{"p99_ttft_ms": 500.0}, {"p99_ttft_ms": 600.0}], [True, True], ["", ""]
    )
    plan.fleets[2] = FleetRun(
        2, [{"p99_ttft_ms": 1100.0}, {"p99_ttft_ms": 1200.0}], [False, False], ["x", "x"]
    )
    assert warnings(plan, [slo]) == []


def test_load_a_given_fleet_sustains(scenario: llmsim.Scenario, tmp_path: Path) -> None:
    from llmsim.plan import sustained_rate

    rate = sustained_rate(scenario, LOOSE, LocalExecutor(), replicas=3, seeds=[2, 3])
    assert 27.0 <= rate <= 30.0 / 0.9  # three replicas of 10 req/s each
    (tmp_path / "fleet.yaml").write_text(SCENARIO)
    args = ["plan", str(tmp_path / "fleet.yaml"), "--slo", "ttft:p99<100000", "-n", "1"]
    res = runner.invoke(app, [*args, "--replicas", "3", "-j", "1"])
    assert res.exit_code == 0, res.output
    assert "Load 3 replicas sustain" in res.output and "3 x H100-SXM" in res.output
    both = runner.invoke(app, [*args, "--replicas", "3", "--rate", "5"])
    assert both.exit_code == 2 and "give --rate" in both.output


def test_unreachable_slo_and_unknown_metric(scenario: llmsim.Scenario) -> None:
    # every request takes 10 steps of 10 ms: a p50 E2E under 50 ms is out of reach
    (plan,) = plan_capacity(scenario, [Candidate("h100", {})], [parse_slo("e2e:p50<50")], 5.0)
    assert plan.replicas is None and plan.fleets == {}
    assert plan.error == "one replica misses the SLOs even at a 64th of its capacity"
    with pytest.raises(ConfigError, match=r"'goodput>1': the summary has no 'goodput' \(it needs"):
        plan_capacity(scenario, [Candidate("h100", {})], [parse_slo("goodput>1")], 5.0)


def test_pareto_frontier() -> None:
    from types import SimpleNamespace

    from llmsim.plan import pareto

    def p(per_gpu: float, per_user: float) -> SimpleNamespace:
        return SimpleNamespace(replicas=1, tokens_per_gpu=per_gpu, tokens_per_user=per_user)

    fast, dense, both_worse, middle = p(100, 80), p(900, 20), p(90, 70), p(500, 50)
    front = pareto([fast, dense, both_worse, middle])  # type: ignore[list-item]
    assert front == [fast, dense, middle]


def test_warnings_name_extrapolation_and_seed_dependence(scenario: llmsim.Scenario) -> None:
    from llmsim.plan import CandidatePlan, FleetRun
    from llmsim.plan import warnings as plan_warnings

    ok = {"p99_ttft_ms": 100.0}
    plan = CandidatePlan(Candidate("h100", {}), scenario, 1, 2.99, 10.0, 3)
    plan.fleets[3] = FleetRun(3, [ok, {**ok, "extrapolated": 1.0}], [True, True], ["", ""])
    plan.fleets[2] = FleetRun(2, [ok, ok], [True, False], ["", "p99_ttft_ms"])
    plan.replicas = 3
    notes = plan_warnings(plan, [parse_slo("ttft:p99<2000")])
    assert any("beyond the kernel shapes" in n for n in notes)
    assert any("2 replicas pass under 1 of 2 seeds" in n for n in notes)
    plan.fleets[3] = FleetRun(3, [ok, ok], [True, True], ["", ""])
    plan.fleets.pop(2)
    assert plan_warnings(plan, [parse_slo("ttft:p99<2000")]) == []
