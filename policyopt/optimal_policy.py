"""Policies and the value iteration of small station networks, both ways (``docs/optimal.md``).

* :class:`TablePolicy`: a solution's action table (the optimal policy of
  :func:`policyopt.solvers.mdp.solve`) as a policy the simulator runs: it looks the current
  job counts up (counts above a cap are read at the cap), so the optimal policy can run on the
  network itself and its mean cost be set against the solver's; :class:`ActionTable` saves a
  table to a file, and ``table:FILE.npz`` is then a policy name like any other;
* :func:`policy_table` and :func:`evaluate_policy`: a policy whose order depends on the job
  counts alone (:attr:`~policyopt.policies.Policy.state_feedback`: priorities, c-mu, LBFS,
  FBFS, MaxWeight, maximum pressure in either form, ``weighted-pressure:``, ``linear:``)
  tabulated over the states of the truncated network and evaluated exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from policyopt.errors import SpecError
from policyopt.model.network import NetworkSpec
from policyopt.policies import NetworkView, Policy, make_policy
from policyopt.solvers.mdp import (
    ChainModel,
    Solution,
    chain_model,
    evaluate_table,
    state_strides,
)


@dataclass(frozen=True)
class ActionTable:
    """What a station serves in each state of a truncated network: ``actions[s, j]`` is the
    class station ``j`` serves in flat state ``s`` (``-1``: idle) over job counts up to
    ``caps`` (C order), for the network of ``classes`` and ``stations``; ``policy`` names
    what it came from (``optimal``, a priority...). Saved as a ``.npz`` file."""

    policy: str
    classes: tuple[str, ...]
    stations: tuple[str, ...]
    caps: np.ndarray
    actions: np.ndarray

    @classmethod
    def of(cls, solution: Solution) -> ActionTable:
        """The action table of a solution of :mod:`policyopt.solvers.mdp`."""
        m = solution.model
        return cls(solution.policy, m.classes, m.stations, m.caps, solution.actions)

    def save(self, path: str | Path) -> Path:
        """Write the table to ``path`` (``.npz``, compressed)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez_compressed(
                f,
                policy=np.array(self.policy),
                classes=np.array(self.classes),
                stations=np.array(self.stations),
                caps=self.caps,
                actions=self.actions,
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> ActionTable:
        """A table written by :meth:`save`; SpecError naming the file when it is not one."""
        path = Path(path)
        fix = "give a table written by policyopt optimal (optimal_table.npz)"
        if not path.is_file():
            raise SpecError("policy", f"table:{path}: no such file", fix)
        try:
            with np.load(path, allow_pickle=False) as data:
                table = cls(
                    str(data["policy"]),
                    tuple(str(c) for c in data["classes"]),
                    tuple(str(c) for c in data["stations"]),
                    np.asarray(data["caps"], dtype=np.int64),
                    np.asarray(data["actions"], dtype=np.int64),
                )
        except (OSError, ValueError, KeyError, EOFError) as err:
            raise SpecError("policy", f"table:{path}: not an action table ({err})", fix) from None
        states = int(np.prod(table.caps + 1))
        shape = (states, len(table.stations))
        if table.caps.shape != (len(table.classes),) or table.actions.shape != shape:
            raise SpecError("policy", f"table:{path}: its arrays do not fit together", fix)
        return table


class TablePolicy(Policy):
    """Serve, at each station, the class an action table names for the current job counts
    (read at the caps when above them), then the station's other classes in index order
    (``table:FILE.npz``, or ``TablePolicy(solution)``). The decision depends on the whole
    network's state, so every station re-decides after every event (:attr:`every_event`);
    where the table says idle, the station idles (:attr:`may_idle`)."""

    every_event = True
    may_idle = True
    state_feedback = True

    def __init__(self, table: Solution | ActionTable, name: str | None = None) -> None:
        if isinstance(table, Solution):
            table = ActionTable.of(table)
        self.table = table
        self.name = name or f"table:{table.policy}"
        self._caps = table.caps
        self._strides = state_strides(table.caps)
        self._actions = table.actions

    @classmethod
    def from_file(cls, path: str) -> TablePolicy:
        """``table:PATH``: the table saved at ``PATH``."""
        return cls(ActionTable.load(path), f"table:{path}")

    def bind(self, net: NetworkSpec) -> None:
        """Check that ``net`` has the table's classes and stations."""
        t = self.table
        if tuple(net.topology.classes) != t.classes or tuple(net.engines) != t.stations:
            raise SpecError(
                "policy",
                f"{self.name} was made for classes {', '.join(t.classes)} at stations "
                f"{', '.join(t.stations)}",
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
    caps: Sequence[int] | int | ChainModel = 30,
    *,
    tol: float = 1e-4,
    max_sweeps: int = 200_000,
    progress: Callable[[int], None] | None = None,
    threads: int = 1,
) -> Solution:
    """The average holding cost per second of ``policy`` on ``net`` truncated at ``caps``
    (or on the truncated model ``caps`` of ``net``, with its loss cost), by value iteration
    on its table (:func:`policy_table`). The table re-decides at every event of the network,
    as a policy with ``every_event`` does in the simulator."""
    model = caps if isinstance(caps, ChainModel) else chain_model(net, caps)
    policy = make_policy(policy)
    table = policy_table(net, model, policy)
    return evaluate_table(
        model,
        table,
        policy.name,
        tol=tol,
        max_sweeps=max_sweeps,
        progress=progress,
        threads=threads,
    )
