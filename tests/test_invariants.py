"""Property-based checks: random valid scenarios keep the simulator's invariants
(tests/invariants.py) over every policy, KV layout, preemption mode, arrival kind and cluster
shape (tests/strategies.py)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings

from tests.invariants import check_scenario
from tests.strategies import scenarios

CI_EXAMPLES = 300
SLOW_EXAMPLES = int(os.environ.get("LLMSIM_INVARIANT_EXAMPLES", "3000"))
COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}


@settings(max_examples=CI_EXAMPLES, derandomize=True, **COMMON)
@given(scenarios())
def test_random_scenarios_keep_invariants(data: dict) -> None:
    check_scenario(data)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, **COMMON)
@given(scenarios())
def test_many_random_scenarios_keep_invariants(data: dict) -> None:
    check_scenario(data)
