"""FasterTransformer: request-level batching.

A group of waiting requests is admitted (whole prompts, first-come first-served, as many as
fit together in one batch of ``budget`` tokens and ``slots`` requests) and prefilled in one
batch; the group then decodes, one token per member per batch, until every member has left.
Only then is the next group admitted, so requests that arrive meanwhile wait however much
budget the shrinking group leaves unused (not work-conserving).
"""

from __future__ import annotations

from collections.abc import Sequence

from policyopt.sim.schedulers.base import BatchPlan, Queues, Scheduler, fill_decode, fill_prefill


class FasterTransformer(Scheduler):
    """Decode the running group; admit the next group only when it has left."""

    def fill(self, q: Queues, order: Sequence[int], b: int, k: int, plan: BatchPlan) -> None:
        for c in order:
            if q.decoding(c):  # the group is still decoding
                fill_decode(q, order, b, k, plan)
                return
        fill_prefill(q, order, b, k, False, plan)
