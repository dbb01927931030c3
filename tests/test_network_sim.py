"""The network simulator: stability of the library networks under the network policies.

Theory checked: the Rybko-Stolyar agent network (``docs/networks.md``) at nominal load 0.9 per
engine diverges under exit priority (its two long classes form a virtual station at load 1.4)
and stays stable under the reversed priority and maximum pressure; fork-join under
work-conserving FCFS is stable at 0.9 of the LP boundary and unstable at 1.1; the classic
(single-server) Rybko-Stolyar network behaves the same way.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from policyopt.errors import SpecError
from policyopt.model.networks_library import get_network
from policyopt.policies import make_policy
from policyopt.sim.network_sim import NetworkSimulator, simulate_network
from policyopt.solvers.capacity import capacity
from policyopt.solvers.static_planning import static_plan


def check_carried(res) -> None:
    """Stable run: every workflow's throughput interval holds its arrival rate."""
    for name, w in res.workflows.items():
        assert w["throughput_low"] <= w["rate"] <= w["throughput_high"], name


def check_work_conserved(res) -> None:
    """Per engine: work arrived = work done + work left (tokens or seconds)."""
    for name, e in res.engines.items():
        assert abs(e["work_conserved"]) < 1e-6 * max(1.0, e["backlog_end"]), name


def test_rybko_stolyar_exit_priority_diverges() -> None:
    res = simulate_network(get_network("rybko-stolyar"), "priority:exit", horizon=1800)
    assert all(e["nominal_load"] == pytest.approx(0.9) for e in res.engines.values())
    assert res.verdict == "unstable"
    assert res.jobs_drift_ci[0] > 0
    check_work_conserved(res)


@pytest.fixture(scope="module")
def exit_priority_run():
    return simulate_network(get_network("rybko-stolyar"), "priority:exit", horizon=7200)


@pytest.mark.parametrize("policy", ["priority:entry", "max-pressure"])
def test_rybko_stolyar_reversed_priority_and_max_pressure_hold(
    policy: str, exit_priority_run
) -> None:
    net = get_network("rybko-stolyar")
    res = simulate_network(net, policy, horizon=7200)
    exit_res = exit_priority_run
    assert res.verdict != "unstable"
    assert res.jobs_drift_ci[0] < 0.02 * 8 < exit_res.jobs_drift_ci[0]
    assert res.mean_jobs < exit_res.mean_jobs / 5
    check_carried(res)
    check_work_conserved(res)
    for e in res.engines.values():
        assert e["non_work_conserving_share"] == 0  # policies only order classes


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["priority:entry", "max-pressure", "fcfs"])
def test_rybko_stolyar_stable_long_run(policy: str) -> None:
    res = simulate_network(get_network("rybko-stolyar"), policy, horizon=14400)
    assert res.verdict == "stable"


@pytest.mark.parametrize(("fraction", "word"), [(0.9, "stable"), (1.1, "unstable")])
def test_fork_join_boundary_from_the_lp(fraction: float, word: str) -> None:
    net = get_network("fork-join")
    theta = static_plan(net).theta
    res = simulate_network(net.scaled(fraction * theta), "fcfs", horizon=7200)
    assert res.verdict == word
    check_work_conserved(res)
    if word == "stable":
        check_carried(res)


def test_join_waits_for_every_branch() -> None:
    sim = NetworkSimulator(get_network("fork-join"), "fcfs", horizon=600, trace=True)
    sim.run()
    topo = sim.topo
    join = topo.classes.index("summarizer")
    branches = {topo.classes.index(c) for c in ("search", "code", "math")}
    done: dict[int, list[float]] = {}
    starts = 0
    for t, what, k, flow, _fork in sim.trace:
        if what == "done" and k in branches:
            done.setdefault(flow, []).append(t)
        if what == "start" and k == join:
            starts += 1
            assert len(done.get(flow, [])) == 3, "join started before all three branches ended"
            assert max(done[flow]) <= t
    assert starts > 100


def test_replicated_engines_carry_k_times_one() -> None:
    res = simulate_network(get_network("replicated-4"), "fcfs", horizon=1800)
    assert res.verdict == "stable"
    check_carried(res)
    net = get_network("replicated-4")
    (cls,) = net.classes.values()
    one_engine = capacity(next(iter(net.engines.values())).engine_spec(), cls.workload())
    rate = next(iter(res.workflows.values()))["rate"]
    # four engines at nominal load 0.9 each: the stream is 4 x 0.9 of one engine's lambda*
    assert all(e["nominal_load"] == pytest.approx(0.9) for e in res.engines.values())
    assert rate == pytest.approx(4 * 0.9 * one_engine.lambda_star, rel=1e-9)


def test_classic_rybko_stolyar_stations() -> None:
    net = get_network("classic-rybko-stolyar")
    bad = simulate_network(net, "priority:exit", horizon=20000)
    good = simulate_network(net, "max-pressure", horizon=20000)
    assert bad.verdict == "unstable" and good.verdict == "stable"
    check_carried(good)
    check_work_conserved(good)


def test_same_seed_same_result_and_common_arrivals() -> None:
    net = get_network("rybko-stolyar")
    a = simulate_network(net, "max-pressure", horizon=300, seed=4)
    b = simulate_network(net, "max-pressure", horizon=300, seed=4)
    assert a.summary() == b.summary()
    np.testing.assert_array_equal(a.series["jobs"], b.series["jobs"])
    # two policies see the same arrivals (common random numbers)
    runs = []
    for policy in ("priority:exit", "max-pressure"):
        sim = NetworkSimulator(net, policy, horizon=300, seed=4, trace=True)
        sim.run()
        entry = {sim.topo.classes.index(c) for c in ("A1", "B1")}
        runs.append([(t, k) for t, what, k, _, f in sim.trace if what == "start" and k in entry])
    assert runs[0] == runs[1]


def test_bad_policy_names() -> None:
    with pytest.raises(SpecError, match="policy"):
        make_policy("shortest-job-first")
    with pytest.raises(SpecError, match="unknown class 'Z9'"):
        NetworkSimulator(get_network("rybko-stolyar"), "priority:Z9>A1", horizon=10)


def test_holding_cost_is_weighted_jobs() -> None:
    res = simulate_network(get_network("criss-cross"), "max-pressure", horizon=2000)
    total = sum(c["holding_cost"] for c in res.classes.values())
    assert res.holding_cost == pytest.approx(total)
    assert math.isfinite(res.mean_jobs) and res.mean_jobs > 0


def test_fluid_tracking_holds_rybko_stolyar(exit_priority_run) -> None:
    res = simulate_network(get_network("rybko-stolyar"), "fluid", horizon=3600)
    assert res.verdict != "unstable"
    assert res.mean_jobs < exit_priority_run.mean_jobs / 5
    check_carried(res)


def test_max_pressure_order_is_by_pressure() -> None:
    """On a two-class line, pressure r_k (z_k - sum_l P_kl z_l) decides the order."""
    from policyopt.policies import MaxPressure, NetworkView

    net = get_network("rybko-stolyar")
    topo = net.topology
    jobs = np.zeros(topo.n_classes)
    view = NetworkView(net, jobs)  # no simulator: the view reads our counts
    k = {c: i for i, c in enumerate(topo.classes)}
    jobs[k["A1"]] = 10  # A1 -> A2: pressure (10 - 0) / 160
    jobs[k["B2"]] = 2  # B2 exits: pressure 2 / 560
    e1 = topo.engines.index("e1")
    assert MaxPressure().order(e1, view) == [k["A1"], k["B2"]]
    jobs[k["A2"]] = 10  # now A1's pressure is 0
    assert MaxPressure().order(e1, view) == [k["B2"], k["A1"]]
    # the simulator's own view is the same, but read-only
    sim = NetworkSimulator(net, "max-pressure", horizon=1)
    np.testing.assert_array_equal(sim.view.P, view.P)
    np.testing.assert_array_equal(sim.view.rate, view.rate)
    assert sim.view.classes_at == view.classes_at
    with pytest.raises(ValueError, match="read-only"):
        sim.view.jobs[0] = 1.0


@pytest.mark.parametrize(
    ("name", "policy", "horizon"),
    [
        ("criss-cross", "priority:exit", 3000.0),
        ("rybko-stolyar", "max-pressure", 300.0),
        ("fork-join", "fcfs", 300.0),
        ("replicated-3", "fcfs", 200.0),
    ],
)
def test_written_out_event_loop_matches_the_reference_methods(
    name: str, policy: str, horizon: float
) -> None:
    """The event loop writes job starts and completions out for speed; with a trace it calls
    the reference methods (``_new_job``, ``_complete``) instead: the runs must be identical."""
    from policyopt.model.networks_library import get_network
    from policyopt.sim.network_sim import NetworkSimulator

    net = get_network(name)
    fast = NetworkSimulator(net, policy, horizon=horizon, seed=4).run().result()
    ref = NetworkSimulator(net, policy, horizon=horizon, seed=4, trace=True).run().result()
    assert fast.summary() == ref.summary()
    for key, series in fast.series.items():
        assert np.array_equal(series, ref.series[key], equal_nan=True)
