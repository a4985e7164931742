"""A user's own serving run (a vLLM benchmark result or a per-request log) as a ServingRun."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmsim.e2e.runs import WHOLE_RUN, ServingRun, client_metrics
from llmsim.e2e.user_runs import load_engine_scenario, load_user_run, simulated_extras
from llmsim.engine import simulate
from llmsim.errors import ConfigError
from llmsim.workload import (
    BatchArrivals,
    ConstantArrivals,
    GammaArrivals,
    PoissonArrivals,
    generate,
)

DATA = Path(__file__).resolve().parent / "data" / "user_runs"
ENGINE = DATA / "engine.yaml"


def load(name: str | Path, **kw: Any) -> ServingRun:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_user_run(DATA / name if isinstance(name, str) else name, ENGINE, **kw)


def metrics(run: ServingRun) -> dict[str, float]:
    assert all(stage == WHOLE_RUN for stage, _ in run.measured)
    return {m: v for (_, m), v in run.measured.items()}


def stream(run: ServingRun):  # type: ignore[no-untyped-def]
    return generate(run.scenario.workload, np.random.SeedSequence(run.scenario.seed))


# --- benchmark results ---------------------------------------------------------------------------


def test_detailed_result_keeps_each_request_pair_in_send_order() -> None:
    run = load("bench_detailed.json")
    assert run.key == "bench_detailed" and run.group == "Llama-3.1-8B"
    wl = run.scenario.workload
    # rate inf with max_concurrency 2: all due at once, two in flight; the failed one dropped
    assert wl.arrival == BatchArrivals() and wl.max_concurrency == 2
    assert wl.num_requests == 5
    s = stream(run)
    assert s.prompt_tokens.tolist() == [100, 200, 300, 120, 80]
    assert s.output_tokens.tolist() == [10, 5, 20, 4, 8]
    assert any("1 request failed" in n for n in run.notes)


def test_detailed_result_measured_metrics() -> None:
    m = metrics(load("bench_detailed.json"))
    # From the file's scalars.
    assert m["ttft_mean"] == 76.0 and m["ttft_p50"] == 70.0 and m["ttft_p99"] == 118.4
    assert m["e2e_mean"] == 187.0 and m["e2e_p99"] == pytest.approx(304.6)
    assert m["tpot_mean"] == 17.0 and m["itl_vllm_mean"] == pytest.approx(13.214286)
    assert m["requests_per_sec"] == 10.0 and m["output_tokens_per_sec"] == 94.0
    assert m["input_tokens_per_sec"] == 800 / 0.5
    assert m["n_success"] == 5 and m["n_failed"] == 1
    assert m["prompt_len_mean"] == 160.0 and m["output_len_mean"] == 9.4
    # p90s are not in the file: from the per-request lists (E2E = TTFT + the request's ITLs).
    assert m["ttft_p90"] == pytest.approx(np.percentile([50, 80, 120, 60, 70], 90))
    assert m["e2e_p90"] == pytest.approx(np.percentile([140, 160, 310, 150, 175], 90))
    # (E2E mean - TTFT mean) / (mean output - 1) = (187 - 76) / 8.4 ms
    assert m["itl_mean"] == pytest.approx(111 / 8.4)


def test_summary_result_fixed_lengths_and_gamma_arrivals() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = load_user_run(DATA / "bench_summary.json", ENGINE)
    said = [str(w.message) for w in caught if w.category is UserWarning]
    assert len(said) == len(run.notes) == 3
    wl = run.scenario.workload
    assert wl.arrival == GammaArrivals(rate=4.0, cv=2.0)  # burstiness 0.25: cv 1/sqrt(0.25)
    assert wl.max_concurrency == 8  # the client's cap, below the 19 requests
    assert wl.num_requests == 19
    s = stream(run)
    assert set(s.prompt_tokens.tolist()) == {512} and set(s.output_tokens.tolist()) == {128}
    m = metrics(run)
    assert m["ttft_p90"] == 70.2 and m["ttft_p99"] == 95.0 and m["tpot_p90"] == 13.5
    assert m["itl_vllm_p99"] == 21.7
    assert "e2e_mean" not in m
    assert m["itl_mean"] == 12.5  # no E2E: vLLM's mean TPOT, and a note says so
    assert any("mean TPOT" in n for n in run.notes)


def bench(tmp_path: Path, **changes: Any) -> Path:
    data = json.loads((DATA / "bench_detailed.json").read_text())
    for k, v in changes.items():
        if v is None:
            data.pop(k)
        else:
            data[k] = v
    f = tmp_path / "run.json"
    f.write_text(json.dumps(data))
    return f


@pytest.mark.parametrize(
    ("changes", "arrival"),
    [
        ({"request_rate": 2.5, "max_concurrency": 100}, PoissonArrivals(rate=2.5)),
        ({"request_rate": 2.5, "burstiness": "Infinity", "max_concurrency": None},
         ConstantArrivals(rate=2.5)),
        ({"request_rate": "inf", "max_concurrency": 5}, BatchArrivals()),  # cap >= requests
        ({"max_concurrency": None}, BatchArrivals()),
    ],
)  # fmt: skip
def test_arrivals_from_traffic_settings(
    tmp_path: Path, changes: dict[str, Any], arrival: object
) -> None:
    if changes.get("burstiness") == "Infinity":
        changes["burstiness"] = math.inf
    run = load(bench(tmp_path, **changes))
    assert run.scenario.workload.arrival == arrival
    assert run.scenario.workload.max_concurrency is None  # no cap, or one no run reaches


def test_poisson_arrivals_realise_the_rate(tmp_path: Path) -> None:
    data = json.loads((DATA / "bench_summary.json").read_text())
    data.update(burstiness=1.0, num_prompts=4000, completed=4000, failed=0, max_concurrency=None)
    f = tmp_path / "big.json"
    f.write_text(json.dumps(data))
    run = load(f, seed=3)
    assert run.scenario.seed == 3
    t = stream(run).arrival
    assert len(t) == 4000 and len(t) / t[-1] == pytest.approx(4.0, rel=0.05)


def test_engine_side_comes_from_the_scenario() -> None:
    run = load("bench_summary.json")
    eng = load_engine_scenario(ENGINE)
    assert run.scenario.engine == eng.engine and run.scenario.policy == eng.policy
    assert run.scenario.engine.max_model_len == 4096
    assert run.scenario.name == "bench_summary"


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"request_rate": -1}, "request_rate", 'positive number or "inf" (got -1)'),
        ({"request_rate": "fast"}, "request_rate", '(got "fast")'),
        ({"completed": None}, "completed", "not a vLLM benchmark_serving result"),
        ({"input_lens": [100, -200, 50, 300, 120, 80]}, "input_lens[1]", "positive integer"),
        ({"output_lens": [10, 5, 0, 20]}, "output_lens", "has 4 entries but input_lens has 6"),
        ({"ttfts": [0.05, -0.08, 0, 0.1, 0.1, 0.1]}, "ttfts[1]", "seconds >= 0 (got -0.08)"),
        ({"max_concurrency": 0}, "max_concurrency", "positive integer or null (got 0)"),
        ({"completed": 4}, "completed", "lists hold 5 successful requests"),
        ({"ramp_up_strategy": "linear"}, "ramp_up_strategy", "ramp-up is not supported"),
    ],
)
def test_bad_benchmark_result(
    tmp_path: Path, changes: dict[str, Any], field: str, words: str
) -> None:
    f = bench(tmp_path, **changes)
    with pytest.raises(ConfigError) as e:
        load(f)
    assert e.value.source == str(f) and e.value.field == field
    assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"model": "x", "accuracy": 0.9}', "not a vLLM benchmark_serving result"),
        ("[1, 2, 3]", "got a JSON list"),
        ('{"a": 1}\n{"a": 2}\n', "--append-result"),
        ("{oops", "not valid JSON"),
    ],
)
def test_not_a_benchmark_result(tmp_path: Path, text: str, words: str) -> None:
    f = tmp_path / "x.json"
    f.write_text(text)
    with pytest.raises(ConfigError, match=words) as e:
        load(f)
    assert e.value.source == str(f)


def test_unknown_file_type(tmp_path: Path) -> None:
    f = tmp_path / "run.txt"
    f.write_text("hello")
    with pytest.raises(ConfigError, match=r"unknown run file type '\.txt'; valid: \.json"):
        load(f)


# --- per-request logs ---------------------------------------------------------------------------


def test_csv_log_is_replayed_as_a_trace_and_measured_from_its_rows() -> None:
    run = load("requests.csv")
    trace = run.scenario.workload.trace
    assert trace is not None and trace.format == "csv" and Path(trace.file).is_absolute()
    s = stream(run)
    assert s.arrival.tolist() == pytest.approx([0.25 * i for i in range(8)])
    assert s.prompt_tokens.tolist() == [120, 80, 200, 64, 150, 90, 300, 50]
    assert s.output_tokens.tolist() == [16, 8, 32, 4, 12, 24, 16, 10]
    m = metrics(run)
    assert m["n_success"] == 7 and m["n_failed"] == 1  # row 5 has no TTFT or latency
    assert m["ttft_mean"] == pytest.approx(315 / 7)  # ms columns
    assert m["e2e_mean"] == pytest.approx(1452 / 7)
    # first arrival at 0, last finish at 1.75 s + 115 ms
    assert m["requests_per_sec"] == pytest.approx(7 / 1.865)
    assert any("1 request without a first token" in n for n in run.notes)


def test_jsonl_log_with_absolute_times_matches_client_metrics() -> None:
    run = load("requests.jsonl")
    s = stream(run)
    assert s.arrival.tolist() == pytest.approx([0.0, 0.5, 1.0, 1.5])
    import pandas as pd

    df = pd.DataFrame(
        {
            "request_id": range(4),
            "arrival": [0.0, 0.5, 1.0, 1.5],
            "first_token": [0.04, 0.535, 1.06, 1.53],
            "finish": [0.19, 0.61, 1.42, 1.566],
            "prompt_tokens": [120, 80, 200, 64],
            "output_tokens": [16, 8, 32, 4],
        }
    )
    ref = client_metrics(df)
    ref = {r.metric: r.value for r in ref[ref.stage == WHOLE_RUN].itertuples()}
    assert metrics(run) == pytest.approx(ref)
    assert run.notes == ()


def write(tmp_path: Path, name: str, text: str) -> Path:
    f = tmp_path / name
    f.write_text(text)
    return f


@pytest.mark.parametrize(
    ("name", "text", "field", "where", "words"),
    [
        ("a.csv", "arrival,prompt_tokens,output_tokens,ttft\n0,10,5,0.1\n", "e2e", "",
         "no column for the e2e or finish"),
        ("a.csv", "arrival,prompt_tokens,output_tokens,ttft,e2e\n0,10,-5,0.1,0.2\n",
         "output_tokens", ":2", "positive integer (got \"-5\")"),
        ("a.csv", "arrival,prompt_tokens,output_tokens,ttft,e2e\n1,10,5,0.1,0.2\n0,10,5,0.1,0.2\n",
         "arrival", ":3", "rows must be in arrival order"),
        ("a.csv", "arrival,prompt_tokens,output_tokens,ttft,e2e\n0,10,5,0.3,0.2\n",
         "e2e", ":2", "before the first token"),
        ("a.csv", "arrival,prompt_tokens,output_tokens,ttft_ms,ttft,e2e\n0,1,1,1,1,1\n",
         "ttft_ms", "", "all hold the ttft"),
        ("a.csv", "arrival,prompt_tokens,output_tokens,ttft,e2e\n0,10,5,fast,0.2\n",
         "ttft", ":2", "must be a number, or empty"),
        ("a.jsonl", '{"arrival": 0, "prompt_tokens": [1], "output_tokens": 5, "ttft": 0.1, '
         '"e2e": 0.2}\n', "prompt_tokens", ":1", "number or string"),
        ("a.jsonl", "[1]\n", None, ":1", "expected a JSON object"),
    ],
)  # fmt: skip
def test_bad_request_log(
    tmp_path: Path, name: str, text: str, field: str | None, where: str, words: str
) -> None:
    f = write(tmp_path, name, text)
    with pytest.raises(ConfigError) as e:
        load(f)
    assert e.value.source == f"{f}{where}" and e.value.field == field
    assert words in str(e.value) and "\n" not in str(e.value)


def test_time_unit_for_unsuffixed_columns(tmp_path: Path) -> None:
    f = write(tmp_path, "ms.csv", "start,input_len,output_len,ttft,latency\n0,10,5,40,90\n"
              "500,10,5,30,80\n")  # fmt: skip
    run = load(f, time_unit="ms")
    assert stream(run).arrival.tolist() == [0.0, 0.5]
    assert metrics(run)["ttft_mean"] == pytest.approx(35.0)


# --- end to end ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bench_detailed.json", "requests.csv"])
def test_simulated_run_has_every_measured_metric(name: str) -> None:
    run = load(name)
    result = simulate(run.scenario)
    sim = client_metrics(result.requests)
    predicted = {r.metric: r.value for r in sim[sim.stage == WHOLE_RUN].itertuples()}
    predicted.update(simulated_extras(result.summary))
    measured = metrics(run)
    assert set(measured) <= set(predicted)
    assert predicted["n_success"] == len(stream(run))
    for k in ("ttft_mean", "e2e_mean", "itl_mean", "tpot_mean", "itl_vllm_mean"):
        if k in measured:
            assert 0 < predicted[k] < math.inf


def test_inline_lengths_in_order_or_drawn_in_pairs() -> None:
    from llmsim.workload import DatasetLengths

    rows = ((10, 1), (20, 2), (30, 3))
    p, o = DatasetLengths(inline=rows, in_order=True).sample(np.random.default_rng(0), 7)
    assert p.tolist() == [10, 20, 30, 10, 20, 30, 10] and o.tolist() == [1, 2, 3, 1, 2, 3, 1]
    p, o = DatasetLengths(inline=rows).sample(np.random.default_rng(0), 50)
    assert (p == 10 * o).all() and len(set(p.tolist())) == 3
    with pytest.raises(ValueError, match=r"inline\[1\] = \[20, 0\]"):
        DatasetLengths(inline=((10, 1), (20, 0)))
    with pytest.raises(ValueError, match="exactly one of 'dataset', 'path' or 'inline'"):
        DatasetLengths(dataset="arxiv", inline=rows)
