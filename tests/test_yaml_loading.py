"""YAML parsing: libyaml's parser where PyYAML has it, the same data and the same errors as the
pure-Python loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmsim import config_io
from llmsim.config_io import _FastLoader, _parse, _StrictLoader, parse_yaml
from llmsim.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(
    p
    for folder in ("scenarios", "model_catalog", "hardware_profiles", "llmsim/engine_presets")
    for p in (ROOT / folder).rglob("*.yaml")
)

needs_libyaml = pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without libyaml")


def test_the_shipped_files_are_found() -> None:
    assert len(SHIPPED) > 30


@needs_libyaml
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_both_loaders_read_every_shipped_file_alike(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert _parse(text, str(path), _FastLoader) == _parse(text, str(path), _StrictLoader)


@needs_libyaml
def test_valid_text_is_parsed_by_libyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    used = []

    def spy(text: str, source: str, kind: type) -> object:
        used.append(kind)
        return _parse(text, source, kind)

    monkeypatch.setattr(config_io, "_parse", spy)
    assert parse_yaml("a: [1, 2]\nb: {c: x}\n", "s.yaml") == {"a": [1, 2], "b": {"c": "x"}}
    assert used == [_FastLoader]


BAD = [
    "a: 1\na: 2\n",  # a key given twice
    "a: [1\n",  # unclosed flow sequence
    "a: b: c\n",  # mapping value not allowed here
    "x: \x07\n",  # a control character
    "a: &x [*x]\n",  # a recursive alias
    "a: {b: 1, b: 2}\n",  # twice, in a flow mapping
    "- a\nb: 1\n",  # a mapping key after a sequence
    'a: "\\ud800"\nb: [\n',  # a lone surrogate escape, then a syntax error
    "\t- a\n",  # a tab where indentation is expected
]


@pytest.mark.parametrize("text", BAD)
def test_errors_are_the_pure_python_loaders(text: str) -> None:
    with pytest.raises(ConfigError) as expected:
        _parse(text, "s.yaml", _StrictLoader)
    with pytest.raises(ConfigError) as got:
        parse_yaml(text, "s.yaml")
    assert str(got.value) == str(expected.value)
