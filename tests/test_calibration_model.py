"""The calibrated cost model, engine presets and the calibration CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from llmsim.calibration.llmsim_csv import read_operator_csv
from llmsim.cli import app
from llmsim.cost import BatchShape, CalibratedConfig, RooflineConfig
from llmsim.errors import ConfigError
from llmsim.hardware import get_hardware
from llmsim.models import get_model
from llmsim.presets import get_preset, list_presets
from llmsim.scenario import EngineConfig

CALIBRATED = ["A100-80GB", "H100-SXM", "H200", "B200", "A40"]
MODELS = ["Llama-3.1-8B", "Llama-2-70B", "Mixtral-8x7B", "DeepSeek-V3", "Qwen3-30B-A3B"]
DATA = Path(__file__).parent / "data" / "calibration"
TORCH_MISSING = (
    "torch is not installed: the profiler (llmsim[profile]) needs it; `make test` installs its "
    "CPU build (torch==2.13.0+cpu from PyTorch's CPU index), or pip install torch --index-url "
    "https://download.pytorch.org/whl/cpu"
)
runner = CliRunner()


def _model(hw: str, model: str, tp: int = 1) -> object:
    return CalibratedConfig().build(get_model(model), get_hardware(hw), tp)


@pytest.mark.parametrize("hw", CALIBRATED)
@pytest.mark.parametrize("model", MODELS)
def test_monotone_and_finite_beyond_measured_range(hw: str, model: str) -> None:
    cm = _model(hw, model, tp=8)
    prev = 0.0
    for tokens in (1, 16, 256, 4096, 65536, 1_000_000):
        t = cm.step_time(BatchShape.prefill([(tokens, 0)]))  # type: ignore[attr-defined]
        assert math.isfinite(t) and t > prev
        prev = t
    prev = 0.0
    for context in (1, 1000, 100_000, 10_000_000):
        t = cm.decode_step_time(64, context)  # type: ignore[attr-defined]
        assert math.isfinite(t) and t > prev
        prev = t
    prev = 0.0
    for seqs in (1, 8, 64, 512, 4096):
        t = cm.decode_step_time(seqs, seqs * 1000)  # type: ignore[attr-defined]
        assert t > prev
        prev = t


@pytest.mark.parametrize("hw", CALIBRATED)
def test_decode_step_equals_step_time(hw: str) -> None:
    cm = _model(hw, "Llama-3.1-8B", tp=2)
    for seqs, ctx in ((1, 10), (7, 7000), (256, 300_000)):
        want = cm.step_time(BatchShape.decode(seqs, ctx))  # type: ignore[attr-defined]
        assert cm.decode_step_time(seqs, ctx) == want  # type: ignore[attr-defined]


def test_mixed_step_costs_more_than_parts_alone() -> None:
    cm = _model("H100-SXM", "Llama-3.1-8B")
    prefill = BatchShape.prefill([(512, 0)])
    mixed = BatchShape(
        prefill_tokens=512,
        prefill_seqs=1,
        prefill_attn_pairs=prefill.prefill_attn_pairs,
        prefill_kv_tokens=512,
        decode_seqs=32,
        decode_context=32_000,
        sampled_seqs=33,
    )
    assert cm.step_time(mixed) > cm.step_time(prefill)  # type: ignore[attr-defined]


def test_uncalibrated_profile_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"no calibration section.*H100-SXM"):
        _model("L4", "Llama-3.1-8B")


def test_host_overrides() -> None:
    base = _model("A100-80GB", "Llama-3.1-8B")
    slower = CalibratedConfig(step_overhead_ms=50.0).build(
        get_model("Llama-3.1-8B"), get_hardware("A100-80GB"), 1
    )
    assert slower.decode_step_time(1, 100) > base.decode_step_time(1, 100) + 0.04  # type: ignore[attr-defined]


def test_presets_load_and_apply() -> None:
    names = {p.name for p in list_presets()}
    assert {"vllm-0.6", "vllm-v1", "sglang", "tensorrt-llm"} <= names
    eng = EngineConfig(preset="sglang", cost=CalibratedConfig())
    host = get_preset("sglang").host
    assert isinstance(eng.cost, CalibratedConfig)
    assert eng.cost.step_overhead_ms == host.step_overhead_ms
    explicit = EngineConfig(preset="sglang", cost=CalibratedConfig(step_overhead_ms=9.0))
    assert explicit.cost.step_overhead_ms == 9.0  # type: ignore[union-attr]
    roof = EngineConfig.model_validate({"preset": "tensorrt-llm"})
    assert isinstance(roof.cost, RooflineConfig)
    assert roof.cost.step_overhead_ms == get_preset("trtllm").host.step_overhead_ms
    assert roof.block_size == get_preset("tensorrt-llm").block_size
    again = EngineConfig.model_validate(roof.model_dump(mode="json"))
    assert again == roof
    with pytest.raises(ValueError, match=r"unknown engine preset .vlm.*did you mean"):
        EngineConfig(preset="vlm")


def test_preset_policy_update_sets_known_fields_only() -> None:
    from llmsim.policies import ContinuousConfig

    preset = get_preset("vllm-v1")
    updated = preset.policy_update(ContinuousConfig(max_num_seqs=7))
    assert updated.max_num_seqs == 7  # type: ignore[attr-defined]
    assert updated.max_num_batched_tokens == 8192  # type: ignore[attr-defined]


def test_cli_calibrate_from_user_csv(tmp_path: Path) -> None:
    rows = ["family,model,m,n,k,time_ms"]
    for model, scale in (("a", 1.0), ("b", 1.05)):
        for m in (1, 16, 128, 1024, 4096):
            for n, k in ((4096, 4096), (14336, 4096), (4096, 14336)):
                t = scale * (0.005 + 2 * m * n * k / 500e12 * 1e3 + 2 * n * k / 1.5e12 * 1e3)
                rows.append(f"gemm,{model},{m},{n},{k},{t:.6g}")
    data = tmp_path / "ops.csv"
    data.write_text("\n".join(rows) + "\n")
    steps = tmp_path / "steps.csv"
    steps.write_text(
        "model,prefill_tokens,prefill_seqs,decode_seqs,decode_context,time_ms\n"
        "Llama-3.1-8B,0,0,16,16000,14\nLlama-3.1-8B,0,0,64,64000,22\n"
        "Llama-3.1-8B,1024,1,0,0,80\n"
    )
    result = runner.invoke(
        app,
        [
            "calibrate",
            "L4",
            "--data",
            str(data),
            "--data",
            str(steps),
            "--out",
            str(tmp_path),
            "--date",
            "2025-01-01",
        ],
    )
    assert result.exit_code == 0, result.output
    hw = get_hardware(str(tmp_path / "l4.yaml"))
    assert hw.calibrated and hw.calibration is not None
    assert "ops.csv" in hw.calibration.data
    # The measured GEMMs travel with the profile, next to it, and are named relative to it.
    assert (tmp_path / "l4.kernels.parquet").is_file()
    assert 'kernel_table: "l4.kernels.parquet"' in (tmp_path / "l4.yaml").read_text()
    assert hw.calibration.kernel_table == str(tmp_path / "l4.kernels.parquet")
    assert hw.calibration.host.source.startswith("fitted on 3 measured steps")
    assert "warning: L4 gemm" not in " ".join(
        result.output.split()
    )  # GEMMs that follow the model fit it well
    cm = CalibratedConfig().build(get_model("Llama-3.1-8B"), hw, 1)
    assert math.isfinite(cm.decode_step_time(8, 8000))


def test_cli_calibrate_warns_on_measurements_the_model_cannot_explain(tmp_path: Path) -> None:
    # times unrelated to the shapes (as on a device other than the GPU named): the profile is
    # written, and the held-out error is said out loud
    rng = np.random.default_rng(0)
    rows = ["family,model,m,n,k,time_ms"]
    for model in ("a", "b"):
        for m in (1, 16, 128, 1024, 4096):
            for n, k in ((4096, 4096), (14336, 4096), (4096, 14336)):
                rows.append(f"gemm,{model},{m},{n},{k},{rng.lognormal(0, 2):.6g}")
    data = tmp_path / "ops.csv"
    data.write_text("\n".join(rows) + "\n")
    result = runner.invoke(app, ["calibrate", "L4", "--data", str(data), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "l4.yaml").is_file()
    assert "warning: L4 gemm bf16: median error" in " ".join(result.output.split())


def test_cli_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["calibrate", "L4"])
    assert result.exit_code == 2
    assert "no shipped measurements for 'L4'" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("family,time_ms\nwat,1\n")
    result = runner.invoke(app, ["calibrate", "L4", "--data", str(bad), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "line 2" in result.output
    result = runner.invoke(app, ["fidelity", "nope-gpu"])
    assert result.exit_code == 2


def test_cli_fidelity_writes_table(tmp_path: Path) -> None:
    result = runner.invoke(app, ["fidelity", "A40", "--out", str(tmp_path), "--plots"])
    assert result.exit_code == 0, result.output
    assert "[1/1] fitting A40" in result.stderr  # progress while it works
    png = (tmp_path / "A40.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    text = (tmp_path / "fidelity.csv").read_text()
    assert "gemm bf16" in text and "leave-one-model-out" in text
    assert (tmp_path / "fidelity.md").read_text().startswith("| GPU |")
    # The same held-out errors by size regime: every held-out row lands in one regime.
    total = pd.read_csv(tmp_path / "fidelity.csv")
    by_size = pd.read_csv(tmp_path / "fidelity_by_size.csv")
    keys = ["family", "data", "holdout"]
    counts = by_size.groupby(keys)["points"].sum()
    assert counts.to_dict() == total.set_index(keys)["points"].to_dict()
    gemm = by_size[by_size["family"] == "gemm bf16"]
    assert list(gemm["regime"]) == ["m <= 16", "m 17-256", "m 257-2048", "m > 2048"]


def test_hardware_table_says_which_profiles_are_calibrated() -> None:
    result = runner.invoke(app, ["hardware"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    lines = {ln.split()[1]: ln for ln in result.output.splitlines() if ln.startswith("│ ")}
    assert "calibrated" in lines["H100-SXM"] and "datasheet" in lines["L4"]


def test_profiler_on_cpu_writes_llmsim_csv(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason=TORCH_MISSING)
    out = tmp_path / "measured.csv"
    result = runner.invoke(
        app,
        [
            "profile",
            str(DATA / "tiny-model.yaml"),
            "--device",
            "cpu",
            "--tokens",
            "1,8",
            "--contexts",
            "16",
            "--batches",
            "1,2",
            "--repeats",
            "2",
            "--gpus",
            "2",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = read_operator_csv(out)
    assert set(rows["family"]) == {
        "gemm",
        "elementwise",
        "prefill_attention",
        "decode_attention",
        "all_reduce",
        "send_recv",
    }
    transfers = rows[rows["family"] == "send_recv"]
    assert set(transfers["op"]) == {"intra-node"} and set(transfers["gpus"]) == {2.0}
    assert out.read_text().startswith("# llmsim profile: Tiny-Test")
    for group in ("GEMM qkv", "norm and activation", "decode attention", "all-reduce"):
        assert group in result.stderr  # progress, one line per group of shapes
    result = runner.invoke(app, ["calibrate", "L4", "--data", str(out), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("hw", CALIBRATED)
def test_gemm_time_non_decreasing_with_wave_quantisation(hw: str) -> None:
    import numpy as np

    from llmsim.cost import kernels as K

    profile = get_hardware(hw)
    assert profile.calibration is not None
    for dtype, params in profile.calibration.gemm.items():
        th = K.theta(params, K.GEMM)
        m = np.arange(1.0, 20_000.0)
        for n, k in ((1024.0, 4096.0), (6144.0, 8192.0), (57344.0, 8192.0)):
            t = K.gemm_time(
                th,
                m,
                n,
                k,
                peak=profile.peak_flops(dtype),
                bandwidth=profile.memory_bandwidth,
                sms=float(params.sms),
            )
            assert np.all(np.isfinite(t)) and np.all(np.diff(t) >= 0), (dtype, n, k)


def test_rewriting_a_profile_keeps_one_calibration_header() -> None:
    from llmsim.calibration.profile_yaml import HEADER, profile_path, profile_text

    hw = get_hardware("H100-SXM")
    assert hw.calibration is not None
    text = profile_path("H100-SXM").read_text(encoding="utf-8")
    once = profile_text(text, hw.calibration)
    assert profile_text(once, hw.calibration) == once
    assert once.count(HEADER[0]) == 1
