"""A request and its token accounting.

One rule covers every phase (the vLLM v1 model): a request has ``num_tokens`` (prompt plus
tokens generated so far) and ``num_computed_tokens`` (tokens whose KV is in the cache). Each
step a policy grants a request some tokens to compute; when the computed count catches up with
``num_tokens`` the step samples one new token. Prefill grants the whole prompt, decode grants
one token, a chunked prefill grants part of the prompt, a prefix-cache hit counts tokens as
computed for free, and a preemption by recompute resets the computed count to zero.

Requests in steady decode are tracked lazily by their replica (see ``policies.decode_set``):
their counts are brought up to date only when something happens to them, so a step costs O(1)
Python work however many requests it serves.
"""

from __future__ import annotations

from collections.abc import Hashable
from enum import IntEnum


class Status(IntEnum):
    WAITING = 0
    RUNNING = 1
    FINISHED = 2
    REJECTED = 3


REJECT_REASONS = {
    "max_model_len": "prompt plus output tokens exceed engine.max_model_len",
    "token_budget": "the prompt exceeds the step's token budget (policy.max_num_batched_tokens) "
    "and chunked prefill is off",
    "kv_capacity": "the request's KV cache would not fit in the replica's KV cache",
    "no_pool": "no pool serves the request's class",
    "policy": "a custom policy refused it",
}
"""Why a request can be rejected, and what it means."""


class Request:
    """One inference request and what happened to it."""

    __slots__ = (
        "admit_seq",
        "arrival",
        "cached_tokens",
        "extra_gaps",
        "finish",
        "finish_decode",
        "first_scheduled",
        "first_token",
        "hash_block_tokens",
        "held_keys",
        "id",
        "keyed_blocks",
        "last_emit",
        "lazy_offset",
        "max_output_tokens",
        "num_computed",
        "num_output",
        "preemptions",
        "prefill_replica",
        "prefix_hashes",
        "priority",
        "prompt_tokens",
        "queue_enter",
        "queue_time",
        "recompute_mark",
        "recomputed_tokens",
        "reject_reason",
        "replica",
        "reserved_blocks",
        "seg_emit",
        "seg_start_decode",
        "segments",
        "status",
        "swapped_blocks",
        "tag",
    )

    def __init__(
        self,
        rid: int,
        arrival: float,
        prompt_tokens: int,
        output_tokens: int,
        *,
        priority: int = 0,
        tag: str = "",
        prefix_hashes: tuple[int, ...] | None = None,
        hash_block_tokens: int = 0,
    ) -> None:
        self.id = rid
        self.arrival = arrival
        self.prompt_tokens = prompt_tokens
        self.max_output_tokens = output_tokens
        self.num_output = 0
        self.num_computed = 0
        self.status = Status.WAITING
        self.replica = -1
        self.first_scheduled = -1.0
        self.first_token = -1.0
        self.last_emit = -1.0
        self.finish = -1.0
        self.preemptions = 0
        # Preemption by recompute: tokens whose KV was dropped (the most computed before a
        # recompute), and how many of them were computed again.
        self.recompute_mark = 0
        self.recomputed_tokens = 0
        self.queue_enter = arrival
        self.queue_time = 0.0  # total time spent waiting (first wait and after preemptions)
        # Decode spans, for exact inter-token-latency accounting without a timestamp per
        # token: each span is (first decode step index, one past the last), in the replica's
        # count of decode steps. Gaps not covered by a span are kept in ``extra_gaps``.
        self.seg_start_decode = -1
        self.seg_emit = -1.0  # time of the token that opened the current span
        self.segments: list[tuple[int, int, float]] = []
        self.extra_gaps: list[float] = []
        self.lazy_offset = 0  # num_computed - decode step counter, while in lazy decode
        self.finish_decode = -1  # decode counter at which the last token is produced
        self.priority = priority  # lower runs first under priority scheduling
        self.tag = tag  # request class, e.g. "interactive" or "batch"
        # Prefix identity: hash_ids[i] names the content of prompt tokens
        # [i * hash_block_tokens, (i + 1) * hash_block_tokens), prefix included, so equal ids
        # mean an equal prefix (Mooncake's convention).
        self.prefix_hashes = prefix_hashes
        self.hash_block_tokens = hash_block_tokens
        self.admit_seq = -1  # order of the latest admission (preemption picks the latest)
        self.cached_tokens = 0  # prompt tokens found in the prefix cache at first admission
        self.held_keys: list[Hashable] = []  # prefix-cache blocks this request references
        self.keyed_blocks = 0  # prompt blocks already looked up or registered in the cache
        self.reserved_blocks = 0  # contiguous layout: blocks reserved at admission
        self.swapped_blocks = 0  # blocks held in host memory while swapped out
        self.prefill_replica = -1  # disaggregated serving: where the prompt was prefilled
        self.reject_reason = ""  # why a rejected request was refused (REJECT_REASONS)

    def reject(self, now: float, reason: str) -> None:
        """Refuse the request at ``now`` for ``reason``, one of :data:`REJECT_REASONS`."""
        assert reason in REJECT_REASONS, reason
        self.status = Status.REJECTED
        self.finish = now
        self.reject_reason = reason

    @property
    def num_tokens(self) -> int:
        """Prompt plus generated tokens."""
        return self.prompt_tokens + self.num_output

    @property
    def remaining_output(self) -> int:
        return self.max_output_tokens - self.num_output

    def __repr__(self) -> str:
        return (
            f"Request(id={self.id}, arrival={self.arrival:.4f}, prompt={self.prompt_tokens}, "
            f"output={self.num_output}/{self.max_output_tokens}, status={self.status.name})"
        )
