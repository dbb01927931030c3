"""Orca: prefill first, prefill and decode tokens mixed in one batch.

Prompts are prefilled first-come first-served (chunked: the last prompt that does not fit
whole gets the rest of the budget; ``chunked: false``: whole prompts only, the original
Orca); decode tokens fill what prefill left, one per decoding request, oldest first.
Work-conserving when chunked.
"""

from __future__ import annotations

from collections.abc import Sequence

from policyopt.sim.schedulers.base import BatchPlan, Queues, Scheduler, fill_decode, fill_prefill


class Orca(Scheduler):
    """Prefill first, then decode tokens in the same batch."""

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
        budget, slots = fill_prefill(queues, order, budget, slots, self.chunked, plan)
        fill_decode(queues, order, budget, slots, plan)
        return plan
