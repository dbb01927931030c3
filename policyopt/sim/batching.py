"""What both simulators record about batches, and the work-conservation check.

A batch is formed by a scheduler (:mod:`policyopt.sim.schedulers`); this module says, once
for every simulator, whether the batch was the largest one the engine could have formed
(:func:`not_work_conserving`), and holds the records and counters a run keeps of its batches.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from policyopt.model.batch_time import AffineBatchTime
from policyopt.model.engine import EngineSpec


@dataclass
class BatchRecord:
    """One batch: when it ran (s), and which request got which tokens.

    ``prefill`` lists ``(request, tokens)`` chunks in order; ``decode`` lists the requests
    that got one decode token each.
    """

    start: float
    end: float
    prefill: list[tuple[int, int]]
    decode: list[int]

    @property
    def tokens(self) -> int:
        return sum(c for _, c in self.prefill) + len(self.decode)


@dataclass
class Counters:
    """Batch-level counts over a run: batches, tokens, full batches, batches that were not
    work-conserving, batches outside the batch-time profile, busy seconds, the KV-token
    seconds (the time integral of the KV tokens held) and, with a limited KV cache, the
    allocated-token seconds (the time integral of the cache's allocated blocks, in tokens)."""

    batches: int = 0
    tokens: int = 0
    full: int = 0
    not_work_conserving: int = 0
    out_of_range: int = 0
    busy_time: float = 0.0
    kv_area: float = 0.0
    mem_area: float = 0.0

    def copy(self) -> Counters:
        return Counters(**self.__dict__)

    def minus(self, other: Counters) -> Counters:
        return Counters(**{k: v - getattr(other, k) for k, v in self.__dict__.items()})


def largest_batch(
    budget: int, slots: int, decoding: int, waiting: int, remaining: Iterable[int]
) -> int:
    """The most tokens any scheduler could put in a batch now: ``decoding`` requests offer
    one decode token each, the ``waiting`` prompts their ``remaining`` prefill tokens (a
    prompt may be chunked); at most ``budget`` tokens and ``slots`` requests (a prompt or a
    decoder takes one slot). Prompts first, longest first: each offers at least one token."""
    if waiting >= slots:
        return min(budget, sum(heapq.nlargest(slots, remaining)))
    return min(budget, sum(remaining) + min(decoding, slots - waiting))


def not_work_conserving(
    n: int,
    available: int,
    budget: int,
    slots: int,
    decoding: int,
    waiting: int,
    remaining: Callable[[], Iterable[int]],
) -> bool:
    """Whether a batch of ``n`` tokens left budget unused that the engine's work could fill.

    ``available``: tokens of work the engine could serve now (one per decoding request plus
    every waiting prefill token); ``budget`` tokens and ``slots`` requests per batch;
    ``decoding`` requests decoding and ``waiting`` prompts waiting, whose remaining prefill
    tokens ``remaining()`` gives (they sum to ``available - decoding``; called only when the
    prompts outnumber the request slots). A batch is work conserving when it is full, takes
    all the work, or is as large as the largest batch the slots allow (:func:`largest_batch`,
    the reference this function is tested against; here the prompts are scanned only until a
    larger batch is seen).
    """
    if n >= budget or n >= available:
        return False
    if slots >= decoding + waiting:
        return True
    if waiting < slots:  # every prompt gets a slot: all the prefill work, then decodes
        return n < available - decoding + min(decoding, slots - waiting)
    # the slots go to prompts: is the sum of the `slots` longest above n? They hold at least
    # their share of the prefill work; else scan the prompts, keeping the longest `slots`
    # seen in a min-heap, and stop as soon as it is.
    if (available - decoding) * slots > n * waiting:
        return True
    it = iter(remaining())
    top: list[int] = []
    total = 0
    for p in it:
        top.append(p)
        total += p
        if total > n:
            return True
        if len(top) == slots:
            break
    heapq.heapify(top)
    for p in it:
        if p > top[0]:
            total += p - heapq.heapreplace(top, p)
            if total > n:
                return True
    return False


def batch_time_table(engine: EngineSpec) -> list[float] | None:
    """Batch times in seconds by token count, ``[0, t(1), ..., t(budget)]``, for a batch-time
    model that depends on the token count alone; ``None`` for the affine model, whose time
    also depends on the prefill/decode mix and the KV tokens read."""
    bt = engine.batch_time
    if isinstance(bt, AffineBatchTime):
        return None
    return [0.0, *bt.seconds_for_tokens(np.arange(1, engine.token_budget + 1)).tolist()]
