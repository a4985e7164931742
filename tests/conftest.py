from __future__ import annotations

from pathlib import Path

import pytest

import llmsim

ROOT = Path(__file__).resolve().parent.parent


def make_scenario(**overrides: object) -> llmsim.Scenario:
    """A small scenario built in Python; keyword arguments override top-level fields."""
    base: dict[str, object] = {
        "name": "test",
        "seed": 1,
        "model": "Llama-3.1-8B",
        "hardware": "H100-SXM",
        "engine": llmsim.EngineConfig(max_model_len=8192),
        "policy": llmsim.ContinuousConfig(max_num_seqs=64, max_num_batched_tokens=8192),
        "workload": llmsim.WorkloadConfig(
            arrival=llmsim.PoissonArrivals(rate=5.0),
            prompt_tokens=llmsim.UniformLength(low=16, high=512),
            output_tokens=llmsim.UniformLength(low=2, high=128),
            num_requests=200,
        ),
    }
    base.update(overrides)
    return llmsim.Scenario(**base)  # type: ignore[arg-type]


@pytest.fixture
def root() -> Path:
    return ROOT
