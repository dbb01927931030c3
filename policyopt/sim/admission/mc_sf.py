"""``mc-sf``: memory-constrained shortest first (Jaillet, Jiang, Mellou, Molinaro, Podimata,
Zhou, "Online Scheduling for LLM Inference with KV Cache Constraints", arXiv 2502.07115).

**The paper's rule.** Time is slotted; in each slot every request in process produces one
output token, and a request of prompt size ``s_i`` started at slot ``p_i`` holds
``s_i + (t - p_i)`` tokens of KV cache at slot ``t`` until its output of ``o_i`` tokens is
complete; the cache holds ``M`` tokens. At every slot the waiting requests are taken in
ascending order of ``o_i``, and request ``i`` joins the batch if, with the requests already
in process and those added before it, the memory at every future slot stays within ``M``,
assuming no further arrivals; the first that does not fit ends the slot's admission. Memory
rises between completions, so it suffices to check the slots at which a request completes.

**Its assumptions, and how they map onto this engine.**

* *One slot is one batch.* Every running request gets one decode token per batch: true here
  while the decoding requests fit the token budget and ``max_seqs`` (``D <= min(b, k_max)``),
  which this rule keeps by admitting no more than a batch can carry.
* *A prompt is prefilled in one step.* Here a prompt is prefilled in the batch that admits it
  only if the whole prompt fits that batch's budget, so the rule admits a prompt only while
  the prompts admitted plus one decode token per running request fit the token budget
  (``X + D <= b``; a scheduler that does not mix prefill and decode, ``vllm`` and
  ``fastertransformer``, needs ``X <= b`` and ``D + n <= b``) and the request slots. A prompt
  the batch cannot carry whole waits for a batch that can, and the scan goes on to the next
  shortest (past at most :data:`LOOKAHEAD` such prompts): the budget is the engine's limit, not
  the paper's, and only memory ends the scan as in the paper. A prompt longer than the whole
  budget is admitted only into an empty cache and prefilled in chunks while nothing else
  runs; a partly prefilled request is projected as if its prefill ended in the next batch.
  The first request into an empty cache is always admitted (its true length fits the cache;
  a prediction beyond it would otherwise hold it back for ever).
* *The engine's timing.* A request admitted now holds its prompt's blocks during its prefill
  batch and decodes from the next batch on, one token per batch, until its (predicted) end;
  a decoding request grows by one token in the next batch (a scheduler that does not mix
  prefill and decode pauses it while the admitted prompts are prefilled).
* *Known output lengths.* The rule reads each request's predicted output length
  (``kv_cache.output_lengths``: exact, predicted with a relative error, or bucketed); a
  request still running past its prediction is projected to end in the next batch.
* *Memory in tokens.* Here in blocks: a request of ``n`` tokens holds ``ceil(n / block_size)``
  blocks, and the projected blocks of every future batch must fit in the cache less its
  watermark (the whole cache when it is empty).

With exact output lengths and these conditions the projection is what happens, batch for
batch, so the engine never preempts (``tests/test_admission.py`` checks it). Ties in predicted
output go to the older request; the policy's class order chooses which classes may be
admitted, not their order. No request is admitted while one is swapped out.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from policyopt.model.admission import AdmissionSpec
from policyopt.sim.admission.base import AdmissionContext, QueuedRule, remaining
from policyopt.sim.kv_memory import KVMemory

LOOKAHEAD = 32
"""Prompts a decision passes over because the batch cannot carry them whole (the scan goes
on to shorter-output prompts behind them), at most."""


class Projection:
    """The cache's blocks in future batches ``1, 2, ...`` if every request follows its
    profile: a request holds ``off + t`` tokens in batch ``t`` up to batch ``end`` (its last),
    then leaves. Kept at the batches where some request is in its last batch (the peaks:
    between them the same requests are present and each only grows)."""

    def __init__(self, offs: list[int], ends: list[int], block: int, limit: int) -> None:
        self.block = block
        self.limit = limit  # blocks the projection may use in any batch
        self.off = np.array(offs, dtype=np.int64)
        self.end = np.array(ends, dtype=np.int64)
        self.points = np.unique(self.end)
        self.used = self._at(self.points)
        self.ok = bool((self.used <= limit).all())

    def _at(self, points: np.ndarray) -> np.ndarray:
        """Blocks in use in each batch of ``points`` (present requests, whole blocks)."""
        if not len(self.off):
            return np.zeros(len(points), dtype=np.int64)
        tokens = self.off[:, None] + points[None, :]
        held = (tokens + (self.block - 1)) // self.block
        return np.where(self.end[:, None] >= points[None, :], held, 0).sum(axis=0)

    def add(self, off: int, end: int, force: bool = False) -> bool:
        """Add a request holding ``off + t`` tokens in batches ``t = 1 .. end`` if the
        projection stays within the limit in every batch (``force``: in any case); whether it
        was added."""
        if not (self.ok or force):
            return False
        block = self.block
        cut = int(np.searchsorted(self.points, end, side="right"))
        extra = (off + self.points[:cut] + (block - 1)) // block
        if not force and (self.used[:cut] + extra > self.limit).any():
            return False
        new = not (cut and self.points[cut - 1] == end)
        at_end = 0
        if new:
            at_end = int(self._at(np.array([end], dtype=np.int64))[0]) + -(-(off + end) // block)
            if at_end > self.limit and not force:
                return False
        self.used[:cut] += extra
        if new:
            self.points = np.insert(self.points, cut, end)
            self.used = np.insert(self.used, cut, at_end)
        self.off = np.append(self.off, off)
        self.end = np.append(self.end, end)
        return True


class MCSF(QueuedRule):
    """Shortest predicted output first, while the projected memory of every batch fits."""

    reads_residents = True

    def __init__(self, spec: AdmissionSpec, ctx: AdmissionContext) -> None:
        super().__init__(spec, ctx)
        self.heap: list[tuple[int, int, Any]] = []  # (predicted output left, id, request)
        self.mixes = ctx.engine.scheduler.mixes

    def file(self, job: Any) -> None:
        heapq.heappush(self.heap, (remaining(job), job.id, job))

    def admit(
        self,
        mem: KVMemory,
        waiting: Mapping[int, deque[Any]],
        order: Sequence[int],
        reserve: int,
        budget: int,
        slots: int,
    ) -> tuple[dict[int, int], int]:
        self.sync(waiting)
        pause = not self.mixes  # the decoders wait while admitted prompts are prefilled
        offs: list[int] = []
        ends: list[int] = []
        decoders = prefilling = tokens = 0
        for job in mem.resident:
            left = remaining(job)
            if job.pre_left:  # partly prefilled: its prompt in the next batch, then decodes
                prefilling += 1
                tokens += job.pre_left
                offs.append(job.held + job.pre_left - 1)
                ends.append(left + 1)
            else:
                decoders += 1
                offs.append(job.held - pause)
                ends.append(left + pause)
        chosen: dict[int, list[Any]] = {}
        if not mem.swapped:
            limit = mem.total - mem.watermark if mem.resident else mem.total
            proj = Projection(offs, ends, mem.block, limit)
            allowed = set(order)
            aside: list[tuple[int, int, Any]] = []
            passed = 0  # prompts passed over: the batch cannot carry them whole
            heap = self.heap
            n = 0  # prompts admitted now
            while heap and passed <= LOOKAHEAD:
                left, _, job = heap[0]
                if job.cls not in allowed:
                    aside.append(heapq.heappop(heap))
                    continue
                x = tokens + job.pre_left
                empty = not mem.resident and not n  # the first into an empty cache
                if not empty:  # a batch must carry it whole, with every decoder
                    running = decoders + prefilling + n + 1
                    if running > slots or running > budget:
                        break  # no prompt more: every decoder must be served next batch
                    if (x + decoders if self.mixes else x) > budget:
                        aside.append(heapq.heappop(heap))
                        passed += 1
                        continue
                if not proj.add(job.held + job.pre_left - 1, left + 1, force=empty):
                    break
                heapq.heappop(heap)
                chosen.setdefault(job.cls, []).append(job)
                tokens = x
                n += 1
            for entry in aside:
                heapq.heappush(heap, entry)
        return self.show(waiting, order, chosen)
