"""Sarathi-Serve: decode first, then prefill chunks, mixed in one batch.

Every decoding request gets one decode token (oldest first, while budget and slots last);
prefill fills the rest of the budget, first-come first-served, the last prompt chunked
(``chunked: false``: whole prompts only). Work-conserving when chunked.
"""

from __future__ import annotations

from collections.abc import Sequence

from policyopt.sim.schedulers.base import BatchPlan, Queues, Scheduler, fill_decode, fill_prefill


class Sarathi(Scheduler):
    """Decode tokens first, then prefill chunks in the same batch."""

    splits_budget = True

    def form(
        self,
        queues: Queues,
        order: Sequence[int],
        budget: int,
        slots: int,
        decode_cap: int | None = None,
    ) -> BatchPlan:
        if decode_cap is not None:
            return self._split(queues, order, budget, slots, decode_cap)
        plan = BatchPlan([], [], 0, 0)
        m = fill_decode(queues, order, budget, slots, plan)
        fill_prefill(queues, order, budget - m, slots - m, self.chunked, plan)
        return plan
