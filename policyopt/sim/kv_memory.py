"""A limited KV cache at one engine: its blocks, who holds them, and the engine's rules for
admitting prompts and choosing whom to preempt (``docs/schedulers.md``, memory).

The simulator owns the queues; this module owns the blocks. A request (the simulator's job)
carries ``held`` (KV tokens it holds: computed prompt tokens plus decoded tokens), ``blocks``
(blocks allocated to it; 0: not resident) and ``pre_left`` (prefill tokens it still needs).
A decoder's ``held`` and ``blocks`` are kept by its decode queue (:class:`MemDecodeQueue`,
without a step per token) and written back when it leaves or when asked. The rules, in the
order the engine applies them before each batch:

1. **Room to grow**: every decoder the batch may serve (the oldest ``min(b, max_seqs)`` of
   each class) whose blocks are full needs one more block. While the free blocks fall short,
   the most recently admitted resident request is preempted (vLLM's rule): its blocks are
   freed and it recomputes (back to the head of its class's queue with its prompt and decoded
   tokens to prefill again) or is swapped out.
2. **Swap in** (``preemption: swap``, when step 1 preempted nobody): swapped-out requests
   come back in the order they left, while the blocks of their KV and of one token more fit
   beside the growth of step 1 and the watermark.
3. **Admission**: the cache's admission rule (``kv_cache.admission``;
   :mod:`policyopt.sim.admission`) shows the scheduler the prompts that may take blocks,
   given the free blocks left after steps 1 and 2 (the default, ``fcfs``: oldest first
   within a class while each whole prompt and one token more fit beside the watermark, no
   skipping ahead; none while a request is swapped out). The scheduler then forms the batch
   from what it is shown, so it never exceeds the cache.

A rule may also hold decoders back (``AdmissionRule.pauses``; ``nested-wait`` does): before
step 1 it names decoders to keep out of the batches from now on, which leave their decode
queue but stay resident (:attr:`KVMemory.paused`: their blocks kept, no growth, no decode
token); before step 3 it names paused decoders to put back, while the blocks their next
token needs fit beside the growth of steps 1 and 2. A resumed decoder joins the back of its
class's decode queue and keeps its place in the preemption order (its admission), so the
youngest resident may sit anywhere in its queue; a paused request may be preempted in step 1
like any resident. If nothing would run (no decoder in a queue, no prompt shown) while
decoders are paused, the rule resumes some whatever its conditions (else every paused decoder
resumes) and steps 1 to 3 run again, so a rule that holds decoders back never stalls the
engine. Paused decoders are not work the batch could serve: the work-conservation check
leaves them out.
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Any, Protocol

from policyopt.model.kv_cache import KVCacheSpec
from policyopt.sim.decode_queue import DecodeQueue


class Resident(Protocol):
    """What the memory reads and writes of a request."""

    held: int
    blocks: int
    pre_left: int
    preempted: int


class KVMemory:
    """The KV cache of one engine: ``total`` blocks of ``block`` tokens, ``free`` of them free.

    ``resident`` holds the requests with blocks, oldest admission first; ``swapped`` the
    requests swapped out to host memory, oldest first; ``paused`` the resident decoders the
    admission rule keeps out of the batches (in no decode queue). Counters: ``preemptions``,
    ``recomputed_tokens`` (KV tokens dropped to be prefilled again), ``swapped_tokens`` (KV
    tokens moved out or in), ``used_max`` (the most blocks ever allocated at once).
    """

    __slots__ = (
        "block",
        "free",
        "paused",
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
        self.paused: dict[Any, None] = {}  # decoders a rule holds back: resident, not queued
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

    def allocate(self, blocks: int) -> None:
        """Decoders grew into ``blocks`` new blocks."""
        if blocks:
            self.free -= blocks
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

    def fits_back(self, job: Resident, reserve: int) -> bool:
        """Whether swapped-out ``job``'s KV and one token more fit beside ``reserve`` blocks
        (the decoders' growth) and the watermark."""
        return self.blocks_for(job.held + 1) <= self.free - reserve - self.watermark


class MemDecodeQueue(DecodeQueue):
    """A :class:`~policyopt.sim.decode_queue.DecodeQueue` at an engine with a limited cache:
    it also knows, without a step per decode token, how many of its decoders need a new block
    in the next batch and how many blocks a batch makes them take.

    A decoder holds ``held = prompt + dec_tokens - remaining`` KV tokens in
    ``ceil(held / block)`` blocks, and needs a new block for its next token when ``held`` is a
    multiple of ``block`` (its blocks are *full*). A window job's *phase* is ``(held - G) mod
    block``: a batch that serves it adds one to both, so its phase stays, and a batch that
    passes over it (serving a prefix of the window) lowers it by one. ``counts[r]`` holds the
    window jobs of phase ``r``; the full ones are those of phase ``-G mod block``. A batch that
    serves the whole window (the usual case) therefore costs O(1) here; one that serves a
    prefix walks the window. ``fresh`` holds the window jobs without their first token yet.
    ``held`` and ``blocks`` of the decoders are written back when asked (:meth:`materialize`)
    and whenever a job leaves (finished, preempted).
    """

    __slots__ = ("block", "counts", "fresh")

    def __init__(self, cap: int, block: int) -> None:
        super().__init__(cap)
        self.block = block
        self.counts = [0] * block
        self.fresh: list[Any] = []

    def clear(self) -> None:
        """Empty the queue (:meth:`DecodeQueue.clear`), its phase counts too."""
        super().clear()
        self.counts = [0] * self.block
        self.fresh = []

    def _enter(self, job: Any, held: int) -> None:
        """``job`` enters the window holding ``held`` tokens."""
        phase = (held - self.G) % self.block
        job.phase = phase
        self.counts[phase] += 1
        if not job.first:
            self.fresh.append(job)

    def add(self, job: Any, tokens: int) -> None:
        """``job`` (its ``held`` set) starts decoding ``tokens`` tokens."""
        into = len(self.alive) < self.cap
        super().add(job, tokens)
        if into:
            self._enter(job, job.held)

    def need(self) -> int:
        """Window decoders whose blocks are full: each needs a block to be served next."""
        return self.counts[-self.G % self.block]

    def grow(self, m: int) -> tuple[int, list[Any]]:
        """Before :meth:`serve` of ``m``: the blocks the ``m`` oldest take for their token, and
        those of them that get their first token (now marked)."""
        alive, counts, block = self.alive, self.counts, self.block
        full = -self.G % block
        if m >= len(alive):  # the whole window: no phase changes
            new = counts[full]
            started = self.fresh
            self.fresh = []
        else:
            new = 0
            started = []
            it = iter(alive)
            for job in islice(it, m):
                if job.phase == full:
                    new += 1
                if not job.first:
                    started.append(job)
            for job in it:  # passed over: the same tokens, one batch later
                phase = job.phase
                counts[phase] -= 1
                phase = block - 1 if phase == 0 else phase - 1
                job.phase = phase
                counts[phase] += 1
            if started:
                self.fresh = [job for job in self.fresh if job not in started]
        for job in started:
            job.first = True
        return new, started

    def serve(self, m: int) -> list[Any]:
        """:meth:`DecodeQueue.serve`, keeping the phases: finished jobs leave the counts (their
        ``held`` and ``blocks`` written back), jobs entering the window join them."""
        waiting = len(self.outside)
        done = super().serve(m)
        if done:
            counts, block = self.counts, self.block
            for job in done:
                counts[job.phase] -= 1
                held = job.prompt + job.dec_tokens
                job.held = held
                job.blocks = -(-held // block)
            moved = waiting - len(self.outside)
            if moved:
                for job in list(islice(reversed(self.alive), moved))[::-1]:
                    self._enter(job, job.prompt + job.dec_tokens - self.remaining(job))
        return done

    def pop_last(self) -> tuple[Any, int, bool]:
        """:meth:`DecodeQueue.pop_last`, with the job's ``held`` and ``blocks`` written back."""
        job, left, in_window = super().pop_last()
        self._leave(job, left, in_window)
        return job, left, in_window

    def _leave(self, job: Any, left: int, in_window: bool) -> None:
        """``job`` left the queue with ``left`` decode tokens: its ``held`` and ``blocks``
        written back, and out of the window's phase counts if it was in the window."""
        held = job.prompt + job.dec_tokens - left
        job.held = held
        job.blocks = -(-held // self.block)
        if in_window:
            self.counts[job.phase] -= 1
            if not job.first:
                self.fresh.remove(job)

    def remove(self, job: Any) -> tuple[int, bool]:
        """:meth:`DecodeQueue.remove`, keeping the phases, with the job's ``held`` and
        ``blocks`` written back."""
        waiting = len(self.outside)
        left, in_window = super().remove(job)
        self._leave(job, left, in_window)
        if in_window and len(self.outside) < waiting:  # the oldest outside entered the window
            other = next(reversed(self.alive))
            self._enter(other, other.prompt + other.dec_tokens - self.remaining(other))
        return left, in_window

    def materialize(self) -> None:
        """Write ``held`` and ``blocks`` back into every decoder (for rules and checks that
        read them)."""
        block = self.block
        for job in self.alive:
            held = job.prompt + job.dec_tokens - self.remaining(job)
            job.held = held
            job.blocks = -(-held // block)
        for job, left in self.outside:
            held = job.prompt + job.dec_tokens - left
            job.held = held
            job.blocks = -(-held // block)
