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

    def form(
        self,
        queues: Queues,
        order: Sequence[int],
        budget: int,
        slots: int,
        decode_cap: int | None = None,
    ) -> BatchPlan:
        plan = BatchPlan([], [], 0, 0)
        for k in order:
            if queues.waiting(k):  # a prompt waits: a prefill-only batch
                fill_prefill(queues, order, budget, slots, False, plan)
                break
        else:
            fill_decode(queues, order, budget, slots, plan)
        return plan
