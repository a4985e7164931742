"""Reading YAML into pydantic models, with one-line errors that name file, field and value."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from llmsim.errors import ConfigError, did_you_mean

M = TypeVar("M", bound=BaseModel)

# libyaml's parser where PyYAML was built with it (ten times faster: a run reads every shipped
# hardware profile and model card); both build the same data. Text it refuses is parsed again
# by the pure-Python parser, whose messages name the problem more plainly.
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file, turning a missing file or a syntax error into a ConfigError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", source=str(p)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file ({exc.strerror})", source=str(p)) from None
    return parse_yaml(text, str(p))


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text; a syntax error becomes a one-line ConfigError naming the line."""
    try:
        return yaml.load(text, Loader=_FAST_LOADER)
    except yaml.YAMLError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"invalid YAML: {problem}", source=source, field=where) from None


def first_error(exc: ValidationError, source: str | None, data: Any = None) -> ConfigError:
    """Condense pydantic's report into a ConfigError for its first problem.

    ``data`` (the validated input) lets the field be named by its path in the file: pydantic
    puts the tag of a discriminated union in the location (``workload.arrival.poisson.rate``);
    the file, and ``--set``, spell it ``workload.arrival.rate``.
    """
    err = exc.errors(include_url=False)[0]
    raw = [p for p in err.get("loc", ()) if not str(p).startswith("function-")]
    loc, variant = _file_path(raw, data)
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
        if variant:
            msg += f" (kind '{variant}')"
        return ConfigError(msg, source=source, field=field)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        ctx = err.get("ctx") or {}
        disc = str(ctx.get("discriminator", "kind")).strip("'\"")
        field = f"{field}.{disc}" if field else disc
        if kind == "union_tag_not_found":
            return ConfigError("required field is missing", source=source, field=field)
        tag = str(ctx.get("tag", ""))
        expected = [t.strip().strip("'\"") for t in str(ctx.get("expected_tags", "")).split(",")]
        expected = [t for t in expected if t]
        return ConfigError(
            f"unknown {disc} '{tag}'{did_you_mean(tag, expected)}; valid: {', '.join(expected)}",
            source=source,
            field=field,
        )
    if kind == "missing":
        return ConfigError("required field is missing", source=source, field=field)
    shown = _short(value)
    if isinstance(value, str) and shown in msg:  # the message already quotes the value
        return ConfigError(msg, source=source, field=field)
    return ConfigError(f"{msg} (got {shown})", source=source, field=field)


def _file_path(loc: list[Any], data: Any) -> tuple[list[str], str | None]:
    """Drop discriminated-union tags from a pydantic location; also return the last tag."""
    out: list[str] = []
    variant = None
    node = data
    for part in loc:
        if isinstance(node, dict) and part not in node and node.get("kind") == part:
            variant = str(part)
            continue
        out.append(str(part))
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return out, variant


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_data(model: type[M], data: Any, source: str | None) -> M:
    """``model.model_validate(data)`` with errors as ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of fields, got {type(data).__name__}", source=source)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise first_error(exc, source, data) from None


def load_model_file(model: type[M], path: str | Path) -> M:
    """Read a YAML file and validate it as ``model``."""
    return validate_data(model, read_yaml(path), str(path))


N = TypeVar("N", bound=BaseModel)


def load_catalog(model: type[N], folder: Path) -> dict[str, N]:
    """Every ``*.yaml`` in ``folder`` validated as ``model``, by its ``name`` field."""
    items: dict[str, N] = {}
    for path in sorted(folder.glob("*.yaml")):
        item = load_model_file(model, path)
        items[item.name] = item  # type: ignore[attr-defined]
    return items


def find(catalog: dict[str, N], name: str, *extra: Callable[[N], str | None]) -> N | None:
    """The entry whose name, an alias or an ``extra`` key matches ``name`` (any case)."""
    key = name.lower()
    for item in catalog.values():
        keys = [item.name, *item.aliases, *(f(item) for f in extra)]  # type: ignore[attr-defined]
        if any(k is not None and k.lower() == key for k in keys):
            return item
    return None


def unknown_name(kind: str, name: str, catalog: dict[str, N], hint: str = "") -> str:
    """The message for a name not in ``catalog``, with a did-you-mean and the valid names."""
    aliases = [a for item in catalog.values() for a in item.aliases]  # type: ignore[attr-defined]
    close = did_you_mean(name, [*catalog, *aliases])
    return f"unknown {kind} '{name}'{close}; valid: {', '.join(catalog)}{hint}"


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
