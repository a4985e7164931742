"""Fitting the engine's host and API-server terms on serving runs, the fidelity command, and the
committed cross-validated error of the vllm-v1 preset."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from llmsim.cli import app
from llmsim.e2e.fit import Terms, fit_terms, with_terms
from llmsim.e2e.replay import compare, error_summary, predict
from llmsim.e2e.runs import WHOLE_RUN, ServingRun
from llmsim.e2e.serving_data import DATA_DIR, load_serving_runs
from llmsim.scenario import Scenario


def _run(key: str, model: str, tp: int, rate: float, prompt: int) -> ServingRun:
    scenario = Scenario.model_validate(
        {
            "name": key,
            "model": model,
            "hardware": "H100-SXM",
            "tensor_parallel": tp,
            "engine": {"preset": "vllm-v1", "max_model_len": 4096},
            "policy": {"kind": "continuous", "max_num_seqs": 64, "max_num_batched_tokens": 2048},
            "workload": {
                "arrival": {"kind": "stages", "stages": [{"rate": rate, "duration_s": 20}]},
                "shared_prefix": {
                    "groups": 2,
                    "prompts_per_group": 5,
                    "system_prompt_tokens": 64,
                    "question_tokens": prompt,
                },
                "output_tokens": {"kind": "fixed", "value": 64},
            },
        }
    )
    return ServingRun(key, model, scenario, {})


def test_fit_recovers_terms_that_made_the_measurements() -> None:
    # "Measured" runs simulated with known terms; the fit, started elsewhere, finds them again.
    truth = Terms(step_overhead_ms=1.2, seq_overhead_us=20.0, tp_overhead_ms=0.8,
                  frontend_ms=3.0, tokenize_us_per_token=8.0)  # fmt: skip
    runs = [
        _run("a", "Llama-3.1-8B", 1, 4, 200),
        _run("b", "Llama-3.1-8B", 1, 12, 900),
        _run("c", "Qwen2.5-7B", 2, 8, 500),
        _run("d", "Mistral-7B", 2, 16, 1500),
    ]
    measured = []
    for r in runs:
        t = predict(with_terms(r, truth))
        values = {(int(s), str(m)): float(v) for s, m, v in t[["stage", "metric", "value"]].values}
        measured.append(replace(r, measured=values))
    fitted = fit_terms(measured, Terms(0.5, 15.0, 0.3, 0.0, 0.0))
    assert fitted.step_overhead_ms == pytest.approx(1.2, abs=0.15)
    assert fitted.tp_overhead_ms == pytest.approx(0.8, abs=0.15)
    assert fitted.frontend_ms + 0.7 * fitted.tokenize_us_per_token == pytest.approx(
        3.0 + 0.7 * 8.0, abs=1.0
    )  # TTFT at a 700-token prompt
    for r in measured:
        p = predict(with_terms(r, fitted))
        err = compare(r, p).set_index(["stage", "metric"])["error"]
        assert abs(err[(WHOLE_RUN, "itl_mean")]) < 0.03
        assert abs(err[(WHOLE_RUN, "ttft_mean")]) < 0.05


def test_fidelity_serving_command_on_a_small_run_folder(tmp_path: Path) -> None:
    data = tmp_path / "runs"
    (data / "model_configs" / "llama-3.1-8b-instruct").mkdir(parents=True)
    config = Path(__file__).parent / "data" / "hf_configs" / "Llama-3.1-8B" / "config.json"
    (data / "model_configs" / "llama-3.1-8b-instruct" / "config.json").write_text(
        config.read_text()
    )
    exp = pd.read_csv(DATA_DIR / "experiments.csv").iloc[[2]].copy()  # a Llama-2 run's layout
    exp["exp_key"] = "tiny"
    exp["model_config"] = "../model_configs/llama-3.1-8b-instruct/config.json"
    exp["stages"] = "2rps x 10s;4rps x 5s"
    exp["n_requests_planned"] = 40
    exp.to_csv(data / "experiments.csv", index=False)
    rows = [("tiny", s, m, v, "ms", "test") for s in (-1, 0, 1)
            for m, v in (("e2e_mean", 1500.0), ("ttft_mean", 30.0), ("itl_mean", 8.0))]  # fmt: skip
    pd.DataFrame(
        rows, columns=["exp_key", "stage_index", "metric", "value", "unit", "source"]
    ).to_csv(data / "measured.csv", index=False)
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["fidelity", "--serving", "--serving-data", str(data), "--out", str(out), "--plots"]
    )
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "serving_runs.csv")
    assert set(table["stage"]) == {-1, 0, 1}
    assert set(table["metric"]) == {"e2e_mean", "ttft_mean", "itl_mean"}
    np.testing.assert_allclose(table["error"], table["predicted"] / table["measured"] - 1)
    summary = pd.read_csv(out / "serving_summary.csv")
    assert set(summary["scope"]) == {"run", "stage"}
    assert (out / "serving.png").stat().st_size > 10_000
    assert "median |err|" in res.output


def test_bad_cost_model_is_one_line() -> None:
    res = CliRunner().invoke(app, ["fidelity", "--serving", "--cost", "magic"])
    assert res.exit_code == 2
    assert "unknown cost model 'magic'" in res.output


def test_error_summary_by_hand() -> None:
    t = pd.DataFrame(
        {
            "stage": [-1, -1, -1, 0],
            "metric": ["ttft_mean"] * 4,
            "error": [0.10, -0.20, 0.05, 0.5],
        }
    )
    s = error_summary(t).set_index(["scope", "metric"])
    assert s.loc[("run", "ttft_mean"), "median_abs_pct"] == pytest.approx(10.0)
    assert s.loc[("run", "ttft_mean"), "bias_pct"] == pytest.approx(5.0)
    assert s.loc[("run", "ttft_mean"), "max_abs_pct"] == pytest.approx(20.0)
    assert s.loc[("stage", "ttft_mean"), "runs"] == 1


@pytest.mark.slow
def test_preset_reproduces_its_committed_cross_validated_error() -> None:
    """The held-out predictions committed with the data, re-simulated with each fold's terms
    (one run of each model), come out the same."""
    folds = pd.read_csv(DATA_DIR / "cross_validation_terms.csv").set_index("held_out")
    held = pd.read_csv(DATA_DIR / "cross_validation.csv")
    runs = {r.key: r for r in load_serving_runs()}
    for group in folds.index.drop("none (fitted on every run)"):
        key = sorted(held.loc[held["group"] == group, "run"].unique())[0]
        f = folds.loc[group]
        terms = Terms(*(float(f[k]) for k in Terms.__dataclass_fields__))
        p = compare(runs[key], predict(with_terms(runs[key], terms)))
        mine = held[held["run"] == key].set_index(["stage", "metric"])["predicted"]
        got = p.set_index(["stage", "metric"])["predicted"]
        np.testing.assert_allclose(got.loc[mine.index], mine, rtol=1e-9)


def test_committed_cross_validated_error_is_the_documented_one() -> None:
    """The held-out error that README and docs/end_to_end.md quote, from the committed table."""
    held = pd.read_csv(DATA_DIR / "cross_validation.csv")
    assert held["run"].nunique() == 15 and held["fold"].nunique() == 6
    assert (held["group"] == held["fold"]).all()  # every run predicted by its own model's fold
    s = error_summary(held).set_index(["scope", "metric"])
    run = s.loc["run"]
    assert run.loc["ttft_mean", "median_abs_pct"] == pytest.approx(7.8, abs=0.05)
    assert run.loc["e2e_mean", "median_abs_pct"] == pytest.approx(10.4, abs=0.05)
    assert run.loc["itl_mean", "median_abs_pct"] == pytest.approx(9.3, abs=0.05)
    assert run.loc[["e2e_mean", "ttft_mean", "itl_mean"], "max_abs_pct"].max() < 50


def test_replayed_workload_matches_the_measured_throughput_and_lengths() -> None:
    """Where a run reports them, the replay's throughputs and lengths are the client's (within
    1 %, whole run and per stage): the workload is read as it was sent."""
    held = pd.read_csv(DATA_DIR / "cross_validation.csv")
    shape = held[
        held["metric"].isin(
            ["requests_per_sec", "input_tokens_per_sec", "output_tokens_per_sec",
             "prompt_len_mean", "output_len_mean"]
        )
    ]  # fmt: skip
    assert len(shape) >= 30
    assert shape["error"].abs().max() < 0.015


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run", "r.json", "--scenario", "s.yaml"], "--run, --scenario: end-to-end options"),
        (["--cross-validate"], "--cross-validate: end-to-end options: add --serving"),
        (["--serving", "H100-SXM"], "--serving: replays whole runs"),
        (
            ["--serving", "--run", "r.json", "--scenario", "s.yaml", "--cross-validate"],
            "--cross-validate: not with --run",
        ),
    ],
)
def test_fidelity_options_of_the_other_check_are_refused(args: list[str], message: str) -> None:
    res = CliRunner().invoke(app, ["fidelity", *args])
    assert res.exit_code == 2
    assert message in res.output
