"""The proportionally randomized policy: draws in proportion to the job counts, classes
without jobs last, reproducible from its seed, and a warm start for behaviour cloning."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from policyopt.errors import SpecError
from policyopt.model.networks_library import resolve_network
from policyopt.policies import make_policy
from policyopt.proportional import ProportionallyRandomized
from policyopt.sim.network_sim import NetworkSimulator


def test_first_class_in_proportion_to_jobs() -> None:
    """Jobs 1, 3, 0, 6 at one engine: the first class is 0, 1 or 3 with probabilities 0.1,
    0.3 and 0.6 (never 2, which has no job and comes last); 20,000 draws land within four
    standard errors."""
    view = SimpleNamespace(jobs=np.array([1.0, 3.0, 0.0, 6.0]), classes_at=((0, 1, 2, 3),))
    pol = ProportionallyRandomized(seed=5)
    n = 20_000
    firsts = np.zeros(4)
    for _ in range(n):
        order = pol.order(0, view)  # type: ignore[arg-type]
        assert order is not None and sorted(order) == [0, 1, 2, 3] and order[-1] == 2
        firsts[order[0]] += 1
    for k, p in [(0, 0.1), (1, 0.3), (3, 0.6)]:
        assert abs(firsts[k] / n - p) < 4 * np.sqrt(p * (1 - p) / n)
    assert firsts[2] == 0


def test_second_draw_is_proportional_among_the_rest() -> None:
    """Jobs 2, 2, 4: given class 2 first (probability 1/2), classes 0 and 1 follow with
    probability 1/2 each."""
    view = SimpleNamespace(jobs=np.array([2.0, 2.0, 4.0]), classes_at=((0, 1, 2),))
    pol = ProportionallyRandomized(seed=1)
    orders = [tuple(pol.order(0, view)) for _ in range(20_000)]  # type: ignore[arg-type]
    first2 = [o for o in orders if o[0] == 2]
    assert abs(len(first2) / len(orders) - 0.5) < 0.015
    assert abs(sum(o[1] == 0 for o in first2) / len(first2) - 0.5) < 0.02


def test_reproducible_from_its_seed() -> None:
    net = resolve_network("rybko-stolyar")
    a = NetworkSimulator(net, "pr", horizon=300.0, seed=2).run().result()
    b = NetworkSimulator(net, "pr:0", horizon=300.0, seed=2).run().result()
    c = NetworkSimulator(net, "pr:7", horizon=300.0, seed=2).run().result()
    assert a.mean_jobs == b.mean_jobs
    assert c.mean_jobs != a.mean_jobs
    assert make_policy("pr:7").name == "pr:7"
    with pytest.raises(SpecError, match="pr:SEED"):
        make_policy("pr:x")


def test_behaviour_cloning_collects_from_it() -> None:
    """The generic warm start: the demonstrations of ``pr`` are legal first classes, and the
    classes it puts first vary with the state (not one fixed priority)."""
    from policyopt.envs import AgentNetworkEnv
    from policyopt.learn.bc import collect

    env = AgentNetworkEnv("rybko-stolyar", horizon=200.0)
    demo = collect(env, "pr", steps=500, seed=0)
    assert demo.actions.shape == (500,) and demo.policy == "pr"
    assert all(demo.masks[i, a] for i, a in enumerate(demo.actions))
    assert len(set(demo.actions.tolist())) >= 3
