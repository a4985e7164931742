"""Kernel tables: measured GEMM and attention times that correct the fitted formulas. Exact on
measured shapes, monotone in tokens and context, the formula's growth beyond the measured
range, and loaded with the profile that names them."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from llmsim.cli import app
from llmsim.cost import CalibratedConfig
from llmsim.cost.attention_table import AttentionTable, Surface
from llmsim.cost.gemm_table import GemmTable
from llmsim.cost.kernel_table import COLUMNS, Curve, read_kernel_table
from llmsim.errors import ConfigError
from llmsim.hardware import get_hardware, profiles_dir
from llmsim.models import get_model

M_GRID = (1, 2, 4, 8, 16, 64, 256, 1024, 4096)
WEIGHTS = ((1024, 1024), (2048, 1024), (4096, 1024), (1024, 4096), (4096, 4096))


def formula(m: object, n: object, k: object) -> object:
    """A simple stand-in for the fitted formula: launch + max(compute, weight read)."""
    return 5e-6 + np.maximum(2 * m * n * k / 400e12, 2 * n * k / 2e12)  # type: ignore[operator]


def table(ratio: object) -> pd.DataFrame:
    """Measurements equal to ``formula x ratio(m, n, k)`` on the grid."""
    rows = [(m, n, k) for n, k in WEIGHTS for m in M_GRID]
    frame = pd.DataFrame(rows, columns=["m", "n", "k"]).astype(float)
    m, n, k = (frame[c].to_numpy() for c in ("m", "n", "k"))
    return frame.assign(time_s=formula(m, n, k) * ratio(m, n, k))  # type: ignore[operator]


def test_measured_shape_is_reproduced_exactly() -> None:
    rows = table(lambda m, n, k: 1.0 + 0.1 * np.log2(n / 1024))  # ratio rises with n
    curve = GemmTable(rows, formula).curve(2048, 1024)
    for m in M_GRID:
        want = float(formula(m, 2048.0, 1024.0)) * 1.1  # type: ignore[arg-type]
        assert curve(m) == pytest.approx(want, rel=1e-12)


def test_uniform_correction_carries_to_unmeasured_shapes() -> None:
    tab = GemmTable(table(lambda m, n, k: np.full_like(m, 1.3)), formula)
    for n, k in ((3000, 1500), (512, 8192), (100_000, 100)):
        curve = tab.curve(n, k)
        for m in (0.5, 1, 16, 4096, 1e5):  # on the table's row counts, and beyond them
            assert curve(m) == pytest.approx(1.3 * float(formula(m, n, k)), rel=1e-9)  # type: ignore[arg-type]


def test_unmeasured_shape_takes_its_neighbours_correction() -> None:
    # The library is 20 % slower than the formula for n = 1024 and 10 % faster for n = 4096:
    # n = 2048 is held out and must land in between, nearer to its own measurements than the
    # formula alone.
    def ratio(m: np.ndarray, n: np.ndarray, k: np.ndarray) -> np.ndarray:
        return np.where(n <= 1024, 1.2, np.where(n >= 4096, 0.9, 1.05))

    rows = table(ratio)
    held = rows["n"] == 2048
    tab = GemmTable(rows[~held], formula)
    m = rows.loc[held, "m"].to_numpy()
    pred = tab.predict(m, rows.loc[held, "n"].to_numpy(), rows.loc[held, "k"].to_numpy())
    measured = rows.loc[held, "time_s"].to_numpy()
    plain = formula(m, 2048.0, 1024.0)
    assert np.all(np.abs(pred / measured - 1) < np.abs(plain / measured - 1))  # type: ignore[operator]
    assert np.all((pred > 0.9 * plain) & (pred < 1.2 * plain))  # type: ignore[operator]


def test_noisy_measurements_give_a_monotone_curve_that_follows_the_formula_beyond() -> None:
    rng = np.random.default_rng(7)
    noise = rng.uniform(0.8, 1.25, size=len(M_GRID) * len(WEIGHTS))
    rows = table(lambda m, n, k: noise)
    tab = GemmTable(rows, formula)
    for n, k in ((4096, 4096), (1500, 3000)):
        curve = tab.curve(n, k)
        ms = np.unique(np.concatenate([np.linspace(0.5, 8192, 3001), np.asarray(M_GRID)]))
        times = np.array([curve(m) for m in ms])
        assert np.all(np.diff(times) >= 0) and np.all(np.isfinite(times))
        assert np.allclose(curve.many(ms), times, rtol=1e-12)
        # Far beyond the table, time grows as the formula does.
        big = [curve(m) / float(formula(m, n, k)) for m in (1e5, 1e6)]  # type: ignore[arg-type]
        assert big[0] == pytest.approx(big[1], rel=1e-9)


def test_shipped_profile_reproduces_a_measured_gemm() -> None:
    hw = get_hardware("H100-SXM")
    assert hw.calibration is not None and hw.calibration.kernel_table
    measured = read_kernel_table(hw.calibration.kernel_table)
    row = measured[
        (measured["family"] == "gemm")
        & (measured["dtype"] == "bf16")
        & (measured["m"] == 512)
        & (measured["n"] == 6144)
        & (measured["k"] == 4096)
    ]
    assert len(row) == 1
    cm = CalibratedConfig().build(get_model("Llama-3.1-8B"), hw, 1)
    # Llama-3.1-8B's QKV projection is 6144 x 4096 at TP 1.
    got = cm._gemm(512.0, (6144.0, 4096.0))
    assert got == pytest.approx(float(row["time_s"].iloc[0]), rel=0.03)


def _copy_profile(tmp_path: Path) -> Path:
    src = profiles_dir() / "h100-sxm.yaml"
    dest = tmp_path / "my-h100.yaml"
    dest.write_text(src.read_text().replace("name: H100-SXM", "name: My-H100"))
    return dest


def test_profile_file_finds_its_table_next_to_it(tmp_path: Path) -> None:
    path = _copy_profile(tmp_path)
    shutil.copy(profiles_dir() / "h100-sxm.kernels.parquet", tmp_path)
    hw = get_hardware(str(path))
    assert hw.calibration is not None
    assert hw.calibration.kernel_table == str(tmp_path / "h100-sxm.kernels.parquet")
    cm = CalibratedConfig().build(get_model("Llama-3.1-8B"), hw, 1)
    assert math.isfinite(cm.decode_step_time(8, 8000))


def test_missing_table_is_a_one_line_error(tmp_path: Path) -> None:
    path = _copy_profile(tmp_path)  # the parquet file is not copied
    with pytest.raises(ConfigError) as err:
        get_hardware(str(path))
    msg = str(err.value)
    assert "\n" not in msg
    assert "calibration.kernel_table" in msg and "h100-sxm.kernels.parquet" in msg
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        f"model: Llama-3.1-8B\nhardware: {path}\nworkload: {{num_requests: 5}}\n"
        "engine: {cost: {kind: calibrated}}\n"
    )
    result = CliRunner().invoke(app, ["run", str(scenario), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    # The profile file is named, with its own field (not the scenario's hardware field).
    assert "my-h100.yaml: calibration.kernel_table: file 'h100-sxm.kernels.parquet' not found" in (
        result.output
    )
    assert "Traceback" not in result.output


def _table_row(family: str, **values: object) -> pd.DataFrame:
    row: dict[str, list[object]] = {c: [np.nan] for c in COLUMNS}
    row.update(family=[family], dtype=["bf16"], op=[""], time_ms=[0.1])
    row.update({k: [v] for k, v in values.items()})
    return pd.DataFrame(row)


def test_table_without_its_columns_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"family": ["gemm"], "m": [1], "n": [2], "k": [3], "ms": [0.1]}).to_parquet(bad)
    with pytest.raises(ConfigError, match=r"missing columns dtype, op, batch, .*time_ms"):
        read_kernel_table(str(bad))
    neg = tmp_path / "neg.parquet"
    _table_row("gemm", m=1, n=2, k=3, time_ms=-0.1).to_parquet(neg)
    with pytest.raises(ConfigError, match=r"row 0 \(gemm\): m, n, k, time_ms must be positive"):
        read_kernel_table(str(neg))
    ar = tmp_path / "ar.parquet"
    _table_row("all_reduce", nbytes=1024).to_parquet(ar)  # no GPU count
    with pytest.raises(ConfigError, match=r"row 0 \(all_reduce\): nbytes, gpus, time_ms must"):
        read_kernel_table(str(ar))
    other = tmp_path / "other.parquet"
    _table_row("conv", m=1, n=2, k=3).to_parquet(other)
    with pytest.raises(ConfigError, match="family 'conv' unknown; valid: gemm, prefill_attention"):
        read_kernel_table(str(other))


# --- attention ------------------------------------------------------------------------------

BATCHES = (1.0, 2.0, 4.0, 16.0, 64.0)
LENGTHS = (16.0, 128.0, 1024.0, 8192.0)
HEAD_CONFIGS = ((32.0, 8.0, 128.0), (8.0, 8.0, 128.0), (64.0, 8.0, 128.0))


def attention_formula(b: object, length: object) -> object:
    """A stand-in for the decode formula of one head configuration: launch + bytes read."""
    return 3e-6 + b * length * 4096 / 2e12  # type: ignore[operator]


def attention_rows(ratio: object) -> tuple[pd.DataFrame, np.ndarray]:
    rows = [(b, n, h, kv, d) for h, kv, d in HEAD_CONFIGS for b in BATCHES for n in LENGTHS]
    frame = pd.DataFrame(rows, columns=["batch", "seq_len", "heads", "kv_heads", "head_dim"])
    b, n = frame["batch"].to_numpy(), frame["seq_len"].to_numpy()
    predicted = np.asarray(attention_formula(b, n), dtype=float)
    measured = predicted * ratio(b, n, frame["heads"].to_numpy())  # type: ignore[operator]
    return frame.assign(time_s=measured), predicted


def test_attention_surface_is_exact_on_measured_shapes() -> None:
    rows, predicted = attention_rows(lambda b, n, h: 1.0 + 0.05 * np.log2(b))  # monotone
    surface = AttentionTable(rows, predicted).surface(32, 8, 128, attention_formula)
    for b in BATCHES:
        for n in LENGTHS:
            want = float(attention_formula(b, n)) * (1.0 + 0.05 * math.log2(b))  # type: ignore[arg-type]
            assert surface(b, n) == pytest.approx(want, rel=1e-12)


def test_attention_surface_is_monotone_and_follows_the_formula_beyond() -> None:
    rng = np.random.default_rng(3)
    noise = rng.uniform(0.7, 1.4, size=len(BATCHES) * len(LENGTHS) * len(HEAD_CONFIGS))
    rows, predicted = attention_rows(lambda b, n, h: noise)
    table = AttentionTable(rows, predicted)
    for heads in ((32, 8, 128), (20, 4, 96)):  # measured, and a configuration nobody measured
        surface = table.surface(*heads, attention_formula)
        bs = np.array([0.5, 1, 1.5, 3, 16, 40, 64, 100, 1000])
        ns = np.geomspace(1, 1e6, 60)
        grid = np.array([[surface(b, n) for n in ns] for b in bs])
        assert np.all(np.isfinite(grid)) and np.all(grid > 0)
        assert np.all(np.diff(grid, axis=1) >= 0)  # in length, at every batch
        assert np.all(np.diff(grid, axis=0) >= -1e-18)  # in batch, at every length
        bb, nn = np.meshgrid(bs, ns, indexing="ij")
        vector = surface.many(bb.ravel(), nn.ravel()).reshape(bb.shape)
        assert np.allclose(vector, grid, rtol=1e-9)
        for b in (1.0, 5000.0):  # far beyond the longest length: the formula's growth
            far = [surface(b, n) / float(attention_formula(b, n)) for n in (1e6, 1e7)]  # type: ignore[arg-type]
            assert far[0] == pytest.approx(far[1], rel=1e-9)


def test_surface_row_matches_the_surface() -> None:
    rows, predicted = attention_rows(lambda b, n, h: 1.0 + 0.1 * np.sin(n))
    surface = AttentionTable(rows, predicted).surface(32, 8, 128, attention_formula)
    assert isinstance(surface, Surface)
    for b in (1.0, 3.0, 64.0, 200.0):
        row = surface.row(b)
        for n in (1.0, 20.0, 700.0, 8192.0, 20000.0):
            assert row(n) == surface(b, n)


def test_shipped_profile_reproduces_measured_attention() -> None:
    hw = get_hardware("H100-SXM")
    assert hw.calibration is not None
    measured = read_kernel_table(hw.calibration.kernel_table)
    cm = CalibratedConfig().build(get_model("Llama-3.1-8B"), hw, 1)  # 32 heads, 8 KV heads
    llama = (measured["heads"] == 32) & (measured["kv_heads"] == 8) & (measured["head_dim"] == 128)
    layers = get_model("Llama-3.1-8B").num_layers
    for family in ("decode_attention", "prefill_attention"):
        rows = measured[llama & (measured["family"] == family) & (measured["batch"] == 16)]
        assert len(rows) >= 10
        for r in rows.itertuples():
            if family == "decode_attention":
                got = cm._decode_attention(16, 16 * r.seq_len) / layers
            else:
                from llmsim.cost import BatchShape

                shape = BatchShape.prefill([(int(r.seq_len), 0)] * 16)
                got = cm._prefill_attention(shape) / layers
            # The isotonic smoothing moves a few points; most are reproduced exactly.
            assert got == pytest.approx(r.time_s, rel=0.15), (family, r.seq_len)


# --- elementwise and all-reduce curves -------------------------------------------------------


def test_curve_through_measurements_is_monotone_and_extends_by_the_formula() -> None:
    def formula(x: object) -> object:
        return 4e-6 + np.asarray(x, dtype=float) / 2e12

    x = np.array([1e3, 1e3, 1e4, 1e5, 1e6, 1e7])
    t = np.array([5e-6, 7e-6, 5e-6, 6e-6, 5.4e-6, 1e-5])  # repeated size; a dip at 1e6
    curve = Curve.of_points(x, t, formula)
    # The median of the repeated size (6e-6) and the dip after it are pooled (geometric mean).
    assert curve(1e3) == pytest.approx(math.sqrt(6e-6 * 5e-6)) == curve(1e4)
    sizes = np.geomspace(1, 1e10, 400)
    times = np.array([curve(v) for v in sizes])
    assert np.all(np.diff(times) >= 0) and np.allclose(curve.many(sizes), times, rtol=1e-12)
    assert curve(1e7) == pytest.approx(1e-5)
    ratio = [curve(v) / float(formula(v)) for v in (1e9, 1e10)]  # type: ignore[arg-type]
    assert ratio[0] == pytest.approx(ratio[1], rel=1e-9)


def test_shipped_profile_prices_all_reduce_and_norms_on_their_measurements() -> None:
    hw = get_hardware("H100-SXM")
    assert hw.calibration is not None
    measured = read_kernel_table(hw.calibration.kernel_table)
    model = get_model("Llama-3.1-8B")
    cm = CalibratedConfig().build(model, hw, 8)
    ar = measured[(measured["family"] == "all_reduce") & (measured["gpus"] == 8)]
    assert len(ar) >= 10
    per_token = model.hidden_size * 2
    for r in ar.itertuples():
        if r.nbytes % per_token == 0:
            got = cm._all_reduce(int(r.nbytes // per_token))
            assert got == pytest.approx(r.time_s, rel=0.1)
    norms = measured[(measured["family"] == "elementwise") & (measured["op"] == "add")]
    assert len(norms) > 100
    assert cm._ew_curves[3] is not None  # "add" rows price the residual adds


def test_user_gemms_replace_only_the_gemms_of_a_calibrated_profile(tmp_path: Path) -> None:
    rows = ["family,model,m,n,k,time_ms"]
    for model, scale in (("a", 1.0), ("b", 1.1)):
        for m in (1, 64, 1024):
            for n, k in ((4096, 4096), (6144, 4096)):
                rows.append(f"gemm,{model},{m},{n},{k},{scale * (0.01 + m * n * k * 3e-12):.6g}")
    data = tmp_path / "my_gemms.csv"
    data.write_text("\n".join(rows) + "\n")
    args = [
        "calibrate",
        "H100-SXM",
        "--data",
        str(data),
        "--out",
        str(tmp_path),
        "--date",
        "2026-01-01",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    hw = get_hardware(str(tmp_path / "h100-sxm.yaml"))
    assert hw.calibration is not None
    table = read_kernel_table(hw.calibration.kernel_table)
    shipped = read_kernel_table(get_hardware("H100-SXM").calibration.kernel_table)  # type: ignore[union-attr]
    bf16 = table[(table["family"] == "gemm") & (table["dtype"] == "bf16")]
    assert len(bf16) == 12  # the user's GEMMs only
    for family in ("prefill_attention", "decode_attention", "elementwise", "all_reduce"):
        assert (table["family"] == family).sum() == (shipped["family"] == family).sum() > 0
    fp8 = (table["family"] == "gemm") & (table["dtype"] == "fp8")
    assert fp8.sum() == ((shipped["family"] == "gemm") & (shipped["dtype"] == "fp8")).sum()
    # The fitted GEMM and its table describe the user's data: a measured shape comes back.
    cm = CalibratedConfig().build(get_model("Llama-3.1-8B"), hw, 1)
    assert cm._gemm(1024.0, (6144.0, 4096.0)) == pytest.approx(
        1e-3 * (0.01 + 1024 * 6144 * 4096 * 3e-12) * 1.05, rel=0.06
    )


# --- the calibrated model with its tables, on arbitrary shapes ----------------------------------

_MODELS = ["Llama-3.1-8B", "Llama-3.1-70B", "Qwen2.5-7B", "Mixtral-8x7B", "Phi-2"]
_COST_MODELS: dict[tuple[str, str, int], object] = {}


def _cost(hw: str, model: str, tp: int) -> object:
    key = (hw, model, tp)
    if key not in _COST_MODELS:
        _COST_MODELS[key] = CalibratedConfig().build(get_model(model), get_hardware(hw), tp)
    return _COST_MODELS[key]


@settings(max_examples=150, deadline=None)
@given(
    hw=st.sampled_from(["A100-80GB", "H100-SXM", "H200", "B200", "A40"]),
    model=st.sampled_from(_MODELS),
    tp=st.sampled_from([1, 2, 4, 8]),
    seqs=st.integers(1, 3000),
    more_seqs=st.integers(0, 500),
    per_seq=st.integers(1, 300_000),
    more_context=st.integers(0, 2_000_000),
    tokens=st.integers(1, 200_000),
    more_tokens=st.integers(0, 100_000),
    past=st.integers(0, 100_000),
)
def test_calibrated_steps_grow_with_work(
    hw: str,
    model: str,
    tp: int,
    seqs: int,
    more_seqs: int,
    per_seq: int,
    more_context: int,
    tokens: int,
    more_tokens: int,
    past: int,
) -> None:
    """More context, more sequences, more prompt tokens or more cached tokens under a prompt
    never make a step faster, and every step time is finite and positive, in and far beyond
    the measured range."""
    from llmsim.cost import BatchShape

    cm = _cost(hw, model, tp)
    context = seqs * per_seq
    t = cm.decode_step_time(seqs, context)  # type: ignore[attr-defined]
    assert math.isfinite(t) and t > 0
    assert cm.decode_step_time(seqs, context + more_context) >= t * (1 - 1e-12)  # type: ignore[attr-defined]
    bigger = seqs + more_seqs
    assert cm.decode_step_time(bigger, bigger * per_seq) >= t * (1 - 1e-12)  # type: ignore[attr-defined]
    p = cm.step_time(BatchShape.prefill([(tokens, 0)]))  # type: ignore[attr-defined]
    assert math.isfinite(p) and p > 0
    q = cm.step_time(BatchShape.prefill([(tokens + more_tokens, 0)]))  # type: ignore[attr-defined]
    assert q >= p * (1 - 1e-12)
    chunk = cm.step_time(BatchShape.prefill([(tokens, past)]))  # type: ignore[attr-defined]
    assert chunk >= p * (1 - 1e-12)


def test_kernel_table_can_be_switched_off() -> None:
    """``kernel_table: false`` prices with the fitted formulas alone: the same as a profile
    without a table, and different from the corrected model."""
    hw = get_hardware("H100-SXM")
    assert hw.calibration is not None
    bare = hw.model_copy(
        update={"calibration": hw.calibration.model_copy(update={"kernel_table": ""})}
    )
    model = get_model("Llama-3.1-8B")
    off = CalibratedConfig(kernel_table=False).build(model, hw, 1)
    none = CalibratedConfig().build(model, bare, 1)
    on = CalibratedConfig().build(model, hw, 1)
    for seqs, ctx in ((1, 100), (64, 64_000)):
        assert off.decode_step_time(seqs, ctx) == none.decode_step_time(seqs, ctx)
        assert on.decode_step_time(seqs, ctx) != off.decode_step_time(seqs, ctx)
