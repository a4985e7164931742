"""The ``llmsim`` command line: ``run`` output and files, determinism, ``--set`` overrides,
``validate`` / ``hardware`` / ``models``, and one-line errors (exit 2, no traceback) for bad
input."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import llmsim
from llmsim.cli import app

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"
SMALL = ["--set", "workload.num_requests=200"]

REQUEST_COLUMNS = {
    "request_id",
    "arrival",
    "first_scheduled",
    "first_token",
    "finish",
    "prompt_tokens",
    "output_tokens",
    "preemptions",
    "ttft",
    "tpot",
    "e2e",
}
STEP_COLUMNS = {
    "start",
    "duration",
    "batch_size",
    "prefill_tokens",
    "decode_tokens",
    "kv_blocks",
    "num_waiting",
    "num_running",
}
SUMMARY_KEYS = {
    f"{stat}_{metric}_ms"
    for stat in ("mean", "median", "p90", "p99")
    for metric in ("ttft", "tpot", "itl", "e2el")
} | {"request_throughput", "output_throughput", "mean_batch_size", "mean_kv_usage", "preemptions"}

ANSI = re.compile(r"\x1b\[[0-9;]*m")

runner = CliRunner()


def _plain(text: str) -> str:
    return ANSI.sub("", text)


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def run_ok(out: Path, *extra: str) -> str:
    res = invoke("run", QUICKSTART, "--out", out, *SMALL, *extra)
    assert res.exit_code == 0, res.output
    assert res.exception is None
    return _plain(res.stdout)


# --- run ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("quick")
    return out, run_ok(out)


def test_run_prints_summary_table(quick_run: tuple[Path, str]) -> None:
    _, stdout = quick_run
    for word in ("TTFT", "TPOT", "ITL", "E2E", "p99", "request throughput"):
        assert word in stdout, f"{word!r} missing from:\n{stdout}"
    assert "200 requests" in stdout
    assert re.search(r"seed\s+42", stdout)
    assert "200 / 0" in stdout  # completed / rejected


def test_run_writes_all_files(quick_run: tuple[Path, str]) -> None:
    out, _ = quick_run
    names = {p.name for p in out.iterdir()}
    assert names == {"requests.parquet", "steps.parquet", "summary.json", "scenario.yaml"}


def test_requests_parquet(quick_run: tuple[Path, str]) -> None:
    out, _ = quick_run
    req = pd.read_parquet(out / "requests.parquet")
    assert set(req.columns) >= REQUEST_COLUMNS, sorted(REQUEST_COLUMNS - set(req.columns))
    assert len(req) == 200
    assert sorted(req["request_id"]) == list(range(200))
    assert (req["arrival"] <= req["first_scheduled"]).all()
    assert (req["first_scheduled"] < req["first_token"]).all()
    assert (req["first_token"] <= req["finish"]).all()
    assert (req["ttft"] - (req["first_token"] - req["arrival"])).abs().max() < 1e-9
    assert (req["e2e"] - (req["finish"] - req["arrival"])).abs().max() < 1e-9
    assert (req["prompt_tokens"] > 0).all() and (req["output_tokens"] > 0).all()


def test_steps_parquet(quick_run: tuple[Path, str]) -> None:
    out, _ = quick_run
    steps = pd.read_parquet(out / "steps.parquet")
    assert set(steps.columns) >= STEP_COLUMNS, sorted(STEP_COLUMNS - set(steps.columns))
    assert len(steps) > 0
    assert (steps["duration"] > 0).all()
    assert steps["start"].is_monotonic_increasing
    assert (steps["batch_size"] >= 1).all()
    assert steps["batch_size"].max() <= 256


def test_summary_json(quick_run: tuple[Path, str]) -> None:
    out, _ = quick_run
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= SUMMARY_KEYS, sorted(SUMMARY_KEYS - set(summary))
    req = pd.read_parquet(out / "requests.parquet")
    assert summary["num_requests"] == 200
    assert summary["mean_ttft_ms"] == pytest.approx(req["ttft"].mean() * 1000, rel=1e-9)
    assert summary["median_ttft_ms"] <= summary["p90_ttft_ms"] <= summary["p99_ttft_ms"]
    assert summary["request_throughput"] > 0
    assert summary["output_throughput"] > summary["request_throughput"]
    assert summary["mean_batch_size"] >= 1
    assert 0 < summary["mean_kv_usage"] < 1
    assert summary["preemptions"] == 0


def test_written_scenario_loads_back_equal(quick_run: tuple[Path, str]) -> None:
    out, _ = quick_run
    written = llmsim.load_scenario(out / "scenario.yaml")
    expected = llmsim.load_scenario(QUICKSTART, {"workload.num_requests": 200})
    assert written == expected
    assert written.workload.num_requests == 200
    assert written.seed == 42
    assert written.source == str(out / "scenario.yaml")


def test_run_is_deterministic(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    run_ok(a)
    run_ok(b)
    run_ok(c, "--set", "seed=7")
    assert (a / "summary.json").read_bytes() == (b / "summary.json").read_bytes()
    for table in ("requests.parquet", "steps.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(a / table), pd.read_parquet(b / table))
    sa = json.loads((a / "summary.json").read_text())
    sc = json.loads((c / "summary.json").read_text())
    assert sa != sc
    assert sa["mean_ttft_ms"] != sc["mean_ttft_ms"]
    assert llmsim.load_scenario(c / "scenario.yaml").seed == 7


def test_rate_shorthand_equals_full_path(tmp_path: Path) -> None:
    short, full, default = tmp_path / "short", tmp_path / "full", tmp_path / "default"
    run_ok(short, "--set", "workload.rate=2")
    run_ok(full, "--set", "workload.arrival.rate=2")
    run_ok(default)
    assert (short / "summary.json").read_bytes() == (full / "summary.json").read_bytes()
    assert (short / "scenario.yaml").read_text() == (full / "scenario.yaml").read_text()
    assert llmsim.load_scenario(short / "scenario.yaml").workload.arrival.rate == 2.0
    # and the override did something: half the rate, about half the throughput
    slow = json.loads((short / "summary.json").read_text())["request_throughput"]
    fast = json.loads((default / "summary.json").read_text())["request_throughput"]
    assert slow < 0.75 * fast


def test_max_num_seqs_override_caps_batch(tmp_path: Path) -> None:
    run_ok(tmp_path, "--set", "policy.max_num_seqs=8")
    steps = pd.read_parquet(tmp_path / "steps.parquet")
    assert steps["batch_size"].max() == 8  # the cap binds at 4 req/s
    assert llmsim.load_scenario(tmp_path / "scenario.yaml").policy.max_num_seqs == 8


# --- validate, hardware, models -----------------------------------------------------------------


def test_validate_ok() -> None:
    res = invoke("validate", QUICKSTART)
    assert res.exit_code == 0, res.output
    out = _plain(res.stdout)
    assert "ok" in out
    assert "Llama-3.1-8B" in out and "H100-SXM" in out
    assert res.stderr == ""


def test_hardware_lists_all_profiles() -> None:
    res = invoke("hardware")
    assert res.exit_code == 0, res.output
    out = _plain(res.stdout)
    # Which profiles the catalog holds is tested in test_hardware_profiles.py.
    for hw in llmsim.list_hardware():
        assert re.search(rf"\b{re.escape(hw.name)}\b", out), f"{hw.name} missing from:\n{out}"


def test_models_lists_catalog() -> None:
    res = invoke("models")
    assert res.exit_code == 0, res.output
    out = _plain(res.stdout)
    for name in ("Llama-3.1-8B", "Llama-3.1-70B", "DeepSeek-V3", "Mixtral-8x7B", "Qwen2.5-7B"):
        assert name in out, f"{name} missing from:\n{out}"
    for m in llmsim.list_models():
        assert m.name in out


# --- bad input ----------------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, old: str, new: str) -> Path:
    text = QUICKSTART.read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new, 1))
    return path


def _unknown_field(tmp: Path) -> Path:
    return _write(tmp, "typo.yaml", "max_num_seqs: 256", "max_num_seq: 4")


def _negative_rate(tmp: Path) -> Path:
    return _write(tmp, "rate.yaml", "rate: 4.0", "rate: -1")


def _unknown_hardware(tmp: Path) -> Path:
    return _write(tmp, "hw.yaml", "hardware: H100-SXM", "hardware: H100-SMX")


def _unknown_model(tmp: Path) -> Path:
    return _write(tmp, "model.yaml", "model: Llama-3.1-8B", "model: Llama-3.1-8X")


def _unknown_policy(tmp: Path) -> Path:
    return _write(tmp, "policy.yaml", "kind: continuous", "kind: continous")


def _bad_yaml(tmp: Path) -> Path:
    return _write(tmp, "syntax.yaml", "policy:\n", "policy: [oops\n")


def _does_not_fit(tmp: Path) -> Path:
    p = _write(tmp, "fit.yaml", "model: Llama-3.1-8B", "model: Llama-3.1-70B")
    p.write_text(p.read_text().replace("hardware: H100-SXM", "hardware: L4"))
    return p


def _missing(tmp: Path) -> Path:
    return tmp / "no-such-scenario.yaml"


# (make the file, extra args, substrings the error line must contain)
BAD_FILES = {
    "unknown-field": (_unknown_field, [], ["policy.max_num_seq", "unknown field 'max_num_seq'"]),
    "negative-rate": (_negative_rate, [], ["workload.arrival.rate", "greater than 0", "-1"]),
    "unknown-hardware": (
        _unknown_hardware,
        [],
        ["hardware", "'H100-SMX'", "did you mean", "'H100-SXM'"],
    ),
    "unknown-model": (
        _unknown_model,
        [],
        ["model", "'Llama-3.1-8X'", "did you mean", "'Llama-3.1-8B'"],
    ),
    "unknown-policy": (_unknown_policy, [], ["policy.kind", "'continous'", "did you mean"]),
    "invalid-yaml": (_bad_yaml, [], ["invalid YAML", "line 14"]),
    "does-not-fit": (_does_not_fit, [], ["Llama-3.1-70B", "weights", "GB", ">", "L4"]),
    "missing-file": (_missing, [], ["file not found"]),
    "set-without-equals": (lambda tmp: QUICKSTART, ["--set", "seed"], ["--set", "'seed'"]),
    "set-through-value": (
        lambda tmp: QUICKSTART,
        ["--set", "seed.x=1"],
        ["--set", "'seed.x'", "not a section"],
    ),
}


def _check_error(res, path: Path, needles: list[str]) -> str:
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit)
    assert "Traceback" not in res.output
    err = _plain(res.stderr)
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    line = lines[0]
    assert line.startswith("error: "), line
    assert str(path) in line, line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    assert res.stdout == ""
    return line


@pytest.mark.parametrize("case", list(BAD_FILES))
@pytest.mark.parametrize("command", ["run", "validate"])
def test_bad_input_one_line_error(case: str, command: str, tmp_path: Path) -> None:
    make, extra, needles = BAD_FILES[case]
    path = make(tmp_path)
    args = [command, str(path), *extra]
    if command == "run":
        args += ["--out", str(tmp_path / "out"), "-q"]
    res = invoke(*args)
    _check_error(res, path, needles)
    assert not (tmp_path / "out").exists()


def test_error_messages_exact(tmp_path: Path) -> None:
    """The full line for the two most common mistakes, so a regression in wording shows."""
    p = _unknown_field(tmp_path)
    line = _check_error(invoke("validate", p), p, [])
    assert (
        line == f"error: {p}: policy.max_num_seq: unknown field 'max_num_seq' in policy "
        "(kind 'continuous')"
    )
    p = _negative_rate(tmp_path)
    line = _check_error(invoke("validate", p), p, [])
    assert line == f"error: {p}: workload.arrival.rate: Input should be greater than 0 (got -1)"


@pytest.mark.parametrize("case", [c for c in BAD_FILES if c != "does-not-fit"])
def test_load_scenario_raises_config_error(case: str, tmp_path: Path) -> None:
    make, extra, needles = BAD_FILES[case]
    path = make(tmp_path)
    overrides = [extra[1]] if extra else None
    with pytest.raises(llmsim.ConfigError) as info:
        llmsim.load_scenario(path, overrides)
    msg = str(info.value)
    assert str(path) in msg
    assert info.value.source == str(path)
    for needle in needles:
        assert needle in msg


def test_does_not_fit_raises_on_build(tmp_path: Path) -> None:
    # Loading checks names and fields; the memory fit is checked when the replica is built.
    path = _does_not_fit(tmp_path)
    sc = llmsim.load_scenario(path)
    with pytest.raises(llmsim.DoesNotFitError) as info:
        llmsim.build_replica(sc)
    assert isinstance(info.value, llmsim.ConfigError)
    msg = str(info.value)
    assert str(path) in msg
    assert "weights" in msg and "GB" in msg and ">" in msg


@pytest.mark.skipif(
    shutil.which("llmsim", path=str(Path(sys.executable).parent)) is None,
    reason="llmsim entry point not installed next to this python",
)
def test_entry_point_error_has_no_traceback(tmp_path: Path) -> None:
    """The real console script, not CliRunner: stderr is one line, exit status 2."""
    exe = Path(sys.executable).parent / "llmsim"
    path = _unknown_hardware(tmp_path)
    proc = subprocess.run(
        [str(exe), "run", str(path), "-q", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = _plain(proc.stderr).strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {path}: hardware: unknown hardware 'H100-SMX'")
    assert "did you mean 'H100-SXM'" in lines[0]


def test_written_scenario_is_plain_yaml(quick_run: tuple[Path, str]) -> None:
    out, _ = quick_run
    data = yaml.safe_load((out / "scenario.yaml").read_text())
    assert data["workload"]["num_requests"] == 200
    assert data["model"] == "Llama-3.1-8B"
    assert data["policy"]["kind"] == "continuous"


def test_per_pool_table_is_whole_when_piped(tmp_path: Path) -> None:
    """Printed to a pipe (80 columns), the per-pool table widens instead of cutting names,
    headers and values."""
    scenario = ROOT / "scenarios" / "disaggregated.yaml"
    res = invoke("run", scenario, "--set", "workload.num_requests=200", "-o", tmp_path)
    assert res.exit_code == 0, res.output
    table = res.output[res.output.index("Per pool") :]
    assert "…" not in table
    assert "│ prefill │" in table and "completed" in table and "TTFT p99 ms" in table
