"""Event-driven simulator of one LLM engine with iteration-level batching.

Time is continuous (seconds). A batch is formed when the previous one ends (or, on an idle
engine, when a request arrives); requests that arrive during a batch are seen when the next
batch is formed. The engine's scheduler (:mod:`policyopt.sim.schedulers`, the same objects the
network simulator uses) forms each batch; every batch obeys the rules of ``docs/model.md``:
prefill tokens of a request before its decode tokens, at most one decode token per request per
batch, no decode token in the batch that finishes a request's prefill, at most
``token_budget`` tokens and (optionally) ``max_seqs`` requests, a prefill chunk taking one
request slot. This module is the single-class driver of those rules, specialised for speed;
a one-engine, one-class network gives the same batches (``tests/test_engine_crosscheck.py``).

How it stays fast (no per-token Python work):

* Requests are numbered in arrival order. All four schedulers prefill first-come first-served,
  so the requests still waiting for prefill are the contiguous range ``[pf, n_visible)`` and at
  most the head ``pf`` is partly prefilled; the prefill work waiting is one running sum.
* Decoding requests sit in arrival order in an insertion-ordered dict; a batch serves the
  oldest ``m`` of them (every scheduler serves decodes oldest first). Each has a finish key
  with ``remaining decode tokens = key - G``, where ``G`` counts decode batches, filed in a
  bucket queue by key (a dict from key to requests). A batch that serves every decoder only
  increments ``G`` and takes out the bucket ``G``. A batch that serves a prefix also delays
  the unserved suffix by one: a few requests one by one, many as a range add on an array
  indexed by request; filed keys are then lower bounds, corrected lazily when ``G`` reaches
  them. Only the oldest ``min(b, max_seqs)`` decoders, the only ones a batch can serve, are
  filed; the others wait outside in arrival order and enter as older ones finish (never
  served, their key is then ``G`` plus their output length), so an overloaded engine's long
  decode queue costs nothing per batch.
* The scheduler's batch depends only on the queues it sees. With no prompt waiting they show
  only the number of decoders, so the batch formed for that number is reused. A decode-only
  batch repeats until a request arrives or finishes, and such runs are advanced in one step:
  in closed form when every decoder is served and no prompt waits (equal to rounding), else
  batch-by-batch sums in a tight loop (the same to the last bit as forming each batch).
* Requests are generated in blocks; finished blocks are folded into streaming statistics and
  dropped, so memory stays bounded however long the run.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

import numpy as np

from policyopt.errors import SpecError
from policyopt.model.batch_time import AffineBatchTime
from policyopt.model.engine import EngineSpec
from policyopt.model.scheduler import SchedulerSpec
from policyopt.model.workload import RequestStreams
from policyopt.sim.batching import BatchRecord, Counters, batch_time_table
from policyopt.sim.batching import not_work_conserving as nwc
from policyopt.sim.schedulers import BatchPlan, Scheduler, make_scheduler
from policyopt.sim.stats import LogHistogram, WindowMeans, overlap_by_window

BIG = 1 << 62
INF = math.inf


ORDER = (0,)  # the class order of a single-class engine


def _left(w_p: list[int], start: int, stop: int, done: int) -> Iterator[int]:
    """Prefill tokens left of the prompts at window positions ``start..stop-1``, the first
    with ``done`` tokens already prefilled."""
    yield w_p[start] - done
    for j in range(start + 1, stop):
        yield w_p[j]


def _file(due: dict[int, list[int]], key: int, i: int) -> None:
    """File request ``i`` under finish key ``key``."""
    ids = due.get(key)
    if ids is None:
        due[key] = [i]
    else:
        ids.append(i)


def _delay_unserved(
    alive: dict[int, int],
    delays: np.ndarray,
    m: int,
    wait: int,
    q: int,
    outer: deque[int],
    base: int,
) -> bool:
    """The ``wait`` filed decoders after the ``m`` oldest were not served by ``q`` batches:
    their finish keys move up by ``q``. A few are moved one by one in ``alive``; many at once
    as a range of window positions in ``delays`` (then True: ``delays`` holds something)."""
    if wait <= 8:
        for i in islice(reversed(alive), wait):
            alive[i] += q
        return False
    if m <= wait:
        first = next(islice(alive, m, None))
    else:
        first = next(islice(reversed(alive), wait - 1, None))
    end = outer[0] if outer else next(reversed(alive)) + 1
    delays[first - base : end - base] += q
    return True


class _OneClass:
    """The single-engine queues as a scheduler reads them (one class, index 0): set
    ``D``, ``start``, ``stop`` and ``done`` (window positions) before asking the scheduler;
    ``w_p`` is the window's prompt lengths."""

    __slots__ = ("D", "done", "start", "stop", "w_p")

    def __init__(self) -> None:
        self.D = self.start = self.stop = self.done = 0
        self.w_p: list[int] = []

    def decoding(self, k: int) -> int:
        return self.D

    def waiting(self, k: int) -> int:
        return self.stop - self.start

    def prompts(self, k: int) -> tuple[Iterable[int], int]:
        start, stop = self.start, self.stop
        if stop - start <= 16:  # a short queue: a copy is cheaper than an iterator
            return self.w_p[start:stop], self.done
        return map(self.w_p.__getitem__, range(start, stop)), self.done

    def remaining(self) -> Iterable[int]:
        """Prefill tokens left of each waiting prompt, oldest first."""
        w_p, start, stop = self.w_p, self.start, self.stop
        if stop - start <= 16:  # a short queue: a copy
            left = w_p[start:stop]
            if left:
                left[0] -= self.done
            return left
        return _left(w_p, start, stop, self.done)


class RequestList:
    """An explicit, finite list of requests (arrival s, prompt and output tokens).

    A request source like :class:`~policyopt.model.workload.Workload`, for tests and traces
    built in Python.
    """

    def __init__(self, arrivals: list[float], prompts: list[int], outputs: list[int]) -> None:
        self.arrivals = np.asarray(arrivals, dtype=np.float64)
        self.prompts = np.asarray(prompts, dtype=np.int64)
        self.outputs = np.asarray(outputs, dtype=np.int64)
        n = len(self.arrivals)
        if not (len(self.prompts) == len(self.outputs) == n):
            raise SpecError("requests", "arrivals, prompts and outputs differ in length", "")
        if n and (np.any(np.diff(self.arrivals) < 0) or self.arrivals[0] < 0):
            raise SpecError("requests.arrivals", "not sorted and >= 0", "sort them")
        if n and (self.prompts.min() < 1 or self.outputs.min() < 1):
            raise SpecError("requests", "lengths must be >= 1 token", "fix the lengths")

    def sample_block(
        self, rngs: RequestStreams, start_time: float, start_index: int, n: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sl = slice(start_index, start_index + n)
        return self.arrivals[sl], self.prompts[sl], self.outputs[sl]


@dataclass
class RequestStats:
    """Streaming per-request statistics over requests arriving after warm-up."""

    latency: LogHistogram = field(default_factory=LogHistogram)
    ttft: LogHistogram = field(default_factory=LogHistogram)
    tpot: LogHistogram = field(default_factory=LogHistogram)
    sums: dict[str, float] = field(
        default_factory=lambda: {"latency": 0.0, "ttft": 0.0, "tpot": 0.0, "n_tpot": 0.0}
    )
    completed: int = 0


class EngineSimulator:
    """Simulate one engine under one scheduler, fed by a request source.

    Parameters: ``engine`` and ``scheduler`` specs; ``source`` with a ``sample_block`` method
    (a :class:`~policyopt.model.workload.Workload` or :class:`RequestList`); ``horizon`` and
    ``warmup`` in seconds; ``seed``; ``samples`` points of the time series;
    ``first_token`` (``"decode"`` or ``"prefill"``); ``record_batches`` to keep every batch's
    composition; ``start_decoding`` (the first requests of the source that are already
    prefilled and decoding at time 0) and ``start_prefilled`` (tokens of the next request
    already prefilled) to start from a given state. ``coalesce=False`` forms every batch one
    by one instead of advancing runs of identical decode-only batches in one step (the same
    batches; for testing that shortcut).
    """

    def __init__(
        self,
        engine: EngineSpec,
        scheduler: SchedulerSpec,
        source: object,
        *,
        horizon: float,
        warmup: float = 0.0,
        seed: int = 0,
        samples: int = 2000,
        first_token: str = "decode",
        record_batches: bool = False,
        start_decoding: int = 0,
        start_prefilled: int = 0,
        block: int = 16384,
        windows: int = 20,
        coalesce: bool = True,
    ) -> None:
        if not horizon > 0:
            raise SpecError("run.horizon_s", f"{horizon} is not > 0", "give a positive horizon")
        self.engine = engine
        self.sched = scheduler if isinstance(scheduler, Scheduler) else make_scheduler(scheduler)
        self.scheduler = self.sched.spec
        self.queues = _OneClass()
        self.source = source
        self.horizon = float(horizon)
        self.warmup = float(warmup)
        self.rngs = RequestStreams(seed)
        self.first_token_at_prefill = first_token == "prefill"
        self.record = record_batches
        self.batches: list[BatchRecord] = []
        self.block = int(block)
        self.coalesce = bool(coalesce)
        self.decode_plans: dict[int, BatchPlan] = {}  # decoders -> the batch, no prompt waiting

        bt = engine.batch_time
        self.b = int(engine.token_budget)
        self.k = int(engine.max_seqs) if engine.max_seqs is not None else BIG
        self.affine = bt if isinstance(bt, AffineBatchTime) else None
        self.table = batch_time_table(engine)

        # request window: global ids [base, base + len(w_arr)); lists for the hot loop
        self.base = 0
        self.generated = 0
        self.exhausted = False
        self.last_arrival = 0.0
        self.w_arr = np.zeros(0)
        self.w_arr_l: list[float] = []
        self.w_p: list[int] = []
        self.w_d: list[int] = []
        self.w_pn = np.zeros(0, dtype=np.int64)
        self.w_dn = np.zeros(0, dtype=np.int64)
        self.w_cumtok = np.zeros(1, dtype=np.int64)  # tokens of global ids < base + i
        self.w_ftok: list[float] = []
        self.w_fin: list[float] = []

        # engine state
        self.now = 0.0
        self.n_vis = 0  # requests seen (arrived by the last batch formation)
        self.pf = 0  # oldest request whose prefill is unfinished
        self.pf_done = 0  # tokens of it already prefilled
        self.pf_backlog = 0  # prefill tokens waiting among seen requests
        self.G = 0  # decode batches so far
        self.alive: dict[int, int] = {}  # filed decoding request -> finish key before delays
        self.due: dict[int, list[int]] = {}  # filed finish key (a lower bound) -> requests
        self.cap = min(self.b, self.k)  # decoders a batch can serve: the oldest are filed
        self.outer: deque[int] = deque()  # the other decoders, oldest first (never served yet)
        self.delays = np.zeros(0, dtype=np.int64)  # by window position: batches waited
        self.spread = False  # whether delays holds anything
        self.delayed = False  # whether filed keys may be lower bounds (some decoder waited)
        self.unstarted: deque[int] = deque()  # decoding requests with no decode token yet
        self.kv = 0
        self.processed = 0
        self.completed = 0

        # statistics
        self.counters = Counters()
        self.warm_counters: Counters | None = None if self.warmup > 0 else Counters()
        self.processed_at_warmup = 0 if self.warmup <= 0 else -1
        self.kv_max = 0
        self.req = RequestStats()
        end = max(self.horizon, self.warmup + 1e-9)
        self.lat_windows = WindowMeans(self.warmup, end, windows)
        self.done_windows = WindowMeans(self.warmup, end, windows)
        self.n_windows_area = np.zeros(windows)
        self.samples = int(samples)
        self.sample_t = np.linspace(0.0, self.horizon, self.samples, endpoint=False)
        self.sample_n = np.full(self.samples, np.nan)
        self.sample_backlog = np.full(self.samples, np.nan)
        self.sample_kv = np.full(self.samples, np.nan)
        self.next_sample = 0
        self.finished = False
        self.last_batch = (0.0, 0.0, 0)  # (start s, end s, tokens) of the latest batch

        self._extend(self.pf, self.spread, self.delayed)
        self._start_state(int(start_decoding), int(start_prefilled))

    # ------------------------------------------------------------------ request window
    def _extend(self, pf: int, spread: bool, delayed: bool) -> bool:
        """Generate the next block of requests; fold and drop requests that are done. ``pf``,
        ``spread`` and ``delayed``: the state as :meth:`run` holds it (its attributes are
        stored back only at the end of a run); ``spread`` and ``delayed`` are set here."""
        self.spread, self.delayed = spread, delayed
        if self.exhausted:
            return False
        times, prompts, outputs = self.source.sample_block(  # type: ignore[attr-defined]
            self.rngs, self.last_arrival, self.generated, self.block
        )
        if len(times) < self.block:
            self.exhausted = True
        if len(times) == 0:
            return False
        keep = min(pf, next(iter(self.alive))) if self.alive else pf
        drop = keep - self.base
        if drop > 0:
            self._fold(slice(0, drop), final=False)
        if self.spread:  # fold the delays into the keys: the array is made anew below
            delays, base = self.delays, self.base
            for i in self.alive:
                self.alive[i] += delays.item(i - base)
            self.spread = False
        if self.delayed:
            self.delayed = False
            # filed keys were lower bounds: file them exactly (in place: run() holds it)
            due = self.due
            due.clear()
            for i, key in self.alive.items():
                _file(due, key, i)
        prompts = np.asarray(prompts, dtype=np.int64)
        outputs = np.asarray(outputs, dtype=np.int64)
        cumtok = self.w_cumtok[-1] + np.cumsum(prompts + outputs)
        n = len(times)
        nan = math.nan
        self.w_arr = np.concatenate([self.w_arr[drop:], times])
        self.w_arr_l = self.w_arr_l[drop:] + np.asarray(times, dtype=float).tolist()
        self.w_p = self.w_p[drop:] + prompts.tolist()
        self.queues.w_p = self.w_p
        self.w_d = self.w_d[drop:] + outputs.tolist()
        self.w_pn = np.concatenate([self.w_pn[drop:], prompts])
        self.w_dn = np.concatenate([self.w_dn[drop:], outputs])
        self.w_cumtok = np.concatenate([self.w_cumtok[drop:], cumtok])
        self.w_ftok = self.w_ftok[drop:] + [nan] * n
        self.w_fin = self.w_fin[drop:] + [nan] * n
        self.base += max(drop, 0)
        self.generated += n
        self.last_arrival = float(times[-1])
        self.delays = np.zeros(len(self.w_p), dtype=np.int64)
        return True

    def _start_state(self, decoding: int, prefilled: int) -> None:
        if decoding < 0 or prefilled < 0:
            raise SpecError("start", "negative start state", "give counts >= 0")
        if decoding > len(self.w_arr) or (decoding and self.w_arr[decoding - 1] > 0):
            raise SpecError(
                "start_decoding", "the requests decoding at time 0 must arrive at time 0", ""
            )
        for i in range(decoding):
            self._join_decode(i, self.w_d[i])
            self.kv += self.w_p[i]
        self.pf = decoding
        self.n_vis = decoding
        if prefilled:
            if not self.scheduler.chunks:
                raise SpecError(
                    "start_prefilled",
                    f"scheduler {self.scheduler.label!r} cannot hold a half-prefilled prompt",
                    "start with 0 prefilled tokens",
                )
            if decoding >= len(self.w_arr) or prefilled >= self.w_p[decoding]:
                raise SpecError("start_prefilled", "must be below the head's prompt length", "")
            self.pf_done = prefilled
            self.kv += prefilled
        self.pf_backlog = -prefilled
        self.processed = int(sum(self.w_p[:decoding]) + prefilled)

    def _join_decode(self, i: int, key: int) -> None:
        if len(self.alive) < self.cap:
            _file(self.due, key, i)
            self.alive[i] = key
        else:
            self.outer.append(i)
        if not self.first_token_at_prefill:
            self.unstarted.append(i)

    def remaining_decode(self, i: int) -> int:
        """Decode tokens request ``i`` still needs (it must be decoding)."""
        if self.outer and i >= self.outer[0]:  # not filed: never served yet
            return self.w_d[i - self.base]
        key = self.alive[i]
        if self.spread:
            key += self.delays.item(i - self.base)
        return key - self.G

    # ------------------------------------------------------------------ main loop
    def run(
        self,
        until: float | None = None,
        max_batches: int | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> EngineSimulator:
        """Advance until ``until`` seconds (default the horizon) or ``max_batches`` batches.

        ``progress`` is called now and then with the simulated time reached.
        """
        stop = self.horizon if until is None else min(float(until), self.horizon)
        left = left0 = BIG if max_batches is None else int(max_batches)
        # progress is called when `left` falls below this mark (never without a callback)
        mark = left - 2048 if progress is not None else -1
        form = self.sched.form
        sq = self.queues
        decode_plans = self.decode_plans
        b, kmax = self.b, self.k
        table = self.table
        affine = self.affine
        kv_matters = affine is not None and affine.ckv_ms > 0
        coalesce = self.coalesce and not kv_matters
        record = self.record
        warmup = self.warmup
        track_start = not self.first_token_at_prefill
        sample_t = self.sample_t.tolist()
        n_samples = self.samples
        alive, due, unstarted, outer = self.alive, self.due, self.unstarted, self.outer
        cap = self.cap
        take, find = due.pop, due.get
        delays, spread, delayed = self.delays, self.spread, self.delayed

        now = self.now
        n_vis, pf, pf_done, pf_backlog, G = (
            self.n_vis,
            self.pf,
            self.pf_done,
            self.pf_backlog,
            self.G,
        )
        D = len(alive) + len(outer)  # decoding requests: filed, then unfiled
        kv, processed, completed = self.kv, self.processed, self.completed
        processed0 = processed
        c = self.counters
        # batches and tokens are counted by `left` and `processed`
        batches0, tokens0, full_c, nwc_c = c.batches, c.tokens, c.full, c.not_work_conserving
        oor_c, busy_c, kv_area = c.out_of_range, c.busy_time, c.kv_area
        kv_max = self.kv_max
        last_start, last_end, last_n = self.last_batch
        next_sample = self.next_sample
        t_sample = sample_t[next_sample] if next_sample < n_samples else INF
        base = self.base
        w_arr, w_p, w_d, w_cumtok = self.w_arr_l, self.w_p, self.w_d, self.w_cumtok
        w_ftok, w_fin = self.w_ftok, self.w_fin
        L = len(w_arr)
        warm = self.warm_counters is not None
        dec: list[int] = []
        chunks: list[tuple[int, int]] = []

        # (no nested function reads these locals: closure cells would slow every access;
        # the state is stored back at the end)
        j = n_vis - base  # requests seen, as a window position
        # when the next request arrives (-inf: the window must be extended first)
        t_next = w_arr[j] if j < L else (INF if self.exhausted else -INF)
        while left > 0 and now < stop:
            # ---- arrivals that happened by now become visible
            if t_next <= now:
                while True:
                    while j < L and w_arr[j] <= now:
                        pf_backlog += w_p[j]
                        j += 1
                    if j < L or self.exhausted:
                        break
                    n_vis = base + j
                    self._extend(pf, spread, delayed)
                    base, w_arr, w_p, w_d = self.base, self.w_arr_l, self.w_p, self.w_d
                    w_cumtok, w_ftok, w_fin = self.w_cumtok, self.w_ftok, self.w_fin
                    delays, spread, delayed = self.delays, self.spread, self.delayed
                    L = len(w_arr)
                    j = n_vis - base
                n_vis = base + j
                t_next = w_arr[j] if j < L else INF
            # ---- warm-up boundary
            if not warm and now >= warmup:
                warm = True
                self.warm_counters = Counters(
                    batches0 + left0 - left,
                    tokens0 + processed - processed0,
                    full_c,
                    nwc_c,
                    oor_c,
                    busy_c,
                    kv_area,
                )
                self.processed_at_warmup = processed
            Q = n_vis - pf
            # ---- time-series samples (state at the start of the batch)
            if now >= t_sample:
                nsys = n_vis - completed
                backlog = int(w_cumtok[j]) - processed
                while next_sample < n_samples and sample_t[next_sample] <= now:
                    self.sample_n[next_sample] = nsys
                    self.sample_backlog[next_sample] = backlog
                    self.sample_kv[next_sample] = kv
                    next_sample += 1
                t_sample = sample_t[next_sample] if next_sample < n_samples else INF
            # ---- idle engine: jump to the next arrival
            if not D and not Q:
                if j >= L:  # no more requests
                    now = stop
                    break
                ta = w_arr[j]
                if ta >= stop:
                    now = stop
                    break
                nsys = n_vis - completed
                while next_sample < n_samples and sample_t[next_sample] < ta:
                    self.sample_n[next_sample] = nsys
                    self.sample_backlog[next_sample] = 0
                    self.sample_kv[next_sample] = kv
                    next_sample += 1
                t_sample = sample_t[next_sample] if next_sample < n_samples else INF
                now = ta
                continue

            # ---- the scheduler forms the batch (with no prompt waiting, the queues it sees
            # are the number of decoders alone: the batch it formed for them before)
            sq.D = D
            sq.start = pf - base
            sq.stop = j
            sq.done = pf_done
            if Q or not coalesce:
                plan = form(sq, ORDER, b, kmax)
            else:
                plan = decode_plans.get(D)
                if plan is None:
                    if len(decode_plans) >= 4096:  # bounded: a long decode queue grows forever
                        decode_plans.clear()
                    plan = decode_plans[D] = form(sq, ORDER, b, kmax)
            x = plan.x
            m = plan.m
            n = x + m

            # ---- runs of identical decode-only batches, advanced in one step. The plan
            # depends only on the queues: it repeats until a request arrives or finishes
            # (or the clock reaches a sample time, the warm-up or the end).
            if coalesce and not x and m and G + 1 not in due:  # the batch finishes nobody
                if not Q and m == D:  # every decoder served, no prompt: in closed form
                    tau = table[D] if table is not None else affine.seconds(0, D, 0)  # type: ignore[union-attr]
                    edge = min(t_next, stop, t_sample, INF if warm else warmup)
                    k = left - 1
                    if edge < INF:
                        ke = int((edge - now) / tau)
                        while ke > 0 and now + ke * tau >= edge:
                            ke -= 1
                        if ke < k:
                            k = ke
                    if k >= 1:  # at most k batches, and only those that finish nobody
                        kk = 1
                        while kk < k and G + kk + 1 not in due:
                            kk += 1
                        k = kk
                        if record:
                            ids = list(alive)
                            for q in range(k):
                                self.batches.append(
                                    BatchRecord(now + q * tau, now + (q + 1) * tau, [], ids)
                                )
                        if unstarted:
                            t1 = now + tau
                            for i in unstarted:
                                w_ftok[i - base] = t1
                            unstarted.clear()
                        kv_area += tau * (k * kv + D * k * (k - 1) / 2)
                        kv += k * D
                        if kv > kv_max:
                            kv_max = kv
                        G += k
                        processed += k * D
                        if b == D:
                            full_c += k
                        if affine is not None and not affine.in_range(D, 0):
                            oor_c += k
                        busy_c += k * tau
                        last_start, last_end, last_n = now + (k - 1) * tau, now + k * tau, D
                        now += k * tau
                        left -= k
                        continue
                else:  # batch by batch: the same sums in the same order
                    tau = table[m] if table is not None else affine.seconds(0, m, 0)  # type: ignore[union-attr]
                    edge = min(t_next, stop, t_sample, INF if warm else warmup)
                    if record:
                        dec = list(islice(alive, m))
                    q = 0
                    t_end = now
                    while True:
                        t0 = t_end
                        t_end = t0 + tau
                        kv_area += kv * tau
                        kv += m
                        busy_c += tau
                        q += 1
                        if record:
                            self.batches.append(BatchRecord(t0, t_end, [], list(dec)))
                        if t_end >= edge or q >= left or G + q + 1 in due:
                            break
                    if kv > kv_max:
                        kv_max = kv
                    if unstarted:  # the first of the batches serves them
                        for _ in range(m - (D - len(unstarted))):
                            w_ftok[unstarted.popleft() - base] = now + tau
                    wait = len(alive) - m  # filed decoders not served: their keys move up
                    if wait > 0:
                        delayed = True
                        if _delay_unserved(alive, delays, m, wait, q, outer, base):
                            spread = True
                    if nwc(m, D + pf_backlog, b, kmax, D, Q, sq.remaining):
                        nwc_c += q
                    if affine is not None and not affine.in_range(m, 0):
                        oor_c += q
                    if m == b:
                        full_c += q
                    G += q
                    processed += q * m
                    last_start, last_end, last_n = t0, t_end, m
                    now = t_end
                    left -= q
                    continue

            if n == 0:  # cannot happen with work present; guard against a frozen clock
                raise RuntimeError(f"empty batch at t={now} with D={D}, Q={Q}")
            # ---- batch time
            if table is not None:
                dt = table[n]
            else:
                kv_read = 0
                if kv_matters:
                    kv_read = pf_done if x else 0  # context of a continued prompt chunk
                    for i, key in islice(alive.items(), m):  # context of each decoder
                        if spread:
                            key += delays.item(i - base)
                        kv_read += w_p[i - base] + w_d[i - base] - (key - G)
                dt = affine.seconds(x, m, kv_read)  # type: ignore[union-attr]
                if not affine.in_range(n, kv_read):  # type: ignore[union-attr]
                    oor_c += 1
            t_end = now + dt
            # ---- KV cache: context held during the batch, then the batch's new tokens
            kv_area += kv * dt
            kv += n
            if kv > kv_max:
                kv_max = kv
            # ---- work conservation: was this the largest feasible batch?
            if n < b and nwc(n, D + pf_backlog, b, kmax, D, Q, sq.remaining):
                nwc_c += 1
            # ---- prompts whose prefill the batch finishes become decoders below
            whole = 0
            if x:
                _, whole, chunk = plan.prefill[0]
                if record:
                    chunks = []
                    if whole:
                        chunks.append((pf, w_p[pf - base] - pf_done))
                        chunks.extend((i, w_p[i - base]) for i in range(pf + 1, pf + whole))
                    if chunk:
                        chunks.append((pf + whole, chunk))
                if whole:
                    pf += whole
                    pf_done = chunk
                else:
                    pf_done += chunk
                pf_backlog -= x
            elif record:
                chunks = []
            # ---- one decode token to each of the oldest m decoding requests
            if m:
                if record:
                    dec = list(islice(alive, m))
                if m != D:
                    # the filed decoders this batch does not serve: their finish keys move up
                    # by one (the unfiled ones have never been served: keys set on filing)
                    wait = len(alive) - m
                    if wait > 0:
                        delayed = True
                        if _delay_unserved(alive, delays, m, wait, 1, outer, base):
                            spread = True
                G += 1
                if unstarted:  # the newest decoders: those served get their first token
                    first_tokens = m - D + len(unstarted)
                    while first_tokens > 0:
                        w_ftok[unstarted.popleft() - base] = t_end
                        first_tokens -= 1
                filed = take(G, None)
                if filed is not None:
                    nd = 0
                    for i in filed:
                        if delayed:  # its key was a lower bound: add the batches it waited
                            key = alive[i] + delays.item(i - base) if spread else alive[i]
                            if key != G:  # file it again
                                ids = find(key)
                                if ids is None:
                                    due[key] = [i]
                                else:
                                    ids.append(i)
                                continue
                        del alive[i]
                        ji = i - base
                        w_fin[ji] = t_end
                        # a finished request frees its whole context: prompt + output tokens
                        kv -= w_p[ji] + w_d[ji]
                        nd += 1
                    if nd:
                        D -= nd
                        completed += nd
                        if outer:  # the oldest unfiled decoders take the places
                            for _ in range(nd if nd < len(outer) else len(outer)):
                                i = outer.popleft()
                                key = G + w_d[i - base]  # never served: all its tokens left
                                alive[i] = key
                                ids = find(key)
                                if ids is None:
                                    due[key] = [i]
                                else:
                                    ids.append(i)
            elif record:
                dec = []
            # ---- requests whose prefill finished join the decode queue
            if whole:
                e = pf - whole
                room = cap - len(alive)  # filed while there is room, the others wait
                if whole > room:
                    outer.extend(range(e + room, pf))
                    end = e + room
                else:
                    end = pf
                while e < end:
                    key = G + w_d[e - base]
                    alive[e] = key
                    ids = find(key)
                    if ids is None:
                        due[key] = [e]
                    else:
                        ids.append(e)
                    e += 1
                D += whole
                if track_start:
                    unstarted.extend(range(pf - whole, pf))
                else:
                    for e in range(pf - whole, pf):
                        w_ftok[e - base] = t_end
            # ---- bookkeeping
            if record:
                self.batches.append(BatchRecord(now, t_end, chunks, dec))
            processed += n
            if n == b:
                full_c += 1
            busy_c += dt
            last_start = now
            last_end = now = t_end
            last_n = n
            left -= 1
            if left < mark:
                mark = left - 2048
                progress(now)  # type: ignore[misc]
        self.now, self.n_vis, self.pf, self.pf_done, self.G = now, n_vis, pf, pf_done, G
        self.pf_backlog = pf_backlog
        self.kv, self.processed, self.completed = kv, processed, completed
        c.batches, c.tokens = batches0 + left0 - left, tokens0 + processed - processed0
        c.full, c.not_work_conserving = full_c, nwc_c
        c.out_of_range, c.busy_time, c.kv_area = oor_c, busy_c, kv_area
        self.kv_max = kv_max
        self.last_batch = (last_start, last_end, last_n)
        self.next_sample = next_sample
        self.spread, self.delayed = spread, delayed
        return self

    # ------------------------------------------------------------------ statistics
    def _fold(self, sl: slice, final: bool) -> None:
        """Fold requests of the window slice ``sl`` into the streaming statistics."""
        a = self.w_arr[sl]
        if a.size == 0:
            return
        f = np.asarray(self.w_ftok[sl], dtype=float)
        e = np.asarray(self.w_fin[sl], dtype=float)
        d = self.w_dn[sl]
        end = self.now if final else math.inf
        # time in system inside the measured windows (Little's law, exact)
        ends = np.where(np.isnan(e), end, e)
        self.n_windows_area += overlap_by_window(
            a, np.minimum(ends, self.horizon), self.done_windows
        )
        done = ~np.isnan(e)
        self.done_windows.add(e[done])
        meas = done & (a >= self.warmup)
        if not meas.any():
            return
        lat = e[meas] - a[meas]
        ttft = f[meas] - a[meas]
        # decode batches after the first token: d - 1, or d when prefill emits the first token
        after = d[meas] - (0 if self.first_token_at_prefill else 1)
        multi = after > 0
        tpot = (e[meas][multi] - f[meas][multi]) / after[multi]
        rs = self.req
        rs.latency.add(lat)
        rs.ttft.add(ttft)
        rs.tpot.add(tpot)
        rs.sums["latency"] += float(lat.sum())
        rs.sums["ttft"] += float(ttft.sum())
        rs.sums["tpot"] += float(tpot.sum())
        rs.sums["n_tpot"] += float(tpot.size)
        rs.completed += int(meas.sum())
        self.lat_windows.add(a[meas], lat)

    def finish(self) -> None:
        """Fold every request still in the window (call once, after the last :meth:`run`)."""
        if self.finished:
            return
        self.finished = True
        vis = self.n_vis - self.base
        # arrivals after the last batch began but before the end are in the system too
        upto = int(np.searchsorted(self.w_arr, self.now, side="right"))
        self._fold(slice(0, max(vis, upto)), final=True)
