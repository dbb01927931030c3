"""Policies and the value iteration of small station networks, both ways (``docs/optimal.md``).

* :class:`TablePolicy`: a solution's action table (the optimal policy of
  :func:`policyopt.solvers.mdp.solve`) as a policy the simulator runs: it looks the current
  job counts up (counts above a cap are read at the cap), so the optimal policy can run on the
  network itself and its mean cost be set against the solver's;
* :func:`policy_table` and :func:`evaluate_policy`: a policy whose order depends on the job
  counts alone (:attr:`~policyopt.policies.Policy.state_feedback`: priorities, c-mu, LBFS,
  FBFS, MaxWeight, maximum pressure in either form, ``weighted-pressure:``, ``linear:``)
  tabulated over the states of the truncated network and evaluated exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from policyopt.errors import SpecError
from policyopt.model.network import NetworkSpec
from policyopt.policies import NetworkView, Policy, make_policy
from policyopt.solvers.mdp import ChainModel, Solution, chain_model, evaluate_table


class TablePolicy(Policy):
    """Serve, at each station, the class the solution's action table names for the current
    job counts (read at the caps when above them), then the station's other classes in index
    order. The decision depends on the whole network's state, so every station re-decides
    after every event (:attr:`every_event`); where the table says idle, the station idles
    (:attr:`may_idle`)."""

    every_event = True
    may_idle = True

    def __init__(self, solution: Solution) -> None:
        self.solution = solution
        self.name = f"table:{solution.policy}"
        model = solution.model
        self._caps = model.caps
        self._strides = model.strides
        self._actions = solution.actions

    def bind(self, net: NetworkSpec) -> None:
        """Check that ``net`` has the solved model's classes and stations."""
        model = self.solution.model
        if tuple(net.topology.classes) != model.classes or tuple(net.engines) != model.stations:
            raise SpecError(
                "policy",
                f"the table was solved for classes {', '.join(model.classes)}",
                "run it on the network it was solved for",
            )

    def order(self, engine: int, view: NetworkView) -> list[int] | None:
        """The class the table serves at ``engine`` first (nothing if it idles), then the
        engine's other classes."""
        x = np.minimum(view.jobs, self._caps)
        a = int(self._actions[int(np.dot(x, self._strides)), engine])
        if a < 0:
            return []
        return [a] + [k for k in view.classes_at[engine] if k != a]


def policy_table(net: NetworkSpec, model: ChainModel, policy: Policy | str) -> np.ndarray:
    """The class each station of ``net`` serves in each state of ``model`` under ``policy``
    (shape ``(states, stations)``, ``-1``: idle): the first class of the policy's order that
    has a job, as the simulator serves it at a one-server preemptive station. SpecError for a
    policy that is not a function of the job counts."""
    policy = make_policy(policy)
    if not policy.state_feedback:
        raise SpecError(
            "policy",
            f"{policy.name} is not a function of the job counts alone",
            "use a priority, c-mu, lbfs, fbfs, max-weight, max-pressure (either form), "
            "weighted-pressure: or linear:",
        )
    policy.bind(net)
    K, J = len(model.classes), len(model.stations)
    jobs = np.zeros(K)
    view = NetworkView(net, jobs)
    classes_at = view.classes_at
    table = np.full((model.n_states, J), -1, dtype=np.int64)
    for s, x in enumerate(np.ndindex(*(int(c) + 1 for c in model.caps))):
        jobs[:] = x
        for j in range(J):
            if not any(x[k] for k in classes_at[j]):
                continue
            order = policy.order(j, view) or []
            table[s, j] = next((k for k in order if x[k] > 0), -1)
    return table


def evaluate_policy(
    net: NetworkSpec,
    policy: Policy | str,
    caps: Sequence[int] | int = 30,
    *,
    tol: float = 1e-4,
    max_sweeps: int = 200_000,
    progress: Callable[[int], None] | None = None,
) -> Solution:
    """The average holding cost per second of ``policy`` on ``net`` truncated at ``caps``,
    by value iteration on its table (:func:`policy_table`). The table re-decides at every
    event of the network, as a policy with ``every_event`` does in the simulator."""
    model = chain_model(net, caps)
    policy = make_policy(policy)
    table = policy_table(net, model, policy)
    return evaluate_table(
        model, table, policy.name, tol=tol, max_sweeps=max_sweeps, progress=progress
    )
