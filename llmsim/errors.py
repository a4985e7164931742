"""The exception tree.

Every error a user can cause is a :class:`LlmsimError`. Its message is one line that names
where the bad input came from (a file or the Python call), the field, the bad value and what
would be valid. The CLI prints that line and exits with status 2, without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LlmsimError(Exception):
    """Base class of all errors caused by user input."""


class ConfigError(LlmsimError):
    """A scenario, profile or model file (or the equivalent Python object) is invalid."""

    def __init__(
        self, message: str, *, source: str | None = None, field: str | None = None
    ) -> None:
        self.source = source
        self.field = field
        self.reason = message
        parts = []
        if source:
            parts.append(source)
        if field:
            parts.append(field)
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class UnknownNameError(ConfigError):
    """A hardware profile or model name that is not in the catalog."""


class DoesNotFitError(ConfigError):
    """A model's weights (plus the minimum KV cache) do not fit the chosen GPUs."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """A " (did you mean 'x'?)" suffix for the closest choice, or "" when nothing is close."""
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(value.lower(), list(lowered), n=1, cutoff=0.5)
    return f" (did you mean '{lowered[close[0]]}'?)" if close else ""
