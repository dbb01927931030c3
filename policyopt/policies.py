"""Network policies: who fills an engine's next batch first.

A network policy decides at an engine's decision epoch (its batch just ended, or it was idle
and work arrived) the **order of the classes** present at that engine. The engine's own
batching rules (its scheduler: decode first or prefill first, chunking, mixing; see
``docs/schedulers.md``) then fill the token budget following that order, first-come
first-served within a class. A policy therefore never idles an engine that a work-conserving
scheduler would keep busy. At a classic single-server station the first class in the order
with a waiting job is served (preemptive resume).

* :class:`FCFS` (``fcfs``): no class order; jobs in order of arrival at the engine.
* :class:`StaticPriority` (``priority:A>B>C``): a fixed order of classes. ``priority:exit``
  ranks first the classes whose jobs leave the network when they complete; ``priority:entry``
  the reverse.
* :class:`CMu` (``c-mu``, also ``cmu``): static priority by holding cost times service rate,
  ``h_k / w_k``, largest first.
* :class:`BufferPriority` (``lbfs``, ``fbfs``): static priority by a class's stage along its
  workflow's route (steps from the entry): last buffer first served, or first buffer first.
* :class:`MaxPressure` (``max-pressure``, also ``maxpressure`` or ``mp``; or
  ``max-pressure:work-conserving``): Dai and Lin (2005), adapted to token budgets and kept
  work-conserving (see ``docs/policies.md``).
* :class:`DaiLinMaxPressure` (``max-pressure:dai-lin``): Dai and Lin's own form: every engine
  re-decides at every network event, and idles when no class has a positive pressure.
* :class:`MaxWeight` (``max-weight``, also ``maxweight``): the classes by ``r_k z_k`` (service
  rate times jobs), largest first: maximum pressure without the downstream term.
* :class:`FluidTracking` (``fluid`` or ``fluid:N``): re-solves the fluid control LP from the
  observed job counts every ``N`` decisions (default 50) and ranks first the classes most
  behind the LP's trajectory.

**The registry.** :func:`make_policy` builds a policy from its name by looking it up in one
registry: :func:`register_policy` adds an exact name (``fcfs``) or a prefixed family
(``priority:`` takes the text after the colon), :func:`registered_policies` lists them, and an
unknown name is refused with that list. A factory may be given as a ``"module:attribute"``
string, imported on first use, so registering a policy does not import its module. Other
packages provide policies through the entry-point group :data:`POLICY_ENTRY_POINTS` (a
function that registers them), loaded by :func:`make_policy` only when a name is not found
otherwise: this is how the trained agents of the learning package (``ppo:DIR``, ``a2c:DIR``,
``maskable-ppo:DIR``) are found, without this module naming that package (or importing torch).

The view a policy reads is :class:`NetworkView`, read-only: jobs per class, the routing
matrix, work per job, the engines' static facts, and a few read-only queries of the running
simulator (:meth:`NetworkView.class_state`, :meth:`NetworkView.classes_with_work`,
:meth:`NetworkView.fcfs_order`). Policies are deterministic given the view.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Protocol

import numpy as np

from policyopt.errors import SpecError
from policyopt.model.network import EXIT, LLMEngine, NetworkSpec, Topology


@dataclass(frozen=True)
class EngineInfo:
    """The fixed facts of one engine that a policy may read (:attr:`NetworkView.engines`).

    ``name``: the engine's name in the network; ``classes``: the classes it serves (class
    indices, increasing); ``llm``: an LLM engine (else a classic station). For an LLM engine:
    ``token_budget`` (tokens per batch; 0 at a station) and its scheduler's rules:
    ``decode_first`` (decode tokens before prefill, as Sarathi-Serve), ``mixes`` (prefill and
    decode share a batch) and ``request_level`` (whole requests per batch).
    """

    name: str
    classes: tuple[int, ...]
    llm: bool
    token_budget: int = 0
    decode_first: bool = False
    mixes: bool = False
    request_level: bool = False

    @classmethod
    def of(cls, name: str, spec: object, classes: tuple[int, ...]) -> EngineInfo:
        """The facts of engine ``name`` with spec ``spec`` (an engine of a network spec)."""
        if not isinstance(spec, LLMEngine):
            return cls(name, classes, False)
        sched = spec.scheduler
        return cls(
            name,
            classes,
            True,
            int(spec.token_budget),
            bool(sched.decode_first),
            bool(sched.mixes),
            bool(sched.request_level),
        )


class SimulatorState(Protocol):
    """What :class:`NetworkView` reads from the simulator that owns it (all public, read-only
    uses): the clock, the horizon and the live queries."""

    now: float
    horizon: float

    def classes_with_work(self, j: int) -> list[int]: ...

    def class_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def class_state_flat(self) -> list[float]: ...

    def fcfs_order(self, j: int) -> list[int]: ...

    def memory_free(self) -> list[float]: ...

    def engine_jobs(self, j: int) -> tuple[int, int]: ...


def _read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a``: the same buffer (later changes to ``a`` show), no writes."""
    v = a.view()
    v.flags.writeable = False
    return v


class NetworkView:
    """What a network policy sees: a read-only view of the network and of the running
    simulator.

    Fixed for a run: :attr:`topology`; :attr:`classes_at` (``classes_at[j]``: the classes
    engine ``j`` serves); :attr:`engines` (:class:`EngineInfo` per engine); :attr:`P` (the
    routing matrix, dense, classes x classes, expected jobs sent to ``l`` per completion of
    ``k``); :attr:`rate` (``rate[k]``: jobs of class ``k`` an engine completes per unit of its
    capacity, ``1 / w_k``: per token at an LLM engine, per second of work at a station);
    :attr:`horizon` (s).

    Live: :attr:`jobs` (``jobs[k]``: jobs of class ``k`` in the system, waiting or in service,
    at any engine; a read-only array over the simulator's own buffer, so it always shows the
    current counts), :attr:`now` (s), and the queries :meth:`class_state`,
    :meth:`class_state_flat`, :meth:`classes_with_work`, :meth:`fcfs_order` and
    :meth:`engine_jobs`.

    The simulator builds its view as ``NetworkView(net, jobs, ..., simulator=self)``. A view
    built without a simulator (``NetworkView(net, jobs)``, for tests or offline use) has the
    fixed parts, :attr:`jobs` and :attr:`now` (settable), and its live queries raise
    ``RuntimeError``.
    """

    def __init__(
        self,
        net: NetworkSpec,
        jobs: np.ndarray,
        classes_at: Sequence[Sequence[int]] | None = None,
        P: np.ndarray | None = None,
        rate: np.ndarray | None = None,
        *,
        now: float = 0.0,
        simulator: SimulatorState | None = None,
    ) -> None:
        """``jobs``: the job counts per class (the view reads this buffer, never writes it);
        ``classes_at``, ``P``, ``rate``: as computed by the simulator (``None``: computed
        here from ``net``, the same way); ``simulator``: the running simulator, for the live
        queries."""
        topo = net.topology
        if classes_at is None:
            lists: list[list[int]] = [[] for _ in range(topo.n_engines)]
            for k in range(topo.n_classes):
                for j in topo.eligible[k]:
                    lists[j].append(k)
            classes_at = lists
        if P is None:
            P = topo.routing_matrix().toarray()
        if rate is None:
            rate = np.array([1.0 / w if w > 0 else 0.0 for w in topo.work])
        self._topology = topo
        self._jobs = _read_only(jobs)
        self._classes_at = tuple(tuple(c) for c in classes_at)
        self._P = _read_only(np.asarray(P))
        self._rate = _read_only(np.asarray(rate))
        self._engines = tuple(
            EngineInfo.of(name, net.engines[name], self._classes_at[j])
            for j, name in enumerate(topo.engines)
        )
        self._now = float(now)
        self._sim = simulator

    # ------------------------------------------------------------------ fixed for a run
    @property
    def topology(self) -> Topology:
        """The network's topology (classes, engines, routing)."""
        return self._topology

    @property
    def classes_at(self) -> tuple[tuple[int, ...], ...]:
        """``classes_at[j]``: the classes engine ``j`` serves (class indices)."""
        return self._classes_at

    @property
    def engines(self) -> tuple[EngineInfo, ...]:
        """The fixed facts of each engine (:class:`EngineInfo`), in engine-index order."""
        return self._engines

    @property
    def P(self) -> np.ndarray:
        """The routing matrix (read-only, dense, classes x classes)."""
        return self._P

    @property
    def rate(self) -> np.ndarray:
        """``rate[k] = 1 / w_k``: jobs of class ``k`` per unit of engine capacity (read-only)."""
        return self._rate

    @property
    def horizon(self) -> float:
        """The simulated horizon of the run (s; ``inf`` without a simulator)."""
        return math.inf if self._sim is None else self._sim.horizon

    # ------------------------------------------------------------------ live
    @property
    def jobs(self) -> np.ndarray:
        """``jobs[k]``: jobs of class ``k`` in the system now (read-only float array)."""
        return self._jobs

    @property
    def now(self) -> float:
        """The current time (s): the simulator's clock, or the value set on a view without a
        simulator."""
        return self._now if self._sim is None else self._sim.now

    @now.setter
    def now(self, t: float) -> None:
        # Only a view without a simulator keeps this value; with one, the clock is read live.
        self._now = float(t)

    def _state(self) -> SimulatorState:
        if self._sim is None:
            raise RuntimeError("this NetworkView has no simulator: live queries need one")
        return self._sim

    def class_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per class, over all engines, now: ``(waiting, in_service, work)`` (see
        :meth:`~policyopt.sim.network_sim.NetworkSimulator.class_state`); fresh arrays."""
        return self._state().class_state()

    def class_state_flat(self) -> list[float]:
        """:meth:`class_state` as one new list ``waiting + in_service + work`` (``3K``
        floats), without numpy's per-call overhead."""
        return self._state().class_state_flat()

    def classes_with_work(self, engine: int) -> list[int]:
        """The classes of ``engine`` with work there now (waiting or decoding jobs at an LLM
        engine, waiting or in service at a station), in class-index order."""
        return self._state().classes_with_work(engine)

    def fcfs_order(self, engine: int) -> list[int]:
        """The classes of ``engine`` first-come first-served: by the arrival time of each
        class's oldest job there (what a policy returning ``None`` gets)."""
        return self._state().fcfs_order(engine)

    def memory_free(self) -> list[float]:
        """For each engine with a limited KV cache, in engine-index order, the share of its
        cache's blocks free now (empty without such engines)."""
        return self._state().memory_free()

    def engine_jobs(self, engine: int) -> tuple[int, int]:
        """``(waiting, decoding)`` at ``engine`` now: jobs whose prefill (at a station, their
        service) has not finished, and decoding jobs (0 at a station)."""
        return self._state().engine_jobs(engine)


class Policy:
    """Base class: ``order(engine, view)`` returns class indices, or ``None`` for FCFS.

    A policy that also splits the token budget between decode and prefill sets ``splits =
    True`` and implements ``decode_cap``; the simulator then asks it right after ``order`` at
    each LLM batch (see :meth:`decode_cap`). A policy that limits the tokens of a batch below
    the engine's budget sets ``caps_tokens = True`` and implements :meth:`token_cap`.
    """

    name = "policy"
    splits = False
    caps_tokens = False
    """Ask :meth:`token_cap` before every batch of an LLM engine (single-class ones too)."""
    every_event = False
    """Ask this policy at every engine (single-class ones included) after every event of the
    network, not only at the engine's own decision epochs."""
    may_idle = False
    """The order may leave out classes that have work: an engine whose order serves nothing
    idles until its next decision (with :attr:`every_event`, the next event)."""
    state_feedback = False
    """The order is a deterministic function of the job counts ``view.jobs`` alone (and the
    network), so it can be tabulated over states (``policyopt.optimal_policy``)."""

    def bind(self, net: NetworkSpec) -> None:
        """Prepare for ``net`` (called once before a run); raise SpecError if unusable."""

    def order(self, engine: int, view: NetworkView) -> list[int] | None:
        """The classes of ``engine`` in the order they fill its next batch (first served
        first; classes left out are not served by it), or ``None`` for FCFS across classes."""
        raise NotImplementedError

    def decode_cap(self, engine: int, view: NetworkView) -> int | None:
        """Decode tokens served before prefill in the batch being formed at ``engine``
        (``None``: the engine's own scheduler rule); only asked when ``splits`` is True, and
        only used at engines whose scheduler mixes prefill and decode. See
        :meth:`~policyopt.sim.network_sim.NetworkSimulator.decide`."""
        return None

    def token_cap(self, engine: int, view: NetworkView) -> int | None:
        """The most tokens the batch being formed at LLM engine ``engine`` may hold (at least
        1; ``None``: the engine's token budget); only asked when ``caps_tokens`` is True. A
        cap below the budget makes the batch smaller than the engine could form: such batches
        count as not work-conserving."""
        return None


class FCFS(Policy):
    """First come, first served across classes: no class order."""

    name = "fcfs"

    def order(self, engine: int, view: NetworkView) -> list[int] | None:
        """``None``: the simulator orders the classes by their oldest job."""
        return None


class StaticPriority(Policy):
    """Classes in a fixed order; ``exit`` / ``entry`` give the exit-first / entry-first orders."""

    state_feedback = True

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.name = f"priority:{spec}"
        self.rank: dict[int, int] = {}

    def bind(self, net: NetworkSpec) -> None:
        """Rank ``net``'s classes (:meth:`ranked`); SpecError for a class name ``net`` does
        not have."""
        self.rank = {k: r for r, k in enumerate(self.ranked(net))}

    def ranked(self, net: NetworkSpec) -> list[int]:
        """Every class of ``net``, highest priority first."""
        topo = net.topology
        names = list(topo.classes)
        if self.spec in ("exit", "entry"):
            leaves = [any(t == EXIT for t in topo.steps[k].targets) for k in range(len(names))]
            first = [k for k in range(len(names)) if leaves[k] == (self.spec == "exit")]
            rest = [k for k in range(len(names)) if k not in first]
            return first + rest
        parts = [p.strip() for p in self.spec.split(">") if p.strip()]
        unknown = [p for p in parts if p not in names]
        if unknown:
            raise SpecError(
                "policy",
                f"priority names unknown class {unknown[0]!r}",
                f"use classes of {net.name}: {', '.join(names)}",
            )
        ranked = [names.index(p) for p in parts]
        return ranked + [k for k in range(len(names)) if k not in ranked]

    def order(self, engine: int, view: NetworkView) -> list[int] | None:
        """The engine's classes by rank."""
        return sorted(view.classes_at[engine], key=self.rank.__getitem__)


class CMu(StaticPriority):
    """The c-mu rule: static priority by ``h_k r_k`` (holding cost per job-second times the
    jobs a unit of capacity completes, ``r_k = 1 / w_k``), largest first; ties by class
    index. At a single-server station with linear holding costs it minimizes the cost rate
    (Cox and Smith 1961); in a network it is a heuristic that ignores where jobs go next."""

    def __init__(self) -> None:
        super().__init__("c-mu")
        self.name = "c-mu"

    def ranked(self, net: NetworkSpec) -> list[int]:
        topo = net.topology
        index = [
            h / w if w > 0 else math.inf for h, w in zip(topo.holding_cost, topo.work, strict=True)
        ]
        return sorted(range(topo.n_classes), key=lambda k: (-index[k], k))


def route_stages(topo: Topology) -> list[int]:
    """Each class's stage: the fewest steps from its workflow's entry to it along the routing
    (the entry is stage 0; a fork's branches are one step after it, a join class one step
    after its branches' last classes)."""
    succ: list[list[int]] = [[] for _ in topo.classes]
    for k, l_, _ in topo.edges:
        succ[k].append(l_)
    stage = [-1] * topo.n_classes
    frontier = list(dict.fromkeys(topo.entries))
    for k in frontier:
        stage[k] = 0
    while frontier:
        nxt: list[int] = []
        for k in frontier:
            for l_ in succ[k]:
                if stage[l_] < 0:
                    stage[l_] = stage[k] + 1
                    nxt.append(l_)
        frontier = nxt
    return stage


class BufferPriority(StaticPriority):
    """Buffer priorities along a re-entrant route: ``lbfs`` (last buffer first served) ranks
    the classes by :func:`route_stages`, latest stage first; ``fbfs`` (first buffer first
    served) earliest first. Ties (classes of different workflows at the same stage) go to
    the lower class index. On a re-entrant line (one route visiting stations several times)
    these are the classic LBFS and FBFS, both stable at loads below 1 (their fluid models
    are: Dai and Weiss 1996). With several routes they can diverge: in the Rybko-Stolyar
    network LBFS is the exit priority."""

    def __init__(self, last: bool) -> None:
        super().__init__("lbfs" if last else "fbfs")
        self.name = self.spec
        self.last = last

    def ranked(self, net: NetworkSpec) -> list[int]:
        stage = route_stages(net.topology)
        sign = -1 if self.last else 1
        return sorted(range(len(stage)), key=lambda k: (sign * stage[k], k))


class MaxPressure(Policy):
    """Maximum pressure, adapted to token budgets.

    The pressure of class ``k`` is ``r_k (z_k - sum_l P_kl z_l)``: ``z`` counts jobs per
    class, ``P`` is the routing matrix and ``r_k = 1 / w_k`` the jobs of class ``k`` that one
    unit of engine capacity (a token at an LLM engine, a second at a station) completes. The
    allocation that maximizes ``z . R a`` over an engine's feasible allocations gives each unit
    of capacity to the class of largest pressure, so the classes are ordered by pressure,
    largest first (ties by class index), and the batching rules fill the budget in that order.
    """

    name = "max-pressure"
    state_feedback = True

    def __init__(self) -> None:
        self.successors: list[list[tuple[int, float]]] | None = None
        # per engine, at first use: (class, -r_k, its (successor, P_kl) pairs), as floats
        self._plans: dict[int, tuple[tuple[int, float, tuple[tuple[int, float], ...]], ...]] = {}

    def bind(self, net: NetworkSpec) -> None:
        """Read ``net``'s routing (the rates are read from the view at first use)."""
        self.successors = self._successors(net.topology)
        self._plans = {}

    @staticmethod
    def _successors(topo: Topology) -> list[list[tuple[int, float]]]:
        """``succ[k]``: the ``(l, P_kl)`` with ``P_kl > 0`` (the routing matrix, sparse)."""
        succ: list[list[tuple[int, float]]] = [[] for _ in topo.classes]
        for k, l_, p in topo.edges:
            succ[k].append((l_, p))
        return succ

    def _rates(self, view: NetworkView) -> list[float]:
        """The factor of each class's pressure: ``r_k`` (a subclass may weight it)."""
        return view.rate.tolist()

    def _plan(
        self, engine: int, view: NetworkView
    ) -> tuple[tuple[int, float, tuple[tuple[int, float], ...]], ...]:
        """The engine's classes with ``-r_k`` and their successors (Python floats)."""
        if self.successors is None:
            self.successors = self._successors(view.topology)
        rate = self._rates(view)
        plan = tuple((k, -rate[k], tuple(self.successors[k])) for k in view.classes_at[engine])
        self._plans[engine] = plan
        return plan

    def pressure_terms(
        self, engine: int, view: NetworkView
    ) -> tuple[tuple[int, float, tuple[tuple[int, float], ...]], ...]:
        """The engine's classes ``k`` with ``-r_k`` (as weighted) and their ``(l, P_kl)``:
        the pressure of ``k`` is ``-(-r_k) (z_k - sum_l P_kl z_l)``, the sum taken left to
        right (what :meth:`ranked` computes; a compiled loop computes the same)."""
        plan = self._plans.get(engine)
        return plan if plan is not None else self._plan(engine, view)

    def ranked(self, engine: int, view: NetworkView) -> list[tuple[float, int]]:
        """``(-pressure, class)`` of the engine's classes, sorted (largest pressure first)."""
        plan = self._plans.get(engine)
        if plan is None:
            plan = self._plan(engine, view)
        # Python floats: the same IEEE arithmetic as on numpy scalars, without their overhead
        z = view.jobs.tolist()
        out = []
        for k, neg_rate, succ in plan:
            downstream = 0  # sum_l P_kl z_l, added up left to right
            for l_, p in succ:
                downstream += p * z[l_]
            out.append((neg_rate * (z[k] - downstream), k))
        out.sort()
        return out

    def order(self, engine: int, view: NetworkView) -> list[int] | None:
        """The engine's classes by pressure, largest first (ties by class index)."""
        return [k for _, k in self.ranked(engine, view)]

    def order_after(self, first: int, engine: int, view: NetworkView) -> list[int]:
        """``first``, then the engine's other classes by pressure, largest first (ties by
        class index): the order an agent's choice of one class stands for."""
        classes = view.classes_at[engine]
        if len(classes) == 2:  # the other class follows: no need to rank
            return [first, classes[1] if classes[0] == first else classes[0]]
        return [first] + [k for _, k in self.ranked(engine, view) if k != first]


class DaiLinMaxPressure(MaxPressure):
    """Maximum pressure in Dai and Lin's (2005) form: every engine re-decides at every event
    of the network (:attr:`every_event`), serves the classes of positive pressure in
    decreasing order, and idles when no class has a positive pressure (:attr:`may_idle`)."""

    name = "max-pressure:dai-lin"
    every_event = True
    may_idle = True

    def order(self, engine: int, view: NetworkView) -> list[int] | None:
        """The engine's classes of positive pressure, largest first (ties by class index)."""
        return [k for neg, k in self.ranked(engine, view) if neg < 0]


class MaxWeight(MaxPressure):
    """MaxWeight: the engine's classes by ``r_k z_k``, largest first (ties by class index):
    the pressure without the downstream term, as if every class left the network when it
    completes. Work-conserving; stable in single-hop systems (a switch, parallel servers:
    Tassiulas and Ephremides 1992), not guaranteed across multi-hop routes, where maximum
    pressure is its extension."""

    name = "max-weight"

    @staticmethod
    def _successors(topo: Topology) -> list[list[tuple[int, float]]]:
        """No downstream classes."""
        return [[] for _ in topo.classes]


class FluidTracking(Policy):
    """Follow the fluid control LP (:mod:`policyopt.solvers.fluid_lp`).

    Every ``every`` decisions (over all engines) the LP is re-solved from the current job
    counts ``z``. Each engine then ranks its classes by how far they are behind the fluid
    plan, ``z_k - q_k(step)`` (jobs above the level the LP reaches at the end of its first
    period), largest first; ties by the first-period capacity share, then by index. Ranking
    by the share alone would turn the plan into a strict priority and can reproduce the very
    instability the plan avoids (it does on the Rybko-Stolyar network). ``horizon`` and
    ``step`` (seconds) are the LP's look-ahead (default 20 mean service times of the slowest
    class) and period (default a tenth of it).
    """

    def __init__(
        self, every: int = 50, horizon: float | None = None, step: float | None = None
    ) -> None:
        if every < 1:
            raise SpecError(
                "policy", f"fluid:{every} re-solves every {every} decisions", "use >= 1"
            )
        self.every = every
        self.horizon = horizon
        self.step = step
        self.name = "fluid" if every == 50 else f"fluid:{every}"
        self.decisions = 0
        self.share: np.ndarray | None = None
        self.solves = 0

    def bind(self, net: NetworkSpec) -> None:
        """Build the fluid LP of ``net`` (cvxpy is imported only when this policy is used)."""
        from policyopt.solvers.fluid_lp import FluidLP
        from policyopt.solvers.traffic import traffic

        topo = net.topology
        horizon = self.horizon
        if horizon is None:  # look ahead 20 mean service times of the slowest class
            flow = traffic(net)
            first_engine = [e[0] for e in topo.eligible]
            horizon = 20.0 * float(np.max(flow.work / flow.mu[first_engine]))
        self.lp = FluidLP(net, horizon=horizon, step=self.step or horizon / 10.0)
        self.class_index = {c: k for k, c in enumerate(topo.classes)}
        self.engine_index = {e: j for j, e in enumerate(topo.engines)}
        self.n_classes, self.n_engines = topo.n_classes, topo.n_engines
        self.decisions = 0
        self.share = None

    def order(self, engine: int, view: NetworkView) -> list[int] | None:
        """The engine's classes, most behind the fluid plan first (re-solving when due)."""
        if self.share is None or self.decisions % self.every == 0:
            plan = self.lp.solve(np.asarray(view.jobs, dtype=float))
            share = np.zeros((self.n_classes, self.n_engines))
            for (cls, eng), value in plan.allocation.items():
                share[self.class_index[cls], self.engine_index[eng]] = value
            self.share = share
            self.target = plan.first_queue()
            self.solves += 1
        self.decisions += 1
        z = view.jobs
        share = self.share
        # most behind the fluid plan first: jobs above the plan's level, then the planned share
        behind = z - self.target
        return sorted(view.classes_at[engine], key=lambda k: (-behind[k], -share[k, engine], k))


# ----------------------------------------------------------------------------- registry

PolicyFactory = Callable[..., Policy]
"""Builds a new policy: called with no argument for an exact name (``fcfs``), with the text
after the colon for a prefixed family (``priority:`` gets ``"A>B"`` for ``priority:A>B``)."""


@dataclass(frozen=True)
class _Entry:
    """One registered name (exact, or a prefix ending with ``:``) and how to build it."""

    name: str
    factory: PolicyFactory | str  # a "module:attribute" string is imported on first use
    aliases: tuple[str, ...]
    arg: str  # the argument's placeholder in listings, for a prefix (``N``, ``DIR``)

    @property
    def prefix(self) -> bool:
        """A prefixed family (``priority:``), not an exact name."""
        return self.name.endswith(":")

    @property
    def usage(self) -> str:
        """How the name is written: ``fluid``, ``fluid:N``, ``max-pressure (or mp)``."""
        text = f"{self.name}{self.arg}" if self.prefix else self.name
        if self.aliases:
            alias = ", ".join(f"{a}{self.arg}" if self.prefix else a for a in self.aliases)
            text += f" (or {alias})"
        return text

    def build(self, arg: str | None) -> Policy:
        """A new policy: ``factory()`` for an exact name, ``factory(arg)`` for a prefix."""
        factory = _resolve(self.factory) if isinstance(self.factory, str) else self.factory
        policy = factory() if arg is None else factory(arg)
        if not isinstance(policy, Policy):
            raise TypeError(
                f"the factory of policy {self.name!r} returned {type(policy).__name__}, "
                "not a Policy"
            )
        return policy


_NAMES: dict[str, _Entry] = {}  # exact names and their aliases
_PREFIXES: dict[str, _Entry] = {}  # "priority:" and the like
_ORDER: list[_Entry] = []  # registration order, for listings

POLICY_ENTRY_POINTS = "policyopt.policies"
"""The entry-point group of policy providers: each entry names a function that registers
policies (:func:`register_policy`). :func:`make_policy` loads them only when a name is not
registered yet, and :func:`registered_policies` before listing. This project's
``pyproject.toml`` declares its trained agents there
(``learn = "policyopt.learn:register_policies"``); another package declares its own in its
``[project.entry-points."policyopt.policies"]`` table."""

_loaded_providers: set[str] = set()


def _resolve(target: str) -> PolicyFactory:
    """The object named by ``"package.module:attribute"`` (the attribute may be dotted)."""
    module, _, attr = target.partition(":")
    obj: object = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{target!r} is not callable")
    return obj


def _check_name(name: str, prefix: bool) -> None:
    """ValueError unless ``name`` is one word, with no colon (exact) or one final colon."""
    if not name or name != name.strip() or any(c.isspace() for c in name):
        raise ValueError(f"a policy name must be a non-empty word, got {name!r}")
    colons = name.count(":")
    if prefix and (colons != 1 or len(name) == 1):
        raise ValueError(f"a prefix must end with its only colon, got {name!r}")
    if not prefix and colons:
        raise ValueError(
            f"an exact policy name has no colon, got {name!r} (a prefix ends with one)"
        )


def register_policy(
    name: str,
    factory: PolicyFactory | str,
    *,
    aliases: Sequence[str] = (),
    arg: str = "ARG",
    replace: bool = False,
) -> None:
    """Make ``name`` known to :func:`make_policy`.

    ``name``: an exact name (``"fcfs"``; ``factory()`` builds the policy) or a prefix ending
    with a colon (``"priority:"``; ``make_policy("priority:A>B")`` calls ``factory("A>B")``,
    and the argument may not be empty). ``factory``: a callable returning a new
    :class:`Policy` (a class will do), or a ``"module:attribute"`` string imported on first
    use. ``aliases``: other names for the same entry (prefixes for a prefix). ``arg``: the
    placeholder shown for a prefix's argument in listings and errors (``N``, ``DIR``).
    ``replace``: replace an entry of the same name (its old aliases go too); otherwise a name
    already taken raises ``ValueError``. One line registers a policy::

        register_policy("round-robin", RoundRobin)
    """
    prefix = name.endswith(":")
    keys = (name, *aliases)
    for key in keys:
        if key.endswith(":") != prefix:
            raise ValueError(f"alias {key!r} and name {name!r} must both be prefixes or not")
        _check_name(key, prefix)
    if isinstance(factory, str) and (":" not in factory or factory.startswith(":")):
        raise ValueError(f"a factory string is 'module:attribute', got {factory!r}")
    if not isinstance(factory, str) and not callable(factory):
        raise TypeError(f"the factory of {name!r} must be callable or 'module:attribute'")
    table = _PREFIXES if prefix else _NAMES
    if replace and name in table:
        unregister_policy(name)
    taken = [key for key in keys if key in table]
    if taken:
        raise ValueError(
            f"policy name {taken[0]!r} is already registered (use replace=True to replace it)"
        )
    entry = _Entry(name, factory, tuple(aliases), arg if prefix else "")
    for key in keys:
        table[key] = entry
    _ORDER.append(entry)


def unregister_policy(name: str) -> None:
    """Forget the entry registered as ``name`` (with its aliases); ``KeyError`` if none."""
    table = _PREFIXES if name.endswith(":") else _NAMES
    entry = table[name]
    for key in (entry.name, *entry.aliases):
        table.pop(key, None)
    _ORDER.remove(entry)


def _import_providers() -> bool:
    """Load the providers of :data:`POLICY_ENTRY_POINTS` not loaded yet (each registers its
    policies); True if there were any."""
    new = [
        ep for ep in entry_points(group=POLICY_ENTRY_POINTS) if ep.value not in _loaded_providers
    ]
    for ep in new:
        _loaded_providers.add(ep.value)
        ep.load()()
    return bool(new)


def registered_policies() -> list[str]:
    """Every registered policy, as it is written (``fcfs``, ``fluid:N``, ``ppo:DIR``, aliases
    in parentheses), in registration order; the providers are imported first."""
    _import_providers()
    return [entry.usage for entry in _ORDER]


def _lookup(name: str) -> tuple[_Entry, str | None] | None:
    """The entry of ``name`` and its argument (``None`` for an exact name), or ``None``."""
    entry = _NAMES.get(name)
    if entry is not None:
        return entry, None
    head, colon, arg = name.partition(":")
    entry = _PREFIXES.get(head + colon) if colon and arg else None
    return None if entry is None else (entry, arg)


def make_policy(spec: str | Policy) -> Policy:
    """A new policy from its registered name, or ``spec`` itself if it is a :class:`Policy`.

    Built in: ``fcfs``, ``max-pressure`` (``maxpressure``, ``mp``), ``priority:A>B``,
    ``priority:exit``, ``priority:entry``, ``fluid`` / ``fluid:N``; from
    :mod:`policyopt.learn`, a trained agent ``ppo:DIR`` / ``a2c:DIR`` / ``maskable-ppo:DIR``
    (a directory written by ``policyopt train``; needs the ``learn`` dependencies, imported
    only then). An unknown name raises :class:`SpecError` listing the registered ones.
    """
    if isinstance(spec, Policy):
        return spec
    name = spec.strip()
    found = _lookup(name)
    if found is None and _import_providers():
        found = _lookup(name)
    if found is None:
        raise SpecError(
            "policy", f"unknown policy {spec!r}", f"use {', '.join(registered_policies())}"
        )
    entry, arg = found
    return entry.build(arg)


def split_policy_names(text: str) -> list[str]:
    """The policies of a comma-separated list, stripped. An item that does not start with a
    letter continues the policy before it, so that policies whose arguments hold commas can be
    listed: ``c-mu,weighted-pressure:1,2,3,batch-cap:256,20:c-mu`` is three policies. Empty
    items stay (as ``""``) for the caller to refuse."""
    names: list[str] = []
    for part in text.split(","):
        item = part.strip()
        if names and names[-1] and item and not item[0].isalpha():
            names[-1] += "," + item
        else:
            names.append(item)
    return names


def _fluid(every: str) -> FluidTracking:
    """``fluid:N``: re-solve every ``N`` decisions."""
    if not every.isdigit():
        raise SpecError("policy", f"'fluid:{every}': N in fluid:N must be a whole number", "")
    return FluidTracking(int(every))


def _max_pressure(form: str) -> MaxPressure:
    """``max-pressure:FORM``: ``work-conserving`` (as ``max-pressure``) or ``dai-lin``."""
    forms: dict[str, type[MaxPressure]] = {
        "work-conserving": MaxPressure,
        "dai-lin": DaiLinMaxPressure,
    }
    if form not in forms:
        raise SpecError(
            "policy",
            f"'max-pressure:{form}': unknown form {form!r}",
            f"use max-pressure:{' or max-pressure:'.join(forms)}",
        )
    return forms[form]()


register_policy("fcfs", FCFS)
register_policy("max-pressure", MaxPressure, aliases=("maxpressure", "mp"))
register_policy("priority:", StaticPriority, arg="A>B>C|exit|entry")
register_policy("max-pressure:", _max_pressure, aliases=("mp:",), arg="work-conserving|dai-lin")
register_policy("max-weight", MaxWeight, aliases=("maxweight",))
register_policy("c-mu", CMu, aliases=("cmu",))
register_policy("lbfs", lambda: BufferPriority(last=True))
register_policy("fbfs", lambda: BufferPriority(last=False))
register_policy("fluid", FluidTracking)
register_policy("fluid:", _fluid, arg="N")
register_policy(
    "weighted-pressure:", "policyopt.index_policies:WeightedPressure.from_arg", arg="W1,...,WK"
)
register_policy("linear:", "policyopt.index_policies:LinearIndex.from_arg", arg="A1,B1,...,AK,BK")
register_policy("table:", "policyopt.optimal_policy:TablePolicy.from_file", arg="FILE.npz")
register_policy("batch-cap:", "policyopt.batch_cap:BatchCap.from_arg", arg="TOKENS[,JOBS]:POLICY")
register_policy("pr", "policyopt.proportional:ProportionallyRandomized")
register_policy("pr:", "policyopt.proportional:ProportionallyRandomized.from_arg", arg="SEED")
