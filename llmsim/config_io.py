"""Reading YAML into pydantic models, with one-line errors that name file, field and value."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from llmsim.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file, turning a missing file or a syntax error into a ConfigError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", source=str(p)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file ({exc.strerror})", source=str(p)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"invalid YAML: {problem}", source=str(p), field=where) from None


def first_error(exc: ValidationError, source: str | None) -> ConfigError:
    """Condense pydantic's report into a ConfigError for its first problem."""
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err.get("loc", ()) if not str(p).startswith("function-")]
    # Discriminated unions put the tag in the location ("policy.continuous.x"); keep it: it
    # tells the user which variant was being validated.
    field = ".".join(loc) or None
    kind = err.get("type", "")
    value = err.get("input")
    msg = str(err.get("msg", "invalid value"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "extra_forbidden":
        msg = "unknown field"
        if field and "." in field:
            parent, name = field.rsplit(".", 1)
            msg = f"unknown field '{name}' in {parent}"
        elif field:
            msg = f"unknown field '{field}'"
        return ConfigError(msg, source=source, field=field)
    if kind == "missing":
        return ConfigError("required field is missing", source=source, field=field)
    shown = _short(value)
    return ConfigError(f"{msg} (got {shown})", source=source, field=field)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_data(model: type[M], data: Any, source: str | None) -> M:
    """``model.model_validate(data)`` with errors as ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping of fields, got {type(data).__name__}", source=source
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise first_error(exc, source) from None


def load_model_file(model: type[M], path: str | Path) -> M:
    """Read a YAML file and validate it as ``model``."""
    return validate_data(model, read_yaml(path), str(path))


def shipped_dir(name: str) -> Path:
    """A data folder shipped with the package.

    In a wheel it lives inside the package (``llmsim/<name>``); in a source checkout it is at
    the repository root, next to ``llmsim/``.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / name, here.parent / name):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"shipped data folder '{name}' is missing from the installation")
