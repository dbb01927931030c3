"""What the boundary finder simulates (:mod:`policyopt.boundary`): one engine under a
scheduler, or a network under a policy, at a load and a horizon.

:func:`engine_search` loads are multiples of ``lambda* = mu / (m_p + m_d)`` (requests/s,
the closed form of :func:`policyopt.solvers.capacity.capacity`); :func:`network_search`
loads are multiples of ``theta*`` (the static planning LP,
:func:`policyopt.solvers.static_planning.static_plan`) on the network's arrival rates.
Each returns an empty :class:`~policyopt.boundary.BoundarySearch` and its evaluator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from policyopt.boundary import BoundarySearch, Evaluate, SearchSettings, Trial, timed
from policyopt.compare import scenario_for, with_horizon
from policyopt.model.network import NetworkSpec
from policyopt.model.scenario import Scenario
from policyopt.sim import simulate
from policyopt.sim.network_sim import NetworkSimulator
from policyopt.sim.stability import DRIFT_TOLERANCE
from policyopt.solvers.capacity import capacity


def engine_search(base: Scenario, settings: SearchSettings) -> tuple[BoundarySearch, Evaluate]:
    """The search for ``base``'s scheduler on its engine and workload (its rate is replaced:
    load ``x`` is ``x * lambda*`` requests/s), and its evaluator (``settings.seed``)."""
    cap = capacity(base.engine, base.workload)
    scheduler = base.scheduler

    def evaluate(load: float, horizon_s: float) -> Trial:
        scen = scenario_for(
            with_horizon(base, horizon_s, settings.seed), scheduler, load * cap.lambda_star
        )
        res, wall = timed(lambda: simulate(scen))
        return Trial(horizon_s, res.verdict, res.drift, *res.drift_ci, res.drift_threshold, wall)

    search = BoundarySearch(scheduler.label, "lambda*", cap.lambda_star, cap.lambda_star, settings)
    return search, evaluate


def network_search(
    net: NetworkSpec,
    policy: str,
    settings: SearchSettings,
    options: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> tuple[BoundarySearch, Evaluate]:
    """The search for ``policy`` on ``net`` (load ``x`` scales every arrival rate by
    ``x * theta*``) and its evaluator (``settings.seed``; ``options``: the simulator's
    ``warmup`` and ``samples`` of a scenario with request classes). The verdict is the
    network's, on the jobs in it (threshold 2% of the job rate, jobs/s)."""
    from policyopt.solvers.static_planning import static_plan
    from policyopt.solvers.traffic import traffic

    theta = static_plan(net).theta
    total = math.fsum(net.workflow_rates().values())
    extra = dict(options or {})

    def evaluate(load: float, horizon_s: float) -> Trial:
        scaled = net.scaled(load * theta)
        threshold = DRIFT_TOLERANCE * float(traffic(scaled).rates.sum())
        sim = NetworkSimulator(scaled, policy, horizon=horizon_s, seed=settings.seed, **extra)
        res, wall = timed(lambda: sim.run(keep_jobs=False).result())
        return Trial(horizon_s, res.verdict, res.jobs_drift, *res.jobs_drift_ci, threshold, wall)

    target = f"{policy} on {name or net.name}"
    return BoundarySearch(target, "theta*", theta, theta * total, settings), evaluate
