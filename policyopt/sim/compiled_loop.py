"""The compiled loop of a station network: which runs it takes, and the state it works on.

A run of :class:`~policyopt.sim.network_sim.NetworkSimulator` in policy mode goes through
the compiled event loop (:mod:`policyopt.sim.station_kernel`, numba) when :func:`why_not`
finds nothing against it:

* every engine is a classic station (one or several servers, preemptive-resume or not);
* every class is served at one engine, and its jobs go next to one class, out of the
  network, at random among classes, the exit and a join, or fork into parallel branches;
* no trace, no explicit request lists;
* the policy's order at each station is one the kernel computes: the station's one class,
  a fixed order (any static priority: ``priority:``, ``c-mu``, ``lbfs``, ``fbfs``), first
  come first served, the maximum-pressure family (``max-pressure``,
  ``max-pressure:dai-lin``, ``max-weight``, ``weighted-pressure:``), or a linear index
  (``linear:``).

Everything else runs in the Python loop, which stays the reference: the compiled loop
performs the same arithmetic in the same order and gives the same results bit for bit
(``tests/test_compiled_loop.py`` runs both). ``NetworkSimulator(..., loop=...)`` chooses:
``"auto"`` (the default: compiled when the run may take it and numba imports), ``"python"``
or ``"compiled"`` (an error naming the reason when the run may not take it).

:class:`LoopState` copies the simulator's state into numpy arrays, hands Python what it must
do when the kernel stops (draw the next block of random numbers, fold the logs, grow a buffer,
take the statistics due at a sample time or window edge, show progress), and at the end writes
the state back (job queues, events, counters), so the simulator reads the same afterwards.
"""

from __future__ import annotations

import copy
import gc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from policyopt.index_policies import LinearIndex
from policyopt.policies import DaiLinMaxPressure, MaxPressure
from policyopt.sim.admission.fcfs import FCFS as FCFSAdmission
from policyopt.sim.schedulers.fastertransformer import FasterTransformer
from policyopt.sim.schedulers.orca import Orca
from policyopt.sim.schedulers.sarathi import Sarathi
from policyopt.sim.schedulers.vllm import VLLM

if TYPE_CHECKING:
    from policyopt.sim.network_sim import Job, NetworkSimulator

BUILT_IN = {FasterTransformer: "fastertransformer", VLLM: "vllm", Orca: "orca", Sarathi: "sarathi"}
"""The schedulers the compiled loop knows (an exact type: a subclass may change a rule)."""

JOB_ARRAYS = ("j_cls", "j_arr", "j_fid", "j_ft0", "j_fw", "j_left", "j_id")
JOB_ARRAYS += ("j_since", "j_ver", "mark", "j_tok", "r_buf", "j_fork")
"""The per-slot arrays of :class:`LoopState` (they grow together)."""

PREEMPT_COLUMNS = 64
"""Columns of the kernel's count of completed requests by times preempted, at first (more
are added when a request is preempted that often)."""

LOOPS = ("auto", "python", "compiled")
"""The values of ``NetworkSimulator(loop=...)``."""


def why_not(sim: NetworkSimulator) -> str | None:
    """Why ``sim`` may not run in the compiled loop (``None``: it may)."""
    if sim.trace is not None:
        return "a trace is recorded in the Python loop"
    if sim.sources:
        return "explicit request lists feed LLM engines"
    for eng in sim.engines:
        if eng.llm:
            reason = _llm_reason(sim, eng)
            if reason is not None:
                return reason
    topo = sim.topo
    for k in range(topo.n_classes):
        if sim._engine_of[k] < 0:
            return f"class {topo.classes[k]!r} may be served at several stations"
    if not sim._route_block:
        return "routing draws are interleaved with engine choices"
    if sim.external:
        return None  # (Python gives the orders: the policy's form does not matter)
    if (
        _pressure_form(sim) is None
        and _linear_form(sim) is None
        and not (sim._fcfs or _all_fixed(sim))
    ):
        return f"policy {sim.policy_name!r} is computed in Python"
    return None


def _llm_reason(sim: NetworkSimulator, eng: Any) -> str | None:
    """Why LLM engine ``eng`` may not run in the compiled loop (``None``: it may)."""
    name = sim.topo.engines[eng.index]
    if eng.mem is not None and type(eng.admission) is not FCFSAdmission:
        return f"engine {name!r} admits by rule {eng.admission.label!r}, computed in Python"
    if type(eng.sched) not in BUILT_IN:
        return f"engine {name!r} has a scheduler of its own ({type(eng.sched).__name__})"
    if sim.policy_splits:
        return f"policy {sim.policy_name!r} splits the token budget"
    if sim.policy_caps:
        return f"policy {sim.policy_name!r} caps the tokens of a batch"
    if sim._every or sim._may_idle:
        return f"policy {sim.policy_name!r} re-decides or idles at LLM engines"
    if sim.record:
        return "batch records are kept in the Python loop"
    return None


def _all_fixed(sim: NetworkSimulator) -> bool:
    """Every station's order is fixed (one class, or a static priority asked once)."""
    return all(eng.single or eng.fixed is not None for eng in sim.engines)


def _pressure_form(sim: NetworkSimulator) -> bool | None:
    """``True``/``False``: the policy is maximum pressure in the kernel's form, serving
    positive pressures only or every class; ``None``: it is not."""
    policy = sim.policy
    if not isinstance(policy, MaxPressure) or type(policy).ranked is not MaxPressure.ranked:
        return None
    order = type(policy).order
    if order is DaiLinMaxPressure.order:
        return True
    if order is MaxPressure.order:
        return False
    return None


def _linear_form(sim: NetworkSimulator) -> tuple[list[float], list[float]] | None:
    """``(a, b)`` of a linear index policy (``linear:...``), else ``None``."""
    policy = sim.policy
    if isinstance(policy, LinearIndex) and type(policy).order is LinearIndex.order:
        return list(policy.a), list(policy.b)
    return None


def numba_available() -> bool:
    """Whether numba imports here."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def choose(sim: NetworkSimulator, loop: str) -> bool:
    """Whether ``sim`` runs compiled under ``loop`` (``auto``, ``python``, ``compiled``);
    ``ValueError`` naming the reason when ``compiled`` is asked and impossible."""
    if loop not in LOOPS:
        raise ValueError(f"loop: unknown value {loop!r}; use one of {', '.join(LOOPS)}")
    if loop == "python" or (loop == "auto" and sim.external):
        return False  # external mode takes the compiled loop when asked (see the module)
    reason = why_not(sim)
    if reason is None and not numba_available():
        reason = "numba is not installed"
    if reason is not None and loop == "compiled":
        raise ValueError(f"loop: compiled is not possible here: {reason}; use loop='python'")
    return reason is None


class LoopState:
    """The simulator's state as the kernel's arrays (see :func:`~policyopt.sim.
    station_kernel.run_stations` for their meaning)."""

    def __init__(self, sim: NetworkSimulator, block: int, fold: int) -> None:
        from policyopt.sim import engine_kernel as ek
        from policyopt.sim import station_kernel as sk

        self.sk, self.ek = sk, ek
        topo = sim.topo
        K, J, W = topo.n_classes, len(sim.engines), len(sim.net.workflows)
        i64, f64 = np.int64, np.float64
        self.block = block
        self.iv = np.zeros(sk.N_IV, dtype=i64)
        self.fv = np.zeros(sk.N_FV, dtype=f64)
        iv, fv = self.iv, self.fv
        iv[sk.I_SEQ], iv[sk.I_NEXT_ID], iv[sk.I_CREATED] = sim.seq, sim.next_id, sim.jobs_created
        iv[sk.I_FIN_A] = -1  # no LLM batch's end in progress
        iv[sk.I_PENDING] = -1  # external mode: no decision asked
        self.base_decisions = sim.decisions
        fv[sk.F_NOW], fv[sk.F_T_CHECK] = sim.now, _check_without_samples(sim)
        fv[sk.F_T_SAMPLE], iv[sk.I_NSAMPLE] = sim.t_next_sample, sim.next_sample
        fv[sk.F_HORIZON], fv[sk.F_WARMUP] = sim.horizon, sim.warmup
        # jobs: every live job is in a class queue (the one in service at its head)
        live = [job for eng in sim.engines for k in eng.classes for job in eng.wait[k]]
        # LLM engines: the decoding requests (oldest first), then those finished by a batch
        # in flight (its end event's payload)
        decoders = [job for e in sim.engines if e.llm for k in e.classes for job in _decoding(e, k)]
        flying = [
            job for _, kind, _, a, jobs in sim.events if kind == sk.DONE and sim.engines[a].llm
            for job in jobs  # type: ignore[attr-defined]
        ]  # fmt: skip
        swapped = [job for e in sim.engines if e.mem is not None for job in e.mem.swapped]
        n_wait = len(live)
        live = live + decoders + flying + swapped
        cap = max(1024, 2 * len(live))
        self.j_cls = np.zeros(cap, dtype=i64)
        self.j_arr = np.zeros(cap, dtype=f64)
        self.j_fid = np.zeros(cap, dtype=i64)
        self.j_ft0 = np.zeros(cap, dtype=f64)
        self.j_fw = np.zeros(cap, dtype=i64)
        self.j_left = np.zeros(cap, dtype=f64)
        self.j_id = np.zeros(cap, dtype=i64)
        self.j_since = np.zeros(cap, dtype=f64)
        self.j_ver = np.zeros(cap, dtype=i64)
        self.mark = np.zeros(cap, dtype=i64)
        self.j_tok = np.zeros((cap, ek.N_TOK), dtype=i64)
        self.r_buf = np.zeros(cap, dtype=i64)
        self.j_fork = np.full(cap, -1, dtype=i64)
        self._fork_state(sim)
        slot_of: dict[int, int] = {}
        for s, job in enumerate(live):
            slot_of[id(job)] = s
            fid, t0, w = job.workflow
            self.j_cls[s], self.j_arr[s], self.j_left[s], self.j_id[s] = (
                job.cls,
                job.arrived,
                job.pre_left,
                job.id,
            )
            self.j_fid[s], self.j_ft0[s], self.j_fw[s] = fid, t0, w
            self.j_fork[s] = self.record_of[job.fork] if job.fork >= 0 else -1
            self.j_since[s] = getattr(job, "since", 0.0)  # set once it started, several servers
            self.j_ver[s] = getattr(job, "ver", 0)
            if sim.workloads[job.cls] is not None:  # an LLM request: its tokens
                left = job.dec_left  # waiting, swapped out
                if n_wait <= s < n_wait + len(decoders):
                    left = sim.engines[sim._engine_of[job.cls]].dec[job.cls].remaining(job)
                elif n_wait + len(decoders) <= s < n_wait + len(decoders) + len(flying):
                    left = 0  # finished in flight
                held, blocks = job.held, job.blocks
                if n_wait <= s < n_wait + len(decoders):  # a decoder's follow from its tokens
                    mem = sim.engines[sim._engine_of[job.cls]].mem
                    held = job.prompt + job.dec_tokens - left
                    blocks = 0 if mem is None else -(-held // mem.block)
                self.j_tok[s, : ek.T_PREV] = (  # (the admission sums: below)
                    job.pre_left,
                    job.prompt,
                    job.dec_tokens,
                    left,
                    held,
                    blocks,
                    job.preempted,
                )
        self.free = np.arange(cap - 1, len(live) - 1, -1, dtype=i64)  # popped from the end
        self.free = np.concatenate([self.free, np.zeros(len(live), dtype=i64)])
        iv[sk.I_FREE_N] = cap - len(live)
        # class queues
        llm = [e for e in sim.engines if e.llm]
        # a batch's end may finish (and so start elsewhere) up to min(budget, slots) requests
        width = max([1] + [min(e.b, e.kmax) for e in llm])
        self.e_fin = np.zeros((J, width), dtype=i64)
        # (room for a class's jobs waiting, decoding and swapped out, and a batch's more)
        longest = max(
            len(eng.wait[k]) + (len(eng.dec[k]) if eng.llm else 0)
            for eng in sim.engines
            for k in eng.classes
        )
        longest += width + sum(len(e.mem.swapped) for e in llm if e.mem is not None)
        qcap = max(256, 2 * longest)
        self.q = np.zeros((K, qcap), dtype=i64)
        self.q_head = np.zeros(K, dtype=i64)
        self.q_len = np.zeros(K, dtype=i64)
        for eng in sim.engines:
            for k in eng.classes:
                for r, job in enumerate(eng.wait[k]):
                    self.q[k, r] = slot_of[id(job)]
                self.q_len[k] = len(eng.wait[k])
        # events (room for every server to start at one decision)
        hcap = max(64, 2 * len(sim.events) + 8) + max(e.servers for e in sim.engines)
        self.ht = np.zeros(hcap, dtype=f64)
        self.hk = np.zeros(hcap, dtype=i64)
        self.hs = np.zeros(hcap, dtype=i64)
        self.ha = np.zeros(hcap, dtype=i64)
        self.hj = np.zeros(hcap, dtype=i64)
        for i, (t, kind, seq, a, payload) in enumerate(sim.events):  # a heap stays a heap
            self.ht[i], self.hk[i], self.hs[i], self.ha[i] = t, kind, seq, a
            self.hj[i] = -1 if payload is None else slot_of.get(id(payload), -1)
            if kind == sk.DONE and sim.engines[a].llm:  # the batch's finished requests
                done = [slot_of[id(job)] for job in payload]  # type: ignore[attr-defined]
                self.e_fin[a, : len(done)] = done
        iv[sk.I_HEAP_N] = len(sim.events)
        self.dq = np.zeros(J, dtype=i64)
        for i, j in enumerate(sim.decide_queue):
            self.dq[i] = j
        iv[sk.I_DQ_LEN] = len(sim.decide_queue)
        # stations
        self.e_current = np.array(
            [-1 if e.current is None else slot_of[id(e.current)] for e in sim.engines], dtype=i64
        )
        self.e_started = np.array([e.started for e in sim.engines], dtype=f64)
        self.e_version = np.array([e.version for e in sim.engines], dtype=i64)
        self.e_backlog = np.array([e.backlog for e in sim.engines], dtype=f64)
        self.e_done = np.array([e.done_work for e in sim.engines], dtype=f64)
        self.e_arrived = np.array([e.arrived_work for e in sim.engines], dtype=f64)
        self.e_batches = np.array([e.stats.batches for e in sim.engines], dtype=i64)
        self.e_pending = np.array([e.decide_pending for e in sim.engines], dtype=np.bool_)
        self.e_busy = np.array([e.busy for e in sim.engines], dtype=np.bool_)
        self.e_preempts = np.array([e.preempts for e in sim.engines], dtype=np.bool_)
        self.e_single = np.array([e.single for e in sim.engines], dtype=np.bool_)
        self.e_multi = np.array([e.multi for e in sim.engines], dtype=np.bool_)
        self.e_servers = np.array([e.servers for e in sim.engines], dtype=i64)
        width = max(e.servers if e.multi else 1 for e in sim.engines)
        self.e_serving = np.zeros((J, width), dtype=i64)
        self.e_nserv = np.zeros(J, dtype=i64)
        for e in sim.engines:
            for r, job in enumerate(e.serving):
                self.e_serving[e.index, r] = slot_of[id(job)]
            self.e_nserv[e.index] = len(e.serving)
        self._llm_state(sim, slot_of)
        self.o_buf = np.zeros(K, dtype=i64)
        self.o_key = np.zeros(K, dtype=f64)
        self.c_buf = np.zeros(width, dtype=i64)
        self.s_buf = np.zeros(width, dtype=i64)
        width = max(len(e.classes) for e in sim.engines)
        self.e_order = np.zeros((J, max(1, width)), dtype=i64)
        self.e_norder = np.zeros(J, dtype=i64)
        self.e_mode = np.zeros(J, dtype=i64)
        self.e_hasrank = np.array([e.rank is not None for e in sim.engines], dtype=np.bool_)
        self.e_rank = np.zeros((J, K), dtype=i64)
        positive = _pressure_form(sim)
        linear = _linear_form(sim)
        for e in sim.engines:
            if e.single and not (sim.external and sim.ask_single and e.llm):
                mode, order = sk.SINGLE, e.classes
            elif sim.external:  # Python gives the order (see station_kernel._ask)
                mode, order = sk.EXTERNAL, e.classes
            elif e.fixed is not None:
                mode, order = sk.FIXED, e.fixed
            elif sim._fcfs:
                mode, order = sk.FCFS, e.classes
            elif linear is not None:
                mode, order = sk.LINEAR, e.classes
            else:
                mode, order = sk.PRESSURE, e.classes
            self.e_mode[e.index] = mode
            self.e_norder[e.index] = len(order)
            self.e_order[e.index, : len(order)] = order
            if e.rank is not None:
                self.e_rank[e.index] = e.rank
        # the pressure form: -r_k (the policy's own numbers) and the successors of each class
        self.p_neg = np.zeros(K, dtype=f64)
        succ: list[list[tuple[int, float]]] = [[] for _ in range(K)]
        if positive is not None or sim.external:
            # (external mode: maximum pressure orders the classes after a given first one)
            policy = sim.policy if positive is not None else MaxPressure()
            assert isinstance(policy, MaxPressure)
            if sim.external:
                policy.bind(sim.net)
            for e in sim.engines:
                for k, neg, pairs in policy.pressure_terms(e.index, sim.view):
                    self.p_neg[k] = neg
                    succ[k] = list(pairs)
        self.p_ptr, self.p_succ, self.p_prob = _csr(succ)
        self.p_positive = bool(positive)
        self.lin_a = np.array(linear[0] if linear else [0.0] * K, dtype=f64)
        self.lin_b = np.array(linear[1] if linear else [0.0] * K, dtype=f64)
        self.every = bool(sim._every)
        # the series, sampled in the kernel into the simulator's own arrays
        self.sample_t = np.ascontiguousarray(sim.sample_t, dtype=f64)
        self.sample_jobs, self.sample_backlog = sim.sample_jobs, sim.sample_backlog
        self.sample_mem = sim.sample_mem
        # class statistics and routing
        self.work_left = np.array(sim.work_left, dtype=f64)
        self.last = np.array(sim._last, dtype=f64)
        self.area = np.array(sim._area, dtype=f64)
        self.jobs = np.array(sim._jobs, dtype=f64)
        self.done_class = np.array(sim._done_class, dtype=i64)
        self.next_of = np.zeros(K, dtype=i64)
        routes: list[list[tuple[int, float]]] = [[] for _ in range(K)]
        self.any_random = False
        branches: list[list[tuple[int, float]]] = [[] for _ in range(K)]
        self.f_join = np.full(K, -1, dtype=i64)
        for k, step in enumerate(topo.steps):
            if step.kind == "random":
                self.next_of[k] = sk.RANDOM
                routes[k] = list(zip(step.targets, step.probs, strict=True))
                self.any_random = True
            elif step.kind == "fork":
                self.next_of[k] = sk.FORK
                branches[k] = [(b, 1.0) for b in step.targets]
                self.f_join[k] = step.join_class
            else:  # exit, join or next
                self.next_of[k] = step.targets[0]
        self.r_ptr, self.r_tgt, self.r_prob = _csr(routes)
        self.f_ptr, self.f_tgt, _ = _csr(branches)
        # a fork starts a job on every branch at once: free slots for the widest
        self.fwidth = max([1] + [len(b) for b in branches])
        self.entries = np.array(topo.entries, dtype=i64)
        self.engine_of = np.array(sim._engine_of, dtype=i64)
        # draws: what the Python buffers hold (reversed: the next is last), at each block's end
        self.a_gap = np.array([-1.0 if g is None else g for g in sim._gap], dtype=f64)
        self.a_buf = np.zeros((W, block), dtype=f64)
        self.a_pos = np.full(W, block, dtype=i64)
        for i, buf in enumerate(sim._arrivals):
            self._take(self.a_buf, self.a_pos, i, buf)
        self.w_buf = np.zeros((K, block), dtype=f64)
        self.wp_buf = np.zeros((K, block), dtype=i64)  # LLM classes: prompt tokens
        self.wd_buf = np.zeros((K, block), dtype=i64)  # and output tokens
        self.w_pos = np.full(K, block, dtype=i64)
        self.tokens = [wl is not None for wl in sim.workloads]  # an LLM class's work: tokens
        for k, buf in enumerate(sim.buffers):
            if self.tokens[k]:
                pairs: list[tuple[int, int]] = buf  # type: ignore[assignment]
                self._take(self.wp_buf, self.w_pos, k, [p for p, _ in pairs])
                self._take(self.wd_buf, self.w_pos, k, [d for _, d in pairs])
                buf.clear()
            else:
                self._take(self.w_buf, self.w_pos, k, buf)  # type: ignore[arg-type]
        self.u_buf = np.zeros(block, dtype=f64)
        u_pos = np.full(1, block, dtype=i64)
        self._take(self.u_buf.reshape(1, block), u_pos, 0, sim._uniforms)
        iv[sk.I_UNI_POS] = u_pos[0]
        iv[sk.I_EMPTY] = 1  # the refill fills what is empty
        # logs (room for the first tokens of a batch)
        fold = max(fold, 2 * self.e_fin.shape[1] + 16)
        self.l_code = np.zeros(fold, dtype=i64)
        self.l_val = np.zeros(fold, dtype=f64)
        self.f_w = np.zeros(fold, dtype=i64)
        self.f_t0 = np.zeros(fold, dtype=f64)
        self.f_left = np.zeros(fold, dtype=f64)

    def preempted_max(self) -> int:
        """The most times a live request was preempted."""
        return int(self.j_tok[:, self.ek.T_PREEMPTED].max())

    def _fork_state(self, sim: NetworkSimulator) -> None:
        """The forks in progress (``sim.forks``) as records; :attr:`record_of` maps a
        fork's number to its record."""
        sk, i64 = self.sk, np.int64
        forks = list(sim.forks.items())
        cap = max(64, 2 * len(forks)) if any(s.kind == "fork" for s in sim.topo.steps) else 0
        self.record_of = {fid: r for r, (fid, _) in enumerate(forks)}
        self.k_left = np.zeros(cap, dtype=i64)
        self.k_join = np.zeros(cap, dtype=i64)
        self.k_parent = np.zeros(cap, dtype=i64)
        self.k_fid = np.zeros(cap, dtype=i64)
        for r, (fid, (left, join, parent)) in enumerate(forks):
            self.k_left[r], self.k_join[r], self.k_fid[r] = left, join, fid
            self.k_parent[r] = self.record_of[parent] if parent >= 0 else -1
        self.k_free = np.zeros(cap, dtype=i64)
        self.k_free[: cap - len(forks)] = np.arange(cap - 1, len(forks) - 1, -1)
        self.iv[sk.I_KFREE_N] = cap - len(forks)

    def _export_forks(self, sim: NetworkSimulator) -> None:
        """Write the forks in progress back into ``sim.forks`` (by number, oldest first)."""
        free = set(self.k_free[: int(self.iv[self.sk.I_KFREE_N])].tolist())
        fid = self.k_fid.tolist()
        rows = []
        for r in range(len(self.k_fid)):
            if r not in free:
                parent = int(self.k_parent[r])
                rows.append(
                    (
                        fid[r],
                        [
                            int(self.k_left[r]),
                            int(self.k_join[r]),
                            fid[parent] if parent >= 0 else -1,
                        ],
                    )
                )
        sim.forks.clear()
        sim.forks.update(sorted(rows))

    def _job_maker(self, slots: list[int]) -> Callable[[int, bool, bool], Job]:
        """A function giving the simulator's object for the job in slot ``s`` (one of
        ``slots``; an LLM request: ``llm``, at an engine with a KV cache: ``mem``); it reads
        those slots once, as Python lists."""
        from policyopt.sim.network_sim import Job, _StationJob

        idx = np.asarray(slots, dtype=np.int64)
        at = {s: i for i, s in enumerate(slots)}
        ids, cls, arr = (a[idx].tolist() for a in (self.j_id, self.j_cls, self.j_arr))
        fid, ft0, fw = (a[idx].tolist() for a in (self.j_fid, self.j_ft0, self.j_fw))
        left, tok = self.j_left[idx].tolist(), self.j_tok[idx].tolist()
        numbers = self.k_fid.tolist()
        fork = [numbers[r] if r >= 0 else -1 for r in self.j_fork[idx].tolist()]

        def make(s: int, llm: bool, mem: bool) -> Job:
            i = at[s]
            flow = (fid[i], ft0[i], fw[i])
            if not llm:
                return _StationJob(ids[i], cls[i], arr[i], flow, fork[i], left[i])
            pre, prompt, dec, rem, held, blocks, preempted = tok[i][:7]
            job = Job(ids[i], cls[i], arr[i], flow, fork[i], pre, dec, prompt)
            if mem:  # a KV cache's fields
                job.dec_left, job.held, job.blocks = rem, held, blocks
                job.preempted, job.first = preempted, rem < dec
            return job

        return make

    def _llm_state(self, sim: NetworkSimulator, slot_of: dict[int, int]) -> None:
        """The LLM engines' arrays (:mod:`policyopt.sim.engine_kernel`): per engine its rules
        and counters, its classes, and per class the decoding requests, oldest first."""
        ek = self.ek
        K, J = sim.topo.n_classes, len(sim.engines)
        i64 = np.int64
        self.e_llm = np.array([e.llm for e in sim.engines], dtype=np.bool_)
        self.e_li = np.zeros((J, ek.N_LI), dtype=i64)
        self.e_li[:, [ek.L_RHEAD, ek.L_RTAIL, ek.L_SHEAD, ek.L_STAIL]] = -1  # empty lists
        self.e_li[:, [ek.L_TCAP, ek.L_DCAP]] = -1  # no cap
        self.e_lf = np.zeros((J, ek.N_LF))
        width = max([1] + [e.b + 1 for e in sim.engines if e.llm and e.table is not None])
        self.e_table = np.zeros((J, width))
        ncls = max(len(e.classes) for e in sim.engines)
        self.e_cls = np.zeros((J, max(1, ncls)), dtype=i64)
        self.e_ncls = np.array([len(e.classes) for e in sim.engines], dtype=i64)
        for e in sim.engines:
            j = e.index
            self.e_cls[j, : len(e.classes)] = e.classes
            if not e.llm:
                continue
            li, lf = self.e_li[j], self.e_lf[j]
            li[ek.L_SCHED] = ek.SCHEDULER_CODES[BUILT_IN[type(e.sched)]]
            li[ek.L_CHUNKED] = int(e.sched.chunked)
            li[ek.L_B], li[ek.L_KMAX] = e.b, e.kmax
            if e.table is not None:
                li[ek.L_TABLE] = 1
                self.e_table[j, : len(e.table)] = e.table
            else:
                bt = e.bt
                lf[ek.G_C], lf[ek.G_CP], lf[ek.G_CD], lf[ek.G_CKV] = (
                    bt.c_ms,
                    bt.cp_ms,
                    bt.cd_ms,
                    bt.ckv_ms,
                )
                li[ek.L_KVM] = int(e.kv_matters)
                li[ek.L_MAXTOK] = -1 if bt.max_tokens is None else bt.max_tokens
                li[ek.L_MAXKV] = -1 if bt.max_kv is None else bt.max_kv
            st = e.stats
            li[ek.L_NWAIT], li[ek.L_NDEC], li[ek.L_PRE] = e.n_wait, e.n_dec, e.pre_backlog
            li[ek.L_KV], li[ek.L_KVMAX] = e.kv, e.kv_max
            li[ek.L_TOKENS], li[ek.L_FULL] = st.tokens, st.full
            li[ek.L_NWC], li[ek.L_OOR] = st.not_work_conserving, st.out_of_range
            lf[ek.G_BTIME], lf[ek.G_KVAREA] = st.busy_time, st.kv_area
            for _, kind, _, a, payload in sim.events:
                if kind == self.sk.DONE and a == j:
                    li[ek.L_NFIN] = len(payload)  # type: ignore[arg-type]
            mem = e.mem
            if mem is not None:  # a limited KV cache
                li[ek.L_NSWAP] = len(mem.swapped)
                li[ek.L_MEM], li[ek.L_TOTAL], li[ek.L_FREE] = 1, mem.total, mem.free
                li[ek.L_BLK], li[ek.L_WATER] = mem.block, mem.watermark
                li[ek.L_RECOMP] = int(mem.recompute)
                li[ek.L_PREEMPTS], li[ek.L_RECOMPUTED], li[ek.L_SWAPTOK] = mem.counts()
                li[ek.L_USEDMAX], li[ek.L_SHOWN] = mem.used_max, e.shown_tokens
                lf[ek.G_SWAP_S], lf[ek.G_MEMAREA] = mem.swap_s, st.mem_area
                resident = [slot_of[id(job)] for job in mem.resident]
                _chain(self.j_tok, li, resident, ek.L_RHEAD, ek.L_RTAIL)
                _chain(
                    self.j_tok,
                    li,
                    [slot_of[id(job)] for job in mem.swapped],
                    ek.L_SHEAD,
                    ek.L_STAIL,
                )
        self.d = np.zeros((K, self.q.shape[1]), dtype=i64)  # as wide as the queues
        self.d_head = np.zeros(K, dtype=i64)
        self.d_len = np.zeros(K, dtype=i64)
        for e in sim.engines:
            if e.llm:
                for k in e.classes:
                    slots = [slot_of[id(job)] for job in _decoding(e, k)]
                    self.d[k, : len(slots)] = slots
                    self.d_len[k] = len(slots)
        # requests completed after warm-up, by how often they were preempted (a KV cache)
        wide = max(
            [PREEMPT_COLUMNS] + [2 * max(e.preempt_counts, default=0) + 2 for e in sim.engines]
        )
        self.e_pc = np.zeros((J, wide), dtype=i64)
        for e in sim.engines:
            for times, n in e.preempt_counts.items():
                self.e_pc[e.index, times] = n
        self.sh = np.zeros(K, dtype=i64)  # prompts shown to the scheduler (a KV cache)
        self.qb = np.zeros((2, K), dtype=i64)  # the admission sums before each queue's head
        for e in sim.engines:
            if e.mem is not None:
                for k in e.classes:
                    self.sh[k] = e.shown[k]
                    need = tok = 0
                    for job in e.wait[k]:
                        s = slot_of[id(job)]
                        need += -(-(job.pre_left + 1) // e.mem.block)
                        tok += job.pre_left
                        self.j_tok[s, ek.T_CNEED], self.j_tok[s, ek.T_CTOK] = need, tok
        self.pl = np.zeros((5, K), dtype=i64)
        self.pn = np.zeros(4, dtype=i64)
        self.iv_log = np.zeros(1, dtype=i64)

    @staticmethod
    def _take(arr: np.ndarray, pos: np.ndarray, i: int, buf: list[float]) -> None:
        """Move a Python draw buffer (next draw last) to the end of row ``i``."""
        n = len(buf)
        if n:
            arr[i, arr.shape[1] - n :] = buf[::-1]
            buf.clear()
        pos[i] = arr.shape[1] - n

    def __deepcopy__(self, memo: dict[int, Any]) -> LoopState:
        """A copy of every array (the kernel modules are shared)."""
        new = LoopState.__new__(LoopState)
        memo[id(self)] = new
        for name, value in self.__dict__.items():
            shared = name in ("sk", "ek")
            setattr(new, name, value if shared else copy.deepcopy(value, memo))
        return new

    def args(self, progress_every: int) -> tuple[object, ...]:
        """The kernel's arguments, in its order (its parameters are named as these arrays)."""
        from policyopt.sim.kernel_state import KERNEL_ARGS

        return (*[getattr(self, name) for name in KERNEL_ARGS[:-1]], progress_every)

    # ------------------------------------------------------------------ kernel stops
    def refill(self, sim: NetworkSimulator) -> None:
        """Draw the next block of every stream whose block ran out (each stream draws as the
        Python loop would, only sooner: the numbers are the same)."""
        sk, block = self.sk, self.block
        for i in range(len(self.a_pos)):
            if self.a_gap[i] <= 0.0 and self.a_pos[i] >= block:
                sim._draw_arrivals(i)
                self._take(self.a_buf, self.a_pos, i, sim._arrivals[i])
        for k in range(len(self.w_pos)):
            if self.w_pos[k] >= block:
                if self.tokens[k]:
                    self.wp_buf[k], self.wd_buf[k] = sim._token_block(k)
                else:
                    self.w_buf[k] = sim._work_block(k)
                self.w_pos[k] = 0
        iv = self.iv
        if self.any_random and iv[sk.I_UNI_POS] >= block:
            self.u_buf[:] = sim._uniform_block()
            iv[sk.I_UNI_POS] = 0
        iv[sk.I_EMPTY] = 0

    def flush_logs(self, sim: NetworkSimulator) -> None:
        """Append the kernel's logged times and finished workflows to the simulator's logs."""
        sk, iv = self.sk, self.iv
        n = int(iv[sk.I_LOG_N])
        if n:
            codes, vals = sim.time_log
            codes.frombytes(self.l_code[:n].tobytes())
            vals.frombytes(self.l_val[:n].tobytes())
            iv[sk.I_LOG_N] = 0
        n = int(iv[sk.I_FLOW_N])
        if n:
            ws, arrived, left = sim.flow_log
            ws.frombytes(self.f_w[:n].tobytes())
            arrived.frombytes(self.f_t0[:n].tobytes())
            left.frombytes(self.f_left[:n].tobytes())
            iv[sk.I_FLOW_N] = 0

    def grow(self) -> None:
        """Double the buffers that are (nearly) full: events, job slots, class queues."""
        sk, iv = self.sk, self.iv
        if iv[sk.I_HEAP_N] + 4 > len(self.ht) - self.e_serving.shape[1]:
            for name in ("ht", "hk", "hs", "ha", "hj"):
                old = getattr(self, name)
                setattr(self, name, np.concatenate([old, np.zeros_like(old)]))
        n = int(iv[sk.I_FREE_N])
        if n < self.fwidth:  # (the free slots left stay free, on top)
            cap = len(self.j_cls)
            for name in JOB_ARRAYS:
                old = getattr(self, name)
                setattr(self, name, np.concatenate([old, np.zeros_like(old)]))
            fresh = np.arange(2 * cap - 1, cap - 1, -1, dtype=np.int64)
            self.free = np.concatenate([fresh, self.free[:n], np.zeros(cap - n, dtype=np.int64)])
            iv[sk.I_FREE_N] = cap + n
        if iv[sk.I_KFREE_N] == 0 and len(self.k_free):  # fork records
            cap = len(self.k_free)
            for name in ("k_left", "k_join", "k_parent", "k_fid"):
                old = getattr(self, name)
                setattr(self, name, np.concatenate([old, np.zeros_like(old)]))
            self.k_free = np.concatenate(
                [np.arange(2 * cap - 1, cap - 1, -1, dtype=np.int64), np.zeros(cap, np.int64)]
            )
            iv[sk.I_KFREE_N] = cap
        # a class's rings hold its jobs waiting and decoding, which move between them, and
        # those swapped out (back to decoding) with a batch's more
        need = int((self.q_len + self.d_len).max()) + self.e_fin.shape[1] + 1
        need += int(self.e_li[:, self.ek.L_NSWAP].max())
        if self.preempted_max() + 2 >= self.e_pc.shape[1]:  # a request preempted that often
            self.e_pc = np.concatenate([self.e_pc, np.zeros_like(self.e_pc)], axis=1)
        if need >= self.q.shape[1]:
            self.q = _wider(self.q, self.q_head, self.q_len)
        if need >= self.d.shape[1]:
            self.d = _wider(self.d, self.d_head, self.d_len)
        iv[sk.I_GROW] = 0

    def sync(self, sim: NetworkSimulator) -> None:
        """Write the counters and statistics the simulator reads back into it (what its
        statistics, its result and a progress display read)."""
        sk, iv = self.sk, self.iv
        self.flush_logs(sim)
        sim._area[:] = self.area.tolist()
        sim._last[:] = self.last.tolist()
        sim._jobs[:] = self.jobs.tolist()
        sim.jobs[:] = self.jobs
        sim._done_class[:] = self.done_class.tolist()
        sim.work_left[:] = self.work_left.tolist()
        sim.now = float(self.fv[sk.F_NOW])
        sim.seq = int(iv[sk.I_SEQ])
        sim.next_id = int(iv[sk.I_NEXT_ID])
        sim.jobs_created = int(iv[sk.I_CREATED])
        sim.decisions = self.base_decisions + int(iv[sk.I_DECISIONS])
        sim.next_sample = int(iv[sk.I_NSAMPLE])  # the series' samples, taken in the kernel
        sim.t_next_sample = float(self.fv[sk.F_T_SAMPLE])
        ek = self.ek
        for e in sim.engines:
            j = e.index
            e.backlog = float(self.e_backlog[j])
            e.done_work = float(self.e_done[j])
            e.arrived_work = float(self.e_arrived[j])
            st = e.stats
            st.batches = int(self.e_batches[j])
            if not e.llm:
                st.busy_time = e.done_work
                continue
            li, lf = self.e_li[j].tolist(), self.e_lf[j].tolist()
            e.n_wait, e.n_dec, e.pre_backlog = li[ek.L_NWAIT], li[ek.L_NDEC], li[ek.L_PRE]
            e.kv, e.kv_max = li[ek.L_KV], li[ek.L_KVMAX]
            st.tokens, st.full = li[ek.L_TOKENS], li[ek.L_FULL]
            st.not_work_conserving, st.out_of_range = li[ek.L_NWC], li[ek.L_OOR]
            st.busy_time, st.kv_area = lf[ek.G_BTIME], lf[ek.G_KVAREA]
            mem = e.mem
            if mem is not None:
                mem.free, mem.used_max = li[ek.L_FREE], li[ek.L_USEDMAX]
                mem.preemptions, mem.recomputed_tokens = li[ek.L_PREEMPTS], li[ek.L_RECOMPUTED]
                mem.swapped_tokens, st.mem_area = li[ek.L_SWAPTOK], lf[ek.G_MEMAREA]
                e.shown_tokens = li[ek.L_SHOWN]
                counts = self.e_pc[j].tolist()
                e.preempt_counts = {times: n for times, n in enumerate(counts) if n}

    def export(self, sim: NetworkSimulator) -> None:
        """Write the whole state back: job queues, the jobs in service, events, decisions due
        and the unused draws, as Python objects (after :meth:`sync`)."""
        from policyopt.sim.network_sim import _StationJob

        sk, ek, iv = self.sk, self.ek, self.iv
        K = len(self.q_len)
        waiting = [_ring(self.q, self.q_head, self.q_len, k) for k in range(K)]
        decoding = [_ring(self.d, self.d_head, self.d_len, k) for k in range(K)]
        flying = [self.e_fin[a, : self.e_li[a, ek.L_NFIN]].tolist() for a in range(len(self.dq))]
        out = [_linked(self.j_tok, int(self.e_li[a, ek.L_SHEAD])) for a in range(len(self.dq))]
        rows = (waiting, decoding, flying, out)
        make = self._job_maker([s for group in rows for r in group for s in r])
        job_of: dict[int, Job] = {}
        for eng in sim.engines:
            for k in eng.classes:
                queue = eng.wait[k]
                queue.clear()
                for s in waiting[k]:
                    job = job_of[s] = make(s, eng.llm, eng.mem is not None)
                    if eng.multi:
                        job.since, job.ver = float(self.j_since[s]), int(self.j_ver[s])
                    queue.append(job)
                if eng.llm:  # the decoders, oldest first; those without a token yet
                    dq = eng.dec[k]
                    dq.clear()
                    unstarted = eng.unstarted[k]
                    unstarted.clear()
                    for s in decoding[k]:
                        job = job_of[s] = make(s, True, eng.mem is not None)
                        left = int(self.j_tok[s, ek.T_REM])
                        if eng.mem is not None:  # (a decoder's follow from its tokens)
                            job.held = job.prompt + job.dec_tokens - left
                            job.blocks = -(-job.held // eng.mem.block)
                        dq.add(job, left)
                        if left == job.dec_tokens and eng.mem is None:
                            unstarted.append(job)
            j = eng.index
            if eng.llm:
                eng.repeat = None  # the next batch is formed afresh
            mem = eng.mem
            if mem is not None:  # the cache's residents (by admission) and swapped requests
                for s in _linked(self.j_tok, int(self.e_li[j, ek.L_SHEAD])):
                    job_of[s] = make(s, True, True)
                mem.resident = dict.fromkeys(
                    job_of[s] for s in _linked(self.j_tok, int(self.e_li[j, ek.L_RHEAD]))
                )
                mem.swapped.clear()
                mem.swapped.extend(
                    job_of[s] for s in _linked(self.j_tok, int(self.e_li[j, ek.L_SHEAD]))
                )
                for k in eng.classes:
                    eng.shown[k] = int(self.sh[k])
            cur = int(self.e_current[j])
            eng.current = job_of[cur] if cur >= 0 else None
            eng.serving[:] = [job_of[int(s)] for s in self.e_serving[j, : self.e_nserv[j]]]
            eng.started = float(self.e_started[j])
            eng.version = int(self.e_version[j])
            eng.decide_pending = bool(self.e_pending[j])
            eng.busy = bool(self.e_busy[j])
        # a stale completion (its job preempted, perhaps gone) keeps its place; its job is
        # never read at one server, and at several a stand-in that is not in service
        stale = _StationJob(-1, 0, 0.0, (-1, 0.0, 0), -1, 0.0)
        stale.ver = 0
        events = []
        for i in range(int(iv[sk.I_HEAP_N])):
            t, kind, seq, a, s = (
                float(self.ht[i]),
                int(self.hk[i]),
                int(self.hs[i]),
                int(self.ha[i]),
                int(self.hj[i]),
            )
            job: Any = None
            if kind == sk.DONE and self.e_llm[a]:  # a batch in flight: its finished requests
                job = [make(s, True, sim.engines[a].mem is not None) for s in flying[a]]
            elif kind == sk.DONE:
                if self.e_multi[a]:
                    live = s in job_of and self.j_ver[s] == seq
                else:
                    live = seq == self.e_version[a]
                job = job_of[s] if live else (stale if self.e_multi[a] else None)
            events.append((t, kind, seq, a, job))
        sim.events[:] = events
        head, count = int(iv[sk.I_DQ_HEAD]), int(iv[sk.I_DQ_LEN])
        J = len(self.dq)
        sim.decide_queue.clear()
        sim.decide_queue.extend(int(self.dq[(head + i) % J]) for i in range(count))
        block = self.block
        for i, buf in enumerate(sim._arrivals):
            if self.a_gap[i] <= 0.0:
                buf[:] = self.a_buf[i, self.a_pos[i] :][::-1].tolist()
        for k, buf in enumerate(sim.buffers):
            pos = int(self.w_pos[k])
            if self.tokens[k]:
                p, d = self.wp_buf[k, pos:][::-1].tolist(), self.wd_buf[k, pos:][::-1].tolist()
                buf[:] = list(zip(p, d, strict=True))
            else:
                buf[:] = self.w_buf[k, pos:][::-1].tolist()
        pos = int(iv[sk.I_UNI_POS])
        sim._uniforms[:] = self.u_buf[pos:block][::-1].tolist() if pos < block else []
        self._export_forks(sim)


def _chain(j_tok: np.ndarray, li: np.ndarray, slots: list[int], first: int, last: int) -> None:
    """Link ``slots`` in order into a list of the engine kernel (its ends in ``li``)."""
    from policyopt.sim import engine_kernel as ek

    for i, s in enumerate(slots):
        j_tok[s, ek.T_PREV] = slots[i - 1] if i > 0 else -1
        j_tok[s, ek.T_NEXT] = slots[i + 1] if i + 1 < len(slots) else -1
    li[first], li[last] = (slots[0], slots[-1]) if slots else (-1, -1)


def _linked(j_tok: np.ndarray, first: int) -> list[int]:
    """The slots of a list of the engine kernel, from its first."""
    from policyopt.sim import engine_kernel as ek

    out = []
    while first >= 0:
        out.append(first)
        first = int(j_tok[first, ek.T_NEXT])
    return out


def _check_without_samples(sim: NetworkSimulator) -> float:
    """When the statistics Python takes are next due: the end of warm-up or a window edge
    (``NetworkSimulator._next_check`` without the samples, which the kernel takes)."""
    t = sim.t_next_edge
    if not sim.warm and sim.warmup < t:
        t = sim.warmup
    return t


def _decoding(eng: Any, k: int) -> list[Job]:
    """The decoding requests of class ``k`` at LLM engine ``eng``, oldest first."""
    dq = eng.dec[k]
    return list(dq.alive) + [job for job, _ in dq.outside]


def _ring(ring: np.ndarray, head: np.ndarray, length: np.ndarray, k: int) -> list[int]:
    """The slots in row ``k`` of a ring buffer, first to last."""
    cap = ring.shape[1]
    return ring[k, (int(head[k]) + np.arange(int(length[k]))) % cap].tolist()


def _wider(ring: np.ndarray, head: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Ring buffers of twice the width, each row's slots from its start (``head`` is
    reset)."""
    new = np.zeros((ring.shape[0], 2 * ring.shape[1]), dtype=ring.dtype)
    for k in range(ring.shape[0]):
        n = int(length[k])
        new[k, :n] = _ring(ring, head, length, k)
    head[:] = 0
    return new


def _csr(rows: list[list[tuple[int, float]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``(index, value)`` pairs as pointers, indices and values."""
    ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    for k, row in enumerate(rows):
        ptr[k + 1] = ptr[k] + len(row)
    idx = np.array([i for row in rows for i, _ in row] or [0], dtype=np.int64)
    val = np.array([v for row in rows for _, v in row] or [0.0], dtype=np.float64)
    return ptr, idx, val


def serve_stop(
    state: LoopState,
    sim: NetworkSimulator,
    code: int,
    progress: Callable[[float], None] | None = None,
) -> bool:
    """Do what the kernel stopped for (``code``: a ``STOP_*`` other than the end, or, in
    external mode, a decision); returns whether ``state`` replaced arrays (it grew): the
    kernel's arguments must then be taken again."""
    from policyopt.sim import station_kernel as sk

    if code == sk.STOP_REFILL:
        state.refill(sim)
    elif code == sk.STOP_LOGS:
        state.flush_logs(sim)
    elif code == sk.STOP_GROW:
        state.grow()
        return True
    elif code == sk.STOP_BOOKKEEP:
        state.sync(sim)
        sim._bookkeep(float(state.fv[sk.F_BOOK_T]))  # (its samples are taken: none due)
        state.fv[sk.F_T_CHECK] = _check_without_samples(sim)
    elif code == sk.STOP_PROGRESS:
        state.sync(sim)
        assert progress is not None
        progress(sim.now)
    else:  # pragma: no cover - the kernel returns only the codes above
        raise RuntimeError(f"compiled loop: unknown stop code {code}")
    return False


def finish_compiled(state: LoopState, sim: NetworkSimulator, keep_jobs: bool = True) -> None:
    """After the kernel reached the horizon: write the counters and statistics back into
    ``sim``, and (``keep_jobs``) the jobs still in the network as its objects."""
    state.sync(sim)
    if not keep_jobs:
        return
    paused = gc.isenabled()  # the job objects made now hold no cycles: no need to scan them
    gc.disable()
    try:
        state.export(sim)
    finally:
        if paused:
            gc.enable()


def run_compiled(
    sim: NetworkSimulator,
    progress: Callable[[float], None] | None,
    block: int,
    fold: int,
    keep_jobs: bool = True,
) -> None:
    """Run ``sim`` to its horizon in the compiled loop (``progress`` is called now and then
    with the time reached); the simulator's state is then as after its Python loop (its
    counters and statistics only, without ``keep_jobs``)."""
    from policyopt.sim import station_kernel as sk

    state = LoopState(sim, block, fold)
    every = 1 << 16 if progress is not None else 0
    args = state.args(every)
    while True:
        code = sk.run_stations(*args)
        if code == sk.STOP_END:
            break
        if serve_stop(state, sim, code, progress):
            args = state.args(every)
    finish_compiled(state, sim, keep_jobs)


__all__ = [
    "LOOPS",
    "LoopState",
    "choose",
    "finish_compiled",
    "numba_available",
    "run_compiled",
    "serve_stop",
    "why_not",
]
