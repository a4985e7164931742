"""Policies from outside the package (``kind: custom``): the worked example of
docs/policies.md, loaded from a temporary module, run directly and through ``run_sweep``."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import llmsim
from llmsim.errors import ConfigError
from llmsim.executors import ProcessExecutor
from llmsim.grid import parse_axes
from llmsim.models import get_model
from llmsim.sweep import run_sweep

ROOT = Path(__file__).resolve().parent.parent

SCENARIO = """
name: tenants
seed: 5
model: Llama-3.1-8B
hardware: H100-SXM
engine:
  max_model_len: 2048
  cost: {kind: constant, step_s: 0.01}
policy: {kind: continuous, max_num_seqs: 1}
workload:
  arrival: {kind: batch}
  prompt_tokens: {kind: fixed, value: 32}
  output_tokens: {kind: fixed, value: 5}
  num_requests: 200
  classes:
    - {name: small, share: 0.2}
    - {name: big}
"""


def docs_example() -> str:
    """The Python block of the worked example in docs/policies.md."""
    text = (ROOT / "docs" / "policies.md").read_text()
    section = text.split("**A worked example.**", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


@pytest.fixture
def team_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The docs' FairPolicy as my_team/scheduler.py in a temporary folder on the path (also
    for pool workers, which inherit it), plus a policy that lacks methods."""
    pkg = tmp_path / "ext" / "my_team"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "scheduler.py").write_text(
        docs_example() + "\n\nclass Incomplete:\n    def add(self, r, now):\n        pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "ext"))
    yield "my_team.scheduler"
    for name in [m for m in sys.modules if m == "my_team" or m.startswith("my_team.")]:
        del sys.modules[name]


def scenario(tmp_path: Path, policy: dict[str, object]) -> llmsim.Scenario:
    """The tenants scenario with ``policy`` (one sequence at a time unless it says)."""
    path = tmp_path / "tenants.yaml"
    path.write_text(SCENARIO)
    return llmsim.load_scenario(path, {"policy": {"max_num_seqs": 1, **policy}})


def mean_ttft(result: llmsim.SimulationResult, tag: str) -> float:
    req = result.requests
    return float(req.loc[req["request_class"] == tag, "ttft"].mean())


def test_fair_policy_from_outside_serves_the_small_tenant_sooner(
    tmp_path: Path, team_module: str
) -> None:
    fair = scenario(tmp_path, {"kind": "custom", "class": f"{team_module}:FairPolicy"})
    assert fair.policy.kind == "custom"
    fcfs = scenario(tmp_path, {"kind": "continuous", "max_num_seqs": 1})
    r_fair, r_fcfs = llmsim.simulate(fair), llmsim.simulate(fcfs)
    # same work, same capacity: the order changes, not the totals
    assert r_fair.summary["completed"] == r_fcfs.summary["completed"] == 200
    assert r_fair.summary["duration_s"] == pytest.approx(r_fcfs.summary["duration_s"])
    # all at t=0, one at a time: FCFS serves the classes interleaved at random, round robin
    # serves a small request every other turn until they run out
    assert mean_ttft(r_fair, "small") < 0.5 * mean_ttft(r_fcfs, "small")
    assert mean_ttft(r_fair, "big") > mean_ttft(r_fcfs, "big")
    order = r_fair.requests.sort_values("first_token")["request_class"].tolist()
    assert order[:10] == ["small", "big"] * 5 or order[:10] == ["big", "small"] * 5


def test_settings_are_validated_by_the_policy_config(tmp_path: Path, team_module: str) -> None:
    cls = f"{team_module}:FairPolicy"
    sc = scenario(tmp_path, {"kind": "custom", "class": cls, "quantum": 3})
    assert sc.policy.settings.quantum == 3  # type: ignore[union-attr]
    assert llmsim.Scenario.from_yaml(sc.to_yaml()) == sc  # written flat, read back equal
    assert "quantum: 3" in sc.to_yaml()
    with pytest.raises(ConfigError, match=r"policy: quantum: .*valid integer.*got 'x'"):
        scenario(tmp_path, {"kind": "custom", "class": cls, "quantum": "x"})
    with pytest.raises(ConfigError, match=r"policy: quantom: unknown field"):
        scenario(tmp_path, {"kind": "custom", "class": cls, "quantom": 2})


@pytest.mark.parametrize(
    ("cls", "words"),
    [
        ("no_such_team.scheduler:Fair", "cannot import module 'no_such_team.scheduler'"),
        ("my_team.scheduler:Missing", "has no 'Missing'"),
        ("my_team.scheduler:Incomplete", "lacks schedule, update, wake_at"),
        ("fair", "neither module:Class nor an entry point"),
    ],
)
def test_bad_class_is_one_line_naming_it(
    tmp_path: Path, team_module: str, cls: str, words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        scenario(tmp_path, {"kind": "custom", "class": cls})
    msg = str(err.value)
    assert "policy: class:" in msg and words in msg and "\n" not in msg


def test_custom_policy_runs_in_sweep_workers(tmp_path: Path, team_module: str) -> None:
    sc = scenario(tmp_path, {"kind": "custom", "class": f"{team_module}:FairPolicy"})
    axes = parse_axes(["policy.quantum=1,4", "policy.max_num_seqs=1,2"])
    pooled = run_sweep(sc, axes, executor=ProcessExecutor(2))
    assert pooled.failures == []
    alone = llmsim.simulate(sc.with_overrides({"policy.quantum": 4, "policy.max_num_seqs": 2}))
    assert pooled.table.loc[3, "mean_ttft_ms"] == alone.summary["mean_ttft_ms"]
    serial = run_sweep(sc, axes)
    assert serial.table.equals(pooled.table)


def test_a_policy_with_only_the_documented_members_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # nothing beyond the documented interface (no max_model_len attribute, for instance)
    (tmp_path / "bare_policy.py").write_text(
        "class Bare:\n"
        "    def __init__(self, settings, ctx):\n"
        "        self.pool = ctx.pool\n"
        "        self.finished = []\n"
        "    def add(self, r, now): pass\n"
        "    def schedule(self, now): return None\n"
        "    def update(self, plan, start, durations): pass\n"
        "    def wake_at(self, now): return None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sc = llmsim.Scenario.model_validate(
        {
            "model": "Llama-3.1-8B",
            "hardware": "H100-SXM",
            "policy": {"kind": "custom", "class": "bare_policy:Bare"},
            "workload": {
                "arrival": {"kind": "poisson", "rate": 1.0},
                "prompt_tokens": {"kind": "fixed", "value": 8},
                "output_tokens": {"kind": "fixed", "value": 8},
                "num_requests": 4,
            },
        }
    )
    sim = llmsim.Simulation(sc)
    assert sim.replicas[0].max_model_len == get_model("Llama-3.1-8B").max_context
    sys.modules.pop("bare_policy", None)
