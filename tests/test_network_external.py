"""The network simulator's external mode (advance/decide): the decision hook of the envs.

Replaying, through external mode, the orders a policy returned in policy mode must reproduce
the policy run exactly (same result summary, same series), on LLM engines, on a fork-join
network with a stateful policy (fluid tracking) and on classic stations.
"""

from __future__ import annotations

import numpy as np
import pytest

from policyopt.model.network import NetworkSpec
from policyopt.model.networks_library import get_network
from policyopt.policies import NetworkView, Policy, make_policy
from policyopt.sim.network_sim import NetworkSimulator


class Recorder(Policy):
    """Wraps a policy and records ``(engine, order)`` for every call."""

    def __init__(self, inner: str) -> None:
        self.inner = make_policy(inner)
        self.name = self.inner.name
        self.log: list[tuple[int, list[int] | None]] = []

    def bind(self, net: NetworkSpec) -> None:
        self.inner.bind(net)

    def order(self, engine: int, view: NetworkView) -> list[int] | None:
        order = self.inner.order(engine, view)
        self.log.append((engine, None if order is None else list(order)))
        return order


def without_policy(summary: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in summary.items() if k != "policy"}


@pytest.mark.parametrize(
    ("network", "policy", "horizon"),
    [
        ("rybko-stolyar", "max-pressure", 300.0),
        ("rybko-stolyar", "fcfs", 200.0),  # replayed as decide(None)
        ("fork-join", "fluid", 150.0),
        ("criss-cross", "priority:exit", 1500.0),
    ],
)
def test_replaying_a_policy_reproduces_its_run(network: str, policy: str, horizon: float) -> None:
    net = get_network(network)
    rec = Recorder(policy)
    ref = NetworkSimulator(net, rec, horizon=horizon, seed=5).run()
    sim = NetworkSimulator(net, None, horizon=horizon, seed=5)
    i = 0
    while (j := sim.advance()) is not None:
        engine, order = rec.log[i]
        assert j == engine == sim.pending
        sim.decide(order)
        i += 1
    assert i == len(rec.log) > 100
    assert sim.decisions == ref.decisions == i
    a, b = ref.result(), sim.result()
    assert b.policy == "external"
    assert without_policy(a.summary()) == without_policy(b.summary())
    np.testing.assert_array_equal(a.series["jobs"], b.series["jobs"])


def test_external_mode_misuse_is_refused() -> None:
    net = get_network("rybko-stolyar")
    with pytest.raises(RuntimeError, match="external mode"):
        NetworkSimulator(net, None, horizon=10).run()
    with pytest.raises(RuntimeError, match="needs external mode"):
        NetworkSimulator(net, "fcfs", horizon=10).advance()
    sim = NetworkSimulator(net, None, horizon=10)
    with pytest.raises(RuntimeError, match="no decision is pending"):
        sim.decide([0])
    j = sim.advance()
    assert j is not None
    with pytest.raises(RuntimeError, match="must decide first"):
        sim.advance()
    other = next(k for k in range(net.topology.n_classes) if k not in sim.class_sets[j])
    with pytest.raises(ValueError, match="does not serve"):
        sim.decide([other])
    assert sim.pending == j  # a refused order leaves the decision pending
    sim.decide(None)
    while sim.advance() is not None:
        sim.decide(None)
    assert sim.finished and sim.advance() is None and sim.now == 10.0


def test_class_state_and_initial_jobs() -> None:
    net = get_network("fork-join")
    topo = net.topology
    sim = NetworkSimulator(net, None, horizon=50, warmup=0.0, seed=1)
    counts = [3, 0, 0, 0, 2]  # planner and summarizer: outside the fork
    sim.add_jobs(counts)
    waiting, serving, work = sim.class_state()
    assert waiting.tolist() == [3, 0, 0, 0, 2] and serving.sum() == 0
    assert sim.jobs.tolist() == counts
    assert np.all(work[[0, 4]] > 0) and np.all(work[1:4] == 0)
    with pytest.raises(ValueError, match="inside a fork"):
        sim.add_jobs([0, 1, 0, 0, 0])
    while (j := sim.advance()) is not None:
        w, s, left = sim.class_state()
        assert np.all(w >= 0) and np.all(s >= 0) and np.all(left >= -1e-9)
        np.testing.assert_allclose(w + s, sim.jobs)
        assert set(sim.classes_with_work(j)) <= set(sim.class_sets[j])
        sim.decide(None)
    # the holding cost integral is the simulator's own area at the end
    res = sim.result()
    h = np.asarray(topo.holding_cost)
    assert float(h @ sim.job_seconds()) == pytest.approx(res.holding_cost * 50, rel=1e-12)


# ----------------------------------------------------------------------------- budget split


@pytest.mark.parametrize("scheduler", ["sarathi", "orca"])
def test_decode_cap_splits_the_budget_and_stays_work_conserving(scheduler: str) -> None:
    """Every batch formed with a decode cap: within the budget, work-conserving, decode gets
    at least ``min(cap, decoding jobs)`` tokens, and prefill gets the rest before decoding tops
    up (cap 0 is prefill first)."""
    from policyopt.envs.agent_network import llm_engine_network

    net = llm_engine_network()
    data = net.model_dump()
    data["engines"]["llm"]["scheduler"] = scheduler
    net = NetworkSpec.model_validate(data).scaled(1.05)  # busy: both phases have work
    sim = NetworkSimulator(net, None, horizon=120.0, warmup=0.0, seed=5)
    rng = np.random.default_rng(0)
    eng = sim.engines[0]
    b, split_batches = eng.b, 0
    while sim.advance() is not None:
        D, pre, backlog = eng.n_dec, eng.pre_backlog, eng.backlog
        cap = int(rng.choice([0, 1, 64, 256, b, 10 * b]))
        sim.decide([int(k) for k in rng.permutation([0, 1])], decode_cap=cap)
        x = pre - eng.pre_backlog  # prefill tokens of the batch just formed
        m = backlog - eng.backlog - x  # decode tokens
        assert x >= 0 and 0 <= m <= D and x + m <= b
        if scheduler == "sarathi":  # chunked prefill: the batch is full or takes everything
            assert x + m == min(b, D + pre)
        assert m >= min(cap, D, b)
        if cap == 0:
            assert x == min(b, pre) if scheduler == "sarathi" else x <= b
        if D and pre:
            split_batches += 1
    assert split_batches > 100
    assert sum(e.stats.not_work_conserving for e in sim.engines) == 0


def test_decode_cap_at_the_schedulers_own_rule_is_the_plain_run() -> None:
    """Sarathi-Serve serves decode first: a cap of the whole budget changes nothing."""
    from policyopt.envs.agent_network import llm_engine_network

    net = llm_engine_network()
    plain = NetworkSimulator(net, None, horizon=60.0, warmup=0.0, seed=2)
    capped = NetworkSimulator(net, None, horizon=60.0, warmup=0.0, seed=2)
    while (j := plain.advance()) is not None:
        assert capped.advance() == j
        plain.decide([0, 1])
        capped.decide([0, 1], decode_cap=plain.engines[j].b)
    assert capped.advance() is None
    assert without_policy(capped.result().summary()) == without_policy(plain.result().summary())
    with pytest.raises(ValueError, match="decode_cap"):
        sim = NetworkSimulator(net, None, horizon=60.0, seed=2)
        sim.advance()
        sim.decide([0, 1], decode_cap=-1)
