"""Continuous (iteration-level) batching with a paged KV cache, as in vLLM.

Three schedules:

* prefill-first (``chunked_prefill: false``, vLLM 0.6's default): each step first tries to
  admit waiting requests as one prefill batch, stopping at the first that would exceed the
  token budget, the sequence cap or the free KV blocks (less a watermark). A step with
  prefills runs no decodes. Otherwise every running request decodes one token.
* chunked prefill (``chunked_prefill: true``, Sarathi-Serve / vLLM v1): every step decodes
  all running requests first, then spends what is left of the token budget on prompt chunks:
  partially prefilled requests first, then new admissions. Decodes never wait behind a long
  prompt; prompts take several steps.
* mixed, whole prompts (``mixed_prefill: true`` without chunked prefill, TensorRT-LLM's
  in-flight batching without chunked context): every step decodes all running requests and
  adds whole prompts, in queue order, while they fit what is left of the token budget.

When a step needs more KV blocks than are free, running requests are preempted, the latest
admitted first (the lowest class first under priority scheduling): by recompute (blocks
freed, the request re-queued to be prefilled again with what it had generated) or by swap
(blocks copied to host memory over PCIe and back later, both transfers charged to the step).
With ``admission: no_evict`` (TensorRT-LLM's default) a request is admitted only when the
blocks for its whole prompt and output can be reserved, so nothing is ever preempted (see
``policies.admission``).

Options: FCFS, priority-class or shortest-job-first order; prefix caching (full prompt blocks
shared by content key, least recently used evicted first), optionally with a host-memory tier
that keeps copies of computed blocks and loads hits back over PCIe (vLLM's KV offloading);
paged or contiguous KV (a contiguous layout reserves ``max_model_len`` tokens per request at
admission, as engines did before PagedAttention); multi-step scheduling (vLLM V0's
``num_scheduler_steps``: the scheduler runs once every n steps, the batch decodes in between).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from itertools import accumulate

from llmsim.cost.base import BatchShape
from llmsim.hardware import GiB
from llmsim.kv_cache import HostTier, blocks_for, prompt_block_keys
from llmsim.policies.admission import NoEvictReservations
from llmsim.policies.base import Plan, ReplicaContext, StepStats
from llmsim.policies.continuous_config import ContinuousConfig
from llmsim.policies.decode_set import DecodeSet
from llmsim.policies.waiting import make_queue, victim_key
from llmsim.request import Request, Status


class ContinuousPolicy:
    def __init__(self, cfg: ContinuousConfig, ctx: ReplicaContext) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.pool = ctx.pool
        self.block_size = ctx.block_size
        self.max_model_len = ctx.max_model_len
        self.max_seqs = cfg.max_seqs(ctx.pool.total * ctx.block_size, ctx.max_model_len)
        self.budget = cfg.token_budget(ctx.max_model_len)
        self.chunk_cap = cfg.long_prefill_token_threshold or self.budget
        # multi-step scheduling: prompts go whole; steps left before the next scheduling point
        self.multi_step = cfg.num_scheduler_steps
        self.whole_prompts = not cfg.chunked_prefill or self.multi_step > 1
        self._window_left = 0
        self._deferred: list[Request] = []  # finished inside a window: freed at its end
        block_all_gpus = ctx.kv_block_bytes * ctx.num_gpus
        self.host: HostTier | None = (
            HostTier(int(cfg.cpu_kv_offload_gib * GiB // block_all_gpus))
            if cfg.cpu_kv_offload_gib and block_all_gpus
            else None
        )
        self.paged = cfg.kv_layout == "paged"
        self.reserve = 0 if self.paged else blocks_for(ctx.max_model_len, ctx.block_size)
        room = ctx.pool.total - ctx.pool.watermark  # admission keeps the watermark free
        if not self.paged and self.reserve > room:
            kept = f" less the watermark's {ctx.pool.watermark}" if ctx.pool.watermark else ""
            raise ValueError(
                f"kv_layout contiguous reserves max_model_len {ctx.max_model_len} tokens "
                f"({self.reserve} blocks) per request, more than the KV cache's "
                f"{ctx.pool.total} blocks{kept}; lower engine.max_model_len or policy.watermark"
            )
        # no_evict on a paged cache; a contiguous layout reserves max_model_len up front anyway
        self.reservations = (
            NoEvictReservations(ctx.block_size, self._reserve_extra_tokens())
            if cfg.admission == "no_evict" and self.paged
            else None
        )
        self.waiting = make_queue(cfg.order)
        self.decode = self._decode_set()
        self.prefilling: list[Request] = []  # chunked prefill in progress, admission order
        self.swapped: deque[Request] = deque()
        self.swap_capacity = (
            int(cfg.swap_space_gib * GiB // ctx.kv_block_bytes) if ctx.kv_block_bytes else 0
        )
        self.swap_used = 0
        self.last_decode_end = 0.0
        self._admitted = 0
        self._transfer_s = 0.0
        self._finished: list[Request] = []
        self.role = ctx.role
        self.handoffs: list[Request] = []  # prefill role: prompts done, KV to ship out
        self.incoming: deque[Request] = deque()  # decode role: prefilled elsewhere

    def _decode_set(self) -> DecodeSet:
        return DecodeSet(self.block_size, paged=self.paged)

    def _reserve_extra_tokens(self) -> int:
        """Tokens a no-evict reservation adds beyond prompt + output (speculative: k)."""
        return 0

    # --- arrivals --------------------------------------------------------------------------

    def refusal(self, r: Request) -> str:
        """Why this replica could never run ``r`` (a key of ``REJECT_REASONS``), or "" if it
        can: prompt plus output within max_model_len, a prompt within the token budget when
        prompts go whole (a decode replica prefills none), and its KV within the cache."""
        total = r.prompt_tokens + r.max_output_tokens
        pool = self.pool
        if total > self.max_model_len:
            return "max_model_len"
        if self.whole_prompts and self.role != "decode" and r.prompt_tokens > self.budget:
            return "token_budget"
        if blocks_for(total, self.block_size) > pool.total - pool.watermark or (
            self.reservations is not None and self.reservations.need(r) > pool.total
        ):
            return "kv_capacity"
        return ""

    def can_serve(self, r: Request) -> bool:
        """Whether this replica could ever run ``r`` (else it is refused on arrival)."""
        return not self.refusal(r)

    def add(self, r: Request, now: float) -> None:
        reason = self.refusal(r)
        if reason:
            r.reject(now, reason)
            self._finished.append(r)
            return
        r.queue_enter = now
        self.waiting.push(r)

    @property
    def finished(self) -> list[Request]:
        return self._finished

    def wake_at(self, now: float) -> float | None:
        return None

    @property
    def num_running(self) -> int:
        return self.decode.n + len(self.prefilling)

    # --- scheduling ------------------------------------------------------------------------

    def add_prefilled(self, r: Request, now: float) -> None:
        """Decode role: a request whose prompt was prefilled on another replica arrives with
        its KV cache and first token."""
        r.queue_enter = now
        self.incoming.append(r)

    def _take_incoming(self, now: float) -> None:
        pool = self.pool
        while self.incoming and self.num_running < self.max_seqs:
            r = self.incoming[0]
            # paged: the blocks of the KV that arrived, and room for the next token's;
            # contiguous: this replica's reservation
            bs = self.block_size
            blocks = blocks_for(r.num_computed, bs) if self.paged else self.reserve
            room = blocks_for(r.num_computed + 1, bs) if self.paged else blocks
            res = self.reservations
            if not (res.fits(r, pool.free) if res else pool.can_admit(room)):
                return
            self.incoming.popleft()
            pool.allocate(blocks)
            r.reserved_blocks = self.reserve
            if res:
                res.admit(r, blocks)
            r.status = Status.RUNNING
            r.queue_time += now - r.queue_enter
            self._admitted += 1
            r.admit_seq = self._admitted
            self._join(r, r.last_emit)

    def schedule(self, now: float) -> Plan | None:
        if self._window_left:
            plan = self._continue_window(now)
            if plan is not None:
                return self._charge_transfers(plan)
        if self._deferred:  # a scheduling point: free what finished inside the window
            for r in self._deferred:
                self._release(r)
            self._deferred.clear()
        if self.incoming:
            self._take_incoming(now)
        if self.swapped:
            self._swap_in()
        if self.cfg.chunked_prefill or self.cfg.mixed_prefill:
            plan = self._schedule_chunked(now)
        else:
            plan = self._schedule_prefill_first(now)
        return self._charge_transfers(plan)

    def _charge_transfers(self, plan: Plan | None) -> Plan | None:
        """Add the PCIe transfers decided while scheduling (swap, host-tier loads) to the step."""
        if plan is not None and self._transfer_s:
            plan.extra_s = self._transfer_s
            self._transfer_s = 0.0
        return plan

    def _continue_window(self, now: float) -> Plan | None:
        """Multi-step: the decode steps left before the next scheduling point, admitting
        nothing; None when no request is left decoding (the window ends early)."""
        ds = self.decode
        preempted = self._make_room(now) if ds.n else False
        if not ds.n:
            self._window_left = 0
            return None
        steps = 1 if preempted else min(self._window_left, ds.steps_to_finish())
        return Plan(shape=ds.shape(), decode_steps=ds.steps_within(self.pool.free, steps))

    def _schedule_prefill_first(self, now: float) -> Plan | None:
        if self.waiting and not self.swapped:
            chunks = self._admit(now, self.budget, self.decode.n, whole=True)
            if chunks:
                return self._plan(chunks, decodes=False)
        ds = self.decode
        if not ds.n:
            return None
        preempted = self._make_room(now)
        if not ds.n:  # everything was preempted: admit again
            return self._schedule_prefill_first(now)
        steps = 1 if preempted else ds.steps_to_finish()
        steps = ds.steps_within(self.pool.free, steps)
        return Plan(shape=ds.shape(), decode_steps=steps)

    def _schedule_chunked(self, now: float) -> Plan | None:
        ds = self.decode
        preempted = False
        while True:  # make room for this step's decodes and prompt chunks
            left = self.budget - ds.n
            chunks = self._continue_prefills(left)
            need = sum(blocks for _, _, blocks in chunks)
            if need + (ds.blocks_needed() if ds.n else 0) <= self.pool.free:
                break
            self._preempt_one(now)
            preempted = True
        for _, _, blocks in chunks:
            self.pool.allocate(blocks)
            if self.reservations:
                self.reservations.allocated(blocks)
        left -= sum(q for _, q, _ in chunks)
        granted = [(r, q) for r, q, _ in chunks]
        if not preempted and self.waiting and not self.swapped and left > 0:
            granted += self._admit(
                now,
                left,
                ds.n + len(self.prefilling),
                whole=self.whole_prompts,
                reserved=ds.blocks_needed() if ds.n else 0,
            )
        if granted:
            return self._plan(granted, decodes=True)
        if not ds.n:
            return None
        steps = 1 if preempted else ds.steps_within(self.pool.free, ds.steps_to_finish())
        return Plan(shape=ds.shape(), decode_steps=steps)

    def _continue_prefills(self, left: int) -> list[tuple[Request, int, int]]:
        """Next chunk of each partially prefilled request: (request, tokens, new blocks)."""
        out = []
        for r in self.prefilling:
            q = min(r.num_tokens - r.num_computed, left, self.chunk_cap)
            if q <= 0:
                break
            held = blocks_for(r.num_computed, self.block_size) if self.paged else r.reserved_blocks
            blocks = blocks_for(r.num_computed + q, self.block_size) - held if self.paged else 0
            out.append((r, q, blocks))
            left -= q
        return out

    def _admit(
        self, now: float, budget: int, seqs: int, *, whole: bool, reserved: int = 0
    ) -> list[tuple[Request, int]]:
        """Admit waiting requests in queue order. ``whole``: the whole prompt or nothing;
        ``reserved``: blocks this step's decodes will take."""
        pool = self.pool
        bs = self.block_size
        out: list[tuple[Request, int]] = []
        waiting = self.waiting
        caching = self.cfg.prefix_caching
        host = self.host
        while waiting and budget > 0 and seqs < self.max_seqs:
            r = waiting.peek()
            keys: list[Hashable] = []
            hit = loaded = 0  # leading blocks cached on the GPU, then on the host tier
            if caching:
                keys = prompt_block_keys(r.prefix_hashes, r.hash_block_tokens, r.prompt_tokens, bs)
                hit = pool.match(keys)
                if host is not None and hit < len(keys):
                    loaded = host.match(keys[hit:])
                if (hit + loaded) * bs >= r.num_tokens:
                    # the last token is always computed, to sample from it
                    if loaded:
                        loaded -= 1
                    else:
                        hit -= 1
            computed = (hit + loaded) * bs
            todo = r.num_tokens - computed
            q = todo if whole else min(todo, budget, self.chunk_cap)
            if q > budget and not (whole and not out and q > self.budget and r.preemptions):
                # A recompute larger than the whole budget (prompt + generated tokens) can
                # never fit one: it runs alone, over the budget, instead of never.
                break
            if self.paged:
                new_blocks = blocks_for(computed + q, bs) - hit
                room = new_blocks + (pool.revived(keys[:hit]) if hit else 0)
            else:
                new_blocks = room = self.reserve
            res = self.reservations
            if not (res.fits(r, pool.free) if res else pool.can_admit(room + reserved)):
                break
            waiting.pop()
            if hit:
                pool.acquire(keys[:hit])
                r.held_keys = list(keys[:hit])
            r.keyed_blocks = hit + loaded
            if caching and r.first_scheduled < 0:
                pool.query_tokens += r.prompt_tokens
                pool.hit_tokens += hit * bs
                r.cached_tokens = computed
            pool.allocate(new_blocks)
            if loaded:
                self._load_from_host(r, keys[hit : hit + loaded])
            if res:
                res.admit(r, hit + new_blocks)
            r.reserved_blocks = self.reserve
            r.num_computed = computed
            r.status = Status.RUNNING
            r.queue_time += now - r.queue_enter
            if r.first_scheduled < 0:
                r.first_scheduled = now
            self._admitted += 1
            r.admit_seq = self._admitted
            budget -= q
            seqs += 1
            out.append((r, q))
            if q < todo:
                self.prefilling.append(r)
        return out

    def _load_from_host(self, r: Request, keys: list[Hashable]) -> None:
        """Copy blocks found on the host tier into the request's new GPU blocks: charged at
        PCIe bandwidth to this step, then cached on the GPU like computed ones."""
        assert self.host is not None
        self.host.touch(keys)
        self.host.hit_tokens += len(keys) * self.block_size
        self._transfer_s += len(keys) * self.ctx.kv_block_bytes / self.ctx.host_bandwidth
        self._cache_blocks(r, keys)

    def _plan(self, granted: list[tuple[Request, int]], *, decodes: bool) -> Plan:
        chunks = [(q, r.num_computed) for r, q in granted]
        sampled = sum(1 for r, q in granted if r.num_computed + q == r.num_tokens)
        shape = BatchShape.prefill(chunks, sampled=sampled)
        if decodes and self.decode.n:
            shape = shape.merge(self.decode.shape())
        return Plan(shape=shape, prefills=granted)

    # --- preemption ------------------------------------------------------------------------

    def _make_room(self, now: float) -> bool:
        """Preempt until the next decode step's blocks fit; True if anything was preempted."""
        ds = self.decode
        preempted = False
        while ds.n and ds.blocks_needed() > self.pool.free:
            self._preempt(ds.pop_last(), now)
            preempted = True
        return preempted

    def _preempt_one(self, now: float) -> None:
        """Preempt the victim among decoding and partially prefilled requests."""
        order = self.cfg.order
        best = self.decode.peek_victim()
        if self.prefilling:
            cand = max(self.prefilling, key=lambda r: victim_key(r, order))
            if best is None or victim_key(cand, order) > best:
                self.prefilling.remove(cand)
                cand.preemptions += 1
                self._recompute_later(cand, now)
                return
        self._preempt(self.decode.pop_last(), now)

    def _preempt(self, r: Request, now: float) -> None:
        """A decoding request leaves the running set (already removed from the decode set)."""
        ds = self.decode
        if ds.counter > r.seg_start_decode:
            r.last_emit = self.last_decode_end
        r.segments.append((r.seg_start_decode, ds.counter, r.seg_emit))
        r.preemptions += 1
        held = self._held_blocks(r)
        if self.cfg.preemption == "swap" and self.swap_used + held <= self.swap_capacity:
            self._release(r)
            r.swapped_blocks = held
            self.swap_used += held
            self._transfer_s += held * self.ctx.kv_block_bytes / self.ctx.host_bandwidth
            r.status = Status.WAITING
            self.swapped.append(r)
            return
        self._recompute_later(r, now)

    def _recompute_later(self, r: Request, now: float) -> None:
        """Free a preempted request's KV and queue it, first, to be prefilled again."""
        self._release(r)
        r.recompute_mark = max(r.recompute_mark, r.num_computed)
        r.num_computed = 0
        r.keyed_blocks = 0
        r.status = Status.WAITING
        r.queue_enter = now
        self.waiting.push_front(r)

    def _swap_in(self) -> None:
        """Bring swapped-out requests back, oldest first, while their blocks fit."""
        pool = self.pool
        while self.swapped:
            r = self.swapped[0]
            if not pool.can_admit(r.swapped_blocks + 1):
                return
            self.swapped.popleft()
            pool.allocate(r.swapped_blocks)
            self.swap_used -= r.swapped_blocks
            self._transfer_s += r.swapped_blocks * self.ctx.kv_block_bytes / self.ctx.host_bandwidth
            r.swapped_blocks = 0
            r.status = Status.RUNNING
            self._admitted += 1
            r.admit_seq = self._admitted
            self._join(r, r.last_emit)

    # --- outcome ---------------------------------------------------------------------------

    def update(self, plan: Plan, start: float, durations: list[float]) -> StepStats:
        ds = self.decode
        if self.multi_step > 1:  # steps left in the window once these have run
            alone = bool(plan.prefills) and not self.cfg.chunked_prefill  # a prompt step
            left = (self._window_left - len(durations)) % self.multi_step
            self._window_left = 0 if alone else left
        end = start + sum(durations)
        running = ds.n + len(self.prefilling)
        if plan.prefills:
            running += sum(1 for r, _ in plan.prefills if r not in self.prefilling)
        emitted = None
        if plan.shape.decode_seqs:
            kv, emitted = self._advance_decode(len(durations), end)
        else:
            kv = [self.pool.used]
        for r, granted in plan.prefills:
            if r.recompute_mark > r.num_computed:  # computing again what a preemption dropped
                r.recomputed_tokens += min(granted, r.recompute_mark - r.num_computed)
            r.num_computed += granted
            if self.cfg.prefix_caching:
                self._register_blocks(r)
            if r.num_computed < r.num_tokens:
                continue  # more chunks to come
            if self.prefilling and r in self.prefilling:
                self.prefilling.remove(r)
            r.num_output += 1
            if r.first_token < 0:
                if self.role == "prefill" and r.num_output < r.max_output_tokens:
                    r.last_emit = end
                    self._release(r)
                    self.handoffs.append(r)  # first token leaves with the KV cache
                    continue
                r.first_token = end
            else:  # recomputed after preemption: the gap since its previous token
                r.extra_gaps.append(end - r.last_emit)
            r.last_emit = end
            if r.num_output >= r.max_output_tokens:
                self._finish(r, end)
            else:
                self._join(r, end)
        waiting = len(self.waiting) + len(self.swapped) + len(self.incoming)
        return StepStats(kv, waiting, running, emitted)

    def _join(self, r: Request, emitted_at: float) -> None:
        r.seg_start_decode = self.decode.counter
        r.seg_emit = emitted_at
        self.decode.join(r, victim_key(r, self.cfg.order))

    def _advance_decode(self, steps: int, end: float) -> tuple[list[int], int | None]:
        """Apply ``steps`` decode steps; KV blocks in use at each, and tokens emitted when a
        step emits other than one per decoding request (speculative decoding)."""
        ds = self.decode
        pool = self.pool
        kv = list(accumulate(ds.advance(steps), initial=pool.used))
        del kv[0]
        if self.reservations:
            self.reservations.allocated(kv[-1] - pool.used)
        pool.allocate(kv[-1] - pool.used)
        self.last_decode_end = end
        for r in ds.pop_finished():
            r.last_emit = end
            r.segments.append((r.seg_start_decode, ds.counter, r.seg_emit))
            self._finish(r, end)
        return kv, ds.emitted

    def _register_blocks(self, r: Request) -> None:
        """Offer the request's newly completed prompt blocks to the prefix cache."""
        bs = self.block_size
        full = min(r.num_computed, r.prompt_tokens) // bs
        if full <= r.keyed_blocks:
            return
        keys = prompt_block_keys(r.prefix_hashes, r.hash_block_tokens, r.prompt_tokens, bs)
        new = keys[r.keyed_blocks : full]
        self._cache_blocks(r, new)
        if self.host is not None:
            self.host.touch(new)  # the connector copies every computed block to the host
        r.keyed_blocks = full

    def _cache_blocks(self, r: Request, keys: list[Hashable]) -> None:
        """Offer ``r``'s blocks to the GPU prefix cache; ``r`` holds the ones it takes."""
        for key in keys:
            if self.pool.register(key):
                r.held_keys.append(key)

    def _held_blocks(self, r: Request) -> int:
        return blocks_for(r.num_computed, self.block_size) if self.paged else r.reserved_blocks

    def _release(self, r: Request) -> None:
        held = self._held_blocks(r)
        if self.reservations:
            self.reservations.release(r, held)
        if r.held_keys:
            self.pool.release_keys(r.held_keys)
            held -= len(r.held_keys)
            r.held_keys = []
        self.pool.release(held)

    def _finish(self, r: Request, now: float) -> None:
        r.status = Status.FINISHED
        r.finish = now
        if self._window_left:
            self._deferred.append(r)  # multi-step: its slot is freed at the next scheduling point
        else:
            self._release(r)
        self._finished.append(r)
