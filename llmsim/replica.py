"""Building a replica: model and hardware resolved, KV cache sized, policy and cost model made.

No simulation here: the engine drives what this module builds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmsim.cost import CalibratedConfig, ConstantConfig, CostConfig, CostModel
from llmsim.cost.pipeline import PipelineCostModel
from llmsim.cost.speculative import SpeculativeCostModel
from llmsim.errors import ConfigError
from llmsim.hardware import HardwareProfile, get_hardware
from llmsim.kv_cache import BlockPool, KVBudget, kv_budget
from llmsim.models import ModelSpec, get_model
from llmsim.policies import Policy, ReplicaContext
from llmsim.presets import get_preset
from llmsim.request import Request
from llmsim.scenario import EngineConfig, ReplicaSpec, Scenario


@dataclass
class Replica:
    """One serving instance and the live counters routers read."""

    index: int
    policy: Policy
    cost: CostModel
    kv: KVBudget
    model: ModelSpec  # as served: the engine's KV cache and weight types applied
    pool: str = "default"
    role: str = "mixed"
    classes: tuple[str, ...] = ()
    max_model_len: int = 0  # longest prompt + output the engine accepts
    outstanding: int = 0  # requests routed here and not finished (or handed off)
    pending_tokens: int = 0  # their prompt + output tokens
    seen: int = 0  # how many of policy.finished have been accounted for
    frontend_s: float = 0.0  # API-server time added to every token's way to the client
    tokenize_s: float = 0.0  # API-server time per prompt token before the engine sees a request
    async_scheduling: bool = False  # a step is planned while the previous one runs
    busy: bool = False  # a step is running
    inbox: list[tuple[Request, float]] = field(default_factory=list)  # came while one was planned

    @property
    def kv_usage(self) -> float:
        pool: BlockPool = self.policy.pool  # type: ignore[attr-defined]
        return pool.used / pool.total if pool.total else 0.0


def build_replica(
    scenario: Scenario,
    index: int = 0,
    rng: np.random.Generator | None = None,
    spec: ReplicaSpec | None = None,
) -> Replica:
    """Build replica ``index`` of ``scenario`` (its first when ``spec`` is not given).

    Raises DoesNotFitError (with the numbers) when the model does not fit the GPUs, and a
    ConfigError when the policy cannot run on this replica (e.g. a batch the KV cache cannot
    hold).
    """
    spec = spec or scenario.replica_specs()[index]
    eng = spec.engine
    model = eng.served_model(get_model(scenario.model))
    hw = get_hardware(spec.hardware)
    tp, pp = spec.tensor_parallel, spec.pipeline_parallel
    max_len = eng.max_model_len or model.max_context
    pol = spec.policy
    draft = _draft_model(scenario, pol, model)
    if draft is not None:  # the draft's KV lives in the same cache, in its type
        draft = draft.with_dtypes(kv_cache_dtype=eng.kv_cache_dtype)
    where = f"cluster pool '{spec.pool}'" if scenario.cluster else "policy"
    if spec.role != "mixed" and pol.kind not in ("continuous", "speculative"):
        raise ConfigError(
            f"a {spec.role} pool needs a continuous policy (got '{pol.kind}')",
            source=scenario.source,
            field=where,
        )
    tokens, seqs = pol.memory_profile(max_len)
    budget = kv_budget(
        model,
        hw,
        tp,
        gpu_memory_utilization=eng.gpu_memory_utilization,
        block_size=eng.block_size,
        max_batched_tokens=tokens,
        max_seqs=seqs,
        num_blocks=eng.kv_blocks,
        source=scenario.source,
        draft=draft,
        pp=pp,
    )
    pool = BlockPool(budget.num_blocks, watermark=getattr(pol, "watermark", 0.0))
    ctx = ReplicaContext(
        pool=pool,
        block_size=eng.block_size,
        max_model_len=max_len,
        kv_block_bytes=budget.kv_bytes_per_token * eng.block_size,
        host_bandwidth=hw.pcie_bandwidth_gbps * 1e9,
        num_gpus=tp * pp,
        rng=rng if rng is not None else np.random.default_rng(scenario.seed),
        role=spec.role,
    )
    try:
        policy = pol.build(ctx)
    except ValueError as exc:
        raise ConfigError(str(exc), source=scenario.source, field=where) from None
    _refuse_like_the_engine(eng, policy, max_len, scenario.source, where)
    try:
        cost = _cost_model(eng.cost, model, hw, tp, pp)
        if draft is not None:
            draft_cost = _cost_model(_draft_cost(eng.cost), draft, hw, tp, 1)
            cost = SpeculativeCostModel(cost, draft_cost)
    except ConfigError as exc:
        if exc.source is not None:
            raise
        raise ConfigError(exc.reason, source=scenario.source, field=exc.field) from None
    return Replica(
        spec.index, policy, cost, budget, model, spec.pool, spec.role, spec.classes,
        max_model_len=max_len, frontend_s=eng.frontend_ms * 1e-3,
        tokenize_s=eng.tokenize_us_per_token * 1e-6, async_scheduling=eng.async_scheduling,
    )  # fmt: skip


def _refuse_like_the_engine(
    eng: EngineConfig, policy: Policy, max_len: int, source: str | None, where: str
) -> None:
    """Refuse what the engine named by the preset refuses at start-up: vLLM will not start
    without chunked prefill when the token budget is below ``max_model_len`` (every longer prompt
    could never be scheduled)."""
    if not eng.preset or get_preset(eng.preset).engine != "vLLM":
        return
    budget = getattr(policy, "budget", None)
    if getattr(policy, "whole_prompts", False) and budget is not None and budget < max_len:
        raise ConfigError(
            f"max_num_batched_tokens {budget:,} is below max_model_len {max_len:,} with chunked "
            f"prefill off, which vLLM ({eng.preset}) refuses at start-up; set "
            f"policy.chunked_prefill: true, policy.max_num_batched_tokens >= {max_len:,}, or "
            f"engine.max_model_len <= {budget:,}",
            source=source,
            field=where if where != "policy" else "policy.max_num_batched_tokens",
        )


def _cost_model(
    cfg: CostConfig, model: ModelSpec, hw: HardwareProfile, tp: int, pp: int
) -> CostModel:
    if pp == 1:
        return cfg.build(model, hw, tp)
    stage = model.model_copy(update={"num_layers": -(-model.num_layers // pp)})
    hidden = model.hidden_size * 2.0  # bf16 activations per token between stages
    gbps, latency_us = hw.interconnect.bandwidth_gbps, hw.interconnect.latency_us
    measured = hw.calibration.collectives.transfer("intra-node") if hw.calibration else None
    if isinstance(cfg, CalibratedConfig) and measured is not None:
        gbps, latency_us = measured.bandwidth_gbps, measured.latency_us
    return PipelineCostModel(cfg.build(stage, hw, tp), pp, hidden, gbps * 1e9, latency_us * 1e-6)


def _draft_model(scenario: Scenario, pol: Any, target: ModelSpec) -> ModelSpec | None:
    name = getattr(pol, "draft_model", None)
    if name is None:
        return None
    draft = get_model(name, source=scenario.source, field="policy.draft_model")
    if draft.num_params >= target.num_params:
        raise ConfigError(
            f"draft model {draft.name} ({draft.num_params / 1e9:.1f}B parameters) must be "
            f"smaller than the target {target.name} ({target.num_params / 1e9:.1f}B)",
            source=scenario.source,
            field="policy.draft_model",
        )
    if draft.vocab_size != target.vocab_size:
        raise ConfigError(
            f"draft model {draft.name} has vocabulary {draft.vocab_size}, the target "
            f"{target.name} {target.vocab_size}: a draft must share the target's tokenizer",
            source=scenario.source,
            field="policy.draft_model",
        )
    return draft


def _draft_cost(cfg: CostConfig) -> CostConfig:
    """The draft runs inside the target's step: no host overhead of its own. With a
    constant-time model, a draft pass costs a tenth of a target step."""
    if isinstance(cfg, ConstantConfig):
        return cfg.model_copy(update={"step_s": cfg.step_s * 0.1})
    fields = type(cfg).model_fields
    free: dict[str, Any] = {k: 0.0 for k in ("step_overhead_ms", "seq_overhead_us") if k in fields}
    return cfg.model_copy(update=free)
