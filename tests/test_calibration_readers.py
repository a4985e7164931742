"""Measurement readers: shipped tables load; malformed files give one ConfigError naming the
file and the line (or parquet row)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from llmsim.calibration import readers as R
from llmsim.calibration.llmsim_csv import read_operator_csv, read_step_csv, sniff
from llmsim.calibration.shipped import DATA_DIR, SHIPPED, SPLITWISE_TABLE
from llmsim.errors import ConfigError


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_tables_load(name: str) -> None:
    for table in SHIPPED[name].fit + SHIPPED[name].check:
        rows = table.load()
        assert len(rows) > 0, table.path
        assert (rows["time_s"] > 0).all()


def test_splitwise_reads_prompt_and_token_rows() -> None:
    steps = SPLITWISE_TABLE.load()
    assert set(steps["kind"]) == {"prompt", "token"}
    assert (steps["time_s"] > 0).all()


def test_data_folder_has_licenses_and_readme() -> None:
    names = {p.name for p in DATA_DIR.iterdir()}
    assert {
        "README.md",
        "LICENSE-vidur-MIT",
        "LICENSE-aiconfigurator-APACHE",
        "LICENSE-splitwise-MIT",
    } <= names
    total = sum(p.stat().st_size for p in DATA_DIR.rglob("*") if p.is_file())
    assert total < 5e6


def _error(call: object, *args: object) -> str:
    with pytest.raises(ConfigError) as exc:
        call(*args)  # type: ignore[operator]
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_vidur_missing_column_names_file_and_header(tmp_path: Path) -> None:
    path = tmp_path / "mlp.csv"
    path.write_text("n_head,n_kv_head\n32,32\n")
    message = _error(R.read_vidur_mlp, path)
    assert str(path) in message and "line 1" in message and "n_embd" in message


def test_vidur_bad_value_names_line(tmp_path: Path) -> None:
    path = tmp_path / "mlp.csv"
    cols = "n_head,n_kv_head,n_embd,n_expanded_embd,num_tokens,num_tensor_parallel_workers"
    path.write_text(
        f"{cols},time_stats.add.median\n32,32,4096,11008,8,1,0.01\n32,32,4096,11008,abc,1,0.01\n"
    )
    message = _error(R.read_vidur_mlp, path)
    assert "line 3" in message and "num_tokens" in message and "'abc'" in message


def test_parquet_bad_value_names_row(tmp_path: Path) -> None:
    path = tmp_path / "gemm_perf.parquet"
    pd.DataFrame(
        {
            "gemm_dtype": ["bfloat16"] * 2,
            "m": [1, 2],
            "n": [64, 64],
            "k": [64, -1],
            "latency": [0.01, 0.02],
        }
    ).to_parquet(path)
    message = _error(R.read_aic_gemm, path)
    assert str(path) in message and "row 1" in message and "'k'" in message


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "x.parquet"
    bad.write_text("not parquet")
    assert "cannot read" in _error(R.read_aic_nccl, bad)
    assert "file not found" in _error(R.read_splitwise, tmp_path / "none.csv")


def test_operator_csv_errors_name_line(tmp_path: Path) -> None:
    path = tmp_path / "ops.csv"
    path.write_text("# comment\nfamily,m,n,k,time_ms\ngemm,1,64,64,0.01\nconv,1,1,1,0.1\n")
    message = _error(read_operator_csv, path)
    assert "line 4" in message and "'conv'" in message and "valid:" in message
    path.write_text("family,m,n,k,time_ms\ngemm,1,64,,0.01\n")
    assert "line 2" in _error(read_operator_csv, path)
    path.write_text("family,m,n,k,time_ms\ngemm,1,64,64\n")
    assert "line 2" in _error(read_operator_csv, path)
    path.write_text("m,n\n")
    assert "not an llmsim measurement CSV" in _error(sniff, path)


def test_operator_csv_reads_every_family(tmp_path: Path) -> None:
    path = tmp_path / "ops.csv"
    path.write_text(
        "family,model,m,n,k,bytes,batch,seq_len,heads,kv_heads,head_dim,gpus,time_ms\n"
        "gemm,a,8,4096,4096,,,,,,,,0.05\n"
        "elementwise,a,,,,1000000,,,,,,,0.004\n"
        "prefill_attention,a,,,,,2,512,32,8,128,,0.2\n"
        "decode_attention,a,,,,,16,1024,32,8,128,,0.03\n"
        "all_reduce,a,,,,1048576,,,,,,8,0.04\n"
        "host,a,,,,,32,,,,,,1.5\n"
    )
    rows = read_operator_csv(path)
    assert sniff(path) == "operators"
    assert list(rows["family"]) == [
        "gemm",
        "elementwise",
        "prefill_attention",
        "decode_attention",
        "all_reduce",
        "host",
    ]
    assert rows["time_s"].iloc[0] == pytest.approx(5e-5)


def test_step_csv(tmp_path: Path) -> None:
    path = tmp_path / "steps.csv"
    path.write_text(
        "prefill_tokens,prefill_seqs,decode_seqs,decode_context,time_ms\n"
        "512,1,0,0,40\n0,0,16,16000,20\n"
    )
    assert sniff(path) == "steps"
    assert len(read_step_csv(path)) == 2
    path.write_text(
        "prefill_tokens,prefill_seqs,decode_seqs,decode_context,time_ms\n512,0,0,0,40\n"
    )
    assert "line 2" in _error(read_step_csv, path)
