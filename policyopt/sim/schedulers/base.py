"""What every batching scheduler shares: the queues it reads, the plan it returns, and the
two ways of filling a token budget (decode tokens, prefill tokens).

A scheduler forms the next batch of one engine from a read-only view of the engine's queues
(:class:`Queues`), the order in which classes fill the budget (a network policy's order; one
class on a single engine), the token budget, the request slots (``max_seqs``) and an optional
decode cap. It returns a :class:`BatchPlan`; the simulator applies it to its own storage.
Both simulators call the same scheduler object, so a rule is written once.

Rules every scheduler keeps (``docs/schedulers.md``): prompts are prefilled first-come
first-served within a class and never skipped (a whole prompt that does not fit stops the
prefill of every class); a decoding request gets at most one decode token per batch, oldest
first within a class; a prefill chunk and a decode token each take one request slot. A
scheduler's batch depends only on what :class:`Queues` shows and on its arguments (not on the
clock): the single-engine driver relies on it to advance runs of identical decode-only batches
in one step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from policyopt.model.scheduler import SchedulerSpec


class Queues(Protocol):
    """What a scheduler may read of an engine: per class ``k``, its decoding requests and the
    prompts waiting for prefill."""

    def decoding(self, k: int) -> int:
        """Requests of class ``k`` in their decode phase (each may take one decode token)."""
        ...

    def waiting(self, k: int) -> int:
        """Prompts of class ``k`` waiting for (the rest of) their prefill."""
        ...

    def prompts(self, k: int) -> tuple[Iterable[int], int]:
        """``(prefill tokens of each waiting prompt of class k, oldest first; tokens of the
        oldest one already prefilled)``."""
        ...


@dataclass(slots=True)
class BatchPlan:
    """The next batch: ``decode`` lists ``(class, requests served)``, the oldest requests of
    each class, one decode token each; ``prefill`` lists ``(class, whole, chunk)``: the
    ``whole`` oldest prompts of the class finish their prefill, then ``chunk`` more tokens go
    to the next prompt (0: none). ``x`` prefill tokens and ``m`` decode tokens in all;
    ``budget`` the engine's token budget (tokens per batch)."""

    decode: list[tuple[int, int]]
    prefill: list[tuple[int, int, int]]
    x: int
    m: int
    budget: int = 0

    @property
    def tokens(self) -> int:
        """Tokens in the batch."""
        return self.x + self.m


def fill_decode(
    queues: Queues, order: Sequence[int], budget: int, slots: int, plan: BatchPlan
) -> int:
    """One decode token to each decoding request, classes in ``order`` (oldest first within
    a class), while tokens (``budget``) and request slots last; requests already served by
    ``plan`` are not served twice. Adds to ``plan``; returns the tokens taken."""
    if budget <= 0 or slots <= 0:
        return 0
    dec = plan.decode
    if not dec and len(order) == 1:  # one class, first pass (a single engine): no loop
        k = order[0]
        nk = queues.decoding(k)
        if not nk:
            return 0
        mk = nk if nk <= budget and nk <= slots else min(nk, budget, slots)
        dec.append((k, mk))
        plan.m += mk
        return mk
    taken = 0
    for k in order:
        if budget <= 0 or slots <= 0:
            break
        nk = queues.decoding(k)
        if not nk:
            continue
        pos = -1
        served = 0
        if dec:  # a second pass tops up the classes served by the first
            for i, (c, t) in enumerate(dec):
                if c == k:
                    pos, served = i, t
                    break
            nk -= served
            if nk <= 0:
                continue
        mk = nk if nk <= budget and nk <= slots else min(nk, budget, slots)
        if pos < 0:
            dec.append((k, mk))
        else:
            dec[pos] = (k, served + mk)
        taken += mk
        budget -= mk
        slots -= mk
    plan.m += taken
    return taken


def fill_prefill(
    queues: Queues,
    order: Sequence[int],
    budget: int,
    slots: int,
    chunked: bool,
    plan: BatchPlan,
) -> tuple[int, int]:
    """Prefill tokens, classes in ``order``, first-come first-served within a class: whole
    prompts while they fit, then (``chunked``) a chunk of the next one; a whole prompt that
    does not fit stops all prefill (no skipping ahead). A prefill longer than the engine's
    whole token budget (``plan.budget``: a preempted request recomputing its prompt and
    decoded tokens, with a limited KV cache) is chunked even when ``chunked`` is false, or it
    could never run. Each prompt served takes a request slot. Adds to ``plan``; returns the
    ``(budget, slots)`` left."""
    x = 0
    for k in order:
        if budget <= 0 or slots <= 0:
            break
        lengths, done = queues.prompts(k)
        whole = chunk = 0
        stop = False
        for p in lengths:
            rem = p - done
            if rem <= budget:
                done = 0
                whole += 1
                budget -= rem
                x += rem
                slots -= 1
                if budget <= 0 or slots <= 0:
                    break
            else:
                if chunked or rem > plan.budget:
                    chunk = budget
                    x += budget
                    budget = 0
                    slots -= 1
                else:
                    stop = True
                break
        if whole or chunk:
            plan.prefill.append((k, whole, chunk))
        if stop:
            break
    if x:
        plan.x += x
    return budget, slots


class Scheduler:
    """Base class of the batching schedulers: ``form`` returns the next :class:`BatchPlan`.

    ``spec`` holds the user's options; ``chunked`` whether a prompt may be split across
    batches. ``splits_budget``: the scheduler honours ``decode_cap`` (a budget split between
    decode and prefill tokens; see :meth:`form`).
    """

    splits_budget: ClassVar[bool] = False

    def __init__(self, spec: SchedulerSpec) -> None:
        self.spec = spec
        self.chunked = spec.chunks

    def form(
        self,
        queues: Queues,
        order: Sequence[int],
        budget: int,
        slots: int,
        decode_cap: int | None = None,
    ) -> BatchPlan:
        """The next batch of at most ``budget`` tokens and ``slots`` requests, classes in
        ``order``: the scheduler's :meth:`fill`, or, with a ``decode_cap`` (tokens) at a
        scheduler that ``splits_budget``, decode tokens first up to the cap, then prefill,
        then decode tokens in what prefill left."""
        plan = BatchPlan([], [], 0, 0, budget)
        if decode_cap is None or not self.splits_budget:
            self.fill(queues, order, budget, slots, plan)
            return plan
        m = fill_decode(queues, order, min(budget, decode_cap), slots, plan)
        budget, slots = fill_prefill(queues, order, budget - m, slots - m, self.chunked, plan)
        fill_decode(queues, order, max(budget, 0), slots, plan)
        return plan

    def fill(self, q: Queues, order: Sequence[int], b: int, k: int, plan: BatchPlan) -> None:
        """The scheduler's rule: add to the empty ``plan`` the batch of at most ``b`` tokens
        and ``k`` requests it forms from ``q``, classes in ``order``."""
        raise NotImplementedError
