"""Reading YAML into pydantic models, with one-line errors that name file, field and value."""

from __future__ import annotations

import codecs
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from llmsim.errors import ConfigError, did_you_mean

M = TypeVar("M", bound=BaseModel)


MAX_FILE_BYTES = 4 * 2**20
"""Largest scenario, profile, model or config file read (4 MiB)."""

MAX_ALIAS_VALUES = 10_000
"""Values that YAML aliases (``*name``) may add to a document once expanded."""


def read_text(path: str | Path, limit: int = MAX_FILE_BYTES) -> str:
    """A regular file's text, as UTF-8 (with or without a byte-order mark).

    A missing, unreadable, oversized or non-UTF-8 file becomes a one-line ConfigError; a
    folder, device or pipe is refused before anything is read (reading one could block).
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ConfigError("file not found", source=str(p)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file ({exc.strerror})", source=str(p)) from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError("is a folder, not a file", source=str(p))
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError("not a regular file (a device, pipe or socket)", source=str(p))
    if st.st_size > limit:
        raise ConfigError(
            f"file too large ({st.st_size:,} bytes; at most {limit:,})", source=str(p)
        )
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read file ({exc.strerror})", source=str(p)) from None
    return decode_utf8(data, str(p))


def decode_utf8(data: bytes, source: str) -> str:
    """``data`` as UTF-8 text; anything else is a ConfigError naming the first bad byte."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ConfigError("text is UTF-16; save the file as UTF-8", source=source)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8",
            source=source,
            field=f"line {line}",
        ) from None


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file, turning a missing file or a syntax error into a ConfigError."""
    return parse_yaml(read_text(path), str(path))


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: str, line: int, first: int) -> None:
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


class _UniqueKeys(yaml.constructor.SafeConstructor):
    """Refuses a mapping that gives the same key twice (YAML says keys are unique; PyYAML would
    keep the last value silently). Merge keys (``<<``) may still be overridden by the
    mapping's own keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                key_node, yaml.ScalarNode
            ):
                continue
            line = key_node.start_mark.line + 1
            if key_node.value in seen:
                raise _DuplicateKey(key_node.value, line, seen[key_node.value])
            seen[key_node.value] = line
        return super().construct_mapping(node, deep=deep)


class _StrictLoader(_UniqueKeys, yaml.SafeLoader):
    """The safe loader, pure Python, refusing keys given twice."""


class _FastLoader(_UniqueKeys, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The same on libyaml's parser where PyYAML was built with it: about ten times faster
    (start-up reads the whole shipped catalog). What it refuses is parsed again by the pure
    Python loader, so that every error message is that loader's."""


def _alias_growth(root: yaml.Node) -> int:
    """Values the document's aliases add once expanded (a recursive alias: -1)."""
    sizes: dict[int, int] = {}
    distinct = 0
    on_path: set[int] = set()
    # Iterative post-order walk: a deep document must not exhaust Python's stack.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            kids = _children(node)
            sizes[key] = 1 + sum(sizes[id(k)] for k in kids)
            continue
        if key in sizes:
            continue
        if key in on_path:
            return -1
        on_path.add(key)
        distinct += 1
        stack.append((node, True))
        for kid in _children(node):
            if id(kid) in on_path:
                return -1
            if id(kid) not in sizes:
                stack.append((kid, False))
    return sizes[id(root)] - distinct


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text into plain data, safely: a syntax error, a key given twice in one
    mapping, a recursive alias or aliases that would expand past ``MAX_ALIAS_VALUES`` values
    become a one-line ConfigError naming the line."""
    if yaml.__with_libyaml__:
        try:
            return _parse(text, source, _FastLoader)
        except ConfigError:
            pass
    return _parse(text, source, _StrictLoader)


def _parse(text: str, source: str, kind: type[_UniqueKeys]) -> Any:
    loader: Any = None
    try:
        loader = kind(text)  # type: ignore[call-arg]
        node = loader.get_single_node()
        if node is None:
            return None
        growth = _alias_growth(node)
        if growth < 0:
            raise ConfigError("invalid YAML: an alias refers to itself", source=source)
        if growth > MAX_ALIAS_VALUES:
            raise ConfigError(
                f"invalid YAML: aliases expand to {growth:,} more values "
                f"(at most {MAX_ALIAS_VALUES:,})",
                source=source,
            )
        return loader.construct_document(node)
    except _DuplicateKey as exc:
        raise ConfigError(
            f"key '{exc.key}' given twice (first on line {exc.first}); keep one",
            source=source,
            field=f"line {exc.line}",
        ) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            f"invalid YAML: character {exc.character!r} is not allowed in YAML text",
            source=source,
            field=f"line {line}",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"invalid YAML: {problem}", source=source, field=where) from None
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", source=source) from None
    finally:
        if loader is not None:
            loader.dispose()


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
    if kind == "value_error" and isinstance(value, dict | list | BaseModel):
        # A rule across fields: the message names them; the input is a whole section.
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
    if data is None:
        raise ConfigError("empty file: expected a mapping of fields", source=source)
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of fields, got {type(data).__name__}", source=source)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise first_error(exc, source, data) from None
    except UnicodeEncodeError as exc:  # a lone surrogate, e.g. from a "\ud800" escape
        raise ConfigError(
            f"text holds {exc.object[exc.start]!r}, half of a UTF-16 pair, which is not a "
            "character; remove it",
            source=source,
        ) from None


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
