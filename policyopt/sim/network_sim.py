"""Event-driven simulator of a network of LLM engines (or classic single-server stations).

It follows a :class:`~policyopt.model.network.NetworkSpec`: workflows arrive (Poisson or
deterministic), visit classes, fork into parallel branches and join, and leave. Each class is
served at one engine (or at one of an eligible set, chosen when the job is created by the
class's routing rule: join-shortest-queue by remaining work, round robin, or random).

**LLM engines** batch as in the single-engine model (``docs/model.md``): a batch is formed when
the previous one ends, or when work reaches an idle engine; the network policy orders the
classes present (:mod:`policyopt.policies`) and the engine's scheduler fills the token budget
in that order, first-come first-served within a class (decode first or prefill first, chunked
or whole prompts, mixed or not, request-level groups, ``max_seqs`` slots). Requests that
arrive during a batch are seen when the next batch is formed. A job's tokens are processed
when its batch is formed; its completion (and the next step of its workflow) happens when the
batch ends.

**Stations** have one or more servers, each serving one job at a time (``docs/stations.md``).
Preemptive-resume (the default): at every arrival and completion the servers hold the first
jobs of the policy's order (FCFS within a class); a preempted job resumes where it stopped.
Non-preemptive: a job in service finishes, and the policy chooses when a server frees up.

Events at the same instant are processed before any engine decides, so jobs created together
(a fork's branches) are seen together. All randomness flows from the seed through separate
streams (one per workflow's arrivals, one per class's work, one for routing), so two policies
see the same arrivals and the same work per job (common random numbers).

**External mode** (``policy=None``): instead of asking a policy, the simulator stops at every
point where policy mode would call ``policy.order`` and hands the decision to the caller (a
Gymnasium environment, a replay, a test)::

    sim = NetworkSimulator(net, None, horizon=600.0, seed=0)
    while (j := sim.advance()) is not None:  # an engine index: engine j must decide
        sim.decide(my_order(j, sim))          # an order of (some of) engine j's classes
    result = sim.result()

``advance()`` processes events until a decision is pending (it returns the engine index) or
the horizon is reached (``None``, after the end-of-run bookkeeping). ``decide(order)`` forms
the batch (LLM engine) or picks the job to serve (station) with that order, exactly as policy
mode does with the order a policy returns (``decide(None)`` is FCFS across classes). Engines
serving a single class never stop. Decision epochs: an LLM engine whose batch ended, or that
is idle when work arrives, with some work present; a station at every arrival and completion
(even with nothing waiting). The pending decision is described by :attr:`pending` (engine
index), :meth:`classes_with_work`, :meth:`class_state`, :meth:`fcfs_order` and :attr:`view`
(the read-only :class:`~policyopt.policies.NetworkView` a policy sees).
Replaying the orders a policy returned reproduces its run exactly
(``tests/test_network_external.py``). ``advance(skip_trivial=True)`` takes the epochs where at
most one class has work (every order decides the same) without stopping.

How it stays fast (the results are those of the straightforward event loop, bit for bit):

* Decisions due now wait in a FIFO queue, not in the event heap: they run once no other event
  is left at the instant. A station whose job completed, with nothing else due now, decides
  at once; under a fixed order (a static priority, asked once per engine), a job arriving
  behind the one in service changes nothing and takes no decision step.
* The common steps (a station's completion, a job's start at a class with one engine, a
  station's decision) are written out in the event loop; job counts, areas and logged times
  live in Python lists and arrays, the numpy counts the view exposes being kept current
  whenever code outside the simulator can read them.
* Interarrival times and routing draws come in blocks (the same numbers, stream by stream).
* A network of stations under a policy whose order can be computed there runs in a compiled
  event loop (:mod:`policyopt.sim.compiled_loop`), with the same results bit for bit;
  ``loop="python"`` keeps this loop, the reference, and ``loop="compiled"`` insists on the
  other (``loop="auto"``, the default, takes it whenever it may; :attr:`compiled` says which).
* An LLM engine's decode queue files only the jobs a batch can serve (the oldest
  ``min(token_budget, max_seqs)``), and delays the unserved rest of a prefix-served window
  through a Fenwick tree; a decode-only batch is reused while the queues it was formed from
  stay the same (a scheduler does not read the clock).
"""

from __future__ import annotations

import gc
import heapq
import math
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from operator import attrgetter
from typing import Protocol

import numpy as np

from policyopt.errors import SpecError
from policyopt.model.batch_time import AffineBatchTime
from policyopt.model.network import EXIT, JOIN, LLMEngine, NetworkSpec, Station
from policyopt.policies import (
    FCFS,
    BufferPriority,
    CMu,
    DaiLinMaxPressure,
    MaxPressure,
    MaxWeight,
    NetworkView,
    Policy,
    StaticPriority,
    make_policy,
)
from policyopt.sim.admission import AdmissionContext, AdmissionRule, make_admission
from policyopt.sim.batching import BatchRecord, Counters, batch_time_table, not_work_conserving
from policyopt.sim.compiled_external import CompiledExternal
from policyopt.sim.compiled_loop import choose, run_compiled, why_not
from policyopt.sim.decode_queue import DecodeQueue
from policyopt.sim.kv_memory import KVMemory, MemDecodeQueue
from policyopt.sim.schedulers import BatchPlan, make_scheduler
from policyopt.sim.stability import DRIFT_TOLERANCE, verdict
from policyopt.sim.stats import LogHistogram, WindowMeans, t_interval
from policyopt.solvers.traffic import traffic

_GC_SAFE = (FCFS, StaticPriority, CMu, BufferPriority, MaxPressure, DaiLinMaxPressure, MaxWeight)
"""The policies (exact types) known to make no reference cycles: the collector can wait."""
ARRIVAL, DONE, DECIDE = 0, 1, 2  # event kinds; DECIDE sorts after the others at one instant
INF = math.inf
BLOCK = 1024  # random draws per block (interarrival times, work, routing)
FOLD = 65536  # logged times and finished workflows are folded in chunks of this many
_PRE_LEFT = attrgetter("pre_left")


class RequestSource(Protocol):
    """Explicit requests: arrival times (s, sorted) and prompt / output tokens, as numpy
    arrays (:class:`~policyopt.sim.engine_sim.RequestList` is one)."""

    arrivals: np.ndarray
    prompts: np.ndarray
    outputs: np.ndarray


class Job:
    """One visit of a workflow to a class."""

    __slots__ = (
        "arrived",
        "blocks",
        "cls",
        "dec_left",
        "dec_tokens",
        "dseq",
        "first",
        "fork",
        "held",
        "id",
        "phase",
        "pre_left",
        "pred",
        "preempted",
        "prompt",
        "queued",
        "since",
        "ver",
        "workflow",
    )

    def __init__(
        self,
        jid: int,
        cls: int,
        arrived: float,
        workflow: tuple[int, float, int],
        fork: int,
        pre_left: int | float = 0,
        dec_tokens: int = 0,
        prompt: int = 0,
    ) -> None:
        self.id = jid
        self.cls = cls
        self.arrived = arrived
        self.workflow = workflow  # the instance's token: (id, arrival time, workflow index)
        self.fork = fork
        self.pre_left = pre_left  # prefill tokens left (LLM), or service seconds left (station)
        self.dec_tokens = dec_tokens  # decode tokens (LLM)
        self.prompt = prompt  # prompt tokens (LLM)
        # at an engine with a limited KV cache (policyopt.sim.kv_memory): KV tokens held,
        # blocks allocated, decode tokens left when it (re)joins decoding, whether it has its
        # first token, and how often it was preempted; for the admission rules
        # (policyopt.sim.admission), its predicted output length (-1: not seen yet) and
        # whether a rule holds it in its own queue
        self.held = 0
        self.blocks = 0
        self.dec_left = dec_tokens
        self.first = False
        self.preempted = 0
        self.pred = -1
        self.queued = False
        # (at a station with several servers, ``since`` and ``ver`` are set when it starts
        # service: when its service (re)started, and the number of its completion event)

    def __lt__(self, other: Job) -> bool:
        return self.id < other.id


class _StationJob(Job):
    """A job at a station: only the fields a station reads are set (the LLM and KV-cache
    fields of :class:`Job` stay unset), which makes it cheaper to create."""

    __slots__ = ()

    def __init__(
        self,
        jid: int,
        cls: int,
        arrived: float,
        workflow: tuple[int, float, int],
        fork: int,
        work: float,
    ) -> None:
        self.id = jid
        self.cls = cls
        self.arrived = arrived
        self.workflow = workflow
        self.fork = fork
        self.pre_left = work  # service seconds left


class _Engine:
    """State of one engine during a run."""

    def __init__(self, index: int, spec: object, classes: tuple[int, ...]) -> None:
        self.index = index
        self.llm = isinstance(spec, LLMEngine)
        self.classes = classes
        self.single = len(classes) == 1  # one class: nothing to order, never a decision
        self.fixed: tuple[int, ...] | None = None  # the policy's order here, if it never changes
        self.rank: list[int] | None = None  # station, policy mode: each class's place in it
        self.repeat: tuple[BatchPlan, bool] | None = None  # LLM: the last batch, if reusable
        self.wait: dict[int, deque[Job]] = {k: deque() for k in classes}
        self.unstarted: dict[int, deque[Job]] = {k: deque() for k in classes}  # no token yet
        # LLM: a batch is running; station: no decision may change what it serves (every
        # server holds a job it keeps: non-preemptive), so arrivals raise no decision
        self.busy = False
        self.decide_pending = False
        self.backlog = 0.0  # remaining work at this engine: tokens, or seconds at a station
        if self.llm:  # (a station counts its queues: _Station.n_wait)
            self.n_wait = 0  # jobs whose prefill has not finished
        self.n_dec = 0  # decoding jobs
        self.pre_backlog = 0  # prefill tokens waiting
        self.arrived_work = 0.0
        self.done_work = 0.0
        self.stats = Counters()
        self.warm_stats = Counters()
        self.current: Job | None = None  # station: the job in service
        self.started = 0.0
        self.version = 0  # station: the number of the completion event due (0: none)
        self.servers = 1  # station: identical servers
        self.preempts = True  # station: a job in service may be preempted (preemptive-resume)
        self.multi = False  # station with several servers: its jobs in service are ``serving``
        self.serving: list[Job] = []
        self.rr = 0
        cap = 1 << 62
        if self.llm:
            assert isinstance(spec, LLMEngine)
            self.sched = make_scheduler(spec.scheduler)
            self.b = spec.token_budget
            self.kmax = spec.max_seqs if spec.max_seqs is not None else 1 << 62
            cap = min(self.b, self.kmax)
            self.bt = spec.batch_time
            self.table = batch_time_table(spec.engine_spec())
            bt = self.bt
            self.kv_matters = isinstance(bt, AffineBatchTime) and bt.ckv_ms > 0
            self.decode_first = spec.scheduler.decode_first
            self.mixes = spec.scheduler.mixes
            self.request_level = spec.scheduler.request_level
        self.mem = KVMemory(spec.kv_cache) if self.llm and spec.kv_cache is not None else None  # type: ignore[union-attr]
        self.dec: dict[int, DecodeQueue] = (
            {k: DecodeQueue(cap) for k in classes}
            if self.mem is None
            else {k: MemDecodeQueue(cap, self.mem.block) for k in classes}
        )
        self.kv = 0  # KV-cache tokens held: prompt tokens computed + decoded tokens, resident
        self.kv_max = 0
        # the queues as a scheduler reads them (policyopt.sim.schedulers.base.Queues); plain
        # functions over this engine's dicts, cheaper to call than methods
        dec, wait = self.dec, self.wait
        alive = {k: q.alive for k, q in dec.items()}
        outside = {k: q.outside for k, q in dec.items()}
        self.decoding: Callable[[int], int] = lambda k: len(alive[k]) + len(outside[k])
        self.waiting: Callable[[int], int] = lambda k: len(wait[k])
        self.prompts: Callable[[int], tuple[Iterable[int], int]] = lambda k: (
            map(_PRE_LEFT, wait[k]),
            0,
        )
        # a limited KV cache: the scheduler sees only the prompts that may be admitted
        self.admission: AdmissionRule | None = None  # the cache's rule (set by the simulator)
        self.shown: dict[int, int] = dict.fromkeys(classes, 0)
        self.preempt_counts: dict[int, int] = {}  # completed requests by times preempted
        self.warm_mem = (0, 0, 0)  # the memory's counters at the end of warm-up
        self.shown_tokens = 0
        if self.mem is not None:
            shown = self.shown
            self.waiting = lambda k: shown[k]
            self.prompts = lambda k: (map(_PRE_LEFT, islice(wait[k], shown[k])), 0)

    def remaining(self) -> Iterator[int]:
        """Prefill tokens left of every waiting prompt at this engine (with a limited KV
        cache, of every prompt shown to the scheduler)."""
        if self.mem is not None:
            shown = self.shown
            return (job.pre_left for k, q in self.wait.items() for job in islice(q, shown[k]))
        return (job.pre_left for q in self.wait.values() for job in q)


class _Station(_Engine):
    """State of one classic station during a run: one server (its job in service is
    ``current``) or several (``serving``), preemptive-resume or non-preemptive."""

    def __init__(self, index: int, spec: object, classes: tuple[int, ...]) -> None:
        super().__init__(index, spec, classes)
        assert isinstance(spec, Station)
        self.servers = spec.servers
        self.preempts = spec.preemptive
        self.multi = spec.servers > 1

    @property
    def n_wait(self) -> int:
        """Jobs whose service has not finished (in service included)."""
        return sum(map(len, self.wait.values()))


def _check_caps(decode_cap: int | None, token_cap: int | None) -> None:
    """``ValueError`` for a negative decode cap or a token cap below 1 (tokens)."""
    if decode_cap is not None and decode_cap < 0:
        raise ValueError(f"decode_cap must be >= 0 tokens, got {decode_cap}")
    if token_cap is not None and token_cap < 1:
        raise ValueError(f"token_cap must be >= 1 token, got {token_cap}")


@dataclass
class NetworkResult:
    """Metrics of one network run over the measured period ``[warmup, horizon]``.

    Rates per second, times in seconds. ``classes``/``engines``/``workflows`` hold per-item
    dicts; ``series`` the sampled time series (``t``, ``jobs``, and ``backlog_<engine>``).
    """

    network: str
    policy: str
    horizon: float
    warmup: float
    seed: int
    mean_jobs: float
    mean_jobs_ci: tuple[float, float]
    holding_cost: float
    jobs_drift: float
    jobs_drift_ci: tuple[float, float]
    verdict: str
    classes: dict[str, dict[str, float]]
    engines: dict[str, dict[str, float | str]]
    workflows: dict[str, dict[str, float]]
    series: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    window_jobs: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    """The mean jobs in system of each batch-means window (``mean_jobs_ci`` is their
    Student-t interval); intervals pooled over runs use them
    (:func:`~policyopt.sim.stats.pooled_interval`)."""

    def summary(self) -> dict[str, object]:
        """JSON-ready scalars and per-item tables, no series or windows
        (:func:`~policyopt.jsonout.json_ready`: intervals as lists, non-finite as ``None``)."""
        from policyopt.jsonout import json_ready

        skip = ("series", "window_jobs")
        return json_ready({k: v for k, v in self.__dict__.items() if k not in skip})

    def little_gap(self) -> float:
        """Little's law, checked per class: the largest relative gap between a class's mean
        jobs ``L_k`` and its throughput times its mean time in the class, ``lambda_k W_k``,
        over the classes that completed jobs (``nan`` if none did). Small (a few tenths of a
        percent on a long stable run) when the run is long enough for its averages; a large
        gap says the run is too short or unstable (``docs/metrics.md``)."""
        gaps = [
            abs(c["mean_jobs"] - c["throughput"] * c["latency_mean"]) / c["mean_jobs"]
            for c in self.classes.values()
            if c["mean_jobs"] > 0 and math.isfinite(c["latency_mean"])
        ]
        return max(gaps) if gaps else math.nan


class NetworkSimulator:
    """Simulate ``net`` under ``policy`` for ``horizon`` seconds (see the module docstring)."""

    def __init__(
        self,
        net: NetworkSpec,
        policy: str | Policy | None = "fcfs",
        *,
        horizon: float,
        warmup: float | None = None,
        seed: int = 0,
        samples: int = 1000,
        windows: int = 20,
        trace: bool = False,
        record_batches: bool = False,
        requests: Mapping[str, RequestSource] | None = None,
        loop: str = "auto",
    ) -> None:
        self.net = net
        self.record = bool(record_batches)
        self.batches: list[BatchRecord] = []  # with record_batches: every batch, job ids
        self.trace: list[tuple[float, str, int, int, int]] | None = [] if trace else None
        self.topo = topo = net.topology
        # policy None: external mode (advance/decide; see the module docstring)
        self.external = policy is None
        self.policy: Policy | None = None if policy is None else make_policy(policy)
        if self.policy is not None:
            self.policy.bind(net)
        self.policy_splits = self.policy is not None and self.policy.splits
        self.policy_caps = self.policy is not None and self.policy.caps_tokens
        self.policy_name = "external" if self.policy is None else self.policy.name
        self.pending: int | None = None  # external mode: the engine whose decision is pending
        self._skip = False  # external mode: decisions with one class of work are taken
        self.ask_single = False
        """External mode: stop at the batches of LLM engines with one class too (where the only
        decision is a token cap, ``decide(..., token_cap=...)``)."""
        self.finished = False  # the end-of-run bookkeeping is done
        self.decisions = 0  # decisions with a choice: policy.order calls, or decide() calls
        self.horizon = float(horizon)
        self.warmup = 0.1 * self.horizon if warmup is None else float(warmup)
        self.seed = seed
        K, J = topo.n_classes, topo.n_engines
        seqs = np.random.SeedSequence(seed).spawn(len(net.workflows) + K + 1)
        self.arrival_rng = [np.random.default_rng(s) for s in seqs[: len(net.workflows)]]
        self.work_rng = [np.random.default_rng(s) for s in seqs[len(net.workflows) : -1]]
        self.route_rng = np.random.default_rng(seqs[-1])
        self.class_specs = [net.classes[name] for name in topo.classes]
        self.workloads = [
            c.workload() if topo.engine_kind[c_eng] == "llm" else None
            for c, c_eng in zip(self.class_specs, [e[0] for e in topo.eligible], strict=True)
        ]
        classes_at: list[list[int]] = [[] for _ in range(J)]
        for k in range(K):
            for j in topo.eligible[k]:
                classes_at[j].append(k)
        self.engines = [
            (_Engine if isinstance(net.engines[name], LLMEngine) else _Station)(
                j, net.engines[name], tuple(classes_at[j])
            )
            for j, name in enumerate(topo.engines)
        ]
        P = topo.routing_matrix().toarray()
        rate = np.array([1.0 / w if w > 0 else 0.0 for w in topo.work])
        # Jobs per class: the simulator counts in a Python list; ``self.jobs`` is the numpy
        # buffer the view exposes read-only. It is written at every change when something
        # outside may read it mid-run (a policy that reads the view, or external mode), else
        # brought up to date whenever control leaves the simulator (_sync_jobs).
        self._jobs = [0.0] * K
        self.jobs = np.zeros(K)
        self.view = NetworkView(
            net, self.jobs, tuple(map(tuple, classes_at)), P, rate, simulator=self
        )
        self.class_sets = [frozenset(c) for c in classes_at]
        for eng in self.engines:
            if eng.mem is not None:
                eng.admission = self._admission(eng)
        # remaining work per class, all engines: tokens (LLM: prefill + decode not yet
        # processed, as of the last batch formed) or seconds (station, as of the last start)
        self.work_left = [0.0] * K
        self.events: list[tuple[float, int, int, int, object]] = []
        # engines whose decision is due now (DECIDE events, in the order they were raised):
        # they sort after every other event at the same instant, so they wait here, not in
        # the heap, until the heap's next event is later than now
        self.decide_queue: deque[int] = deque()
        self.seq = 0
        self.next_id = 0
        self.jobs_created = 0  # class visits started (for benchmarks)
        self.now = 0.0
        self.forks: dict[int, list[int]] = {}  # fork id -> [branches left, join class, parent]
        # a workflow instance is known by its token (id, arrival time, workflow index), which
        # its jobs carry (Job.workflow)
        self.buffers: list[list[tuple[int, int] | float]] = [[] for _ in range(K)]
        # per class: its engine when it has one (else -1), and the class its jobs go to
        # next when that is fixed (a class index, EXIT or JOIN; None: random or fork)
        self._engine_of = [e[0] if len(e) == 1 else -1 for e in topo.eligible]
        self._next = [
            s.targets[0] if s.kind in ("exit", "join", "next") else None for s in topo.steps
        ]
        # interarrival times, drawn in blocks (the same numbers: one stream per workflow)
        self._gap = [
            1.0 / w.arrival.rate if w.arrival.kind == "deterministic" else None
            for w in net.workflows
        ]
        self._scale = [1.0 / w.arrival.rate for w in net.workflows]
        # the other processes (renewal, modulated, replayed) give their gaps in blocks too
        self._streams = [
            w.arrival.stream(rng) if hasattr(w.arrival, "stream") else None
            for w, rng in zip(net.workflows, self.arrival_rng, strict=True)
        ]
        self._arrivals: list[list[float]] = [[] for _ in net.workflows]
        # routing draws in blocks too, unless the stream also picks engines (interleaved)
        self._route_block = not any(
            r == "random" and len(e) > 1 for r, e in zip(topo.routing, topo.eligible, strict=True)
        )
        self._uniforms: list[float] = []
        # A policy whose order never changes (a static priority) is asked once per engine.
        # At a station whose order is known that way (or that serves one class), a job that
        # arrives behind the job in service, in that order, changes nothing: the decision is
        # counted but not taken (policy mode).
        policy_ = self.policy
        # a policy that re-decides at every event is asked at every engine, one class or more
        self._every = policy_ is not None and policy_.every_event
        self._may_idle = policy_ is not None and policy_.may_idle
        if self._every:
            for eng in self.engines:
                eng.single = False
        fixed = policy_ is not None and type(policy_).order is StaticPriority.order
        self._fcfs = policy_ is not None and type(policy_).order is FCFS.order
        for eng in self.engines:
            if fixed and not eng.single:
                eng.fixed = tuple(policy_.order(eng.index, self.view))  # type: ignore[union-attr, arg-type]
            if policy_ is not None and not eng.llm and (eng.single or eng.fixed is not None):
                order = eng.classes if eng.fixed is None else eng.fixed
                eng.rank = [len(order)] * K
                for r, k in enumerate(order):
                    eng.rank[k] = r
            elif self._fcfs and not eng.llm:
                # FCFS: a job arriving now is the youngest at the station, never ahead of the
                # job in service (one rank for every class)
                eng.rank = [0] * K
        self._mirror = policy_ is None or not (fixed or self._fcfs)
        self._pause_gc = policy_ is None or type(policy_) in _GC_SAFE
        # statistics (Python lists in the hot loop; numpy arrays through the properties)
        self._area = [0.0] * K  # job-seconds per class inside [warmup, horizon]
        self._last = [0.0] * K  # when each class's count last changed
        self._done_class = [0] * K
        w = max(1, len(net.workflows))
        self.flow_hist = [LogHistogram() for _ in range(w)]
        self.flow_sum = np.zeros(w)
        self.flow_n = np.zeros(w, dtype=np.int64)
        end = max(self.horizon, self.warmup + 1e-9)
        self.flow_done = [WindowMeans(self.warmup, end, windows) for _ in range(w)]
        self.jobs_windows = WindowMeans(self.warmup, end, windows)
        self.window_edges = self.warmup + self.jobs_windows.width * np.arange(1, windows + 1)
        self.window_area = np.zeros(windows + 1)  # total job-seconds at each window edge
        self.window_class_area = np.zeros((windows + 1, K))  # the same per class
        self.next_edge = 0
        # finished workflows (index, arrival, departure), folded now and then
        self.flow_log = (array("q"), array("d"), array("d"))
        # per class, jobs arriving after warm-up: time in the class and (LLM) to first token;
        # logged as (2k or 2k + 1, seconds), folded into histograms now and then
        self.class_hist = [LogHistogram() for _ in range(2 * K)]
        self.class_sum = np.zeros(2 * K)
        self.class_n = np.zeros(2 * K, dtype=np.int64)
        self.time_log = (array("q"), array("d"))
        self.samples = int(samples)
        self.sample_t = np.linspace(0.0, self.horizon, self.samples, endpoint=False)
        self.sample_jobs = np.full(self.samples, np.nan)
        self.sample_backlog = np.full((J, self.samples), np.nan)
        self.sample_mem = np.full((J, self.samples), np.nan)  # KV cache allocated, tokens
        self.next_sample = 0
        self.t_next_sample = float(self.sample_t[0]) if self.samples else INF
        self.t_next_edge = float(self.window_edges[0])
        self.warm = self.warmup <= 0
        # the first time at which warm-up ends, a sample is due or a window edge is reached
        self.t_check = self._next_check()
        self.sources: dict[int, tuple[list[float], list[int]]] = {}
        for name, source in (requests or {}).items():
            self._add_source(name, source)
        for i in range(len(net.workflows)):
            t = self._interarrival(i)
            if t < INF:
                self._push(t, ARRIVAL, i, None)
        # what the event loop reads, gathered once (it runs once per decision in external mode)
        self._hot = (
            self.events,
            self.decide_queue,
            self.engines,
            topo.entries,
            self.horizon,
            self.warmup,
            self.external,
            self.trace is None,  # steps written out in the loop (with a trace, called)
            self.work_left,
            self._last,
            self._area,
            self._jobs,
            self.jobs if self._mirror else None,
            self._done_class,
            *self.time_log,
            *self.flow_log,
            self._next,
            self._engine_of,
            self.buffers,
            # per workflow: its block of interarrival times if Poisson (else None)
            [
                None if self._gap[i] is not None or i in self.sources else self._arrivals[i]
                for i in range(len(net.workflows))
            ],
        )
        # the queues a class_state reads: (class, queue) at every engine, and the stations
        self._queues = [(k, eng.wait[k]) for eng in self.engines for k in eng.classes]
        self._stations = [eng for eng in self.engines if not eng.llm]
        # run() in the compiled loop of a station network (policyopt.sim.compiled_loop)?
        self.compiled = choose(self, loop)
        # external mode in the compiled loop: its kernel and state, from the first advance()
        # until the horizon (the queries below read its arrays meanwhile)
        self._kernel: CompiledExternal | None = None
        self._watch: tuple[Sequence[float], Sequence[float]] | None = None
        self._pressure: MaxPressure | None = None  # decide_first's order (at first use)

    # ------------------------------------------------------------------ read-only arrays
    @property
    def area(self) -> np.ndarray:
        """Job-seconds per class in ``[warmup, t]``, ``t`` the class's last change."""
        return np.array(self._area)

    @property
    def last_change(self) -> np.ndarray:
        """When each class's job count last changed (s)."""
        return np.array(self._last)

    @property
    def done_class(self) -> np.ndarray:
        """Jobs of each class completed after warm-up."""
        return np.array(self._done_class, dtype=np.int64)

    def _admission(self, eng: _Engine) -> AdmissionRule:
        """The admission rule of engine ``eng``'s KV cache, with what it may know of the
        engine: its classes' workloads, their arrival rates there (the traffic equations,
        computed if the rule asks) and a random stream per class for predicted output lengths
        (spawned from the seed apart from every other stream)."""
        spec = self.net.engines[self.topo.engines[eng.index]]
        assert isinstance(spec, LLMEngine) and spec.kv_cache is not None
        j, net = eng.index, self.net
        n_streams = len(net.workflows) + self.topo.n_classes + 1  # those spawned in __init__

        def rates() -> dict[int, float]:
            flow = traffic(net)
            return {k: float(flow.rates[k] * flow.split[k, j]) for k in eng.classes}

        def stream(k: int) -> np.random.Generator:
            return np.random.default_rng(
                np.random.SeedSequence(self.seed, spawn_key=(n_streams, j, k))
            )

        ctx = AdmissionContext(
            kv=spec.kv_cache,
            engine=spec,
            classes=eng.classes,
            workloads={k: self.workloads[k] for k in eng.classes},  # type: ignore[misc]
            rates=rates,
            stream=stream,
        )
        return make_admission(spec.kv_cache.admission, ctx)

    def _sync_jobs(self) -> None:
        """Bring the numpy job counts (``self.jobs``, the view's ``jobs``) up to date."""
        if not self._mirror:
            self.jobs[:] = self._jobs

    def _sync_stations(self) -> None:
        """Bring the stations' busy time (``stats.busy_time``) up to date: a server is busy
        exactly while it works, so a station's busy time (server-seconds) is its work done,
        added up the same way (the event loop adds only the latter)."""
        for eng in self._stations:
            eng.stats.busy_time = eng.done_work

    def _add_source(self, name: str, source: RequestSource) -> None:
        """Workflow ``name`` takes its arrivals and its entry jobs' tokens from ``source``."""
        names = [w.name for w in self.net.workflows]
        if name not in names:
            raise SpecError("requests", f"no workflow named {name!r}", f"use one of {names}")
        i = names.index(name)
        k = self.topo.entries[i]
        if self.workloads[k] is None or any(l_ == k for _, l_, _ in self.topo.edges):
            raise SpecError(
                f"requests.{name}",
                f"entry class {self.topo.classes[k]!r} is not an LLM class visited only on entry",
                "give explicit requests only to such workflows",
            )
        times = [float(t) for t in source.arrivals]
        self.sources[i] = (times, [0])
        pairs = zip(source.prompts.tolist(), source.outputs.tolist(), strict=True)
        self.buffers[k] = list(reversed(list(pairs)))

    # ------------------------------------------------------------------ events
    def _push(self, t: float, kind: int, a: int, payload: object) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, kind, self.seq, a, payload))

    def _interarrival(self, i: int) -> float:
        """The next arrival time (s) of workflow ``i`` (``INF``: none)."""
        if self.sources:
            src = self.sources.get(i)
            if src is not None:
                times, pos = src
                if pos[0] >= len(times):
                    return INF
                pos[0] += 1
                return times[pos[0] - 1]
        gap = self._gap[i]
        if gap is not None:
            return self.now + gap
        buf = self._arrivals[i]
        if not buf:
            self._draw_arrivals(i)
        return self.now + buf.pop()

    def _draw_arrivals(self, i: int) -> None:
        """The next block of interarrival times of workflow ``i`` (Poisson, or the process's
        own stream)."""
        stream = self._streams[i]
        if stream is None:
            gaps = self.arrival_rng[i].exponential(self._scale[i], BLOCK).tolist()
        else:
            gaps = stream.block(BLOCK)
        self._arrivals[i].extend(reversed(gaps))

    def _uniform(self) -> float:
        """The next routing draw, uniform on [0, 1)."""
        if not self._route_block:
            return float(self.route_rng.random())
        buf = self._uniforms
        if not buf:
            buf.extend(reversed(self._uniform_block().tolist()))
        return buf.pop()

    def _draw_work(self, k: int) -> tuple[int, int] | float:
        """The work of the next job of class ``k``: (prompt, output) tokens, or seconds."""
        buf = self.buffers[k]
        if not buf:
            if self.workloads[k] is not None:
                p, d = (a.tolist() for a in self._token_block(k))
                buf.extend(zip(reversed(p), reversed(d), strict=True))
            else:
                buf.extend(reversed(self._work_block(k).tolist()))
        return buf.pop()

    def _token_block(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The next block of prompt and output tokens of LLM class ``k``, in order."""
        wl = self.workloads[k]
        assert wl is not None
        rng = self.work_rng[k]
        p = wl.prompt_dist.sample(rng, BLOCK, wl.max_prompt_len)
        d = wl.output_dist.sample(rng, BLOCK, wl.max_output_len)
        return p, d

    def _work_block(self, k: int) -> np.ndarray:
        """The next block of service times (s) of station class ``k``, in order."""
        svc = self.class_specs[k].service
        assert svc is not None
        return svc.sample(self.work_rng[k], BLOCK)

    def _uniform_block(self) -> np.ndarray:
        """The next block of routing draws, uniform on [0, 1), in order."""
        return self.route_rng.random(BLOCK)

    def _count(self, k: int, delta: int) -> None:
        """Change the job count of class ``k`` at the current time (time-average bookkeeping;
        inlined where jobs start and complete)."""
        t = self.now
        lo = self._last[k]
        if lo < self.warmup:
            lo = self.warmup
        hi = t if t < self.horizon else self.horizon
        jobs = self._jobs
        n = jobs[k]
        if hi > lo:
            self._area[k] += n * (hi - lo)
        self._last[k] = t
        jobs[k] = n = n + delta
        self.jobs[k] = n

    def _area_at(self, t: float) -> float:
        """Job-seconds of all classes accumulated in ``[warmup, t]``."""
        lo = np.maximum(self.last_change, self.warmup)
        return float(self.area.sum() + (self.jobs * np.clip(t - lo, 0.0, None)).sum())

    def _class_area_at(self, t: float) -> np.ndarray:
        """Job-seconds of each class accumulated in ``[warmup, t]``."""
        lo = np.maximum(self.last_change, self.warmup)
        return self.area + self.jobs * np.clip(t - lo, 0.0, None)

    def _next_check(self) -> float:
        """The first time at which warm-up ends, a sample is due or a window edge is reached."""
        t = self.t_next_sample if self.t_next_sample < self.t_next_edge else self.t_next_edge
        if not self.warm and self.warmup < t:
            t = self.warmup
        return t

    def _bookkeep(self, t: float) -> None:
        """Warm-up, samples and window edges due at an event at time ``t`` (before it)."""
        self._sync_jobs()
        self._sync_stations()
        if len(self.time_log[0]) >= FOLD or len(self.flow_log[0]) >= FOLD:
            self._fold_logs()
        engines = self.engines
        if not self.warm and t >= self.warmup:
            self.warm = True
            for e in engines:
                e.warm_stats = e.stats.copy()
                if e.mem is not None:
                    e.warm_mem = e.mem.counts()
        if t > self.t_next_sample:
            while self.next_sample < self.samples and self.sample_t[self.next_sample] < t:
                i = self.next_sample
                self.sample_jobs[i] = self.jobs.sum()
                for e in engines:
                    self.sample_backlog[e.index, i] = e.backlog
                    if e.mem is not None:
                        self.sample_mem[e.index, i] = e.mem.used_tokens
                self.next_sample += 1
            self.t_next_sample = (
                float(self.sample_t[self.next_sample]) if self.next_sample < self.samples else INF
            )
        if t >= self.t_next_edge:
            while (
                self.next_edge < len(self.window_edges) and self.window_edges[self.next_edge] <= t
            ):
                edge = self.window_edges[self.next_edge]
                self.window_area[self.next_edge + 1] = self._area_at(edge)
                self.window_class_area[self.next_edge + 1] = self._class_area_at(edge)
                self.next_edge += 1
            self.t_next_edge = (
                float(self.window_edges[self.next_edge])
                if self.next_edge < len(self.window_edges)
                else INF
            )
        self.t_check = self._next_check()

    # ------------------------------------------------------------------ jobs
    def _new_job(self, k: int, workflow: tuple[int, float, int], fork: int) -> None:
        """A job of class ``k`` starts now, for the workflow instance ``workflow`` (its token:
        id, arrival time, workflow index), inside fork ``fork`` (-1: none)."""
        j = self._engine_of[k]
        if j < 0:
            topo = self.topo
            elig = topo.eligible[k]
            rule = topo.routing[k]
            if rule == "round_robin":
                eng = self.engines[elig[0]]
                j = elig[eng.rr % len(elig)]
                eng.rr += 1
            elif rule == "random":
                j = elig[int(self.route_rng.integers(len(elig)))]
            else:  # jsq: least remaining work
                j = min(elig, key=lambda e: (self.engines[e].backlog, e))
        now = self.now
        jid = self.next_id
        self.next_id = jid + 1
        self.jobs_created += 1
        if self.trace is not None:
            self.trace.append((now, "start", k, workflow[0], fork))
        eng = self.engines[j]
        buf = self.buffers[k]
        w = buf.pop() if buf else self._draw_work(k)
        if eng.llm:
            p, d = w  # type: ignore[misc]
            work = float(p + d)
            job = Job(jid, k, now, workflow, fork, p, d, p)
            eng.pre_backlog += p
            eng.repeat = None  # the queues changed: form the next batch afresh
            eng.n_wait += 1
        else:
            work = float(w)  # type: ignore[arg-type]
            job = _StationJob(jid, k, now, workflow, fork, w)
        eng.backlog += work
        eng.arrived_work += work
        self.work_left[k] += work
        eng.wait[k].append(job)
        # self._count(k, +1), inlined
        lo = self._last[k]
        if lo < self.warmup:
            lo = self.warmup
        hi = now if now < self.horizon else self.horizon
        jobs = self._jobs
        n = jobs[k]
        if hi > lo:
            self._area[k] += n * (hi - lo)
        self._last[k] = now
        jobs[k] = n = n + 1
        if self._mirror:
            self.jobs[k] = n
        if not eng.decide_pending and not eng.busy:
            cur = eng.current
            if cur is not None and eng.rank is not None and eng.rank[k] >= eng.rank[cur.cls]:
                # behind the job in service in a fixed order: the decision keeps it
                if not eng.single:
                    self.decisions += 1
            else:
                eng.decide_pending = True
                self.decide_queue.append(j)

    def _complete(self, job: Job) -> None:
        """Route a finished job to its workflow's next step."""
        k = job.cls
        now = self.now
        # self._count(k, -1), inlined
        lo = self._last[k]
        warmup = self.warmup
        if lo < warmup:
            lo = warmup
        hi = now if now < self.horizon else self.horizon
        jobs = self._jobs
        n = jobs[k]
        if hi > lo:
            self._area[k] += n * (hi - lo)
        self._last[k] = now
        jobs[k] = n = n - 1
        if self._mirror:
            self.jobs[k] = n
        if self.trace is not None:
            self.trace.append((now, "done", k, job.workflow[0], job.fork))
        if now >= warmup:
            self._done_class[k] += 1
        if job.arrived >= warmup:
            codes, vals = self.time_log
            codes.append(2 * k)
            vals.append(now - job.arrived)
        self._route(job, k)

    def _route(self, job: Job, k: int) -> None:
        """Send ``job`` (of class ``k``, just completed) to its workflow's next step."""
        target = self._next[k]
        if target is None:
            step = self.topo.steps[k]
            if step.kind == "random":
                u = self._uniform()
                acc = 0.0
                target = step.targets[-1]
                for t, p in zip(step.targets, step.probs, strict=True):
                    acc += p
                    if u < acc:
                        target = t
                        break
            else:  # fork
                fid = self.next_id
                self.next_id += 1
                self.forks[fid] = [len(step.targets), int(step.join_class), job.fork]  # type: ignore[arg-type]
                for t in step.targets:
                    self._new_job(t, job.workflow, fid)
                return
        if target >= 0:
            self._new_job(target, job.workflow, job.fork)
        elif target == EXIT:
            _, t0, w = job.workflow
            ws, arrived, left = self.flow_log
            ws.append(w)
            arrived.append(t0)
            left.append(self.now)
        elif target == JOIN:
            rec = self.forks[job.fork]
            rec[0] -= 1
            if rec[0] == 0:
                del self.forks[job.fork]
                self._new_job(rec[1], job.workflow, rec[2])

    def _fold_logs(self, final: bool = False) -> None:
        """Fold the logged per-class times and finished workflows into the streaming
        statistics, in chunks of :data:`FOLD` entries in log order (``final``: the rest as
        well). The chunks are the same however late the folding: so are the sums."""
        codes_a, vals_a = self.time_log
        n = len(codes_a)
        end = n if final else n - n % FOLD
        if end:
            all_codes = np.frombuffer(codes_a, dtype=np.int64)[:end].copy()
            all_values = np.frombuffer(vals_a, dtype=np.float64)[:end].copy()
            del codes_a[:end], vals_a[:end]
            for lo in range(0, end, FOLD):
                codes, values = all_codes[lo : lo + FOLD], all_values[lo : lo + FOLD]
                for c in np.unique(codes).tolist():
                    vals = values[codes == c]
                    self.class_hist[c].add(vals)
                    self.class_sum[c] += float(vals.sum())
                    self.class_n[c] += len(vals)
        ws_a, arrived_a, left_a = self.flow_log
        n = len(ws_a)
        end = n if final else n - n % FOLD
        if end:
            all_ws = np.frombuffer(ws_a, dtype=np.int64)[:end].copy()
            all_arrived = np.frombuffer(arrived_a, dtype=np.float64)[:end].copy()
            all_left = np.frombuffer(left_a, dtype=np.float64)[:end].copy()
            del ws_a[:end], arrived_a[:end], left_a[:end]
            for lo in range(0, end, FOLD):
                ws = all_ws[lo : lo + FOLD]
                arrived, left = all_arrived[lo : lo + FOLD], all_left[lo : lo + FOLD]
                for w in range(len(self.flow_hist)):
                    rows = ws == w
                    a, e = arrived[rows], left[rows]
                    self.flow_done[w].add(e)
                    meas = a >= self.warmup
                    lat = e[meas] - a[meas]
                    self.flow_hist[w].add(lat)
                    self.flow_sum[w] += float(lat.sum())
                    self.flow_n[w] += len(lat)

    # ------------------------------------------------------------------ engines
    def _order(self, eng: _Engine) -> Sequence[int]:
        """The policy's order of ``eng``'s classes now (counts the decision)."""
        if eng.single:
            return eng.classes  # nothing to order
        self.decisions += 1
        if eng.fixed is not None:
            return eng.fixed
        if not self._fcfs:
            if not self._mirror:
                self.jobs[:] = self._jobs
            order = self.policy.order(eng.index, self.view)  # type: ignore[union-attr]
            if order is not None:
                return order
        return self.fcfs_order(eng.index)

    def fcfs_order(self, j: int) -> list[int]:
        """The classes of engine ``j`` first-come first-served across classes: by the arrival
        time of each class's oldest job there (waiting, or decoding at an LLM engine)."""
        if self._kernel is not None:
            return self._kernel.fcfs_order(j)
        eng = self.engines[j]
        wait, dec, llm = eng.wait, eng.dec, eng.llm

        def oldest(k: int) -> tuple[float, int]:
            q = wait[k]
            t = q[0].arrived if q else INF
            if llm:
                alive = dec[k].alive
                if alive:
                    t2 = next(iter(alive)).arrived
                    if t2 < t:
                        t = t2
            return t, k

        return sorted(eng.classes, key=oldest)

    def _form_batch(
        self,
        eng: _Engine,
        order: Sequence[int] | None = None,
        decode_cap: int | None = None,
        token_cap: int | None = None,
    ) -> None:
        D, Q = eng.n_dec, eng.n_wait
        mem = eng.mem
        if D == 0 and Q == 0 and (mem is None or not (mem.swapped or mem.paused)):
            eng.busy = False
            return
        swap_s = 0.0  # seconds of KV moved to or from host memory during this batch
        b, kmax = eng.b, eng.kmax
        repeat = eng.repeat
        if order is None and repeat is not None:
            # the queues the scheduler reads are as they were at the last batch, and so is
            # the order: the same batch again (schedulers do not read the clock)
            plan, nwc = repeat
            if not eng.single:
                self.decisions += 1  # the (fixed) order a policy-mode decision takes
        else:
            reusable = False
            if order is None:
                if eng.single:
                    order = eng.classes
                    reusable = not self.policy_splits
                else:
                    order = self._order(eng)
                    reusable = eng.fixed is not None and not self.policy_splits
                if self.policy_splits:
                    self._sync_jobs()
                    decode_cap = self.policy.decode_cap(eng.index, self.view)  # type: ignore[union-attr]
            # tokens this batch may hold: the budget, or the external decision's or policy's cap
            limit = b if token_cap is None else min(b, token_cap)
            if self.policy_caps:  # the policy may form a smaller batch than the budget
                reusable = False
                self._sync_jobs()
                cap = self.policy.token_cap(eng.index, self.view)  # type: ignore[union-attr]
                if cap is not None:
                    if not (isinstance(cap, int) and cap >= 1):
                        raise ValueError(
                            f"policy {self.policy_name!r} capped a batch at {cap!r} tokens: "
                            "a cap must be a whole number >= 1"
                        )
                    limit = min(b, cap)
            if mem is None:
                available = D + eng.pre_backlog
            else:  # preempt to make room, then show the prompts that may be admitted
                swap_s = self._make_room(eng, order)
                D, Q = eng.n_dec, sum(eng.shown.values())
                if D == 0 and Q == 0:  # the admission rule holds every prompt back: idle
                    eng.busy = False  # until the next arrival
                    return
                available = D + eng.shown_tokens
                reusable = False
            plan = eng.sched.form(eng, order, limit, kmax, decode_cap)
            n = plan.x + plan.m
            if n == 0:
                if self._may_idle:  # the order serves no class with work: idle
                    eng.busy = False
                    return
                # cannot happen with work present; guard against a frozen clock
                raise RuntimeError(f"empty batch at t={self.now} at engine {eng.index}")
            # work conservation, judged on the queues the batch was formed from
            nwc = (
                n != b
                and n < available  # not all the work available now
                and not_work_conserving(n, available, b, kmax, D, Q, eng.remaining)
            )
            # a batch without prefill leaves the prompts as they were
            eng.repeat = (plan, nwc) if reusable and plan.x == 0 else None
        x, m = plan.x, plan.m
        n = x + m
        dec, wait = eng.dec, eng.wait
        st = eng.stats
        if nwc:
            st.not_work_conserving += 1
        table = eng.table
        if table is not None:
            dt = table[n]
        else:
            kv_read = 0
            if eng.kv_matters:  # context read: continued prompts, and every decoder served
                for k, _, _ in plan.prefill:
                    head = wait[k][0]
                    kv_read += head.prompt - head.pre_left
                for k, mk in plan.decode:
                    kv_read += dec[k].context(mk)
            dt = eng.bt.seconds(x, m, kv_read)
            if not eng.bt.in_range(n, kv_read):
                st.out_of_range += 1
        if swap_s:
            dt += swap_s
        t_end = self.now + dt
        if self.record:
            self._record(eng, plan, t_end)
        # KV cache: context held during the batch, then the batch's new tokens
        kv = eng.kv
        st.kv_area += kv * dt
        kv += n
        if kv > eng.kv_max:
            eng.kv_max = kv
        # tokens processed now; completions take effect when the batch ends
        finished: list[Job] = []
        work_left = self.work_left
        unstarted = eng.unstarted
        grown = 0
        for k, mk in plan.decode:
            us = unstarted[k]
            dq = dec[k]
            if mem is not None:  # the blocks the decoders grow into; first tokens
                new, started = dq.grow(mk)  # type: ignore[attr-defined]
                grown += new
                if started:
                    warmup = self.warmup
                    codes, vals = self.time_log
                    for job in started:
                        if job.arrived >= warmup:
                            codes.append(2 * k + 1)
                            vals.append(t_end - job.arrived)
            elif us:  # the youngest decoders have no token yet: those served now get their first
                warmup = self.warmup
                codes, vals = self.time_log
                for _ in range(mk - (len(dq.alive) + len(dq.outside) - len(us))):
                    job = us.popleft()
                    if job.arrived >= warmup:
                        codes.append(2 * k + 1)
                        vals.append(t_end - job.arrived)
            done = dq.serve(mk)
            if done:
                if finished:
                    finished.extend(done)
                else:
                    finished = done
                for job in done:  # a finished request frees its whole context
                    kv -= job.prompt + job.dec_tokens
            work_left[k] -= mk
        eng.kv = kv
        if finished:
            eng.n_dec -= len(finished)
        for k, whole, chunk in plan.prefill:
            q = wait[k]
            if whole:
                dq = dec[k]
                us = unstarted[k]
                pauses = mem is not None and eng.admission.pauses  # type: ignore[union-attr]
                for _ in range(whole):
                    job = q.popleft()
                    work_left[k] -= job.pre_left
                    if mem is None:
                        us.append(job)
                    else:
                        if not job.blocks:
                            mem.admit(job)
                            eng.admission.admitted(k)  # type: ignore[union-attr]
                        job.held += job.pre_left
                    job.pre_left = 0
                    if pauses and eng.admission.decoding(job):  # type: ignore[union-attr]
                        mem.paused[job] = None  # type: ignore[union-attr]
                        eng.n_dec -= 1  # held back by the rule: not a decoder in a queue
                    else:
                        dq.add(job, job.dec_left)
                eng.n_wait -= whole
                eng.n_dec += whole
            if chunk:
                head = q[0]
                if mem is not None:
                    if not head.blocks:
                        mem.admit(head)
                        eng.admission.admitted(k)  # type: ignore[union-attr]
                    head.held += chunk
                head.pre_left -= chunk
                work_left[k] -= chunk
        if mem is not None:
            mem.allocate(grown)
            # the cache during the batch: its allocations, before finished requests leave
            st.mem_area += mem.used_tokens * dt
            if finished:
                counts = eng.preempt_counts
                warm = t_end >= self.warmup
                for job in finished:
                    mem.release(job)
                    if warm:
                        counts[job.preempted] = counts.get(job.preempted, 0) + 1
        if x:
            eng.pre_backlog -= x
        eng.backlog -= n
        eng.done_work += n
        st.batches += 1
        st.tokens += n
        if n == b:
            st.full += 1
        st.busy_time += dt
        eng.busy = True
        self.seq = seq = self.seq + 1
        heapq.heappush(self.events, (t_end, DONE, seq, eng.index, finished))

    def _record(self, eng: _Engine, plan: BatchPlan, t_end: float) -> None:
        """Keep the batch about to be served (before the plan is applied): job ids."""
        prefill: list[tuple[int, int]] = []
        for k, whole, chunk in plan.prefill:
            q = eng.wait[k]
            prefill.extend((job.id, job.pre_left) for job in islice(q, whole))
            if chunk:
                prefill.append((q[whole].id, chunk))
        decode = [job.id for k, mk in plan.decode for job in islice(eng.dec[k].alive, mk)]
        self.batches.append(BatchRecord(self.now, t_end, prefill, decode))

    def _make_room(self, eng: _Engine, order: Sequence[int], again: bool = False) -> float:
        """An engine with a limited KV cache, before its batch (rules of
        :mod:`policyopt.sim.kv_memory`): preempt until every decoder the batch may serve can
        grow by a token, swap requests back in, and show the scheduler the prompts that may be
        admitted; a rule that holds decoders back pauses and resumes them first. Returns the
        seconds of KV moved to or from host memory. ``again``: the second pass after every
        paused decoder resumed (nothing else could run)."""
        mem = eng.mem
        assert mem is not None
        dec, wait = eng.dec, eng.wait
        rule = eng.admission
        assert rule is not None
        paused = mem.paused
        if rule.pauses and not again:  # decoders the rule keeps out of the batches from now on
            for job in rule.pause(dec):
                job.dec_left, _ = dec[job.cls].remove(job)  # type: ignore[attr-defined]
                paused[job] = None
                eng.n_dec -= 1
        need = sum(dq.need() for dq in dec.values())  # type: ignore[attr-defined]
        moved = 0  # tokens swapped out or in
        preempted = False
        while need > mem.free:
            victim = mem.youngest()
            k = victim.cls
            partial = victim.pre_left > 0  # partly prefilled: the head of its class's queue
            if not partial and victim in paused:  # held back: in no decode queue
                del paused[victim]
                rule.released(victim)
                left = victim.dec_left
                eng.n_dec += 1  # taken off the decoders' count below
            elif not partial and rule.pauses:  # a resumed decoder may be younger in its queue
                left, _ = dec[k].remove(victim)  # type: ignore[attr-defined]
                need = sum(dq.need() for dq in dec.values())  # type: ignore[attr-defined]
            elif not partial:  # a decoder: out of its queue (its held tokens written back)
                job, left, in_window = dec[k].pop_last()
                assert job is victim, "the youngest resident is its class's youngest decoder"
                if in_window and mem.full(victim):
                    need -= 1
            held = victim.held
            mem.release(victim)
            mem.preemptions += 1
            victim.preempted += 1
            eng.kv -= held
            preempted = True
            if partial:  # recompute
                victim.pre_left += held
                eng.admission.requeued(k, victim)  # type: ignore[union-attr]
            else:
                eng.n_dec -= 1
                victim.dec_left = left
                if not mem.recompute:
                    mem.swapped.append(victim)
                    mem.swapped_tokens += held
                    moved += held
                    continue
                victim.pre_left = held
                wait[k].appendleft(victim)
                eng.admission.requeued(k, victim)  # type: ignore[union-attr]
                eng.n_wait += 1
            victim.held = 0
            mem.recomputed_tokens += held
            eng.pre_backlog += held
            eng.backlog += held
            eng.arrived_work += held
            self.work_left[k] += held
        swapped = mem.swapped
        while swapped and not preempted:  # back in the order they left, while they fit
            job = swapped[0]
            if not mem.fits_back(job, need):
                break
            swapped.popleft()
            mem.swap_in(job)
            moved += job.held
            eng.kv += job.held
            if rule.pauses and rule.decoding(job):
                paused[job] = None
                continue
            need += mem.full(job)
            dec[job.cls].add(job, job.dec_left)
            eng.n_dec += 1
        if paused:  # paused decoders the rule puts back, while their growth fits
            for job in rule.resume(mem, need):
                del paused[job]
                need += mem.full(job)
                dec[job.cls].add(job, job.dec_left)
                eng.n_dec += 1
            assert need <= mem.free, "the decoders resumed must have room to grow"
        shown = eng.shown
        for k in shown:
            shown[k] = 0
        if rule.reads_residents:
            for dq in dec.values():
                dq.materialize()  # type: ignore[attr-defined]
        counts, eng.shown_tokens = rule.admit(mem, wait, order, need, eng.b, eng.kmax)
        shown.update(counts)
        seconds = moved * mem.swap_s
        if paused and not again and not eng.n_dec and not sum(counts.values()):
            # nothing else would run: paused decoders resume whatever the rule's conditions
            # (the rule's choice, else all of them), then growth, swap-in and admission again
            chosen = rule.resume(mem, need, True)
            if not chosen:
                chosen = list(paused)
                for job in chosen:
                    rule.released(job)
            for job in chosen:
                del paused[job]
                dec[job.cls].add(job, job.dec_left)
                eng.n_dec += 1
            seconds += self._make_room(eng, order, again=True)
        return seconds

    def _wake_all(self) -> None:
        """After an event, under a policy that re-decides at every event: every engine that
        may decide now (a station, unless its servers hold jobs they keep; an idle LLM
        engine) gets a decision, taken once no other event is left at this instant."""
        queue = self.decide_queue
        for eng in self.engines:
            if not eng.decide_pending and not eng.busy:
                eng.decide_pending = True
                queue.append(eng.index)

    def _station_decide(self, eng: _Engine, order: Sequence[int] | None = None) -> None:
        """Serve, at station ``eng``, the head of the first class of ``order`` (default: the
        policy's) with a waiting job; preempt the job in service if it is another."""
        if order is None:
            order = self._order(eng)
        if eng.multi:
            self._multi_decide(eng, order)
            return
        chosen = None
        wait = eng.wait
        for k in order:
            q = wait[k]
            if q:
                chosen = q[0]
                break
        cur = eng.current
        if chosen is cur:
            return
        now = self.now
        if cur is not None:  # preempt
            if not eng.preempts:
                return  # non-preemptive: the job in service finishes
            used = now - eng.started
            cur.pre_left -= used
            self.work_left[cur.cls] -= used
            eng.backlog -= used
            eng.done_work += used
            eng.stats.busy_time = eng.done_work  # a station's busy time is its work done
        eng.current = chosen
        if chosen is None:
            eng.version = 0  # no completion is due
            return
        eng.started = now
        if not eng.preempts:
            eng.busy = True  # until the job completes
        self.seq = seq = self.seq + 1
        eng.version = seq  # the completion event's number: a preempted one is stale
        heapq.heappush(self.events, (now + chosen.pre_left, DONE, seq, eng.index, chosen))

    def _multi_decide(self, eng: _Engine, order: Sequence[int]) -> None:
        """Station ``eng`` with several servers decides: preemptive-resume, its servers take
        the first ``servers`` jobs of ``order`` (first come first served within a class),
        preempting the others in service; non-preemptive, its free servers take the first jobs
        of ``order`` not in service."""
        serving, wait = eng.serving, eng.wait
        c = eng.servers
        if eng.preempts:
            chosen: list[Job] = []
            for k in order:
                for job in wait[k]:
                    chosen.append(job)
                    if len(chosen) == c:
                        break
                if len(chosen) == c:
                    break
            keep = set(chosen)
            for job in [j for j in serving if j not in keep]:
                self._multi_stop(eng, job)
            busy = set(serving)
            for job in chosen:
                if job not in busy:
                    self._multi_start(eng, job)
            return
        free = c - len(serving)
        if free > 0:
            busy = set(serving)
            for k in order:
                for job in wait[k]:
                    if free == 0:
                        break
                    if job not in busy:
                        self._multi_start(eng, job)
                        free -= 1
        eng.busy = len(serving) == c  # every server holds a job it keeps

    def _multi_start(self, eng: _Engine, job: Job) -> None:
        """``job`` takes a free server of station ``eng`` now."""
        now = self.now
        self.seq = seq = self.seq + 1
        job.since = now
        job.ver = seq
        eng.serving.append(job)
        heapq.heappush(self.events, (now + job.pre_left, DONE, seq, eng.index, job))

    def _multi_stop(self, eng: _Engine, job: Job) -> float:
        """``job`` leaves its server at station ``eng`` now (preempted, or done: the caller
        then takes it out of its queue); the seconds of work it got since it started."""
        used = self.now - job.since
        job.pre_left -= used
        job.ver = 0  # its completion event, if any, is stale
        self.work_left[job.cls] -= used
        eng.backlog -= used
        eng.done_work += used
        eng.serving.remove(job)
        return used

    # ------------------------------------------------------------------ main loop
    def run(
        self, progress: Callable[[float], None] | None = None, keep_jobs: bool = True
    ) -> NetworkSimulator:
        """Run to the horizon; ``progress`` is called now and then with the time reached.

        ``keep_jobs``: after a run in the compiled loop, write the jobs still in the network
        back as the simulator's objects (queues, jobs in service, pending events), as the
        Python loop leaves them; ``False`` skips that when only :meth:`result` is read (an
        overloaded run may end with tens of thousands of jobs), and the queues then stay as
        they were before the run."""
        if self.external:
            raise RuntimeError("external mode (policy=None): drive the run with advance()/decide()")
        if self.compiled:
            run_compiled(self, progress, BLOCK, FOLD, keep_jobs)
        else:
            self._loop(progress)
        self._finish()
        return self

    def _loop(self, progress: Callable[[float], None] | None) -> int | None:
        """Process events up to the horizon (``None``), or, in external mode, until an engine
        must decide (its index; the decision is always the last action of its event).

        The common steps are written out here rather than called (the hot path of every run):
        a station's completion (:meth:`_complete`, but for the routing of unusual steps, which
        :meth:`_route` does), a new job at a class served by one engine (:meth:`_new_job`)
        and a station's decision (:meth:`_station_decide`); with a trace, the first two are
        called. Decisions due now wait in :attr:`decide_queue` until no other event is left at
        this instant; a station whose job completed, with nothing else due now, decides at once.
        """
        (
            events,
            queue,
            engines,
            entries,
            horizon,
            warmup,
            ext,
            inline,
            work_left,
            last,
            area,
            jobs,
            jobs_np,
            done_class,
            codes,
            vals,
            flow_ws,
            flow_arrived,
            flow_left,
            next_of,
            engine_of,
            buffers,
            poisson,
        ) = self._hot
        heappop, heappush, heapreplace = heapq.heappop, heapq.heappush, heapq.heapreplace
        every = self._every
        fcfs = self._fcfs
        t_check = self.t_check
        now = self.now
        tick = 0
        decisions = 0  # decisions counted here, added to self.decisions on the way out
        # The loop makes no reference cycles, but its jobs can pile up by the ten thousand
        # (an overloaded engine): the cyclic collector, which would scan every live object
        # of the interpreter again and again as they do, waits till the loop returns. Not
        # with a policy of unknown code (it may make cycles) calling in.
        paused = self._pause_gc and gc.isenabled()
        if paused:
            gc.disable()
        try:
            while True:
                if queue and (not events or events[0][0] > now):
                    # a decision due now, and no other event left at this instant
                    if now >= horizon:
                        break
                    a = queue.popleft()
                    eng = engines[a]
                    eng.decide_pending = False
                    if eng.llm:
                        if not eng.busy:
                            if ext and self._needs_decision(eng):
                                if not (self._skip and self._trivial(eng)):
                                    self.pending = a
                                    return a
                                self.decisions += 1  # any order: the engine's own
                                self._form_batch(eng, eng.classes)
                                continue
                            self._form_batch(eng)
                        continue
                    # a station: its decision follows, below
                else:
                    if not events:
                        break
                    event = events[0]
                    t = event[0]
                    if t >= horizon:
                        break
                    _, kind, seq, a, payload = event
                    buf = poisson[a] if kind == ARRIVAL else None
                    if buf is not None:
                        # the workflow's next arrival takes this one's place in the heap (as
                        # self._interarrival(a) gives it)
                        if not buf:
                            self._draw_arrivals(a)
                        self.seq = next_seq = self.seq + 1
                        heapreplace(events, (t + buf.pop(), ARRIVAL, next_seq, a, None))
                    else:
                        heappop(events)
                    if t >= t_check:
                        self._bookkeep(t)
                        t_check = self.t_check
                    self.now = now = t
                    station = -1  # a station whose job completed: it decides after the rest
                    if kind == DONE:
                        eng = engines[a]
                        if eng.llm:
                            eng.busy = False
                            if payload:
                                eng.repeat = None  # decoders left: form the next batch afresh
                                if not inline:
                                    for job in payload:  # type: ignore[union-attr]
                                        self._complete(job)
                                else:
                                    for job in payload:  # type: ignore[union-attr]
                                        # self._complete(job), written out
                                        k = job.cls
                                        lo = last[k]
                                        if lo < warmup:
                                            lo = warmup
                                        n = jobs[k]
                                        if t > lo:  # t < horizon
                                            area[k] += n * (t - lo)
                                        last[k] = t
                                        jobs[k] = n = n - 1
                                        if jobs_np is not None:
                                            jobs_np[k] = n
                                        if t >= warmup:
                                            done_class[k] += 1
                                        arrived = job.arrived
                                        if arrived >= warmup:
                                            codes.append(2 * k)
                                            vals.append(t - arrived)
                                        if next_of[k] == EXIT:
                                            _, t0, w = job.workflow
                                            flow_ws.append(w)
                                            flow_arrived.append(t0)
                                            flow_left.append(t)
                                        else:
                                            self._route(job, k)
                            if ext and self._needs_decision(eng):
                                if not (self._skip and self._trivial(eng)):
                                    self.pending = a
                                    return a
                                self.decisions += 1  # any order: the engine's own
                                self._form_batch(eng, eng.classes)
                                continue
                            self._form_batch(eng)
                            continue
                        job = payload
                        if seq != eng.version:
                            if not eng.multi or job.ver != seq:  # type: ignore[union-attr]
                                continue  # preempted
                            k = job.cls  # type: ignore[union-attr]
                            self._multi_stop(eng, job)  # type: ignore[arg-type]
                            eng.wait[k].remove(job)
                        else:
                            used = t - eng.started
                            k = job.cls  # type: ignore[union-attr]
                            work_left[k] -= used
                            eng.backlog -= used
                            eng.done_work += used  # (and its busy time: see _sync_stations)
                            eng.current = None
                            eng.wait[k].popleft()
                        eng.busy = False  # a server is free
                        eng.stats.batches += 1
                        station = a
                        nk = -1
                        if not inline:
                            self._complete(job)  # type: ignore[arg-type]
                        else:  # self._complete(job), written out
                            lo = last[k]
                            if lo < warmup:
                                lo = warmup
                            n = jobs[k]
                            if t > lo:  # t < horizon
                                area[k] += n * (t - lo)
                            last[k] = t
                            jobs[k] = n = n - 1
                            if jobs_np is not None:
                                jobs_np[k] = n
                            if t >= warmup:
                                done_class[k] += 1
                            arrived = job.arrived  # type: ignore[union-attr]
                            if arrived >= warmup:
                                codes.append(2 * k)
                                vals.append(t - arrived)
                            target = next_of[k]
                            if target is not None and target >= 0:
                                nk, flow, fork = target, job.workflow, job.fork  # type: ignore[union-attr]
                            elif target == EXIT:
                                _, t0, w = job.workflow  # type: ignore[union-attr]
                                flow_ws.append(w)
                                flow_arrived.append(t0)
                                flow_left.append(t)
                            else:
                                self._route(job, k)  # type: ignore[arg-type]
                    else:  # ARRIVAL
                        fid = self.next_id
                        self.next_id = fid + 1
                        flow = (fid, t, a)
                        nk, fork = entries[a], -1
                        if buf is None:  # explicit or deterministic arrivals
                            t_next = self._interarrival(a)
                            if t_next < INF:
                                self.seq = next_seq = self.seq + 1
                                heappush(events, (t_next, ARRIVAL, next_seq, a, None))
                    if nk >= 0:
                        # a job of class nk starts: self._new_job(nk, flow, fork), written out for
                        # a class with one engine
                        j = engine_of[nk]
                        if j < 0 or not inline:
                            self._new_job(nk, flow, fork)
                        else:
                            jid = self.next_id
                            self.next_id = jid + 1
                            self.jobs_created += 1
                            eng = engines[j]
                            buf = buffers[nk]
                            w = buf.pop() if buf else self._draw_work(nk)
                            if eng.llm:
                                p, d = w  # type: ignore[misc]
                                work = float(p + d)
                                job = Job(jid, nk, t, flow, fork, p, d, p)
                                eng.pre_backlog += p
                                eng.repeat = None
                                eng.n_wait += 1
                            else:
                                work = float(w)  # type: ignore[arg-type]
                                job = _StationJob(jid, nk, t, flow, fork, w)
                            eng.backlog += work
                            eng.arrived_work += work
                            work_left[nk] += work
                            eng.wait[nk].append(job)
                            lo = last[nk]
                            if lo < warmup:
                                lo = warmup
                            n = jobs[nk]
                            if t > lo:  # t < horizon
                                area[nk] += n * (t - lo)
                            last[nk] = t
                            jobs[nk] = n = n + 1
                            if jobs_np is not None:
                                jobs_np[nk] = n
                            if not eng.decide_pending and not eng.busy:
                                cur = eng.current
                                rank = eng.rank
                                if (
                                    cur is not None
                                    and rank is not None
                                    and rank[nk] >= rank[cur.cls]
                                ):
                                    # behind the job in service in a fixed order: nothing changes
                                    if not eng.single:
                                        decisions += 1
                                else:
                                    eng.decide_pending = True
                                    queue.append(j)
                    if progress is not None:
                        tick += 1
                        if tick >= 4096:
                            tick = 0
                            self._sync_jobs()
                            self.decisions += decisions
                            decisions = 0
                            progress(t)
                    if every:
                        self._wake_all()
                    if station < 0:
                        continue
                    eng = engines[station]
                    if eng.decide_pending:
                        continue
                    if queue or (events and events[0][0] <= t):
                        # other events at this instant, or decisions raised before: it waits
                        eng.decide_pending = True
                        queue.append(station)
                        continue
                    a = station  # nothing else happens at this instant: it decides now
                # a station decides: serve the first class of the order with a waiting job
                if eng.single:
                    order = eng.classes
                elif ext:
                    if not (self._skip and self._trivial(eng)):
                        self.pending = a  # a station always asks (even with nothing waiting)
                        return a
                    self.decisions += 1  # any order: the engine's own
                    order = eng.classes
                elif eng.fixed is not None:
                    decisions += 1
                    order = eng.fixed
                elif fcfs and not eng.multi:
                    decisions += 1
                    order = None  # the oldest job at the head of a class queue, below
                else:
                    order = self._order(eng)
                if eng.multi:
                    self._multi_decide(eng, order)  # type: ignore[arg-type]
                    continue
                chosen = None
                wait = eng.wait
                if order is None:  # FCFS (ties: the lower class index, as fcfs_order)
                    for q in wait.values():
                        if q:
                            head = q[0]
                            if chosen is None or head.arrived < chosen.arrived:
                                chosen = head
                else:
                    for k in order:
                        q = wait[k]
                        if q:
                            chosen = q[0]
                            break
                cur = eng.current
                if chosen is cur:
                    continue
                if cur is not None:  # preempt
                    if not eng.preempts:
                        continue  # non-preemptive: the job in service finishes
                    used = now - eng.started
                    cur.pre_left -= used
                    work_left[cur.cls] -= used
                    eng.backlog -= used
                    eng.done_work += used
                eng.current = chosen
                if chosen is None:
                    eng.version = 0  # no completion is due
                    continue
                eng.started = now
                if not eng.preempts:
                    eng.busy = True  # until the job completes
                self.seq = seq = self.seq + 1
                eng.version = seq  # the completion event's number: a preempted one is stale
                heappush(events, (now + chosen.pre_left, DONE, seq, a, chosen))
            return None
        finally:
            self.decisions += decisions
            self._sync_stations()
            if paused:
                gc.enable()

    def _finish(self) -> None:
        """End-of-run bookkeeping at the horizon (areas, windows, workflow statistics)."""
        self._sync_jobs()
        horizon = self.horizon
        self.now = horizon
        while self.next_edge < len(self.window_edges):
            edge = self.window_edges[self.next_edge]
            self.window_area[self.next_edge + 1] = self._area_at(edge)
            self.window_class_area[self.next_edge + 1] = self._class_area_at(edge)
            self.next_edge += 1
        for k in range(self.topo.n_classes):
            self._count(k, 0)
        self._fold_logs(final=True)
        self.finished = True

    # ------------------------------------------------------------------ external mode
    @staticmethod
    def _trivial(eng: _Engine) -> bool:
        """At most one class has work at ``eng`` (every order gives the same decision)."""
        wait = eng.wait
        seen = False
        if eng.llm:
            dec = eng.dec
            for k in eng.classes:
                if wait[k] or dec[k].alive:
                    if seen:
                        return False
                    seen = True
        else:
            for k in eng.classes:
                if wait[k]:
                    if seen:
                        return False
                    seen = True
        return True

    def _needs_decision(self, eng: _Engine) -> bool:
        """Would policy mode call ``policy.order`` for ``eng`` now (at its decision epoch)?
        With :attr:`ask_single`, an LLM engine with one class and work asks too (a batch cap
        is a decision there)."""
        if not eng.llm:
            return not eng.single
        mem = eng.mem  # (requests swapped out of a KV cache are work too)
        work = (
            eng.n_dec > 0 or eng.n_wait > 0 or (mem is not None and bool(mem.swapped or mem.paused))
        )
        return work and (self.ask_single or not eng.single)

    def advance(self, skip_trivial: bool = False) -> int | None:
        """External mode: run until an engine must decide (returns its index) or the horizon.

        At the horizon the end-of-run bookkeeping is done and ``None`` is returned (again on
        every later call); :meth:`result` is then available. Raises ``RuntimeError`` in policy
        mode or while a decision is pending.

        ``skip_trivial``: take the decisions where at most one class has work at the engine
        (:meth:`classes_with_work`) without stopping, as ``decide(its classes)`` would (every
        order gives the same batch, or serves the same job, unless a budget split is asked
        for); they are counted in :attr:`decisions` all the same.
        """
        kernel = self._kernel
        if kernel is None or self.pending is not None:  # (the compiled loop's steps: at once)
            if not self.external:
                raise RuntimeError(
                    "advance() needs external mode: NetworkSimulator(net, None, ...)"
                )
            if self.pending is not None:
                raise RuntimeError(f"engine {self.pending} must decide first: call decide(order)")
            if self.finished:
                return None
            if self.compiled:
                reason = why_not(self)  # (ask_single may have been set since)
                if reason is not None:
                    raise ValueError(f"loop: compiled is not possible here: {reason}")
                kernel = self._kernel = CompiledExternal(self, BLOCK, FOLD, self._watch)
        if kernel is not None:
            j = self.pending = kernel.advance(skip_trivial)
        else:
            self._skip = skip_trivial
            j = self._loop(None)
        if j is None:
            self._kernel = None  # its state is written back: the objects answer again
            self._finish()
        return j

    def decide(
        self,
        order: Sequence[int] | None,
        decode_cap: int | None = None,
        token_cap: int | None = None,
    ) -> None:
        """External mode: apply ``order`` (class indices, first served first) at the pending
        engine: form its batch (LLM) or pick the job it serves (station), as policy mode does.

        Classes left out of ``order`` are not served by this batch (a way to study
        non-work-conserving choices); ``None`` orders the classes FCFS (by their oldest job).
        ``decode_cap`` (tokens, LLM engines whose scheduler mixes prefill and decode; ignored
        elsewhere) splits the token budget: decode tokens first up to the cap (one per
        decoding job, classes in ``order``), then prefill fills the budget, then decoding fills
        what prefill left, so the batch stays work-conserving. ``0`` is prefill first,
        ``>= budget`` decode first (Sarathi-Serve's own rule); ``None`` keeps the scheduler's.
        ``token_cap`` (tokens, LLM engines; ignored at stations) caps the batch below the token
        budget (``None``: the budget), as a ``batch-cap`` policy does in policy mode.
        Raises ``RuntimeError`` when no decision is pending and ``ValueError`` for a class the
        engine does not serve or a negative cap.
        """
        j = self.pending
        if j is None:
            raise RuntimeError("no decision is pending: call advance() first")
        eng = self.engines[j]
        if order is None:
            order = self.fcfs_order(j)
        elif not self.class_sets[j].issuperset(order):
            bad = sorted(set(order) - self.class_sets[j])
            raise ValueError(
                f"engine {self.topo.engines[j]!r} does not serve class(es) {bad}; "
                f"its classes are {sorted(eng.classes)}"
            )
        _check_caps(decode_cap, token_cap)
        if self._kernel is not None:
            self._kernel.decide(j, order, decode_cap, token_cap)  # (the kernel counts it)
            self.pending = None
            return
        self.pending = None
        self.decisions += 1
        if eng.llm:
            self._form_batch(eng, order, decode_cap, token_cap)
        else:
            self._station_decide(eng, order)

    def decide_first(
        self, k: int, decode_cap: int | None = None, token_cap: int | None = None
    ) -> None:
        """External mode: the pending engine serves class ``k`` first and its other classes
        by maximum pressure (:meth:`~policyopt.policies.MaxPressure.order_after`), with the
        caps of :meth:`decide`: the ``decide`` of that order, which the compiled loop computes
        itself."""
        j = self.pending
        if self._kernel is None or j is None:
            if self._pressure is None:
                self._pressure = MaxPressure()
                self._pressure.bind(self.net)
            if j is None:
                raise RuntimeError("no decision is pending: call advance() first")
            self.decide(self._pressure.order_after(k, j, self.view), decode_cap, token_cap)
            return
        _check_caps(decode_cap, token_cap)
        self._kernel.decide_first(j, k, decode_cap, token_cap)
        self.pending = None

    def watch(self, scale: Sequence[float], weights: Sequence[float]) -> None:
        """External mode in the compiled loop (call before the first :meth:`advance`): at
        every decision, the kernel also computes what an agent observes, read from
        :attr:`watched`: ``x / (x + c)`` of :meth:`class_state_flat` (``c``: ``scale``, ``3K``
        entries; 0 for ``x <= 0``), a one-hot of the deciding engine and :meth:`memory_free`
        (``3K + J + C`` float32); and ``(job-seconds, weights . job-seconds)`` as
        :meth:`cost_so_far` gives them, the jobs in the network, ``weights . jobs``,
        :meth:`classes_with_work` at the deciding engine as a bit mask (bit ``k``: class
        ``k``), the time and the deciding engine (seven float64). Without effect in the Python
        loop."""
        if self._kernel is not None:
            raise RuntimeError("watch() comes before the first advance()")
        self._watch = (list(scale), list(weights))

    @property
    def watched(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The buffers :meth:`watch` asked for, rewritten at every decision (copy what you
        keep), while the compiled loop runs in external mode; else ``None``."""
        kernel = self._kernel
        if kernel is None or self._watch is None:
            return None
        return kernel.obs, kernel.out

    def classes_with_work(self, j: int) -> list[int]:
        """Classes of engine ``j`` with work there: jobs waiting or decoding (LLM), waiting or
        in service (station); in class-index order."""
        if self._kernel is not None:
            return self._kernel.classes_with_work(j)
        eng = self.engines[j]
        if eng.llm:
            return [k for k in eng.classes if eng.wait[k] or eng.dec[k].alive]
        return [k for k in eng.classes if eng.wait[k]]

    def class_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per class, over all engines, at :attr:`now`: ``(waiting, in_service, work)``.

        ``waiting``: jobs whose prefill has not finished (LLM; partly prefilled prompts
        included) or that are not in service (station); ``in_service``: the other jobs of the
        class: decoding, or finishing in the running batch (LLM), or the job in service
        (station, 0 or 1); ``work``: remaining work, tokens (LLM: prefill and decode tokens
        not yet processed, as of the last batch formed) or seconds (station).
        """
        flat = self.class_state_flat()
        K = self.topo.n_classes
        a = np.asarray(flat)
        return a[:K], a[K : 2 * K], a[2 * K :]

    def class_state_flat(self) -> list[float]:
        """:meth:`class_state` as one Python list ``waiting + in_service + work`` (``3K``
        floats): the environment's per-step read, without numpy's per-call overhead."""
        if self._kernel is not None:
            return self._kernel.class_state_flat()
        waiting = [0.0] * len(self._jobs)
        work = list(self.work_left)
        now = self.now
        for k, q in self._queues:
            waiting[k] += len(q)
        for eng in self._stations:
            cur = eng.current
            if cur is not None:
                k = cur.cls
                waiting[k] -= 1  # the job in service heads its queue
                work[k] -= now - eng.started
            for job in eng.serving:  # several servers
                k = job.cls
                waiting[k] -= 1
                work[k] -= now - job.since
        serving = [j - w for j, w in zip(self._jobs, waiting, strict=True)]
        return waiting + serving + work

    def memory_free(self) -> list[float]:
        """For each engine with a limited KV cache, in engine-index order, the share of its
        blocks free now."""
        if self._kernel is not None:
            return self._kernel.memory_free()
        return [e.mem.free / e.mem.total for e in self.engines if e.mem is not None]

    def engine_jobs(self, j: int) -> tuple[int, int]:
        """``(waiting, decoding)`` at engine ``j`` now: jobs whose prefill (at a station,
        their service) has not finished, and decoding jobs (0 at a station)."""
        if self._kernel is not None:
            return self._kernel.engine_jobs(j)
        eng = self.engines[j]
        return eng.n_wait, eng.n_dec

    def job_seconds(self, t: float | None = None) -> np.ndarray:
        """Job-seconds per class accumulated in ``[warmup, t]`` (``t``: now, capped at the
        horizon); ``holding_cost . job_seconds()`` is the holding cost integral so far."""
        t = min(self.now if t is None else t, self.horizon)
        if self._kernel is not None:  # (the compiled loop's arrays, in external mode)
            area, last = self._kernel.state.area, self._kernel.state.last
        else:
            area, last = self.area, self.last_change
        lo = np.maximum(last, self.warmup)
        return area + self.jobs * np.maximum(t - lo, 0.0)

    def cost_so_far(self, weights: Sequence[float]) -> tuple[float, float]:
        """``(sum(job_seconds()), weights . job_seconds())`` as Python floats: job-seconds and
        weighted job-seconds (``weights``: holding cost per job-second of each class) in
        ``[warmup, now]``; the environment's per-step read of :meth:`job_seconds`."""
        if self._kernel is not None:  # (the compiled loop's arrays, in external mode)
            areas, jobs, lasts = self._kernel.class_counts()
        else:
            areas, jobs, lasts = self._area, self._jobs, self._last
        t = self.now if self.now < self.horizon else self.horizon
        w0 = self.warmup
        total = cost = 0.0
        for a, n, lo, h in zip(areas, jobs, lasts, weights, strict=True):
            if lo < w0:
                lo = w0
            if t > lo:
                a += n * (t - lo)
            total += a
            cost += h * a
        return total, cost

    def add_jobs(self, counts: Sequence[int]) -> None:
        """Put ``counts[k]`` jobs into class ``k`` now (an initial state; before advancing).

        Each job starts a new instance of class ``k``'s workflow at ``k`` (its work drawn from
        class ``k``'s stream) and follows the workflow from there. Classes inside a fork (a
        branch waiting for a join) cannot be filled this way: ``ValueError``.
        """
        if self._kernel is not None:
            raise RuntimeError("the compiled loop runs: add jobs before the first advance()")
        topo = self.topo
        for k, n in enumerate(counts):
            if n and topo.forks[k]:
                raise ValueError(f"class {topo.classes[k]!r} is inside a fork: no initial jobs")
            for _ in range(int(n)):
                fid = self.next_id
                self.next_id += 1
                self._new_job(k, (fid, self.now, topo.workflow[k]), -1)
        self._sync_jobs()

    # ------------------------------------------------------------------ results
    def _class_times(self, what: str, code: int) -> dict[str, float]:
        """Mean, median and 99th percentile (s) of one logged per-class time."""
        n = int(self.class_n[code])
        return {
            f"{what}_mean": float(self.class_sum[code] / n) if n else math.nan,
            f"{what}_p50": self.class_hist[code].quantile(0.5),
            f"{what}_p99": self.class_hist[code].quantile(0.99),
        }

    def _memory_row(self, e: _Engine, span: float) -> dict[str, float | str]:
        """The KV-cache metrics of engine ``e`` (a limited cache) after warm-up: its admission
        rule, tokens
        allocated (mean, most, capacity), preemptions, tokens recomputed and swapped, and how
        often the requests completed were preempted."""
        mem = e.mem
        assert mem is not None
        preempt, recomputed, swapped = (
            a - b for a, b in zip(mem.counts(), e.warm_mem, strict=True)
        )
        counts = e.preempt_counts
        completed = sum(counts.values())
        hit = completed - counts.get(0, 0)
        return {
            "admission": e.admission.label,  # type: ignore[union-attr]
            "mem_capacity": mem.total * mem.block,
            "mem_mean": (e.stats.mem_area - e.warm_stats.mem_area) / span,
            "mem_max": mem.used_max * mem.block,
            "preemptions": preempt,
            "recomputed_tokens": recomputed,
            "swapped_tokens": swapped,
            "preempted_share": hit / completed if completed else math.nan,
            "preemptions_max": max(counts, default=0),
        }

    def result(self) -> NetworkResult:
        """The metrics of the run (call after :meth:`run`)."""
        topo, net = self.topo, self.net
        area, done_class = self.area, self.done_class
        span = max(self.horizon - self.warmup, 1e-12)
        filled = ~np.isnan(self.sample_jobs)
        t = self.sample_t[filled]
        flow = traffic(net)
        # the jobs in the network: unstable when they grow by more than 2% of the job rate
        job_rate = float(flow.rates.sum())
        jobs_v = verdict(t, self.sample_jobs[filled], job_rate, job_rate)
        classes: dict[str, dict[str, float]] = {}
        class_windows = np.diff(self.window_class_area, axis=0) / self.jobs_windows.width
        for k, name in enumerate(topo.classes):
            _, k_lo, k_hi = t_interval(class_windows[:, k])
            classes[name] = {
                "mean_jobs": float(area[k] / span),
                "mean_jobs_low": k_lo,
                "mean_jobs_high": k_hi,
                "throughput": float(done_class[k] / span),
                "holding_cost": float(topo.holding_cost[k] * area[k] / span),
                **self._class_times("latency", 2 * k),
                **self._class_times("ttft", 2 * k + 1),
            }
        engines: dict[str, dict[str, float | str]] = {}
        any_unstable = False
        for e in self.engines:
            name = topo.engines[e.index]
            cap = float(flow.mu[e.index])
            offered = float(flow.loads[e.index]) * cap
            v = verdict(t, self.sample_backlog[e.index][filled], offered, cap)
            any_unstable |= v.verdict == "unstable"
            st = e.stats
            w = e.warm_stats if self.warm else Counters()
            batches = st.batches - w.batches
            row: dict[str, float | str] = {
                "nominal_load": offered / cap,
                "utilization": (st.busy_time - w.busy_time) / span / e.servers,
                "backlog_end": e.backlog,
                "drift": v.drift,
                "drift_low": v.drift_low,
                "drift_high": v.drift_high,
                "fluid_drift": v.fluid_drift,
                "verdict": v.verdict,
                "work_conserved": e.arrived_work - e.done_work - e.backlog,
            }
            if e.llm:
                row["batches"] = batches
                row["batch_fill"] = (
                    (st.tokens - w.tokens) / (batches * e.b) if batches else math.nan
                )
                row["non_work_conserving_share"] = (
                    (st.not_work_conserving - w.not_work_conserving) / batches
                    if batches
                    else math.nan
                )
                row["out_of_range_batches"] = st.out_of_range - w.out_of_range
                row["kv_mean"] = (st.kv_area - w.kv_area) / span
                row["kv_max"] = e.kv_max
                if e.mem is not None:
                    row.update(self._memory_row(e, span))
            engines[name] = row
        workflows: dict[str, dict[str, float]] = {}
        for i, wf in enumerate(net.workflows):
            n = int(self.flow_n[i])
            _, lo, hi = self.flow_done[i].interval_of_rates()
            workflows[wf.name] = {
                "rate": wf.rate,
                "throughput": float(self.flow_done[i].sums.sum() / span),
                "throughput_low": lo,
                "throughput_high": hi,
                "latency_mean": float(self.flow_sum[i] / n) if n else math.nan,
                "latency_p50": self.flow_hist[i].quantile(0.5),
                "latency_p99": self.flow_hist[i].quantile(0.99),
                "completed": n,
            }
        window_jobs = np.diff(self.window_area) / self.jobs_windows.width
        _, j_lo, j_hi = t_interval(window_jobs)
        # a workflow whose throughput interval lies below its arrival rate is not carried
        short = any(
            w["throughput_high"] < (1 - DRIFT_TOLERANCE) * w["rate"] for w in workflows.values()
        )
        if any_unstable or short or jobs_v.verdict == "unstable":
            word = "unstable"
        else:
            word = jobs_v.verdict
        series = {"t": t, "jobs": self.sample_jobs[filled]}
        for e in self.engines:
            series[f"backlog_{topo.engines[e.index]}"] = self.sample_backlog[e.index][filled]
            if e.mem is not None:
                series[f"memory_{topo.engines[e.index]}"] = self.sample_mem[e.index][filled]
        return NetworkResult(
            network=net.name,
            policy=self.policy_name,
            horizon=self.horizon,
            warmup=self.warmup,
            seed=self.seed,
            mean_jobs=float(area.sum() / span),
            mean_jobs_ci=(j_lo, j_hi),
            holding_cost=float(np.dot(topo.holding_cost, area) / span),
            jobs_drift=jobs_v.drift,
            jobs_drift_ci=(jobs_v.drift_low, jobs_v.drift_high),
            verdict=word,
            classes=classes,
            engines=engines,
            workflows=workflows,
            series=series,
            window_jobs=window_jobs,
        )


def simulate_network(
    net: NetworkSpec,
    policy: str | Policy = "fcfs",
    *,
    horizon: float = 3600.0,
    warmup: float | None = None,
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
) -> NetworkResult:
    """Simulate ``net`` under ``policy`` and return its metrics."""
    sim = NetworkSimulator(net, policy, horizon=horizon, warmup=warmup, seed=seed)
    sim.run(progress=progress)
    return sim.result()
