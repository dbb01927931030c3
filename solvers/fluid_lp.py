"""The fluid control LP: a discretized fluid model of a network over a horizon.

State ``q_k`` = fluid content of class ``k`` (jobs waiting or in service). Control: the work
rate ``x_kj >= 0`` given to class ``k`` at engine ``j`` (eligible pairs; tokens/s at an LLM
engine, seconds of work per second at a station) with ``sum_k x_kj <= mu_j``. Class ``k``
then completes ``c_k = sum_j x_kj / w_k`` jobs/s, and the fluid moves as

    q(t + dt) = q(t) + dt * (alpha + (P^T - I) c(t)),     q >= 0

(``P`` the routing matrix with fork multiplicities; in the usual fluid-model notation the drift
is ``alpha - R u`` with ``R = (I - P^T) diag(mu / w)`` and ``u`` the capacity fractions). Over
``T = horizon / step`` periods the LP minimizes the holding cost
``sum_t sum_k h_k q_k(t) * step`` (each period charged at its end), starting from the current
state ``q0``. A fluid-tracking policy re-solves it from the observed state and follows the first
period's allocation.

The LP is compiled once with CVXPY ``Parameter`` objects for ``q0``, ``alpha`` and ``mu``, so a
re-solve from a new state does not recompile. A join is modelled linearly: the join class gains
``1/n`` job per branch completion of an ``n``-branch fork (exact in the mean; the fluid model
does not hold finished branches back while their siblings run). ``docs/networks.md`` (fluid
control LP) has an example; ``docs/policies.md`` the policy that follows it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
from scipy import sparse

from policyopt.model.network import NetworkSpec
from policyopt.solvers.lp import LPError, choose_solver, solve_checked
from policyopt.solvers.traffic import Traffic, traffic


@dataclass(frozen=True)
class FluidPlan:
    """Solution of the fluid control LP.

    * ``allocation``: ``(class, engine) -> share of the engine's capacity`` in the first period
      (``x_kj / mu_j``; a policy follows these);
    * ``work_rates``: the same as work per second (tokens/s or seconds/s);
    * ``completion_rates``: ``c_k`` in the first period, jobs/s per class;
    * ``queues``: ``(T, classes)`` fluid at the end of each period, jobs; ``times``: those
      period ends, seconds; ``objective``: holding cost over the horizon.
    """

    status: str
    solver: str
    objective: float
    classes: tuple[str, ...]
    engines: tuple[str, ...]
    allocation: dict[tuple[str, str], float]
    work_rates: dict[tuple[str, str], float]
    completion_rates: np.ndarray
    queues: np.ndarray
    times: np.ndarray
    solve_seconds: float

    def first_queue(self) -> np.ndarray:
        """Fluid per class at the end of the first period, jobs."""
        return self.queues[0]


class FluidLP:
    """The fluid control LP of a network, compiled once (see the module docstring).

    ``horizon`` and ``step`` are in seconds (``T = ceil(horizon / step)`` periods); the
    network's nominal exogenous rates, capacities and holding costs are the defaults.
    ``method``: HiGHS's ``simplex`` (vertex solutions, fastest on small LPs), ``ipm``
    (interior point), or ``auto`` (simplex up to 5,000 variables, then ipm).
    """

    def __init__(
        self,
        net: NetworkSpec,
        horizon: float = 10.0,
        step: float = 0.5,
        solver: str | None = None,
        traffic_: Traffic | None = None,
        method: str = "auto",
    ) -> None:
        if not (step > 0 and horizon > 0) or not math.isfinite(horizon / step):
            raise LPError("horizon", f"horizon {horizon!r} and step {step!r} must be > 0", "")
        periods = math.ceil(horizon / step - 1e-9)
        if periods > 100_000:
            raise LPError(
                "horizon", f"{periods} periods is too many", "use a longer step or shorter horizon"
            )
        t0 = time.perf_counter()
        topo = net.topology
        tr = traffic_ if traffic_ is not None else traffic(net)
        self.classes, self.engines = topo.classes, topo.engines
        self.step = float(step)
        self.periods = periods
        self.solver, self.solver_note, self._options = choose_solver(solver)
        # slices of products are not in CVXPY's C++ canonicalizer; say so instead of a warning
        self._options = {**self._options, "canon_backend": cp.SCIPY_CANON_BACKEND}
        n_vars = periods * (sum(len(e) for e in topo.eligible) + topo.n_classes)
        if method not in ("auto", "simplex", "ipm"):
            raise LPError("method", f"unknown method {method!r}", "use auto, simplex or ipm")
        if self.solver == "HIGHS" and (method == "ipm" or (method == "auto" and n_vars > 5000)):
            # dynamic LPs are degenerate: above a few thousand variables HiGHS's interior
            # point is several times faster than its simplex
            self._options["highs_options"] = {"solver": "ipm"}
        self.method = "ipm" if "highs_options" in self._options else "simplex"
        n_cls, n_eng = topo.n_classes, topo.n_engines
        pairs = [(k, j) for k in range(n_cls) for j in topo.eligible[k]]
        self._pairs = pairs
        work = np.asarray(topo.work, dtype=float)
        n_pairs = len(pairs)
        # the variables are capacity shares u_kj = x_kj / mu0_j of the nominal capacities
        # (well scaled: tokens/s and jobs/s differ by orders of magnitude); a job of class k
        # completes at mu0_j u_kj / w_k per second
        mu0 = np.asarray(tr.mu, dtype=float)
        self._mu0 = mu0
        comp = sparse.csr_matrix(
            ([mu0[j] / work[k] for k, j in pairs], (range(n_pairs), [k for k, _ in pairs])),
            shape=(n_pairs, n_cls),
        )
        flow = comp @ (topo.routing_matrix() - sparse.identity(n_cls, format="csr"))
        use = sparse.csr_matrix(
            (np.ones(n_pairs), ([j for _, j in pairs], range(n_pairs))), shape=(n_eng, n_pairs)
        )
        self._comp = comp
        self.q0 = cp.Parameter(n_cls, nonneg=True, name="q0")
        self.alpha = cp.Parameter(n_cls, nonneg=True, name="alpha")
        self.mu = cp.Parameter(n_eng, pos=True, name="mu")
        self.u = cp.Variable((periods, n_pairs), nonneg=True, name="capacity_share")
        self.q = cp.Variable((periods, n_cls), nonneg=True, name="fluid")
        change = self.u @ flow  # (T, K): (P^T - I) c per period, row form
        cons = [
            self.q[0] == self.q0 + self.step * (self.alpha + change[0]),
            self.u @ use.T <= cp.multiply(1.0 / mu0, self.mu),
        ]
        if periods > 1:
            cons.append(self.q[1:] - self.q[:-1] == self.step * (change[1:] + self.alpha))
        h = np.asarray(topo.holding_cost, dtype=float)
        self.problem = cp.Problem(cp.Minimize(self.step * cp.sum(self.q @ h)), cons)
        if not self.problem.is_dpp():  # pragma: no cover - guarded by construction
            raise LPError("lp", "the fluid LP is not DPP", "report this bug")
        self.alpha.value = np.asarray(topo.alpha, dtype=float)
        self.mu.value = np.asarray(tr.mu, dtype=float)
        self.q0.value = np.zeros(n_cls)
        self.build_seconds = time.perf_counter() - t0

    def solve(
        self,
        q0: np.ndarray | list[float],
        alpha: np.ndarray | list[float] | None = None,
        mu: np.ndarray | list[float] | None = None,
    ) -> FluidPlan:
        """Solve from state ``q0`` (jobs per class); ``alpha``/``mu`` replace the defaults."""
        for name, value, param, strict in (
            ("q0", q0, self.q0, False),
            ("alpha", alpha, self.alpha, False),
            ("mu", mu, self.mu, True),
        ):
            if value is None:
                continue
            arr = np.asarray(value, dtype=float)
            bad = np.any(arr <= 0) if strict else np.any(arr < 0)
            if arr.shape != param.shape or not np.all(np.isfinite(arr)) or bad:
                raise LPError(
                    name,
                    f"need {param.shape[0]} finite values {'> 0' if strict else '>= 0'}, "
                    f"got {arr!r}",
                    "",
                )
            param.value = arr
        t0 = time.perf_counter()
        solve_checked(self.problem, self.solver, self._options, "the fluid LP")
        elapsed = time.perf_counter() - t0
        u0 = np.maximum(np.asarray(self.u.value, dtype=float)[0], 0.0)
        mu_v = np.asarray(self.mu.value, dtype=float)
        x0 = u0 * np.array([self._mu0[j] for _, j in self._pairs])
        work_rates = {
            (self.classes[k], self.engines[j]): float(v)
            for (k, j), v in zip(self._pairs, x0, strict=True)
        }
        allocation = {
            (self.classes[k], self.engines[j]): float(v / mu_v[j])
            for (k, j), v in zip(self._pairs, x0, strict=True)
        }
        queues = np.maximum(np.asarray(self.q.value, dtype=float), 0.0)
        return FluidPlan(
            status=str(self.problem.status),
            solver=self.solver,
            objective=float(self.problem.value),
            classes=self.classes,
            engines=self.engines,
            allocation=allocation,
            work_rates=work_rates,
            completion_rates=np.asarray(u0 @ self._comp, dtype=float).reshape(-1),
            queues=queues,
            times=self.step * np.arange(1, self.periods + 1),
            solve_seconds=elapsed,
        )


def fluid_plan(
    net: NetworkSpec, q0: np.ndarray | list[float], horizon: float = 10.0, step: float = 0.5
) -> FluidPlan:
    """Build and solve the fluid LP of ``net`` from state ``q0`` (jobs per class)."""
    return FluidLP(net, horizon=horizon, step=step).solve(q0)
