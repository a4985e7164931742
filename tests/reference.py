"""A deliberately naive re-implementation of the continuous-batching schedule.

No lazy decode set, no multi-step runs, no SimPy: every step loops over every request and
records a timestamp per token. The engine must agree with it on every request's timeline and
on the pooled inter-token gaps.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from llmsim.cost.base import BatchShape, CostModel


@dataclass
class RefRequest:
    id: int
    arrival: float
    prompt: int
    max_out: int
    computed: int = 0
    output: int = 0
    emits: list[float] = field(default_factory=list)
    first_scheduled: float = -1.0
    preemptions: int = 0
    status: str = "waiting"
    admit_seq: int = -1

    @property
    def tokens(self) -> int:
        return self.prompt + self.output


def blocks(tokens: int, bs: int) -> int:
    return -(-tokens // bs)


def _requests(arrivals: list[float], prompts: list[int], outputs: list[int]) -> list[RefRequest]:
    return [
        RefRequest(i, a, p, o)
        for i, (a, p, o) in enumerate(zip(arrivals, prompts, outputs, strict=True))
    ]


def _arrived(reqs: list[RefRequest], nxt: int, t: float) -> tuple[int, list[RefRequest]]:
    """Requests arriving by ``t`` from position ``nxt``; the new position."""
    start = nxt
    while nxt < len(reqs) and reqs[nxt].arrival <= t:
        nxt += 1
    return nxt, reqs[start:nxt]


def _emit(r: RefRequest, t: float) -> bool:
    """The request samples a token at ``t``; True when that was its last."""
    r.output += 1
    r.emits.append(t)
    if r.output == r.max_out:
        r.status = "finished"
        return True
    return False


def reference_run(
    arrivals: list[float],
    prompts: list[int],
    outputs: list[int],
    cost: CostModel,
    *,
    total_blocks: int,
    block_size: int,
    max_seqs: int,
    budget: int,
    watermark: float,
    max_model_len: int,
) -> list[RefRequest]:
    reqs = _requests(arrivals, prompts, outputs)
    wm = int(total_blocks * watermark)
    used = 0
    waiting: deque[RefRequest] = deque()
    running: list[RefRequest] = []
    t = 0.0
    nxt = 0
    done = 0
    n = len(reqs)
    while done < n:
        nxt, new = _arrived(reqs, nxt, t)
        for r in new:
            total = r.prompt + r.max_out
            if (
                total > max_model_len
                or r.prompt > budget
                or blocks(total, block_size) > total_blocks - wm
            ):
                r.status = "rejected"
                done += 1
            else:
                waiting.append(r)
        # prefill-first admission
        chunks: list[RefRequest] = []
        left = budget
        while waiting:
            r = waiting[0]
            need = r.tokens - r.computed
            b = blocks(need, block_size)
            if need > left or len(running) + len(chunks) >= max_seqs:
                break
            if total_blocks - used - b < wm:
                break
            waiting.popleft()
            used += b
            left -= need
            if r.first_scheduled < 0:
                r.first_scheduled = t
            chunks.append(r)
        if chunks:
            shape = BatchShape.prefill([(r.tokens - r.computed, r.computed) for r in chunks])
            t += cost.step_time(shape)
            for r in chunks:
                r.computed = r.tokens
                if _emit(r, t):
                    used -= blocks(r.computed, block_size)
                    done += 1
                else:
                    running.append(r)
            continue
        if not running:
            if nxt < n:
                t = max(t, reqs[nxt].arrival)
            continue
        # decode every running request; preempt the latest admitted while blocks are short
        while True:
            need = sum(1 for r in running if r.computed % block_size == 0)
            if need <= total_blocks - used:
                break
            victim = running.pop()
            used -= blocks(victim.computed, block_size)
            victim.computed = 0
            victim.preemptions += 1
            waiting.appendleft(victim)
        if not running:
            continue
        used += need
        shape = BatchShape.decode(len(running), sum(r.computed + 1 for r in running))
        t += cost.step_time(shape)
        still = []
        for r in running:
            r.computed += 1
            if _emit(r, t):
                used -= blocks(r.computed, block_size)
                done += 1
            else:
                still.append(r)
        running = still
    return reqs


def reference_run_chunked(
    arrivals: list[float],
    prompts: list[int],
    outputs: list[int],
    cost: CostModel,
    *,
    total_blocks: int,
    block_size: int,
    max_seqs: int,
    budget: int,
    chunk_cap: int,
    watermark: float,
    max_model_len: int,
) -> list[RefRequest]:
    """Chunked prefill (decode-first): all decodes, then continuing prompts, then new ones."""
    reqs = _requests(arrivals, prompts, outputs)
    wm = int(total_blocks * watermark)
    bs = block_size
    used = 0
    waiting: deque[RefRequest] = deque()
    decoding: list[RefRequest] = []
    prefilling: list[RefRequest] = []
    t = 0.0
    nxt = 0
    done = 0
    admitted = 0
    n = len(reqs)
    while done < n:
        nxt, new = _arrived(reqs, nxt, t)
        for r in new:
            total = r.prompt + r.max_out
            if total > max_model_len or blocks(total, bs) > total_blocks - wm:
                r.status = "rejected"
                done += 1
            else:
                waiting.append(r)
        preempted = False
        while True:
            left = budget - len(decoding)
            plan: list[tuple[RefRequest, int]] = []
            need = sum(1 for r in decoding if r.computed % bs == 0)
            for r in prefilling:
                q = min(r.tokens - r.computed, left, chunk_cap)
                if q <= 0:
                    break
                plan.append((r, q))
                need += blocks(r.computed + q, bs) - blocks(r.computed, bs)
                left -= q
            if need <= total_blocks - used:
                break
            victim = max(decoding + prefilling, key=lambda r: r.admit_seq)
            if victim in decoding:
                decoding.remove(victim)
            else:
                prefilling.remove(victim)
            used -= blocks(victim.computed, bs)
            victim.computed = 0
            victim.preemptions += 1
            waiting.appendleft(victim)
            preempted = True
        for r, q in plan:
            used += blocks(r.computed + q, bs) - blocks(r.computed, bs)
        dec_need = sum(1 for r in decoding if r.computed % bs == 0)
        if not preempted:
            seqs = len(decoding) + len(prefilling)
            while waiting and left > 0 and seqs < max_seqs:
                r = waiting[0]
                todo = r.tokens - r.computed
                q = min(todo, left, chunk_cap)
                b = blocks(q, bs)
                if total_blocks - used - b - dec_need < wm:
                    break
                waiting.popleft()
                used += b
                left -= q
                seqs += 1
                admitted += 1
                r.admit_seq = admitted
                if r.first_scheduled < 0:
                    r.first_scheduled = t
                plan.append((r, q))
                if q < todo:
                    prefilling.append(r)
        if not plan and not decoding:
            if nxt < n:
                t = max(t, reqs[nxt].arrival)
            continue
        used += dec_need
        assert used <= total_blocks
        chunks = [(q, r.computed) for r, q in plan]
        sampled = sum(1 for r, q in plan if r.computed + q == r.tokens)
        shape = BatchShape.prefill(chunks, sampled=sampled) if plan else BatchShape()
        if decoding:
            dec = BatchShape.decode(len(decoding), sum(r.computed + 1 for r in decoding))
            shape = shape.merge(dec)
        t += cost.step_time(shape)
        still = []
        for r in decoding:
            r.computed += 1
            if _emit(r, t):
                used -= blocks(r.computed, bs)
                done += 1
            else:
                still.append(r)
        decoding = still
        for r, q in plan:
            r.computed += q
            if r.computed < r.tokens:
                continue
            if r in prefilling:
                prefilling.remove(r)
            if _emit(r, t):
                used -= blocks(r.computed, bs)
                done += 1
            else:
                decoding.append(r)
    return reqs
