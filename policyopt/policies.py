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
* :class:`MaxPressure` (``max-pressure``): Dai and Lin (2005), adapted to token budgets (see
  ``docs/policies.md``).
* :class:`FluidTracking` (``fluid`` or ``fluid:N``): re-solves the fluid control LP from the
  observed job counts every ``N`` decisions (default 50) and ranks first the classes most
  behind the LP's trajectory.

The view a policy reads is :class:`NetworkView`: jobs per class, the routing matrix, work per
job. Policies are deterministic given the view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from policyopt.errors import SpecError
from policyopt.model.network import EXIT, NetworkSpec, Topology


@dataclass
class NetworkView:
    """What a network policy sees.

    ``jobs[k]``: jobs of class ``k`` in the system (waiting or in service, at any engine);
    ``classes_at[j]``: the classes engine ``j`` can serve; ``P``: the routing matrix (dense,
    classes x classes, expected jobs sent to ``l`` per completion of ``k``); ``rate[k]``:
    jobs of class ``k`` an engine completes per unit of its capacity (``1 / w_k``: per token at
    an LLM engine, per second of work at a station); ``now``: the time (s); ``simulator``: the
    :class:`~policyopt.sim.network_sim.NetworkSimulator` that owns the view (set by it), for
    policies that read more than the job counts, such as a trained agent
    (:class:`policyopt.learn.agent_policy.AgentPolicy` reads ``class_state()``,
    ``classes_with_work(j)`` and ``horizon``).
    """

    topology: Topology
    jobs: np.ndarray
    classes_at: tuple[tuple[int, ...], ...]
    P: np.ndarray
    rate: np.ndarray
    now: float = 0.0
    simulator: Any = None


class Policy:
    """Base class: ``order(engine, view)`` returns class indices, or ``None`` for FCFS.

    A policy that also splits the token budget between decode and prefill sets ``splits =
    True`` and implements ``decode_cap``; the simulator then asks it right after ``order`` at
    each LLM batch (see :meth:`decode_cap`).
    """

    name = "policy"
    splits = False

    def bind(self, net: NetworkSpec) -> None:
        """Prepare for ``net`` (called once before a run); raise SpecError if unusable."""

    def order(self, engine: int, view: NetworkView) -> list[int] | None:
        raise NotImplementedError

    def decode_cap(self, engine: int, view: NetworkView) -> int | None:
        """Decode tokens served before prefill in the batch being formed at ``engine``
        (``None``: the engine's own scheduler rule); only asked when ``splits`` is True, and
        only used at engines whose scheduler mixes prefill and decode. See
        :meth:`~policyopt.sim.network_sim.NetworkSimulator.decide`."""
        return None


class FCFS(Policy):
    """First come, first served across classes: no class order."""

    name = "fcfs"

    def order(self, engine: int, view: NetworkView) -> list[int] | None:
        return None


class StaticPriority(Policy):
    """Classes in a fixed order; ``exit`` / ``entry`` give the exit-first / entry-first orders."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.name = f"priority:{spec}"
        self.rank: dict[int, int] = {}

    def bind(self, net: NetworkSpec) -> None:
        topo = net.topology
        names = list(topo.classes)
        if self.spec in ("exit", "entry"):
            leaves = [any(t == EXIT for t in topo.steps[k].targets) for k in range(len(names))]
            first = [k for k in range(len(names)) if leaves[k] == (self.spec == "exit")]
            rest = [k for k in range(len(names)) if k not in first]
            ranked = first + rest
        else:
            parts = [p.strip() for p in self.spec.split(">") if p.strip()]
            unknown = [p for p in parts if p not in names]
            if unknown:
                raise SpecError(
                    "policy",
                    f"priority names unknown class {unknown[0]!r}",
                    f"use classes of {net.name}: {', '.join(names)}",
                )
            ranked = [names.index(p) for p in parts]
            ranked += [k for k in range(len(names)) if k not in ranked]
        self.rank = {k: r for r, k in enumerate(ranked)}

    def order(self, engine: int, view: NetworkView) -> list[int] | None:
        return sorted(view.classes_at[engine], key=self.rank.__getitem__)


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

    def __init__(self) -> None:
        self.successors: list[list[tuple[int, float]]] | None = None
        self._rate: list[float] | None = None  # view.rate as Python floats, set at first use

    def bind(self, net: NetworkSpec) -> None:
        self.successors = self._successors(net.topology)
        self._rate = None

    @staticmethod
    def _successors(topo: Topology) -> list[list[tuple[int, float]]]:
        """``succ[k]``: the ``(l, P_kl)`` with ``P_kl > 0`` (the routing matrix, sparse)."""
        succ: list[list[tuple[int, float]]] = [[] for _ in topo.classes]
        for k, l_, p in topo.edges:
            succ[k].append((l_, p))
        return succ

    def order(self, engine: int, view: NetworkView) -> list[int] | None:
        # Python floats: the same IEEE arithmetic as on numpy scalars, without their overhead
        z = view.jobs.tolist()
        if self.successors is None:
            self.successors = self._successors(view.topology)
        if self._rate is None:
            self._rate = view.rate.tolist()
        succ, rate = self.successors, self._rate
        ranked = sorted(
            (-rate[k] * (z[k] - sum(p * z[l_] for l_, p in succ[k])), k)
            for k in view.classes_at[engine]
        )
        return [k for _, k in ranked]


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

    def __init__(self, every: int = 50, horizon: float | None = None, step: float | None = None):
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
        # cvxpy is imported only when this policy is used
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


AGENT_PREFIXES = ("ppo:", "a2c:", "maskable-ppo:")
"""Policy names ``ALGO:DIR`` that load a trained agent (:mod:`policyopt.learn`)."""


def make_policy(spec: str | Policy) -> Policy:
    """A policy from its name: ``fcfs``, ``max-pressure``, ``priority:A>B``, ``priority:exit``,
    ``fluid`` / ``fluid:N``, or a trained agent ``ppo:DIR`` / ``a2c:DIR`` / ``maskable-ppo:DIR``
    (a directory written by ``policyopt train``; needs the ``learn`` dependencies, imported
    only then)."""
    if isinstance(spec, Policy):
        return spec
    name = spec.strip()
    if name.startswith(AGENT_PREFIXES):
        from policyopt.learn.agent_policy import AgentPolicy

        algo, path = name.split(":", 1)
        return AgentPolicy(path, algo=algo)
    if name == "fcfs":
        return FCFS()
    if name in ("max-pressure", "maxpressure", "mp"):
        return MaxPressure()
    if name.startswith("priority:") and len(name) > len("priority:"):
        return StaticPriority(name.split(":", 1)[1])
    if name == "fluid" or name.startswith("fluid:"):
        every = name.split(":", 1)[1] if ":" in name else "50"
        if not every.isdigit():
            raise SpecError("policy", f"{spec!r}: N in fluid:N must be a whole number", "")
        return FluidTracking(int(every))
    raise SpecError(
        "policy",
        f"unknown policy {spec!r}",
        "use fcfs, max-pressure, fluid, fluid:N, priority:exit, priority:entry, priority:A>B>C "
        "or a trained agent ppo:DIR, a2c:DIR, maskable-ppo:DIR",
    )
