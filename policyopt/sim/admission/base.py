"""What every admission rule shares: the engine facts it may read, the requests' predicted
output lengths, and the bookkeeping of a rule that keeps its own order of the waiting prompts.

An admission rule runs at an engine with a limited KV cache before each batch, after the
engine has made room for decode growth (:mod:`policyopt.sim.kv_memory`). It reads the cache
(:class:`~policyopt.sim.kv_memory.KVMemory`: free blocks, the resident requests) and the
waiting prompts of each class (oldest first; a class's partly prefilled prompt, resident, at
the front), and returns how many prompts of each class the scheduler is shown, a prefix of
the class's deque, and their prefill tokens. A rule may reorder the prompts of a deque that
hold no blocks yet, so that those it admits form that prefix; a resident prompt stays at the
front and is always shown.

A request (the simulator's job) carries ``prompt``, ``dec_tokens`` (its true output length,
tokens), ``held`` (KV tokens held), ``blocks``, ``pre_left`` (prefill tokens left) and, for the
rules, ``pred`` (its predicted output length, tokens; -1 until a rule has seen it) and
``queued`` (the rule holds it in its own queue).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from policyopt.model.admission import AdmissionSpec, OutputLengths
from policyopt.model.kv_cache import KVCacheSpec
from policyopt.model.network import LLMEngine
from policyopt.model.workload import Workload
from policyopt.sim.kv_memory import KVMemory

DRAWS = 1024
"""Uniform draws per block of a class's prediction stream."""


@dataclass(frozen=True)
class AdmissionContext:
    """What a rule may know of its engine when it is built.

    ``kv``: the cache spec; ``engine``: the engine (token budget, ``max_seqs``, batch time,
    scheduler); ``classes``: the indices of the classes served there; ``workloads``: each
    class's workload; ``rates``: a function returning each class's arrival rate at this
    engine (requests/s, from the network's traffic equations); ``stream``: a function giving
    class ``k``'s random stream for predicted output lengths (spawned from the run's seed).
    """

    kv: KVCacheSpec
    engine: LLMEngine
    classes: tuple[int, ...]
    workloads: Mapping[int, Workload]
    rates: Callable[[], Mapping[int, float]]
    stream: Callable[[int], np.random.Generator]


class AdmissionRule:
    """Base of the admission rules: :meth:`admit` returns the shown counts per class.

    ``reads_residents``: the rule reads ``held`` and ``blocks`` of every resident request
    (the engine then writes its decoders' values back before asking it: a walk over them).
    """

    reads_residents: ClassVar[bool] = False

    def __init__(self, spec: AdmissionSpec, ctx: AdmissionContext) -> None:
        self.spec = spec
        self.ctx = ctx

    @property
    def label(self) -> str:
        """Display name (with the options the rule derived, if any)."""
        return self.spec.name

    def admit(
        self,
        mem: KVMemory,
        waiting: Mapping[int, deque[Any]],
        order: Sequence[int],
        reserve: int,
        budget: int,
        slots: int,
    ) -> tuple[dict[int, int], int]:
        """How many prompts of each class in ``order`` the scheduler is shown (the first of
        the class's deque), and their prefill tokens. ``reserve``: blocks the decoders the
        batch may serve need to grow by a token; ``budget``: the engine's token budget
        (tokens per batch); ``slots``: its request slots per batch."""
        raise NotImplementedError

    def admitted(self, k: int) -> None:
        """The engine admitted a prompt of class ``k`` (the first without blocks of its
        deque took its blocks). A rule that keeps sums over the deque may use it."""

    def requeued(self, k: int, job: Any) -> None:
        """``job``, of class ``k``, preempted, is now the front of its class's deque without
        blocks (put back there, or the partly prefilled front prompt that gave its blocks
        back), with ``pre_left`` its prefill tokens to compute again."""

    # ---------------------------------------------------------------- holding decoders back
    # Used by the engine only when ``pauses`` is set (``docs/schedulers.md``, memory): the
    # rule keeps chosen decoders out of the batches; they stay resident and come back later.

    pauses: ClassVar[bool] = False
    """The rule holds decoders back (:meth:`pause`, :meth:`resume`); the engine then tells it
    of every request that starts decoding (:meth:`decoding`) and of every paused request it
    takes back itself (:meth:`released`)."""

    def decoding(self, job: Any) -> bool:
        """``job`` (class ``job.cls``, ``dec_left`` decode tokens left, ``held`` and
        ``blocks`` written) is about to join its class's decode queue: its prefill is done,
        or it comes back from host memory. ``True`` keeps it paused from the start."""
        return False

    def pause(self, dec: Mapping[int, Any]) -> list[Any]:
        """Before the engine makes room for decode growth: the decoders to keep out of the
        batches from now on (each in its class's decode queue ``dec[k]``, a
        :class:`~policyopt.sim.kv_memory.MemDecodeQueue`)."""
        return []

    def resume(self, mem: KVMemory, reserve: int, stalled: bool = False) -> list[Any]:
        """Before admission: paused decoders to put back now (they take a decode token in the
        next batch). ``reserve``: blocks the decoders in the queues need to grow by a token;
        the blocks the resumed ones need (``mem.full(job)`` each) must fit in ``mem.free``
        beside it. ``stalled``: nothing else would run (no decoder in a queue, no prompt
        shown): the rule should resume some, room or not (the engine then preempts to make
        room); if it resumes none, the engine resumes every paused decoder."""
        return []

    def released(self, job: Any) -> None:
        """The engine took paused ``job`` back without the rule: it was preempted (then
        :meth:`requeued` follows if it recomputes), or it resumes because the engine stalled
        and the rule resumed none (it is about to rejoin its decode queue)."""


class Predictor:
    """Predicted output lengths (tokens) as the engine knows them (``kv_cache.output_lengths``).

    A request gets its prediction when a rule first sees it, the requests of a class in
    arrival order: with a noisy prediction the ``i``-th request of class ``k`` takes the
    ``i``-th draw of class ``k``'s stream, so two rules see the same predictions.
    """

    def __init__(self, lengths: OutputLengths, stream: Callable[[int], np.random.Generator]):
        self.lengths = lengths
        self.stream = stream
        self.rngs: dict[int, np.random.Generator] = {}
        self.buffers: dict[int, list[float]] = {}

    def _uniforms(self, k: int, n: int) -> np.ndarray:
        """The next ``n`` uniforms on ``[-1, 1]`` of class ``k``'s stream."""
        buf = self.buffers.setdefault(k, [])
        while len(buf) < n:
            rng = self.rngs.get(k)
            if rng is None:
                rng = self.rngs[k] = self.stream(k)
            buf.extend((2.0 * rng.random(DRAWS) - 1.0).tolist())
        out = np.array(buf[:n])
        del buf[:n]
        return out

    def assign(self, k: int, jobs: list[Any]) -> None:
        """Give ``jobs`` (new requests of class ``k``, in arrival order) their ``pred``."""
        true = np.fromiter((job.dec_tokens for job in jobs), dtype=np.int64, count=len(jobs))
        u = self._uniforms(k, len(jobs)) if self.lengths.draws else None
        for job, pred in zip(jobs, self.lengths.predict(true, u).tolist(), strict=True):
            job.pred = pred


def remaining(job: Any) -> int:
    """Decode tokens ``job`` is predicted to still need (at least 1): its predicted output
    less the tokens it has decoded (its context ``held + pre_left`` beyond its prompt)."""
    left = job.pred - (job.held + job.pre_left - job.prompt)
    return left if left > 1 else 1


class QueuedRule(AdmissionRule):
    """A rule that keeps the waiting prompts in its own queues (shortest first, by type...).

    Before each decision :meth:`sync` files the prompts it does not hold yet: new arrivals (at
    the back of their class's deque), preempted requests to recompute and prompts shown but
    not taken (at the front). It finds them without scanning whole deques: the prompts the
    rule holds form a contiguous middle of each deque. :meth:`show` moves the prompts a rule
    admits to the front of their deques (behind a resident prompt) and counts what is shown.
    """

    def __init__(self, spec: AdmissionSpec, ctx: AdmissionContext) -> None:
        super().__init__(spec, ctx)
        assert ctx.kv.output_lengths is not None, "the spec requires output_lengths"
        self.predictor = Predictor(ctx.kv.output_lengths, ctx.stream)

    def file(self, job: Any) -> None:
        """Put ``job`` (waiting, no blocks, ``pred`` set) in the rule's queue."""
        raise NotImplementedError

    def sync(self, waiting: Mapping[int, deque[Any]]) -> None:
        """File every waiting prompt without blocks the rule does not hold yet."""
        for k, q in waiting.items():
            if not q:
                continue
            new: list[Any] = []
            front = 0
            for job in q:  # the front: resident, preempted, shown before
                if job.queued:
                    break
                front += 1
                if not job.blocks:
                    new.append(job)
            if front < len(q):  # the back: arrivals since the last decision
                back: list[Any] = []
                for i in range(len(q) - 1, front - 1, -1):
                    job = q[i]
                    if job.queued:
                        break
                    back.append(job)
                new.extend(reversed(back))
            if new:
                fresh = [job for job in new if job.pred < 0]
                if fresh:
                    self.predictor.assign(k, fresh)
                for job in new:
                    job.queued = True
                    self.file(job)

    @staticmethod
    def show(
        waiting: Mapping[int, deque[Any]],
        order: Iterable[int],
        chosen: Mapping[int, list[Any]],
    ) -> tuple[dict[int, int], int]:
        """Move the ``chosen`` prompts of each class (in the order given, taken out of the
        rule's queue) to the front of its deque, behind its resident prompts; return the
        shown counts of the classes in ``order`` (resident and chosen prompts) and their
        prefill tokens."""
        shown: dict[int, int] = {}
        tokens = 0
        for k in order:
            q = waiting[k]
            resident: list[Any] = []
            while q and q[0].blocks:
                resident.append(q.popleft())
            picked = chosen.get(k, ())
            for job in picked:
                job.queued = False
                q.remove(job)
            q.extendleft(reversed(picked))
            q.extendleft(reversed(resident))
            shown[k] = len(resident) + len(picked)
            tokens += sum(job.pre_left for job in resident) + sum(job.pre_left for job in picked)
        return shown, tokens
