"""Run one scenario (on the single-engine simulator, or, with request classes, on its
one-engine network); estimate the work of a run before it.

:func:`expected_requests` is the one estimate of how much work a command asks for (used by
``simulate`` and ``compare``, for one engine and for networks): the expected number of
requests, the sum of the arrival rates times the horizon. Past :data:`MAX_REQUESTS`,
:func:`check_run_size` refuses the run unless the user insists (``--force``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

from policyopt.errors import SpecError
from policyopt.model.network import scenario_network
from policyopt.model.scenario import Scenario
from policyopt.model.workload import TraceArrivals, read_trace
from policyopt.policies import Policy
from policyopt.sim.engine_sim import EngineSimulator
from policyopt.sim.network_sim import NetworkResult, NetworkSimulator
from policyopt.sim.result import EngineResult, collect
from policyopt.solvers.capacity import capacity


def simulate(
    scenario: Scenario,
    *,
    record_batches: bool = False,
    progress: Callable[[float], None] | None = None,
) -> EngineResult:
    """Simulate ``scenario`` and return its metrics.

    ``progress`` is called now and then with the simulated time reached (seconds), e.g. to
    drive a progress bar. The same scenario (seed included) always gives the same result.
    A scenario with request classes is refused: run it with :func:`simulate_classes`.
    """
    if scenario.multiclass:
        raise SpecError(
            "classes",
            "a scenario with request classes runs as a one-engine network",
            "use simulate_classes(scenario, policy) (or policyopt simulate FILE --policy P)",
        )
    if scenario.engine.kv_cache is not None:
        raise SpecError(
            "engine.kv_cache",
            "a scenario with a limited KV cache runs as a one-engine network (where the "
            "memory rules live)",
            "use simulate_classes(scenario) (or policyopt simulate FILE)",
        )
    cap = capacity(scenario.engine, scenario.workload)
    run = scenario.run
    sim = EngineSimulator(
        scenario.engine,
        scenario.scheduler,
        scenario.workload,
        horizon=run.horizon_s,
        warmup=run.warmup,
        seed=run.seed,
        samples=run.samples,
        first_token=run.first_token,
        record_batches=record_batches,
    )
    sim.run(progress=progress)
    return collect(
        sim, rate=scenario.workload.rate, mean_tokens=cap.mean_tokens, mu=cap.mu, seed=run.seed
    )


def simulate_classes(
    scenario: Scenario,
    policy: str | Policy = "fcfs",
    *,
    progress: Callable[[float], None] | None = None,
) -> NetworkResult:
    """Simulate a scenario with request classes or a limited KV cache under ``policy`` (the
    order in which the classes fill the token budget) on its one-engine network
    (:func:`~policyopt.model.network.scenario_network`), with the scenario's horizon, warm-up
    and seed; per-class metrics are in ``result.classes``, the engine's (KV cache included) in
    ``result.engines["engine"]``. A single-workload scenario runs
    too (one class, ``requests``), as a cross-check of :func:`simulate`."""
    run = scenario.run
    sim = NetworkSimulator(
        scenario_network(scenario),
        policy,
        horizon=run.horizon_s,
        warmup=run.warmup,
        seed=run.seed,
        samples=run.samples,
    )
    sim.run(progress=progress, keep_jobs=False)
    return sim.result()


REQUESTS_PER_SECOND = 300_000
"""About how many requests the single-engine simulator runs per second of wall time."""

MAX_REQUESTS = 100_000_000
"""The most requests (expected arrivals, summed over the runs of one command) a command
simulates without ``--force``.

The single-engine simulator does about 300,000 requests per second of wall time (a
1,000,000-request run takes about 3 s) and the network simulator about a third of that, so
10**8 requests is about 5 minutes for one engine and a quarter of an hour for a network:
well past any run of the docs, and well short of ``rate: 1e12`` or ``horizon_s: 1e15``,
which would never end.
"""


def expected_requests(rates: float | Iterable[float], horizon: float) -> float:
    """Expected arrivals of a run: the sum of its arrival ``rates`` (requests/s; a network's
    workflows, a scenario's request classes, or one rate) times ``horizon`` (s)."""
    total = float(rates) if isinstance(rates, (int, float)) else math.fsum(rates)
    return total * float(horizon)


def scenario_requests(scenario: Scenario) -> float:
    """:func:`expected_requests` of a single-engine scenario (a trace: its arrivals before
    the horizon, at most its length)."""
    run = scenario.run
    if scenario.classes is not None:
        return expected_requests((c.rate for c in scenario.classes.values()), run.horizon_s)
    arrival = scenario.workload.arrival
    if isinstance(arrival, TraceArrivals):
        times = read_trace(arrival.path)[0] * arrival.time_scale
        return float(np.searchsorted(times, run.horizon_s, side="left"))
    return expected_requests(scenario.workload.rate, run.horizon_s)


def check_run_size(requests: float, what: str, *, force: bool) -> None:
    """Refuse a command expecting more than :data:`MAX_REQUESTS` requests unless ``force``.

    ``what`` says where the number comes from (``rate 1e+12 requests/s x horizon 3600 s``).
    """
    if force or requests <= MAX_REQUESTS:
        return
    raise SpecError(
        "expected requests",
        f"{what} = about {requests:.3g} requests, above the limit of {MAX_REQUESTS:,} (at "
        f"about {REQUESTS_PER_SECOND:,} requests per second of wall time that is "
        f"{_duration(requests / REQUESTS_PER_SECOND)} of computing)",
        "shorten the horizon or lower the rate or load, or give --force to run it anyway",
    )


def _duration(seconds: float) -> str:
    """``seconds`` of wall time in words (``12 minutes``, ``1,057 years``)."""
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("hours", 3600)):
        if seconds >= 2 * size:
            value = seconds / size
            return f"{value:,.0f} {unit}" if value < 1e6 else f"{value:.1e} {unit}"
    return f"{seconds / 60:.0f} minutes"
