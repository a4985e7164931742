"""The built wheel works on its own: build it, install it into a fresh virtual environment (its
dependencies read from this one's site-packages), and run the ``llmsim`` entry point from an
unrelated folder, so nothing can come from the source tree.

Slow (a wheel build): deselect with ``-m 'not slow'``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BIN = "Scripts" if os.name == "nt" else "bin"

# Data the package reads at run time, as (folder in the wheel, file pattern, a file that must be
# there).
SHIPPED = [
    ("llmsim/hardware_profiles", ".yaml", "h100-sxm.yaml"),
    ("llmsim/hardware_profiles", ".kernels.parquet", "h100-sxm.kernels.parquet"),
    ("llmsim/model_catalog", ".yaml", "llama-3.1-8b.yaml"),
    ("llmsim/workload/data", ".csv.gz", "sharegpt_llama2_lengths.csv.gz"),
    ("llmsim/workload/data", ".csv.gz", "arxiv_summarization_lengths.csv.gz"),
    ("llmsim/workload/data", ".csv.gz", "azure_llm_2023_conv.csv.gz"),
    ("llmsim/workload/data", ".jsonl.gz", "mooncake_conversation.jsonl.gz"),
    ("llmsim/workload/data", "-CC-BY-4.0", "LICENSE-azure_llm_2023-CC-BY-4.0"),
]


@dataclass(frozen=True)
class Install:
    wheel: Path
    venv: Path
    workdir: Path
    env: dict[str, str]

    @property
    def python(self) -> Path:
        return self.venv / BIN / "python"

    @property
    def llmsim(self) -> Path:
        return self.venv / BIN / "llmsim"

    def run(self, *args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _check(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"{proc.args}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    base = tmp_path_factory.mktemp("install")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH"}
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    wheels = base / "wheels"
    _check(
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
            cwd=base,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    )
    (wheel,) = wheels.glob("llmsim-*.whl")
    venv = base / "venv"
    _check(
        subprocess.run(
            [sys.executable, "-m", "venv", str(venv)],
            cwd=base,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    )
    workdir = base / "work"
    workdir.mkdir()
    inst = Install(wheel, venv, workdir, env)
    # The dependencies come from this environment's site-packages, named in a path file (a
    # fresh install of numpy, pandas, scipy, matplotlib and pyarrow would take most of a minute;
    # the README's own commands install them from the declared list on every fresh clone).
    # Only the folder is added: its own path files, among them the editable install of this
    # source tree, are not read, so llmsim itself can come only from the wheel.
    purelib = sysconfig.get_paths()["purelib"]
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = _check(inst.run(inst.python, "-c", where))
    (Path(site.stdout.strip()) / "llmsim-test-deps.pth").write_text(purelib + "\n")
    _check(inst.run(inst.python, "-m", "pip", "install", "-q", "--no-deps", wheel, timeout=900))
    return inst


def test_wheel_ships_data_files(install: Install) -> None:
    with zipfile.ZipFile(install.wheel) as zf:
        names = set(zf.namelist())
    for folder, suffix, required in SHIPPED:
        files = {n for n in names if n.startswith(folder + "/") and n.endswith(suffix)}
        assert f"{folder}/{required}" in files, sorted(files)
    # every profile and model file of the source tree is in the wheel
    for folder, source in (
        ("llmsim/hardware_profiles", ROOT / "hardware_profiles"),
        ("llmsim/model_catalog", ROOT / "llmsim" / "model_catalog"),
    ):
        files = [*source.glob("*.yaml"), *source.glob("*.parquet")]
        expected = {f"{folder}/{p.name}" for p in files}
        assert expected, source
        assert expected <= names, sorted(expected - names)
    assert not any(n.startswith(("tests/", "scenarios/")) for n in names)


def test_installed_package_is_the_wheel(install: Install) -> None:
    code = (
        "import llmsim, llmsim.config_io as c, llmsim.workload.lengths as w;"
        "print(llmsim.__file__); print(c.shipped_dir('hardware_profiles')); print(w.DATA_DIR)"
    )
    proc = _check(install.run(install.python, "-c", code))
    site = install.venv.resolve()
    lines = [Path(line).resolve() for line in proc.stdout.splitlines()]
    assert len(lines) == 3, proc.stdout
    for path in lines:
        assert site in path.parents, f"{path} is not inside the venv {site}"
        assert ROOT not in path.parents
    # and the source tree is not importable in that environment at all
    proc = _check(install.run(install.python, "-c", "import sys; print('\\n'.join(sys.path))"))
    assert str(ROOT) not in proc.stdout.splitlines()


def test_installed_hardware(install: Install) -> None:
    proc = _check(install.run(install.llmsim, "hardware"))
    for name in ("H100-SXM", "A100-80GB", "MI300X", "L4", "B200"):
        assert name in proc.stdout, proc.stdout


def test_installed_models(install: Install) -> None:
    proc = _check(install.run(install.llmsim, "models"))
    for name in ("Llama-3.1-8B", "DeepSeek-V3", "Mixtral-8x7B", "Qwen3-30B-A3B"):
        assert name in proc.stdout, proc.stdout


def test_installed_run(install: Install) -> None:
    scenario = install.workdir / "my-scenario.yaml"
    shutil.copyfile(ROOT / "scenarios" / "quickstart.yaml", scenario)
    proc = _check(
        install.run(
            install.llmsim,
            "run",
            scenario.name,
            "--set",
            "workload.num_requests=50",
            "--out",
            "X",
        )
    )
    assert "TTFT" in proc.stdout
    assert "Traceback" not in proc.stderr
    out = install.workdir / "X"
    assert {p.name for p in out.iterdir()} == {
        "requests.parquet",
        "steps.parquet",
        "summary.json",
        "scenario.yaml",
    }
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_requests"] == 50
    assert summary["completed"] == 50
    assert summary["mean_ttft_ms"] > 0


def test_installed_error_is_one_line(install: Install) -> None:
    proc = install.run(install.llmsim, "validate", "missing.yaml")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: missing.yaml: file not found"


def test_installed_calibrated_run(install: Install) -> None:
    """The calibrated cost model finds its profile's kernel table inside the installed
    package."""
    scenario = install.workdir / "calibrated.yaml"
    shutil.copyfile(ROOT / "scenarios" / "quickstart.yaml", scenario)
    args = ["--set", "workload.num_requests=20", "--set", "engine.cost.kind=calibrated"]
    proc = _check(install.run(install.llmsim, "run", scenario.name, *args, "--out", "C", "-q"))
    assert "Traceback" not in proc.stderr
    summary = json.loads((install.workdir / "C" / "summary.json").read_text())
    assert summary["completed"] == 20
