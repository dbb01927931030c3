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

from collections.abc import Iterable, Mapping, Sequence

from policyopt.sim.admission.base import AdmissionRule
from policyopt.sim.kv_memory import KVMemory, Resident


class FCFS(AdmissionRule):
    """Oldest first within a class, classes in the policy's order, no skipping ahead."""

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
            n = 0
            for job in waiting[k]:
                if not job.blocks:  # not admitted yet: its prompt, and room for a token more
                    need = mem.blocks_for(job.pre_left + 1)
                    if closed or need > room:
                        closed = True
                        break
                    room -= need
                n += 1
                tokens += job.pre_left
            shown[k] = n
        return shown, tokens
