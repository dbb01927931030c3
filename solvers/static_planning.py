"""The static planning LP: the capacity region of a network and its bottleneck engines.

With ``d_k = lambda_k w_k`` the offered work of class ``k`` (tokens/s at an LLM engine, seconds
of work per second at a station) and ``mu_j`` the engine capacities
(:mod:`policyopt.solvers.traffic`), variables ``x_kj >= 0`` (work rate of class ``k`` done at
engine ``j``, eligible pairs only) and ``theta``::

    maximize theta
    subject to  sum_j x_kj = theta * d_k     for every class k
                sum_k x_kj <= mu_j           for every engine j

``theta* > 1`` means the nominal arrival vector lies inside the capacity region with margin
``theta*`` (every arrival rate can grow by the factor ``theta*``); ``theta* < 1`` means no
policy can carry it. For fixed routing ``theta* = 1 / max_j rho_j``. The dual value ``y_j`` of
engine ``j``'s capacity constraint is its shadow price: ``d theta* / d mu_j`` (theta per
token/s, or per unit of station speed). By LP duality ``sum_j y_j mu_j = theta*``, so
``y_j mu_j / theta*`` is engine ``j``'s share of the bottleneck (its elasticity). Classes
with a single eligible engine are substituted out (``x_kj = theta d_k``), which leaves the
same LP with fewer variables, and the class constraints are written ``>=`` (equivalent at the
optimum; the reported assignment is scaled back to equality). ``docs/networks.md`` (static
planning LP) walks through an example.

**Memory.** An LLM engine with a KV cache of ``M_j`` tokens adds Little's law as a constraint:
the mean KV in use, ``sum_k (x_kj / w_k) E[H_kj]`` (jobs/s of class ``k`` at ``j`` times the
KV-token-seconds a job holds per visit, :func:`policyopt.solvers.memory_bound.network_memory`),
is at most ``M_j``::

                sum_k c_kj x_kj <= M_j       for every engine j with a KV cache,
                c_kj = E[H_kj] / w_k          (KV-token-seconds per token of work)

Its dual ``z_j = d theta* / d M_j`` (theta per token of KV) is the shadow price of engine
``j``'s memory; duality now reads ``sum_j y_j mu_j + sum_j z_j M_j = theta*``. Engines without
a KV cache get no row, so a network without one gives the same LP as before.

The problem is compiled once with CVXPY ``Parameter`` objects for ``d`` and ``mu`` (the
problem is DPP: ``problem.is_dpp()`` is checked), so a sweep over arrival rates re-solves
without recompiling. The solver is chosen and the status checked by :mod:`policyopt.solvers.lp`
(HiGHS when installed, else CLARABEL with a note); an infeasible or unbounded problem is
explained in words (:class:`~policyopt.solvers.lp.LPError`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np
from scipy import sparse

from policyopt.model.network import NetworkSpec
from policyopt.solvers.lp import LPError, choose_solver, solve_checked
from policyopt.solvers.memory_bound import network_memory
from policyopt.solvers.traffic import Traffic
from policyopt.solvers.traffic import traffic as compute_traffic

BOTTLENECK_TOL = 1e-6
"""An engine is saturated when its use at the optimum is within this (relative) of its
capacity; its capacity constraint is priced when its share ``y_j mu_j / theta*`` exceeds it."""


@dataclass(frozen=True)
class StaticPlan:
    """Solution of the static planning LP.

    * ``theta``: ``theta*``, the largest factor by which every arrival rate can grow and stay
      inside the capacity region (``> 1``: the nominal rates are carried with margin).
    * ``utilization`` (per engine, at the nominal rates): ``sum_k x*_kj / (theta* mu_j)``; the
      bottleneck engines run at ``1 / theta*``.
    * ``saturated``: engines at full use in the optimum (utilization ``1 / theta*`` within
      1e-6 relative); ``bottlenecks``: the saturated engines and those whose capacity
      constraint has a positive shadow price (share of ``theta*`` above 1e-6). With ties (two
      engines at the same top load) the duals are not unique and the solver may price only
      one of them; both are saturated, so both are listed. With eligible sets an engine may be
      saturated in the optimum found without being critical (its share is then 0).
    * ``assignment``: ``(class, engine) -> work rate`` at the nominal rates (tokens/s or
      seconds/s), i.e. ``x*_kj / theta*``; ``fractions``: the same as a share of each class.
    * ``duals``: ``engine -> y_j = d theta* / d mu_j``; ``shares``: ``y_j mu_j / theta*``.
    * Engines with a KV cache (empty otherwise): ``kv_capacity`` (``M_j``, tokens),
      ``kv_in_use`` (mean KV in use at the nominal rates, tokens: Little's law),
      ``kv_duals`` (``z_j = d theta* / d M_j``, theta per token), ``kv_shares``
      (``z_j M_j / theta*``) and ``kv_bottlenecks``: engines whose memory is full in the
      optimum (``kv_in_use`` at ``M_j / theta*`` within 1e-6) or priced. ``bottlenecks``
      are those of the token capacity only.
    """

    theta: float
    status: str
    solver: str
    solver_note: str
    classes: tuple[str, ...]
    engines: tuple[str, ...]
    offered: np.ndarray
    mu: np.ndarray
    utilization: dict[str, float]
    saturated: tuple[str, ...]
    bottlenecks: tuple[str, ...]
    assignment: dict[tuple[str, str], float]
    fractions: dict[tuple[str, str], float]
    duals: dict[str, float]
    shares: dict[str, float]
    solve_seconds: float
    kv_capacity: dict[str, float] = field(default_factory=dict)
    kv_in_use: dict[str, float] = field(default_factory=dict)
    kv_duals: dict[str, float] = field(default_factory=dict)
    kv_shares: dict[str, float] = field(default_factory=dict)
    kv_bottlenecks: tuple[str, ...] = ()

    @property
    def max_scale(self) -> float:
        """Alias of ``theta``."""
        return self.theta

    def table(self) -> str:
        """A plain-text summary: ``theta*``, per-engine utilization, duals, bottlenecks."""
        lines = [
            f"theta* = {self.theta:.6g}  ({'inside' if self.theta > 1 else 'outside'} the "
            f"capacity region; solver {self.solver}, status {self.status})"
        ]
        if self.solver_note:
            lines.append(f"note: {self.solver_note}")
        lines.append(f"{'engine':<16}{'mu':>12}{'utilization':>13}{'dual':>13}{'share':>9}")
        for j, e in enumerate(self.engines):
            mark = "  bottleneck" if e in self.bottlenecks else ""
            lines.append(
                f"{e:<16}{self.mu[j]:>12.4g}{self.utilization[e]:>13.4f}"
                f"{self.duals[e]:>13.4g}{self.shares[e]:>9.4f}{mark}"
            )
        if self.kv_capacity:
            lines.append("KV cache (mean KV in use at the nominal rates, by Little's law):")
            lines.append(f"{'engine':<16}{'M tokens':>12}{'KV in use':>13}{'dual':>13}{'share':>9}")
            for e, cap in self.kv_capacity.items():
                mark = "  memory binds" if e in self.kv_bottlenecks else ""
                lines.append(
                    f"{e:<16}{cap:>12.0f}{self.kv_in_use[e]:>13.0f}"
                    f"{self.kv_duals[e]:>13.4g}{self.kv_shares[e]:>9.4f}{mark}"
                )
        return "\n".join(lines)


class StaticPlanningLP:
    """The static planning LP, compiled once; :meth:`solve` re-solves with new data.

    ``eligible[k]`` lists the engine indices class ``k`` may use, ``offered[k] = d_k``
    (``lambda_k w_k``, >= 0), ``mu[j] > 0``. ``work`` (``w_k``, optional) lets :meth:`solve`
    take class rates instead of offered work. ``kv_capacity[j]`` (``M_j`` tokens; ``inf``: no
    KV cache) and ``kv_per_work[k, j]`` (``c_kj``, KV-token-seconds per token of work) add the
    memory constraints (module docstring); the coefficients stay as given when :meth:`solve`
    changes the rates.
    """

    def __init__(
        self,
        eligible: Sequence[Sequence[int]],
        offered: Sequence[float] | np.ndarray,
        mu: Sequence[float] | np.ndarray,
        classes: Sequence[str] | None = None,
        engines: Sequence[str] | None = None,
        work: Sequence[float] | np.ndarray | None = None,
        solver: str | None = None,
        kv_capacity: Sequence[float] | np.ndarray | None = None,
        kv_per_work: np.ndarray | None = None,
    ) -> None:
        t0 = time.perf_counter()
        self.eligible = tuple(tuple(int(j) for j in e) for e in eligible)
        n_cls = len(self.eligible)
        mu_arr = np.asarray(mu, dtype=float)
        n_eng = len(mu_arr)
        self.classes = (
            tuple(classes) if classes is not None else tuple(f"class{k}" for k in range(n_cls))
        )
        self.engines = (
            tuple(engines) if engines is not None else tuple(f"engine{j}" for j in range(n_eng))
        )
        self.work = None if work is None else np.asarray(work, dtype=float)
        if any(not e for e in self.eligible):
            k = next(k for k, e in enumerate(self.eligible) if not e)
            raise LPError(f"classes.{self.classes[k]}", "no eligible engine", "give it one")
        if any(j < 0 or j >= n_eng for e in self.eligible for j in e):
            raise LPError("eligible", "an engine index is out of range", "")
        self.solver, self.solver_note, self._options = choose_solver(solver)

        single = [k for k, e in enumerate(self.eligible) if len(e) == 1]
        multi = [k for k, e in enumerate(self.eligible) if len(e) > 1]
        self._single, self._multi = single, multi
        pairs = [(k, j) for k in multi for j in self.eligible[k]]
        self._pairs = pairs
        self.d = cp.Parameter(n_cls, nonneg=True, name="offered_work")
        self.mu = cp.Parameter(n_eng, pos=True, name="capacity")
        self.theta = cp.Variable(name="theta")
        fixed = sparse.csr_matrix(
            (np.ones(len(single)), ([self.eligible[k][0] for k in single], single)),
            shape=(n_eng, n_cls),
        )
        engine_use = self.theta * (fixed @ self.d)
        constraints = []
        if pairs:
            self.x = cp.Variable(len(pairs), nonneg=True, name="x")
            row = {k: i for i, k in enumerate(multi)}
            a_cls = sparse.csr_matrix(
                (np.ones(len(pairs)), ([row[k] for k, _ in pairs], range(len(pairs)))),
                shape=(len(multi), len(pairs)),
            )
            a_eng = sparse.csr_matrix(
                (np.ones(len(pairs)), ([j for _, j in pairs], range(len(pairs)))),
                shape=(n_eng, len(pairs)),
            )
            pick = sparse.csr_matrix(
                (np.ones(len(multi)), (range(len(multi)), multi)), shape=(len(multi), n_cls)
            )
            constraints.append(a_cls @ self.x >= self.theta * (pick @ self.d))
            engine_use = engine_use + a_eng @ self.x
        else:
            self.x = None
        self._capacity = engine_use <= self.mu
        constraints.append(self._capacity)
        self._memory = self._memory_rows(kv_capacity, kv_per_work, n_cls, n_eng)
        if self._memory is not None:
            constraints.append(self._memory)
        self.problem = cp.Problem(cp.Maximize(self.theta), constraints)
        if not self.problem.is_dpp():  # pragma: no cover - guarded by construction
            raise LPError("lp", "the static planning LP is not DPP", "report this bug")
        self._set(offered, mu_arr)
        self.build_seconds = time.perf_counter() - t0
        self.solves = 0

    def _memory_rows(
        self,
        kv_capacity: Sequence[float] | np.ndarray | None,
        kv_per_work: np.ndarray | None,
        n_cls: int,
        n_eng: int,
    ) -> cp.Constraint | None:
        """``sum_k c_kj x_kj <= M_j`` for the engines with a finite ``M_j`` (``None``: none).

        ``self.kv_capacity`` is then the ``Parameter`` of those ``M_j`` (set its value and
        :meth:`solve` again to re-price the memory without recompiling).
        """
        self._kv_rows: tuple[int, ...] = ()
        self.kv_capacity: cp.Parameter | None = None
        if kv_capacity is None:
            return None
        cap = np.asarray(kv_capacity, dtype=float)
        coef = np.asarray(kv_per_work, dtype=float)
        if cap.shape != (n_eng,) or np.any(np.isnan(cap)) or np.any(cap <= 0):
            raise LPError(
                "kv_capacity", f"need {n_eng} capacities > 0 (inf: no KV cache), got {cap!r}", ""
            )
        if coef.shape != (n_cls, n_eng) or not np.all(np.isfinite(coef)) or np.any(coef < 0):
            raise LPError(
                "kv_per_work", f"need a {n_cls} x {n_eng} array of finite values >= 0", ""
            )
        rows = tuple(int(j) for j in np.flatnonzero(np.isfinite(cap)))
        if not rows:
            return None
        self._kv_rows, self._kv_coef = rows, coef
        row = {j: i for i, j in enumerate(rows)}
        fixed = [(row[self.eligible[k][0]], k) for k in self._single if self.eligible[k][0] in row]
        kv_fixed = sparse.csr_matrix(
            (
                [coef[k, self.eligible[k][0]] for _, k in fixed],
                ([r for r, _ in fixed], [k for _, k in fixed]),
            ),
            shape=(len(rows), n_cls),
        )
        use = self.theta * (kv_fixed @ self.d)
        if self.x is not None:
            cols = [(row[j], i, coef[k, j]) for i, (k, j) in enumerate(self._pairs) if j in row]
            a_kv = sparse.csr_matrix(
                ([c for *_, c in cols], ([r for r, _, _ in cols], [i for _, i, _ in cols])),
                shape=(len(rows), len(self._pairs)),
            )
            use = use + a_kv @ self.x
        self.kv_capacity = cp.Parameter(len(rows), pos=True, name="kv_capacity")
        self.kv_capacity.value = cap[list(rows)]
        return use <= self.kv_capacity

    @classmethod
    def from_network(
        cls, net: NetworkSpec, solver: str | None = None, traffic: Traffic | None = None
    ) -> StaticPlanningLP:
        """The LP of a network at its nominal rates (capacities from the traffic module)."""
        tr = traffic if isinstance(traffic, Traffic) else compute_traffic(net)
        memory = network_memory(net, tr)
        kv: dict[str, np.ndarray] = {}
        if memory.limited:  # KV-token-seconds per visit / tokens of work per visit
            per_work = memory.kv_seconds / np.where(tr.work > 0, tr.work, 1.0)[:, None]
            kv = {"kv_capacity": memory.kv_capacity, "kv_per_work": per_work}
        return cls(
            tr.eligible,
            tr.offered,
            tr.mu,
            classes=tr.classes,
            engines=tr.engines,
            work=tr.work,
            solver=solver,
            **kv,
        )

    def _set(
        self,
        offered: Sequence[float] | np.ndarray | None,
        mu: Sequence[float] | np.ndarray | None,
    ) -> None:
        if offered is not None:
            d = np.asarray(offered, dtype=float)
            if d.shape != (len(self.eligible),) or not np.all(np.isfinite(d)) or np.any(d < 0):
                raise LPError(
                    "offered",
                    f"need {len(self.eligible)} finite work rates >= 0, got {d!r}",
                    "give lambda_k * w_k for every class",
                )
            self.d.value = d
        if mu is not None:
            m = np.asarray(mu, dtype=float)
            if m.shape != (len(self.engines),) or not np.all(np.isfinite(m)) or np.any(m <= 0):
                raise LPError(
                    "mu",
                    f"need {len(self.engines)} finite capacities > 0, got {m!r}",
                    "every engine needs a positive capacity",
                )
            self.mu.value = m

    def solve(
        self,
        offered: Sequence[float] | np.ndarray | None = None,
        mu: Sequence[float] | np.ndarray | None = None,
        rates: Sequence[float] | np.ndarray | None = None,
    ) -> StaticPlan:
        """Solve (re-using the compiled problem) and report ``theta*`` and the rest.

        ``offered`` (``d_k``), ``rates`` (``lambda_k``, needs ``work``) and ``mu`` replace the
        current data; anything not given keeps its last value.
        """
        if rates is not None:
            if self.work is None:
                raise LPError("rates", "this LP was built without work per class", "give offered")
            offered = np.asarray(rates, dtype=float) * self.work
        self._set(offered, mu)
        d = np.asarray(self.d.value, dtype=float)
        if not np.any(d > 0):
            raise LPError(
                "lp",
                "the static planning LP is unbounded: no class brings any work (every "
                "arrival rate is 0), so every scaling theta is feasible",
                "give some workflow a positive arrival rate",
            )
        t0 = time.perf_counter()
        solve_checked(self.problem, self.solver, self._options, "the static planning LP")
        elapsed = time.perf_counter() - t0
        self.solves += 1
        return self._report(elapsed)

    def _report(self, elapsed: float) -> StaticPlan:
        theta = float(self.theta.value)
        d = np.asarray(self.d.value, dtype=float)
        mu = np.asarray(self.mu.value, dtype=float)
        n_eng = len(mu)
        flows: dict[tuple[int, int], float] = {}
        for k in self._single:
            flows[(k, self.eligible[k][0])] = theta * d[k]
        if self.x is not None:
            xv = np.maximum(np.asarray(self.x.value, dtype=float), 0.0)
            by_class: dict[int, float] = {}
            for (k, _), v in zip(self._pairs, xv, strict=True):
                by_class[k] = by_class.get(k, 0.0) + v
            for (k, j), v in zip(self._pairs, xv, strict=True):
                total = by_class[k]
                # scale the >= constraint back to equality: exactly theta * d_k per class
                flows[(k, j)] = v * (theta * d[k] / total) if total > 0 else 0.0
        used = np.zeros(n_eng)
        for (_, j), v in flows.items():
            used[j] += v
        scale = theta if theta > 0 else 1.0
        util = used / (scale * mu)
        duals = np.asarray(self._capacity.dual_value, dtype=float).reshape(-1)
        duals = np.maximum(duals, 0.0)
        shares = duals * mu / scale
        saturated = tuple(
            e for j, e in enumerate(self.engines) if used[j] >= (1 - BOTTLENECK_TOL) * mu[j]
        )
        bottlenecks = tuple(
            e for j, e in enumerate(self.engines) if shares[j] > BOTTLENECK_TOL or e in saturated
        )
        memory = self._memory_report(flows, scale)
        assignment = {
            (self.classes[k], self.engines[j]): v / scale for (k, j), v in sorted(flows.items())
        }
        fractions = {
            (self.classes[k], self.engines[j]): (v / (theta * d[k]) if d[k] > 0 else 0.0)
            for (k, j), v in sorted(flows.items())
        }
        return StaticPlan(
            theta=theta,
            status=str(self.problem.status),
            solver=self.solver,
            solver_note=self.solver_note,
            classes=self.classes,
            engines=self.engines,
            offered=d.copy(),
            mu=mu.copy(),
            utilization={e: float(util[j]) for j, e in enumerate(self.engines)},
            saturated=saturated,
            bottlenecks=bottlenecks,
            assignment=assignment,
            fractions=fractions,
            duals={e: float(duals[j]) for j, e in enumerate(self.engines)},
            shares={e: float(shares[j]) for j, e in enumerate(self.engines)},
            solve_seconds=elapsed,
            **memory,
        )

    def _memory_report(self, flows: dict[tuple[int, int], float], scale: float) -> dict:
        """The ``kv_*`` fields of :class:`StaticPlan` (empty without memory constraints)."""
        if self._memory is None:
            return {}
        rows = self._kv_rows
        assert self.kv_capacity is not None
        cap = np.asarray(self.kv_capacity.value, dtype=float)
        used = np.zeros(len(rows))
        index = {j: i for i, j in enumerate(rows)}
        for (k, j), v in flows.items():
            if j in index:
                used[index[j]] += self._kv_coef[k, j] * v
        duals = np.maximum(np.asarray(self._memory.dual_value, dtype=float).reshape(-1), 0.0)
        shares = duals * cap / scale
        names = [self.engines[j] for j in rows]
        return {
            "kv_capacity": dict(zip(names, map(float, cap), strict=True)),
            "kv_in_use": {e: float(u / scale) for e, u in zip(names, used, strict=True)},
            "kv_duals": dict(zip(names, map(float, duals), strict=True)),
            "kv_shares": dict(zip(names, map(float, shares), strict=True)),
            "kv_bottlenecks": tuple(
                e
                for i, e in enumerate(names)
                if used[i] >= (1 - BOTTLENECK_TOL) * cap[i] or shares[i] > BOTTLENECK_TOL
            ),
        }


def static_plan(net: NetworkSpec, solver: str | None = None) -> StaticPlan:
    """Solve the static planning LP of ``net`` at its nominal arrival rates."""
    return StaticPlanningLP.from_network(net, solver=solver).solve()
