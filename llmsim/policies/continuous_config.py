"""The continuous policy's settings (scenario section ``policy`` with ``kind: continuous``):
budgets, schedule, admission, preemption, prefix caching and its host tier, KV layout and
multi-step scheduling. The policy itself is :mod:`llmsim.policies.continuous`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llmsim.limits import MAX_COUNT, MAX_MEMORY_GIB, MAX_TOKENS
from llmsim.policies.base import ReplicaContext
from llmsim.policies.waiting import Order

if TYPE_CHECKING:
    from llmsim.policies.continuous import ContinuousPolicy

CHUNKED_DEFAULT_BUDGET = 8192
# With ``max_num_seqs: derive`` the limit is known only once the KV cache is sized, so the
# activation-memory estimate that sizes it counts this many sequences (the vLLM default):
# SGLang itself reserves activation memory as a fraction of the GPU, not per request.
DERIVE_MEMORY_SEQS = 256


def derived_max_seqs(kv_tokens: int, context_len: int) -> int:
    """SGLang's running-request limit when ``--max-running-requests`` is not given.

    SGLang sizes its request pool as ``kv_tokens / context_len * 512`` clamped to [2048,
    4096], and caps running requests at the smaller of that pool and half the KV pool's token
    capacity (``ModelRunner`` and ``Scheduler`` in sgl-project/sglang, e.g. v0.4):
    ``min(clamp(int(kv_tokens / context_len * 512), 2048, 4096), kv_tokens // 2)``.
    """
    pool = min(max(int(kv_tokens / context_len * 512), 2048), 4096)
    return max(1, min(pool, kv_tokens // 2))


ADMISSION_ALIASES = {"max_utilization": "preempt", "guaranteed_no_evict": "no_evict"}
"""TensorRT-LLM's ``capacity_scheduler_policy`` names, accepted for ``admission``."""


class ContinuousConfig(BaseModel):
    """Scenario section ``policy`` with ``kind: continuous``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["continuous"] = "continuous"
    max_num_seqs: Annotated[int, Field(gt=0, le=MAX_COUNT)] | Literal["derive"] = Field(
        default=256,
        description="Running sequences at most. 'derive': SGLang's rule, from the KV cache's "
        "token capacity and max_model_len (derived_max_seqs); the sglang preset uses it.",
    )
    max_num_batched_tokens: int | None = Field(
        default=None,
        gt=0,
        le=MAX_TOKENS,
        description="Token budget per step. Default: max_model_len without chunked prefill "
        f"(vLLM 0.6's rule), {CHUNKED_DEFAULT_BUDGET} with it.",
    )
    chunked_prefill: bool = False
    mixed_prefill: bool = Field(
        default=False,
        description="Without chunked prefill: a step that admits prompts also decodes every "
        "running request, whole prompts filling the budget the decodes leave (TensorRT-LLM "
        "in-flight batching). Off: a step with prompts runs no decodes (vLLM 0.6). Chunked "
        "prefill always mixes.",
    )
    long_prefill_token_threshold: int | None = Field(
        default=None,
        gt=0,
        le=MAX_TOKENS,
        description="Chunked prefill: most prompt tokens per request a step.",
    )
    admission: Literal["preempt", "no_evict"] = Field(
        default="preempt",
        description="preempt: admit when the prompt's KV blocks are free, preempt running "
        "requests when blocks run out (vLLM; TensorRT-LLM MAX_UTILIZATION). no_evict: admit "
        "only when the blocks for the whole prompt plus max output can be reserved beside "
        "the running requests' reservations, never preempt (TensorRT-LLM "
        "GUARANTEED_NO_EVICT, its default).",
    )
    preemption: Literal["recompute", "swap"] = "recompute"
    swap_space_gib: float = Field(
        default=4.0,
        ge=0,
        le=MAX_MEMORY_GIB,
        description="Host memory per GPU for swapped-out KV (vLLM: 4).",
    )
    watermark: float = Field(
        default=0.01, ge=0, lt=1, description="Fraction of KV blocks kept free at admission."
    )
    order: Order = "fcfs"
    kv_layout: Literal["paged", "contiguous"] = "paged"
    prefix_caching: bool = False
    cpu_kv_offload_gib: float = Field(
        default=0.0,
        ge=0,
        le=MAX_MEMORY_GIB,
        description="Host-memory tier of the prefix cache, GiB summed over the replica's GPUs "
        "(vLLM --kv-offloading-size with the native OffloadingConnector). Every computed full "
        "prompt block is copied there (asynchronously: no time charged); a prefix found there "
        "and not on the GPU is loaded over PCIe, charged to the step, instead of recomputed. "
        "Least recently stored or loaded blocks are dropped first. 0: no host tier. Needs "
        "prefix_caching.",
    )
    num_scheduler_steps: int = Field(
        default=1,
        ge=1,
        le=MAX_COUNT,
        description="Multi-step scheduling (vLLM V0 --num-scheduler-steps): the scheduler runs "
        "once every this many steps and the batch decodes in between, so requests are admitted, "
        "and finished requests' slots freed, only at those points. Without chunked prefill a "
        "step with prompts runs alone; with it, prompts are not chunked. 1: every step.",
    )

    @field_validator("admission", mode="before")
    @classmethod
    def _trtllm_names(cls, v: object) -> object:
        if isinstance(v, str):
            return ADMISSION_ALIASES.get(v.lower(), v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ContinuousConfig:
        budget = self.max_num_batched_tokens
        seqs = self.max_num_seqs
        if budget is not None and isinstance(seqs, int) and budget < seqs:
            raise ValueError(
                f"max_num_batched_tokens ({budget}) must be >= max_num_seqs ({self.max_num_seqs})"
            )
        thr = self.long_prefill_token_threshold
        if thr is not None:
            if not self.chunked_prefill:
                raise ValueError("long_prefill_token_threshold needs chunked_prefill: true")
            if thr > (budget or CHUNKED_DEFAULT_BUDGET):
                raise ValueError(
                    f"long_prefill_token_threshold ({thr}) exceeds the token budget "
                    f"max_num_batched_tokens ({budget or CHUNKED_DEFAULT_BUDGET})"
                )
        if self.prefix_caching and self.kv_layout == "contiguous":
            raise ValueError("prefix_caching needs kv_layout: paged")
        if self.cpu_kv_offload_gib and not self.prefix_caching:
            raise ValueError(
                f"cpu_kv_offload_gib ({self.cpu_kv_offload_gib:g}) is a tier of the prefix cache: "
                "it needs prefix_caching: true"
            )
        if self.num_scheduler_steps > 1 and thr is not None:
            raise ValueError(
                f"num_scheduler_steps ({self.num_scheduler_steps}) > 1 schedules whole prompts "
                "(vLLM's multi-step does not chunk them): remove long_prefill_token_threshold"
            )
        return self

    @property
    def _seqs_bound(self) -> int:
        """The sequence cap known before the KV cache is sized."""
        seqs = self.max_num_seqs
        return seqs if isinstance(seqs, int) else DERIVE_MEMORY_SEQS

    def token_budget(self, max_model_len: int) -> int:
        if self.max_num_batched_tokens is not None:
            return self.max_num_batched_tokens
        if self.chunked_prefill:
            return max(CHUNKED_DEFAULT_BUDGET, self._seqs_bound)
        return max(max_model_len, self._seqs_bound)

    def memory_profile(self, max_model_len: int) -> tuple[int, int]:
        """(tokens, sequences) of the largest step, for the activation-memory estimate."""
        return self.token_budget(max_model_len), self._seqs_bound

    def max_seqs(self, kv_tokens: int, max_model_len: int) -> int:
        """The running-sequence limit of a replica whose KV cache holds ``kv_tokens``."""
        seqs = self.max_num_seqs
        return seqs if isinstance(seqs, int) else derived_max_seqs(kv_tokens, max_model_len)

    def build(self, ctx: ReplicaContext) -> ContinuousPolicy:
        from llmsim.policies.continuous import ContinuousPolicy  # the policy builds on this

        return ContinuousPolicy(self, ctx)
