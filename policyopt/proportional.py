"""The proportionally randomized policy (``pr``, ``pr:SEED``): at each decision an engine puts
its classes in a random order, each next class drawn with probability proportional to its
number of jobs among the classes not drawn yet (classes without jobs last, by index).

Dai and Gluzman ("Queueing network controls via deep reinforcement learning", Stochastic
Systems 2022) start their policy-gradient runs from it: it needs no search and no knowledge of
the network beyond the queue lengths, and it never idles an engine that has work, so it is a
generic warm start for behaviour cloning (``policyopt train --bc pr``). Its draws come from
its own stream, seeded by ``SEED`` (default 0) and started afresh when the policy meets a
network, so a run is reproducible from the simulator's seed and the policy's.
"""

from __future__ import annotations

import random

from policyopt.errors import SpecError
from policyopt.model.network import NetworkSpec
from policyopt.policies import NetworkView, Policy


class ProportionallyRandomized(Policy):
    """Classes drawn in proportion to their job counts (see the module docstring)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self.name = "pr" if self.seed == 0 else f"pr:{self.seed}"
        self.rng = random.Random(self.seed)

    @classmethod
    def from_arg(cls, arg: str) -> ProportionallyRandomized:
        """``pr:SEED``."""
        if not arg.isdigit():
            raise SpecError("policy", f"'pr:{arg}': SEED in pr:SEED must be a whole number", "")
        return cls(int(arg))

    def bind(self, net: NetworkSpec) -> None:
        """Start the stream afresh (each run draws the same numbers)."""
        self.rng = random.Random(self.seed)

    def order(self, engine: int, view: NetworkView) -> list[int] | None:
        """The engine's classes, drawn in proportion to their jobs."""
        z = view.jobs
        weights = [(k, float(z[k])) for k in view.classes_at[engine]]
        with_jobs = [(k, w) for k, w in weights if w > 0]
        order: list[int] = []
        total = sum(w for _, w in with_jobs)
        rand = self.rng.random
        while with_jobs:
            u = rand() * total
            acc = 0.0
            pick = len(with_jobs) - 1
            for i, (_, w) in enumerate(with_jobs):
                acc += w
                if u < acc:
                    pick = i
                    break
            k, w = with_jobs.pop(pick)
            total -= w
            order.append(k)
        order.extend(k for k, w in weights if w <= 0)
        return order
