"""The shipped GPU profiles in ``hardware_profiles/``: they load, names and aliases resolve without
collisions, the figures pass sanity checks, and every number in the YAML cites its source."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llmsim.config_io import load_model_file
from llmsim.errors import UnknownNameError
from llmsim.hardware import HardwareProfile, get_hardware, list_hardware, profiles_dir

REQUIRED_NAMES = {
    "A100-40GB",
    "A100-80GB",
    "H100-SXM",
    "H100-PCIe",
    "H200",
    "B200",
    "L40S",
    "L4",
    "A10G",
    "MI300X",
    "A40",
    "GH200",
}

# GPUs with shipped measurements carry a fitted calibration section (llmsim calibrate --all).
CALIBRATED = {"A100-80GB", "H100-SXM", "H200", "B200", "A40"}

# GPUs whose host (CPU) link is NVLink-C2C rather than PCIe (pcie_bandwidth_gbps holds it).
HOST_NVLINK_C2C = {"GH200"}

PROFILE_FILES = sorted(profiles_dir().glob("*.yaml"))
PROFILES = list_hardware()


def _ids(profiles: list[HardwareProfile]) -> list[str]:
    return [hw.name for hw in profiles]


def test_profiles_dir_has_yaml_files() -> None:
    assert PROFILE_FILES, f"no profiles found in {profiles_dir()}"


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda p: p.name)
def test_every_yaml_file_loads(path: Path) -> None:
    hw = load_model_file(HardwareProfile, path)
    assert get_hardware(hw.name) == get_hardware(str(path))
    assert get_hardware(hw.name).name == hw.name


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda p: p.name)
def test_file_name_is_lowercase_with_dashes(path: Path) -> None:
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*\.yaml", path.name), path.name


def test_one_profile_per_file() -> None:
    # _catalog() keys by name, so two files with the same name would silently shadow each other.
    assert len(PROFILES) == len(PROFILE_FILES)


def test_required_profiles_present() -> None:
    names = {hw.name for hw in PROFILES}
    missing = REQUIRED_NAMES - names
    assert not missing, f"missing hardware profiles: {sorted(missing)}"


def test_list_hardware_sorted_by_name() -> None:
    assert _ids(PROFILES) == sorted(_ids(PROFILES))


@pytest.mark.parametrize("hw", PROFILES, ids=_ids(PROFILES))
def test_name_and_aliases_resolve_to_own_profile(hw: HardwareProfile) -> None:
    assert get_hardware(hw.name) is hw
    assert get_hardware(hw.name.lower()) is hw
    assert get_hardware(hw.name.upper()) is hw
    for alias in hw.aliases:
        assert get_hardware(alias) is hw, f"alias {alias!r} does not resolve to {hw.name}"
        assert get_hardware(alias.upper()) is hw


def test_no_alias_shared_between_profiles() -> None:
    owner: dict[str, str] = {}
    for hw in PROFILES:
        keys = {hw.name.lower()} | {a.lower() for a in hw.aliases}
        for key in keys:
            assert key not in owner, f"{key!r} is used by both {owner[key]} and {hw.name}"
            owner[key] = hw.name


@pytest.mark.parametrize("hw", PROFILES, ids=_ids(PROFILES))
def test_aliases_are_unique_within_profile(hw: HardwareProfile) -> None:
    lowered = [a.lower() for a in hw.aliases]
    assert len(lowered) == len(set(lowered)), f"{hw.name}: duplicate aliases"


def test_common_aliases() -> None:
    assert get_hardware("h100").name == "H100-SXM"
    assert get_hardware("H100").name == "H100-SXM"
    assert get_hardware("h100-80gb").name == "H100-SXM"
    assert get_hardware("h100-sxm5").name == "H100-SXM"
    assert get_hardware("a100").name == "A100-80GB"
    assert get_hardware("a100-80gb").name == "A100-80GB"
    assert get_hardware("mi300x").name == "MI300X"


def test_unknown_name_suggests_near_miss() -> None:
    with pytest.raises(UnknownNameError) as excinfo:
        get_hardware("H100-SMX")
    message = str(excinfo.value)
    assert "did you mean" in message
    assert "H100-SMX" in message


def test_unknown_name_far_from_everything() -> None:
    with pytest.raises(UnknownNameError):
        get_hardware("definitely-not-a-gpu")


# --- sanity checks on the figures ---------------------------------------------------------


@pytest.mark.parametrize("hw", PROFILES, ids=_ids(PROFILES))
def test_fp8_at_least_bf16(hw: HardwareProfile) -> None:
    peaks = hw.peak_tflops
    if "fp8" in peaks and "bf16" in peaks:
        assert peaks["fp8"] >= peaks["bf16"]
    if "fp4" in peaks and "fp8" in peaks:
        assert peaks["fp4"] >= peaks["fp8"]


@pytest.mark.parametrize("hw", PROFILES, ids=_ids(PROFILES))
def test_bf16_at_least_fp32(hw: HardwareProfile) -> None:
    peaks = hw.peak_tflops
    if "bf16" in peaks and "fp32" in peaks:
        assert peaks["bf16"] >= peaks["fp32"]
    if "tf32" in peaks and "bf16" in peaks:
        assert peaks["bf16"] >= peaks["tf32"]


@pytest.mark.parametrize("hw", PROFILES, ids=_ids(PROFILES))
def test_memory_bandwidth_in_range(hw: HardwareProfile) -> None:
    assert 0.2 <= hw.memory_bandwidth_tbps <= 10.0, hw.memory_bandwidth_tbps


@pytest.mark.parametrize("hw", PROFILES, ids=_ids(PROFILES))
def test_memory_in_range(hw: HardwareProfile) -> None:
    assert 16.0 <= hw.memory_gib <= 300.0, hw.memory_gib


@pytest.mark.parametrize("hw", PROFILES, ids=_ids(PROFILES))
def test_other_fields_plausible(hw: HardwareProfile) -> None:
    assert hw.calibrated is (hw.name in CALIBRATED)
    assert (hw.calibration is not None) is hw.calibrated
    assert 1 <= hw.max_gpus_per_node <= 72
    if hw.name in HOST_NVLINK_C2C:
        # Grace Hopper: the host link is NVLink-C2C, as fast as the GPUs' own NVLink.
        assert hw.pcie_bandwidth_gbps == hw.interconnect.bandwidth_gbps == 450.0
    else:
        assert 8.0 <= hw.pcie_bandwidth_gbps <= 256.0
    assert 0.0 < hw.price_per_gpu_hour_usd <= 20.0
    assert 0.0 < hw.interconnect.latency_us <= 100.0
    if hw.name in HOST_NVLINK_C2C:
        pass
    elif hw.interconnect.kind == "pcie":
        # Without NVLink/Infinity Fabric the GPUs talk over the host's PCIe link.
        assert hw.interconnect.bandwidth_gbps <= hw.pcie_bandwidth_gbps
    else:
        assert hw.interconnect.bandwidth_gbps > hw.pcie_bandwidth_gbps


def test_ordering_between_generations() -> None:
    """Catch a swapped or mistyped figure by comparing products whose order is known."""

    def bf16(name: str) -> float:
        return get_hardware(name).peak_tflops["bf16"]

    def bw(name: str) -> float:
        return get_hardware(name).memory_bandwidth_tbps

    assert bf16("B200") > bf16("H100-SXM") == bf16("H200") > bf16("H100-PCIe") > bf16("A100-80GB")
    assert bf16("A100-80GB") == bf16("A100-40GB")
    assert bw("B200") > bw("MI300X") > bw("H200") > bw("H100-SXM") > bw("A100-80GB")
    assert bw("A100-80GB") > bw("A100-40GB")
    assert get_hardware("H200").memory_gib > get_hardware("H100-SXM").memory_gib
    assert get_hardware("MI300X").memory_gib > get_hardware("B200").memory_gib


# --- every number in the YAML cites a source ----------------------------------------------

_NUMERIC_LINE = re.compile(
    r"""^\s*(?:-\s+)?[A-Za-z_][\w-]*\s*:\s*        # key:
        [-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?   # a number
        \s*(?:\#.*)?$                               # optional comment
    """,
    re.VERBOSE,
)


def _has_comment(line: str) -> bool:
    return "#" in line


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda p: p.name)
def test_every_number_has_source_comment(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    missing = []
    for i, line in enumerate(lines):
        if not _NUMERIC_LINE.match(line):
            continue
        above = lines[i - 1] if i > 0 else ""
        if _has_comment(line) or above.lstrip().startswith("#"):
            continue
        missing.append(f"line {i + 1}: {line.strip()}")
    assert not missing, f"{path.name}: numbers without a source comment:\n" + "\n".join(missing)


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda p: p.name)
def test_file_has_header_comment(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("#"), f"{path.name}: first line should be a header comment"


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda p: p.name)
def test_price_comment_names_basis(path: Path) -> None:
    price_lines = [
        ln
        for ln in path.read_text(encoding="utf-8").splitlines()
        if ln.startswith("price_per_gpu_hour_usd:")
    ]
    assert len(price_lines) == 1
    comment = price_lines[0].split("#", 1)[1].lower() if "#" in price_lines[0] else ""
    assert "approximate" in comment
    assert re.search(r"20\d\d", comment), "price comment should give the date basis"


def test_numeric_line_pattern() -> None:
    assert _NUMERIC_LINE.match("memory_gib: 80.0  # source")
    assert _NUMERIC_LINE.match("  bf16: 989.4")
    assert _NUMERIC_LINE.match("max_gpus_per_node: 8")
    assert not _NUMERIC_LINE.match("name: H100-SXM")
    assert not _NUMERIC_LINE.match("# fp16: 1.0")
    assert not _NUMERIC_LINE.match("calibrated: false")


def test_gh200_is_the_h100_die_with_more_memory() -> None:
    gh, h100, h200 = get_hardware("GH200"), get_hardware("H100-SXM"), get_hardware("H200")
    assert gh.peak_tflops == h100.peak_tflops
    assert h100.memory_gib < gh.memory_gib < h200.memory_gib
    assert h100.memory_bandwidth_tbps < gh.memory_bandwidth_tbps < h200.memory_bandwidth_tbps
    assert get_hardware("gh200-96gb").name == "GH200"
