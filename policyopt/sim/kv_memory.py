"""A limited KV cache at one engine: its blocks, who holds them, and the engine's rules for
admitting prompts and choosing whom to preempt (``docs/schedulers.md``, memory).

The simulator owns the queues; this module owns the blocks. A request (the simulator's job)
carries ``held`` (KV tokens it holds: computed prompt tokens plus decoded tokens), ``blocks``
(blocks allocated to it; 0: not resident) and ``pre_left`` (prefill tokens it still needs).
The rules, in the order the engine applies them before each batch:

1. **Swap in** (``preemption: swap``): swapped-out requests come back in the order they left,
   while the blocks of their KV and of one token more fit beside the watermark.
2. **Room to grow**: every decoder the batch may serve (the oldest ``min(b, max_seqs)`` of
   each class) whose blocks are full needs one more block. While the free blocks fall short,
   the most recently admitted resident request is preempted (vLLM's rule): its blocks are
   freed and it recomputes (back to the head of its class's queue with its prompt and decoded
   tokens to prefill again) or is swapped out.
3. **Admission**: the cache's admission rule (``kv_cache.admission``;
   :mod:`policyopt.sim.admission`) shows the scheduler the prompts that may take blocks,
   given the free blocks left after step 2 (the default, ``fcfs``: oldest first within a
   class while each whole prompt and one token more fit beside the watermark, no skipping
   ahead). The scheduler then forms the batch from what it is shown, so it never exceeds
   the cache.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol

from policyopt.model.kv_cache import KVCacheSpec


class Resident(Protocol):
    """What the memory reads and writes of a request."""

    held: int
    blocks: int
    pre_left: int
    preempted: int


class KVMemory:
    """The KV cache of one engine: ``total`` blocks of ``block`` tokens, ``free`` of them free.

    ``resident`` holds the requests with blocks, oldest admission first; ``swapped`` the
    requests swapped out to host memory, oldest first. Counters: ``preemptions``,
    ``recomputed_tokens`` (KV tokens dropped to be prefilled again), ``swapped_tokens`` (KV
    tokens moved out or in), ``used_max`` (the most blocks ever allocated at once).
    """

    __slots__ = (
        "block",
        "free",
        "preemptions",
        "recompute",
        "recomputed_tokens",
        "resident",
        "swap_s",
        "swapped",
        "swapped_tokens",
        "total",
        "used_max",
        "watermark",
    )

    def __init__(self, spec: KVCacheSpec) -> None:
        self.block = spec.block_size
        self.total = spec.blocks
        self.free = spec.blocks
        self.watermark = spec.watermark_blocks
        self.recompute = spec.preemption == "recompute"
        self.swap_s = spec.swap_s_per_token
        self.resident: dict[Any, None] = {}
        self.swapped: deque[Any] = deque()
        self.preemptions = 0
        self.recomputed_tokens = 0
        self.swapped_tokens = 0
        self.used_max = 0

    def counts(self) -> tuple[int, int, int]:
        """``(preemptions, recomputed tokens, swapped tokens)`` so far."""
        return self.preemptions, self.recomputed_tokens, self.swapped_tokens

    @property
    def used_tokens(self) -> int:
        """Tokens of cache allocated (whole blocks)."""
        return (self.total - self.free) * self.block

    def blocks_for(self, tokens: int) -> int:
        """Blocks that hold ``tokens`` tokens."""
        return -(-tokens // self.block)

    # ------------------------------------------------------------------ rule 2
    def growth_need(self, windows: Iterable[Iterable[Resident]]) -> int:
        """Blocks the decoders in ``windows`` (those a batch may serve) need for one more
        token each: one for each whose blocks are full."""
        block = self.block
        return sum(1 for w in windows for job in w if job.held >= job.blocks * block)

    def youngest(self) -> Resident:
        """The most recently admitted resident request (the next to preempt)."""
        return next(reversed(self.resident))

    def full(self, job: Resident) -> bool:
        """Whether ``job``'s blocks are full (its next decode token needs a new block)."""
        return job.held >= job.blocks * self.block

    # ------------------------------------------------------------------ blocks
    def admit(self, job: Resident) -> None:
        """``job`` starts its prefill: blocks for all its prefill tokens."""
        need = self.blocks_for(job.pre_left)
        job.blocks = need
        self.free -= need
        self.resident[job] = None
        used = self.total - self.free
        if used > self.used_max:
            self.used_max = used

    def grow(self, job: Resident) -> None:
        """``job`` gets one decode token (a new block if its blocks are full)."""
        job.held += 1
        if job.held > job.blocks * self.block:
            job.blocks += 1
            self.free -= 1
            used = self.total - self.free
            if used > self.used_max:
                self.used_max = used

    def release(self, job: Resident) -> None:
        """``job`` leaves the cache (finished, preempted or swapped out)."""
        self.free += job.blocks
        job.blocks = 0
        del self.resident[job]

    def swap_in(self, job: Resident) -> None:
        """``job`` comes back from host memory: blocks for the KV it holds."""
        need = self.blocks_for(job.held)
        job.blocks = need
        self.free -= need
        self.resident[job] = None
        self.swapped_tokens += job.held
        used = self.total - self.free
        if used > self.used_max:
            self.used_max = used

    def can_swap_in(self, job: Resident) -> bool:
        """Whether ``job``'s KV fits beside the watermark."""
        return self.blocks_for(job.held) <= self.free - self.watermark
