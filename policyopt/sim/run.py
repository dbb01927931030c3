"""Run one scenario on the single-engine simulator."""

from __future__ import annotations

from collections.abc import Callable

from policyopt.model.scenario import Scenario
from policyopt.sim.engine_sim import EngineSimulator
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
    """
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
