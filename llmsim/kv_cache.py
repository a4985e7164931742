"""KV-cache capacity and the paged block pool.

Capacity follows what vLLM does at start-up: of each GPU's memory, take the fraction
``gpu_memory_utilization``; subtract the weights' share, the peak activations of a full batch
and the runtime's own memory (CUDA context, graphs, communicator buffers); what remains,
divided by the KV bytes of one token on one GPU, is the cache in tokens, cut into blocks.
A scenario may instead give the block count a real engine printed (``kv_blocks``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from llmsim.errors import DoesNotFitError
from llmsim.hardware import GiB, HardwareProfile
from llmsim.models import ModelSpec

RUNTIME_RESERVE_BYTES = 1.0 * GiB
"""CUDA context, CUDA graphs and NCCL buffers per GPU: an estimate (0.5-1.5 GiB is typical)."""


@dataclass(frozen=True, slots=True)
class KVBudget:
    """How one replica's GPU memory is divided, per GPU, in bytes."""

    memory: float
    usable: float
    weights: float
    activations: float
    runtime: float
    kv_bytes_per_token: float
    block_size: int
    num_blocks: int

    @property
    def kv_bytes(self) -> float:
        return self.usable - self.weights - self.activations - self.runtime

    @property
    def tokens(self) -> int:
        return self.num_blocks * self.block_size


def activation_bytes(model: ModelSpec, tp: int, max_batched_tokens: int, max_seqs: int) -> float:
    """Peak activation memory of the largest step, per GPU (an estimate of vLLM's profile run).

    Hidden states, the QKV output and the MLP intermediate of ``max_batched_tokens`` tokens,
    plus fp32 logits for ``max_seqs`` sequences.
    """
    h = model.hidden_size
    ffn = model.moe.expert_ffn_size * model.moe.experts_per_token if model.moe else model.ffn_size
    qkv = (model.q_width + 2 * model.num_kv_heads * model.head_dim) / tp
    per_token = (4 * h + qkv + 2 * ffn / tp) * 2  # bf16
    logits = max_seqs * model.vocab_size / tp * 4
    return max_batched_tokens * per_token + logits


def kv_budget(
    model: ModelSpec,
    hardware: HardwareProfile,
    tp: int,
    *,
    gpu_memory_utilization: float,
    block_size: int,
    max_batched_tokens: int,
    max_seqs: int,
    num_blocks: int | None = None,
    source: str | None = None,
    draft: ModelSpec | None = None,
    pp: int = 1,
) -> KVBudget:
    """KV capacity of one replica, or DoesNotFitError with the numbers when it has none.

    With a ``draft`` model (speculative decoding) its weights share the memory and every
    cached token holds the draft's KV too. With ``pp`` pipeline stages each GPU holds 1/pp of
    the layers, so of the weights and of each token's KV.
    """
    memory = hardware.memory_bytes
    usable = memory * gpu_memory_utilization
    weights = model.weight_bytes / tp / pp
    acts = activation_bytes(model, tp, max_batched_tokens, max_seqs)
    per_token = model.kv_bytes_per_token_per_gpu(tp) / pp
    if draft is not None:
        weights += draft.weight_bytes / tp
        per_token += draft.kv_bytes_per_token_per_gpu(tp)
    if weights > usable:
        raise DoesNotFitError(
            f"{model.name} does not fit: weights {weights / 1e9:.1f} GB per GPU > usable memory "
            f"{usable / 1e9:.1f} GB ({hardware.name}, {hardware.memory_gib:g} GiB x "
            f"gpu_memory_utilization {gpu_memory_utilization:g}) at tensor_parallel={tp}"
            f"{f', pipeline_parallel={pp}' if pp > 1 else ''}; "
            "use more GPUs, a larger GPU or lower-precision weights",
            source=source,
            field="model",
        )
    free = usable - weights - acts - RUNTIME_RESERVE_BYTES
    if num_blocks is None:
        num_blocks = int(max(free, 0.0) // (per_token * block_size))
        if num_blocks == 0:
            raise DoesNotFitError(
                f"{model.name} leaves no room for a KV cache on {hardware.name} at "
                f"tensor_parallel={tp}: weights {weights / 1e9:.1f} GB + activations "
                f"{acts / 1e9:.1f} GB + runtime {RUNTIME_RESERVE_BYTES / 1e9:.1f} GB > usable "
                f"memory {usable / 1e9:.1f} GB; use more GPUs or lower max_num_batched_tokens",
                source=source,
                field="model",
            )
    return KVBudget(
        memory=memory,
        usable=usable,
        weights=weights,
        activations=acts,
        runtime=RUNTIME_RESERVE_BYTES,
        kv_bytes_per_token=per_token,
        block_size=block_size,
        num_blocks=num_blocks,
    )


def prompt_block_keys(
    prefix_hashes: Sequence[int] | None, hash_block_tokens: int, prompt_tokens: int, block_size: int
) -> list[Hashable]:
    """Prefix-cache keys of a prompt's full KV blocks.

    ``prefix_hashes[j]`` names the prompt's content up to the end of its j-th hash block of
    ``hash_block_tokens`` tokens (equal ids mean an equal prefix). A KV block is identified by
    the id of the hash block holding its last token and its offset inside that hash block,
    which works for any block size. Tokens beyond the hashed part get no key.
    """
    if not prefix_hashes or hash_block_tokens <= 0:
        return []
    keys: list[Hashable] = []
    for i in range(prompt_tokens // block_size):
        last = (i + 1) * block_size - 1
        j = last // hash_block_tokens
        if j >= len(prefix_hashes):
            break
        keys.append((prefix_hashes[j], (last % hash_block_tokens) // block_size))
    return keys


def blocks_for(tokens: int, block_size: int) -> int:
    """Blocks that hold ``tokens`` tokens."""
    return -(-tokens // block_size)


class BlockPool:
    """Counts of a paged KV cache's blocks, with an optional prefix cache.

    ``used`` counts blocks referenced by at least one request. With prefix caching, full
    prompt blocks are also registered under a content key; when no request references them
    any more they stay cached (``evictable``, least recently used first) until an allocation
    needs the room. Evictable blocks count as free capacity.

    ``watermark`` blocks are kept free when admitting new requests, as vLLM does, so that
    running requests can still grow without an immediate preemption.
    """

    __slots__ = (
        "evictable",
        "hit_tokens",
        "query_tokens",
        "refs",
        "total",
        "used",
        "watermark",
    )

    def __init__(self, total: int, watermark: float = 0.01) -> None:
        self.total = total
        self.used = 0
        self.watermark = int(total * watermark)
        self.refs: dict[Hashable, int] = {}  # cached key -> requests referencing it
        self.evictable: OrderedDict[Hashable, None] = OrderedDict()
        self.hit_tokens = 0
        self.query_tokens = 0

    @property
    def free(self) -> int:
        """Blocks an allocation can get (free or evictable)."""
        return self.total - self.used

    def can_admit(self, blocks: int) -> bool:
        return self.total - self.used - blocks >= self.watermark

    def allocate(self, blocks: int) -> None:
        self.used += blocks
        room = self.total - self.used
        if room < len(self.evictable):
            if room < 0:
                raise RuntimeError(f"KV cache over-allocated: {self.used} of {self.total} blocks")
            for _ in range(len(self.evictable) - room):
                key, _ = self.evictable.popitem(last=False)
                del self.refs[key]

    def release(self, blocks: int) -> None:
        self.used -= blocks
        if self.used < 0:
            raise RuntimeError(f"KV cache released more than allocated: {self.used} blocks")

    # --- prefix cache ----------------------------------------------------------------------

    def match(self, keys: Sequence[Hashable]) -> int:
        """How many leading keys are cached."""
        n = 0
        refs = self.refs
        for key in keys:
            if key not in refs:
                break
            n += 1
        return n

    def revived(self, keys: Sequence[Hashable]) -> int:
        """How many of these cached keys no request references now (taking them uses room)."""
        return sum(1 for k in keys if self.refs[k] == 0)

    def acquire(self, keys: Sequence[Hashable]) -> None:
        """Reference cached blocks (a prefix-cache hit)."""
        for key in keys:
            if self.refs[key] == 0:
                del self.evictable[key]
                self.used += 1
            self.refs[key] += 1

    def register(self, key: Hashable) -> bool:
        """Make a block the requester already holds findable by ``key``; False if taken."""
        if key in self.refs:
            return False
        self.refs[key] = 1
        return True

    def release_keys(self, keys: Sequence[Hashable]) -> None:
        """Drop one reference from each cached block; unreferenced ones become evictable."""
        for key in keys:
            left = self.refs[key] - 1
            if left < 0:
                raise RuntimeError(f"prefix-cache block {key!r} released more than referenced")
            self.refs[key] = left
            if left == 0:
                self.evictable[key] = None
                self.used -= 1

    @property
    def hit_rate(self) -> float:
        return self.hit_tokens / self.query_tokens if self.query_tokens else 0.0


class HostTier:
    """A host-memory (CPU) tier of the prefix cache: an LRU of block keys, at most
    ``capacity`` blocks (vLLM's OffloadingConnector with ``--kv-offloading-size``).

    Every full prompt block a request computes is stored here (``store``), and blocks loaded
    back to the GPU are refreshed (``touch``); the least recently stored or loaded block is
    dropped when the tier is full. Blocks served from the GPU cache are not refreshed here.
    The tier holds copies, so it takes nothing from the GPU pool.
    """

    __slots__ = ("capacity", "hit_tokens", "keys")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.keys: OrderedDict[Hashable, None] = OrderedDict()
        self.hit_tokens = 0  # prompt tokens loaded from this tier instead of recomputed

    def __len__(self) -> int:
        return len(self.keys)

    def match(self, keys: Sequence[Hashable]) -> int:
        """How many leading keys this tier holds."""
        n = 0
        held = self.keys
        for key in keys:
            if key not in held:
                break
            n += 1
        return n

    def touch(self, keys: Sequence[Hashable]) -> None:
        """Store (or refresh) blocks as the most recently used, evicting the least."""
        held = self.keys
        for key in keys:
            if key in held:
                held.move_to_end(key)
            else:
                held[key] = None
        while len(held) > self.capacity:
            held.popitem(last=False)
