"""The simulation engine: the only module that uses SimPy.

Each replica is one SimPy process that loops: ask its policy for a plan, price it with the
cost model, wait that long, apply the outcome. One event per step, per arrival; a run of pure
decode steps over an unchanged batch is one event (each step still priced on its own shape),
ending at the step in which the next request arrives.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from llmsim.cost import ConstantConfig, CostConfig, CostModel
from llmsim.cost.speculative import SpeculativeCostModel
from llmsim.errors import ConfigError
from llmsim.hardware import get_hardware
from llmsim.kv_cache import BlockPool, KVBudget, kv_budget
from llmsim.metrics import StepLog, inter_token_gaps, requests_frame, summarize
from llmsim.models import ModelSpec, get_model
from llmsim.policies import Policy, ReplicaContext
from llmsim.request import Request
from llmsim.result import SimulationResult
from llmsim.scenario import Scenario
from llmsim.workload import RequestStream, generate

ProgressFn = Callable[[int, int], None]


@dataclass
class Replica:
    """One serving instance: a policy, its KV pool and its cost model."""

    index: int
    policy: Policy
    cost: CostModel
    kv: KVBudget
    idle: simpy.Event | None = None


def build_replica(
    scenario: Scenario, index: int = 0, rng: np.random.Generator | None = None
) -> Replica:
    """Resolve model and hardware, size the KV cache, build the policy and the cost model.

    Raises DoesNotFitError (with the numbers) when the model does not fit the GPUs, and a
    ConfigError when the policy cannot run on this replica (e.g. a batch the KV cache cannot
    hold).
    """
    model = get_model(scenario.model)
    hw = get_hardware(scenario.hardware)
    eng = scenario.engine
    tp = scenario.tensor_parallel
    max_len = eng.max_model_len or model.max_context
    pol = scenario.policy
    draft = _draft_model(scenario, model)
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
    )
    pool = BlockPool(budget.num_blocks, watermark=getattr(pol, "watermark", 0.0))
    ctx = ReplicaContext(
        pool=pool,
        block_size=eng.block_size,
        max_model_len=max_len,
        kv_block_bytes=budget.kv_bytes_per_token * eng.block_size,
        host_bandwidth=hw.pcie_bandwidth_gbps * 1e9,
        rng=rng if rng is not None else np.random.default_rng(scenario.seed),
    )
    try:
        policy = pol.build(ctx)
    except ValueError as exc:
        raise ConfigError(str(exc), source=scenario.source, field="policy") from None
    cost: CostModel = eng.cost.build(model, hw, tp)
    if draft is not None:
        cost = SpeculativeCostModel(cost, _draft_cost(scenario).build(draft, hw, tp))
    return Replica(index, policy, cost, budget)


def _draft_model(scenario: Scenario, target: ModelSpec) -> ModelSpec | None:
    name = getattr(scenario.policy, "draft_model", None)
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


def _draft_cost(scenario: Scenario) -> CostConfig:
    """The draft runs inside the target's step: no host overhead of its own. With a
    constant-time model, a draft pass costs a tenth of a target step."""
    cfg = scenario.engine.cost
    fields = type(cfg).model_fields
    free: dict[str, Any] = {k: 0.0 for k in ("step_overhead_ms", "seq_overhead_us") if k in fields}
    if isinstance(cfg, ConstantConfig):
        return cfg.model_copy(update={"step_s": cfg.step_s * 0.1})
    return cfg.model_copy(update=free)


class Simulation:
    """A prepared run: replicas built, requests drawn. ``run()`` executes it once."""

    def __init__(self, scenario: Scenario, stream: RequestStream | None = None) -> None:
        self.scenario = scenario
        seed = np.random.SeedSequence(scenario.seed)
        workload_seed, policy_seed = seed.spawn(2)
        self.replicas = [build_replica(scenario, 0, np.random.default_rng(policy_seed))]
        self.stream = stream if stream is not None else generate(scenario.workload, workload_seed)
        self.env = simpy.Environment()
        self.log = StepLog()
        self.next_arrival = math.inf
        self._rr = 0

    # --- processes -------------------------------------------------------------------------

    def _route(self, r: Request) -> Replica:
        rep = self.replicas[self._rr % len(self.replicas)]
        self._rr += 1
        return rep

    def _arrivals(self, progress: ProgressFn | None) -> Generator[Any, Any, None]:
        env = self.env
        s = self.stream
        times = s.arrival.tolist()
        prompts = s.prompt_tokens.tolist()
        outputs = s.output_tokens.tolist()
        n = len(times)
        tick = max(1, n // 100)
        for i in range(n):
            t = times[i]
            if t > env.now:
                yield env.timeout(t - env.now)
            self.next_arrival = times[i + 1] if i + 1 < n else math.inf
            r = Request(i, t, prompts[i], outputs[i])
            rep = self._route(r)
            r.replica = rep.index
            rep.policy.add(r, t)
            if rep.idle is not None and not rep.idle.triggered:
                rep.idle.succeed()
            if progress is not None and (i + 1) % tick == 0:
                progress(i + 1, n)

    def _replica(self, rep: Replica) -> Generator[Any, Any, None]:
        env = self.env
        policy = rep.policy
        cost = rep.cost
        log = self.log
        step_time = cost.step_time
        decode_time = cost.decode_step_time
        while True:
            plan = policy.schedule(env.now)
            if plan is None:
                rep.idle = env.event()
                wake = policy.wake_at(env.now)
                if wake is None:
                    yield rep.idle
                else:
                    yield rep.idle | env.timeout(max(wake - env.now, 0.0))
                rep.idle = None
                continue
            start = env.now
            total = step_time(plan.shape) + plan.extra_s
            durations = [total]
            if plan.decode_steps > 1 and total < self.next_arrival - start:
                # the rest of a run of pure-decode steps, until the step a request arrives in
                n = plan.shape.decode_seqs
                ctx = plan.shape.decode_context
                horizon = self.next_arrival - start
                for _ in range(plan.decode_steps - 1):
                    ctx += n
                    d = decode_time(n, ctx)
                    durations.append(d)
                    total += d
                    if total >= horizon:
                        break
            yield env.timeout(total)
            stats = policy.update(plan, start, durations)
            log.record(rep.index, start, durations, plan, stats)

    # --- run -------------------------------------------------------------------------------

    def run(self, progress: ProgressFn | None = None) -> SimulationResult:
        env = self.env
        for rep in self.replicas:
            env.process(self._replica(rep))
        env.process(self._arrivals(progress))
        env.run()
        return self._result()

    def _result(self) -> SimulationResult:
        requests: list[Request] = [r for rep in self.replicas for r in rep.policy.finished]
        unfinished = len(self.stream) - len(requests)
        if unfinished:  # cannot happen with a work-conserving policy; guard the invariant
            raise RuntimeError(f"{unfinished} requests never finished")
        req_df = requests_frame(requests)
        steps_df = self.log.frame([rep.kv.num_blocks for rep in self.replicas])
        ends = []
        for rep in self.replicas:
            mine = steps_df[(steps_df["replica"] == rep.index) & (steps_df["decode_tokens"] > 0)]
            ends.append(mine["end"].to_numpy())
        mcfg = self.scenario.metrics
        lo = float(req_df["arrival"].min()) + mcfg.warmup_s if len(req_df) else 0.0
        last = req_df["finish"].max()
        hi = (float(last) if not np.isnan(last) else lo) - mcfg.cooldown_s
        window = (lo, max(hi, lo))
        measured = [r for r in requests if window[0] <= r.arrival <= window[1]]
        itl = inter_token_gaps(measured, ends)
        summary = summarize(req_df, steps_df, itl, window, mcfg)
        return SimulationResult(
            self.scenario, req_df, steps_df, summary, [rep.kv for rep in self.replicas], itl
        )


def simulate(scenario: Scenario, *, progress: ProgressFn | None = None) -> SimulationResult:
    """Run a scenario and return its tables and summary."""
    return Simulation(scenario).run(progress)
