"""vLLM benchmark parity: the random and sonnet datasets, the renamed ShareGPT set, summary keys
a benchmark_serving reader consumes, --goodput / --metric-percentiles, and --max-concurrency."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import llmsim
from llmsim.cli import app
from llmsim.metrics import parse_goodput
from llmsim.workload import RandomDataset, SonnetDataset, WorkloadConfig

ROOT = Path(__file__).resolve().parent.parent
BENCH_RESULT = ROOT / "tests" / "data" / "user_runs" / "bench_summary.json"
VLLM_SETTINGS = {"date", "endpoint_type", "backend", "label", "model_id", "tokenizer_id",
                 "num_prompts", "request_rate", "burstiness", "max_concurrency"}  # fmt: skip
runner = CliRunner()


def small(workload: dict, **metrics: object) -> llmsim.Scenario:
    return llmsim.Scenario.model_validate(
        {
            "name": "parity",
            "seed": 3,
            "model": "Llama-3.1-8B",
            "hardware": "H100-SXM",
            "policy": {"kind": "continuous", "prefix_caching": True},
            "workload": workload,
            "metrics": metrics,
        }
    )


def test_random_lengths_span_vllms_range() -> None:
    ds = RandomDataset(input_len=100, output_len=11, range_ratio=0.25, prefix_len=40)
    rng = np.random.default_rng(0)
    p, o = ds.draw(rng, rng, 20_000)
    # prompt = prefix + [floor(75), ceil(125)]; output in [floor(8.25), ceil(13.75)]
    assert (p.min(), p.max()) == (40 + 75, 40 + 125)
    assert (o.min(), o.max()) == (8, 14)
    assert abs(p.mean() - 140) < 0.5 and abs(o.mean() - 11) < 0.1
    fixed = RandomDataset(input_len=1024, output_len=1, range_ratio=0.5)
    assert set(fixed.draw(rng, rng, 100)[1].tolist()) == {1, 2}  # floor(0.5) = 0 raised to 1


def test_sonnet_fixed_lengths_and_prefix() -> None:
    ds = SonnetDataset()
    rng = np.random.default_rng(0)
    p, o = ds.draw(rng, rng, 5)
    assert p.tolist() == [550] * 5 and o.tolist() == [150] * 5
    table = ds.prefix(5)
    assert table is not None
    ids = table.lists()
    assert all(len(x) == 200 // 16 for x in ids) and all(x == ids[0] for x in ids)
    with pytest.raises(ValueError, match="prefix_len"):
        SonnetDataset(input_len=100, prefix_len=100)


def test_random_prefix_is_found_by_the_prefix_cache() -> None:
    # one request at a time: every request but the first finds the 512 shared tokens
    sc = small(
        {
            "arrival": {"kind": "poisson", "rate": 0.5},
            "dataset": {"kind": "random", "input_len": 300, "output_len": 8, "prefix_len": 512},
            "num_requests": 40,
        }
    )
    res = llmsim.simulate(sc)
    prompts = res.requests["prompt_tokens"]
    assert prompts.min() == prompts.max() == 812
    assert res.summary["prefix_cache_hit_rate"] == pytest.approx(39 * 512 / prompts.sum())


def test_dataset_excludes_other_length_sources() -> None:
    with pytest.raises(ValueError, match="dataset random sets the prompts and outputs"):
        WorkloadConfig.model_validate(
            {
                "arrival": {"kind": "poisson", "rate": 1},
                "dataset": {"kind": "random"},
                "output_tokens": {"kind": "fixed", "value": 3},
                "num_requests": 3,
            }
        )


def test_old_sharegpt_name_names_the_new_one(tmp_path: Path) -> None:
    text = (ROOT / "scenarios" / "quickstart.yaml").read_text()
    bad = tmp_path / "old.yaml"
    bad.write_text(text.replace("dataset: sharegpt_multiturn", "dataset: sharegpt"))
    res = runner.invoke(app, ["validate", str(bad)])
    assert res.exit_code == 2
    line = res.output.strip()
    assert "\n" not in line and "Traceback" not in res.output
    assert "'sharegpt' was renamed 'sharegpt_multiturn'" in line and "ShareGPT_V3" in line


@pytest.fixture(scope="module")
def run_json(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, llmsim.SimulationResult]:
    out = tmp_path_factory.mktemp("parity")
    args = ["run", str(ROOT / "scenarios" / "quickstart.yaml"), "--out", str(out), "--json"]
    args += ["--set", "workload.num_requests=300", "--goodput", "ttft:100 tpot:20 e2el:9000"]
    args += ["--metric-percentiles", "25,50,99.9"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout)
    assert printed == json.loads((out / "summary.json").read_text())
    sc = llmsim.load_scenario(ROOT / "scenarios" / "quickstart.yaml").with_overrides(
        {
            "workload.num_requests": 300,
            "metrics.slo_ttft_ms": 100,
            "metrics.slo_tpot_ms": 20,
            "metrics.slo_e2el_ms": 9000,
            "metrics.percentiles": [25, 50, 99.9],
        }
    )
    return printed, llmsim.simulate(sc)


def test_summary_has_every_metric_key_of_a_vllm_result(run_json: tuple[dict, object]) -> None:
    ours, _ = run_json
    theirs = json.loads(BENCH_RESULT.read_text())
    for key, value in theirs.items():
        if key in VLLM_SETTINGS:
            continue
        assert key in ours, key
        if isinstance(value, int):  # counts are integers, as in vLLM's
            assert isinstance(ours[key], int), key
        elif isinstance(value, float):
            assert isinstance(ours[key], float), key


def test_std_percentiles_and_goodput_match_the_requests(run_json: tuple[dict, object]) -> None:
    ours, res = run_json
    assert isinstance(res, llmsim.SimulationResult)
    req = res.requests
    ttft = req["ttft"].to_numpy() * 1e3
    assert ours["std_ttft_ms"] == pytest.approx(np.std(ttft))
    assert ours["p25_ttft_ms"] == pytest.approx(np.percentile(ttft, 25))
    assert ours["p50_e2el_ms"] == pytest.approx(ours["median_e2el_ms"])
    assert ours["p99.9_tpot_ms"] == pytest.approx(np.percentile(req["tpot"].dropna() * 1e3, 99.9))
    ok = (ttft <= 100) & (req["tpot"].fillna(0).to_numpy() * 1e3 <= 20)
    ok &= req["e2e"].to_numpy() * 1e3 <= 9000
    assert ours["request_goodput"] == pytest.approx(ok.sum() / ours["duration"])
    assert ours["duration"] == ours["duration_s"] and ours["completed"] == 300


def test_request_goodput_is_null_without_slos(tmp_path: Path) -> None:
    args = ["run", str(ROOT / "scenarios" / "quickstart.yaml"), "--out", str(tmp_path), "-q"]
    res = runner.invoke(app, [*args, "--set", "workload.num_requests=50", "--set", "metrics={}"])
    assert res.exit_code == 0 and res.stdout == ""
    assert json.loads((tmp_path / "summary.json").read_text())["request_goodput"] is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ttft:2000 tpot:100", {"slo_ttft_ms": 2000.0, "slo_tpot_ms": 100.0}),
        ("e2el:1.5", {"slo_e2el_ms": 1.5}),
    ],
)
def test_parse_goodput(text: str, expected: dict[str, float]) -> None:
    assert parse_goodput(text) == expected


@pytest.mark.parametrize("text", ["ttft", "itl:3", "ttft:-1", "tpot:inf", ""])
def test_parse_goodput_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="ttft:2000 tpot:100"):
        parse_goodput(text)


def test_bad_cli_goodput_is_one_line() -> None:
    res = runner.invoke(
        app, ["run", str(ROOT / "scenarios" / "quickstart.yaml"), "--goodput", "ttft=2"]
    )
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert "--goodput: 'ttft=2'" in res.output


OFFLINE = {
    "arrival": {"kind": "batch"},
    "dataset": {"kind": "random", "input_len": 200, "output_len": 30, "range_ratio": 0.5},
    "num_requests": 30,
}


def test_max_concurrency_one_sends_each_request_when_the_last_returns() -> None:
    res = llmsim.simulate(small({**OFFLINE, "max_concurrency": 1}))
    req = res.requests.sort_values("request_id")
    assert req["arrival"].iloc[0] == 0
    assert np.array_equal(req["arrival"].to_numpy()[1:], req["finish"].to_numpy()[:-1])
    assert int(res.steps["num_running"].max()) == 1


def test_max_concurrency_equals_closed_loop_clients() -> None:
    capped = llmsim.simulate(small({**OFFLINE, "max_concurrency": 4}))
    arrival = {"kind": "closed_loop", "clients": 4, "ramp_up_s": 0,
               "jitter": {"kind": "fixed", "value": 0}}  # fmt: skip
    closed = llmsim.simulate(small({**OFFLINE, "arrival": arrival}))
    cols = ["request_id", "arrival", "first_token", "finish", "prompt_tokens", "output_tokens"]
    a, b = capped.requests[cols], closed.requests[cols]
    # the same schedule (decode runs are cut at other points: sums differ in the last bit)
    assert np.allclose(a.to_numpy(), b.to_numpy(), rtol=0, atol=1e-12)
    # never more than 4 in flight, and 4 whenever requests are left to send
    events = sorted([(t, 1) for t in a["arrival"]] + [(t, -1) for t in a["finish"]])
    in_flight = np.cumsum([d for _, d in events])
    assert in_flight.max() == 4


def test_max_concurrency_refused_with_closed_loop() -> None:
    with pytest.raises(ValueError, match="remove max_concurrency"):
        WorkloadConfig.model_validate(
            {**OFFLINE, "arrival": {"kind": "closed_loop", "clients": 2}, "max_concurrency": 2}
        )


def test_shipped_closed_loop_scenario_holds_its_concurrency() -> None:
    sc = llmsim.load_scenario(ROOT / "scenarios" / "closed_loop_concurrency.yaml")
    res = llmsim.simulate(sc.with_overrides({"workload.num_requests": 160}))
    req = res.requests
    events = sorted([(t, 1) for t in req["arrival"]] + [(t, -1) for t in req["finish"]])
    assert np.cumsum([d for _, d in events]).max() == 32
    # Little's law over the steady part: throughput x E2E is about the 32 clients
    s = res.summary
    assert s["request_throughput"] * s["mean_e2el_ms"] / 1e3 == pytest.approx(32, rel=0.1)
    assert not math.isnan(s["request_goodput"])
