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
