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

**Stations** serve one job at a time, preemptive-resume: at every arrival and completion the
policy's first class with a waiting job is served (FCFS within a class).

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
(``tests/test_network_external.py``).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Protocol

import numpy as np

from policyopt.errors import SpecError
from policyopt.model.batch_time import AffineBatchTime
from policyopt.model.network import EXIT, JOIN, LLMEngine, NetworkSpec
from policyopt.policies import NetworkView, Policy, make_policy
from policyopt.sim.batching import BatchRecord, Counters, batch_time_table, not_work_conserving
from policyopt.sim.schedulers import BatchPlan, make_scheduler
from policyopt.sim.stability import DRIFT_TOLERANCE, verdict
from policyopt.sim.stats import LogHistogram, WindowMeans, t_interval
from policyopt.solvers.traffic import traffic

ARRIVAL, DONE, DECIDE = 0, 1, 2  # event kinds; DECIDE sorts after the others at one instant
INF = math.inf


class DecodeQueue:
    """Decoding jobs of one class at one engine, oldest first; serves prefixes in O(min(m, D-m)).

    ``alive[job] = key`` with ``remaining decode tokens = key - G``; a heap of keys finds the
    finished jobs. Serving the oldest ``m`` of ``D`` either raises the keys of the ``D - m``
    youngest (and increments ``G``) or lowers the keys of the ``m`` oldest, whichever is fewer;
    heap entries are corrected lazily when they reach the top.
    """

    __slots__ = ("G", "alive", "heap")

    def __init__(self) -> None:
        self.alive: dict[Job, int] = {}
        self.heap: list[tuple[int, int, Job]] = []
        self.G = 0

    def __len__(self) -> int:
        return len(self.alive)

    def add(self, job: Job, tokens: int) -> None:
        key = self.G + tokens
        self.alive[job] = key
        heapq.heappush(self.heap, (key, job.id, job))

    def remaining(self, job: Job) -> int:
        return self.alive[job] - self.G

    def serve(self, m: int) -> list[Job]:
        """One decode token to each of the ``m`` oldest jobs; the jobs that finish."""
        alive, heap = self.alive, self.heap
        D = len(alive)
        if m <= 0:
            return []
        if m >= D:
            self.G += 1
        elif m <= D - m:
            for job in list(islice(alive, m)):
                key = alive[job] - 1
                alive[job] = key
                heapq.heappush(heap, (key, job.id, job))
        else:
            for job in list(islice(reversed(alive), D - m)):
                alive[job] += 1
            self.G += 1
        G = self.G
        done: list[Job] = []
        while heap and heap[0][0] <= G:
            key, _, job = heapq.heappop(heap)
            cur = alive.get(job)
            if cur is None or cur < key:
                continue  # finished already, or a stale entry of a lowered key
            if cur == G:
                del alive[job]
                done.append(job)
            else:  # the key was raised: re-file it
                heapq.heappush(heap, (cur, job.id, job))
        return done


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
        "cls",
        "dec_tokens",
        "engine",
        "fork",
        "id",
        "pre_left",
        "prompt",
        "work",
        "workflow",
    )

    def __init__(
        self, jid: int, cls: int, engine: int, arrived: float, workflow: int, fork: int
    ) -> None:
        self.id = jid
        self.cls = cls
        self.engine = engine
        self.arrived = arrived
        self.workflow = workflow
        self.fork = fork
        self.pre_left = 0  # prefill tokens left (LLM), or service seconds left (station)
        self.work = 0.0  # total work: tokens (LLM) or seconds (station)
        self.dec_tokens = 0  # decode tokens (LLM)
        self.prompt = 0  # prompt tokens (LLM)

    def __lt__(self, other: Job) -> bool:
        return self.id < other.id


class _Engine:
    """State of one engine during a run."""

    def __init__(self, index: int, spec: object, classes: tuple[int, ...]) -> None:
        self.index = index
        self.llm = isinstance(spec, LLMEngine)
        self.classes = classes
        self.wait: dict[int, deque[Job]] = {k: deque() for k in classes}
        self.dec: dict[int, DecodeQueue] = {k: DecodeQueue() for k in classes}
        self.unstarted: dict[int, deque[Job]] = {k: deque() for k in classes}  # no token yet
        self.busy = False
        self.decide_pending = False
        self.backlog = 0.0  # remaining work at this engine: tokens, or seconds at a station
        self.n_wait = 0  # jobs whose prefill (or service) has not finished
        self.n_dec = 0  # decoding jobs
        self.pre_backlog = 0  # prefill tokens waiting
        self.arrived_work = 0.0
        self.done_work = 0.0
        self.stats = Counters()
        self.warm_stats = Counters()
        self.current: Job | None = None  # station: the job in service
        self.started = 0.0
        self.version = 0
        self.rr = 0
        if self.llm:
            assert isinstance(spec, LLMEngine)
            self.sched = make_scheduler(spec.scheduler)
            self.b = spec.token_budget
            self.kmax = spec.max_seqs if spec.max_seqs is not None else 1 << 62
            self.bt = spec.batch_time
            self.table = batch_time_table(spec.engine_spec())
            bt = self.bt
            self.kv_matters = isinstance(bt, AffineBatchTime) and bt.ckv_ms > 0
            self.decode_first = spec.scheduler.decode_first
            self.mixes = spec.scheduler.mixes
            self.request_level = spec.scheduler.request_level
        self.kv = 0  # KV-cache tokens held: prompt tokens computed + decoded tokens, resident
        self.kv_max = 0

    # the queues as a scheduler reads them (policyopt.sim.schedulers.base.Queues)
    def decoding(self, k: int) -> int:
        return len(self.dec[k].alive)

    def waiting(self, k: int) -> int:
        return len(self.wait[k])

    def prompts(self, k: int) -> tuple[Iterable[int], int]:
        return (job.pre_left for job in self.wait[k]), 0

    def remaining(self) -> Iterator[int]:
        """Prefill tokens left of every waiting prompt at this engine."""
        return (job.pre_left for q in self.wait.values() for job in q)


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

    def summary(self) -> dict[str, object]:
        """JSON-ready scalars and per-item tables, no series
        (:func:`~policyopt.jsonout.json_ready`: intervals as lists, non-finite as ``None``)."""
        from policyopt.jsonout import json_ready

        return json_ready({k: v for k, v in self.__dict__.items() if k != "series"})


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
        self.policy_name = "external" if self.policy is None else self.policy.name
        self.pending: int | None = None  # external mode: the engine whose decision is pending
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
            _Engine(j, net.engines[name], tuple(classes_at[j]))
            for j, name in enumerate(topo.engines)
        ]
        P = topo.routing_matrix().toarray()
        rate = np.array([1.0 / w if w > 0 else 0.0 for w in topo.work])
        self.jobs = np.zeros(K)
        self.view = NetworkView(
            net, self.jobs, tuple(map(tuple, classes_at)), P, rate, simulator=self
        )
        self.class_sets = [frozenset(c) for c in classes_at]
        # remaining work per class, all engines: tokens (LLM: prefill + decode not yet
        # processed, as of the last batch formed) or seconds (station, as of the last start)
        self.work_left = [0.0] * K
        self.events: list[tuple[float, int, int, int, object]] = []
        self.seq = 0
        self.next_id = 0
        self.jobs_created = 0  # class visits started (for benchmarks)
        self.now = 0.0
        self.forks: dict[int, list[int]] = {}  # fork id -> [branches left, join class, parent]
        self.flows: dict[int, tuple[float, int]] = {}  # workflow instance -> (arrival, index)
        self.buffers: list[list[tuple[int, int] | float]] = [[] for _ in range(K)]
        # statistics
        self.area = np.zeros(K)  # job-seconds per class inside [warmup, horizon]
        self.last_change = np.zeros(K)
        self.done_class = np.zeros(K, dtype=np.int64)
        w = max(1, len(net.workflows))
        self.flow_hist = [LogHistogram() for _ in range(w)]
        self.flow_sum = np.zeros(w)
        self.flow_n = np.zeros(w, dtype=np.int64)
        end = max(self.horizon, self.warmup + 1e-9)
        self.flow_done = [WindowMeans(self.warmup, end, windows) for _ in range(w)]
        self.jobs_windows = WindowMeans(self.warmup, end, windows)
        self.window_edges = self.warmup + self.jobs_windows.width * np.arange(1, windows + 1)
        self.window_area = np.zeros(windows + 1)  # total job-seconds at each window edge
        self.next_edge = 0
        self.flow_log: list[tuple[int, float, float]] = []
        # per class, jobs arriving after warm-up: time in the class and (LLM) to first token;
        # logged as (2k or 2k + 1, seconds), folded into histograms now and then
        self.class_hist = [LogHistogram() for _ in range(2 * K)]
        self.class_sum = np.zeros(2 * K)
        self.class_n = np.zeros(2 * K, dtype=np.int64)
        self.time_log: list[tuple[int, float]] = []
        self.samples = int(samples)
        self.sample_t = np.linspace(0.0, self.horizon, self.samples, endpoint=False)
        self.sample_jobs = np.full(self.samples, np.nan)
        self.sample_backlog = np.full((J, self.samples), np.nan)
        self.next_sample = 0
        self.t_next_sample = float(self.sample_t[0]) if self.samples else INF
        self.t_next_edge = float(self.window_edges[0])
        self.warm = self.warmup <= 0
        self.sources: dict[int, tuple[list[float], list[int]]] = {}
        for name, source in (requests or {}).items():
            self._add_source(name, source)
        for i in range(len(net.workflows)):
            t = self._interarrival(i)
            if t < INF:
                self._push(t, ARRIVAL, i, None)

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
        arr = self.net.workflows[i].arrival
        if arr.kind == "deterministic":
            return self.now + 1.0 / arr.rate
        return self.now + float(self.arrival_rng[i].exponential(1.0 / arr.rate))

    def _draw_work(self, k: int) -> tuple[int, int] | float:
        buf = self.buffers[k]
        if not buf:
            rng = self.work_rng[k]
            wl = self.workloads[k]
            if wl is not None:
                p = wl.prompt_dist.sample(rng, 1024, wl.max_prompt_len).tolist()
                d = wl.output_dist.sample(rng, 1024, wl.max_output_len).tolist()
                buf.extend(zip(reversed(p), reversed(d), strict=True))
            else:
                svc = self.class_specs[k].service
                assert svc is not None
                buf.extend(reversed(svc.sample(rng, 1024).tolist()))
        return buf.pop()

    def _count(self, k: int, delta: int) -> None:
        """Change the job count of class ``k`` at the current time (time-average bookkeeping)."""
        t = self.now
        lo = self.last_change[k]
        if lo < self.warmup:
            lo = self.warmup
        hi = t if t < self.horizon else self.horizon
        if hi > lo:
            self.area[k] += self.jobs[k] * (hi - lo)
        self.last_change[k] = t
        self.jobs[k] += delta

    def _area_at(self, t: float) -> float:
        """Job-seconds of all classes accumulated in ``[warmup, t]``."""
        lo = np.maximum(self.last_change, self.warmup)
        return float(self.area.sum() + (self.jobs * np.clip(t - lo, 0.0, None)).sum())

    # ------------------------------------------------------------------ jobs
    def _new_job(self, k: int, workflow: int, fork: int) -> None:
        topo = self.topo
        elig = topo.eligible[k]
        if len(elig) == 1:
            j = elig[0]
        else:
            rule = topo.routing[k]
            if rule == "round_robin":
                eng = self.engines[elig[0]]
                j = elig[eng.rr % len(elig)]
                eng.rr += 1
            elif rule == "random":
                j = elig[int(self.route_rng.integers(len(elig)))]
            else:  # jsq: least remaining work
                j = min(elig, key=lambda e: (self.engines[e].backlog, e))
        job = Job(self.next_id, k, j, self.now, workflow, fork)
        self.next_id += 1
        self.jobs_created += 1
        if self.trace is not None:
            self.trace.append((self.now, "start", k, workflow, fork))
        eng = self.engines[j]
        w = self._draw_work(k)
        if eng.llm:
            p, d = w  # type: ignore[misc]
            job.pre_left = p
            job.prompt = p
            job.work = float(p + d)
            job.dec_tokens = d
        else:
            job.pre_left = w  # type: ignore[assignment]
            job.work = float(w)  # type: ignore[arg-type]
        eng.backlog += job.work
        eng.arrived_work += job.work
        self.work_left[k] += job.work
        eng.wait[k].append(job)
        eng.n_wait += 1
        if eng.llm:
            eng.pre_backlog += job.pre_left
        self._count(k, +1)
        if not eng.decide_pending and (not eng.busy or not eng.llm):
            eng.decide_pending = True
            self._push(self.now, DECIDE, j, None)

    def _complete(self, job: Job) -> None:
        """Route a finished job to its workflow's next step."""
        k = job.cls
        self._count(k, -1)
        if self.trace is not None:
            self.trace.append((self.now, "done", k, job.workflow, job.fork))
        if self.now >= self.warmup:
            self.done_class[k] += 1
        if job.arrived >= self.warmup:
            self._log_time(2 * k, self.now - job.arrived)
        step = self.topo.steps[k]
        if step.kind == "random":
            u = float(self.route_rng.random())
            acc = 0.0
            target = step.targets[-1]
            for t, p in zip(step.targets, step.probs, strict=True):
                acc += p
                if u < acc:
                    target = t
                    break
        elif step.kind == "fork":
            fid = self.next_id
            self.next_id += 1
            self.forks[fid] = [len(step.targets), int(step.join_class), job.fork]  # type: ignore[arg-type]
            for t in step.targets:
                self._new_job(t, job.workflow, fid)
            return
        else:
            target = step.targets[0]
        if target == EXIT:
            self._finish_flow(job.workflow)
        elif target == JOIN:
            rec = self.forks[job.fork]
            rec[0] -= 1
            if rec[0] == 0:
                del self.forks[job.fork]
                self._new_job(rec[1], job.workflow, rec[2])
        else:
            self._new_job(target, job.workflow, job.fork)

    def _finish_flow(self, flow: int) -> None:
        t0, w = self.flows.pop(flow)
        self.flow_log.append((w, t0, self.now))
        if len(self.flow_log) >= 65536:
            self._fold_flows()

    def _log_time(self, code: int, seconds: float) -> None:
        self.time_log.append((code, seconds))
        if len(self.time_log) >= 65536:
            self._fold_times()

    def _fold_times(self) -> None:
        """Fold the logged per-class times into the streaming statistics."""
        if not self.time_log:
            return
        arr = np.array(self.time_log)
        self.time_log.clear()
        codes = arr[:, 0].astype(np.int64)
        for c in np.unique(codes).tolist():
            vals = arr[codes == c, 1]
            self.class_hist[c].add(vals)
            self.class_sum[c] += float(vals.sum())
            self.class_n[c] += len(vals)

    def _fold_flows(self) -> None:
        """Fold finished workflows into the streaming statistics."""
        if not self.flow_log:
            return
        arr = np.array(self.flow_log)
        self.flow_log.clear()
        for w in range(len(self.flow_hist)):
            rows = arr[arr[:, 0] == w]
            self.flow_done[w].add(rows[:, 2])
            meas = rows[rows[:, 1] >= self.warmup]
            lat = meas[:, 2] - meas[:, 1]
            self.flow_hist[w].add(lat)
            self.flow_sum[w] += float(lat.sum())
            self.flow_n[w] += len(lat)

    # ------------------------------------------------------------------ engines
    def _decide(self, eng: _Engine) -> None:
        eng.decide_pending = False
        self.view.now = self.now
        if eng.llm:
            if not eng.busy:
                self._form_batch(eng)
        else:
            self._station_decide(eng)

    def _order(self, eng: _Engine) -> list[int] | tuple[int, ...]:
        if len(eng.classes) == 1:
            return eng.classes  # nothing to order
        self.decisions += 1
        order = self.policy.order(eng.index, self.view)  # type: ignore[union-attr]
        if order is not None:
            return order
        return self.fcfs_order(eng.index)

    def fcfs_order(self, j: int) -> list[int]:
        """The classes of engine ``j`` first-come first-served across classes: by the arrival
        time of each class's oldest job there (waiting, or decoding at an LLM engine)."""
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
        self, eng: _Engine, order: Sequence[int] | None = None, decode_cap: int | None = None
    ) -> None:
        D, Q = eng.n_dec, eng.n_wait
        if D == 0 and Q == 0:
            eng.busy = False
            return
        if order is None:
            order = self._order(eng)
            if self.policy_splits:
                decode_cap = self.policy.decode_cap(eng.index, self.view)  # type: ignore[union-attr]
        b, kmax = eng.b, eng.kmax
        A = D + eng.pre_backlog  # tokens of work available now
        plan = eng.sched.form(eng, order, b, kmax, decode_cap)
        x, m = plan.x, plan.m
        n = x + m
        if n == 0:  # cannot happen with work present; guard against a frozen clock
            raise RuntimeError(f"empty batch at t={self.now} at engine {eng.index}")
        dec, wait = eng.dec, eng.wait
        st = eng.stats
        # work conservation, judged on the queues the batch was formed from
        if n != b and not_work_conserving(n, A, b, kmax, D, Q, eng.remaining):
            st.not_work_conserving += 1
        if eng.table is not None:
            dt = eng.table[n]
        else:
            kv_read = 0
            if eng.kv_matters:  # context read: continued prompts, and every decoder served
                for k, _, _ in plan.prefill:
                    head = wait[k][0]
                    kv_read += head.prompt - head.pre_left
                for k, mk in plan.decode:
                    dq = dec[k]
                    alive, G = dq.alive, dq.G
                    for job in islice(alive, mk):
                        kv_read += job.prompt + job.dec_tokens - (alive[job] - G)
            dt = eng.bt.seconds(x, m, kv_read)
            if not eng.bt.in_range(n, kv_read):
                st.out_of_range += 1
        t_end = self.now + dt
        if self.record:
            self._record(eng, plan, t_end)
        # KV cache: context held during the batch, then the batch's new tokens
        st.kv_area += eng.kv * dt
        kv = eng.kv + n
        if kv > eng.kv_max:
            eng.kv_max = kv
        # tokens processed now; completions take effect when the batch ends
        finished: list[Job] = []
        work_left = self.work_left
        for k, mk in plan.decode:
            us = eng.unstarted[k]
            if us:  # the youngest decoders have no token yet: those served now get their first
                for _ in range(mk - (len(dec[k].alive) - len(us))):
                    job = us.popleft()
                    if job.arrived >= self.warmup:
                        self._log_time(2 * k + 1, t_end - job.arrived)
            done = dec[k].serve(mk)
            if done:
                finished.extend(done)
                for job in done:  # a finished request frees its whole context
                    kv -= job.prompt + job.dec_tokens
            work_left[k] -= mk
        eng.kv = kv
        eng.n_dec -= len(finished)
        for k, whole, chunk in plan.prefill:
            q = wait[k]
            for _ in range(whole):
                job = q.popleft()
                work_left[k] -= job.pre_left
                job.pre_left = 0
                dec[k].add(job, job.dec_tokens)
                eng.unstarted[k].append(job)
            eng.n_wait -= whole
            eng.n_dec += whole
            if chunk:
                q[0].pre_left -= chunk
                work_left[k] -= chunk
        eng.pre_backlog -= x
        eng.backlog -= n
        eng.done_work += n
        st.batches += 1
        st.tokens += n
        st.full += n == b
        st.busy_time += dt
        eng.busy = True
        self._push(t_end, DONE, eng.index, finished)

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

    def _station_decide(self, eng: _Engine, order: Sequence[int] | None = None) -> None:
        if order is None:
            order = self._order(eng)
        chosen = None
        for k in order:
            if eng.wait[k]:
                chosen = eng.wait[k][0]
                break
        cur = eng.current
        if chosen is cur:
            if cur is None:
                eng.busy = False
            return
        if cur is not None:  # preempt
            used = self.now - eng.started
            cur.pre_left -= used
            self.work_left[cur.cls] -= used
            eng.backlog -= used
            eng.done_work += used
            eng.stats.busy_time += used
        eng.version += 1
        eng.current = chosen
        if chosen is None:
            eng.busy = False
            return
        eng.busy = True
        eng.started = self.now
        self._push(self.now + chosen.pre_left, DONE, eng.index, (eng.version, chosen))

    def _station_done(self, eng: _Engine, payload: tuple[int, Job]) -> None:
        version, job = payload
        if version != eng.version:
            return  # preempted
        used = self.now - eng.started
        self.work_left[job.cls] -= used
        eng.backlog -= used
        eng.done_work += used
        eng.stats.busy_time += used
        eng.stats.batches += 1
        eng.current = None
        eng.wait[job.cls].popleft()
        eng.n_wait -= 1
        self._complete(job)
        if not eng.decide_pending:
            eng.decide_pending = True
            self._push(self.now, DECIDE, eng.index, None)

    # ------------------------------------------------------------------ main loop
    def run(self, progress: Callable[[float], None] | None = None) -> NetworkSimulator:
        """Run to the horizon; ``progress`` is called now and then with the time reached."""
        if self.external:
            raise RuntimeError("external mode (policy=None): drive the run with advance()/decide()")
        self._loop(progress)
        self._finish()
        return self

    def _loop(self, progress: Callable[[float], None] | None) -> int | None:
        """Process events up to the horizon (``None``), or, in external mode, until an engine
        must decide (its index; the decision is always the last action of its event)."""
        events = self.events
        engines = self.engines
        horizon = self.horizon
        ext = self.external
        tick = 0
        while events:
            t, kind, _, a, payload = events[0]
            if t >= horizon and kind != DONE:
                break
            if t >= horizon and kind == DONE:
                break
            heapq.heappop(events)
            if not self.warm and t >= self.warmup:
                self.warm = True
                for e in engines:
                    e.warm_stats = e.stats.copy()
            if t > self.t_next_sample:
                while self.next_sample < self.samples and self.sample_t[self.next_sample] < t:
                    i = self.next_sample
                    self.sample_jobs[i] = self.jobs.sum()
                    for e in engines:
                        self.sample_backlog[e.index, i] = e.backlog
                    self.next_sample += 1
                self.t_next_sample = (
                    float(self.sample_t[self.next_sample])
                    if self.next_sample < self.samples
                    else INF
                )
            if t >= self.t_next_edge:
                while (
                    self.next_edge < len(self.window_edges)
                    and self.window_edges[self.next_edge] <= t
                ):
                    self.window_area[self.next_edge + 1] = self._area_at(
                        self.window_edges[self.next_edge]
                    )
                    self.next_edge += 1
                self.t_next_edge = (
                    float(self.window_edges[self.next_edge])
                    if self.next_edge < len(self.window_edges)
                    else INF
                )
            self.now = t
            if kind == ARRIVAL:
                fid = self.next_id
                self.next_id += 1
                self.flows[fid] = (t, a)
                self._new_job(self.topo.entries[a], fid, -1)
                t_next = self._interarrival(a)
                if t_next < INF:
                    self._push(t_next, ARRIVAL, a, None)
            elif kind == DONE:
                eng = engines[a]
                if eng.llm:
                    eng.busy = False
                    for job in payload:  # type: ignore[union-attr]
                        self._complete(job)
                    if ext and self._needs_decision(eng):
                        self.pending = a
                        return a
                    self._form_batch(eng)
                else:
                    self._station_done(eng, payload)  # type: ignore[arg-type]
            else:
                eng = engines[a]
                if ext:
                    eng.decide_pending = False
                    self.view.now = t
                    if (not eng.llm or not eng.busy) and self._needs_decision(eng):
                        self.pending = a
                        return a
                self._decide(eng)
            tick += 1
            if progress is not None and tick >= 4096:
                tick = 0
                progress(t)
        return None

    def _finish(self) -> None:
        """End-of-run bookkeeping at the horizon (areas, windows, workflow statistics)."""
        horizon = self.horizon
        self.now = horizon
        while self.next_edge < len(self.window_edges):
            self.window_area[self.next_edge + 1] = self._area_at(self.window_edges[self.next_edge])
            self.next_edge += 1
        for k in range(self.topo.n_classes):
            self._count(k, 0)
        self._fold_flows()
        self._fold_times()
        self.finished = True

    # ------------------------------------------------------------------ external mode
    @staticmethod
    def _needs_decision(eng: _Engine) -> bool:
        """Would policy mode call ``policy.order`` for ``eng`` now (at its decision epoch)?"""
        if len(eng.classes) == 1:
            return False
        return not eng.llm or eng.n_dec > 0 or eng.n_wait > 0

    def advance(self) -> int | None:
        """External mode: run until an engine must decide (returns its index) or the horizon.

        At the horizon the end-of-run bookkeeping is done and ``None`` is returned (again on
        every later call); :meth:`result` is then available. Raises ``RuntimeError`` in policy
        mode or while a decision is pending.
        """
        if not self.external:
            raise RuntimeError("advance() needs external mode: NetworkSimulator(net, None, ...)")
        if self.pending is not None:
            raise RuntimeError(f"engine {self.pending} must decide first: call decide(order)")
        if self.finished:
            return None
        j = self._loop(None)
        if j is None:
            self._finish()
        return j

    def decide(self, order: Sequence[int] | None, decode_cap: int | None = None) -> None:
        """External mode: apply ``order`` (class indices, first served first) at the pending
        engine: form its batch (LLM) or pick the job it serves (station), as policy mode does.

        Classes left out of ``order`` are not served by this batch (a way to study
        non-work-conserving choices); ``None`` orders the classes FCFS (by their oldest job).
        ``decode_cap`` (tokens, LLM engines whose scheduler mixes prefill and decode; ignored
        elsewhere) splits the token budget: decode tokens first up to the cap (one per
        decoding job, classes in ``order``), then prefill fills the budget, then decoding fills
        what prefill left, so the batch stays work-conserving. ``0`` is prefill first,
        ``>= budget`` decode first (Sarathi-Serve's own rule); ``None`` keeps the scheduler's.
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
        if decode_cap is not None and decode_cap < 0:
            raise ValueError(f"decode_cap must be >= 0 tokens, got {decode_cap}")
        self.pending = None
        self.decisions += 1
        if eng.llm:
            self._form_batch(eng, order, decode_cap)
        else:
            self._station_decide(eng, order)

    def classes_with_work(self, j: int) -> list[int]:
        """Classes of engine ``j`` with work there: jobs waiting or decoding (LLM), waiting or
        in service (station); in class-index order."""
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
        waiting = [0.0] * self.topo.n_classes
        work = list(self.work_left)
        now = self.now
        for eng in self.engines:
            wait = eng.wait
            for k in eng.classes:
                waiting[k] += len(wait[k])
            if not eng.llm and eng.current is not None:
                k = eng.current.cls
                waiting[k] -= 1  # the job in service heads its queue
                work[k] -= now - eng.started
        serving = [j - w for j, w in zip(self.jobs.tolist(), waiting, strict=True)]
        return waiting + serving + work

    def job_seconds(self, t: float | None = None) -> np.ndarray:
        """Job-seconds per class accumulated in ``[warmup, t]`` (``t``: now, capped at the
        horizon); ``holding_cost . job_seconds()`` is the holding cost integral so far."""
        t = min(self.now if t is None else t, self.horizon)
        lo = np.maximum(self.last_change, self.warmup)
        return self.area + self.jobs * np.maximum(t - lo, 0.0)

    def cost_so_far(self, weights: Sequence[float]) -> tuple[float, float]:
        """``(sum(job_seconds()), weights . job_seconds())`` as Python floats: job-seconds and
        weighted job-seconds (``weights``: holding cost per job-second of each class) in
        ``[warmup, now]``; the environment's per-step read of :meth:`job_seconds`."""
        t = self.now if self.now < self.horizon else self.horizon
        w0 = self.warmup
        total = cost = 0.0
        for a, n, lo, h in zip(
            self.area.tolist(), self.jobs.tolist(), self.last_change.tolist(), weights, strict=True
        ):
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
        topo = self.topo
        for k, n in enumerate(counts):
            if n and topo.forks[k]:
                raise ValueError(f"class {topo.classes[k]!r} is inside a fork: no initial jobs")
            for _ in range(int(n)):
                fid = self.next_id
                self.next_id += 1
                self.flows[fid] = (self.now, topo.workflow[k])
                self._new_job(k, fid, -1)

    # ------------------------------------------------------------------ results
    def _class_times(self, what: str, code: int) -> dict[str, float]:
        """Mean, median and 99th percentile (s) of one logged per-class time."""
        n = int(self.class_n[code])
        return {
            f"{what}_mean": float(self.class_sum[code] / n) if n else math.nan,
            f"{what}_p50": self.class_hist[code].quantile(0.5),
            f"{what}_p99": self.class_hist[code].quantile(0.99),
        }

    def result(self) -> NetworkResult:
        """The metrics of the run (call after :meth:`run`)."""
        topo, net = self.topo, self.net
        span = max(self.horizon - self.warmup, 1e-12)
        filled = ~np.isnan(self.sample_jobs)
        t = self.sample_t[filled]
        flow = traffic(net)
        # the jobs in the network: unstable when they grow by more than 2% of the job rate
        job_rate = float(flow.rates.sum())
        jobs_v = verdict(t, self.sample_jobs[filled], job_rate, job_rate)
        classes: dict[str, dict[str, float]] = {}
        for k, name in enumerate(topo.classes):
            classes[name] = {
                "mean_jobs": float(self.area[k] / span),
                "throughput": float(self.done_class[k] / span),
                "holding_cost": float(topo.holding_cost[k] * self.area[k] / span),
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
                "utilization": (st.busy_time - w.busy_time) / span,
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
        _, j_lo, j_hi = t_interval(np.diff(self.window_area) / self.jobs_windows.width)
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
        return NetworkResult(
            network=net.name,
            policy=self.policy_name,
            horizon=self.horizon,
            warmup=self.warmup,
            seed=self.seed,
            mean_jobs=float(self.area.sum() / span),
            mean_jobs_ci=(j_lo, j_hi),
            holding_cost=float(np.dot(topo.holding_cost, self.area) / span),
            jobs_drift=jobs_v.drift,
            jobs_drift_ci=(jobs_v.drift_low, jobs_v.drift_high),
            verdict=word,
            classes=classes,
            engines=engines,
            workflows=workflows,
            series=series,
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
