"""``scripts/gpu_calibration.sh``, the one prepared run for a machine with a GPU, run end to
end on the CPU with a tiny model: profile, check the shipped profile, calibrate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from llmsim.hardware import get_hardware

ROOT = Path(__file__).resolve().parent.parent
TORCH_MISSING = (
    "torch is not installed: the profiler (llmsim[profile]) needs it; `make test` installs its "
    "CPU build (torch==2.13.0+cpu from PyTorch's CPU index), or pip install torch --index-url "
    "https://download.pytorch.org/whl/cpu"
)
pytestmark = pytest.mark.slow


def test_gpu_calibration_script_on_cpu(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason=TORCH_MISSING)
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "DEVICE": "cpu",
        "MODELS": str(ROOT / "tests" / "data" / "calibration" / "tiny-model.yaml"),
        "PROFILE_ARGS": "--tokens 1,8,32 --contexts 16,64 --batches 1,2 --repeats 1",
        "COLUMNS": "200",
    }
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(ROOT / "scripts" / "gpu_calibration.sh"), str(out), "H100-SXM"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    provenance = (out / "provenance.txt").read_text()
    assert "gpu: none (device cpu)" in provenance and "torch:" in provenance
    measured = pd.read_csv(out / "tiny-model.csv", comment="#")
    assert {"gemm", "elementwise", "prefill_attention", "decode_attention"} <= set(
        measured["family"]
    )
    checked = pd.read_csv(out / "shipped" / "fidelity.csv")
    assert set(checked["holdout"]) == {"predicted by the H100-SXM profile (not fitted)"}
    hw = get_hardware(str(out / "profile" / "h100-sxm.yaml"))
    assert hw.calibration is not None
    assert "tiny-model.csv" in hw.calibration.data
    assert hw.calibration.engine.startswith("torch ")
    assert Path(hw.calibration.kernel_table).is_file()
