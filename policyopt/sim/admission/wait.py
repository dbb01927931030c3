"""``wait``: Waiting for Accumulated Inference Threshold (Ao, Luo, Simchi-Levi, Wang,
"Optimizing LLM Inference: Fluid-Guided Online Scheduling with Memory Constraints", arXiv
2504.11320).

**The paper's rule.** Prompts fall into ``m`` types; type ``j`` has ``l_j`` prompt and ``l'_j``
output tokens (known at arrival) and arrives at rate ``lambda_j``. A type-``j`` prompt passes
through stages ``s = 0`` (prefill) to ``l'_j`` (its last decode token), holding ``l_j + s``
tokens of KV cache at stage ``s``. With ``n_js`` the type-``j`` prompts waiting at stage
``s``, type ``j`` takes part in a batch only when ``n_j0 >= n_j``; the batch then holds
``min(n_j, n_js)`` type-``j`` prompts of every stage ``s``, for every type meeting its
threshold, and waits for arrivals when none does. A stage thus never holds more than ``n_j``
prompts of type ``j``, so the memory never exceeds
``M^pi = sum_j n_j (l'_j + 1)(l_j + l'_j / 2)``. The thresholds come from the fluid model: a
batch with ``n_j`` prompts in each stage takes ``Delta T(n) = d_0 + d_1 M^pi`` seconds, and
``Delta T(n) <= n_j / lambda_j`` for every type keeps each type's arrivals per batch within the
``n_j`` it admits (the fluid equilibrium has ``lambda_j Delta T`` prompts per stage); the paper
assumes the cache holds ``M^pi``.

**How it maps onto this engine.**

* *Types.* A request's type is the first of ``types`` (output-length edges, tokens) at or above
  its predicted output length (``kv_cache.output_lengths``). Type ``j``'s ``l_j`` and ``l'_j``
  are the mean prompt and mean output of its requests, ``lambda_j`` the engine's arrival rate
  (the network's traffic equations) times the share of outputs in the type (by the true
  lengths). Default types: the buckets of ``output_lengths`` if bucketed, else the quartiles
  of the engine's output lengths.
* *Thresholds.* ``n_j = max(1, ceil(c lambda_j))`` for the smallest ``c`` with
  ``Delta T(n) <= n_j / lambda_j`` for every type, ``Delta T`` being the engine's own batch time
  of the work of one iteration, ``n_j`` prompts and ``n_j l'_j`` decode tokens of each type
  (split into as few batches as the token budget and ``max_seqs`` allow). If ``M^pi`` (in
  blocks) exceeds the cache less its watermark (the paper's ``C < M*``), ``c`` is the largest
  for which it fits: the thresholds then keep to the memory, and the engine cannot keep up
  with the arrivals. ``thresholds`` overrides the derivation.
* *What the rule controls.* Here the admission: once ``n_j`` type-``j`` prompts wait (classes in
  the policy's order), the oldest ``n_j`` are shown together if their blocks and one token more
  each fit beside the decode growth and the watermark (all of them, or none of that type this
  batch), while the shown prompts hold less than the token budget and fit the request slots.
  The paper's batches also leave out the decode stages of a type whose threshold is not met;
  this engine's scheduler serves every admitted request in every batch instead. The per-stage
  bound ``n_j`` (hence ``M^pi``) holds either way as long as each group is prefilled in one
  batch and every decoder is served each batch: groups admitted in different batches stay in
  different stages.

No request is admitted while one is swapped out; a preempted request (recompute) waits again
as a new arrival of its type, as in the paper.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from policyopt.model.admission import BucketedLengths, WaitAdmission
from policyopt.model.workload import TraceArrivals, Workload, read_trace
from policyopt.sim.admission.base import AdmissionContext, QueuedRule
from policyopt.sim.kv_memory import KVMemory


@dataclass(frozen=True)
class TypeStats:
    """One type at an engine: ``rate`` (requests/s), mean ``prompt`` and ``output`` tokens,
    and ``longest`` output (tokens, the type's edge)."""

    rate: float
    prompt: float
    output: float
    longest: int


def output_pmf(wl: Workload) -> tuple[np.ndarray, np.ndarray]:
    """Output lengths (tokens) and their probabilities of a workload (a trace: its rows)."""
    if isinstance(wl.arrival, TraceArrivals):
        values, counts = np.unique(read_trace(wl.arrival.path)[2], return_counts=True)
        return values, counts / counts.sum()
    return wl.output_dist.pmf(wl.max_output_len)


def default_types(ctx: AdmissionContext) -> list[int]:
    """Type edges (tokens): the buckets of ``output_lengths``, else the quartiles of the
    engine's output lengths (the classes mixed by arrival rate)."""
    lengths = ctx.kv.output_lengths
    if isinstance(lengths, BucketedLengths):
        return list(lengths.edges)
    rates = ctx.rates()
    mix: dict[int, float] = {}
    for k in ctx.classes:
        values, probs = output_pmf(ctx.workloads[k])
        weight = rates[k] if sum(rates.values()) > 0 else 1.0
        for v, p in zip(values.tolist(), probs.tolist(), strict=True):
            mix[v] = mix.get(v, 0.0) + weight * p
    values = np.array(sorted(mix))
    cdf = np.cumsum([mix[v] for v in values.tolist()])
    cdf /= cdf[-1]
    quartiles = values[np.searchsorted(cdf, [0.25, 0.5, 0.75], side="left")]
    return sorted({*quartiles.tolist(), int(values[-1])})


def type_stats(edges: Sequence[int], ctx: AdmissionContext) -> list[TypeStats]:
    """The types' arrival rates and mean lengths at the engine (:class:`TypeStats`)."""
    rates = ctx.rates()
    lows = [0, *edges[:-1]]
    rate = np.zeros(len(edges))
    prompt = np.zeros(len(edges))
    output = np.zeros(len(edges))
    for k in ctx.classes:
        wl = ctx.workloads[k]
        values, probs = output_pmf(wl)
        mean_prompt = wl.mean_prompt()
        for j, (lo, hi) in enumerate(zip(lows, edges, strict=True)):
            inside = (values > lo) & (values <= hi)
            share = float(probs[inside].sum())
            rate[j] += rates[k] * share
            prompt[j] += rates[k] * share * mean_prompt
            output[j] += rates[k] * float(values[inside] @ probs[inside])
    return [
        TypeStats(
            float(r),
            float(p / r) if r > 0 else 0.0,
            float(o / r) if r > 0 else float(e),
            int(e),
        )
        for r, p, o, e in zip(rate, prompt, output, edges, strict=True)
    ]


def threshold_search(
    n_of: Callable[[float], list[int]],
    delta_t: Callable[[Sequence[int]], float],
    keeps_up: Callable[[Sequence[int], float], bool],
    fits: Callable[[Sequence[int]], bool],
) -> list[int]:
    """The thresholds ``n_of(c)`` (non-decreasing in ``c``) for the smallest ``c`` whose
    iteration time ``delta_t(n)`` keeps up (``keeps_up(n, dt)``), found by raising ``c`` to
    the last iteration time; if the memory (``fits``) binds first, the largest ``c`` whose
    thresholds fit (``n_of(0)`` if none does)."""
    c = 0.0
    for _ in range(100_000):
        n = n_of(c)
        if not fits(n):
            break
        dt = delta_t(n)
        if keeps_up(n, dt):
            return n
        c = dt if dt > c else math.nextafter(c, math.inf)
    lo, hi = 0.0, c  # memory-bound: the largest c whose thresholds fit
    if not fits(n_of(lo)):
        return n_of(lo)
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fits(n_of(mid)) else (lo, mid)
    return n_of(lo)


def iteration_seconds(
    seconds: Callable[[int, int, int], float],
    budget: int,
    slots: int,
    x: float,
    m: float,
    kv: float,
    requests: float,
) -> float:
    """Seconds of one iteration's work: ``x`` prefill and ``m`` decode tokens reading ``kv``
    tokens of context, ``requests`` request slots, in as few batches of at most ``budget``
    tokens and ``slots`` requests as can hold them; ``seconds(prefill, decode, kv_read)``:
    the engine's batch time (s)."""
    parts = max(1, math.ceil((x + m) / budget), math.ceil(requests / slots))
    return parts * seconds(round(x / parts), round(m / parts), round(kv / parts))


def fluid_thresholds(
    stats: Sequence[TypeStats],
    seconds: Callable[[int, int, int], float],
    budget: int,
    slots: int,
    limit: int,
    block: int,
) -> list[int]:
    """``n_j`` per type from the fluid model (the module docstring): the smallest
    ``n_j = max(1, ceil(c lambda_j))`` with ``Delta T(n) <= n_j / lambda_j`` for every type,
    or, if its memory ``M^pi`` exceeds ``limit`` blocks of ``block`` tokens, the largest such
    ``n`` whose memory fits. ``Delta T(n)``: the seconds of the batches that carry ``n_j``
    prompts and ``n_j`` decode tokens per decode stage of each type, in as few batches of at
    most ``budget`` tokens and ``slots`` requests as can hold them; ``seconds(prefill, decode,
    kv_read)``: the engine's batch time (s)."""

    def n_of(c: float) -> list[int]:
        return [max(1, math.ceil(c * s.rate - 1e-9)) for s in stats]

    def delta_t(n: Sequence[int]) -> float:
        x = m = kv = requests = 0.0
        for nj, s in zip(n, stats, strict=True):
            x += nj * s.prompt
            m += nj * s.output
            kv += nj * s.output * (s.prompt + (s.output - 1) / 2)
            requests += nj * (s.output + 1)
        return iteration_seconds(seconds, budget, slots, x, m, kv, requests)

    def keeps_up(n: Sequence[int], dt: float) -> bool:
        return all(dt <= nj / s.rate for nj, s in zip(n, stats, strict=True) if s.rate > 0)

    def fits(n: Sequence[int]) -> bool:
        memory = 0
        for nj, s in zip(n, stats, strict=True):
            lo = round(s.prompt)
            memory += nj * sum(-(-t // block) for t in range(lo, lo + round(s.output) + 1))
        return memory <= limit

    return threshold_search(n_of, delta_t, keeps_up, fits)


def engine_limits(
    ctx: AdmissionContext,
) -> tuple[Callable[[int, int, int], float], int, int, int, int]:
    """What a threshold search reads of the engine: its batch time (s, of prefill, decode and
    KV-read tokens), token budget, request slots (``max_seqs``, else unbounded), the cache's
    blocks less its watermark, and the block size (tokens)."""
    kv, eng = ctx.kv, ctx.engine
    slots = eng.max_seqs if eng.max_seqs is not None else 1 << 62
    limit = kv.blocks - kv.watermark_blocks
    return eng.batch_time.seconds, eng.token_budget, slots, limit, kv.block_size


class Wait(QueuedRule):
    """A type's oldest ``n_j`` prompts together, once ``n_j`` of that type wait."""

    def __init__(self, spec: WaitAdmission, ctx: AdmissionContext) -> None:
        super().__init__(spec, ctx)
        self.edges = list(spec.types) if spec.types is not None else default_types(ctx)
        if spec.thresholds is not None:
            self.thresholds = list(spec.thresholds)
        else:
            stats = type_stats(self.edges, ctx)
            self.thresholds = fluid_thresholds(stats, *engine_limits(ctx))
        self.queues: list[list[tuple[int, Any]]] = [[] for _ in self.edges]  # by arrival

    @property
    def label(self) -> str:
        """The rule with its types (tokens) and thresholds (requests)."""
        return f"wait(types={self.edges}, thresholds={self.thresholds})"

    def file(self, job: Any) -> None:
        j = min(bisect_left(self.edges, job.pred), len(self.edges) - 1)
        heapq.heappush(self.queues[j], (job.id, job))

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
        chosen: dict[int, list[Any]] = {}
        if not mem.swapped:
            room = mem.free - reserve - (mem.watermark if mem.resident else 0)
            allowed = set(order)
            tokens = count = 0
            for k in order:  # the resident (partly prefilled) prompts are shown first
                for job in waiting[k]:
                    if not job.blocks:
                        break
                    tokens += job.pre_left
                    count += 1
            for q, nj in zip(self.queues, self.thresholds, strict=True):
                if len(q) < nj or tokens >= budget or count + nj > slots:
                    continue
                group: list[tuple[int, Any]] = []
                aside: list[tuple[int, Any]] = []
                while q and len(group) < nj:
                    entry = heapq.heappop(q)
                    (group if entry[1].cls in allowed else aside).append(entry)
                need = sum(mem.blocks_for(job.pre_left + 1) for _, job in group)
                if len(group) < nj or need > room:
                    aside += group
                    group = []
                for entry in aside:
                    heapq.heappush(q, entry)
                room -= need if group else 0
                for _, job in group:
                    chosen.setdefault(job.cls, []).append(job)
                    tokens += job.pre_left
                    count += 1
        return self.show(waiting, order, chosen)
