"""llmsim sweep: the grid, the table, executors, the cache, failures, the figures and the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

import llmsim
import llmsim.sweep as sweep_mod
from llmsim.cli import app
from llmsim.errors import ConfigError
from llmsim.executors import LocalExecutor, ProcessExecutor, make_executor
from llmsim.grid import parse_axes, parse_axis, points
from llmsim.sweep import PointOutcome, run_sweep

runner = CliRunner()

# One sequence at a time, 10 output tokens, 10 ms per step: each request holds the replica for
# 10 steps (the prefill step emits the first token), so it serves at most 10 requests/s.
SCENARIO = """
name: tiny
seed: 7
model: Llama-3.1-8B
hardware: H100-SXM
engine:
  max_model_len: 2048
  cost: {kind: constant, step_s: 0.01}
policy: {kind: continuous, max_num_seqs: 1}
workload:
  arrival: {kind: poisson, rate: 2}
  prompt_tokens: {kind: fixed, value: 32}
  output_tokens: {kind: fixed, value: 10}
  num_requests: 150
metrics: {slo_ttft_ms: 500}
"""


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(SCENARIO)
    return path


@pytest.fixture
def scenario(scenario_file: Path) -> llmsim.Scenario:
    return llmsim.load_scenario(scenario_file)


# --- the grid ---------------------------------------------------------------------------------


def test_range_includes_both_ends_and_stays_integer_when_whole() -> None:
    assert parse_axis("policy.max_num_seqs=64:256:4").values == (64, 128, 192, 256)
    assert parse_axis("workload.rate=1:2:3").values == (1.0, 1.5, 2.0)
    assert parse_axis("workload.rate=1:40:20").values[-1] == 40.0
    assert len(parse_axis("workload.rate=1:40:20").values) == 20


def test_list_values_read_as_yaml() -> None:
    axis = parse_axis("policy.chunked_prefill=true,false")
    assert axis.values == (True, False)
    assert parse_axis("hardware=H100-SXM,A100-80GB").values == ("H100-SXM", "A100-80GB")


def test_product_first_axis_slowest() -> None:
    axes = parse_axes(["workload.rate=1,2", "policy.max_num_seqs=8,16,32"])
    grid = points(axes)
    assert len(grid) == 6
    assert grid[0] == {"workload.rate": 1, "policy.max_num_seqs": 8}
    assert grid[1] == {"workload.rate": 1, "policy.max_num_seqs": 16}
    assert grid[3] == {"workload.rate": 2, "policy.max_num_seqs": 8}


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("workload.rate", "field.path=start:stop:num"),
        ("workload.rate=1:40", "start:stop:num"),
        ("workload.rate=a:40:3", "start 'a'"),
        ("workload.rate=1:40:0", "num '0'"),
        ("workload.rate=1:40:2.5", "num '2.5'"),
    ],
)
def test_bad_axis_is_one_line_naming_it(spec: str, words: str) -> None:
    with pytest.raises(ConfigError, match="--vary") as err:
        parse_axis(spec)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_same_path_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="varied twice"):
        parse_axes(["workload.rate=1,2", "workload.rate=3"])


# --- the table ----------------------------------------------------------------------------------


def test_each_row_is_the_run_of_its_point(scenario: llmsim.Scenario) -> None:
    axes = parse_axes(["workload.rate=2,40", "policy.max_num_seqs=1,4"])
    table = run_sweep(scenario, axes).table
    assert list(table["point"]) == [0, 1, 2, 3]
    assert list(table["workload.rate"]) == [2, 2, 40, 40]
    assert list(table["policy.max_num_seqs"]) == [1, 4, 1, 4]
    assert set(table["status"]) == {"ok"}
    assert list(table["offered_rate"]) == [2.0, 2.0, 40.0, 40.0]
    alone = llmsim.simulate(
        scenario.with_overrides({"workload.rate": 40, "policy.max_num_seqs": 4})
    ).summary
    row = table.iloc[3]
    for key, value in alone.items():  # every summary metric, equal to a run by hand
        assert row[key] == pytest.approx(value, nan_ok=True, rel=0, abs=0)


def test_saturation_is_marked_where_load_exceeds_capacity(scenario: llmsim.Scenario) -> None:
    table = run_sweep(scenario, parse_axes(["workload.rate=2,5,20,40"])).table
    # capacity 10 req/s (one sequence, 10 steps of 10 ms each)
    assert table["request_throughput"].iloc[2:].tolist() == pytest.approx([10.0, 10.0], rel=1e-3)
    assert list(table["saturated"]) == [False, False, True, True]


def test_new_summary_keys_become_columns(
    scenario: llmsim.Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sweep_mod.simulate

    def with_extra(sc: llmsim.Scenario) -> Any:
        res = real(sc)
        res.summary["overload_fraction"] = 0.25
        return res

    monkeypatch.setattr(sweep_mod, "simulate", with_extra)
    table = run_sweep(scenario, parse_axes(["workload.rate=2"])).table
    assert table["overload_fraction"].tolist() == [0.25]


# --- executors, cache, failures -----------------------------------------------------------------


def _bytes(folder: Path) -> tuple[bytes, bytes]:
    return (folder / "sweep.parquet").read_bytes(), (folder / "sweep.csv").read_bytes()


def test_process_pool_gives_the_same_bytes_as_one_process(
    scenario: llmsim.Scenario, tmp_path: Path
) -> None:
    axes = parse_axes(["workload.rate=2,8,30", "policy.max_num_seqs=1,2"])
    serial = run_sweep(scenario, axes, executor=LocalExecutor())
    pooled = run_sweep(scenario, axes, executor=ProcessExecutor(2))
    serial.save(tmp_path / "a")
    pooled.save(tmp_path / "b")
    assert _bytes(tmp_path / "a") == _bytes(tmp_path / "b")


def test_ray_gives_the_same_bytes_as_one_process(scenario: llmsim.Scenario, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'llmsim[ray]'")
    axes = parse_axes(["workload.rate=2,30", "policy.max_num_seqs=1,2"])
    run_sweep(scenario, axes).save(tmp_path / "a")
    ray_exec = make_executor("ray", 2)
    try:
        run_sweep(scenario, axes, executor=ray_exec).save(tmp_path / "b")
    finally:
        ray_exec.close()
    assert _bytes(tmp_path / "a") == _bytes(tmp_path / "b")


def test_interrupted_sweep_resumes_without_recomputing(
    scenario: llmsim.Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    axes = parse_axes(["workload.rate=2,5,20,40"])
    cache = tmp_path / "points"

    def stop_after_two(done: int, total: int, eta: float | None, o: PointOutcome) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(scenario, axes, cache=cache, progress=stop_after_two)
    assert len(list(cache.glob("*.json"))) == 2
    assert not list(cache.glob(".*"))  # no half-written file left behind

    calls: list[float] = []
    real = sweep_mod.simulate

    def counted(sc: llmsim.Scenario) -> Any:
        calls.append(sc.workload.arrival.rate)  # type: ignore[union-attr]
        return real(sc)

    monkeypatch.setattr(sweep_mod, "simulate", counted)
    resumed = run_sweep(scenario, axes, cache=cache)
    assert sorted(calls) == [20, 40]  # only the two points the interruption lost
    assert [o.cached for o in resumed.outcomes] == [True, True, False, False]
    calls.clear()
    again = run_sweep(scenario, axes, cache=cache)
    assert calls == [] and again.computed == 0
    resumed.save(tmp_path / "resumed")
    monkeypatch.setattr(sweep_mod, "simulate", real)
    run_sweep(scenario, axes).save(tmp_path / "fresh")
    assert _bytes(tmp_path / "resumed") == _bytes(tmp_path / "fresh")


def test_failing_point_is_reported_and_the_others_run(scenario: llmsim.Scenario) -> None:
    # a 70B model does not fit one H100 (fails when its replica is built); max_num_seqs 0 is
    # refused when the point's scenario is validated
    axes = parse_axes(["model=Llama-3.1-8B,Llama-3.1-70B", "policy.max_num_seqs=0,1"])
    result = run_sweep(scenario, axes, executor=ProcessExecutor(2))
    status = result.table["status"].tolist()
    assert status == ["failed", "ok", "failed", "failed"]
    errors = {o.index: o.error for o in result.failures}
    assert "max_num_seqs" in str(errors[0]) and "0" in str(errors[0])
    assert "Llama-3.1-70B" in str(errors[3]) or "fit" in str(errors[3])
    assert result.table.loc[3, "error"] == errors[3]
    assert "model=Llama-3.1-70B" in result.failures[-1].describe()
    assert result.table.loc[1, "request_throughput"] > 0


def test_every_point_invalid_is_a_user_error(scenario: llmsim.Scenario) -> None:
    with pytest.raises(ConfigError, match="no_such_field"):
        run_sweep(scenario, parse_axes(["policy.no_such_field=1,2"]))


# --- the command line ---------------------------------------------------------------------------


def test_cli_writes_table_and_figures_and_resumes(scenario_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["sweep", str(scenario_file), "--vary", "workload.rate=2:20:3", "-o", str(out)]
    first = runner.invoke(app, [*args, "-j", "2"])
    assert first.exit_code == 0, first.output
    for name in ("sweep.parquet", "sweep.csv", "latency_vs_throughput.png", "latency_vs_load.png"):
        assert (out / name).stat().st_size > 0
    table = pd.read_parquet(out / "sweep.parquet")
    assert len(table) == 3 and "p99_ttft_ms" in table and "goodput" in table
    assert "3 simulated, 0 from the cache" in first.output
    second = runner.invoke(app, [*args, "--executor", "local"])
    assert second.exit_code == 0, second.output
    assert "0 simulated, 3 from the cache" in second.output
    assert pd.read_parquet(out / "sweep.parquet").equals(table)
    fresh = runner.invoke(app, [*args, "--fresh", "--no-plots", "-j", "1"])
    assert "3 simulated, 0 from the cache" in fresh.output
    assert pd.read_parquet(out / "sweep.parquet").equals(table)


def test_cli_failed_point_exits_1(scenario_file: Path, tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        ["sweep", str(scenario_file), "-v", "policy.max_num_seqs=0,1", "-o", str(tmp_path)],
    )
    assert res.exit_code == 1
    assert "failed: point 0 (policy.max_num_seqs=0)" in res.output
    assert "1 failed" in res.output


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["-v", "workload.rate=1:40"], "--vary"),
        (["-v", "workload.rate=1,2", "--executor", "slurm"], "unknown executor 'slurm'"),
        (["-v", "workload.rate=1,2", "-p", "p95"], "unknown percentile 'p95'"),
        (["-v", "workload.rate=1,2", "--address", "auto"], "--address is for --executor ray"),
        (["-v", "workload.rate=1,2", "-j", "0"], "-j must be at least 1"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(
    scenario_file: Path, tmp_path: Path, extra: list[str], words: str
) -> None:
    res = runner.invoke(app, ["sweep", str(scenario_file), "-o", str(tmp_path), *extra])
    assert res.exit_code == 2
    assert words in res.output
    assert "Traceback" not in res.output


def test_figures_name_model_gpu_units_and_configurations(scenario: llmsim.Scenario) -> None:
    import matplotlib.pyplot as plt

    from llmsim.sweep_plots import latency_vs_load, latency_vs_throughput

    axes = parse_axes(["workload.rate=2,20", "policy.max_num_seqs=1,2"])
    table = run_sweep(scenario, axes).table
    fig = latency_vs_throughput(table, axes, percentiles=["p99"], name="tiny")
    title = fig._suptitle.get_text()  # type: ignore[union-attr]
    assert "tiny" in title and "Llama-3.1-8B" in title and "1x H100-SXM" in title
    panels = fig.axes
    assert [a.get_ylabel() for a in panels] == ["TTFT (ms)", "TPOT (ms)", "E2E latency (ms)"]
    assert panels[0].get_xlabel() == "achieved throughput (req/s)"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["max_num_seqs=1", "max_num_seqs=2", "p99", "saturated"]
    # one line per configuration and percentile, through its points in order of load
    line = panels[0].get_lines()[0]
    ok = table[table["policy.max_num_seqs"] == 1]
    assert list(line.get_xdata()) == ok["request_throughput"].tolist()
    assert list(line.get_ydata()) == ok["p99_ttft_ms"].tolist()
    load = latency_vs_load(table, axes, percentiles=["p99"], name="tiny")
    assert load.axes[-1].get_ylabel() == "goodput (req/s within SLOs)"
    assert load.axes[0].get_xlabel() == "offered load (req/s)"
    plt.close("all")
