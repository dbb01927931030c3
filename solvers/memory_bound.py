"""The memory bound of an engine with a limited KV cache, from Little's law (``docs/capacity.md``,
memory).

A request holds KV-cache memory from its admission to its departure. By Little's law the mean
KV in use is ``lambda * E[H]``, with ``H`` the KV-token-seconds one request holds (tokens x
seconds), and it can never exceed the cache's ``M`` tokens, so a stable engine needs

    lambda * E[H] <= M.

**What a request holds.** With the simulator's rules (:mod:`policyopt.sim.kv_memory`) a request
of ``p`` prompt and ``d`` output tokens holds, in the fewest batches it can run in (its whole
prompt in one batch, then one batch per output token, the first output token coming from the
first decode batch):

* during its prefill batch, the blocks of its ``p`` prompt tokens;
* during its ``i``-th decode batch (``i = 1 .. d``), the blocks of ``p + i`` tokens (the block
  for the token being decoded is taken when the batch starts).

so, with blocks of ``B`` tokens and ``r(x) = B * ceil(x / B)``, it holds

    h(p, d) = sum_{i=0..d} r(p + i)    token-batches (tokens x batches),

which is ``(d + 1) p + d (d + 1) / 2`` for ``B = 1``. ``E[h]`` is taken over the workload's
lengths (prompt and output independent, from their pmf tables; a trace's own pairs). Each
batch a request is in lasts ``s`` seconds, so ``E[H] = s * E[h]``.

**Which batch time.** Rate balance ties the batch to the rate: at ``lambda`` requests/s the
engine processes ``lambda * m`` tokens/s (``m = m_p + m_d``), in batches of ``n`` tokens that
take ``t(n)`` each, so ``n = lambda * m * t(n)`` and the mean KV in use is
``lambda * t(n) * E[h] = n * E[h] / m``. A full cache therefore means batches of

    n_mem = M * m / E[h]                                          tokens

on average, and:

* ``n_mem >= n*`` (the capacity-reaching batch): even at the token bound ``lambda*`` the cache
  is not full (``n* E[h] / m <= M``); memory would fill at ``lambda_mem = M / (t(n*) E[h])``
  ``>= lambda*``: **tokens bind**;
* ``n_mem < n*``: with a full cache the engine runs batches of about ``n_mem`` tokens taking
  ``t(n_mem)`` each and completes ``lambda_mem = M / (t(n_mem) E[h]) <= lambda*`` requests/s,
  its memory-limited throughput: **memory binds**.

So ``lambda_mem = M / E[H]`` with ``E[H] = s E[h]`` and ``s = t(min(n_mem, n*))``. Which bound
binds is decided by ``n_mem < n*`` alone, whatever the batch time.

**Bound or approximation.** ``h`` is a lower bound on the token-batches a request holds: a
prompt prefilled in two chunks, a prompt admitted while the batch is full, a preempted request
(recomputed or swapped) all hold more. The batch time is the fluid one, exact when every batch
takes the same time; batch sizes fluctuate around ``n_mem``, and on a staircase the batches
that cross a step take longer (``t(n_mem)`` just below a step is optimistic) while those that
fall a step lower take less. ``lambda_mem`` is therefore an estimate, not a bound (measured
against the simulator: from 4% low to 13% high, ``docs/capacity.md``). A true bound follows
from the shortest batch ``t_min``: ``lambda <= M / (t_min E[h])``
(:attr:`MemoryBound.lambda_mem_upper`), reached when the full cache runs batches no longer
than the shortest (for the staircase, ``n_mem`` within its first step). Since no batch of an
engine with ``n* = b`` takes longer than ``t(n*)``, ``M / (t(n*) E[h])``
(:attr:`MemoryBound.lambda_mem_capacity_batch`, never above ``lambda_mem``) is the
conservative figure: the throughput of a full cache if every batch were a capacity batch.
The count also assumes every decoder is served in every batch, which ``max_seqs`` can break
(a decoder waiting for a slot holds its memory).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from policyopt.errors import SpecError
from policyopt.model.engine import EngineSpec
from policyopt.model.network import LLMEngine, NetworkSpec
from policyopt.model.workload import TraceArrivals, Workload, read_trace
from policyopt.solvers.capacity import capacity, capacity_point
from policyopt.solvers.traffic import Traffic


def _lengths(workload: Workload) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(prompts, outputs, weights)``: every pair of lengths with its probability (prompt and
    output independent; a trace: its requests, each with weight ``1 / N``)."""
    if isinstance(workload.arrival, TraceArrivals):
        _, p, d = read_trace(workload.arrival.path)
        return p, d, np.full(len(p), 1.0 / len(p))
    pv, pp = workload.prompt_dist.pmf(workload.max_prompt_len)
    dv, dp = workload.output_dist.pmf(workload.max_output_len)
    keep_p, keep_d = pp > 0, dp > 0
    pv, pp, dv, dp = pv[keep_p], pp[keep_p], dv[keep_d], dp[keep_d]
    return (
        np.repeat(pv, len(dv)),
        np.tile(dv, len(pv)),
        np.outer(pp, dp).reshape(-1),
    )


def kv_token_batches(
    workload: Workload,
    block_size: int = 1,
    held: Literal["allocated", "computed"] = "allocated",
) -> float:
    """``E[h]``: KV tokens x batches one request of ``workload`` holds in its fewest batches.

    * ``allocated`` (what the cache's ``M`` limits): the blocks of ``p`` tokens during its
      prefill batch and of ``p + i`` tokens during its ``i``-th decode batch,
      ``sum_{i=0..d} B ceil((p + i) / B)`` (``(d + 1) p + d (d + 1) / 2`` for ``B = 1``);
    * ``computed`` (the simulator's ``kv_mean``: tokens already computed, no blocks): nothing
      during the prefill batch, ``p + i - 1`` during the ``i``-th decode batch,
      ``d p + d (d - 1) / 2``; ``block_size`` is ignored.

    Expectation over the workload's lengths (prompt and output independent; a trace: its
    pairs). Multiply by a batch time (seconds) for KV-token-seconds.
    """
    p, d, w = _lengths(workload)
    p = p.astype(np.float64)
    d = d.astype(np.float64)
    if held == "computed":
        return float(w @ (d * p + d * (d - 1) / 2))
    if held != "allocated":
        raise SpecError("held", f"unknown convention {held!r}", "use allocated or computed")
    block = int(block_size)
    top = int(p.max() + d.max())
    # prefix[x] = sum_{y < x} B ceil(y / B): h(p, d) = prefix[p + d + 1] - prefix[p]
    x = np.arange(top + 1, dtype=np.float64)
    rounded = block * np.ceil(x / block)
    prefix = np.concatenate([[0.0], np.cumsum(rounded)])
    pi, di = p.astype(np.int64), d.astype(np.int64)
    return float(w @ (prefix[pi + di + 1] - prefix[pi]))


def memory_rate(
    engine: EngineSpec, kv_per_token: float, prefill_share: float
) -> tuple[float, float, float]:
    """``(rate, n_mem, s)``: the token rate (tokens/s) of an engine whose KV cache is full, for
    work that holds ``kv_per_token`` token-batches of KV per token of work (``E[h] / m``).

    ``n_mem = M / kv_per_token`` is the mean batch (tokens) of a full cache, ``s`` the seconds
    of such a batch, ``t(min(n_mem, n*))`` (module docstring), and ``rate = n_mem / s``
    (above the capacity ``mu`` when ``n_mem > n*``: memory does not bind). The batch time is
    taken at ``prefill_share`` (it matters for the ``affine`` model only). ``engine.kv_cache``
    must be set.
    """
    if engine.kv_cache is None:
        raise SpecError("engine.kv_cache", "no KV cache: memory does not bind", "give kv_cache")
    n_mem = engine.kv_cache.capacity / kv_per_token
    _, best, t_best = capacity_point(engine, prefill_share)
    if n_mem >= best:
        return n_mem / t_best, n_mem, t_best
    s = float(engine.batch_seconds(np.array([n_mem]), prefill_share)[0])
    return n_mem / s, n_mem, s


@dataclass(frozen=True)
class MemoryBound:
    """The memory bound of one engine for one workload (module docstring).

    * ``kv_capacity``: ``M``, tokens (whole blocks of ``block_size`` tokens);
    * ``kv_token_batches``: ``E[h]``, KV tokens x batches a request holds (allocated blocks);
    * ``mem_batch``: ``n_mem = M m / E[h]``, the mean batch of a full cache, tokens;
    * ``batch_ms``: ``s = t(min(n_mem, n*))``, ms; ``kv_token_seconds``: ``E[H] = s E[h]``,
      KV-token-seconds per request;
    * ``lambda_mem = M / E[H]``, requests/s: the rate at which memory binds;
    * ``capacity_batch_ms``: ``t(n*)``, ms; ``lambda_mem_capacity_batch``:
      ``M / (t(n*) E[h])``, requests/s: every batch as long as the capacity batch (the
      conservative figure, never above ``lambda_mem``);
    * ``fastest_batch_ms``: ``t_min``, the shortest batch of the engine, ms;
      ``lambda_mem_upper = M / (t_min E[h])``, requests/s: a true upper bound on the rate any
      scheduler carries with this cache (every request holds at least ``h`` token-batches, each
      batch lasts at least ``t_min``, and the mean KV in use is at most ``M``);
    * ``lambda_star`` (the token bound), ``binds`` (``memory`` when ``lambda_mem <
      lambda_star``, else ``tokens``), ``lambda_max = min(lambda_mem, lambda_star)``;
    * ``rate``: the workload's rate, requests/s; ``kv_load = rate / lambda_mem``.
    """

    kv_capacity: int
    block_size: int
    kv_token_batches: float
    mem_batch: float
    batch_ms: float
    kv_token_seconds: float
    lambda_mem: float
    capacity_batch_ms: float
    lambda_mem_capacity_batch: float
    fastest_batch_ms: float
    lambda_mem_upper: float
    lambda_star: float
    binds: str
    lambda_max: float
    rate: float
    kv_load: float

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def memory_bound(engine: EngineSpec, workload: Workload) -> MemoryBound:
    """The memory bound of ``engine`` (which must have a ``kv_cache``) for ``workload``."""
    kv = engine.kv_cache
    if kv is None:
        raise SpecError(
            "engine.kv_cache",
            "the engine has no KV cache, so there is no memory bound",
            "give engine.kv_cache (tokens: M, or gpu: {})",
        )
    cap = capacity(engine, workload)
    h = kv_token_batches(workload, kv.block_size)
    m = cap.mean_tokens
    rate, n_mem, s = memory_rate(engine, h / m, cap.mean_prompt / m)
    lam_mem = rate / m
    lam_cap = kv.capacity / (cap.batch_ms / 1000.0 * h)
    share = cap.mean_prompt / m
    t_min = float(engine.batch_seconds(np.arange(1, engine.token_budget + 1), share).min())
    return MemoryBound(
        kv_capacity=kv.capacity,
        block_size=kv.block_size,
        kv_token_batches=h,
        mem_batch=n_mem,
        batch_ms=1000.0 * s,
        kv_token_seconds=s * h,
        lambda_mem=lam_mem,
        capacity_batch_ms=cap.batch_ms,
        lambda_mem_capacity_batch=lam_cap,
        fastest_batch_ms=1000.0 * t_min,
        lambda_mem_upper=kv.capacity / (t_min * h),
        lambda_star=cap.lambda_star,
        binds="memory" if lam_mem < cap.lambda_star else "tokens",
        lambda_max=min(lam_mem, cap.lambda_star),
        rate=cap.rate,
        kv_load=cap.rate / lam_mem,
    )


@dataclass(frozen=True)
class NetworkMemory:
    """The memory data of a network's static planning LP.

    ``kv_capacity[j]``: ``M_j`` tokens of engine ``j`` (``inf`` without a KV cache);
    ``kv_seconds[k, j]``: ``E[H_kj]``, KV-token-seconds a job of class ``k`` holds per visit
    at engine ``j`` (0 where ``j`` has no cache or ``k`` is not eligible); ``batch_seconds[j]``:
    the ``s_j`` used (:func:`memory_rate` at the engine's nominal class mix; 0 without a cache).
    """

    kv_capacity: np.ndarray
    kv_seconds: np.ndarray
    batch_seconds: np.ndarray

    @property
    def limited(self) -> bool:
        """Whether some engine has a KV cache."""
        return bool(np.isfinite(self.kv_capacity).any())


def network_memory(net: NetworkSpec, tr: Traffic) -> NetworkMemory:
    """``E[H_kj] = s_j E[h_kj]`` for every class ``k`` at every engine ``j`` with a KV cache.

    ``E[h_kj]`` counts the blocks of engine ``j`` (:func:`kv_token_batches`); ``s_j`` is the
    batch time where engine ``j``'s memory fills at its nominal mix of classes (the traffic's
    split): the classes' KV per token of work, weighted by their nominal work at ``j``, in
    :func:`memory_rate` (``t(n*_j)`` when memory fills beyond the capacity batch).
    """
    topo = net.topology
    n_cls, n_eng = topo.n_classes, topo.n_engines
    capacity_j = np.full(n_eng, np.inf)
    seconds = np.zeros((n_cls, n_eng))
    batch = np.zeros(n_eng)
    for j, name in enumerate(topo.engines):
        eng = net.engines[name]
        if not isinstance(eng, LLMEngine) or eng.kv_cache is None:
            continue
        spec = eng.engine_spec()
        kv = eng.kv_cache
        capacity_j[j] = kv.capacity
        h = np.zeros(n_cls)
        for k in range(n_cls):
            if j in topo.eligible[k]:
                h[k] = kv_token_batches(net.classes[topo.classes[k]].workload(), kv.block_size)
        work_j = tr.rates * tr.split[:, j] * tr.work  # tokens/s of each class at j
        share = float(tr.prefill_share[j])
        if work_j.sum() > 0:
            per_token = float(work_j @ (h / np.where(tr.work > 0, tr.work, 1.0))) / work_j.sum()
            batch[j] = memory_rate(spec, per_token, share)[2]
        else:  # no nominal work: the capacity batch
            batch[j] = capacity_point(spec, share)[2]
        seconds[:, j] = batch[j] * h
    return NetworkMemory(kv_capacity=capacity_j, kv_seconds=seconds, batch_seconds=batch)
