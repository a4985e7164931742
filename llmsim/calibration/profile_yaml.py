"""Writing a calibrated hardware profile: the datasheet YAML with a ``calibration:`` section.

The datasheet part is kept as written (with its source comments); a previous ``calibrated:``
line and ``calibration:`` section are replaced. Every number written carries a comment with the
field's meaning, so the file stays readable and cites where each value came from.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from llmsim.atomic import atomic_copy, atomic_write_text
from llmsim.config_io import parse_yaml, validate_data
from llmsim.hardware import HardwareProfile, profiles_dir
from llmsim.hardware_calibration import Calibration


def profile_path(name: str) -> Path:
    """The shipped YAML file of a profile name."""
    for path in sorted(profiles_dir().glob("*.yaml")):
        data = parse_yaml(path.read_text(encoding="utf-8"), str(path))
        if isinstance(data, dict) and data.get("name") == name:
            return path
    raise KeyError(name)


HEADER = (
    "# Kernel parameters fitted by `llmsim calibrate` (docs/calibration.md); fidelity lists",
    "# the held-out error measured when they were fitted.",
)


def strip_calibration(text: str) -> str:
    """The profile text without its ``calibrated:`` line, ``calibration:`` section and the
    comment that :func:`calibration_yaml` writes above them."""
    out: list[str] = []
    skipping = False
    for line in text.splitlines():
        if line in HEADER:
            continue
        if skipping:
            if not line or line.startswith((" ", "#")):
                continue
            skipping = False
        if line.startswith("calibration:"):
            skipping = True
            continue
        if line.startswith("calibrated:"):
            continue
        out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out) + "\n"


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return json.dumps(str(value))


def _emit(model: BaseModel, indent: int, lines: list[str], first_prefix: str = "") -> None:
    pad = " " * indent
    fields = type(model).model_fields
    for i, (name, info) in enumerate(fields.items()):
        value = getattr(model, name)
        prefix = first_prefix if i == 0 and first_prefix else pad
        if isinstance(value, BaseModel):
            lines.append(f"{prefix}{name}:")
            _emit(value, indent + 2, lines)
        elif isinstance(value, dict):
            lines.append(f"{prefix}{name}:")
            for key, sub in value.items():
                lines.append(f"{pad}  {key}:")
                _emit(sub, indent + 4, lines)
        elif isinstance(value, tuple):
            if not value:
                lines.append(f"{prefix}{name}: []")
                continue
            lines.append(f"{prefix}{name}:")
            for item in value:
                _emit(item, indent + 4, lines, first_prefix=f"{pad}  - ")
        else:
            comment = f"  # {info.description}" if info.description else ""
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                comment = ""
            lines.append(f"{prefix}{name}: {_scalar(value)}{comment}")


def calibration_yaml(cal: Calibration) -> str:
    """The ``calibrated: true`` line and the ``calibration:`` section."""
    lines = [
        *HEADER,
        "calibrated: true  # the calibration section below was fitted on measurements",
        "calibration:",
    ]
    _emit(cal, 2, lines)
    return "\n".join(lines) + "\n"


def profile_text(datasheet: str, cal: Calibration, source: str = "<profile>") -> str:
    """A datasheet profile's text with ``cal`` as its calibration, validated."""
    text = strip_calibration(datasheet) + "\n" + calibration_yaml(cal)
    validate_data(HardwareProfile, parse_yaml(text, source), source)
    return text


def write_profile(datasheet: str, cal: Calibration, out: Path) -> Path:
    """Write a calibrated profile atomically; returns its path. Its kernel table, if any, is
    copied next to it first (``<stem>.kernels.parquet``), so the profile never names a missing
    file."""
    if cal.kernel_table:
        name = f"{out.stem}.kernels.parquet"
        table = out.parent / name
        if not table.exists() or not table.samefile(cal.kernel_table):
            atomic_copy(Path(cal.kernel_table), table)
        cal = cal.model_copy(update={"kernel_table": name})
    text = profile_text(datasheet, cal, str(out))
    atomic_write_text(out, text)
    return out
