"""Vanilla vLLM (no chunked prefill): prefill first, never mixed.

If a waiting prompt fits, the batch is prefill-only: whole prompts, first-come first-served,
while they fit; otherwise it is decode-only, one token per decoding request, oldest first.
A decode-only batch is formed only when no prompt waits, so budget goes unused while prompts
fill a batch alone (not work-conserving).
"""

from __future__ import annotations

from collections.abc import Sequence

from policyopt.sim.schedulers.base import BatchPlan, Queues, Scheduler, fill_decode, fill_prefill


class VLLM(Scheduler):
    """Prefill-only batches of whole prompts while prompts wait, else decode-only batches."""

    def fill(self, q: Queues, order: Sequence[int], b: int, k: int, plan: BatchPlan) -> None:
        for c in order:
            if q.waiting(c):  # a prompt waits: a prefill-only batch
                fill_prefill(q, order, b, k, False, plan)
                return
        fill_decode(q, order, b, k, plan)
