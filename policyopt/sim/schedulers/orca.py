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

    def fill(self, q: Queues, order: Sequence[int], b: int, k: int, plan: BatchPlan) -> None:
        b, k = fill_prefill(q, order, b, k, self.chunked, plan)
        fill_decode(q, order, b, k, plan)
