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

    def fill(self, q: Queues, order: Sequence[int], b: int, k: int, plan: BatchPlan) -> None:
        m = fill_decode(q, order, b, k, plan)
        fill_prefill(q, order, b - m, k - m, self.chunked, plan)
