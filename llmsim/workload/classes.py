"""Request classes: named kinds of traffic (interactive, batch, ...) with a priority each.

A class comes from a trace column (its tag), from rules on what a server can see when a request
arrives (its prompt length, its tag), or from a random share of the traffic. Routers can send
classes to named pools; schedulers can use the priority.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmsim.limits import MAX_PRIORITY, MAX_TOKENS
from llmsim.workload.stream import RequestStream

DEFAULT_CLASS = "default"


class ClassRule(BaseModel):
    """Requests that meet every condition given (and are not claimed by an earlier rule)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(min_length=1, description="Class given to the matching requests.")
    priority: int = Field(
        default=0, ge=-MAX_PRIORITY, le=MAX_PRIORITY, description="Lower is served first."
    )
    min_prompt_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    max_prompt_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    tags: tuple[str, ...] | None = Field(
        default=None, description="Match only these incoming tags (a trace's class column)."
    )
    share: float = Field(default=1.0, gt=0, le=1, description="Random fraction of matches.")

    @model_validator(mode="after")
    def _ordered(self) -> ClassRule:
        lo, hi = self.min_prompt_tokens, self.max_prompt_tokens
        if lo is not None and hi is not None and hi < lo:
            raise ValueError(f"max_prompt_tokens ({hi}) must be >= min_prompt_tokens ({lo})")
        return self


def assign_classes(
    stream: RequestStream, rules: tuple[ClassRule, ...], rng: np.random.Generator
) -> RequestStream:
    """Apply ``rules`` in order, first match wins; unmatched requests keep their tag.

    A request without a tag is in class ``"default"`` with priority 0 (or the trace's
    priority). Each rule with a ``share`` below 1 draws one number per request, so the draw
    does not depend on what earlier rules matched.
    """
    n = len(stream)
    tags = (
        stream.request_class
        if stream.request_class is not None
        else np.full(n, DEFAULT_CLASS, dtype=object)
    )
    classes = tags.copy()
    priority = (
        stream.priority.copy() if stream.priority is not None else np.zeros(n, dtype=np.int64)
    )
    free = np.ones(n, dtype=bool)
    for rule in rules:
        m = free.copy()
        if rule.min_prompt_tokens is not None:
            m &= stream.prompt_tokens >= rule.min_prompt_tokens
        if rule.max_prompt_tokens is not None:
            m &= stream.prompt_tokens <= rule.max_prompt_tokens
        if rule.tags is not None:
            m &= np.isin(tags, np.array(rule.tags, dtype=object))
        if rule.share < 1:
            m &= rng.random(n) < rule.share
        classes[m] = rule.name
        priority[m] = rule.priority
        free &= ~m
    return replace(stream, request_class=classes, priority=priority)
