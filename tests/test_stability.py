"""The stability verdict (``policyopt/sim/stability.py``, ``docs/metrics.md``).

A backlog that grows in waves (Lu-Kumar under its destabilizing priority: the window slopes
alternate in sign) must be called unstable by the growth-across-cycles test, and runs of the
library's stable cases must stay stable, with fixed seeds. The growth test only turns an
inconclusive verdict into an unstable one, and never changes the drift numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

from policyopt.model.networks_library import get_network
from policyopt.sim.network_sim import simulate_network
from policyopt.sim.stability import record_growth, verdict, window_slopes
from policyopt.sim.stats import t_interval
from policyopt.solvers.static_planning import static_plan

LU_KUMAR_BAD = "priority:c4>c2>c1>c3"
"""``c4`` over ``c1`` at ``s1`` and ``c2`` over ``c3`` at ``s2``: the virtual station
``{c2, c4}`` has load ``lambda (m2 + m4) = 1.2``."""


def waves(
    horizon: float, growth: float, period: float, depth: float = 0.5, n: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """A backlog filling and draining in cycles around a trend rising ``growth`` per second;
    each cycle swings ``depth`` of the trend up and down."""
    t = np.linspace(0.0, horizon, n, endpoint=False)
    return t, growth * t * (1.0 + depth * np.sin(2 * np.pi * t / period))


# ----------------------------------------------------------------------------- the function


def test_waves_that_grow_are_unstable_and_the_drift_numbers_stay() -> None:
    t, y = waves(200_000.0, 0.2, 60_000.0)
    v = verdict(t, y, 1.0, 1.0)
    assert v.verdict == "unstable" and v.record_growth
    # the drift and its interval are the window test's, which alone is inconclusive
    half = t >= t[-1] / 2
    mean, low, high = t_interval(window_slopes(t[half], y[half], 10))
    assert (v.drift, v.drift_low, v.drift_high) == (mean, low, high)
    assert low < v.threshold < high


def test_waves_that_drain_below_their_early_peaks_stay_inconclusive() -> None:
    """Cycles that drain to a tenth of the trend fall back below the first quarter's peak
    in the last quarter: the growth test does not call them (a bursty stable backlog does
    the same); the verdict asks for a longer run instead."""
    t, y = waves(200_000.0, 0.2, 60_000.0, depth=0.9)
    assert verdict(t, y, 1.0, 1.0).verdict == "inconclusive"


def test_a_stationary_backlog_is_not_record_growth() -> None:
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 20_000.0, 1000, endpoint=False)
    y = np.abs(rng.normal(10.0, 5.0, size=t.size))  # bounded: the maximum levels off
    assert not record_growth(t, y, 0.02)
    # waves that do not grow: the peaks are all alike
    y = 50 * (1 + np.sin(2 * np.pi * t / 3000.0))
    assert not record_growth(t, y, 0.02)
    # growth that stopped before half-way
    y = np.minimum(t, 5_000.0)
    assert not record_growth(t, y, 0.02)
    # too slow: under the tolerance (2% of the rate) over the second half
    assert not record_growth(t, 0.001 * t, 0.02)
    assert record_growth(t, 0.1 * t, 0.02)


def test_the_growth_test_does_not_overrule_the_window_test() -> None:
    t = np.linspace(0.0, 1000.0, 1000, endpoint=False)
    steady = 100 + 0 * t
    assert verdict(t, steady, 1.0, 1.0).verdict == "stable"
    assert not verdict(t, steady, 1.0, 1.0).record_growth
    assert verdict(t, 5.0 * t, 1.0, 1.0).verdict == "unstable"  # the window test says so
    assert not verdict(t, 5.0 * t, 1.0, 1.0).record_growth
    assert verdict(t[:3], t[:3], 1.0, 1.0).verdict == "inconclusive"


# ----------------------------------------------------------------------------- Lu-Kumar


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lu_kumar_destabilizing_priority_is_unstable(seed: int) -> None:
    """20,000 time units: some 5,000 jobs, in waves; the window test alone is inconclusive."""
    res = simulate_network(get_network("lu-kumar"), LU_KUMAR_BAD, horizon=20_000, seed=seed)
    assert res.verdict == "unstable"
    assert res.jobs_drift_ci[0] < 0.02 < res.jobs_drift_ci[1]  # the waves: slopes straddle
    assert res.series["jobs"][-100:].max() > 2_000


def test_lu_kumar_the_reported_run_is_unstable() -> None:
    """The run of the report: 200,000 time units end with about 41,000 jobs."""
    res = simulate_network(get_network("lu-kumar"), LU_KUMAR_BAD, horizon=200_000, seed=0)
    assert res.verdict == "unstable"
    assert res.series["jobs"][-1] > 40_000


# ----------------------------------------------------------------------------- stable cases


@pytest.mark.parametrize(
    ("network", "policy", "horizon", "load"),
    [
        ("lu-kumar", "fcfs", 20_000, None),
        ("lu-kumar", "priority:c4>c3>c2>c1", 20_000, None),  # last buffer first
        ("lu-kumar", "max-pressure", 20_000, None),
        ("classic-rybko-stolyar", "max-pressure", 20_000, None),
        ("rybko-stolyar", "priority:entry", 3_600, None),
        ("fork-join", "fcfs", 7_200, 0.9),
        ("replicated-4", "fcfs", 1_800, None),
    ],
)
def test_stable_library_cases_stay_stable(
    network: str, policy: str, horizon: float, load: float | None
) -> None:
    net = get_network(network)
    if load is not None:
        net = net.scaled(load * static_plan(net).theta)
    for seed in (0, 1):
        res = simulate_network(net, policy, horizon=horizon, seed=seed)
        assert res.verdict == "stable", (seed, res.jobs_drift_ci)
