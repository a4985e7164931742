"""llmsim check: paired seeds, bootstrap intervals, verdicts, baselines, reports, exit codes."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from llmsim.check import compare, compare_metric, paired_bootstrap, parse_tolerances
from llmsim.cli import app
from llmsim.errors import ConfigError

runner = CliRunner()

# 10 ms per step whatever the batch: a policy that adds 1 ms to every step is 10 % slower.
SCENARIO = """
name: gate
seed: 11
model: Llama-3.1-8B
hardware: H100-SXM
engine:
  max_model_len: 2048
  cost: {kind: constant, step_s: 0.01}
policy: {kind: continuous, max_num_seqs: 16}
workload:
  arrival: {kind: poisson, rate: 20}
  prompt_tokens: {kind: uniform, low: 16, high: 256}
  output_tokens: {kind: uniform, low: 2, high: 48}
  num_requests: 200
metrics: {slo_ttft_ms: 500, slo_tpot_ms: 15}
"""

POLICIES = '''
from llmsim.policies import ContinuousConfig, ContinuousPolicy


class SamePolicy(ContinuousPolicy):
    """The continuous policy, loaded from outside: must change nothing."""

    Config = ContinuousConfig


class SlowConfig(ContinuousConfig):
    extra_ms: float = 1.0


class SlowPolicy(ContinuousPolicy):
    """The continuous policy, every step ``extra_ms`` slower."""

    Config = SlowConfig

    def schedule(self, now):
        plan = super().schedule(now)
        if plan is not None:
            plan.decode_steps = min(plan.decode_steps, 1)  # one step per plan: each pays
            plan.extra_s += self.cfg.extra_ms / 1e3
        return plan
'''


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "gate.yaml").write_text(SCENARIO)
    (tmp_path / "ext").mkdir()
    (tmp_path / "ext" / "team_policies.py").write_text(POLICIES)
    monkeypatch.syspath_prepend(str(tmp_path / "ext"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("team_policies", None)


def invoke(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, ["check", *args, "-j", "2"])
    return res.exit_code, res.output


# --- statistics ---------------------------------------------------------------------------------


def test_bootstrap_of_a_constant_ratio_is_that_ratio() -> None:
    base = np.array([3.0, 5.0, 8.0, 13.0])
    change, lo, hi = paired_bootstrap(base, base * 1.1)
    assert change == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1)


def test_bootstrap_interval_covers_the_change_and_is_reproducible() -> None:
    rng = np.random.default_rng(3)
    base = rng.uniform(90, 110, 12)
    cand = base * rng.uniform(1.0, 1.2, 12)
    change, lo, hi = paired_bootstrap(base, cand)
    assert lo < change < hi
    assert paired_bootstrap(base, cand) == (change, lo, hi)


@pytest.mark.parametrize(
    ("metric", "factor", "verdict"),
    [
        ("p99_ttft_ms", 1.10, "regression"),  # latency up 10 %, tolerance 5 %
        ("p99_ttft_ms", 1.03, "within tolerance"),
        ("p99_ttft_ms", 0.90, "improvement"),
        ("request_throughput", 0.90, "regression"),  # throughput down is worse
        ("request_throughput", 1.10, "improvement"),
        ("goodput", 1.0, "no significant change"),
    ],
)
def test_direction_and_tolerance(metric: str, factor: float, verdict: str) -> None:
    base = [10.0, 12.0, 9.0, 11.0]
    check = compare_metric("s", metric, base, [b * factor for b in base], 0.05)
    assert check.verdict == verdict


def test_noise_is_not_a_regression() -> None:
    base = [10.0, 14.0, 8.0, 12.0, 9.0]
    cand = [16.0, 9.0, 13.0, 8.0, 12.3]  # 10 % higher mean, but the seeds disagree
    check = compare_metric("s", "p99_ttft_ms", base, cand, 0.05)
    assert check.change > 0.05 and check.low < 0
    assert check.verdict == "no significant change"


def test_more_rejected_requests_fail_and_void_latency_improvements() -> None:
    base = {"p99_ttft_ms": [100.0, 110.0], "rejected": [0.0, 0.0]}
    cand = {"p99_ttft_ms": [50.0, 55.0], "rejected": [0.0, 3.0], "overload_events": [0.0, 1.0]}
    checks = {c.metric: c for c in compare("s", base, cand, ["p99_ttft_ms"], {}, 0.05)}
    assert checks["rejected"].regressed
    assert checks["overload_events"].regressed  # a failure key only the candidate reports
    assert checks["p99_ttft_ms"].verdict == "no significant change"  # not an improvement
    fewer = compare("s", cand, base, ["p99_ttft_ms"], {}, 0.05)  # the other way round
    assert [c.metric for c in fewer if c.failures and not c.regressed] == [
        "rejected",
        "overload_events",
    ]


def test_tolerances_parse() -> None:
    assert parse_tolerances(["0.1", "p99_ttft_ms=0.2"], 0.05) == (0.1, {"p99_ttft_ms": 0.2})
    with pytest.raises(ConfigError, match="--tolerance"):
        parse_tolerances(["-1"], 0.05)
    with pytest.raises(ConfigError, match="'ttft=x'"):
        parse_tolerances(["ttft=x"], 0.05)


# --- the command: the two acceptance cases ---------------------------------------------------


def test_unchanged_policy_passes(files: Path) -> None:
    code, out = invoke(
        "gate.yaml", "--candidate-policy", "team_policies:SamePolicy", "--markdown", "pr.md"
    )
    assert code == 0, out
    assert "PASS: no significant regression" in out
    md = (files / "pr.md").read_text()
    assert "REGRESSION" not in out and "+0.0% [+0.0%, +0.0%]" in md  # the very same runs


def test_policy_slowed_by_ten_percent_fails(files: Path) -> None:
    code, out = invoke(
        "gate.yaml", "--candidate-policy", "team_policies:SlowPolicy", "--junit", "junit.xml",
        "--markdown", "pr.md",
    )  # fmt: skip
    assert code == 1, out
    assert "FAIL" in out
    suite = ET.parse(files / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    failed = {c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None}
    assert {"p99_e2el_ms", "goodput"} <= failed  # every request 10 % longer, fewer in SLO
    assert int(suite.get("failures", "0")) == len(failed)
    md = (files / "pr.md").read_text()
    assert md.startswith("### llmsim check: FAIL")
    assert "| gate | `p99_tpot_ms` |" in md


def test_two_scenario_files(files: Path) -> None:
    slower = SCENARIO.replace("step_s: 0.01", "step_s: 0.011")
    (files / "slower.yaml").write_text(slower)
    code, out = invoke("gate.yaml", "--candidate", "slower.yaml", "-m", "mean_tpot_ms")
    assert code == 1 and "mean_tpot_ms" in out
    code, out = invoke("gate.yaml", "--candidate", "slower.yaml", "-m", "mean_tpot_ms", "-t", "0.5")
    assert code == 0, out  # within a 50 % tolerance


def test_committed_baseline(files: Path) -> None:
    code, out = invoke("gate.yaml", "--baseline", "base.json", "--update-baseline", "-n", "3")
    assert code == 0, out
    stored = json.loads((files / "base.json").read_text())
    assert stored["scenarios"]["gate"]["seeds"] == [11, 12, 13]
    assert len(stored["scenarios"]["gate"]["metrics"]["p99_ttft_ms"]) == 3
    code, out = invoke("gate.yaml", "--baseline", "base.json", "-n", "3")
    assert code == 0 and "PASS" in out
    code, out = invoke(
        "gate.yaml", "--baseline", "base.json", "-n", "3",
        "--candidate-policy", "team_policies:SlowPolicy",
    )  # fmt: skip
    assert code == 1
    code, out = invoke("gate.yaml", "--baseline", "base.json", "-n", "3", "--set", "seed=1")
    assert code == 2 and "changed since the baseline" not in out and "seeds" in out
    code, out = invoke("gate.yaml", "--baseline", "base.json", "-n", "3", "-s", "workload.rate=5")
    assert code == 2 and "changed since the baseline was written" in out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["gate.yaml"], "nothing to compare"),
        (["gate.yaml", "gate.yaml", "--candidate", "gate.yaml"], "give one SCENARIO"),
        (["gate.yaml", "--candidate-set", "seed=2", "-t", "five"], "--tolerance"),
        (["gate.yaml", "--candidate-set", "seed=2", "-n", "0"], "--seeds must be at least 1"),
        (["gate.yaml", "--baseline", "missing.json"], "baseline file not found"),
        (["gate.yaml", "--candidate-policy", "team_policies:Nope"], "has no 'Nope'"),
        (["gate.yaml", "--update-baseline"], "--update-baseline needs --baseline"),
        (
            ["gate.yaml", "--baseline", "b.json", "--update-baseline", "--candidate-set", "seed=1"],
            "drop --candidate",
        ),
        (
            ["gate.yaml", "--candidate-set", "seed=2", "-m", "p99_ttft", "-n", "1"],
            "metric 'p99_ttft' is not in the summary of 'gate' (did you mean",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(files: Path, args: list[str], words: str) -> None:
    code, out = invoke(*args)
    assert code == 2, out
    assert words in out and "Traceback" not in out
