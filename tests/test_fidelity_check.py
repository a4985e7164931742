"""``llmsim fidelity GPU --data``: a calibrated profile predicting measurements it was not
fitted on, and the operator CSV's elementwise kinds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from llmsim.calibration.llmsim_csv import read_operator_csv
from llmsim.cli import app
from llmsim.cost.kernel_table import read_kernel_table
from llmsim.errors import ConfigError
from llmsim.hardware import get_hardware

runner = CliRunner()


def _h100_measurements(path: Path) -> Path:
    """Some of H100's own measured GEMMs and decode attention rows, as a user CSV."""
    hw = get_hardware("H100-SXM")
    assert hw.calibration is not None
    table = read_kernel_table(hw.calibration.kernel_table)
    gemm = table[(table["family"] == "gemm") & (table["dtype"] == "bf16")].iloc[::500]
    decode = table[table["family"] == "decode_attention"].iloc[::200]
    rows = pd.concat([gemm, decode])
    cols = ["family", "dtype", "m", "n", "k", "batch", "seq_len", "heads", "kv_heads"]
    out = rows[[*cols, "head_dim", "time_ms"]]
    out.to_csv(path, index=False)
    assert len(gemm) > 20 and len(decode) > 20
    return path


def test_profile_predicts_its_own_gpu_better_than_another(tmp_path: Path) -> None:
    data = _h100_measurements(tmp_path / "h100.csv")
    errors = {}
    for gpu in ("H100-SXM", "A100-80GB"):
        out = tmp_path / gpu
        result = runner.invoke(app, ["fidelity", gpu, "--data", str(data), "--out", str(out)])
        assert result.exit_code == 0, result.output
        table = pd.read_csv(out / "fidelity.csv")
        assert set(table["family"]) == {"gemm bf16", "decode_attention"}
        assert set(table["holdout"]) == {f"predicted by the {gpu} profile (not fitted)"}
        errors[gpu] = table.set_index("family")["median_ape"]
    # Measured shapes come back (up to the monotone smoothing); another GPU is far off.
    assert (errors["H100-SXM"] < 3.0).all()
    assert (errors["A100-80GB"] > 4 * errors["H100-SXM"] + 10).all()


def test_fidelity_data_needs_one_calibrated_profile(tmp_path: Path) -> None:
    data = _h100_measurements(tmp_path / "h100.csv")
    result = runner.invoke(app, ["fidelity", "H100-SXM", "A40", "--data", str(data)])
    assert result.exit_code == 2
    assert "--data checks one profile: name exactly one" in result.output
    result = runner.invoke(app, ["fidelity", "L4", "--data", str(data)])
    assert result.exit_code == 2
    assert "hardware 'L4' has no calibration section" in result.output


def test_elementwise_rows_name_their_kind(tmp_path: Path) -> None:
    csv = tmp_path / "ew.csv"
    csv.write_text(
        "family,op,bytes,time_ms\nelementwise,activation,1048576,0.01\n"
        "elementwise,,1048576,0.01\nelementwise,softmax,1048576,0.01\n"
    )
    with pytest.raises(ConfigError) as err:
        read_operator_csv(csv)
    assert str(err.value) == (
        f"{csv}: line 4: column 'op' has 'softmax'; valid: norm, rope, activation, add, embedding"
    )
    csv.write_text("family,op,bytes,time_ms\nelementwise,activation,1024,0.01\nelementwise,,8,1\n")
    assert list(read_operator_csv(csv)["op"]) == ["activation", "norm"]


def test_step_measurements_are_checked_with_the_engines_host_overhead(tmp_path: Path) -> None:
    """A step the profile itself prices is predicted exactly; an engine preset's host
    overhead moves the prediction by exactly the difference in host time."""
    from llmsim.cost import BatchShape, CalibratedConfig
    from llmsim.models import get_model
    from llmsim.presets import get_preset

    hw = get_hardware("H100-SXM")
    cm = CalibratedConfig().build(get_model("Llama-3.1-8B"), hw, 1)
    decode = cm.step_time(BatchShape.decode(16, 16_000))
    prefill = cm.step_time(BatchShape.prefill([(1024, 0)]))
    steps = tmp_path / "steps.csv"
    steps.write_text(
        "prefill_tokens,prefill_seqs,decode_seqs,decode_context,time_ms\n"
        f"0,0,16,16000,{decode * 1e3!r}\n1024,1,0,0,{prefill * 1e3!r}\n"
    )
    args = ["fidelity", "H100-SXM", "--data", str(steps), "--model", "Llama-3.1-8B"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    row = pd.read_csv(tmp_path / "a" / "fidelity.csv").iloc[0]
    assert row["family"] == "step" and row["points"] == 2 and row["median_ape"] < 1e-6
    result = runner.invoke(app, [*args, "--preset", "vllm-v1", "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    row = pd.read_csv(tmp_path / "b" / "fidelity.csv").iloc[0]
    assert row["holdout"].endswith("vllm-v1 host overhead")
    host = get_preset("vllm-v1").host
    cal = hw.calibration
    assert cal is not None
    shift = (host.step_overhead_ms - cal.host.step_overhead_ms) * 1e-3
    shift_seqs = (host.seq_overhead_us - cal.host.seq_overhead_us) * 1e-6
    expected = sorted(
        abs(shift + n * shift_seqs) / t * 100 for n, t in ((16, decode), (1, prefill))
    )
    assert row["median_ape"] == pytest.approx(sum(expected) / 2, rel=0.02)
    result = runner.invoke(app, [*args, "--preset", "nope"])
    assert result.exit_code == 2 and "unknown engine preset 'nope'" in result.output


def test_a_profile_without_kernel_table_is_checked_by_its_formulas(tmp_path: Path) -> None:
    from llmsim.calibration.holdout import profile_errors

    rows = read_operator_csv(_h100_measurements(tmp_path / "h100.csv"))
    hw = get_hardware("H100-SXM")
    assert hw.calibration is not None
    bare = hw.model_copy(
        update={"calibration": hw.calibration.model_copy(update={"kernel_table": ""})}
    )
    with_table = {r.family: r.median_ape for r in profile_errors(hw, rows, "h100.csv")}
    formulas = {r.family: r.median_ape for r in profile_errors(bare, rows, "h100.csv")}
    assert set(formulas) == {"gemm bf16", "decode_attention"}
    # the measured shapes themselves come back only through the table
    assert all(formulas[f] > with_table[f] + 2.0 for f in formulas)
