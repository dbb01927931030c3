"""``fcfs``: the engine's default admission rule (``docs/schedulers.md``, memory).

Prompts, classes in the policy's order and first-come first-served within a class, are shown
to the scheduler while the blocks of each whole prompt and of one token more (its first
decode token) fit in the free blocks left after the decode growth (``reserve``), beside the
watermark (ignored when the cache is empty, so that any request that fits can start); the
first that does not fit hides every prompt after it (no skipping ahead), and none are
admitted while a request is swapped out. A prompt already admitted (partly prefilled) is
always shown. Every prompt the rule admits is shown, not only as many as one batch can take,
so that the work-conservation check sees the work a batch could have held; each prompt shown
holds a block at least, so the scan is as long as the free blocks at most. (Without the token
more, a prompt admitted into the last
free blocks would be preempted by the next decode step and admitted again, for ever.)
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import Any

from policyopt.model.admission import AdmissionSpec
from policyopt.sim.admission.base import AdmissionContext, AdmissionRule
from policyopt.sim.kv_memory import KVMemory, Resident

HEADROOM = 64
"""Entries kept in front of a class's running sums for requests put back at the front."""


class FCFS(AdmissionRule):
    """Oldest first within a class, classes in the policy's order, no skipping ahead.

    The blocks and tokens of each class's prompts without blocks are kept as running sums in
    the deque's order (extended as prompts arrive, advanced as the engine admits them, extended
    at the front when a preempted request goes back there), so the prompts shown are found by
    bisection: a batch costs O(log n) per class however long the queue, and shows exactly
    what a walk down the queue would.
    """

    def __init__(self, spec: AdmissionSpec, ctx: AdmissionContext) -> None:
        super().__init__(spec, ctx)
        # per class: running sums of blocks needed (prompt + 1 token) and of prefill tokens
        # over the prompts without blocks, from the first of them; `start`: how many of them
        # have left the deque's unadmitted part since the sums were begun
        self.need: dict[int, list[int]] = {}
        self.tokens: dict[int, list[int]] = {}
        self.start: dict[int, int] = {}
        self.block = ctx.kv.block_size

    def admitted(self, k: int) -> None:
        if k in self.start:
            self.start[k] += 1

    def requeued(self, k: int, job: Any) -> None:
        start = self.start.get(k)
        if start is None:
            return
        need, tokens = self.need[k], self.tokens[k]
        if start == 0:  # room in front of the sums
            need[0:0] = [0] * HEADROOM
            tokens[0:0] = [0] * HEADROOM
            start = HEADROOM
        start -= 1
        need[start] = need[start + 1] - -(-(job.pre_left + 1) // self.block)
        tokens[start] = tokens[start + 1] - job.pre_left
        self.start[k] = start

    def _sums(
        self, mem: KVMemory, k: int, q: Sequence[Any], first: int
    ) -> tuple[list[int], list[int], int]:
        """The running sums of class ``k`` covering the ``len(q) - first`` prompts without
        blocks of ``q`` (from index ``first``), and the index in them of the first one."""
        start = self.start.get(k)
        if start is None:
            need, tokens, start = [0], [0], 0
            self.need[k], self.tokens[k], self.start[k] = need, tokens, start
        else:
            need, tokens = self.need[k], self.tokens[k]
            if start > 4096 and 2 * start > len(need):  # drop what has left
                need = self.need[k] = need[start - HEADROOM :]
                tokens = self.tokens[k] = tokens[start - HEADROOM :]
                start = self.start[k] = HEADROOM
        covered = len(need) - 1 - start
        if covered < len(q) - first:  # prompts arrived since: extend the sums
            block = mem.block
            n, t = need[-1], tokens[-1]
            new = len(q) - first - covered  # the youngest: read from the back of the deque
            for job in reversed(list(islice(reversed(q), new))):
                n += -(-(job.pre_left + 1) // block)
                t += job.pre_left
                need.append(n)
                tokens.append(t)
        return need, tokens, start

    def admit(
        self,
        mem: KVMemory,
        waiting: Mapping[int, Iterable[Resident]],
        order: Sequence[int],
        reserve: int,
        budget: int,
        slots: int,
    ) -> tuple[dict[int, int], int]:
        room = mem.free - reserve - (mem.watermark if mem.resident else 0)
        closed = bool(mem.swapped)  # no new prompt while a request is swapped out
        shown: dict[int, int] = {}
        tokens = 0
        for k in order:
            q: Any = waiting[k]
            n = 0
            if q and q[0].blocks:  # partly prefilled: admitted, always shown
                n = 1
                tokens += q[0].pre_left
            left = len(q) - n  # prompts without blocks
            if left and not closed:
                need, toks, start = self._sums(mem, k, q, n)
                base = need[start]
                j = bisect_right(need, base + room, start, start + left + 1) - start - 1
                if j > 0:
                    room -= need[start + j] - base
                    tokens += toks[start + j] - toks[start]
                    n += j
                if j < left:  # the next does not fit: it hides every prompt after it
                    closed = True
            shown[k] = n
        return shown, tokens
