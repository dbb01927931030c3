"""The optimal policy of a truncated station network, as a policy the simulator runs.

:func:`policyopt.solvers.mdp.solve` returns the action of every state of the truncated
network; :class:`TablePolicy` looks the current job counts up in that table (counts above a
cap are read at the cap), so the simulator can run the optimal policy on the network itself
and its mean cost can be set against the solver's (``docs/optimal.md``).
"""

from __future__ import annotations

import numpy as np

from policyopt.errors import SpecError
from policyopt.model.network import NetworkSpec
from policyopt.policies import NetworkView, Policy
from policyopt.solvers.mdp import Solution


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
