"""Admission that never evicts: TensorRT-LLM's ``GUARANTEED_NO_EVICT`` capacity scheduler.

vLLM admits a request when its prompt's KV blocks are free now, and preempts running requests
later if their growth runs out of blocks. TensorRT-LLM's default instead admits a request only
when the blocks for its whole prompt plus its whole output (``max_tokens``) fit beside what is
already promised to the running requests, so a running request is never preempted.

The bookkeeping is one count, ``outstanding``: blocks promised to running requests that they
have not allocated yet (TensorRT-LLM's "remaining blocks to completion", summed). The invariant
``pool.used + outstanding <= pool.total`` holds after every admission and allocation, so every
step's new blocks are always free. A request is admitted when

    need(request) + outstanding <= pool.free

where ``need`` counts all the request's blocks, ``ceil((prompt + max_output) / block_size)``,
with no credit for prefix-cache hits (as in TensorRT-LLM, whose check counts a new request's
blocks to completion before any reuse): a reservation also covers blocks not allocated yet,
whether the prompt arrives in chunks or is found in the cache. Cached blocks that no request
references count as free, as they do in the block pool. No watermark is kept: the reservation
is the safety margin.
"""

from __future__ import annotations

from llmsim.kv_cache import blocks_for
from llmsim.request import Request


class NoEvictReservations:
    """Blocks promised to running requests and not yet allocated.

    ``extra_tokens`` widens every reservation (speculative decoding checks k draft positions
    beyond a request's last token).
    """

    __slots__ = ("block_size", "extra_tokens", "outstanding")

    def __init__(self, block_size: int, extra_tokens: int = 0) -> None:
        self.block_size = block_size
        self.extra_tokens = extra_tokens
        self.outstanding = 0

    def need(self, r: Request) -> int:
        """All the KV blocks ``r`` can hold before it finishes."""
        return blocks_for(
            r.prompt_tokens + r.max_output_tokens + self.extra_tokens, self.block_size
        )

    def fits(self, r: Request, free: int) -> bool:
        """Whether ``r``'s whole need fits beside the running requests' outstanding blocks."""
        return self.need(r) + self.outstanding <= free

    def admit(self, r: Request, held: int) -> None:
        """``r`` is admitted and now holds ``held`` blocks (cache hits included)."""
        self.outstanding += self.need(r) - held

    def allocated(self, blocks: int) -> None:
        """Running requests allocated ``blocks`` of what was promised to them."""
        self.outstanding -= blocks

    def release(self, r: Request, held: int) -> None:
        """``r`` leaves the running set holding ``held`` blocks; its unused promise lapses."""
        self.outstanding -= self.need(r) - held
