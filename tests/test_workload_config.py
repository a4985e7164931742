"""Workload settings: joint lengths, request classes, one source per workload, YAML round
trips of every new section, and same seed -> same stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import llmsim
from llmsim.errors import ConfigError
from llmsim.workload import (
    DATASETS,
    ClassRule,
    DatasetLengths,
    FixedLength,
    PoissonArrivals,
    RequestStream,
    TraceConfig,
    UniformLength,
    WorkloadConfig,
    generate,
)
from llmsim.workload.classes import assign_classes
from llmsim.workload.datasets import PAIRED_COLUMNS, dataset_path
from tests.conftest import make_scenario

# --- joint lengths ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(DATASETS))
def test_shipped_length_datasets_read(name: str) -> None:
    p, o = DatasetLengths(dataset=name).pairs()
    assert len(p) == len(o) > 500 and p.min() >= 1 and o.min() >= 1
    assert name in PAIRED_COLUMNS


def test_joint_sampling_keeps_pairs_together() -> None:
    lengths = DatasetLengths(dataset="arxiv")
    p, o = lengths.pairs()
    rows = set(zip(p.tolist(), o.tolist(), strict=True))
    sp, so = lengths.sample(np.random.default_rng(0), 5000)
    assert all(pair in rows for pair in zip(sp.tolist(), so.tolist(), strict=True))
    # the pairing is real: arXiv prompts and outputs are correlated in the data, and the
    # sample keeps that correlation (independent draws would give about 0)
    assert np.corrcoef(sp, so)[0, 1] == pytest.approx(np.corrcoef(p, o)[0, 1], abs=0.05)


def test_joint_filters_and_own_csv(tmp_path: Path) -> None:
    f = tmp_path / "pairs.csv"
    f.write_text("q,a\n10,1\n20,2\n3000,3\n")
    lengths = DatasetLengths(
        path=str(f), prompt_column="q", output_column="a", max_prompt_tokens=100
    )
    sp, so = lengths.sample(np.random.default_rng(0), 200)
    assert set(zip(sp.tolist(), so.tolist(), strict=True)) == {(10, 1), (20, 2)}
    with pytest.raises(ValueError, match="prompt_column and output_column"):
        DatasetLengths(path=str(f))
    with pytest.raises(ConfigError, match="no row passes"):
        DatasetLengths(dataset="sharegpt_multiturn", max_total_tokens=1).pairs()


def test_bad_length_value_names_its_line(tmp_path: Path) -> None:
    f = tmp_path / "pairs.csv"
    f.write_text("q,a\n10,1\n20,x\n")
    with pytest.raises(ConfigError, match=r"pairs\.csv:3.*'a'.*'x'"):
        DatasetLengths(path=str(f), prompt_column="q", output_column="a").pairs()


def test_arxiv_excerpt_matches_the_source_dataset() -> None:
    src = Path("/work/shared/data/traces/arxiv_summarization")
    full = next(src.glob("*.csv"), None) if src.is_dir() else None
    if full is None:
        pytest.skip("source data not available")
    import pandas as pd

    want = pd.read_csv(full, usecols=["num_prefill_tokens", "num_decode_tokens"])
    got = pd.read_csv(dataset_path("arxiv"))
    pd.testing.assert_frame_equal(got, want)


# --- classes ---------------------------------------------------------------------------------


def stream(prompts: list[int], tags: list[str] | None = None) -> RequestStream:
    n = len(prompts)
    return RequestStream(
        np.arange(n, dtype=float),
        np.array(prompts),
        np.ones(n, dtype=np.int64),
        request_class=None if tags is None else np.array(tags, dtype=object),
    )


def test_classes_by_prompt_length_first_match_wins() -> None:
    rules = (
        ClassRule(name="long", min_prompt_tokens=1000, priority=2),
        ClassRule(name="short", max_prompt_tokens=100, priority=0),
    )
    s = assign_classes(stream([50, 5000, 500, 100, 1000]), rules, np.random.default_rng(0))
    assert s.request_class is not None and s.priority is not None
    assert s.request_class.tolist() == ["short", "long", "default", "short", "long"]
    assert s.priority.tolist() == [0, 2, 0, 0, 2]


def test_classes_from_tags_and_shares() -> None:
    tags = ["API log", "Conversation log"] * 2000
    rules = (
        ClassRule(name="batch", tags=("API log",), priority=1),
        ClassRule(name="interactive", share=0.25),
    )
    s = assign_classes(stream([10] * 4000, tags), rules, np.random.default_rng(0))
    assert s.request_class is not None
    cls = s.request_class
    assert set(cls[::2]) == {"batch"}
    conv = cls[1::2]
    assert set(conv) == {"interactive", "Conversation log"}
    assert np.mean(conv == "interactive") == pytest.approx(0.25, abs=0.05)


def test_class_rule_bounds_checked() -> None:
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        ClassRule(name="x", min_prompt_tokens=10, max_prompt_tokens=5)


# --- one source, round trips, determinism ------------------------------------------------------


def synth(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "arrival": PoissonArrivals(rate=1.0),
        "prompt_tokens": FixedLength(value=5),
        "output_tokens": FixedLength(value=5),
        "num_requests": 10,
    }
    base.update(kw)
    return base


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"trace": TraceConfig(dataset="azure_conv")}, "exactly one of 'arrival' or 'trace'"),
        ({"arrival": None}, "exactly one of 'arrival' or 'trace'"),
        ({"lengths": DatasetLengths(dataset="sharegpt_multiturn")}, "either prompt_tokens"),
        ({"output_tokens": None}, "both prompt_tokens and output_tokens"),
        ({"duration_s": 5.0}, "exactly one of num_requests or duration_s"),
    ],
)
def test_workload_source_rules(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        WorkloadConfig(**synth(**kw))  # type: ignore[arg-type]


def test_trace_excludes_synthetic_lengths() -> None:
    with pytest.raises(ValueError, match="'prompt_tokens' cannot be used with a trace"):
        WorkloadConfig(trace=TraceConfig(dataset="azure_conv"), prompt_tokens=FixedLength(value=1))
    prefix = {"groups": 1, "prompts_per_group": 2, "system_prompt_tokens": 8, "question_tokens": 4}
    with pytest.raises(ValueError, match="'shared_prefix' cannot be used with a trace"):
        WorkloadConfig.model_validate({"trace": {"dataset": "azure_conv"}, "shared_prefix": prefix})


WORKLOAD_YAML = {
    "gamma": "arrival: {kind: gamma, rate: 3, cv: 2}\n  lengths: {dataset: arxiv}\n"
    "  num_requests: 50",
    "constant": "arrival: {kind: constant, rate: 3}\n"
    "  prompt_tokens: {kind: fixed, value: 10}\n  output_tokens: {kind: fixed, value: 5}\n"
    "  duration_s: 10",
    "onoff": "arrival: {kind: onoff, rate: 10, on_s: 1, off_s: 3, periods: exponential}\n"
    "  lengths: {dataset: sharegpt_multiturn, max_total_tokens: 4000}\n  duration_s: 30",
    "piecewise": "arrival:\n    kind: piecewise\n    repeat: true\n    schedule:\n"
    "      - {duration_s: 5, rate: 1}\n      - {duration_s: 5, rate: 8}\n"
    "  lengths: {dataset: azure_code}\n  num_requests: 40",
    "diurnal": "arrival: {kind: diurnal, rate: 2, period_s: 60}\n"
    "  lengths: {dataset: azure_conv}\n  duration_s: 60",
    "closed": "arrival: {kind: closed_loop, clients: 4, think_time: {kind: exponential, mean: 2}}"
    "\n  lengths: {dataset: sharegpt_multiturn}\n  num_requests: 30",
    "sessions": "arrival: {kind: poisson, rate: 1}\n  lengths: {dataset: sharegpt_multiturn}\n"
    "  sessions:\n    turns: {kind: uniform, low: 1, high: 4}\n"
    "    think_time: {kind: lognormal, mean: 5, cv: 0.5}\n    system_prompt_tokens: 64\n"
    "  classes:\n    - {name: big, min_prompt_tokens: 2000, priority: 1}\n  num_requests: 40",
    "trace": "trace: {dataset: mooncake_conversation, time_scale: 2, sample: 0.5,"
    " max_requests: 30}",
    "csv": "trace:\n    format: csv\n    path: some.csv\n    columns: {timestamp: t, hash_ids: h}\n"
    "    hash_block_size: 64\n    time_unit: ms",
}

HEAD = "model: Llama-3.1-8B\nhardware: H100-SXM\nengine: {max_model_len: 16384}\nworkload:\n  "


@pytest.mark.parametrize("name", list(WORKLOAD_YAML))
def test_yaml_round_trip(name: str) -> None:
    sc = llmsim.Scenario.from_yaml(HEAD + WORKLOAD_YAML[name])
    again = llmsim.Scenario.from_yaml(sc.to_yaml())
    assert again == sc


@pytest.mark.parametrize("name", [n for n in WORKLOAD_YAML if n != "csv"])
def test_same_seed_same_stream(name: str) -> None:
    wl = llmsim.Scenario.from_yaml(HEAD + WORKLOAD_YAML[name]).workload
    a = generate(wl, np.random.SeedSequence(5))
    b = generate(wl, np.random.SeedSequence(5))
    assert len(a) > 0
    for f in (
        "arrival",
        "prompt_tokens",
        "output_tokens",
        "session_id",
        "turn",
        "request_class",
        "priority",
        "think_s",
    ):
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)
    if a.prefix is not None:
        assert b.prefix is not None and a.prefix.lists() == b.prefix.lists()


def test_yaml_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"workload\.arrival\.cv.*greater than 0"):
        llmsim.Scenario.from_yaml(
            HEAD + "arrival: {kind: gamma, rate: 1, cv: 0}\n"
            "  lengths: {dataset: arxiv}\n  num_requests: 5"
        )
    with pytest.raises(ConfigError, match=r"workload\.arrival\.kind.*unknown kind 'gama'"):
        llmsim.Scenario.from_yaml(
            HEAD + "arrival: {kind: gama, rate: 1}\n  lengths: {dataset: arxiv}\n  num_requests: 5"
        )
    with pytest.raises(ConfigError, match=r"workload\.trace.*unknown dataset 'azure'"):
        llmsim.Scenario.from_yaml(HEAD + "trace: {dataset: azure}")


def test_rate_shorthand_reaches_new_processes() -> None:
    sc = make_scenario()
    for arrival in ("{kind: gamma, rate: 1, cv: 2}", "{kind: diurnal, rate: 1, period_s: 60}"):
        sc2 = llmsim.Scenario.from_yaml(
            HEAD + f"arrival: {arrival}\n  lengths: {{dataset: arxiv}}\n  num_requests: 5"
        ).with_overrides(["workload.rate=7"])
        assert sc2.workload.arrival.rate == 7.0  # type: ignore[union-attr]
    assert sc.workload.arrival is not None


def test_plain_workload_simulates_as_before() -> None:
    sc = make_scenario(
        workload=WorkloadConfig(
            arrival=PoissonArrivals(rate=5.0),
            prompt_tokens=UniformLength(low=16, high=512),
            output_tokens=UniformLength(low=2, high=128),
            num_requests=50,
        )
    )
    res = llmsim.simulate(sc)
    assert len(res.requests) == 50
