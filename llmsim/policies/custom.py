"""Policies from outside the package: ``policy: {kind: custom, class: "pkg.module:Class", ...}``.

The class is imported by name (``module:Class``, the module importable: installed or on
``PYTHONPATH``), or found by an entry point of the group ``llmsim.policies`` when ``class`` is
a bare name. It implements the :class:`~llmsim.policies.base.Policy` interface and is built as
``Class(settings, ctx)``: ``ctx`` is the replica's :class:`ReplicaContext`, ``settings`` the
other keys of the section validated by the class's nested pydantic model ``Config`` (a plain
dict when it has none). ``docs/policies.md`` has a worked example.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_serializer,
    model_validator,
)

from llmsim.policies.base import Policy, ReplicaContext

ENTRY_POINT_GROUP = "llmsim.policies"
METHODS = ("add", "schedule", "update", "wake_at")
"""What the class must define; a built policy must also have ``finished`` and ``pool``."""
DEFAULT_MAX_SEQS = 256


class CustomConfig(BaseModel):
    """Scenario section ``policy`` with ``kind: custom``: ``class`` names the policy class;
    every other key is one of its settings."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    kind: Literal["custom"] = "custom"
    class_path: str = Field(
        alias="class", description="module:Class, or the name of an llmsim.policies entry point"
    )
    options: dict[str, Any] = Field(default_factory=dict)

    _cls: type = PrivateAttr()
    _settings: Any = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _collect_options(cls, data: Any) -> Any:
        """The policy's settings sit flat in the section, beside ``kind`` and ``class``."""
        if not isinstance(data, dict):
            return data
        own = {"kind", "class", "class_path", "options"}
        extra = {k: v for k, v in data.items() if k not in own}
        base = {k: v for k, v in data.items() if k in own}
        return {**base, "options": {**(data.get("options") or {}), **extra}}

    @model_validator(mode="after")
    def _load(self) -> CustomConfig:
        cls = load_class(self.class_path)
        missing = [m for m in METHODS if not callable(getattr(cls, m, None))]
        if missing:
            raise ValueError(
                f"class: {self.class_path} lacks {', '.join(missing)}; a policy defines "
                f"{', '.join(METHODS)} (see docs/policies.md)"
            )
        schema = getattr(cls, "Config", None)
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            try:
                settings: Any = schema.model_validate(self.options)
            except ValidationError as exc:
                err = exc.errors(include_url=False)[0]
                where = ".".join(str(p) for p in err.get("loc", ()))
                msg = "unknown field" if err.get("type") == "extra_forbidden" else err["msg"]
                raise ValueError(
                    f"{where}: {msg} (got {err.get('input')!r}); valid: the fields of "
                    f"{self.class_path}.Config"
                ) from None
        else:
            settings = dict(self.options)
        self._cls = cls
        self._settings = settings
        return self

    @model_serializer(mode="plain")
    def _flat(self) -> dict[str, Any]:
        return {"kind": self.kind, "class": self.class_path, **self.options}

    @property
    def settings(self) -> Any:
        """The validated settings the class is built with."""
        return self._settings

    @property
    def max_num_seqs(self) -> int:
        seqs = getattr(self._settings, "max_num_seqs", None)
        if seqs is None and isinstance(self._settings, dict):
            seqs = self._settings.get("max_num_seqs")
        return seqs if isinstance(seqs, int) else DEFAULT_MAX_SEQS

    @property
    def watermark(self) -> float:
        """Fraction of KV blocks kept free at admission, when the settings have one."""
        return float(getattr(self._settings, "watermark", 0.0) or 0.0)

    def memory_profile(self, max_model_len: int) -> tuple[int, int]:
        """(tokens, sequences) of the largest step, for the activation-memory estimate: the
        settings' own ``memory_profile`` when they have one (every ContinuousConfig does),
        else ``max_num_seqs`` (default 256) sequences of up to 16384 tokens in all."""
        own = getattr(self._settings, "memory_profile", None)
        if callable(own):
            tokens, seqs = own(max_model_len)
            return int(tokens), int(seqs)
        seqs = self.max_num_seqs
        return min(seqs * max_model_len, 16384), seqs

    def build(self, ctx: ReplicaContext) -> Policy:
        try:
            policy = self._cls(self._settings, ctx)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.class_path}(settings, ctx) failed: {exc}") from None
        missing = [a for a in ("finished", "pool") if not hasattr(policy, a)]
        if missing:
            raise ValueError(
                f"{self.class_path} instances lack {', '.join(missing)} (finished: the "
                "requests done so far; pool: ctx.pool, the replica's KV blocks)"
            )
        return policy  # type: ignore[no-any-return]


def load_class(path: str) -> type:
    """``"pkg.module:Class"`` imported, or the class of entry point ``path`` (group
    ``llmsim.policies``); ValueError with the reason otherwise."""
    if ":" not in path:
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == path]
        if not found:
            names = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
            known = f"; installed: {', '.join(names)}" if names else ""
            raise ValueError(
                f"class: '{path}' is neither module:Class nor an entry point of group "
                f"{ENTRY_POINT_GROUP}{known}"
            )
        path = found[0].value
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"class: cannot import module '{module_name}' ({exc}); it must be installed or on "
            "PYTHONPATH"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(f"class: module '{module_name}' has no '{attr}'")
    if not isinstance(obj, type):
        raise ValueError(f"class: '{path}' is a {type(obj).__name__}, not a class")
    return obj
