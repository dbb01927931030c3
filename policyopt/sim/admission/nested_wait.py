"""``nested-wait``: Nested WAIT, WAIT for output lengths not known in advance (Ao, Luo,
Simchi-Levi, Wang, "Optimizing LLM Inference: Fluid-Guided Online Scheduling with Memory
Constraints", arXiv 2504.11320).

**The paper's rule.** Decoding is cut into ``m`` segments at output lengths
``l'_1 < ... < l'_m``: segment ``k`` holds the decode stages ``l'_{k-1} + 1 .. l'_k``
(``l'_0 = 0``). Every prompt enters segment 1; a prompt still running when it has decoded
``l'_{k-1}`` tokens has revealed that it is longer, and waits at that boundary (keeping its KV
cache) to enter segment ``k``. A segment takes part in a batch only once ``n_k`` prompts wait
at its entry; it then advances ``n_k`` of them together, so a stage of segment ``k`` never
holds more than ``n_k`` prompts, and the batch runs segments ``1 .. k`` for the largest ``k``
whose every entry queue meets its threshold (segment 1's decodes pause while fewer than
``n_1`` new prompts wait). The thresholds satisfy two drift conditions: ``Delta T(n) < n_1 /
lambda`` (an iteration admits more than arrive during it; ``lambda`` the total arrival rate)
and ``n_{k+1} / n_k > p_k``, ``p_k`` the probability that a prompt entering segment ``k`` also
reaches its end ``l'_k`` still running (each boundary's queue drains faster than it fills).
The memory then stays within the fluid requirement ``M^pi`` plus a safety buffer of
``(l + l'_{k-1}) theta_k^-1 ln(m zeta B / delta)`` tokens per boundary, for the random
excursions of the boundary queues above their thresholds with probability ``1 - delta``.

**How it maps onto this engine.**

* *Segments.* ``segments: [l'_1, ..., l'_m]`` (tokens, ascending, the last at least the longest
  output). Default: WAIT's default types (the buckets of ``output_lengths`` if bucketed,
  else the quartiles of the engine's output lengths). The rule reads no predicted length:
  whether a request is still running at a boundary is what the engine sees.
* *Entering segment 1 (admission).* Once ``n_1`` prompts without blocks wait (classes in the
  policy's order, oldest first by arrival), the oldest ``n_1`` are shown together if the
  blocks of each whole prompt and one token more fit beside the decode growth and the
  watermark, the shown prompts hold less than the token budget and they fit the request
  slots; otherwise none (one group per batch, as WAIT). Nothing is admitted while a request
  is swapped out, nor while a group at a boundary lacks room for its next tokens (the
  requests in progress go first). The cache holding no request at all is the exception
  below (*No stall*). A preempted request (recompute) waits again as a new prompt, then
  continues in its segment from where it was (a request that comes back to decoding exactly
  at a boundary, recomputed or swapped in, waits there at once).
* *Boundaries (the engine's hold-back hook).* A request that has decoded ``l'_{k-1}`` tokens
  (``k >= 2``) and has not finished is paused before its next batch: it leaves its decode
  queue and keeps its blocks (``KVMemory.paused``). Once ``n_k`` requests are paused at that
  boundary, the ``n_k`` that reached it first resume together, if the blocks their next token
  needs fit beside the decode growth (one group per boundary per batch; a group short of
  room waits, and admission stops). A resumed request joins the back of its class's decode
  queue and keeps its place in the preemption order (its admission). Each
  boundary is tracked with a heap of the batch count at which each decoder can reach it at
  the earliest, corrected when it comes due, so a batch costs O(log n) per decoder due.
* *What runs.* The engine's scheduler serves every decoder that is not paused in every batch
  (the budget and ``max_seqs`` permitting), as with WAIT: segments do not pause while a
  later segment's threshold is unmet, and segment 1 decodes while fewer than ``n_1`` prompts
  wait. The per-stage bound ``n_k`` holds either way while each group is prefilled in one
  batch and every decoder is served each batch (groups entering in different batches stay
  in different stages); a group split over two batches by the budget, decoders passed over
  for lack of budget or slots, and preempted requests may share a stage with another group.
* *No stall.* The paper may hold a request until its threshold is met, however long that
  takes. Here, when nothing else would run (no decoder in a queue, no prompt shown), the
  engine's guard (for any rule that holds decoders back) has the rule resume, at every
  boundary, the ``n_k`` requests that reached it first, or all of them if fewer wait (room or
  not: the engine preempts if their growth does not fit); and when the cache holds no request
  at all, the waiting prompts are admitted even if fewer than ``n_1`` wait (as many of the
  oldest ``n_1`` as fit the empty cache and the slots). A stage still never holds more than
  ``n_k``. So when arrivals stop, every request finishes; while they go on, a request paused
  at a boundary that few requests reach waits until ``n_k`` have reached it or the engine
  runs dry.
* *Thresholds* (``thresholds: [n_1, ..., n_m]`` to set them). Derived from the fluid model
  of this engine's workload: segment ``k`` is entered at ``lambda_k = lambda P(O > l'_{k-1})``
  (``O`` the output length, the classes mixed by their arrival rates from the network's
  traffic equations), by requests of mean prompt ``l_k``; a member is at stage ``s`` of it
  with probability ``S_k(s) = P(O >= s | O > l'_{k-1})``, and ``p_k = P(O > l'_k | O >
  l'_{k-1})``. For ``c >= 0`` let ``n_1 = max(1, ceil(c lambda))`` and
  ``n_{k+1} = floor(p_k n_k) + 1`` (the smallest with ``n_{k+1} > p_k n_k``); ``c`` is the
  smallest with ``Delta T(n) < n_1 / lambda``, where ``Delta T(n)`` is the engine's own batch
  time of one iteration's work (``n_1`` prompts of ``l_1`` tokens and ``n_k sum_s S_k(s)``
  decode tokens of each segment, reading ``n_k sum_s S_k(s) (l_k + s - 1)`` tokens of
  context, split into as few batches as the token budget and ``max_seqs`` allow), found as
  WAIT's are. Memory: ``M^pi = n_1 b(l_1) + sum_k n_k sum_s S_k(s) b(l_k + s)`` blocks
  (``b(t)`` the blocks of ``t`` tokens), plus, of the safety buffer, the deterministic part:
  ``n_k - 1`` requests paused at the entry of each segment ``k >= 2``, holding
  ``b(l_k + l'_{k-1})`` blocks each (a boundary queue just below its threshold). If that
  exceeds the cache less its watermark, ``c`` is the largest for which it fits (the engine
  then cannot keep up). The logarithmic part ``theta_k^-1 ln(m zeta B / delta)`` is **not**
  applied: it needs a horizon ``B`` (batches) and a failure probability ``delta`` that the
  engine's spec does not give; an excursion beyond the cache preempts, as without the rule.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np

from policyopt.model.admission import NestedWaitAdmission
from policyopt.sim.admission.base import AdmissionContext, AdmissionRule
from policyopt.sim.admission.wait import (
    default_types,
    engine_limits,
    iteration_seconds,
    output_pmf,
    threshold_search,
)
from policyopt.sim.kv_memory import KVMemory


@dataclass(frozen=True)
class SegmentStats:
    """One segment at an engine: ``rate`` (requests/s entering it), mean ``prompt`` (tokens)
    of those requests, its decode stages ``start + 1 .. end`` (tokens decoded), ``survival``:
    the probability that a request entering it reaches each stage, and ``onward``: that it is
    still running at the segment's end (``p_k``)."""

    rate: float
    prompt: float
    start: int
    end: int
    survival: tuple[float, ...]
    onward: float

    @property
    def decode(self) -> float:
        """Mean decode tokens a request entering the segment takes in it."""
        return float(sum(self.survival))

    @property
    def context(self) -> float:
        """Mean tokens of context those decode tokens read (prompt and tokens decoded)."""
        return float(
            sum(p * (self.prompt + s - 1) for s, p in enumerate(self.survival, self.start + 1))
        )


def segment_stats(edges: Sequence[int], ctx: AdmissionContext) -> list[SegmentStats]:
    """The segments' entry rates, prompts and stage occupancy at the engine (the classes
    mixed by their arrival rates)."""
    rates = ctx.rates()
    starts = [0, *edges[:-1]]
    rate = np.zeros(len(edges))
    prompt = np.zeros(len(edges))
    onward = np.zeros(len(edges))
    survival = [np.zeros(end - start) for start, end in zip(starts, edges, strict=True)]
    for k in ctx.classes:
        wl = ctx.workloads[k]
        values, probs = output_pmf(wl)
        order = np.argsort(values)
        values, probs = values[order], probs[order]
        tail = np.concatenate([np.cumsum(probs[::-1])[::-1], [0.0]])  # P(O >= values[i])

        def at_least(s: np.ndarray, values: np.ndarray = values, tail: np.ndarray = tail) -> Any:
            return tail[np.searchsorted(values, s, side="left")]

        r, mean_prompt = rates[k], wl.mean_prompt()
        for j, (start, end) in enumerate(zip(starts, edges, strict=True)):
            enter = float(at_least(np.array([start + 1]))[0])
            rate[j] += r * enter
            prompt[j] += r * enter * mean_prompt
            survival[j] += r * at_least(np.arange(start + 1, end + 1))
            onward[j] += r * float(at_least(np.array([end + 1]))[0])
    out = []
    for j, (start, end) in enumerate(zip(starts, edges, strict=True)):
        rj = rate[j]
        scale = 1.0 / rj if rj > 0 else 0.0
        out.append(
            SegmentStats(
                float(rj),
                float(prompt[j] * scale),
                int(start),
                int(end),
                tuple((survival[j] * scale).tolist()),
                float(onward[j] * scale),
            )
        )
    return out


def nested_thresholds(
    stats: Sequence[SegmentStats],
    seconds: Callable[[int, int, int], float],
    budget: int,
    slots: int,
    limit: int,
    block: int,
) -> list[int]:
    """``n_k`` per segment from the fluid model (the module docstring): ``n_1 = max(1,
    ceil(c lambda))``, ``n_{k+1} = floor(p_k n_k) + 1``, for the smallest ``c`` with
    ``Delta T(n) < n_1 / lambda``; or, if the memory (``M^pi`` and the requests paused below
    each threshold) exceeds ``limit`` blocks of ``block`` tokens, the largest such ``n`` that
    fits. ``seconds(prefill, decode, kv_read)``: the engine's batch time (s); ``budget`` and
    ``slots``: its tokens and requests per batch."""
    lam = stats[0].rate

    def blocks(tokens: float) -> int:
        return -(-round(tokens) // block)

    held = [0.0] + [float(blocks(s.prompt + s.start)) for s in stats[1:]]
    member = [
        sum(p * blocks(s.prompt + t) for t, p in enumerate(s.survival, s.start + 1)) for s in stats
    ]
    first = blocks(stats[0].prompt)

    def n_of(c: float) -> list[int]:
        n = [max(1, math.ceil(c * lam - 1e-9))]
        for s in stats[:-1]:
            n.append(math.floor(n[-1] * s.onward + 1e-9) + 1)
        return n

    def delta_t(n: Sequence[int]) -> float:
        x = n[0] * stats[0].prompt
        m = kv = 0.0
        for nk, s in zip(n, stats, strict=True):
            m += nk * s.decode
            kv += nk * s.context
        return iteration_seconds(seconds, budget, slots, x, m, kv, n[0] + m)

    def keeps_up(n: Sequence[int], dt: float) -> bool:
        return dt * lam < n[0]

    def fits(n: Sequence[int]) -> bool:
        memory = n[0] * first
        for nk, mk, hk in zip(n, member, held, strict=True):
            memory += nk * mk + (nk - 1) * hk
        return memory <= limit

    return threshold_search(n_of, delta_t, keeps_up, fits)


class NestedWait(AdmissionRule):
    """Groups of ``n_1`` into segment 1; requests still running at a segment's end wait there
    (paused, resident) until ``n_k`` have reached it, then resume together."""

    pauses = True

    def __init__(self, spec: NestedWaitAdmission, ctx: AdmissionContext) -> None:
        super().__init__(spec, ctx)
        self.edges = list(spec.segments) if spec.segments is not None else default_types(ctx)
        if spec.thresholds is not None:
            self.thresholds = list(spec.thresholds)
        else:
            stats = segment_stats(self.edges, ctx)
            self.thresholds = nested_thresholds(stats, *engine_limits(ctx))
        self.bounds = self.edges[:-1]  # tokens decoded at which a running request waits
        self.queues: list[deque[Any]] = [deque() for _ in self.bounds]  # paused, by arrival
        self.at: dict[Any, int] = {}  # a paused request: the boundary it waits at
        self.next: dict[Any, int] = {}  # a decoder: the boundary it reaches next
        # a decoder's ticket: its entry in its class's heap of (the class's batch count at
        # which it can reach its next boundary at the earliest, ticket, request); an entry
        # whose ticket is not the request's current one is stale
        self.ticket: dict[Any, int] = {}
        self.watch: dict[int, list[tuple[int, int, Any]]] = {k: [] for k in ctx.classes}
        self.tickets = 0

    @property
    def label(self) -> str:
        """The rule with its segments (tokens) and thresholds (requests)."""
        return f"nested-wait(segments={self.edges}, thresholds={self.thresholds})"

    # ---------------------------------------------------------------- the boundaries
    def _hold(self, job: Any, i: int) -> None:
        """``job`` waits at boundary ``i``."""
        self.queues[i].append(job)
        self.at[job] = i
        self.ticket.pop(job, None)
        self.next.pop(job, None)

    def _watch(self, job: Any, i: int) -> None:
        """``job`` decodes towards boundary ``i`` (checked at the next decision)."""
        if i < len(self.bounds):
            self.tickets += 1
            self.ticket[job] = self.tickets
            self.next[job] = i
            heapq.heappush(self.watch[job.cls], (0, self.tickets, job))

    def decoding(self, job: Any) -> bool:
        decoded = job.dec_tokens - job.dec_left
        i = bisect_left(self.bounds, decoded)
        if i < len(self.bounds) and self.bounds[i] == decoded:  # back exactly at a boundary
            self._hold(job, i)
            return True
        self._watch(job, i)
        return False

    def pause(self, dec: Mapping[int, Any]) -> list[Any]:
        out: list[Any] = []
        bounds, ticket = self.bounds, self.ticket
        for k, heap in self.watch.items():
            if not heap:
                continue
            dq = dec[k]
            G = dq.G
            while heap and heap[0][0] <= G:
                _, t, job = heapq.heappop(heap)
                if ticket.get(job) != t:
                    continue
                if not job.blocks or job.pre_left:  # finished, or preempted
                    del ticket[job]
                    del self.next[job]
                    continue
                i = self.next[job]
                decoded = job.dec_tokens - dq.remaining(job)
                if decoded >= bounds[i]:
                    self._hold(job, i)
                    out.append(job)
                else:  # passed over by some batches: due later
                    heapq.heappush(heap, (G + bounds[i] - decoded, t, job))
        return out

    def resume(self, mem: KVMemory, reserve: int, stalled: bool = False) -> list[Any]:
        out: list[Any] = []
        room = mem.free - reserve
        for i, q in enumerate(self.queues):
            n = self.thresholds[i + 1]
            if not q or (len(q) < n and not stalled):
                continue
            group = list(islice(q, n))  # stalled: the first n, or all if fewer
            need = sum(1 for job in group if mem.full(job))
            if need > room and not stalled:  # no room for their next token: they wait
                continue
            room -= need
            for job in group:
                q.popleft()
                del self.at[job]
                self._watch(job, i + 1)
            out.extend(group)
        return out

    def _short(self, mem: KVMemory, reserve: int) -> bool:
        """Whether a group at a boundary (``n_k`` requests) lacks room for its next tokens
        beside ``reserve`` blocks."""
        room = mem.free - reserve
        for q, n in zip(self.queues, self.thresholds[1:], strict=True):
            if len(q) >= n and sum(1 for job in islice(q, n) if mem.full(job)) > room:
                return True
        return False

    def released(self, job: Any) -> None:
        i = self.at.pop(job, None)
        if i is not None:
            self.queues[i].remove(job)
            self._watch(job, i + 1)

    def requeued(self, k: int, job: Any) -> None:
        if self.ticket.pop(job, None) is not None:
            del self.next[job]

    # ---------------------------------------------------------------- segment 1
    def admit(
        self,
        mem: KVMemory,
        waiting: Mapping[int, deque[Any]],
        order: Sequence[int],
        reserve: int,
        budget: int,
        slots: int,
    ) -> tuple[dict[int, int], int]:
        shown: dict[int, int] = {}
        tokens = count = 0
        for k in order:  # the resident (partly prefilled) prompts are shown first
            r = 0
            for job in waiting[k]:
                if not job.blocks:
                    break
                tokens += job.pre_left
                r += 1
            shown[k] = r
            count += r
        if mem.swapped or self._short(mem, reserve):
            return shown, tokens  # a request out in host memory, or a held group, goes first
        new = sum(len(waiting[k]) - shown[k] for k in order)
        n1 = self.thresholds[0]
        empty = not mem.resident
        if not new or (new < n1 and not empty) or tokens >= budget:
            return shown, tokens
        size = min(n1, new)
        if empty:  # nothing else can run: as many of the oldest as fit
            size = min(size, max(1, slots - count))
        elif count + size > slots:
            return shown, tokens
        group: list[Any] = []  # the oldest `size` by arrival: a prefix of each class's deque
        nxt = dict(shown)
        while len(group) < size:
            best = -1
            for k in order:
                q = waiting[k]
                if nxt[k] < len(q) and (best < 0 or q[nxt[k]].id < waiting[best][nxt[best]].id):
                    best = k
            group.append(waiting[best][nxt[best]])
            nxt[best] += 1
        room = mem.free - reserve - (mem.watermark if mem.resident else 0)
        taken = 0
        for job in group:
            need = mem.blocks_for(job.pre_left + 1)
            if need > room:
                break
            room -= need
            taken += 1
        if taken < len(group) and not (empty and taken):
            return shown, tokens  # the group together, or none of it
        for job in group[:taken]:
            shown[job.cls] += 1
            tokens += job.pre_left
        return shown, tokens
